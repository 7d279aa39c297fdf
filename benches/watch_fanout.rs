//! The watch fan-out cost: write throughput of a 3-node cluster (in this process, on
//! loopback) with 0, 10 and 100 idle SSE watchers connected to every node.
//!
//! `cargo bench --bench watch_fanout` (or `scripts/bench-watch.sh`). Knobs:
//! `BENCH_SECS` (per run, default 5), `BENCH_CONCURRENCY` (default 32),
//! `BENCH_WATCHERS` (default `0,10,100`). Idle watchers watch a prefix no write touches,
//! so they cost only their wake-ups: every applied entry wakes each of them to scan the
//! new events. It prints one line per run and the ratios to the 0-watcher run.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use braft::{Client, Node};
use common::{cluster, env, load};
use futures::StreamExt;

/// Opens `n` idle SSE watchers on each node; they run until `stop`.
async fn idle_watchers(nodes: &[Node], n: usize, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for node in nodes {
        for _ in 0..n {
            let url = format!("http://{}/v1/watch?prefix=idle/", node.peer().http_addr);
            let (http, stop) = (http.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let Ok(resp) = http.get(url).send().await else { return };
                let mut body = resp.bytes_stream();
                while !stop.load(Ordering::Relaxed) {
                    if body.next().await.is_none() {
                        return;
                    }
                }
            }));
        }
    }
    tasks
}

#[tokio::main]
async fn main() {
    let secs: u64 = env("BENCH_SECS", 5);
    let concurrency: usize = env("BENCH_CONCURRENCY", 32);
    let counts: Vec<usize> = std::env::var("BENCH_WATCHERS")
        .unwrap_or_else(|_| "0,10,100".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let nodes = cluster(tmp.path(), |_| {}).await;
    let endpoints: Vec<String> = nodes.iter().map(|n| n.peer().rpc_addr.clone()).collect();
    let client = Client::connect(endpoints).await.expect("the cluster answers");
    // Warm up: elections settle, channels connect.
    load(&client, concurrency, 1).await;
    let mut results = Vec::new();
    for &n in &counts {
        let stop = Arc::new(AtomicBool::new(false));
        let watchers = idle_watchers(&nodes, n, stop.clone()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rate = load(&client, concurrency, secs).await;
        println!(
            "watch fan-out: {n:>4} idle watchers per node ({:>4} in all): {rate:>8.0} writes/s (c={concurrency}, {secs} s)",
            n * nodes.len()
        );
        results.push((n, rate));
        stop.store(true, Ordering::Relaxed);
        for w in watchers {
            w.abort();
        }
    }
    if let Some((_, base)) = results.first().copied() {
        let ratios: Vec<String> = results.iter().map(|(n, r)| format!("{n}: {:.2}", r / base)).collect();
        println!("ratio to {} watchers: {}", results[0].0, ratios.join(", "));
    }
    for n in nodes {
        n.shutdown().await;
    }
}
