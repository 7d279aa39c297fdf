//! Reading what a client sent before answering it early.
//!
//! A handler, an extractor or the token check may answer before reading a request's
//! body: a value over the limit (413), a bad parameter (400), a missing token (401).
//! hyper then closes a connection that still has unread input, which resets it, and a
//! client that writes its whole body before reading (no `Expect: 100-continue`:
//! Python's urllib, for one) sees a broken pipe instead of the answer. So the body is
//! handed on wrapped ([`Tracked`]), and what the handler leaves unread is read and
//! thrown away here before the answer goes out, up to [`DRAIN_BYTES`] and
//! [`DRAIN_TIME`]; past either bound the connection is closed after the answer, as
//! before. Keep-alive survives. HTTP/2 (gRPC) needs none of this: a stream is reset
//! on its own.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, Version};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

/// How much of an unread body is read and thrown away, and for how long.
const DRAIN_BYTES: usize = 64 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Where a [`Tracked`] body leaves what was not read when it is dropped.
type Left = Arc<Mutex<Option<Body>>>;

/// A request body that, dropped before its end, hands the rest back.
struct Tracked {
    inner: Option<Body>,
    left: Left,
    ended: bool,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let r = Pin::new(inner).poll_frame(cx);
        // A broken body is not worth draining either.
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.ended = true;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(|b| b.size_hint()).unwrap_or_default()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if !self.ended {
            if let Some(rest) = self.inner.take() {
                *self.left.lock().unwrap_or_else(|p| p.into_inner()) = Some(rest);
            }
        }
    }
}

/// Whether an HTTP/1 request announces a body.
fn has_body(req: &Request) -> bool {
    let h = req.headers();
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v != "0")
}

pub(super) async fn drain_unread(req: Request, next: Next) -> Response {
    if req.version() >= Version::HTTP_2 || !has_body(&req) {
        return next.run(req).await;
    }
    let left: Left = Arc::default();
    let req = req.map(|inner| {
        Body::new(Tracked {
            inner: Some(inner),
            left: left.clone(),
            ended: false,
        })
    });
    let resp = next.run(req).await;
    let rest = left.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(rest) = rest {
        drain(rest).await;
    }
    resp
}

/// Reads and discards a body, within the bounds.
async fn drain(body: Body) {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut seen = 0;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while seen <= DRAIN_BYTES {
            match stream.next().await {
                Some(Ok(chunk)) => seen += chunk.len(),
                _ => return,
            }
        }
    })
    .await;
}
