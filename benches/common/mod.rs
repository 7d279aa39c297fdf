//! What the benchmarks share: a 3-node cluster in this process on loopback, and a
//! closed-loop write load through [`braft::Client`].

// Each benchmark uses a different part of what is shared here.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use braft::config::{Config, Discovery};
use braft::{Client, KvService, Node};
use tokio::net::TcpListener;

pub fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Three nodes with default settings (fsync on), `tweak` applied to each.
pub async fn cluster(dir: &std::path::Path, tweak: fn(&mut Config)) -> Vec<Node> {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push((
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
        ));
    }
    let peers: Vec<String> = listeners
        .iter()
        .map(|(r, _)| r.local_addr().unwrap().to_string())
        .collect();
    let mut starts = Vec::new();
    for (i, (r, h)) in listeners.into_iter().enumerate() {
        let (peers, data) = (peers.clone(), dir.join(format!("n{i}")));
        starts.push(
            Node::builder()
                .config(Config::default())
                .configure(move |c| {
                    c.discovery = Discovery::Static(peers);
                    c.data_dir = Some(data);
                    tweak(c);
                })
                .service(KvService::default())
                .rpc_listener(r)
                .http_listener(h)
                .start(),
        );
    }
    futures::future::join_all(starts)
        .await
        .into_iter()
        .map(|n| n.expect("node starts"))
        .collect()
}

/// Writes through `client` with `concurrency` writers for `secs`; writes/s.
pub async fn load(client: &Client, concurrency: usize, secs: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let mut writers = Vec::new();
    for w in 0..concurrency {
        let (client, done) = (client.clone(), done.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                n += 1;
                if client
                    .put(&format!("bench/{w}/{}", n % 100), vec![b'x'; 64])
                    .await
                    .is_ok()
                {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let started = Instant::now();
    for w in writers {
        let _ = w.await;
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// The median of the runs.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
