//! What recording metrics costs: write throughput of a 3-node cluster (in this process,
//! on loopback, fsync on) with metrics on, scraped every second on every node (a busy
//! Prometheus scrapes every 15 s), against the same cluster with `BRAFT_METRICS=false`.
//!
//! `cargo bench --bench metrics_cost`. Knobs: `BENCH_SECS` (per run, default 5),
//! `BENCH_CONCURRENCY` (default 32), `BENCH_ROUNDS` (default 3). Writes go to the leader. The two settings run in
//! turns (on, off, on, off, ...), each on a fresh cluster, so that drift on a shared
//! machine falls on both; it prints every run, the medians and their ratio.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use braft::Client;
use common::{cluster, env, load, median};

/// One run on a fresh cluster; writes/s.
async fn run(metrics: bool, secs: u64, concurrency: usize) -> f64 {
    let tmp = tempfile::tempdir().unwrap();
    let nodes = if metrics {
        cluster(tmp.path(), |c| c.metrics = true).await
    } else {
        cluster(tmp.path(), |c| c.metrics = false).await
    };
    let endpoints: Vec<String> = nodes.iter().map(|n| n.peer().rpc_addr.clone()).collect();
    Client::connect(endpoints).await.expect("the cluster answers");
    // Writes go to the leader: whether the client's first endpoint happens to lead
    // (or forwards) would otherwise split the runs into two speeds.
    let leader = loop {
        if let Some(n) = nodes.iter().find(|n| n.is_leader()) {
            break n.peer().rpc_addr.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let client = Client::connect([leader]).await.expect("the leader answers");
    load(&client, concurrency, 1).await;
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = metrics.then(|| {
        let urls: Vec<String> = nodes
            .iter()
            .map(|n| format!("http://{}/metrics", n.peer().http_addr))
            .collect();
        let stop = stop.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                for u in &urls {
                    let r = http.get(u).send().await.expect("scrape");
                    assert!(r.status().is_success());
                    let _ = r.bytes().await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    });
    let rate = load(&client, concurrency, secs).await;
    stop.store(true, Ordering::Relaxed);
    if let Some(s) = scraper {
        s.await.unwrap();
    }
    for n in nodes {
        n.shutdown().await;
    }
    rate
}

#[tokio::main]
async fn main() {
    let secs: u64 = env("BENCH_SECS", 5);
    let concurrency: usize = env("BENCH_CONCURRENCY", 32);
    let rounds: usize = env("BENCH_ROUNDS", 3);
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        for metrics in [true, false] {
            let rate = run(metrics, secs, concurrency).await;
            println!(
                "round {round}: metrics {:<3} {rate:>8.0} writes/s (c={concurrency}, {secs} s)",
                if metrics { "on" } else { "off" }
            );
            if metrics { &mut on } else { &mut off }.push(rate);
        }
    }
    let (on, off) = (median(on), median(off));
    println!(
        "median: metrics on {on:.0} writes/s, off {off:.0} writes/s; on/off = {:.3}",
        on / off
    );
}
