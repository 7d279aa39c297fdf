//! Counts every gRPC request by method and status code (`braft_grpc_requests_total`).
//!
//! The code comes from the response's `grpc-status` header: a handler's error is sent
//! "trailers-only", so it is there; a success carries its status in the trailers, and
//! counts as `Ok`. (An error in the middle of a stream is counted as `Ok` too.)

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http;

use crate::metrics::{GrpcLabels, Metrics};

#[derive(Clone)]
pub(super) struct CountLayer(pub Arc<Metrics>);

impl<S> tower::Layer<S> for CountLayer {
    type Service = Count<S>;
    fn layer(&self, inner: S) -> Count<S> {
        Count {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub(super) struct Count<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// The method label: braft's and reflection's methods by name; anything else (a path
/// nobody serves, a user's service) as `other`, so that the series stay bounded.
fn method(path: &str) -> String {
    if path.starts_with("/braft.v1.") || path.starts_with("/grpc.reflection.") {
        path.to_string()
    } else {
        "other".to_string()
    }
}

impl<S, B, RB> tower::Service<http::Request<B>> for Count<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = method(req.uri().path());
        let metrics = self.metrics.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            if let Ok(resp) = &r {
                let code = resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok()?.parse::<i32>().ok())
                    .unwrap_or(0);
                let code = format!("{:?}", tonic::Code::from(code));
                metrics.grpc_requests.get_or_create(&GrpcLabels { method, code }).inc();
            }
            r
        })
    }
}
