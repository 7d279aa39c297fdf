//! The HTTP API on HPORT (axum): the clean `/v1/kv` routes (with Consul-style blocking
//! reads), `/v1/watch` (Server-Sent Events, in `watch.rs`), braft's `/kv` and `/raft`,
//! the admin API (`/v1/cluster/*`, `cluster.rs`), backups (`/v1/snapshot`,
//! `backup.rs`), the work distributor, `/metrics`, and `/health` and `/ready` for probes.
//!
//! Every error is `{"error": "<what was wrong>", "code": "<machine code>"}` with a fitting
//! status. Bad input changes nothing: it is rejected before anything is proposed.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

mod backup;
mod cluster;
mod distribute;
mod metrics;
mod ui;
mod watch;

use std::time::Duration;

use crate::error::Error;
use crate::kv::{KvCommand, KvOutput, KvQuery, KvQueryOutput, KvService, Precondition};
use crate::node::{Consistency, Node};

/// The longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 4096;
/// The default and the largest `limit` of a key listing.
const LIST_DEFAULT: usize = 1000;
const LIST_MAX: usize = 10_000;
/// The longest (and default) `wait` of a blocking read.
const WAIT_MAX: Duration = Duration::from_secs(300);

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            extra: Default::default(),
        }
    }
    fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    fn with(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert("error".into(), self.message.into());
        body.insert("code".into(), self.code.into());
        body.extend(self.extra);
        (self.status, Json(serde_json::Value::Object(body))).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Unavailable { ref leader, .. } | Error::Indeterminate { ref leader, .. } => {
                let code = if matches!(e, Error::Indeterminate { .. }) {
                    // Still a 503 (no quorum within the timeout), but the code tells the
                    // client this write may yet apply: a blind retry is not safe for CAS.
                    "indeterminate"
                } else {
                    "unavailable"
                };
                let leader = leader.clone();
                let mut err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, e.to_string());
                if let Some(l) = leader {
                    err = err
                        .with("leader", json!(l.http_addr))
                        .with("leader_rpc", json!(l.rpc_addr))
                        .with("leader_id", json!(l.id.to_string()));
                }
                err
            }
            Error::ShuttingDown => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", e.to_string()),
            Error::Service(ref s) => {
                let code = s.code.clone();
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "service_error", e.to_string())
                    .with("service_code", json!(code))
            }
            Error::UnknownService(_) => ApiError::new(StatusCode::NOT_FOUND, "unknown_service", e.to_string()),
            Error::BadRequest(_) => ApiError::bad("bad_request", e.to_string()),
            Error::Config(_) | Error::Io(_) | Error::Fatal(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The key of a `/v1/kv/{key}` route, percent-decoded here so that a bad encoding gets
/// our JSON error rather than the framework's plain text.
pub struct Key(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Key {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.path().strip_prefix("/v1/kv/").unwrap_or("");
        let key = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| ApiError::bad("bad_key", "key is not valid UTF-8 once percent-decoded"))?;
        Ok(Key(key.into_owned()))
    }
}

/// Query parameters, percent-decoded to bytes (no `+`-as-space): `prev_value` compares
/// raw bytes, so it must not pass through a lossy text decoding.
pub struct Params(Vec<(String, Vec<u8>)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let mut out = Vec::new();
        for pair in parts.uri.query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_encoding::percent_decode_str(k)
                .decode_utf8()
                .map_err(|_| ApiError::bad("bad_parameter", "parameter name is not valid UTF-8"))?;
            out.push((k.into_owned(), percent_encoding::percent_decode_str(v).collect()));
        }
        Ok(Params(out))
    }
}

impl Params {
    fn bytes(&self, name: &str) -> Option<&[u8]> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
    }
    /// A text parameter; invalid UTF-8 is a 400.
    fn get(&self, name: &str) -> ApiResult<Option<&str>> {
        match self.bytes(name) {
            None => Ok(None),
            Some(b) => std::str::from_utf8(b)
                .map(Some)
                .map_err(|_| ApiError::bad("bad_parameter", format!("{name} is not valid UTF-8"))),
        }
    }
    fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }
}

/// Checks a key: not empty, at most 4 KiB.
pub fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("key must not be empty".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "key of {} bytes exceeds the {MAX_KEY_BYTES}-byte limit",
            key.len()
        ));
    }
    Ok(())
}

fn check_key(key: &str) -> ApiResult<()> {
    validate_key(key).map_err(|m| ApiError::bad("bad_key", m))
}

/// braft's routes and ours, over `node`.
pub fn router(node: Node) -> Router {
    let router = Router::new()
        .route("/v1/kv", get(list_keys))
        .route("/v1/kv/", get(empty_key).put(empty_key).delete(empty_key))
        .route("/v1/kv/{*key}", get(get_key).put(put_key).delete(delete_key))
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .route(
            "/kv",
            get(compat_get).post(compat_post).put(compat_post).delete(compat_delete),
        )
        .route("/v1/watch", get(watch::watch))
        .route("/v1/distribute/{key}", get(distribute::get).put(distribute::put))
        .route("/distribute/{key}", get(distribute::compat_get))
        .route("/raft", get(raft_status))
        .route("/v1/cluster/autopilot", get(autopilot))
        .route("/v1/cluster/members", get(cluster::members).post(cluster::add))
        .route("/v1/cluster/members/{id}", axum::routing::delete(cluster::remove))
        .route(
            "/v1/cluster/members/{id}/promote",
            axum::routing::post(cluster::promote),
        )
        .route("/v1/cluster/members/{id}/demote", axum::routing::post(cluster::demote))
        .route("/v1/cluster/leader", axum::routing::post(cluster::transfer))
        .route("/v1/cluster/hash", get(cluster::hash))
        .route("/v1/cluster/snapshot", axum::routing::post(cluster::snapshot))
        .route("/v1/snapshot", get(backup::backup))
        .route("/ui", get(ui::page))
        .route("/ui/", get(ui::page))
        .route("/metrics", get(metrics::metrics))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(axum::middleware::from_fn_with_state(node.clone(), applied_index_header));
    let router = if node.config().metrics {
        router.route_layer(axum::middleware::from_fn_with_state(node.clone(), metrics::record))
    } else {
        router
    };
    router.with_state(node)
}

/// Every `/v1/kv` answer, a 404 included, carries `X-Braft-Index`: the applied index, so a
/// client can start a blocking read on a key that does not exist yet. (A handler that
/// read a newer version through the leader has set it already.)
async fn applied_index_header(
    State(node): State<Node>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let kv = req.uri().path().starts_with("/v1/kv");
    let mut resp = next.run(req).await;
    if kv && !resp.headers().contains_key(INDEX_HEADER) {
        resp.headers_mut()
            .insert(INDEX_HEADER, HeaderValue::from(node.applied_index()));
    }
    resp
}

const INDEX_HEADER: &str = "x-braft-index";

/// Serves until the node shuts down, then finishes in-flight requests.
pub(crate) async fn serve(node: Node, listener: crate::transport::Listen, user_routes: Router) {
    let mut shutdown = node.shutdown_signal();
    let app = user_routes
        .merge(router(node.clone()))
        .merge(crate::grpc::public_routes(&node));
    // Small request/response exchanges: without TCP_NODELAY, Nagle's algorithm and
    // delayed ACKs add ~40 ms to a keep-alive client's next request.
    use axum::serve::ListenerExt;
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    let result = match listener {
        crate::transport::Listen::Tcp(l) => {
            let l = l.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(l, app).with_graceful_shutdown(stop).await
        }
        crate::transport::Listen::Custom(l) => axum::serve(l, app).with_graceful_shutdown(stop).await,
    };
    if let Err(e) = result {
        tracing::error!("HTTP server stopped: {e}");
    }
}

async fn empty_key() -> ApiError {
    ApiError::bad("bad_key", "key must not be empty")
}

fn parse_consistency(q: &Params) -> ApiResult<Consistency> {
    match q.get("consistency")? {
        None => Ok(Consistency::Linearizable),
        Some(c) => c.parse().map_err(|e: String| ApiError::bad("bad_parameter", e)),
    }
}

/// Reads the body, enforcing BRAFT_MAX_VALUE_BYTES with a JSON 413.
async fn read_value(node: &Node, body: Body) -> ApiResult<Bytes> {
    let max = node.config().max_value_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "value_too_large",
            format!("value exceeds BRAFT_MAX_VALUE_BYTES ({max} bytes)"),
        )
    };
    axum::body::to_bytes(body, max).await.map_err(|e| {
        let limit = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if limit {
            too_large()
        } else {
            ApiError::bad("bad_body", format!("cannot read body: {e}"))
        }
    })
}

async fn put_key(
    State(node): State<Node>,
    Key(key): Key,
    q: Params,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    check_key(&key)?;
    let max = node.config().max_value_bytes;
    if let Some(len) = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
    {
        if len > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "value_too_large",
                format!("value of {len} bytes exceeds BRAFT_MAX_VALUE_BYTES ({max} bytes)"),
            ));
        }
    }
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
async fn get_key(State(node): State<Node>, Key(key): Key, q: Params) -> ApiResult<Response> {
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
        let mut watcher = node.watcher("", &key, Some(index + 1));
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

async fn read_value_of(
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

async fn delete_key(State(node): State<Node>, Key(key): Key) -> ApiResult<Response> {
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

async fn list_keys(State(node): State<Node>, q: Params) -> ApiResult<Response> {
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
async fn compat_get(State(node): State<Node>, q: Params) -> ApiResult<Response> {
    let map = compat_map(&q)?;
    let key = param(&q, "key", "k")?.unwrap_or_else(|| BRAFT_DEFAULT.to_string());
    check_key(&key)?;
    let consistency = parse_consistency(&q)?;
    let query = KvQuery::Get { map, key: key.clone() };
    let value = match read_value_of(&node, &query, consistency).await? {
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

async fn compat_post(State(node): State<Node>, q: Params, body: Body) -> ApiResult<Response> {
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

async fn compat_delete(State(node): State<Node>, q: Params) -> ApiResult<Response> {
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

async fn raft_status(State(node): State<Node>) -> Response {
    Json(node.cluster_status().await).into_response()
}

/// `GET /v1/cluster/autopilot`: the leader's autopilot report (asked of the leader when
/// this node does not lead).
async fn autopilot(State(node): State<Node>) -> ApiResult<Response> {
    Ok(Json(node.cluster_autopilot().await?).into_response())
}

/// 200 once this node belongs to the cluster, knows a leader and has applied everything
/// committed; and also while it is a fresh node still forming a new cluster, so that
/// Kubernetes discovery (which lists ready pods only) can find it — before formation
/// there is no cluster that could serve anyway.
async fn ready(State(node): State<Node>) -> Response {
    let st = node.raft_status();
    let member = st.members.contains_key(&node.id());
    let serving = member && st.leader.is_some() && st.applied_index >= st.commit_index;
    let forming = st.pristine && !node.cluster_seen();
    let ok = serving || forming;
    let body = Json(json!({
        "ready": ok,
        "phase": if serving { "serving" } else if forming { "forming" } else if member { "catching-up" } else { "joining" },
        "leader": st.leader.map(|l| l.to_string()),
        "commitIndex": st.commit_index,
        "appliedIndex": st.applied_index,
    }));
    if ok {
        (StatusCode::OK, body).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}
