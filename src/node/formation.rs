//! Safe cluster formation and joining, for static discovery.
//!
//! The rule that keeps the brain whole:
//! - Only a *pristine* node (no term, no log, no snapshot) may take part in forming a new
//!   cluster, and only if it is in the static list itself.
//! - It waits until it has reached `BRAFT_BOOTSTRAP_EXPECT` distinct pristine nodes
//!   (itself included) and none of the peers it reached belongs to a cluster.
//! - Then exactly one of them — the one with the lowest node id — initializes the cluster
//!   with all of them as voters. The others wait to hear from its leader.
//! - A node that finds an existing cluster asks its leader to join: it is added as a
//!   learner and promoted to voter once it has caught up.
//! - A node with stored state never bootstraps.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::forward::{HelloReply, HelloRequest, JoinReply, JoinRequest};
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
    let peers: Vec<String> = node
        .config()
        .static_peers()
        .iter()
        .filter(|a| **a != me.rpc_addr)
        .cloned()
        .collect();
    // An empty list means a one-node cluster of just this node.
    let in_list = node.config().static_peers().is_empty() || node.config().static_peers().contains(&me.rpc_addr);
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
    tracing::info!(voters = ?fresh.keys().collect::<Vec<_>>(), "bootstrapping the cluster");
    match node.consensus().initialize(fresh).await {
        Ok(()) => None,
        Err(e) => Some(format!("bootstrap failed: {e}")),
    }
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
        tokio::spawn(async move {
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
