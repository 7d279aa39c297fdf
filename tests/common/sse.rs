//! A small Server-Sent Events reader for `/v1/watch`, and the watch workload's client:
//! a watcher that follows one node and resumes with `Last-Event-ID` whenever its
//! connection drops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct Sse {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

/// Reads SSE events from `url` (resuming after `last_id` when given), handing each to
/// `each` until it returns false; an error when the stream could not start or ended.
pub async fn read_sse(
    client: &reqwest::Client,
    url: &str,
    last_id: Option<u64>,
    mut each: impl FnMut(Sse) -> bool,
) -> Result<(), String> {
    let mut req = client.get(url);
    if let Some(id) = last_id {
        req = req.header("Last-Event-ID", id.to_string());
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    if resp.status() != 200 {
        return Err(format!("status {}", resp.status()));
    }
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut ev = Sse {
                id: None,
                event: "message".into(),
                data: Value::Null,
            };
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    ev.id = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("event:") {
                    ev.event = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    ev.data = serde_json::from_str(v.trim()).unwrap_or(Value::Null);
                }
            }
            if !each(ev) {
                return Ok(());
            }
        }
    }
    Err("stream ended".into())
}

/// What one watcher saw.
#[derive(Debug, Default, Clone)]
pub struct WatchLog {
    /// (version, key, kind) in arrival order.
    pub events: Vec<(u64, String, String)>,
    /// The node reported `compacted`: its history no longer covered this watcher.
    pub compacted: bool,
    pub reconnects: usize,
}

/// Follows `base`'s `/v1/watch?prefix=…&from=…` until `stop`, resuming with
/// `Last-Event-ID` after every dropped connection (a killed, paused or cut-off node).
pub async fn watch_client(
    http: reqwest::Client,
    base: String,
    prefix: String,
    from: u64,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<WatchLog>>,
) {
    let url = format!("{base}/v1/watch?prefix={prefix}&from={from}");
    let mut last: Option<u64> = None;
    while !stop.load(Ordering::Relaxed) {
        let mut compacted = false;
        let r = read_sse(&http, &url, last, |ev| {
            match ev.event.as_str() {
                "put" | "delete" => {
                    let version = ev.data["version"].as_u64().unwrap_or(0);
                    let key = ev.data["key"].as_str().unwrap_or_default().to_string();
                    last = Some(version);
                    log.lock().unwrap().events.push((version, key, ev.event));
                }
                "error" => compacted = ev.data["code"] == "compacted",
                _ => {}
            }
            !stop.load(Ordering::Relaxed)
        })
        .await;
        if compacted {
            log.lock().unwrap().compacted = true;
            return;
        }
        if r.is_err() {
            log.lock().unwrap().reconnects += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
