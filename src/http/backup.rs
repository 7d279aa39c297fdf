//! `GET /v1/snapshot`: a consistent backup of the whole state as a file (etcd's
//! `snapshot save`), with `X-Braft-Index` and `X-Braft-Term` saying what it covers. The
//! leader takes it (see [`crate::node::Backup`]); a follower redirects there (307).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::ApiResult;
use crate::error::Error;
use crate::node::Node;

/// Backups stream in chunks of this size.
const CHUNK: usize = 1 << 20;

pub(super) async fn backup(State(node): State<Node>) -> ApiResult<Response> {
    let b = match node.backup().await {
        Ok(b) => b,
        Err(Error::Unavailable { leader: Some(l), .. }) if !l.http_addr.is_empty() => {
            let to = format!("{}://{}/v1/snapshot", node.config().http_scheme(), l.http_addr);
            return Ok((
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, to.clone())],
                axum::Json(serde_json::json!({
                    "code": "not_leader",
                    "error": "backups are taken by the leader",
                    "leader": l.http_addr,
                    "location": to,
                })),
            )
                .into_response());
        }
        Err(e) => return Err(e.into()),
    };
    let len = b.bytes.len();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = b.bytes.chunks(CHUNK).map(|c| Ok(c.to_vec())).collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"braft-backup-{}.snap\"", b.index),
            ),
            (header::HeaderName::from_static("x-braft-index"), b.index.to_string()),
            (header::HeaderName::from_static("x-braft-term"), b.term.to_string()),
        ],
        Body::from_stream(futures::stream::iter(chunks)),
    )
        .into_response())
}
