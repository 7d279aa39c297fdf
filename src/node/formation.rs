//! Safe cluster formation and joining, for static discovery.
//!
//! The rule that keeps the brain whole:
//! - Only a *pristine* node (no term, no log, no snapshot) may take part in forming a new
//!   cluster, and only if it is in the static list itself.
//! - It waits until it has reached `BRAFT_BOOTSTRAP_EXPECT` distinct pristine nodes
//!   (itself included) and none of the peers it reached belongs to a cluster.
//! - Then the one with the lowest node id asks each of them for a *promise* to back it.
//!   A node promises at most one initializer, ever (the promise is kept on disk), and
//!   the lowest node initializes the cluster with all of them as voters only once every
//!   one has promised. Since the expected count is a majority of the static list, two
//!   groups that could each form a cluster share a node, which backs only one of them —
//!   even when peers see each other only one way. The others wait for its leader.
//! - A node that finds an existing cluster asks its leader to join: it is added as a
//!   learner and promoted to voter once it has caught up.
//! - A node with stored state never bootstraps.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::forward::{HelloReply, HelloRequest, JoinReply, JoinRequest, PromiseReply, PromiseRequest};
use super::Node;
use crate::raft::{wire, NodeId, Peer};

const PROBE_INTERVAL: Duration = Duration::from_millis(200);
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);
const LOG_EVERY: Duration = Duration::from_secs(2);
/// A learner within this many entries of the leader's log is promoted.
const PROMOTE_LAG: u64 = 250;

/// Runs until this node is a voter or a learner of a cluster, or until shutdown.
pub async fn run(node: Node) {
    let mut shutdown = node.shutdown_signal();
    let mut last_log = Instant::now() - LOG_EVERY;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let st = node.status();
        if st.voters.contains(&node.id()) {
            tracing::info!(id = node.id(), "voter of the cluster");
            return;
        }
        let msg = if st.members.contains_key(&node.id()) {
            // A learner: keep asking the current leader, so that a promotion cut short
            // by a leader change is picked up again by the next leader.
            match st.leader.and_then(|l| st.peer(l).cloned()) {
                Some(leader) => join(&node, &leader).await.err(),
                None => None,
            }
            .map(|e| format!("learner waiting for promotion: {e}"))
        } else {
            step(&node, st.pristine).await
        };
        if let Some(msg) = msg {
            if last_log.elapsed() >= LOG_EVERY {
                tracing::info!("{msg}");
                last_log = Instant::now();
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
        }
    }
}

/// One round: probe the peers, then join, bootstrap or wait. Returns what we wait for.
async fn step(node: &Node, pristine: bool) -> Option<String> {
    let me = node.peer().clone();
    // Entries may be host names: this node is whichever entry resolves to its address.
    let mut peers: Vec<String> = Vec::new();
    let mut in_list = node.config().static_peers().is_empty(); // empty: a one-node cluster
    for entry in node.config().static_peers() {
        if is_me(entry, &me.rpc_addr).await {
            in_list = true;
        } else {
            peers.push(entry.clone());
        }
    }
    let replies = futures::future::join_all(peers.iter().map(|a| hello(node, a))).await;
    let mut reached: Vec<HelloReply> = Vec::new();
    let mut missing: Vec<&str> = Vec::new();
    for (addr, r) in peers.iter().zip(replies) {
        match r {
            Some(r) if r.id != node.id() => reached.push(r),
            Some(_) => {} // Our own address under another name.
            None => missing.push(addr),
        }
    }

    // An existing cluster wins: join it.
    if let Some(leader) = reached.iter().find_map(|r| r.leader.clone()) {
        return match join(node, &leader.1).await {
            Ok(()) => Some(format!("asked leader {} to join; waiting to be added", leader.0)),
            Err(e) => Some(format!("join via leader {} failed: {e}", leader.0)),
        };
    }
    if reached.iter().any(|r| r.initialized) {
        return Some("peers belong to a cluster with no leader yet; waiting to join".into());
    }
    if !pristine {
        return Some("this node has stored state, so it never bootstraps; waiting for its cluster".into());
    }
    if !in_list {
        return Some(format!(
            "{} is not in BRAFT_DISCOVERY, so it only joins an existing cluster; none found yet",
            me.rpc_addr
        ));
    }

    let expect = node
        .config()
        .bootstrap_expect
        .unwrap_or(node.config().static_peers().len().max(1));
    let mut fresh: BTreeMap<NodeId, Peer> = reached
        .iter()
        .filter(|r| r.pristine)
        .map(|r| (r.id, r.peer.clone()))
        .collect();
    fresh.insert(node.id(), me);
    if fresh.len() < expect {
        return Some(format!(
            "waiting for {} more peers: {}",
            expect - fresh.len(),
            if missing.is_empty() {
                "(reached but not pristine)".to_string()
            } else {
                missing.join(", ")
            }
        ));
    }
    let lowest = *fresh.keys().next().expect("fresh holds this node");
    if lowest != node.id() {
        return Some(format!(
            "{} pristine nodes met; node {lowest} (lowest id) bootstraps",
            fresh.len()
        ));
    }
    // Collect the promises: our own first, then every other member's.
    if let PromiseReply::Refused(why) = node.handle_promise(node.id()) {
        return Some(format!("not bootstrapping: {why}"));
    }
    let asks = fresh
        .iter()
        .filter(|(id, _)| **id != node.id())
        .map(|(id, p)| async move { (*id, promise(node, &p.rpc_addr).await) });
    for (id, reply) in futures::future::join_all(asks).await {
        match reply {
            Ok(PromiseReply::Granted) => {}
            Ok(PromiseReply::Refused(why)) => return Some(format!("node {id} will not back this bootstrap: {why}")),
            Err(e) => return Some(format!("no promise from node {id}: {e}")),
        }
    }
    tracing::info!(voters = ?fresh.keys().collect::<Vec<_>>(), "every member promised; bootstrapping the cluster");
    match node.consensus().initialize(fresh).await {
        Ok(()) => None,
        Err(e) => Some(format!("bootstrap failed: {e}")),
    }
}

/// Whether the static-list entry `entry` names this node's address `me`.
async fn is_me(entry: &str, me: &str) -> bool {
    if entry == me {
        return true;
    }
    let Ok(me) = me.parse::<std::net::SocketAddr>() else {
        return false;
    };
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::lookup_host(entry)).await {
        Ok(Ok(mut addrs)) => addrs.any(|a| a == me),
        _ => false,
    }
}

async fn promise(node: &Node, addr: &str) -> Result<PromiseReply, String> {
    let mut client = node.inner.pool.raft_client(addr).map_err(|e| e.to_string())?;
    let data = wire::encode(&PromiseRequest { initializer: node.id() }).map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(PROBE_TIMEOUT, client.promise(crate::pb::Opaque { data }))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    wire::decode(&resp.into_inner().data).map_err(|e| e.to_string())
}

const PROMISE_FILE: &str = "bootstrap-promise.json";

/// The promise this node made, if any (see the module doc).
pub(super) fn load_promise(dir: &std::path::Path) -> std::io::Result<Option<NodeId>> {
    match std::fs::read(dir.join(PROMISE_FILE)) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn save_promise(dir: &std::path::Path, id: NodeId) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{PROMISE_FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(id.to_string().as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(PROMISE_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

async fn hello(node: &Node, addr: &str) -> Option<HelloReply> {
    let mut client = node.inner.pool.raft_client(addr).ok()?;
    let data = wire::encode(&HelloRequest {
        from: node.id(),
        peer: node.peer().clone(),
    })
    .ok()?;
    let resp = tokio::time::timeout(PROBE_TIMEOUT, client.hello(crate::pb::Opaque { data }))
        .await
        .ok()?
        .ok()?;
    wire::decode(&resp.into_inner().data).ok()
}

async fn join(node: &Node, leader: &Peer) -> Result<(), String> {
    let mut client = node
        .inner
        .pool
        .raft_client(&leader.rpc_addr)
        .map_err(|e| e.to_string())?;
    let data = wire::encode(&JoinRequest {
        id: node.id(),
        peer: node.peer().clone(),
    })
    .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(5), client.join(crate::pb::Opaque { data }))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    match wire::decode::<JoinReply>(&resp.into_inner().data).map_err(|e| e.to_string())? {
        JoinReply::Accepted => Ok(()),
        JoinReply::NotLeader { leader } => Err(format!("not the leader (leader: {leader:?})")),
        JoinReply::Failed(e) => Err(e),
    }
}

impl Node {
    /// Answers a formation probe.
    pub(crate) fn handle_hello(&self, _req: HelloRequest) -> HelloReply {
        let st = self.status();
        HelloReply {
            id: self.id(),
            peer: self.peer().clone(),
            pristine: st.pristine,
            initialized: st.initialized,
            leader: st.leader.and_then(|l| st.peer(l).map(|p| (l, p.clone()))),
        }
    }

    /// Backs `initializer` as the one node that forms the cluster, if this node is still
    /// pristine and has backed no other. The promise is on disk before it is granted.
    pub(crate) fn handle_promise(&self, initializer: NodeId) -> PromiseReply {
        let mut promised = self.inner.promised_to.lock().unwrap_or_else(|p| p.into_inner());
        if !self.status().pristine {
            return PromiseReply::Refused(format!("node {} is no longer pristine", self.id()));
        }
        match *promised {
            Some(p) if p == initializer => PromiseReply::Granted,
            Some(p) => PromiseReply::Refused(format!("node {} already backs node {p}", self.id())),
            None => match save_promise(&self.inner.data_dir, initializer) {
                Ok(()) => {
                    *promised = Some(initializer);
                    tracing::info!(initializer, "promised to back this bootstrap");
                    PromiseReply::Granted
                }
                Err(e) => PromiseReply::Refused(format!("cannot record the promise: {e}")),
            },
        }
    }

    /// Adds a joining node as a learner (leader only) and starts its promotion.
    pub(crate) async fn handle_join(&self, req: JoinRequest) -> JoinReply {
        let st = self.status();
        if !st.is_leader() {
            return JoinReply::NotLeader {
                leader: st.leader.and_then(|l| st.peer(l).map(|p| (l, p.clone()))),
            };
        }
        if st.voters.contains(&req.id) {
            return JoinReply::Accepted;
        }
        if !st.members.contains_key(&req.id) {
            tracing::info!(id = req.id, addr = %req.peer.rpc_addr, "adding learner");
            if let Err(e) = self.consensus().add_learner(req.id, req.peer.clone()).await {
                return JoinReply::Failed(format!("add learner: {e}"));
            }
        }
        self.spawn_promotion(req.id);
        JoinReply::Accepted
    }

    /// Promotes learner `id` to voter once it has caught up, unless leadership is lost.
    fn spawn_promotion(&self, id: NodeId) {
        {
            let mut p = self.inner.promoting.lock().unwrap_or_else(|p| p.into_inner());
            if !p.insert(id) {
                return;
            }
        }
        let node = self.clone();
        self.spawn(async move {
            let give_up = Instant::now() + Duration::from_secs(600);
            while Instant::now() < give_up && !node.is_shutting_down() {
                let st = node.status();
                if !st.is_leader() || !st.members.contains_key(&id) || st.voters.contains(&id) {
                    break;
                }
                let matched = st.matched.get(&id).copied().unwrap_or(0);
                if matched > 0 && matched + PROMOTE_LAG >= st.last_log_index {
                    tracing::info!(
                        id,
                        matched,
                        last = st.last_log_index,
                        "learner caught up; promoting to voter"
                    );
                    match node.consensus().promote(BTreeSet::from([id])).await {
                        Ok(()) => break,
                        Err(e) => tracing::warn!(id, "promotion failed, will retry: {e}"),
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            node.inner
                .promoting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
    }
}
