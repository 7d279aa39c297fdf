//! Watch and blocking reads on real nodes: Server-Sent Events on every node through a
//! leader kill and restart, explicit compaction, `Last-Event-ID` resumption, and
//! Consul-style blocking GETs.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use braft::watch::WatchError;
use common::sse::{read_sse, Sse};
use common::{serial, Cluster};
use futures::StreamExt;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(20);

/// A change as a writer had it acknowledged, or as a watcher saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    version: u64,
    key: String,
    /// `None`: a delete.
    value: Option<String>,
}

fn change_of(ev: &Sse) -> Option<Change> {
    let key = ev.data["key"].as_str()?.to_string();
    let version = ev.data["version"].as_u64()?;
    let value = match ev.event.as_str() {
        "put" => {
            let b64 = ev.data["value"].as_str()?;
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            Some(String::from_utf8(bytes).ok()?)
        }
        "delete" => None,
        _ => return None,
    };
    assert_eq!(
        ev.id.as_deref(),
        Some(version.to_string().as_str()),
        "id is the version"
    );
    Some(Change { version, key, value })
}

/// Writers put and delete under `w/` through random nodes while the leader is killed and
/// restarted. A watcher on every node (they resume with `Last-Event-ID` whenever their
/// node goes away) sees every acknowledged change exactly once, in version order, with
/// its value; and the watchers agree on every version they share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_on_every_node_see_every_acknowledged_change_once_in_order() {
    let _g = serial().await;
    let mut c = Cluster::start(3, |_| {}).await;
    c.wait_leader(LIMIT).await;
    let base = c.node(0).applied_index() + 1;
    let urls: Vec<String> = (0..3).map(|i| c.url(i, "")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writers_stop = Arc::new(AtomicBool::new(false));

    // Watchers: one per node, reconnecting to the same node with Last-Event-ID.
    let seen: Vec<Arc<Mutex<Vec<Change>>>> = (0..3).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    let progress: Vec<Arc<Mutex<u64>>> = (0..3).map(|_| Arc::new(Mutex::new(0))).collect();
    let mut watchers = Vec::new();
    let reconnects = Arc::new(Mutex::new(0usize));
    for i in 0..3 {
        let (seen, progress, stop, client) = (seen[i].clone(), progress[i].clone(), stop.clone(), c.client.clone());
        let url = format!("{}/v1/watch?prefix=w/&from={base}", urls[i]);
        let reconnects = reconnects.clone();
        watchers.push(tokio::spawn(async move {
            let mut last: Option<u64> = None;
            while !stop.load(Ordering::Relaxed) {
                let r = read_sse(&client, &url, last, |ev| {
                    if let Some(ch) = change_of(&ev) {
                        last = Some(ch.version);
                        *progress.lock().unwrap() = ch.version;
                        seen.lock().unwrap().push(ch);
                    } else if ev.event == "progress" {
                        let v = ev.data["version"].as_u64().unwrap();
                        let mut p = progress.lock().unwrap();
                        *p = (*p).max(v);
                    } else {
                        panic!("node {i}: unexpected event {ev:?}");
                    }
                    !stop.load(Ordering::Relaxed)
                })
                .await;
                if r.is_err() {
                    *reconnects.lock().unwrap() += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }

    // Writers: puts and deletes of 10 keys through random nodes.
    let acked = Arc::new(Mutex::new(Vec::<Change>::new()));
    let attempted = Arc::new(Mutex::new(HashSet::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..2 {
        let (acked, attempted, stop, client, urls) = (
            acked.clone(),
            attempted.clone(),
            writers_stop.clone(),
            c.client.clone(),
            urls.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let node = rand::random_range(0..urls.len());
                let key = format!("w/{}", rand::random_range(0..10));
                let delete = n % 4 == 0;
                let value = format!("{w}-{n}");
                let url = format!("{}/v1/kv/{key}", urls[node]);
                let req = if delete {
                    client.delete(url)
                } else {
                    attempted.lock().unwrap().insert(value.clone());
                    client.put(url).body(value.clone())
                };
                let Ok(resp) = req.send().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                if resp.status() != 200 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let body: Value = resp.json().await.unwrap();
                let version = body["version"].as_u64().unwrap();
                // A delete of an absent key changes nothing, and is no event.
                if delete && !body["existed"].as_bool().unwrap() {
                    continue;
                }
                acked.lock().unwrap().push(Change {
                    version,
                    key,
                    value: (!delete).then_some(value),
                });
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(800)).await;
    let leader = c.wait_leader(LIMIT).await;
    c.stop(leader).await;
    c.wait_leader(LIMIT).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.restart(leader).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    writers_stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    // Let every watcher catch up to the last acknowledged version, then stop them.
    let acked = acked.lock().unwrap().clone();
    let last = acked.iter().map(|a| a.version).max().expect("writes were acknowledged");
    let deadline = Instant::now() + LIMIT;
    while progress.iter().any(|p| *p.lock().unwrap() < last) {
        assert!(
            Instant::now() < deadline,
            "watchers stuck: {:?} < {last}",
            progress.iter().map(|p| *p.lock().unwrap()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    // Wake the watchers so they notice the stop.
    c.put_ok(c.wait_leader(LIMIT).await, "w/zz-stop", "x").await;
    for w in watchers {
        let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
    }

    let attempted = attempted.lock().unwrap().clone();
    let mut by_version: BTreeMap<u64, Change> = BTreeMap::new();
    let mut checked = 0;
    for (i, s) in seen.iter().enumerate() {
        let s: Vec<Change> = s
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.version <= last)
            .cloned()
            .collect();
        // Ordered, no duplicates.
        for pair in s.windows(2) {
            assert!(
                pair[0].version < pair[1].version,
                "node {i}: out of order or duplicate: {pair:?}"
            );
        }
        // Every acknowledged change, with its value.
        let mine: BTreeMap<u64, &Change> = s.iter().map(|c| (c.version, c)).collect();
        for a in &acked {
            assert_eq!(mine.get(&a.version), Some(&a), "node {i} missed or garbled {a:?}");
            checked += 1;
        }
        // Anything else is a write whose answer was lost, never an invention; and all
        // watchers agree on each version.
        for ch in &s {
            if let Some(v) = &ch.value {
                assert!(attempted.contains(v), "node {i}: a value nobody wrote: {ch:?}");
            }
            let prev = by_version.entry(ch.version).or_insert_with(|| ch.clone());
            assert_eq!(prev, ch, "watchers disagree at version {}", ch.version);
        }
    }
    eprintln!(
        "{} acknowledged changes, {checked} checked across 3 watchers ({} reconnects), versions {base}..={last}",
        acked.len(),
        reconnects.lock().unwrap()
    );
    assert!(acked.len() > 50, "the writers made progress: {}", acked.len());
    assert!(*reconnects.lock().unwrap() >= 1, "the killed node's watcher resumed");
    c.shutdown().await;
}

/// A watch from before the node's history gets an explicit `compacted` with the oldest
/// version still held, on SSE and in the library; resuming from there works; and an idle
/// stream sends progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_older_than_the_history_is_compacted_and_idle_streams_progress() {
    let _g = serial().await;
    let c = Cluster::start(1, |cfg| cfg.watch_history = 10).await;
    c.wait_leader(LIMIT).await;
    for i in 0..30 {
        c.put_ok(0, &format!("k{i:02}"), &i.to_string()).await;
    }
    let oldest = c.node(0).watch_oldest();
    assert!(oldest > 1, "the history moved on");

    // SSE: an error event, then the stream ends.
    let mut got = Vec::new();
    let r = read_sse(&c.client, &c.url(0, "/v1/watch?from=1"), None, |ev| {
        got.push(ev);
        true
    })
    .await;
    assert!(r.is_err(), "the stream closed");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].event, "error");
    assert_eq!(got[0].data["code"], "compacted");
    assert_eq!(got[0].data["oldest"].as_u64(), Some(oldest));

    // The library says the same.
    let mut s = c.node(0).watch("", Some(1));
    assert_eq!(s.next().await, Some(Err(WatchError::Compacted { oldest })));
    // Resuming from `oldest` gives the retained events in order.
    let mut s = c.node(0).watch("", Some(oldest));
    let first = s.next().await.unwrap().unwrap();
    assert_eq!(first.version, oldest);

    // SSE resumed with Last-Event-ID starts right after it.
    let mut ids = Vec::new();
    let mut progress = None;
    let _ = read_sse(&c.client, &c.url(0, "/v1/watch"), Some(oldest), |ev| {
        if ev.event == "progress" {
            progress = ev.data["version"].as_u64();
            return false;
        }
        ids.push(ev.id.unwrap().parse::<u64>().unwrap());
        true
    })
    .await;
    assert_eq!(ids.first(), Some(&(oldest + 1)), "{ids:?}");
    assert!(ids.windows(2).all(|p| p[0] < p[1]));
    let progress = progress.expect("an idle stream reports progress");
    assert!(
        progress >= *ids.last().unwrap(),
        "through every change sent: {progress} {ids:?}"
    );
    assert!(progress <= c.node(0).applied_index());
    c.shutdown().await;
}

/// A follower that catches up by snapshot cannot vouch for the events it skipped: a
/// watch on it from before the snapshot is `compacted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_install_compacts_the_followers_history() {
    let _g = serial().await;
    let mut c = Cluster::start(3, |cfg| cfg.snapshot_logs = 20).await;
    let leader = c.wait_leader(LIMIT).await;
    let follower = (leader + 1) % 3;
    let before = c.node(follower).raft_status().last_log_index;
    c.stop(follower).await;
    for i in 0..150 {
        c.put_ok(leader, &format!("k{i:03}"), "v").await;
    }
    c.wait_for("the leader to purge its log", LIMIT, |c| {
        c.node(leader).raft_status().purged_index > before
    })
    .await;
    c.restart(follower).await;
    let target = c.node(leader).applied_index();
    c.wait_for("the follower to catch up", LIMIT, |c| {
        c.node(follower).applied_index() >= target
    })
    .await;
    let oldest = c.node(follower).watch_oldest();
    assert!(oldest > 20, "a snapshot was installed (oldest {oldest})");
    let mut s = c.node(follower).watch("", Some(1));
    assert_eq!(s.next().await, Some(Err(WatchError::Compacted { oldest })));
    c.shutdown().await;
}

/// `GET /v1/kv/{key}?index=N&wait=…` returns as soon as the key's version passes N —
/// created, changed or deleted — and otherwise when the wait ends. Every answer, a 404
/// included, carries `X-Braft-Index`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_reads_wake_on_create_change_and_delete() {
    let _g = serial().await;
    let c = Cluster::start(3, |_| {}).await;
    let leader = c.wait_leader(LIMIT).await;
    let follower = (leader + 1) % 3;
    let index_of = |r: &reqwest::Response| -> u64 { r.headers()["x-braft-index"].to_str().unwrap().parse().unwrap() };
    let r = c.client.get(c.url(follower, "/v1/kv/later")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let index = index_of(&r);

    // Create: the blocked read on the follower wakes with the value.
    let url = c.url(follower, &format!("/v1/kv/later?index={index}&wait=30s"));
    let blocked = tokio::spawn(c.client.get(url).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v1 = c.put_ok(leader, "later", "one").await;
    let r = blocked.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert!(index_of(&r) >= v1);
    assert_eq!(r.headers()["x-braft-version"].to_str().unwrap(), v1.to_string());
    assert_eq!(r.text().await.unwrap(), "one");

    // No change: the wait runs out and the current value comes back.
    let r = c
        .client
        .get(c.url(follower, &format!("/v1/kv/later?index={v1}&wait=300ms")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "one");

    // An already newer key answers at once.
    let r = c
        .client
        .get(c.url(follower, &format!("/v1/kv/later?index={}&wait=30s", v1 - 1)))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Delete: the blocked read wakes with a 404 that carries the new index.
    let url = c.url(follower, &format!("/v1/kv/later?index={v1}&wait=30s"));
    let blocked = tokio::spawn(c.client.get(url).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d = c.client.delete(c.url(leader, "/v1/kv/later")).send().await.unwrap();
    let dv = d.json::<Value>().await.unwrap()["version"].as_u64().unwrap();
    let r = blocked.await.unwrap().unwrap();
    assert_eq!(r.status(), 404);
    assert!(index_of(&r) >= dv);

    let r = c
        .client
        .get(c.url(follower, "/v1/kv/later?index=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    c.shutdown().await;
}
