//! The replicated work distributor on real nodes: balanced and sticky through a leader
//! kill, a node's death and return, and a fourth node joining.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{serial, Cluster};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);
const GRACE_MS: u64 = 3_000;

/// Item → node id, from `GET /v1/distribute/jobs` on node `i`.
async fn assignment(c: &Cluster, i: usize) -> (u64, BTreeMap<String, String>) {
    let v = c.get_json(i, "/v1/distribute/jobs").await;
    let mut out = BTreeMap::new();
    for (node, items) in v["nodes"].as_object().unwrap_or_else(|| panic!("{v}")) {
        for item in items.as_array().unwrap() {
            out.insert(item.as_str().unwrap().to_string(), node.clone());
        }
    }
    (v["version"].as_u64().unwrap(), out)
}

fn shares(a: &BTreeMap<String, String>) -> Vec<usize> {
    let mut count: BTreeMap<&String, usize> = BTreeMap::new();
    for n in a.values() {
        *count.entry(n).or_default() += 1;
    }
    let mut s: Vec<usize> = count.into_values().collect();
    s.sort_unstable_by(|a, b| b.cmp(a));
    s
}

fn moves(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> usize {
    a.iter().filter(|(i, n)| b.get(*i) != Some(n)).count()
}

/// Polls node `i` until the assignment satisfies `cond`.
async fn wait_assignment(
    c: &Cluster,
    i: usize,
    what: &str,
    cond: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let (_, a) = assignment(c, i).await;
        if cond(&a) {
            return a;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {a:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// 100 items on 3 nodes are shared 34/33/33. A leader kill (and its quick return)
/// changes nothing. A node that dies loses its items to the survivors after the grace
/// period, and no other item moves; when it returns, balance comes back with the fewest
/// moves. A 4th node takes at most ⌈100/4⌉ = 25 items.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balanced_sticky_and_unmoved_by_leader_changes() {
    let _g = serial().await;
    let mut c = Cluster::start(3, |cfg| cfg.distribute_grace_ms = GRACE_MS).await;
    let leader = c.wait_leader(LIMIT).await;
    let items: Vec<String> = (0..100).map(|i| format!("job-{i:03}")).collect();
    let r = c
        .client
        .put(c.url(leader, "/v1/distribute/jobs"))
        .json(&json!({ "items": items }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let a0 = wait_assignment(&c, leader, "3 nodes to share", |a| {
        a.len() == 100 && shares(a).len() == 3
    })
    .await;
    assert_eq!(shares(&a0), vec![34, 33, 33]);
    let mut report = vec!["initial 34/33/33".to_string()];

    // Every node's own share matches, through the library (once the node has applied
    // the assignment: my_items reads its own state, which may trail the leader's).
    for i in 0..3 {
        let id = c.node(i).id().to_string();
        let expect: Vec<String> = a0.iter().filter(|(_, n)| **n == id).map(|(i, _)| i.clone()).collect();
        let deadline = std::time::Instant::now() + LIMIT;
        loop {
            let mine = c.node(i).my_items("jobs").await.unwrap();
            if mine == expect {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "node {i}: {mine:?} != {expect:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // A leader kill and its return move nothing.
    c.stop(leader).await;
    let second = c.wait_leader(LIMIT).await;
    assert_eq!(assignment(&c, second).await.1, a0, "a new leader reshuffles nothing");
    c.restart(leader).await;
    tokio::time::sleep(Duration::from_millis(2 * GRACE_MS)).await;
    let (_, after_kill) = assignment(&c, second).await;
    assert_eq!(moves(&a0, &after_kill), 0, "the leader kill moved items");
    report.push("leader kill and return: 0 moves".into());

    // A follower dies: only its items move, to the survivors.
    let leader = c.wait_leader(LIMIT).await;
    let victim = (leader + 1) % 3;
    let victim_id = c.node(victim).id().to_string();
    let held = a0.values().filter(|n| **n == victim_id).count();
    c.stop(victim).await;
    let a1 = wait_assignment(&c, leader, "the dead node's items to move", |a| {
        a.len() == 100 && !a.values().any(|n| *n == victim_id)
    })
    .await;
    assert_eq!(moves(&a0, &a1), held, "only the dead node's items moved");
    assert_eq!(shares(&a1), vec![50, 50]);
    report.push(format!("node death: {held} moves"));

    // It returns: the fewest moves restore balance.
    c.restart(victim).await;
    let a2 = wait_assignment(&c, leader, "the returning node to get work", |a| shares(a).len() == 3).await;
    assert_eq!(shares(&a2), vec![34, 33, 33]);
    let back = moves(&a1, &a2);
    assert!(back <= 34, "{back} moves to restore balance");
    report.push(format!("node return: {back} moves"));

    // A fourth node joins: at most 25 items move.
    let fourth = c.add_node().await;
    let a3 = wait_assignment(&c, leader, "the fourth node to get work", |a| shares(a).len() == 4).await;
    assert_eq!(shares(&a3), vec![25, 25, 25, 25]);
    let joined = moves(&a2, &a3);
    assert!(joined <= 25, "{joined} moves for a fourth node");
    report.push(format!("fourth node: {joined} moves"));
    // my_items reads the fourth node's own applied state, which may trail the leader's.
    let deadline = std::time::Instant::now() + LIMIT;
    while c.node(fourth).my_items("jobs").await.unwrap().len() != 25 {
        assert!(
            std::time::Instant::now() < deadline,
            "the fourth node never saw its 25 items"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("distributor moves: {}", report.join("; "));
    c.shutdown().await;
}

/// The HTTP shapes: braft's `/distribute/{key}` lists items with their node (410 when
/// missing), `/v1` answers 404 when missing, and bad bodies are 400s that change nothing.
/// `on_assignment_change` hands each node its share, and again when it changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_shapes_and_assignment_callbacks() {
    let _g = serial().await;
    let c = Cluster::start(1, |_| {}).await;
    c.wait_leader(LIMIT).await;
    let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let sink = seen.clone();
    c.node(0)
        .on_assignment_change("tasks", move |items| sink.lock().unwrap().push(items));

    let r = c.client.get(c.url(0, "/distribute/tasks")).send().await.unwrap();
    assert_eq!(r.status(), 410);
    let r = c.client.get(c.url(0, "/v1/distribute/tasks")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    for bad in [json!({"items": "a"}), json!({"itemz": []}), json!({"items": [""]})] {
        let r = c
            .client
            .put(c.url(0, "/v1/distribute/tasks"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    let r = c
        .client
        .put(c.url(0, "/v1/distribute/tasks"))
        .json(&json!({"items": ["a", "b"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let version = r.json::<Value>().await.unwrap()["version"].as_u64().unwrap();
    let id = c.node(0).id().to_string();
    let want = json!({"items": [{"id": "a", "nodeId": id}, {"id": "b", "nodeId": id}]});
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let got = c.get_json(0, "/distribute/tasks").await;
        if got == want {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v1 = c.get_json(0, "/v1/distribute/tasks").await;
    assert_eq!(v1["key"], "tasks");
    assert!(v1["version"].as_u64().unwrap() >= version);
    c.node(0).distribute("tasks", vec!["c".into()]).await.unwrap();
    c.wait_for("the callbacks", LIMIT, |_| seen.lock().unwrap().len() >= 3)
        .await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], Vec::<String>::new(), "the first call gives the share at start");
    assert_eq!(seen[1], vec!["a", "b"]);
    assert_eq!(seen[2], vec!["c"]);
    c.shutdown().await;
}
