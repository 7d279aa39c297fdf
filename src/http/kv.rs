//! `/v1/kv`: the clean key-value routes. A value is the raw body; `X-Braft-Version`
//! carries a key's version and `X-Braft-Index` the applied index; a read may block until
//! a key passes a version (Consul's blocking queries).

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::*;

/// The default and the largest `limit` of a key listing.
const LIST_DEFAULT: usize = 1000;
const LIST_MAX: usize = 10_000;
/// The longest (and default) `wait` of a blocking read.
const WAIT_MAX: Duration = Duration::from_secs(300);

pub(super) async fn empty_key() -> ApiError {
    ApiError::bad("bad_key", "key must not be empty")
}

pub(super) async fn put_key(State(node): State<Node>, Key(key): Key, q: Params, body: Body) -> ApiResult<Response> {
    check_key(&key)?;
    let precondition = match (q.get("prev_version")?, q.bytes("prev_value")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad(
                "bad_parameter",
                "give prev_version or prev_value, not both",
            ))
        }
        (Some(v), None) => Some(Precondition::Version(v.parse().map_err(|_| {
            ApiError::bad(
                "bad_parameter",
                format!("prev_version '{v}' is not a non-negative integer"),
            )
        })?)),
        (None, Some(v)) => Some(Precondition::Value(v.to_vec())),
        (None, None) => None,
    };
    if let Some(other) = q.names().find(|k| !["prev_version", "prev_value"].contains(k)) {
        return Err(ApiError::bad("bad_parameter", format!("unknown parameter '{other}'")));
    }
    let value = read_value(&node, body).await?;
    let cmd = KvCommand::Put {
        map: String::new(),
        key,
        value: value.to_vec(),
        precondition,
    };
    match node.write::<KvService>(cmd).await? {
        KvOutput::Put { version } => Ok(Json(json!({ "version": version })).into_response()),
        KvOutput::CompareFailed { current_version } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "compare_failed",
            "the key's current version or value does not match",
        )
        .with("current_version", json!(current_version))),
        other => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("unexpected {other:?}"),
        )),
    }
}

/// `GET /v1/kv/{key}`; with `?index=N`, a Consul-style blocking read: it answers once
/// the key's version is above N (created, changed or deleted since), or when `wait`
/// (default and most: 5 min) runs out, whichever is first.
pub(super) async fn get_key(State(node): State<Node>, Key(key): Key, q: Params) -> ApiResult<Response> {
    check_key(&key)?;
    if let Some(other) = q.names().find(|k| !["consistency", "index", "wait"].contains(k)) {
        return Err(ApiError::bad("bad_parameter", format!("unknown parameter '{other}'")));
    }
    let consistency = parse_consistency(&q)?;
    let index = match q.get("index")? {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::bad("bad_parameter", format!("index '{v}' is not a non-negative integer")))?,
        ),
    };
    let wait = match q.get("wait")? {
        None => WAIT_MAX,
        Some(w) => crate::config::parse_duration(w)
            .map_err(|e| ApiError::bad("bad_parameter", format!("wait: {e}")))?
            .min(WAIT_MAX),
    };
    let query = KvQuery::Get {
        map: String::new(),
        key: key.clone(),
    };
    let mut value = read_value_of(&node, &query, consistency).await?;
    if let Some(index) = index {
        // Watch from index + 1 *before* judging the read: a change that lands after the
        // read is in the history the watcher scans.
        let mut watcher = node.watcher("", &key, Some(index.saturating_add(1)));
        if value.as_ref().map_or(0, |v| v.version) <= index && wait_for_change(&mut watcher, &key, wait).await {
            value = read_value_of(&node, &query, consistency).await?;
        }
    }
    let index_header = |resp: &mut Response, version: u64| {
        let index = node.applied_index().max(version);
        resp.headers_mut().insert(INDEX_HEADER, HeaderValue::from(index));
    };
    match value {
        Some(v) => {
            let mut resp = Response::new(Body::from(v.value));
            index_header(&mut resp, v.version);
            resp.headers_mut()
                .insert("X-Braft-Version", HeaderValue::from(v.version));
            resp.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            Ok(resp)
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("key '{key}' not found"),
        )),
    }
}

pub(super) async fn read_value_of(
    node: &Node,
    query: &KvQuery,
    consistency: Consistency,
) -> ApiResult<Option<crate::kv::Versioned>> {
    match node.read::<KvService>(query.clone(), consistency).await? {
        KvQueryOutput::Value(v) => Ok(v),
        other => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("unexpected {other:?}"),
        )),
    }
}

/// Waits up to `wait` for a change to exactly `key`; true if one came (or the history
/// can no longer say: the caller re-reads either way, as Consul allows).
async fn wait_for_change(watcher: &mut crate::watch::Watcher, key: &str, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, watcher.next_batch()).await {
            Err(_) => return false,
            Ok(Err(_)) => return true,
            Ok(Ok(batch)) if batch.iter().any(|e| e.key == key) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

pub(super) async fn delete_key(State(node): State<Node>, Key(key): Key) -> ApiResult<Response> {
    check_key(&key)?;
    let cmd = KvCommand::Delete {
        map: String::new(),
        key,
    };
    match node.write::<KvService>(cmd).await? {
        KvOutput::Deleted { version, existed } => {
            Ok(Json(json!({ "version": version, "existed": existed })).into_response())
        }
        other => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("unexpected {other:?}"),
        )),
    }
}

pub(super) async fn list_keys(State(node): State<Node>, q: Params) -> ApiResult<Response> {
    let prefix = q.get("prefix")?.unwrap_or_default().to_string();
    let limit = match q.get("limit")? {
        None => LIST_DEFAULT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=LIST_MAX).contains(&n) => n,
            _ => {
                return Err(ApiError::bad(
                    "bad_parameter",
                    format!("limit '{l}' must be 1..{LIST_MAX}"),
                ))
            }
        },
    };
    let consistency = parse_consistency(&q)?;
    let query = KvQuery::List {
        map: String::new(),
        prefix,
        limit,
    };
    match node.read::<KvService>(query, consistency).await? {
        KvQueryOutput::Keys(keys) => Ok(Json(json!({ "keys": keys })).into_response()),
        other => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("unexpected {other:?}"),
        )),
    }
}

// --- braft compatibility: /kv?map=&key=&value= (aliases m, k, v) ---
