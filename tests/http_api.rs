//! The HTTP API's shapes and its answers to bad input, on a one-node cluster. Every bad
//! request gets its status and a JSON `{error, code}`, changes nothing, and leaves the node
//! healthy.

mod common;

use std::time::Duration;

use common::{serial, Cluster};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(20);

async fn json(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

/// Each kind of bad input answers its status code with a JSON error, and the node keeps
/// serving afterwards with its data unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_rejected_cleanly_and_changes_nothing() {
    let _g = serial().await;
    let c = Cluster::start(1, |cfg| cfg.max_value_bytes = 1024).await;
    c.wait_leader(LIMIT).await;
    c.put_ok(0, "keep", "original").await;
    let http = &c.client;
    let long_key = "k".repeat(4097);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        ("empty key", http.put(c.url(0, "/v1/kv/")).body("x"), 400, "bad_key"),
        ("empty key get", http.get(c.url(0, "/v1/kv/")), 400, "bad_key"),
        (
            "key over 4 KiB",
            http.put(c.url(0, &format!("/v1/kv/{long_key}"))).body("x"),
            400,
            "bad_key",
        ),
        (
            "value over the limit",
            http.put(c.url(0, "/v1/kv/keep")).body(vec![b'v'; 1025]),
            413,
            "value_too_large",
        ),
        (
            "bad prev_version",
            http.put(c.url(0, "/v1/kv/keep?prev_version=abc")).body("x"),
            400,
            "bad_parameter",
        ),
        (
            "both preconditions",
            http.put(c.url(0, "/v1/kv/keep?prev_version=1&prev_value=a")).body("x"),
            400,
            "bad_parameter",
        ),
        (
            "unknown parameter",
            http.put(c.url(0, "/v1/kv/keep?colour=red")).body("x"),
            400,
            "bad_parameter",
        ),
        (
            "bad consistency",
            http.get(c.url(0, "/v1/kv/keep?consistency=eventual")),
            400,
            "bad_parameter",
        ),
        ("bad limit", http.get(c.url(0, "/v1/kv?limit=0")), 400, "bad_parameter"),
        (
            "huge limit",
            http.get(c.url(0, "/v1/kv?limit=99999999")),
            400,
            "bad_parameter",
        ),
        ("absent key", http.get(c.url(0, "/v1/kv/absent")), 404, "not_found"),
        ("unknown route", http.get(c.url(0, "/v2/nothing")), 404, "not_found"),
        (
            "compat with an empty key",
            http.post(c.url(0, "/kv?map=m&key=")),
            400,
            "bad_key",
        ),
        (
            "key not UTF-8",
            http.put(c.url(0, "/v1/kv/%FF%FE")).body("x"),
            400,
            "bad_key",
        ),
        (
            "method not allowed",
            http.post(c.url(0, "/v1/kv/keep")).body("x"),
            405,
            "method_not_allowed",
        ),
    ];
    for (what, req, status, code) in cases {
        let (s, body) = json(req.send().await.unwrap()).await;
        assert_eq!(s, status, "{what}: {body}");
        assert_eq!(body["code"], code, "{what}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {body}");
    }
    // A chunked body with no Content-Length is limited as well.
    let stream = futures::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![b'v'; 100])));
    let r = http
        .put(c.url(0, "/v1/kv/keep"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    // Nothing changed, and the node still serves.
    assert_eq!(c.get(0, "keep", "linearizable").await.as_deref(), Some("original"));
    assert_eq!(http.get(c.url(0, "/health")).send().await.unwrap().status(), 200);
    c.put_ok(0, "after", "fine").await;
    c.shutdown().await;
}

/// Compare-and-set by value compares raw bytes: a percent-encoded binary value matches,
/// and `+` is a plus sign, not a space.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_by_value_compares_raw_bytes() {
    let _g = serial().await;
    let c = Cluster::start(1, |_| {}).await;
    c.wait_leader(LIMIT).await;
    let put = |q: &str, body: Vec<u8>| c.client.put(c.url(0, &format!("/v1/kv/bin{q}"))).body(body).send();
    assert_eq!(put("", vec![0xff, 0x00, b'+']).await.unwrap().status(), 200);
    assert_eq!(
        put("?prev_value=%FF%00%2B", b"a+b".to_vec()).await.unwrap().status(),
        200
    );
    assert_eq!(put("?prev_value=a b", b"no".to_vec()).await.unwrap().status(), 409);
    assert_eq!(put("?prev_value=a+b", b"yes".to_vec()).await.unwrap().status(), 200);
    assert_eq!(c.get(0, "bin", "linearizable").await.as_deref(), Some("yes"));
    c.shutdown().await;
}

/// Delete reports existence; listing is sorted and prefix-bounded; versions are log indexes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_list_shapes() {
    let _g = serial().await;
    let c = Cluster::start(1, |_| {}).await;
    c.wait_leader(LIMIT).await;
    for k in ["b/2", "a/1", "b/1", "c"] {
        c.put_ok(0, k, "v").await;
    }
    let (s, body) = json(
        c.client
            .get(c.url(0, "/v1/kv?prefix=b/&limit=10"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["keys"], serde_json::json!(["b/1", "b/2"]));
    let (s, body) = json(c.client.delete(c.url(0, "/v1/kv/c")).send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(body["existed"], true);
    let v1 = body["version"].as_u64().unwrap();
    let (_, body) = json(c.client.delete(c.url(0, "/v1/kv/c")).send().await.unwrap()).await;
    assert_eq!(body["existed"], false);
    assert!(body["version"].as_u64().unwrap() > v1);
    assert_eq!(c.get(0, "c", "linearizable").await, None);
    c.shutdown().await;
}

/// braft's `/kv` routes (with `m`/`k`/`v` aliases) go through Raft and answer with
/// braft's headers; `/raft` has braft's camelCase fields; `/ready` turns 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn braft_compatible_routes() {
    let _g = serial().await;
    let c = Cluster::start(3, |_| {}).await;
    c.wait_leader(LIMIT).await;
    let r = c
        .client
        .post(c.url(1, "/kv?m=users&k=ada&v=lovelace"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for h in ["Braft-IP", "Braft-ID", "Braft-Host"] {
        assert!(r.headers().contains_key(h), "missing header {h}");
    }
    // braft's GET /kv answers the value as JSON, and null when missing.
    let (s, body) = json(c.client.get(c.url(2, "/kv?map=users&key=ada")).send().await.unwrap()).await;
    assert_eq!((s, body), (200, serde_json::json!("lovelace")));
    let (s, _) = json(c.client.delete(c.url(0, "/kv?map=users&key=ada")).send().await.unwrap()).await;
    assert_eq!(s, 200);
    let (s, body) = json(c.client.get(c.url(2, "/kv?map=users&key=ada")).send().await.unwrap()).await;
    assert_eq!((s, body), (200, serde_json::Value::Null));
    // Map and key default to `default`, as in braft's ServeKV; that map is braft's, not
    // the one /v1/kv serves.
    let r = c.client.post(c.url(0, "/kv?v=plain")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (s, body) = json(c.client.get(c.url(1, "/kv")).send().await.unwrap()).await;
    assert_eq!((s, body), (200, serde_json::json!("plain")));
    let (s, body) = json(c.client.get(c.url(1, "/kv?m=default&k=default")).send().await.unwrap()).await;
    assert_eq!((s, body), (200, serde_json::json!("plain")));
    assert_eq!(c.get(1, "default", "linearizable").await, None);
    // Bytes that are not text stay readable raw on /v1/kv only.
    c.client.post(c.url(0, "/kv?k=bin&v=%FF%FE")).send().await.unwrap();
    let (s, body) = json(c.client.get(c.url(0, "/kv?k=bin")).send().await.unwrap()).await;
    assert_eq!((s, body["code"].as_str()), (422, Some("not_text")));

    let (s, raft) = json(c.client.get(c.url(1, "/raft")).send().await.unwrap()).await;
    assert_eq!(s, 200);
    for f in [
        "currentLeader",
        "discovery",
        "leaderAddr",
        "leaderID",
        "nodeNum",
        "nodes",
        "raftServers",
        "term",
        "commitIndex",
        "appliedIndex",
        "lastLogIndex",
        "snapshotIndex",
    ] {
        assert!(raft.get(f).is_some(), "/raft lacks {f}: {raft}");
    }
    assert_eq!(raft["nodeNum"], 3);
    assert!(raft["discovery"].as_str().unwrap().starts_with("static://"));
    let nodes = raft["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    for n in nodes {
        for f in [
            "serverID",
            "address",
            "raftState",
            "leader",
            "startTime",
            "duration",
            "pid",
            "rss",
            "pcpu",
            "raftLogSum",
            "raftPort",
            "httpPort",
            "appVersion",
            "gitCommit",
            "buildTime",
        ] {
            assert!(n.get(f).is_some(), "node entry lacks {f}: {n}");
        }
        assert!(n.get("error").is_none(), "every node answered: {n}");
        // RFC 3339, like startTime: 2026-12-02T01:02:03.000Z.
        let built = n["buildTime"].as_str().unwrap();
        assert!(
            built.len() == 24 && built.ends_with('Z') && built.as_bytes()[10] == b'T',
            "{built}"
        );
    }
    assert_eq!(nodes.iter().filter(|n| n["raftState"] == "Leader").count(), 1);
    for s in raft["raftServers"].as_array().unwrap() {
        assert_eq!(s["suffrage"], "Voter");
    }
    // Ready once a leader is known and everything committed is applied.
    let deadline = std::time::Instant::now() + LIMIT;
    while c.client.get(c.url(2, "/ready")).send().await.unwrap().status() != 200 {
        assert!(std::time::Instant::now() < deadline, "/ready never turned 200");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.shutdown().await;
}

/// A member that does not answer shows in `/raft` with its address and an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_status_reports_unreachable_members() {
    let _g = serial().await;
    let mut c = Cluster::start(3, |_| {}).await;
    let leader = c.wait_leader(LIMIT).await;
    let down = (leader + 1) % 3;
    let addr = c.members[down].rpc.to_string();
    c.stop(down).await;
    let (_, raft) = json(c.client.get(c.url(leader, "/raft")).send().await.unwrap()).await;
    let entry = raft["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["address"] == addr.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("no entry for {addr}: {raft}"));
    assert!(entry["error"].as_str().is_some_and(|e| !e.is_empty()), "{entry}");
    c.shutdown().await;
}

/// A client that sends a whole body before reading anything (no
/// `Expect: 100-continue`, as Python's urllib does) still reads the JSON error when
/// the node answers early — a value over the limit (413), a bad parameter (400) —
/// rather than a broken pipe or a reset, with a declared length and with a chunked body
/// alike; and the same connection's next request is served (keep-alive survives).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_reaches_a_client_that_sent_its_whole_body_first() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _g = serial().await;
    let c = Cluster::start(1, |_| {}).await;
    c.wait_leader(LIMIT).await;
    let body = vec![b'v'; 2 << 20];
    let cases = [
        ("/v1/kv/big", "413", "value_too_large"),
        ("/v1/kv/small?bogus=1", "400", "bad_parameter"),
    ];
    for (chunked, (path, status, code)) in [false, true].into_iter().flat_map(|c| cases.map(|k| (c, k))) {
        let mut s = tokio::net::TcpStream::connect(c.members[0].http).await.unwrap();
        let mut req = Vec::new();
        if chunked {
            req.extend(format!("PUT {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").as_bytes());
            for part in body.chunks(64 << 10) {
                req.extend(format!("{:x}\r\n", part.len()).as_bytes());
                req.extend(part);
                req.extend(b"\r\n");
            }
            req.extend(b"0\r\n\r\n");
        } else {
            req.extend(
                format!(
                    "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            req.extend(&body);
        }
        req.extend(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(&req).await.expect("the whole body is accepted");
        let mut resp = Vec::new();
        tokio::time::timeout(LIMIT, s.read_to_end(&mut resp))
            .await
            .expect("answered in time")
            .expect("no reset");
        let text = String::from_utf8_lossy(&resp);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status}")),
            "chunked={chunked} {path}: {text}"
        );
        assert!(text.contains(&format!("\"code\":\"{code}\"")), "{text}");
        assert!(
            text.contains("\"status\":\"ok\""),
            "the next request on the connection: {text}"
        );
    }
    c.shutdown().await;
}
