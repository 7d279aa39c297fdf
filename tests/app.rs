//! The application API on real nodes: leader-change hooks and `Node::roles`, and
//! business data in `/raft` and `GetDetails`.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use braft::kv::{KvQuery, KvQueryOutput};
use braft::{Consistency, KvService, Node, Role, RoleEvent};
use common::{serial, Cluster};

const LIMIT: Duration = Duration::from_secs(20);

/// What one Leader hook call saw: the keys acknowledged before it ran that its node's
/// applied state lacked.
#[derive(Debug)]
struct Seen {
    event: RoleEvent,
    acked_before: usize,
    missing: Vec<String>,
}

/// Every hook call of the story below, in call order per node.
static SEEN: LazyLock<Mutex<Vec<Seen>>> = LazyLock::new(Default::default);
/// The running nodes by id, for the hook to read from.
static NODES: LazyLock<Mutex<HashMap<u64, Node>>> = LazyLock::new(Default::default);
/// The keys whose write has been acknowledged.
static ACKED: LazyLock<Mutex<BTreeSet<String>>> = LazyLock::new(Default::default);

/// The hook under test: on Leader, reads this node's applied keys (a stale, local read)
/// and notes which acknowledged keys are missing.
fn record(event: RoleEvent) {
    let mut seen = Seen {
        event,
        acked_before: 0,
        missing: Vec::new(),
    };
    if event.is_leader() {
        let acked = ACKED.lock().unwrap().clone();
        seen.acked_before = acked.len();
        // The hook may run before the test has registered a restarted node.
        let deadline = Instant::now() + Duration::from_secs(5);
        let node = loop {
            if let Some(n) = NODES.lock().unwrap().get(&event.node_id).cloned() {
                break n;
            }
            assert!(Instant::now() < deadline, "node {} never registered", event.node_id);
            std::thread::sleep(Duration::from_millis(10));
        };
        let query = KvQuery::List {
            map: String::new(),
            prefix: "ack-".into(),
            limit: 1_000_000,
        };
        let have = tokio::runtime::Handle::current()
            .block_on(node.read::<KvService>(query, Consistency::Stale))
            .expect("a local read");
        let KvQueryOutput::Keys(have) = have else {
            panic!("keys")
        };
        let have: BTreeSet<String> = have.into_iter().collect();
        seen.missing = acked.difference(&have).cloned().collect();
    }
    SEEN.lock().unwrap().push(seen);
}

fn register(c: &Cluster) {
    let mut nodes = NODES.lock().unwrap();
    for i in c.running() {
        nodes.insert(c.node(i).id(), c.node(i).clone());
    }
}

/// Over a leader kill, a restart and a leadership transfer, with writes flowing through
/// every node: no two nodes report Leader in one term; each node's Leader and not-Leader
/// events alternate and end with one Shutdown; and every Leader hook's local read holds
/// every write acknowledged before the hook ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_hooks_alternate_and_see_every_acknowledged_write() {
    let _g = serial().await;
    let mut c = Cluster::start_with(3, |_| {}, |b| b.on_leader_change(record)).await;
    register(&c);
    let urls: Vec<String> = (0..3).map(|i| c.url(i, "/v1/kv/")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, writes, client) = (stop.clone(), writes.clone(), c.client.clone());
        tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let key = format!("ack-{n:06}");
                let url = format!("{}{key}", urls[n % urls.len()]);
                let ok = matches!(client.put(url).body("v").send().await, Ok(r) if r.status() == 200);
                if ok {
                    ACKED.lock().unwrap().insert(key);
                    writes.fetch_add(1, Ordering::Relaxed);
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };

    // 1. Formation elects a leader; let writes flow.
    let first = c.wait_leader(LIMIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // 2. Kill the leader: another takes over.
    c.stop(first).await;
    let second = c.wait_leader(LIMIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // 3. The old leader comes back as a follower.
    c.restart(first).await;
    register(&c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // 4. Hand leadership to the restarted node.
    let target = c.node(first).id();
    c.node(second).transfer_leader(target).await.expect("transfer");
    c.wait_for("the transfer", LIMIT, |c| c.node(first).is_leader()).await;
    // The Leader hook runs after the transfer; give it a moment to be recorded.
    let deadline = Instant::now() + LIMIT;
    while !SEEN
        .lock()
        .unwrap()
        .iter()
        .any(|s| s.event.node_id == target && s.event.is_leader())
    {
        assert!(Instant::now() < deadline, "no Leader hook call on the transfer target");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    c.shutdown().await;

    let seen = SEEN.lock().unwrap();
    assert!(writes.load(Ordering::Relaxed) > 20, "writes flowed throughout");
    // No two nodes lead one term.
    let mut leaders: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for s in seen.iter().filter(|s| s.event.is_leader()) {
        leaders.entry(s.event.term).or_default().insert(s.event.node_id);
    }
    assert!(leaders.len() >= 3, "a leader per phase: {leaders:?}");
    for (term, ids) in &leaders {
        assert_eq!(ids.len(), 1, "term {term} had leaders {ids:?}");
    }
    // Per node: Leader and not-Leader alternate, starting with Leader (hooks report
    // changes; every node starts not leading), and each incarnation ends in Shutdown.
    let mut by_node: BTreeMap<u64, Vec<RoleEvent>> = BTreeMap::new();
    for s in seen.iter() {
        by_node.entry(s.event.node_id).or_default().push(s.event);
    }
    let mut shutdowns = 0;
    for (id, events) in &by_node {
        let mut leading = false;
        for e in events {
            match e.role {
                Role::Leader => {
                    assert!(!leading, "node {id}: two Leader events in a row: {events:?}");
                    leading = true;
                }
                Role::Shutdown => {
                    shutdowns += 1;
                    leading = false;
                }
                _ => {
                    assert!(leading, "node {id}: a not-Leader event while not leading: {events:?}");
                    leading = false;
                }
            }
        }
        assert_eq!(
            events.last().map(|e| e.role),
            Some(Role::Shutdown),
            "node {id}: {events:?}"
        );
    }
    assert_eq!(shutdowns, 4, "one Shutdown per stop (three nodes, one restarted)");
    // Every Leader hook saw every write acknowledged before it.
    for s in seen.iter().filter(|s| s.event.is_leader()) {
        assert!(
            s.missing.is_empty(),
            "node {} leading term {} lacked acknowledged writes {:?}",
            s.event.node_id,
            s.event.term,
            s.missing
        );
    }
    let checked: usize = seen.iter().map(|s| s.acked_before).sum();
    eprintln!(
        "{} hook calls, {} Leader terms, {checked} acknowledged writes checked in Leader hooks",
        seen.len(),
        leaders.len()
    );
    assert!(checked > 0, "the Leader hooks had acknowledged writes to check");
}

/// A hook that panics and blocks does not hold Raft up: the node elects itself and takes
/// writes while the hook is stuck, `roles()` reports Leader, and the hook still gets its
/// later calls (Shutdown) after the panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_or_panicking_hook_does_not_stall_raft() {
    static CALLS: LazyLock<Mutex<Vec<Role>>> = LazyLock::new(Default::default);
    static RELEASE: AtomicBool = AtomicBool::new(false);
    fn hook(e: RoleEvent) {
        CALLS.lock().unwrap().push(e.role);
        if e.is_leader() {
            while !RELEASE.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
            }
            panic!("a buggy hook");
        }
    }
    let _g = serial().await;
    let c = Cluster::start_with(1, |_| {}, |b| b.on_leader_change(hook)).await;
    let mut roles = c.node(0).roles();
    roles
        .wait_for(|e| e.role == Role::Leader)
        .await
        .expect("roles() reports Leader");
    // The hook is blocked in its Leader call, and writes go through regardless.
    c.wait_for("the Leader hook call", LIMIT, |_| !CALLS.lock().unwrap().is_empty())
        .await;
    assert_eq!(*CALLS.lock().unwrap(), vec![Role::Leader]);
    for i in 0..5 {
        c.put_ok(0, &format!("k{i}"), "v").await;
    }
    RELEASE.store(true, Ordering::Relaxed);
    c.shutdown().await;
    assert_eq!(*CALLS.lock().unwrap(), vec![Role::Leader, Role::Shutdown]);
}

/// Business data shows in `/raft` as `nodes[].bizData` for every node; a closure that
/// panics or hangs gives that node an `error` and `/raft` still answers 200 with every
/// node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn biz_data_shows_in_raft_and_a_panicking_closure_is_an_error() {
    static PANIC_ON: AtomicUsize = AtomicUsize::new(usize::MAX);
    static SLOW_ON: AtomicUsize = AtomicUsize::new(usize::MAX);
    static BUILT: AtomicUsize = AtomicUsize::new(0);
    fn biz(b: braft::NodeBuilder) -> braft::NodeBuilder {
        let n = BUILT.fetch_add(1, Ordering::SeqCst);
        b.biz_data(move || {
            if PANIC_ON.load(Ordering::SeqCst) == n {
                panic!("biz data unavailable");
            }
            if SLOW_ON.load(Ordering::SeqCst) == n {
                std::thread::sleep(Duration::from_secs(2));
            }
            serde_json::json!({"shard": n, "role": "worker"})
        })
    }
    let _g = serial().await;
    let c = Cluster::start_with(3, |_| {}, biz).await;
    c.wait_leader(LIMIT).await;
    let raft = c.get_json(0, "/raft").await;
    let nodes = raft["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{raft}");
    let mut shards: Vec<u64> = nodes
        .iter()
        .map(|n| {
            assert_eq!(n["bizData"]["role"], "worker", "{n}");
            n["bizData"]["shard"].as_u64().unwrap()
        })
        .collect();
    shards.sort();
    assert_eq!(shards, vec![0, 1, 2]);

    PANIC_ON.store(1, Ordering::SeqCst);
    let r = c.client.get(c.url(0, "/raft")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let raft: serde_json::Value = r.json().await.unwrap();
    let nodes = raft["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{raft}");
    let broken: Vec<&serde_json::Value> = nodes.iter().filter(|n| n.get("bizData").is_none()).collect();
    assert_eq!(broken.len(), 1, "{raft}");
    assert!(
        broken[0]["error"].as_str().unwrap().contains("bizData"),
        "{}",
        broken[0]
    );
    assert!(broken[0]["raftState"].is_string(), "the rest of its details still show");

    // A closure that hangs is cut off the same way; /raft still answers.
    PANIC_ON.store(usize::MAX, Ordering::SeqCst);
    SLOW_ON.store(2, Ordering::SeqCst);
    let raft = c.get_json(0, "/raft").await;
    let nodes = raft["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{raft}");
    let slow: Vec<&serde_json::Value> = nodes.iter().filter(|n| n.get("bizData").is_none()).collect();
    assert_eq!(slow.len(), 1, "{raft}");
    assert!(
        slow[0]["error"].as_str().unwrap().contains("longer than"),
        "{}",
        slow[0]
    );
    SLOW_ON.store(usize::MAX, Ordering::SeqCst);
    c.shutdown().await;
}

/// The application's own serializer: a 3-node cluster whose log is JSON through a
/// user-supplied `dyn Serializer` writes, reads on every node, snapshots, restarts a node
/// (which catches up from that snapshot's format), and pins the format in the data
/// directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_runs_on_a_users_own_serializer() {
    /// JSON under the user's own name.
    struct Mine;
    impl braft::codec::Serializer for Mine {
        fn name(&self) -> &str {
            "mine-json"
        }
        fn encode(&self, v: &dyn erased_serde::Serialize) -> Result<Vec<u8>, braft::codec::CodecError> {
            serde_json::to_vec(v).map_err(|e| braft::codec::CodecError::new("mine-json", e))
        }
        fn decode(&self, bytes: &[u8], visit: &mut dyn braft::codec::Visit) -> Result<(), braft::codec::CodecError> {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            visit
                .visit(&mut <dyn erased_serde::Deserializer>::erase(&mut de))
                .map_err(|e| braft::codec::CodecError::new("mine-json", e))
        }
    }
    fn mine(b: braft::NodeBuilder) -> braft::NodeBuilder {
        b.serializer(Arc::new(Mine))
    }
    let _g = serial().await;
    let mut c = Cluster::start_with(3, |cfg| cfg.snapshot_logs = 20, mine).await;
    let leader = c.wait_leader(LIMIT).await;
    let follower = (leader + 1) % 3;
    for i in 0..30 {
        c.put_ok(i % 3, &format!("j{i}"), &format!("v{i}")).await;
    }
    for i in 0..3 {
        assert_eq!(c.get(i, "j7", "linearizable").await.as_deref(), Some("v7"));
    }
    c.stop(follower).await;
    for i in 30..60 {
        c.put_ok(leader, &format!("j{i}"), "later").await;
    }
    c.restart(follower).await;
    let target = c.node(leader).applied_index();
    c.wait_for("the follower to catch up", LIMIT, |c| {
        c.node(follower).applied_index() >= target
    })
    .await;
    assert_eq!(c.get(follower, "j59", "stale").await.as_deref(), Some("later"));
    let identity = std::fs::read_to_string(c.members[follower].dir.join("node.json")).unwrap();
    assert!(identity.contains("mine-json"), "{identity}");
    c.shutdown().await;
}
