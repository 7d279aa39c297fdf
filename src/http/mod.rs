//! The HTTP API on HPORT (axum): the clean `/v1/kv` routes (with Consul-style blocking
//! reads), `/v1/watch` (Server-Sent Events, in `watch.rs`), braft's `/kv` and `/raft`,
//! the admin API (`/v1/cluster/*`, `cluster.rs`), backups (`/v1/snapshot`,
//! `backup.rs`), the work distributor, `/metrics`, and `/health` and `/ready` for probes.
//!
//! Every error is `{"error": "<what was wrong>", "code": "<machine code>"}` with a fitting
//! status. Bad input changes nothing: it is rejected before anything is proposed.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

mod backup;
mod cluster;
mod compat;
mod distribute;
mod drain;
mod guard;
mod kv;
pub(crate) mod limit;
mod metrics;
mod ui;
mod watch;

use crate::error::Error;
use crate::kv::{KvCommand, KvOutput, KvQuery, KvQueryOutput, KvService, Precondition};
use crate::node::{Consistency, Node};

pub use crate::kv::{validate_key, MAX_KEY_BYTES};

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
            Error::DiskFull(_) => ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "disk_full", e.to_string()),
            Error::Service(ref s) => {
                let code = s.code.clone();
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "service_error", e.to_string())
                    .with("service_code", json!(code))
            }
            Error::UnknownService(_) => ApiError::new(StatusCode::NOT_FOUND, "unknown_service", e.to_string()),
            Error::BadRequest(_) => ApiError::bad("bad_request", e.to_string()),
            Error::Access(ref d) => {
                let status = match d {
                    crate::access::Denied::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
                    crate::access::Denied::PermissionDenied(_) => StatusCode::FORBIDDEN,
                };
                ApiError::new(status, d.code(), e.to_string())
            }
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

impl Key {
    /// The key of a `/v1/kv/{key}` path.
    pub(crate) fn decode(path: &str) -> ApiResult<Key> {
        let raw = path.strip_prefix("/v1/kv/").unwrap_or("");
        let key = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| ApiError::bad("bad_key", "key is not valid UTF-8 once percent-decoded"))?;
        Ok(Key(key.into_owned()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Key {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Key::decode(parts.uri.path())
    }
}

/// Query parameters, percent-decoded to bytes (no `+`-as-space): `prev_value` compares
/// raw bytes, so it must not pass through a lossy text decoding.
pub struct Params(Vec<(String, Vec<u8>)>);

impl Params {
    /// Parses a query string (without the `?`).
    pub(crate) fn parse(query: &str) -> ApiResult<Params> {
        let mut out = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_encoding::percent_decode_str(k)
                .decode_utf8()
                .map_err(|_| ApiError::bad("bad_parameter", "parameter name is not valid UTF-8"))?;
            out.push((k.into_owned(), percent_encoding::percent_decode_str(v).collect()));
        }
        Ok(Params(out))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Params::parse(parts.uri.query().unwrap_or(""))
    }
}

impl Params {
    pub(crate) fn bytes(&self, name: &str) -> Option<&[u8]> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
    }
    /// A text parameter; invalid UTF-8 is a 400.
    pub(crate) fn get(&self, name: &str) -> ApiResult<Option<&str>> {
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

fn check_key(key: &str) -> ApiResult<()> {
    validate_key(key).map_err(|m| ApiError::bad("bad_key", m))
}

/// braft's routes and ours, over `node`.
pub fn router(node: Node) -> Router {
    let router = Router::new()
        .route("/v1/kv", get(kv::list_keys))
        .route("/v1/kv/", get(kv::empty_key).put(kv::empty_key).delete(kv::empty_key))
        .route(
            "/v1/kv/{*key}",
            get(kv::get_key).put(kv::put_key).delete(kv::delete_key),
        )
        .route(
            "/kv",
            get(compat::get)
                .post(compat::post)
                .put(compat::post)
                .delete(compat::delete),
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
        // Last: it covers only the routes registered before it (found by the black-box
        // fuzzer: every route added after /v1/kv answered a bare 405).
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
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

/// Makes every error a JSON error: axum's own rejections (a path segment that is not
/// UTF-8, say) answer in plain text, which clients parsing `{"code", "error"}` cannot
/// read (found by the black-box fuzzer). gRPC answers are left alone.
async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let plain = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10).await.unwrap_or_default();
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let mut out = ApiError::new(status, code, String::from_utf8_lossy(&text).trim().to_string()).into_response();
    for (k, v) in parts.headers.iter() {
        if k != axum::http::header::CONTENT_TYPE && k != axum::http::header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

/// How long shutdown waits for in-flight requests and open streams to finish.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves until the node shuts down, then finishes in-flight requests.
///
/// Served with hyper-util's connection builder rather than `axum::serve`, which has no
/// way to set the limits a public port needs: the size of a request head
/// (`BRAFT_MAX_HEADER_BYTES`, 431 beyond), the time to send it (`BRAFT_HEADER_TIMEOUT`,
/// against slow-loris clients) and HTTP/2 streams per connection (`BRAFT_MAX_STREAMS`).
/// Connections arrive through the port's accept loop, which bounds their number and
/// runs TLS ([`crate::transport::serve_accepted`]).
pub(crate) async fn serve(
    node: Node,
    listener: crate::transport::Listen,
    user_routes: Router,
    requests: Arc<limit::Limit>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let mut shutdown = node.shutdown_signal();
    // The token check and the request limit cover braft's routes and the application's
    // alike (gRPC on this port included).
    let app = user_routes
        .merge(router(node.clone()))
        .merge(crate::grpc::public_routes(&node))
        .layer(axum::middleware::from_fn_with_state(node.clone(), guard::guard))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn(drain::drain_unread))
        .layer(axum::middleware::from_fn_with_state(requests, limit::limit));
    let c = node.config();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_millis(c.header_timeout_ms))
        .max_buf_size(c.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(c.max_streams)
        .max_header_list_size(c.max_header_bytes as u32);
    let mut listener = match listener {
        crate::transport::Listen::Custom(l) => l,
        crate::transport::Listen::Tcp(l) => {
            match crate::transport::serve_accepted(crate::transport::Listen::Tcp(l), None, c.max_connections) {
                Ok(crate::transport::Listen::Custom(l)) => l,
                _ => {
                    tracing::error!("HTTP server: cannot accept");
                    return;
                }
            }
        }
    };
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let conn = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            c = axum::serve::Listener::accept(&mut listener) => c.0,
        };
        let svc = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(conn), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("HTTP connection: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("HTTP server: connections still open after {SHUTDOWN_GRACE:?}; closing them");
    }
}

/// For the fuzz targets.
#[cfg(test)]
pub(crate) fn parse_consistency_of(q: &Params) -> ApiResult<Consistency> {
    parse_consistency(q)
}

/// For the fuzz targets: a watch's start from `from` and `Last-Event-ID`.
#[cfg(test)]
pub(crate) fn start_version_of(q: &Params, headers: &axum::http::HeaderMap) -> ApiResult<Option<u64>> {
    watch::start_version(q, headers, "from")
}

fn parse_consistency(q: &Params) -> ApiResult<Consistency> {
    match q.get("consistency")? {
        None => Ok(Consistency::Linearizable),
        Some(c) => c.parse().map_err(|e: String| ApiError::bad("bad_parameter", e)),
    }
}

/// Reads the body, enforcing BRAFT_MAX_VALUE_BYTES with a JSON 413. A body declared
/// too large is refused before any of it is read; what is left unread is drained
/// before the answer goes out (see `drain`).
async fn read_value(node: &Node, body: Body) -> ApiResult<Bytes> {
    use futures::StreamExt;
    let max = node.config().max_value_bytes;
    let too_large = |len: Option<u64>| {
        let what = len.map_or("value".to_string(), |n| format!("value of {n} bytes"));
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "value_too_large",
            format!("{what} exceeds BRAFT_MAX_VALUE_BYTES ({max} bytes)"),
        )
    };
    let bad = |e: axum::Error| ApiError::bad("bad_body", format!("cannot read body: {e}"));
    let declared = axum::body::HttpBody::size_hint(&body).exact();
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large(declared));
    }
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(bad)?;
        if buf.len() + chunk.len() > max {
            return Err(too_large(None));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
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
