//! The bound on requests in flight on a node (`BRAFT_MAX_REQUESTS`), one count for
//! HPORT and for the public gRPC services on RPORT: past it a request is answered at
//! once with 503 and `Retry-After: 1` (a gRPC call with UNAVAILABLE), rather than
//! queued, so that a burst costs no memory and clients back off. Peer RPCs take no
//! slot: a busy client plane must not starve replication.
//!
//! Watches are long-lived and have their own bound (`BRAFT_MAX_WATCHERS`); probes must
//! answer under load. Neither takes a slot.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ApiError;

/// The node's request slots, shared by its ports.
pub(crate) struct Limit {
    slots: Arc<Semaphore>,
    max: usize,
}

impl Limit {
    pub fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A slot for a request to `path`: `Ok(None)` for a request that takes none,
    /// `Err` (the refusal's message) when all are taken.
    pub(crate) fn take(&self, path: &str) -> Result<Option<OwnedSemaphorePermit>, String> {
        if exempt(path) {
            return Ok(None);
        }
        match self.slots.clone().try_acquire_owned() {
            Ok(slot) => Ok(Some(slot)),
            Err(_) => Err(format!(
                "{} requests in flight (BRAFT_MAX_REQUESTS); retry shortly",
                self.max
            )),
        }
    }
}

/// Requests that never take a slot.
fn exempt(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/v1/watch") || path == "/braft.v1.Kv/Watch"
}

/// The gRPC refusal: UNAVAILABLE, with `Retry-After`.
pub(crate) fn grpc_refusal(message: String) -> axum::http::Response<tonic::body::Body> {
    let mut resp = tonic::Status::unavailable(message).into_http::<tonic::body::Body>();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

pub(super) async fn limit(State(limit): State<Arc<Limit>>, req: Request, next: Next) -> Response {
    let _slot = match limit.take(req.uri().path()) {
        Ok(slot) => slot,
        Err(message) => return refusal(&req, message),
    };
    // The slot is held until the response head is ready; a streamed body (a backup)
    // is bounded by the connection and stream limits instead.
    next.run(req).await
}

fn refusal(req: &Request, message: String) -> Response {
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        return grpc_refusal(message).map(axum::body::Body::new);
    }
    let mut resp = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message).into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}
