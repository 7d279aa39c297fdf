//! `GET /v1/watch`: the KV service's changes as Server-Sent Events, so a browser's
//! `EventSource` resumes by itself (it sends `Last-Event-ID`, the last version it saw).
//!
//! Each change is `id: <version>`, `event: put|delete`, `data: {"key", "version",
//! "value": <base64>}` (no value for a delete). While nothing matches, `event: progress`
//! with `{"version": N}` comes at least every 5 s: every change through N was sent. A start
//! older than the node's history gets `event: error` with `{"code": "compacted",
//! "oldest": M}` and the stream ends; resume from M, or re-read and watch from there.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures::StreamExt;
use serde_json::json;

use super::{ApiError, ApiResult, Params};
use crate::node::Node;
use crate::watch::{EventKind, WatchError, WatchEvent, WatchItem, Watcher, PROGRESS_EVERY};

/// The start version of a watch request: `Last-Event-ID` (a reconnect: resume after
/// it) wins over `from`; neither means "the next change".
pub(super) fn start_version(q: &Params, headers: &HeaderMap, from_param: &str) -> ApiResult<Option<u64>> {
    let number = |what: &str, v: &str| {
        v.trim().parse::<u64>().map_err(|_| {
            ApiError::bad(
                "bad_parameter",
                format!("{what} '{v}' is not a version (a non-negative integer)"),
            )
        })
    };
    if let Some(id) = headers.get("last-event-id") {
        let id = id
            .to_str()
            .map_err(|_| ApiError::bad("bad_parameter", "Last-Event-ID is not text"))?;
        // The next version after the last one seen; u64::MAX has none (found by the
        // watch_resume fuzz target: the addition overflowed, a panic in debug builds).
        let last = number("Last-Event-ID", id)?;
        return last
            .checked_add(1)
            .map(Some)
            .ok_or_else(|| ApiError::bad("bad_parameter", format!("Last-Event-ID '{id}' has no next version")));
    }
    match q.get(from_param)? {
        None => Ok(None),
        Some(v) => Ok(Some(number(from_param, v)?)),
    }
}

/// `GET /v1/watch?prefix=<p>&from=<version>`.
pub(super) async fn watch(State(node): State<Node>, q: Params, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(other) = q.names().find(|k| !["prefix", "from"].contains(k)) {
        return Err(ApiError::bad("bad_parameter", format!("unknown parameter '{other}'")));
    }
    let prefix = q.get("prefix")?.unwrap_or_default().to_string();
    let from = start_version(&q, &headers, "from")?;
    if let Err(m) = node.watch_capacity() {
        let mut e = ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "too_many_watchers", m).into_response();
        e.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
        return Ok(e);
    }
    let watcher = node.watcher("", &prefix, from);
    let stream = futures::stream::unfold((watcher, false), |(mut w, done)| async move {
        if done {
            return None;
        }
        let (events, done) = next_events(&mut w).await?;
        Some((futures::stream::iter(events), (w, done)))
    })
    .flatten();
    Ok(Sse::new(stream).into_response())
}

/// The next SSE events of a watcher, and whether the stream ends after them; `None`
/// when it ends now (the node is shutting down).
async fn next_events(w: &mut Watcher) -> Option<(Vec<Result<Event, Infallible>>, bool)> {
    match w.next_or_progress(PROGRESS_EVERY).await {
        Ok(WatchItem::Events(batch)) => Some((batch.iter().map(|e| Ok(sse_event(e))).collect(), false)),
        Ok(WatchItem::Progress(version)) => {
            let data = json!({ "version": version }).to_string();
            Some((vec![Ok(Event::default().event("progress").data(data))], false))
        }
        Err(WatchError::Compacted { oldest }) => {
            let data = json!({"code": "compacted", "oldest": oldest}).to_string();
            Some((vec![Ok(Event::default().event("error").data(data))], true))
        }
        Err(WatchError::Closed) => None,
    }
}

fn sse_event(e: &WatchEvent) -> Event {
    let (kind, data) = match e.kind {
        EventKind::Put => {
            let value = e.value.as_deref().unwrap_or_default();
            let value = base64::engine::general_purpose::STANDARD.encode(value);
            ("put", json!({"key": e.key, "version": e.version, "value": value}))
        }
        EventKind::Delete => ("delete", json!({"key": e.key, "version": e.version})),
    };
    Event::default()
        .id(e.version.to_string())
        .event(kind)
        .data(data.to_string())
}
