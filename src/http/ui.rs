//! `GET /ui`: the dashboard, one static page (`ui/index.html`, plain HTML, CSS and
//! JavaScript: no build step) embedded in the binary. It polls the node's own JSON API
//! (`/v1/cluster/members`, `/raft`, `/v1/cluster/autopilot`, `/v1/kv`) every second and
//! calls the admin API for its buttons, so it shows nothing the API does not.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("ui/index.html");

pub(super) async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}
