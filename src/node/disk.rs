//! A node whose data directory is full.
//!
//! The log writer notices (a write refused with ENOSPC) and waits for space, retrying
//! the same write; see `raft::log`. Meanwhile the node:
//! - refuses writes that enter through it with [`Error::DiskFull`] (HTTP 507, gRPC
//!   RESOURCE_EXHAUSTED) at once, rather than letting them queue behind the stalled
//!   writer until the request timeout;
//! - as leader, answers forwarded writes as a non-leader (the forwarding node retries),
//!   and hands leadership to the most caught-up voter, so that the cluster goes on
//!   writing without it: a leader whose own log cannot grow would otherwise hold every
//!   write behind the followers' acknowledgements and its own stalled flushes;
//! - keeps serving reads and stays a member; the writer's next successful retry clears
//!   the mark, and writes through the node work again without a restart.
//!
//! Reads need care: a node that cannot write cannot record a newer term either, so its
//! Raft core waits on that write and its own idea of the leader goes stale. While the
//! disk is full, a read therefore asks the other members who leads and goes there.

use std::time::Duration;

use super::Node;
use crate::error::Error;
use crate::raft::{NodeId, Peer};

impl Node {
    /// `Err(DiskFull)` while this node's data directory is out of space.
    pub(crate) fn check_disk(&self) -> Result<(), Error> {
        match self.inner.disk.full() {
            Some(why) => Err(Error::DiskFull(why)),
            None => Ok(()),
        }
    }

    /// Where reads go: this node's view of the leader, or, while the disk is full, the
    /// other members' (the first that names a leader other than this node).
    pub(super) async fn read_leader(&self) -> (Option<NodeId>, Option<Peer>) {
        let local = self.inner.consensus.leader();
        if !self.inner.disk.is_full() {
            return local;
        }
        let st = self.status();
        for p in st.members.iter().filter(|(id, _)| **id != st.id).map(|(_, p)| p) {
            let Ok(d) = self.peer_details(&p.rpc_addr).await else {
                continue;
            };
            if d.leader_id != 0 && d.leader_id != st.id {
                if let Some(leader) = st.members.get(&d.leader_id) {
                    return (Some(d.leader_id), Some(leader.clone()));
                }
            }
        }
        local
    }
}

/// While the disk is full and this node leads, hands leadership to the voter that has
/// matched the most of the log.
pub(super) async fn step_down_while_full(node: Node) {
    let mut shutdown = node.shutdown_signal();
    let tick = Duration::from_millis(250);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => return,
        }
        let Some(why) = node.inner.disk.full() else { continue };
        let st = node.status();
        if !st.is_leader() {
            continue;
        }
        let target = st
            .voters
            .iter()
            .filter(|v| **v != st.id)
            .max_by_key(|v| st.matched.get(v).copied().unwrap_or(0))
            .copied();
        let Some(to) = target else {
            // A single voter has no one to hand over to; its writes fail as disk_full.
            continue;
        };
        tracing::warn!(to, "disk full ({why}): handing leadership over");
        if let Err(e) = node.transfer_leader(to).await {
            tracing::warn!("leadership transfer to {to} failed: {e}");
        }
        // Give the transfer an election's time before trying again.
        tokio::time::sleep(Duration::from_millis(node.inner.config.election_timeout_ms * 2)).await;
    }
}
