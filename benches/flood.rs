//! A node's memory under a connection flood: three `braft` processes (the real binary)
//! on loopback; node 1 gets `BENCH_IDLE` idle TCP connections (default 2,000) and then
//! `BENCH_CONCURRENCY` writers (default 512), each on its own HTTP/1.1 connection, for
//! `BENCH_SECS` (default 10). Prints node 1's resident memory (VmRSS from /proc) idle,
//! with the idle connections open, at its peak under load (VmHWM), and after, with the
//! writes/s and how many writes failed (a 503 past BRAFT_MAX_REQUESTS counts as failed).
//!
//! `cargo bench --bench flood`.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::env;

fn status_kb(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::main]
async fn main() {
    let idle: usize = env("BENCH_IDLE", 2000);
    let concurrency: usize = env("BENCH_CONCURRENCY", 512);
    let secs: u64 = env("BENCH_SECS", 10);
    let base: u16 = env("BENCH_PORT", 28000);
    let dir = tempfile::tempdir().unwrap();
    let disc = format!(
        "static:{}",
        (0..3)
            .map(|i| format!("127.0.0.1:{}", base + i * 10))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut nodes = Nodes(Vec::new());
    for i in 0..3u16 {
        let child = Command::new(env!("CARGO_BIN_EXE_braft"))
            .env("BRAFT_DISCOVERY", &disc)
            .env("BRAFT_IP", "127.0.0.1")
            .env("BRAFT_RPORT", (base + i * 10).to_string())
            .env("BRAFT_HPORT", (base + i * 10 + 2).to_string())
            .env("BRAFT_DATA_DIR", dir.path().join(format!("n{i}")))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start braft");
        nodes.0.push(child);
    }
    let pid = nodes.0[0].id();
    let url = format!("http://127.0.0.1:{}", base + 2);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .put(format!("{url}/v1/kv/warmup"))
        .body("x")
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "the cluster did not take a write");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = status_kb(pid, "VmRSS:");

    let mut conns = Vec::with_capacity(idle);
    for _ in 0..idle {
        conns.push(tokio::net::TcpStream::connect(("127.0.0.1", base + 2)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_conns = status_kb(pid, "VmRSS:");

    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let until = Instant::now() + Duration::from_secs(secs);
    let mut writers = Vec::new();
    for w in 0..concurrency {
        let (http, url, ok, failed) = (http.clone(), url.clone(), ok.clone(), failed.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                n += 1;
                let r = http
                    .put(format!("{url}/v1/kv/flood/{w}/{}", n % 50))
                    .body(vec![b'x'; 64])
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let started = Instant::now();
    let mut rss_max = 0;
    while Instant::now() < until {
        rss_max = rss_max.max(status_kb(pid, "VmRSS:"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for w in writers {
        let _ = w.await;
    }
    let rate = ok.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let hwm = status_kb(pid, "VmHWM:");
    drop(conns);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = status_kb(pid, "VmRSS:");
    println!(
        "node 1 RSS: idle {}; with {idle} idle connections {}",
        mb(rss_idle),
        mb(rss_conns)
    );
    println!(
        "under {concurrency} writers for {secs} s (connections still open): sampled max {}, peak (VmHWM) {}",
        mb(rss_max),
        mb(hwm)
    );
    println!("after: {}", mb(rss_after));
    println!(
        "writes: {rate:.0}/s acknowledged, {} failed or refused",
        failed.load(Ordering::Relaxed)
    );
}
