//! The token check for HTTP requests (see [`crate::access`]): a middleware in front of
//! every route. gRPC requests on this port are left to the guard around each gRPC
//! service ([`crate::access::Guarded`]), which answers in gRPC's own terms.

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::access::{Denied, Role};
use crate::node::Node;

/// The role a request needs; `None` for the open routes (probes, the dashboard's page
/// itself, and `/metrics` unless `BRAFT_METRICS_AUTH`).
pub(super) fn role(method: &Method, path: &str, metrics_auth: bool) -> Option<Role> {
    let reads = method == Method::GET || method == Method::HEAD;
    match path {
        "/health" | "/ready" | "/ui" | "/ui/" => None,
        "/metrics" => metrics_auth.then_some(Role::Read),
        "/v1/snapshot" => Some(Role::Admin),
        p if p.starts_with("/v1/cluster/") => Some(if reads { Role::Read } else { Role::Admin }),
        // Keys, watches, the distributor, braft's /kv and /raft, and the application's
        // own routes: reading needs `read`, anything else `write`.
        _ => Some(if reads { Role::Read } else { Role::Write }),
    }
}

pub(super) async fn guard(State(node): State<Node>, mut req: Request, next: Next) -> Response {
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let access = node.access();
    if grpc || !access.enabled() {
        return next.run(req).await;
    }
    let Some(need) = role(req.method(), req.uri().path(), access.metrics_auth) else {
        return next.run(req).await;
    };
    let auth = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    match access.check(auth, need) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(denied) => {
            let unauthenticated = matches!(denied, Denied::Unauthenticated(_));
            let mut resp = ApiError::from(crate::error::Error::Access(denied)).into_response();
            if unauthenticated {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            }
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_roles() {
        assert_eq!(role(&Method::GET, "/health", false), None);
        assert_eq!(role(&Method::GET, "/metrics", false), None);
        assert_eq!(role(&Method::GET, "/metrics", true), Some(Role::Read));
        assert_eq!(role(&Method::GET, "/v1/kv/a", false), Some(Role::Read));
        assert_eq!(role(&Method::PUT, "/v1/kv/a", false), Some(Role::Write));
        assert_eq!(role(&Method::POST, "/kv", false), Some(Role::Write));
        assert_eq!(role(&Method::GET, "/v1/cluster/members", false), Some(Role::Read));
        assert_eq!(role(&Method::POST, "/v1/cluster/members", false), Some(Role::Admin));
        assert_eq!(role(&Method::DELETE, "/v1/cluster/members/7", false), Some(Role::Admin));
        assert_eq!(role(&Method::GET, "/v1/snapshot", false), Some(Role::Admin));
        assert_eq!(role(&Method::PUT, "/v1/distribute/jobs", false), Some(Role::Write));
    }
}
