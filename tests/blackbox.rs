//! A black-box fuzzer against a live 3-node cluster of the real binary. It sends random
//! methods, paths, queries, headers and bodies; truncated and oversized requests;
//! malformed gRPC messages to the public and the peer services; and junk bytes to both
//! ports. Every request must end with a 4xx JSON error or a success (a gRPC status for
//! gRPC), never a 500 or a hang. Afterwards no node crashed or logged a panic, `/ready`
//! is 200 everywhere, the requests that had to be refused left the state hash as it
//! was, and every acknowledged write still reads back.
//!
//! `BRAFT_BLACKBOX_CASES` sets the number of cases (default 3000), and
//! `BRAFT_BLACKBOX_SEED` replays a run (the seed is printed).

mod common;

use std::time::{Duration, Instant};

use common::lab::Lab;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(30);
/// A request that takes longer than this hangs.
const HANG: Duration = Duration::from_secs(10);

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

const ROUTES: &[&str] = &[
    "/v1/kv/",
    "/v1/kv/fuzz",
    "/v1/kv",
    "/kv",
    "/v1/watch",
    "/v1/distribute/fz",
    "/distribute/fz",
    "/raft",
    "/v1/cluster/autopilot",
    "/v1/cluster/members",
    "/v1/cluster/members/12345",
    "/v1/cluster/members/12345/promote",
    "/v1/cluster/members/abc/demote",
    "/v1/cluster/hash",
    "/v1/snapshot",
    "/metrics",
    "/ui",
    "/nowhere",
    "/v1/kv/%FF%FE",
];
const PARAMS: &[&str] = &[
    "prev_version",
    "prev_value",
    "consistency",
    "prefix",
    "limit",
    "from",
    "map",
    "key",
    "value",
    "colour",
];
const GRPC: &[&str] = &[
    "/braft.v1.Kv/Put",
    "/braft.v1.Kv/Get",
    "/braft.v1.Kv/Delete",
    "/braft.v1.Kv/List",
    "/braft.v1.Distributor/Distribute",
    "/braft.v1.Admin/Members",
    "/braft.v1.Admin/Promote",
    "/braft.v1.Raft/Append",
    "/braft.v1.Raft/Vote",
    "/braft.v1.Raft/Forward",
    "/braft.v1.Raft/Join",
    "/braft.v1.Raft/Leave",
    "/braft.v1.Raft/Promise",
    "/braft.v1.Nope/Nope",
];

fn junk(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let n = rng.random_range(0..=max);
    (0..n).map(|_| rng.random()).collect()
}

fn word(rng: &mut StdRng) -> String {
    let pool = [
        "a",
        "%",
        "%2",
        "%zz",
        "%00",
        "..",
        "/",
        "é",
        "%E2%82",
        " ",
        "\u{7f}",
        "x".repeat(300).leak(),
    ];
    (0..rng.random_range(0..4))
        .map(|_| pool[rng.random_range(0..pool.len())])
        .collect()
}

/// A random query string from the known names, with random values.
fn query(rng: &mut StdRng) -> String {
    (0..rng.random_range(0..4))
        .map(|_| {
            let k = PARAMS[rng.random_range(0..PARAMS.len())];
            let v = match rng.random_range(0..4) {
                0 => rng.random::<u64>().to_string(),
                1 => "-1".to_string(),
                2 => word(rng),
                _ => "linearizable".to_string(),
            };
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// One request designed to be refused: it must get a 4xx and change nothing.
fn must_refuse(rng: &mut StdRng, max_value: usize) -> (reqwest::Method, String, Vec<u8>) {
    use reqwest::Method as M;
    let k = rng.random_range(0..10);
    match k {
        0 => (M::PUT, "/v1/kv/".into(), junk(rng, 64)),
        1 => (
            M::PUT,
            format!("/v1/kv/{}", "k".repeat(4097 + rng.random_range(0..100))),
            junk(rng, 8),
        ),
        2 => (M::PUT, "/v1/kv/fuzz?prev_version=x".into(), junk(rng, 8)),
        3 => (
            M::PUT,
            format!("/v1/kv/fuzz?{}=1&colour=red", PARAMS[rng.random_range(0..PARAMS.len())]),
            vec![],
        ),
        4 => (
            M::PUT,
            "/v1/kv/fuzz".into(),
            vec![b'v'; max_value + 1 + rng.random_range(0..1000)],
        ),
        5 => (M::PUT, "/v1/distribute/fz".into(), junk(rng, 200)),
        6 => (M::POST, "/v1/cluster/members".into(), junk(rng, 200)),
        7 => (M::DELETE, "/v1/cluster/members/notanumber".into(), vec![]),
        8 => (M::PATCH, "/v1/kv/fuzz".into(), junk(rng, 10)),
        _ => (M::PUT, "/v1/kv/%FF%FE".into(), junk(rng, 10)),
    }
}

/// Sends raw bytes to a port and reads whatever comes back, within [`HANG`].
async fn raw(addr: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
    let mut out = Vec::new();
    match tokio::time::timeout(HANG, s.read_to_end(&mut out)).await {
        Err(_) => Err(format!("{addr} hung on {} junk bytes", bytes.len())),
        Ok(_) => Ok(out),
    }
}

/// Checks one HTTP answer: no 5xx other than a JSON 503 (a leader change the fuzzer may
/// itself cause), and every error a JSON body with a `code`.
async fn judge(what: &str, head: bool, r: reqwest::Response) -> Result<u16, String> {
    let status = r.status().as_u16();
    if status >= 500 && status != 503 {
        return Err(format!("{what}: {status}"));
    }
    // A HEAD answer has no body by definition.
    if status < 400 || head {
        return Ok(status);
    }
    let body = tokio::time::timeout(HANG, r.text())
        .await
        .map_err(|_| format!("{what}: error body hung"))?
        .unwrap_or_default();
    let json: Option<serde_json::Value> = serde_json::from_str(&body).ok();
    let has_code = json.as_ref().is_some_and(|j| j["code"].is_string());
    if !has_code {
        return Err(format!("{what}: {status} without a JSON error: {body:.200}"));
    }
    if status >= 500 && status != 503 {
        return Err(format!("{what}: {status}: {body:.300}"));
    }
    Ok(status)
}

async fn state_hash(http: &reqwest::Client, lab: &Lab) -> (u64, u64) {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Ok(r) = http.get(lab.url(1, "/v1/cluster/hash")).send().await {
            if let Ok(j) = r.json::<serde_json::Value>().await {
                if j["agree"] == true {
                    if let (Some(i), Some(h)) = (j["index"].as_u64(), j["members"][0]["hash"].as_u64()) {
                        return (i, h);
                    }
                }
            }
        }
        assert!(Instant::now() < deadline, "no agreed hash\n{}", lab.logs(20));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_cluster_survives_random_and_malformed_requests() {
    let cases = env_num("BRAFT_BLACKBOX_CASES", 3000);
    let seed = env_num("BRAFT_BLACKBOX_SEED", rand::random());
    eprintln!("black-box fuzzer: {cases} cases, seed {seed} (BRAFT_BLACKBOX_SEED={seed} replays it)");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut lab = Lab::with_mode(3, false);
    let disc = format!(
        "static:{}",
        (1..=3).map(|i| lab.rpc_addr(i)).collect::<Vec<_>>().join(",")
    );
    let max_value = 4096;
    for i in 1..=3 {
        lab.start(
            i,
            &[
                ("BRAFT_DISCOVERY", disc.clone()),
                ("BRAFT_MAX_VALUE_BYTES", max_value.to_string()),
            ],
        );
    }
    let http = reqwest::Client::builder().timeout(HANG).build().unwrap();
    let h2 = reqwest::Client::builder()
        .timeout(HANG)
        .http2_prior_knowledge()
        .build()
        .unwrap();
    // Acknowledged writes, under a prefix the fuzzer never names.
    let mut acked = Vec::new();
    let deadline = Instant::now() + LIMIT;
    while acked.len() < 30 {
        let k = format!("acked/{}", acked.len());
        let v = format!("value-{}", rng.random::<u32>());
        let r = http
            .put(lab.url(1 + acked.len() % 3, &format!("/v1/kv/{k}")))
            .body(v.clone())
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == 200) {
            acked.push((k, v));
        } else {
            assert!(
                Instant::now() < deadline,
                "the cluster never took writes\n{}",
                lab.logs(20)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Phase 1: requests that must be refused leave the state hash as it was.
    let before = state_hash(&http, &lab).await;
    let mut failures = Vec::new();
    for n in 0..cases / 3 {
        let node = 1 + n as usize % 3;
        let (method, path, body) = must_refuse(&mut rng, max_value);
        let what = format!("{method} {:.80}", path);
        match http.request(method, lab.url(node, &path)).body(body).send().await {
            Err(e) if e.is_timeout() => failures.push(format!("{what}: hung")),
            Err(_) => {} // the node closed the connection: refused too
            Ok(r) => match judge(&what, false, r).await {
                Ok(s) if (400..500).contains(&s) => {}
                Ok(s) => failures.push(format!("{what}: {s}, but it had to be refused")),
                Err(e) => failures.push(e),
            },
        }
    }
    let after = state_hash(&http, &lab).await;
    assert_eq!(before, after, "refused requests changed the state (index, hash)");

    // Phase 2: anything, on both ports and both protocols.
    let methods = ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "BREW"];
    for n in 0..cases - cases / 3 {
        let node = 1 + n as usize % 3;
        let hport = format!("127.0.0.1:{}", lab.hport(node));
        match rng.random_range(0..10) {
            0..=4 => {
                let method =
                    reqwest::Method::from_bytes(methods[rng.random_range(0..methods.len())].as_bytes()).unwrap();
                let route = ROUTES[rng.random_range(0..ROUTES.len())];
                let path = format!("{route}{}?{}", word(&mut rng), query(&mut rng));
                let mut req = http.request(method.clone(), lab.url(node, &path));
                if rng.random_bool(0.3) {
                    req = req.header("Last-Event-ID", word(&mut rng).replace(['\u{7f}', 'é'], "1"));
                }
                if rng.random_bool(0.2) {
                    req = req.header("Content-Type", "application/grpc");
                }
                let body = if rng.random_bool(0.05) {
                    vec![b'b'; 2 << 20]
                } else {
                    junk(&mut rng, 512)
                };
                let what = format!("{method} {path:.100}");
                match req.body(body).send().await {
                    Err(e) if e.is_timeout() && !path.starts_with("/v1/watch") => {
                        failures.push(format!("{what}: hung"))
                    }
                    Err(_) => {}
                    Ok(r) => {
                        if let Err(e) = judge(&what, method == reqwest::Method::HEAD, r).await {
                            failures.push(e);
                        }
                    }
                }
            }
            5..=6 => {
                // A gRPC call with a malformed or random message, to either port.
                let path = GRPC[rng.random_range(0..GRPC.len())];
                let port = if rng.random_bool(0.5) {
                    lab.rport(node)
                } else {
                    lab.hport(node)
                };
                let mut msg = junk(&mut rng, 300);
                if rng.random_bool(0.5) && msg.len() >= 5 {
                    // A well-formed frame header around random bytes.
                    let len = (msg.len() - 5) as u32;
                    msg[0] = 0;
                    msg[1..5].copy_from_slice(&len.to_be_bytes());
                }
                let what = format!("gRPC {path} on {port}");
                match h2
                    .post(format!("http://127.0.0.1:{port}{path}"))
                    .header("content-type", "application/grpc")
                    .header("te", "trailers")
                    .body(msg)
                    .send()
                    .await
                {
                    Err(e) if e.is_timeout() => failures.push(format!("{what}: hung")),
                    Err(_) => {}
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let grpc_status = r.headers().get("grpc-status").is_some();
                        if s >= 500
                            || (s == 200 && !grpc_status && tokio::time::timeout(HANG, r.bytes()).await.is_err())
                        {
                            failures.push(format!("{what}: HTTP {s}"));
                        }
                    }
                }
            }
            7 => {
                let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
                bytes.extend(junk(&mut rng, 400));
                let port = if rng.random_bool(0.5) {
                    lab.rpc_addr(node)
                } else {
                    hport.clone()
                };
                if let Err(e) = raw(&port, &bytes).await {
                    failures.push(e);
                }
            }
            8 => {
                // A request cut short: it promises more body than it sends.
                let req = format!(
                    "PUT /v1/kv/fuzz HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\npartial",
                    rng.random_range(100..100_000)
                );
                if let Err(e) = raw(&hport, req.as_bytes()).await {
                    failures.push(e);
                }
            }
            _ => {
                let port = if rng.random_bool(0.5) {
                    lab.rpc_addr(node)
                } else {
                    hport.clone()
                };
                if let Err(e) = raw(&port, &junk(&mut rng, 2000)).await {
                    failures.push(e);
                }
            }
        }
    }

    for i in 1..=3 {
        assert!(
            lab.exited(i).is_none(),
            "node {i} died: {:?}\n{}",
            lab.exited(i),
            lab.logs(30)
        );
    }
    let logs: String = (1..=3)
        .map(|i| std::fs::read_to_string(lab.dir.path().join(format!("n{i}.log"))).unwrap_or_default())
        .collect();
    assert!(!logs.contains("panicked"), "a node logged a panic:\n{}", lab.logs(40));
    lab.wait_ready(&http, &[1, 2, 3], false).await;
    for (k, v) in &acked {
        let r = http.get(lab.url(2, &format!("/v1/kv/{k}"))).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), *v, "acknowledged write {k}");
    }
    assert!(
        failures.is_empty(),
        "{} bad answers (seed {seed}):\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("black-box fuzzer: {cases} cases, no crash, no panic, no 500, no hang");
}
