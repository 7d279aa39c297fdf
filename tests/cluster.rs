//! Multi-node stories over real sockets on 127.0.0.1: formation, forwarding, failover,
//! restarts, snapshots, joining, compare-and-set.

mod common;

use std::time::Duration;

use braft::{Consistency, KvService};
use common::{serial, Cluster};

const LIMIT: Duration = Duration::from_secs(20);

/// Three nodes started at the same moment form one cluster — one leader, three voters —
/// and accept a write (the bootstrap rule picks exactly one initializer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_started_together_form_one_cluster() {
    let _g = serial().await;
    let c = Cluster::start(3, |_| {}).await;
    let v = c.put_ok(0, "first", "write").await;
    assert!(v > 0);
    let leader = c.wait_leader(LIMIT).await;
    let st = c.node(leader).raft_status();
    assert_eq!(st.voters.len(), 3, "all three are voters: {st:?}");
    for i in 0..3 {
        assert_eq!(
            c.node(i).raft_status().voters,
            st.voters,
            "node {i} sees the same voters"
        );
    }
    c.shutdown().await;
}

/// A write sent to a follower is forwarded to the leader, and a linearizable read on
/// every node — followers included — sees it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_via_follower_then_linearizable_read_everywhere() {
    let _g = serial().await;
    let c = Cluster::start(3, |_| {}).await;
    let leader = c.wait_leader(LIMIT).await;
    let follower = (leader + 1) % 3;
    let v = c.put_ok(follower, "greeting", "hello").await;
    for i in 0..3 {
        assert_eq!(
            c.get(i, "greeting", "linearizable").await.as_deref(),
            Some("hello"),
            "node {i}"
        );
        assert_eq!(
            c.get(i, "greeting", "lease").await.as_deref(),
            Some("hello"),
            "node {i} (lease)"
        );
    }
    // The version is the write's log index, reported on reads too.
    let r = c.client.get(c.url(follower, "/v1/kv/greeting")).send().await.unwrap();
    assert_eq!(r.headers()["x-braft-version"].to_str().unwrap(), v.to_string());
    c.shutdown().await;
}

/// Killing the leader elects a new one among the survivors, and writes continue through
/// any surviving node with nothing acknowledged lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_new_leader_elected_writes_continue() {
    let _g = serial().await;
    let mut c = Cluster::start(3, |_| {}).await;
    let old = c.wait_leader(LIMIT).await;
    c.put_ok(old, "before", "1").await;
    let old_id = c.node(old).id();
    c.stop(old).await;
    let new = c.wait_leader(LIMIT).await;
    assert_ne!(c.node(new).id(), old_id);
    let survivor = c.running().into_iter().find(|i| *i != new).unwrap();
    c.put_ok(survivor, "after", "2").await;
    assert_eq!(c.get(new, "before", "linearizable").await.as_deref(), Some("1"));
    assert_eq!(c.get(survivor, "after", "linearizable").await.as_deref(), Some("2"));
    c.shutdown().await;
}

/// A node that was down while writes happened, once restarted with its data directory,
/// rejoins as the same member and holds every acknowledged write in its own state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_has_every_acknowledged_write() {
    let _g = serial().await;
    let mut c = Cluster::start(3, |_| {}).await;
    let leader = c.wait_leader(LIMIT).await;
    let victim = (leader + 1) % 3;
    let victim_id = c.node(victim).id();
    c.put_ok(leader, "k0", "v0").await;
    c.stop(victim).await;
    for i in 1..20 {
        c.put_ok(leader, &format!("k{i}"), &format!("v{i}")).await;
    }
    c.restart(victim).await;
    assert_eq!(c.node(victim).id(), victim_id, "same identity after restart");
    let target = c.node(leader).raft_status().commit_index;
    c.wait_for("the restarted node to catch up", LIMIT, |c| {
        c.node(victim).raft_status().applied_index >= target
    })
    .await;
    // Stale reads are served from the node's own state: it really holds the data.
    for i in 0..20 {
        assert_eq!(c.get(victim, &format!("k{i}"), "stale").await, Some(format!("v{i}")));
    }
    c.shutdown().await;
}

/// A leader whose stored snapshot file is damaged does not send it. It no longer reads
/// the file when openraft asks for the current snapshot (that held up applies), so the
/// check happens before sending: a new member is never handed bytes that fail their
/// checksum (a failed install stops the receiver's Raft core for good). Once the leader
/// has taken a good snapshot again, the new member catches up from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_snapshot_on_the_leader_is_not_sent() {
    let _g = serial().await;
    let mut c = Cluster::start(3, |cfg| cfg.snapshot_logs = 20).await;
    let leader = c.wait_leader(LIMIT).await;
    for i in 0..60 {
        c.put_ok(leader, &format!("k{i}"), "v").await;
    }
    c.wait_for("a snapshot on the leader", LIMIT, |c| {
        c.node(leader).raft_status().snapshot_index >= 40
    })
    .await;
    let dir = c.members[leader].dir.join("snapshots");
    let newest = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .max()
        .expect("a snapshot file");
    let mut bytes = std::fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&newest, bytes).unwrap();

    let new = c.add_node().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let st = c.node(new).raft_status();
    assert_eq!(st.snapshot_index, 0, "the damaged snapshot was not installed: {st:?}");

    // 30 more entries: the leader snapshots again, over the damaged file.
    for i in 60..90 {
        c.put_ok(leader, &format!("k{i}"), "v").await;
    }
    c.wait_for("the new member to catch up from a good snapshot", LIMIT, |c| {
        let st = c.node(new).raft_status();
        st.snapshot_index > 0 && st.applied_index >= c.node(leader).raft_status().commit_index
    })
    .await;
    assert_eq!(c.get(new, "k0", "stale").await.as_deref(), Some("v"));
    assert_eq!(c.get(new, "k89", "stale").await.as_deref(), Some("v"));
    c.shutdown().await;
}

/// Large values bring a snapshot by size long before the entry count would: with the
/// entry threshold far away, 40 values of 16 KiB pass a 256 KiB limit, a snapshot is
/// taken on every node. Small writes alone bring none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_of_large_values_is_snapshotted_by_size() {
    let _g = serial().await;
    let c = Cluster::start(3, |cfg| {
        cfg.snapshot_logs = 1_000_000;
        cfg.snapshot_log_bytes = 256 << 10;
    })
    .await;
    let leader = c.wait_leader(LIMIT).await;
    for i in 0..20 {
        c.put_ok(leader, &format!("small{i}"), "v").await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..3 {
        assert_eq!(c.node(i).raft_status().snapshot_index, 0, "node {i}: no snapshot yet");
    }
    let big = "x".repeat(16 << 10);
    for i in 0..40 {
        c.put_ok(leader, &format!("big{i}"), &big).await;
    }
    c.wait_for("every node to snapshot by size", LIMIT, |c| {
        (0..3).all(|i| c.node(i).raft_status().snapshot_index > 20)
    })
    .await;
    for i in 0..3 {
        let st = c.node(i).raft_status();
        assert!(st.snapshot_index < 1_000, "by size, not by count: {st:?}");
    }
    assert_eq!(
        c.get(leader, "big39", "linearizable").await.as_deref(),
        Some(big.as_str())
    );
    c.shutdown().await;
}

/// A node kept down while the leader snapshots and purges its log past the node's
/// position can only be caught up by installing a snapshot — and is. The stream lands
/// in a temporary file that becomes the node's snapshot, not in a buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_down_past_snapshot_threshold_catches_up_by_snapshot() {
    let _g = serial().await;
    let mut c = Cluster::start(3, |cfg| cfg.snapshot_logs = 20).await;
    let leader = c.wait_leader(LIMIT).await;
    let victim = (leader + 1) % 3;
    c.put_ok(leader, "a", "0").await;
    c.wait_for("the victim to apply the first write", LIMIT, |c| {
        c.node(victim).raft_status().applied_index >= c.node(leader).raft_status().commit_index
    })
    .await;
    let victim_last = c.node(victim).raft_status().last_log_index;
    c.stop(victim).await;
    for i in 0..150 {
        c.put_ok(leader, &format!("s{i}"), &i.to_string()).await;
    }
    c.wait_for("the leader to purge its log", LIMIT, |c| {
        c.node(leader).raft_status().purged_index > victim_last
    })
    .await;
    c.restart(victim).await;
    let target = c.node(leader).raft_status().commit_index;
    c.wait_for("the victim to catch up", LIMIT, |c| {
        c.node(victim).raft_status().applied_index >= target
    })
    .await;
    let st = c.node(victim).raft_status();
    assert!(st.snapshot_index > victim_last, "caught up from a snapshot: {st:?}");
    // The stream was received into a temporary file, which became the snapshot.
    let files = common::snapshot_files(&c.members[victim].dir);
    assert!(
        files.len() == 1 && files[0].starts_with("snapshot-") && files[0].ends_with(".bin"),
        "{files:?}"
    );
    for i in [0, 77, 149] {
        assert_eq!(c.get(victim, &format!("s{i}"), "stale").await, Some(i.to_string()));
    }
    c.shutdown().await;
}

/// A fourth node that is not in the static list finds the cluster, is added as a
/// learner, and is promoted to voter once it has caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_fourth_node_joins_as_learner_then_is_promoted() {
    let _g = serial().await;
    let mut c = Cluster::start(3, |_| {}).await;
    let leader = c.wait_leader(LIMIT).await;
    for i in 0..50 {
        c.put_ok(leader, &format!("j{i}"), "x").await;
    }
    let fourth = c.add_node().await;
    let id = c.node(fourth).id();
    // Watch the membership from the leader's side: learner first, voter later.
    let mut saw_learner = false;
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let st = c.node(leader).raft_status();
        if st.members.contains_key(&id) && !st.voters.contains(&id) {
            saw_learner = true;
        }
        if st.voters.contains(&id) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fourth node never promoted: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(saw_learner, "the new node was a learner before it became a voter");
    assert_eq!(c.node(leader).raft_status().voters.len(), 4);
    assert_eq!(c.get(fourth, "j49", "linearizable").await.as_deref(), Some("x"));
    c.shutdown().await;
}

/// Compare-and-set by version and by value: a stale expectation is refused with 409 and
/// the current version, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_set_conflicts() {
    let _g = serial().await;
    let c = Cluster::start(3, |_| {}).await;
    let leader = c.wait_leader(LIMIT).await;
    let follower = (leader + 1) % 3;
    let put = |i: usize, q: &str, v: &str| {
        c.client
            .put(c.url(i, &format!("/v1/kv/cas?{q}")))
            .body(v.to_string())
            .send()
    };
    // Create only if absent: the first wins, the second conflicts.
    let r = put(follower, "prev_version=0", "a").await.unwrap();
    assert_eq!(r.status(), 200);
    let v1 = r.json::<serde_json::Value>().await.unwrap()["version"]
        .as_u64()
        .unwrap();
    let r = put(leader, "prev_version=0", "b").await.unwrap();
    assert_eq!(r.status(), 409);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "compare_failed");
    assert_eq!(body["current_version"].as_u64(), Some(v1));
    // By version: a wrong one conflicts; the right one succeeds.
    assert_eq!(
        put(follower, &format!("prev_version={}", v1 + 100), "c")
            .await
            .unwrap()
            .status(),
        409
    );
    assert_eq!(
        put(follower, &format!("prev_version={v1}"), "d")
            .await
            .unwrap()
            .status(),
        200
    );
    // By value.
    assert_eq!(put(leader, "prev_value=nope", "e").await.unwrap().status(), 409);
    assert_eq!(put(leader, "prev_value=d", "f").await.unwrap().status(), 200);
    assert_eq!(c.get(follower, "cas", "linearizable").await.as_deref(), Some("f"));
    c.shutdown().await;
}

/// Typed access through the library: `write` and `read` from a follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_write_and_read_from_a_follower() {
    use braft::kv::{KvCommand, KvOutput, KvQuery, KvQueryOutput};
    let _g = serial().await;
    let c = Cluster::start(3, |_| {}).await;
    let leader = c.wait_leader(LIMIT).await;
    let f = c.node((leader + 2) % 3);
    let out = f
        .write::<KvService>(KvCommand::Put {
            map: "users".into(),
            key: "ada".into(),
            value: b"lovelace".to_vec(),
            precondition: None,
        })
        .await
        .unwrap();
    assert!(matches!(out, KvOutput::Put { .. }));
    let got = f
        .read::<KvService>(
            KvQuery::Get {
                map: "users".into(),
                key: "ada".into(),
            },
            Consistency::Linearizable,
        )
        .await
        .unwrap();
    match got {
        KvQueryOutput::Value(Some(v)) => assert_eq!(v.value, b"lovelace"),
        other => panic!("unexpected {other:?}"),
    }
    c.shutdown().await;
}

/// Right after an election — here a leadership transfer — the new leader rejects writes
/// with LeaseExpired until a quorum acks it; braft retries, so a write sent at once
/// succeeds. (Guards against semantic changes on an openraft bump.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_right_after_leader_transfer_succeeds() {
    let _g = serial().await;
    let c = Cluster::start(3, |_| {}).await;
    let leader = c.wait_leader(LIMIT).await;
    c.put_ok(leader, "t", "0").await;
    let target = (leader + 1) % 3;
    let target_id = c.node(target).id();
    c.node(leader).transfer_leader(target_id).await.unwrap();
    c.wait_for("the transfer", LIMIT, |c| c.node(target).is_leader()).await;
    c.put_ok(target, "t", "1").await;
    assert_eq!(c.get(leader, "t", "linearizable").await.as_deref(), Some("1"));
    c.shutdown().await;
}

/// With no quorum, a write fails within the request timeout with 503 — it never hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_quorum_answers_503_within_the_timeout() {
    let _g = serial().await;
    let mut c = Cluster::start(3, |cfg| cfg.request_timeout_ms = 1_500).await;
    let leader = c.wait_leader(LIMIT).await;
    c.put_ok(leader, "q", "1").await;
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    for i in others {
        c.stop(i).await;
    }
    let r = c.put(leader, "q", "2").await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    // The leader accepted the entry but cannot commit it: its fate is unknown.
    assert_eq!(body["code"], "indeterminate", "{body}");
    let r = c.client.get(c.url(leader, "/v1/kv/q")).send().await.unwrap();
    assert_eq!(r.status(), 503, "a linearizable read needs a quorum too");
    // A stale read is still served locally.
    assert_eq!(c.get(leader, "q", "stale").await.as_deref(), Some("1"));
    c.shutdown().await;
}

/// The value of `braft_forwarded_requests_total{kind,outcome="ok"}` in a node's metrics.
fn forwarded_ok(node: &braft::Node, kind: &str) -> f64 {
    let kind = format!("kind=\"{kind}\"");
    node.metrics_text()
        .lines()
        .filter(|l| l.starts_with("braft_forwarded_requests_total{") && l.contains(&kind))
        .filter(|l| l.contains("outcome=\"ok\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A follower serves linearizable reads itself: it asks the leader for a read point and
/// waits until it has applied that far. Each write acknowledged by the leader is seen by
/// the very next read on a follower, which may not have heard of the commit yet; so are
/// forty concurrent ones. Nothing is forwarded whole, and no read needed more than one
/// read-point request (how many reads share one is timing, measured in the benchmarks). With
/// `follower_reads` off, the same reads are forwarded to the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_serves_linearizable_reads_at_the_leaders_read_point() {
    let _g = serial().await;
    let c = Cluster::start(3, |_| {}).await;
    let leader = c.wait_leader(LIMIT).await;
    let follower = (leader + 1) % 3;
    for i in 0..100 {
        c.put_ok(leader, "counter", &i.to_string()).await;
        assert_eq!(
            c.get(follower, "counter", "linearizable").await.as_deref(),
            Some(i.to_string().as_str()),
            "read {i} on the follower"
        );
    }
    c.put_ok(leader, "counter", "last").await;
    let reads = (0..40).map(|_| c.get(follower, "counter", "linearizable"));
    for got in futures::future::join_all(reads).await {
        assert_eq!(got.as_deref(), Some("last"));
    }
    let f = c.node(follower);
    let points = forwarded_ok(f, "read_index");
    assert!(
        (1.0..=140.0).contains(&points),
        "140 reads took {points} read-point requests (at most one each)"
    );
    assert_eq!(forwarded_ok(f, "read"), 0.0, "no read was forwarded whole");
    c.shutdown().await;

    let c = Cluster::start(3, |cfg| cfg.follower_reads = false).await;
    let leader = c.wait_leader(LIMIT).await;
    let follower = (leader + 1) % 3;
    c.put_ok(leader, "k", "v").await;
    assert_eq!(c.get(follower, "k", "linearizable").await.as_deref(), Some("v"));
    let f = c.node(follower);
    assert_eq!(forwarded_ok(f, "read"), 1.0);
    assert_eq!(forwarded_ok(f, "read_index"), 0.0);
    c.shutdown().await;
}
