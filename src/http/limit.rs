//! The bound on requests in flight on HPORT (`BRAFT_MAX_REQUESTS`): past it a request
//! is answered at once with 503 and `Retry-After: 1` (a gRPC call with UNAVAILABLE),
//! rather than queued, so that a burst costs no memory and clients back off.
//!
//! Watches are long-lived and have their own bound (`BRAFT_MAX_WATCHERS`); probes must
//! answer under load. Neither takes a slot.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::ApiError;

pub(super) struct Limit {
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
}

/// Requests that never take a slot.
fn exempt(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/v1/watch") || path == "/braft.v1.Kv/Watch"
}

pub(super) async fn limit(State(limit): State<Arc<Limit>>, req: Request, next: Next) -> Response {
    if exempt(req.uri().path()) {
        return next.run(req).await;
    }
    let Ok(_slot) = limit.slots.clone().try_acquire_owned() else {
        let grpc = req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let message = format!("{} requests in flight (BRAFT_MAX_REQUESTS); retry shortly", limit.max);
        let mut resp = if grpc {
            tonic::Status::unavailable(message).into_http::<axum::body::Body>()
        } else {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message).into_response()
        };
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    };
    // The slot is held until the response head is ready; a streamed body (a backup)
    // is bounded by the connection and stream limits instead.
    next.run(req).await
}
