//! Safe cluster formation and joining, for every discovery method.
//!
//! The rule that keeps the brain whole:
//! - Only a *pristine* node (no term, no log, no snapshot) may take part in forming a new
//!   cluster; with static discovery, only if it is in the list itself.
//! - It waits until it has reached `BRAFT_BOOTSTRAP_EXPECT` distinct pristine nodes
//!   (itself included; default: the static list's length, else 3) and none of the
//!   peers it reached belongs to a cluster.
//! - Then the one with the lowest node id asks each of them for a *promise* to back it.
//!   A node promises at most one initializer, ever (the promise is kept on disk), and
//!   the lowest node initializes the cluster with all of them as voters only once every
//!   one has promised. Since the expected count is a majority of the static list, two
//!   groups that could each form a cluster share a node, which backs only one of them —
//!   even when peers see each other only one way. The others wait for its leader.
//! - A node that finds an existing cluster asks its leader to join: it is added as a
//!   learner, and autopilot promotes it once it has caught up and stayed healthy.
//! - A node with stored state never bootstraps. A member that hears no leader for a
//!   while asks its discovered peers whether the cluster still counts it (with its
//!   current address); if not — it was removed while away, or its address changed —
//!   it rejoins through the leader, keeping its identity.
//!
//! The loop runs for the node's lifetime.

use std::collections::BTreeMap;
use std::time::Duration;

// Tokio's clock, not the OS's: a simulation (or a paused test runtime) drives it.
use tokio::time::Instant;

use super::forward::{HelloReply, HelloRequest, JoinReply, JoinRequest, LeaveRequest, PromiseReply, PromiseRequest};
use super::Node;
use crate::raft::membership::{MembershipChange, MembershipError};
use crate::raft::{wire, NodeId, Peer};

const PROBE_INTERVAL: Duration = Duration::from_millis(200);
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);
const LOG_EVERY: Duration = Duration::from_secs(2);
/// A member that no leader has reached for this long checks whether it still belongs.
const LEADERLESS_CHECK: Duration = Duration::from_secs(3);

/// Runs until shutdown: forms or joins a cluster, and rejoins when the cluster has moved
/// on without this node.
pub async fn run(node: Node) {
    let mut shutdown = node.shutdown_signal();
    let mut last_log = Instant::now() - LOG_EVERY;
    let mut was_member = false;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let st = node.status();
        let member = st.members.get(&node.id());
        let msg = if let Some(addr) = member {
            if !was_member {
                tracing::info!(
                    id = node.id(),
                    voter = st.voters.contains(&node.id()),
                    "member of the cluster"
                );
                was_member = true;
            }
            if addr.rpc_addr != node.peer().rpc_addr {
                // Our address changed (a rescheduled pod): tell the leader.
                rejoin(&node, &st).await
            } else if st.is_leader() || node.leader_silence() < LEADERLESS_CHECK {
                None
            } else {
                check_still_member(&node).await
            }
        } else {
            was_member = false;
            step(&node, st.pristine).await
        };
        if let Some(msg) = msg {
            if last_log.elapsed() >= LOG_EVERY {
                tracing::info!("{msg}");
                last_log = Instant::now();
            }
        }
        let pause = if member.is_some() {
            PROBE_INTERVAL * 5
        } else {
            PROBE_INTERVAL
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Asks the leader (as far as this node knows it) to record this node's current address.
async fn rejoin(node: &Node, st: &crate::raft::consensus::RaftStatus) -> Option<String> {
    let leader = st.leader.and_then(|l| st.peer(l).cloned())?;
    match join(node, &leader).await {
        Ok(()) => Some("asked the leader to record this node's new address".into()),
        Err(e) => Some(format!("address update via the leader failed: {e}")),
    }
}

/// A member without a leader: if the leader's membership lacks this node (or has it at
/// another address), rejoin through that leader.
///
/// Only the leader's own word counts. Two removed nodes that restart together each still
/// list the other as a member, and each "follows" the leader restored from its vote;
/// taking the first such peer's word, each waited for the other forever (simulation
/// seed 21805). So ask every peer, and if none of them leads now, ask the leaders they
/// name, directly.
async fn check_still_member(node: &Node) -> Option<String> {
    let peers = node.discovered_peers();
    let mut replies: Vec<HelloReply> = futures::future::join_all(peers.iter().map(|a| hello(node, a)))
        .await
        .into_iter()
        .flatten()
        .filter(|r| r.id != node.id() && r.initialized)
        .collect();
    if !replies.iter().any(|r| r.leading) {
        let named: std::collections::BTreeSet<String> = replies
            .iter()
            .filter_map(|r| r.leader.as_ref())
            .filter(|(lid, _)| *lid != node.id())
            .map(|(_, p)| p.rpc_addr.clone())
            .collect();
        for addr in named {
            replies.extend(hello(node, &addr).await.filter(|r| r.id != node.id()));
        }
    }
    let Some(leader) = replies.iter().find(|r| r.leading) else {
        return Some("member without a leader; no peer leads or knows who does".into());
    };
    if leader.your_member_addr.as_deref() == Some(node.peer().rpc_addr.as_str()) {
        return Some(format!(
            "no leader here, but leader {} counts this node; waiting",
            leader.id
        ));
    }
    tracing::info!(
        leader = leader.id,
        "the cluster no longer counts this node at this address; rejoining"
    );
    Some(match join(node, &leader.peer).await {
        Ok(()) => format!("asked leader {} to take this node back as a learner", leader.id),
        Err(e) => format!("rejoin via leader {} failed: {e}", leader.id),
    })
}

/// One round: probe the peers, then join, bootstrap or wait. Returns what we wait for.
async fn step(node: &Node, pristine: bool) -> Option<String> {
    let me = node.peer().clone();
    let Some(discovered) = node.discovery_answer() else {
        return Some("waiting for discovery's first answer".into());
    };
    let fixed = node.inner.discovery.is_static();
    // Entries may be host names: this node is whichever entry resolves to its address.
    let mut peers: Vec<String> = Vec::new();
    // A static list names who may form the cluster (empty: a one-node cluster); any
    // other method lets every discovered pristine node take part.
    let mut in_list = !fixed || discovered.is_empty();
    for entry in &discovered {
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

    if reached.iter().any(|r| r.initialized) {
        node.inner
            .cluster_seen
            .store(true, std::sync::atomic::Ordering::Relaxed);
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

    let expect = match node.config().bootstrap_expect {
        Some(n) => n,
        None if fixed => discovered.len().max(1),
        None => 3,
    };
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
                "(none discovered yet, or reached but not pristine)".to_string()
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
    // At most BRAFT_MAX_VOTERS initial voters, the lowest ids; the rest join later as
    // learners.
    let fresh: BTreeMap<NodeId, Peer> = fresh.into_iter().take(node.config().max_voters).collect();
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
    match probe(node, addr).await {
        Probe::Answered(reply) => reply,
        Probe::Refused => {
            Box::pin(hint_raft_port(node, addr)).await;
            None
        }
        Probe::Failed => None,
    }
}

/// What one formation probe found.
enum Probe {
    /// A braft node answered (its reply, if it decoded).
    Answered(Option<HelloReply>),
    /// Nothing accepts connections there.
    Refused,
    Failed,
}

async fn probe(node: &Node, addr: &str) -> Probe {
    let Ok(mut client) = node.inner.pool.raft_client(addr) else {
        return Probe::Failed;
    };
    let Ok(data) = wire::encode(&HelloRequest {
        from: node.id(),
        peer: node.peer().clone(),
    }) else {
        return Probe::Failed;
    };
    match tokio::time::timeout(PROBE_TIMEOUT, client.hello(crate::pb::Opaque { data })).await {
        Ok(Ok(resp)) => Probe::Answered(wire::decode(&resp.into_inner().data).ok()),
        Ok(Err(status)) if crate::transport::never_sent(&status) => Probe::Refused,
        _ => Probe::Failed,
    }
}

/// The Go braft listed discovery ports (RPORT+1) in `BRAFT_DISCOVERY`; braft lists Raft
/// ports. When a listed peer refuses connections but a braft node answers one port
/// lower, say so once rather than wait in silence.
async fn hint_raft_port(node: &Node, addr: &str) {
    if !node.config().discovery.is_static() {
        return;
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return;
    };
    let Some(lower) = port
        .parse::<u16>()
        .ok()
        .and_then(|p| p.checked_sub(1))
        .filter(|p| *p > 0)
    else {
        return;
    };
    if node.discovery_warnings().iter().any(|w| w.contains(addr)) {
        return;
    }
    let alt = format!("{host}:{lower}");
    let answered = matches!(probe(node, &alt).await, Probe::Answered(_));
    if answered {
        let warning = format!(
            "braft lists raft ports; did you mean {alt}? {addr} in BRAFT_DISCOVERY refuses connections, \
             and a braft node answers on {alt} (the Go braft listed discovery ports, RPORT+1)"
        );
        tracing::warn!("{warning}");
        node.inner
            .discovery_warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(warning);
    }
}

async fn join(node: &Node, leader: &Peer) -> Result<(), String> {
    let data = wire::encode(&JoinRequest {
        id: node.id(),
        peer: node.peer().clone(),
    })
    .map_err(|e| e.to_string())?;
    membership_rpc(node, leader, data, false).await
}

impl Node {
    /// Answers a formation probe.
    pub(crate) fn handle_hello(&self, req: HelloRequest) -> HelloReply {
        let st = self.status();
        HelloReply {
            your_member_addr: st.peer(req.from).map(|p| p.rpc_addr.clone()),
            id: self.id(),
            peer: self.peer().clone(),
            pristine: st.pristine,
            initialized: st.initialized,
            leader: st.leader.and_then(|l| st.peer(l).map(|p| (l, p.clone()))),
            leading: st.is_leader(),
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

    /// Adds a joining node as a learner (leader only); autopilot promotes it later. A
    /// member that joins again with a new address gets its address updated.
    /// Idempotent: joining twice changes nothing.
    pub(crate) async fn handle_join(&self, req: JoinRequest) -> JoinReply {
        let st = self.status();
        if !st.is_leader() {
            return not_leader(&st);
        }
        let change = match st.members.get(&req.id) {
            Some(p) if *p == req.peer => return JoinReply::Accepted,
            Some(old) => {
                tracing::info!(id = req.id, old = %old.rpc_addr, new = %req.peer.rpc_addr, "member moved; updating its address");
                MembershipChange::UpdatePeer {
                    id: req.id,
                    peer: req.peer,
                }
            }
            None => {
                tracing::info!(id = req.id, addr = %req.peer.rpc_addr, "adding learner");
                MembershipChange::AddLearner {
                    id: req.id,
                    peer: req.peer,
                }
            }
        };
        membership_reply(&st, self.consensus().change_membership(change).await)
    }

    /// Removes a leaving node (leader only). Idempotent.
    pub(crate) async fn handle_leave(&self, req: LeaveRequest) -> JoinReply {
        let st = self.status();
        if !st.is_leader() {
            return not_leader(&st);
        }
        if req.id == self.id() {
            return JoinReply::Failed("the leader cannot remove itself; transfer leadership first".into());
        }
        let change = if st.voters.contains(&req.id) {
            tracing::info!(id = req.id, "voter leaving; removing it");
            MembershipChange::RemoveVoter(req.id)
        } else if st.members.contains_key(&req.id) {
            tracing::info!(id = req.id, "learner leaving; removing it");
            MembershipChange::RemoveLearner(req.id)
        } else {
            return JoinReply::Accepted;
        };
        membership_reply(&st, self.consensus().change_membership(change).await)
    }

    /// Leaves the cluster: hands leadership over first if this node leads, then asks
    /// the leader to remove it. Used on SIGTERM when `BRAFT_LEAVE_ON_SHUTDOWN` is set.
    pub async fn leave(&self) -> Result<(), crate::Error> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let unavailable = |reason: String| crate::Error::Unavailable { reason, leader: None };
        loop {
            let st = self.status();
            if !st.members.contains_key(&self.id()) {
                tracing::info!("left the cluster");
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(unavailable("could not leave the cluster within 15 s".into()));
            }
            if st.is_leader() {
                // Hand over to the most caught-up other voter, but only between
                // membership changes (else wait): a successor chosen mid-change could
                // be the voter the change is removing.
                let to = st
                    .voters
                    .iter()
                    .filter(|v| **v != self.id())
                    .max_by_key(|v| st.matched.get(v).copied().unwrap_or(0));
                match to {
                    _ if st.membership_changing => {}
                    Some(to) => {
                        tracing::info!(to, "leaving: transferring leadership first");
                        if let Err(e) = self.consensus().transfer_leader(*to).await {
                            tracing::warn!("leadership transfer failed: {e}");
                        }
                    }
                    None => return Err(unavailable("the only voter cannot leave its cluster".into())),
                }
            } else if let Some(leader) = st.leader.and_then(|l| st.peer(l).cloned()) {
                // The leader answers once the removal is committed. This node may never
                // see that entry itself (it is no longer replicated to), so the answer
                // is what counts.
                match leave_via(self, &leader).await {
                    Ok(()) => {
                        tracing::info!("left the cluster");
                        return Ok(());
                    }
                    Err(e) => tracing::warn!("leave request failed: {e}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn leave_via(node: &Node, leader: &Peer) -> Result<(), String> {
    let data = wire::encode(&LeaveRequest { id: node.id() }).map_err(|e| e.to_string())?;
    membership_rpc(node, leader, data, true).await
}

fn not_leader(st: &crate::raft::consensus::RaftStatus) -> JoinReply {
    JoinReply::NotLeader {
        leader: st.leader.and_then(|l| st.peer(l).map(|p| (l, p.clone()))),
    }
}

/// Turns the gate's answer (`raft::membership`, one change at a time, never from a
/// leader on its way out) into the reply; the joining or leaving node retries on
/// anything but `Accepted`.
fn membership_reply(st: &crate::raft::consensus::RaftStatus, result: Result<(), MembershipError>) -> JoinReply {
    match result {
        Ok(()) => JoinReply::Accepted,
        Err(MembershipError::NotLeader { leader }) => JoinReply::NotLeader {
            leader: leader.and_then(|l| st.peer(l).map(|p| (l, p.clone()))),
        },
        Err(e) => JoinReply::Failed(e.to_string()),
    }
}

/// Sends an encoded `Join` (or, with `leave`, `Leave`) request to `leader` and reads
/// its answer.
async fn membership_rpc(node: &Node, leader: &Peer, data: Vec<u8>, leave: bool) -> Result<(), String> {
    let mut client = node
        .inner
        .pool
        .raft_client(&leader.rpc_addr)
        .map_err(|e| e.to_string())?;
    let req = crate::pb::Opaque { data };
    let call = async {
        if leave {
            client.leave(req).await
        } else {
            client.join(req).await
        }
    };
    let resp = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    match wire::decode::<JoinReply>(&resp.into_inner().data).map_err(|e| e.to_string())? {
        JoinReply::Accepted => Ok(()),
        JoinReply::NotLeader { leader } => Err(format!("not the leader (leader: {leader:?})")),
        JoinReply::Failed(e) => Err(e),
    }
}
