//! braft's own `/kv` routes (`GET`, `POST`/`PUT`, `DELETE` with `map`, `key`, `value`
//! and their one-letter aliases), answered as the Go braft does.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::*;

/// braft's long or short parameter name, whichever is present.
fn param(q: &Params, long: &str, short: &str) -> ApiResult<Option<String>> {
    Ok(q.get(long)?.or(q.get(short)?).map(str::to_string))
}

/// braft's response headers: who answered.
fn braft_headers(node: &Node, mut resp: Response) -> Response {
    let h = resp.headers_mut();
    let ip = node.peer().rpc_addr.rsplit_once(':').map_or("", |(h, _)| h).to_string();
    if let Ok(v) = HeaderValue::from_str(&ip) {
        h.insert("Braft-IP", v);
    }
    h.insert("Braft-ID", HeaderValue::from(node.id()));
    if let Ok(v) = HeaderValue::from_str(&node.peer().http_addr) {
        h.insert("Braft-Host", v);
    }
    resp
}

/// braft's default map and key: `GET /kv` with neither reads key `default` of map
/// `default`, as braft's `ServeKV` does.
const BRAFT_DEFAULT: &str = "default";

/// braft's map parameter, or its default.
fn compat_map(q: &Params) -> ApiResult<String> {
    Ok(param(q, "map", "m")?.unwrap_or_else(|| BRAFT_DEFAULT.to_string()))
}

/// braft's `GET /kv`: the value as JSON (`"v1"`, or `null` when missing). Unlike braft,
/// the read honours `consistency` (linearizable by default) instead of reading stale.
/// Raw bytes stay on `/v1/kv`; a value that is not text is a 422 pointing there.
pub(super) async fn get(State(node): State<Node>, q: Params) -> ApiResult<Response> {
    let map = compat_map(&q)?;
    let key = param(&q, "key", "k")?.unwrap_or_else(|| BRAFT_DEFAULT.to_string());
    check_key(&key)?;
    let consistency = parse_consistency(&q)?;
    let query = KvQuery::Get { map, key: key.clone() };
    let value = match super::kv::read_value_of(&node, &query, consistency).await? {
        Some(v) => serde_json::Value::String(String::from_utf8(v.value).map_err(|_| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "not_text",
                format!("the value of '{key}' is not UTF-8 text; read its raw bytes from /v1/kv"),
            )
        })?),
        None => serde_json::Value::Null,
    };
    Ok(braft_headers(&node, Json(value).into_response()))
}

pub(super) async fn post(State(node): State<Node>, q: Params, body: Body) -> ApiResult<Response> {
    let map = compat_map(&q)?;
    let key = param(&q, "key", "k")?.unwrap_or_else(|| BRAFT_DEFAULT.to_string());
    check_key(&key)?;
    let value = match q.bytes("value").or(q.bytes("v")) {
        Some(v) => v.to_vec(),
        None => read_value(&node, body).await?.to_vec(),
    };
    if value.len() > node.config().max_value_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "value_too_large",
            "value exceeds BRAFT_MAX_VALUE_BYTES",
        ));
    }
    let cmd = KvCommand::Put {
        map,
        key,
        value,
        precondition: None,
    };
    let version = match node.write::<KvService>(cmd).await? {
        KvOutput::Put { version } => version,
        other => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("unexpected {other:?}"),
            ))
        }
    };
    Ok(braft_headers(
        &node,
        Json(json!({ "version": version })).into_response(),
    ))
}

pub(super) async fn delete(State(node): State<Node>, q: Params) -> ApiResult<Response> {
    let map = compat_map(&q)?;
    let key = param(&q, "key", "k")?.unwrap_or_else(|| BRAFT_DEFAULT.to_string());
    check_key(&key)?;
    let cmd = KvCommand::Delete { map, key };
    match node.write::<KvService>(cmd).await? {
        KvOutput::Deleted { version, existed } => Ok(braft_headers(
            &node,
            Json(json!({ "version": version, "existed": existed })).into_response(),
        )),
        other => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("unexpected {other:?}"),
        )),
    }
}
