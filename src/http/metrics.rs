//! `GET /metrics` (Prometheus, OpenMetrics text) and the middleware that counts and times
//! every HTTP request by route pattern and status code.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::metrics::{HttpLabels, RouteLabels};
use crate::node::Node;

/// `GET /metrics`: OpenMetrics for clients that ask for it (a Prometheus server does),
/// the classic text format otherwise.
pub(super) async fn metrics(State(node): State<Node>, headers: axum::http::HeaderMap) -> Response {
    if !node.config().metrics {
        return super::ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "metrics_off",
            "metrics are off on this node (BRAFT_METRICS=false)",
        )
        .into_response();
    }
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let (body, content_type) = if openmetrics {
        (
            node.metrics().encode(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        (node.metrics().encode_text(), "text/plain; version=0.0.4; charset=utf-8")
    };
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Counts and times each request under its route pattern (`/v1/kv/{*key}`), never the
/// raw path, so that the number of series stays bounded; unmatched paths count as
/// `unmatched`.
pub(super) async fn record(State(node): State<Node>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_string();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let m = node.metrics();
    m.http_duration
        .get_or_create(&RouteLabels { route: route.clone() })
        .observe(started.elapsed().as_secs_f64());
    m.http_requests
        .get_or_create(&HttpLabels {
            route,
            code: resp.status().as_u16(),
        })
        .inc();
    resp
}
