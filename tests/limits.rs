//! Bounded resources: what a node does when clients ask for more than its limits —
//! connections, requests in flight, watchers, request heads and the time to send them.
//! Each test sets one limit low and checks the node refuses cleanly past it, keeps
//! serving within it, and recovers once the load goes.

mod common;

use std::time::Duration;

use common::{serial, Cluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(20);

/// Sends a bare HTTP/1.1 request and reads the answer to the end (the request closes
/// the connection), or gives up after `within`.
async fn exchange(s: &mut TcpStream, req: &[u8], within: Duration) -> Option<String> {
    s.write_all(req).await.ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(within, s.read_to_end(&mut out)).await.ok()?.ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// With room for 16 connections, 16 idle ones fill the port: a 17th is not served
/// while they stay, and is served as soon as one of them closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait_for_a_free_slot() {
    let _g = serial().await;
    let c = Cluster::start(1, |cfg| cfg.max_connections = 16).await;
    c.wait_leader(LIMIT).await;
    let addr = c.members[0].http;
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // Give the accept loop time to take all sixteen.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut late = TcpStream::connect(addr).await.unwrap();
    let waiting = tokio::spawn(async move { exchange(&mut late, HEALTH, LIMIT).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !waiting.is_finished(),
        "the 17th connection must wait while 16 are open"
    );
    drop(idle.pop());
    let answer = waiting.await.unwrap().expect("served once a slot is free");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    c.shutdown().await;
}

/// With one request slot, a blocking read holds it: the next request gets 503 with
/// `Retry-After` at once (over HTTP, and UNAVAILABLE over gRPC on either port: one bound
/// per node), the probes still answer, and when the slot frees the next request is
/// served, on either port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_limit_get_503_with_retry_after() {
    let _g = serial().await;
    let c = Cluster::start(1, |cfg| cfg.max_requests = 1).await;
    c.wait_leader(LIMIT).await;
    let v = c.put_ok(0, "k", "v").await;
    let hold = c.client.get(c.url(0, &format!("/v1/kv/k?index={v}&wait=3s"))).send();
    let held = tokio::spawn(hold);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = c.client.get(c.url(0, "/v1/kv/k")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "overloaded", "{body}");
    // gRPC on either port counts against the same bound.
    for port in [c.members[0].http, c.members[0].rpc] {
        let grpc = braft::Client::new([port.to_string()], Duration::from_millis(300)).unwrap();
        let e = grpc.get("k", braft::Consistency::Stale).await.unwrap_err();
        assert!(e.to_string().contains("BRAFT_MAX_REQUESTS"), "{port}: {e}");
    }
    assert_eq!(c.client.get(c.url(0, "/health")).send().await.unwrap().status(), 200);
    assert_eq!(c.client.get(c.url(0, "/ready")).send().await.unwrap().status(), 200);
    assert_eq!(
        held.await.unwrap().unwrap().status(),
        200,
        "the held read ends normally"
    );
    assert_eq!(c.get(0, "k", "linearizable").await.as_deref(), Some("v"));
    let grpc = braft::Client::new([c.members[0].rpc.to_string()], Duration::from_secs(2)).unwrap();
    assert_eq!(
        grpc.get("k", braft::Consistency::Stale).await.unwrap().map(|v| v.value),
        Some(b"v".to_vec())
    );
    c.shutdown().await;
}

/// A client that starts a request and never finishes its headers (slow loris) is cut
/// off after BRAFT_HEADER_TIMEOUT; one whose headers exceed BRAFT_MAX_HEADER_BYTES gets
/// 431. The node serves normal requests throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_oversized_request_heads_are_refused() {
    let _g = serial().await;
    let c = Cluster::start(1, |cfg| {
        cfg.header_timeout_ms = 500;
        cfg.max_header_bytes = 8192;
    })
    .await;
    c.wait_leader(LIMIT).await;
    let addr = c.members[0].http;

    let mut loris = TcpStream::connect(addr).await.unwrap();
    loris
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), loris.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "a stalled request head must be cut off");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");

    let mut big = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(20_000)
    );
    let answer = exchange(&mut big, req.as_bytes(), LIMIT).await.unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    let mut fine = TcpStream::connect(addr).await.unwrap();
    let answer = exchange(&mut fine, HEALTH, LIMIT).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    c.shutdown().await;
}

/// With room for two watches, a third is refused (503 over HTTP, RESOURCE_EXHAUSTED
/// over gRPC) and allowed once one of the two closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_past_the_limit_are_refused() {
    let _g = serial().await;
    let c = Cluster::start(1, |cfg| cfg.max_watchers = 2).await;
    c.wait_leader(LIMIT).await;
    let open = || c.client.get(c.url(0, "/v1/watch?prefix=a")).send();
    let first = open().await.unwrap();
    let second = open().await.unwrap();
    assert_eq!((first.status().as_u16(), second.status().as_u16()), (200, 200));
    let third = open().await.unwrap();
    assert_eq!(third.status(), 503);
    assert_eq!(third.headers()["retry-after"], "1");
    let body: serde_json::Value = third.json().await.unwrap();
    assert_eq!(body["code"], "too_many_watchers");
    let grpc = braft::Client::new([c.members[0].rpc.to_string()], Duration::from_secs(2)).unwrap();
    let e = grpc
        .watch("a", None)
        .await
        .err()
        .expect("a third watch over gRPC is refused");
    assert!(e.to_string().contains("BRAFT_MAX_WATCHERS"), "{e}");
    drop(first);
    c.wait_for("the closed watch to be counted out", LIMIT, |c| {
        c.node(0).watch_capacity().is_ok()
    })
    .await;
    assert_eq!(open().await.unwrap().status(), 200);
    c.shutdown().await;
}

/// A snapshot stream on the peer port is bounded by the size its first chunk announces:
/// one announced over the node's limit is refused before it is read, and one that runs
/// past what it announced is cut off as soon as it does; nothing received is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_streams_are_bounded_by_their_announced_size() {
    use braft::pb::raft_client::RaftClient;
    use braft::pb::SnapshotChunk;
    let _g = serial().await;
    let c = Cluster::start(1, |_| {}).await;
    c.wait_leader(LIMIT).await;
    let mut peer = RaftClient::connect(format!("http://{}", c.members[0].rpc))
        .await
        .unwrap();
    let chunk = |size: u64, data: Vec<u8>| SnapshotChunk {
        meta: b"not decoded before the size checks".to_vec(),
        data,
        size,
    };
    let huge = peer
        .install_snapshot(tokio_stream::iter(vec![chunk(u64::MAX / 2, vec![])]))
        .await
        .unwrap_err();
    assert_eq!(huge.code(), tonic::Code::ResourceExhausted, "{huge:?}");
    let longer = peer
        .install_snapshot(tokio_stream::iter(vec![chunk(10, vec![1; 6]), chunk(0, vec![2; 6])]))
        .await
        .unwrap_err();
    assert_eq!(longer.code(), tonic::Code::ResourceExhausted, "{longer:?}");
    assert!(
        longer.message().contains("longer than the 10 bytes announced"),
        "{longer:?}"
    );
    let shorter = peer
        .install_snapshot(tokio_stream::iter(vec![chunk(10, vec![1; 4])]))
        .await
        .unwrap_err();
    assert_eq!(shorter.code(), tonic::Code::InvalidArgument, "{shorter:?}");
    // Each was received into a temporary file, removed when it was refused.
    let left = common::snapshot_files(&c.members[0].dir);
    assert!(left.iter().all(|f| !f.ends_with(".tmp")), "{left:?}");
    // The node still serves.
    c.put_ok(0, "k", "v").await;
    c.shutdown().await;
}
