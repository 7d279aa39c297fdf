//! The admin API's operations: membership by hand (add a learner, promote, demote,
//! remove) and leadership transfer. They run on the leader, through the same membership
//! gate as autopilot (one change at a time), plus the quorum rule autopilot keeps: a
//! voter is demoted or removed only while the healthy voters left are a majority of the
//! voters left. Any node accepts them and forwards to the leader over the peer protocol,
//! as writes are forwarded. Each is idempotent: asking for the state that already holds
//! answers success and changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::Node;
use crate::error::Error;
use crate::raft::membership::{MembershipChange, MembershipError};
use crate::raft::{wire, NodeId, Peer};

/// One admin operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminOp {
    /// A new member that receives the log but does not vote (promote it later).
    AddLearner {
        id: NodeId,
        peer: Peer,
    },
    Promote(NodeId),
    Demote(NodeId),
    /// Removes a voter or a learner.
    Remove(NodeId),
    /// Hands leadership to `to`, or to a healthy voter of the leader's choice.
    TransferLeader {
        to: Option<NodeId>,
    },
}

/// One member, as `GET /v1/cluster/members` and `Admin.Members` show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    #[serde(with = "id_string")]
    pub id: NodeId,
    pub rpc_addr: String,
    pub http_addr: String,
    /// `voter` or `learner`.
    pub suffrage: String,
    /// `healthy`, `unhealthy` or `dead`, as the leader's autopilot judges.
    pub health: String,
    /// The last log index the leader knows this member holds.
    pub match_index: u64,
    /// Entries behind the leader.
    pub lag: u64,
    /// Milliseconds since the member last acknowledged the leader.
    pub last_contact_ms: u64,
}

/// The members, from the leader's view.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Members {
    /// The leader as the answering node knows it; 0 when none is known.
    #[serde(with = "id_string")]
    pub leader: NodeId,
    pub term: u64,
    pub members: Vec<Member>,
}

/// Node ids in JSON are strings: they exceed JavaScript's 2^53.
mod id_string {
    pub fn serialize<S: serde::Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }
}

/// Whether `addr` is `host:port` (an IP or a name, with a port).
pub fn is_host_port(addr: &str) -> bool {
    addr.parse::<std::net::SocketAddr>().is_ok()
        || addr
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
}

/// What the leader answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum AdminReply {
    Done(String),
    NotLeader {
        leader: Option<NodeId>,
    },
    /// Retrying will not help until the cluster changes (409).
    Refused(String),
    /// Another change is in flight: retried until the request timeout, then 409.
    Busy(String),
    Failed(String),
}

/// Why an admin operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Refused as unsafe or impossible; nothing changed.
    #[error("refused: {0}")]
    Refused(String),
    /// Another membership change kept this one out until the timeout; nothing changed.
    #[error("busy: {0}")]
    Busy(String),
    #[error(transparent)]
    Other(#[from] Error),
}

impl Node {
    /// The members with their suffrage, health and lag, as the leader sees them (asked of
    /// the leader when this node does not lead).
    pub async fn members(&self) -> Result<Members, Error> {
        let report = self.cluster_autopilot().await?;
        let st = self.raft_status();
        let leader_last = st.last_log_index.max(st.commit_index);
        let health: BTreeMap<NodeId, &crate::node::autopilot::ServerHealth> =
            report.servers.iter().map(|s| (s.id, s)).collect();
        // The membership is the list; autopilot adds health and lag. A leader that has
        // just taken over has no autopilot view yet: its members show as `unknown`.
        let members = st
            .members
            .iter()
            .map(|(id, peer)| {
                let h = health.get(id);
                let lag = h.map_or(0, |s| s.trailing_logs);
                Member {
                    id: *id,
                    rpc_addr: peer.rpc_addr.clone(),
                    http_addr: peer.http_addr.clone(),
                    suffrage: if st.voters.contains(id) { "voter" } else { "learner" }.into(),
                    health: h.map_or_else(|| "unknown".into(), |s| s.health.clone()),
                    match_index: leader_last.saturating_sub(lag),
                    lag,
                    last_contact_ms: h.map_or(0, |s| s.silent_ms),
                }
            })
            .collect();
        // This node's view of the leader, with the term it goes with. (The report's
        // reporter is 0 until a new leader's first autopilot round; answering that
        // made `"leader": "0"` show right after formation.)
        let leader = st.leader.filter(|l| *l != 0).unwrap_or(report.reporter);
        Ok(Members {
            leader,
            term: st.term,
            members,
        })
    }

    /// Runs an admin operation on the leader (forwarding it there from a follower) and
    /// returns what happened, in words.
    pub async fn admin(&self, op: AdminOp) -> Result<String, AdminError> {
        let deadline = Instant::now() + self.inner.config.request_timeout();
        let mut why = String::from("no leader elected");
        loop {
            let (leader, peer) = self.consensus().leader();
            let reply = match (leader, peer) {
                (Some(l), _) if l == self.id() => Some(self.handle_admin(op.clone()).await),
                (Some(_), Some(p)) => match self.forward_admin(&p, &op).await {
                    Ok(r) => Some(r),
                    Err(e) => {
                        why = e;
                        None
                    }
                },
                _ => None,
            };
            match reply {
                Some(AdminReply::Done(d)) => return Ok(d),
                Some(AdminReply::Refused(r)) => return Err(AdminError::Refused(r)),
                Some(AdminReply::Failed(f)) => return Err(Error::Fatal(f).into()),
                Some(AdminReply::Busy(b)) if Instant::now() + Duration::from_millis(100) >= deadline => {
                    return Err(AdminError::Busy(b))
                }
                Some(AdminReply::Busy(b)) => why = b,
                Some(AdminReply::NotLeader { .. }) => why = "the leader changed".into(),
                None => {}
            }
            if self.is_shutting_down() {
                return Err(Error::ShuttingDown.into());
            }
            if Instant::now() + Duration::from_millis(100) >= deadline {
                return Err(Error::Unavailable {
                    reason: format!("no leader took the admin operation in time: {why}"),
                    leader: None,
                }
                .into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn forward_admin(&self, leader: &Peer, op: &AdminOp) -> Result<AdminReply, String> {
        let mut client = self
            .inner
            .pool
            .raft_client(&leader.rpc_addr)
            .map_err(|e| e.to_string())?;
        let data = wire::encode(op).map_err(|e| e.to_string())?;
        let timeout = self.inner.config.request_timeout();
        let resp = tokio::time::timeout(timeout, client.admin(crate::pb::Opaque { data }))
            .await
            .map_err(|_| format!("leader {} did not answer in time", leader.rpc_addr))?
            .map_err(|s| format!("leader {}: {}", leader.rpc_addr, s.message()))?;
        wire::decode(&resp.into_inner().data).map_err(|e| e.to_string())
    }

    /// Runs `op` here, as leader.
    pub(crate) async fn handle_admin(&self, op: AdminOp) -> AdminReply {
        let st = self.status();
        if !st.is_leader() {
            return AdminReply::NotLeader {
                leader: st.leader.filter(|l| *l != self.id()),
            };
        }
        let change = match op {
            AdminOp::AddLearner { id, peer } => match st.members.get(&id) {
                // The same address (an HTTP address left out of the request matches any).
                Some(p)
                    if p.rpc_addr == peer.rpc_addr && (peer.http_addr.is_empty() || p.http_addr == peer.http_addr) =>
                {
                    return AdminReply::Done(format!("{id} is already a member"))
                }
                Some(p) => {
                    return AdminReply::Refused(format!(
                        "member {id} exists at {}; remove it first to move it",
                        p.rpc_addr
                    ))
                }
                None => MembershipChange::AddLearner { id, peer },
            },
            AdminOp::Promote(id) if !st.members.contains_key(&id) => {
                return AdminReply::Refused(format!("{id} is not a member; add it as a learner first"))
            }
            AdminOp::Promote(id) if st.voters.contains(&id) => {
                return AdminReply::Done(format!("{id} is already a voter"))
            }
            AdminOp::Promote(id) => MembershipChange::Promote(BTreeSet::from([id])),
            AdminOp::Demote(id) if !st.members.contains_key(&id) => {
                return AdminReply::Refused(format!("{id} is not a member"))
            }
            AdminOp::Demote(id) if !st.voters.contains(&id) => {
                return AdminReply::Done(format!("{id} is already a learner"))
            }
            AdminOp::Remove(id) if !st.members.contains_key(&id) => {
                return AdminReply::Done(format!("{id} is not a member"))
            }
            AdminOp::Demote(id) | AdminOp::Remove(id) if id == self.id() => {
                return AdminReply::Refused(format!("{id} is the leader; transfer leadership first"))
            }
            AdminOp::Demote(id) | AdminOp::Remove(id) if st.voters.contains(&id) => {
                if let Err(why) = self.keeps_a_quorum(&st, id) {
                    return AdminReply::Refused(why);
                }
                match op {
                    AdminOp::Demote(_) => MembershipChange::Demote(id),
                    _ => MembershipChange::RemoveVoter(id),
                }
            }
            // (A learner's demote was answered above.)
            AdminOp::Demote(id) => return AdminReply::Done(format!("{id} is already a learner")),
            AdminOp::Remove(id) => MembershipChange::RemoveLearner(id),
            AdminOp::TransferLeader { to } => return self.transfer(&st, to).await,
        };
        let what = change.to_string();
        match self.consensus().change_membership(change).await {
            Ok(()) => AdminReply::Done(format!("done: {what}")),
            Err(MembershipError::NotLeader { leader }) => AdminReply::NotLeader { leader },
            Err(MembershipError::Busy(b)) => AdminReply::Busy(b),
            Err(MembershipError::Refused(r)) => AdminReply::Refused(r),
            Err(MembershipError::Failed(f)) => AdminReply::Failed(f),
        }
    }

    /// Whether the voters left after `leaving` goes still have a healthy majority. A voter
    /// is healthy while it has acknowledged this leader within the maximum election
    /// timeout (autopilot's rule).
    fn keeps_a_quorum(&self, st: &crate::RaftStatus, leaving: NodeId) -> Result<(), String> {
        let limit = self.inner.config.election_timeout_max();
        let healthy =
            |id: &NodeId| *id == self.id() || st.last_ack.get(id).copied().flatten().is_some_and(|d| d <= limit);
        let voters = &st.voters;
        let left: Vec<&NodeId> = voters.iter().filter(|v| **v != leaving).collect();
        let healthy_left = left.iter().filter(|v| healthy(v)).count();
        if left.is_empty() || healthy_left * 2 <= left.len() {
            return Err(format!(
                "without {leaving}, {healthy_left} of {} voters would be healthy: below a quorum",
                left.len()
            ));
        }
        Ok(())
    }

    async fn transfer(&self, st: &crate::RaftStatus, to: Option<NodeId>) -> AdminReply {
        let to = match to {
            Some(id) if id == self.id() => return AdminReply::Done(format!("{id} already leads")),
            Some(id) if !st.voters.contains(&id) => {
                return AdminReply::Refused(format!("{id} is not a voter; only a voter can lead"))
            }
            Some(id) => id,
            None => {
                // The voter that acknowledged most recently.
                let best = st
                    .voters
                    .iter()
                    .filter(|v| **v != self.id())
                    .filter_map(|v| Some((st.last_ack.get(v).copied().flatten()?, *v)))
                    .min();
                match best {
                    Some((_, id)) => id,
                    None => return AdminReply::Refused("no other voter is reachable".into()),
                }
            }
        };
        if let Err(e) = self.consensus().transfer_leader(to).await {
            return AdminReply::Failed(e);
        }
        let deadline = Instant::now() + self.inner.config.request_timeout();
        while Instant::now() < deadline {
            if self.status().leader == Some(to) {
                return AdminReply::Done(format!("{to} now leads"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        AdminReply::Failed(format!("{to} did not take over in time"))
    }
}
