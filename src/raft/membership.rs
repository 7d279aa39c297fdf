//! The one gate every membership change passes: join, leave, autopilot (promote, remove,
//! finish a joint configuration) and the admin API (add, promote, demote, remove).
//!
//! Why a gate of our own: openraft lets a change through whenever `RaftCore` still holds a
//! `Leader`, and a leader whose removal has just committed still holds one until its
//! step-down watcher fires (150 ms later). Such a leader is no longer leading by openraft's
//! own rule (`is_leading`), and appending a membership entry there trips openraft's debug
//! assertion "Only leader is allowed to call update_effective_membership()" (simulation
//! seeds 5143 and 700237). The gate refuses:
//! - on a node that is not the leader, or whose vote is not committed;
//! - while the latest membership entry is not committed (openraft refuses that too, but
//!   only once the request has reached the core);
//! - on a leader that is not a voter of its own effective configuration: it is on its way
//!   out and must hand over, not reshape the cluster;
//! - a second step while a joint configuration stands, except the step that finishes it.
//!
//! The checks read openraft's metrics, which trail the core. So the change is sent with
//! two preconditions that `RaftCore` re-checks atomically when it handles the request:
//! the vote (same term, still committed, same leader) and the log id of the effective
//! membership the gate looked at. If either moved in between, the core refuses and the
//! caller retries. Together with openraft's own "previous membership committed" rule, this
//! makes the gate's answer the core's answer.

use std::collections::{BTreeMap, BTreeSet};

use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::raft::Precondition;
use openraft::vote::RaftLeaderId;
use openraft::{ChangeMembers, RaftMetrics, ServerState};

use super::{NodeId, Peer, Raft, TypeConfig};

/// A membership change braft makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    /// A new node joins as a learner (it receives the log; autopilot promotes it later).
    AddLearner { id: NodeId, peer: Peer },
    /// A member's addresses changed; its role stays.
    UpdatePeer { id: NodeId, peer: Peer },
    /// Learners become voters (a joint configuration, then the new one).
    Promote(BTreeSet<NodeId>),
    /// A voter leaves the cluster altogether.
    RemoveVoter(NodeId),
    /// A voter becomes a learner: it keeps the log, and no longer votes.
    Demote(NodeId),
    /// A learner leaves the cluster.
    RemoveLearner(NodeId),
    /// A committed joint configuration whose second step never came (its proposer lost
    /// leadership between openraft's two steps) moves on to its new voter set.
    FinishJoint,
}

impl std::fmt::Display for MembershipChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MembershipChange::AddLearner { id, peer } => write!(f, "add learner {id} at {}", peer.rpc_addr),
            MembershipChange::UpdatePeer { id, peer } => write!(f, "move member {id} to {}", peer.rpc_addr),
            MembershipChange::Promote(ids) => write!(f, "promote {ids:?}"),
            MembershipChange::RemoveVoter(id) => write!(f, "remove voter {id}"),
            MembershipChange::Demote(id) => write!(f, "demote voter {id}"),
            MembershipChange::RemoveLearner(id) => write!(f, "remove learner {id}"),
            MembershipChange::FinishJoint => write!(f, "finish the joint configuration"),
        }
    }
}

/// Why a membership change did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// This node does not lead (now): ask the leader, if one is known.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// Another change is in flight, or the membership moved while this one was checked:
    /// try again shortly. Usually nothing was written; but when openraft's second step of
    /// a joint change is refused, the joint configuration stays (committed), and
    /// autopilot finishes it after `JOINT_GRACE`.
    #[error("a membership change is in progress; try again ({0})")]
    Busy(String),
    /// The change cannot be made from this state; retrying will not help until the
    /// state changes (a leader on its way out, nothing to finish, …).
    #[error("membership change refused: {0}")]
    Refused(String),
    /// openraft rejected or failed the change for another reason.
    #[error("membership change failed: {0}")]
    Failed(String),
}

type Metrics = RaftMetrics<TypeConfig>;

/// The gate's decision on one metrics snapshot: the preconditions the core must re-check,
/// or the refusal. Pure, so the rules are unit-tested without a cluster.
pub(crate) fn admit(m: &Metrics, change: &MembershipChange) -> Result<Vec<Precondition<TypeConfig>>, MembershipError> {
    let vote = m.vote.leader_id();
    let leads = m.state == ServerState::Leader
        && m.current_leader == Some(m.id)
        && m.vote.is_committed()
        && vote.voted_for == m.id;
    if !leads {
        return Err(MembershipError::NotLeader {
            leader: m.current_leader.filter(|l| *l != m.id),
        });
    }
    // Standard Raft leader ids: a committed leader is named by its term alone.
    let leader_id = vote.to_committed();
    let effective = &m.membership_config;
    if effective.log_id() != m.committed_membership_config.log_id() {
        return Err(MembershipError::Busy(
            "the latest membership entry is not committed".into(),
        ));
    }
    let membership = effective.membership();
    if !votes_in_own_config(m) {
        return Err(MembershipError::Refused(format!(
            "leader {} is not a voter of its own configuration (it is being removed and steps down)",
            m.id
        )));
    }
    let joint = membership.get_joint_config().len() > 1;
    match change {
        MembershipChange::FinishJoint if !joint => {
            return Err(MembershipError::Refused("no joint configuration to finish".into()));
        }
        MembershipChange::FinishJoint => {}
        _ if joint => return Err(MembershipError::Busy("a joint configuration is in place".into())),
        _ => {}
    }
    Ok(vec![
        Precondition::CommittedLeaderId {
            committed_leader_id: leader_id,
        },
        Precondition::LastMembershipLogId {
            last_membership_log_id: *effective.log_id(),
        },
    ])
}

/// Sends an admitted change to the core; returns once it is committed.
pub(crate) async fn change(raft: &Raft, change: MembershipChange) -> Result<(), MembershipError> {
    let observed = raft.metrics().borrow_watched().clone();
    change_as_observed(raft, &observed, change).await
}

/// [`change`], decided on `observed` metrics, which may be stale by the time the core
/// handles the request: the preconditions make the core refuse it then.
pub(crate) async fn change_as_observed(
    raft: &Raft,
    observed: &Metrics,
    change: MembershipChange,
) -> Result<(), MembershipError> {
    let preconditions = admit(observed, &change)?;
    let (members, retain): (ChangeMembers<NodeId, Peer>, bool) = match change {
        // `retain` only matters for removed voters; a learner added keeps nothing else.
        MembershipChange::AddLearner { id, peer } => (ChangeMembers::AddNodes(BTreeMap::from([(id, peer)])), true),
        MembershipChange::UpdatePeer { id, peer } => (ChangeMembers::SetNodes(BTreeMap::from([(id, peer)])), false),
        MembershipChange::Promote(ids) => (ChangeMembers::AddVoterIds(ids), false),
        MembershipChange::RemoveVoter(id) => (ChangeMembers::RemoveVoters(BTreeSet::from([id])), false),
        // Retained: the removed voter stays on as a learner.
        MembershipChange::Demote(id) => (ChangeMembers::RemoveVoters(BTreeSet::from([id])), true),
        MembershipChange::RemoveLearner(id) => (ChangeMembers::RemoveNodes(BTreeSet::from([id])), false),
        // Adding no voters to a joint configuration yields its new voter set.
        MembershipChange::FinishJoint => (ChangeMembers::AddVoterIds(BTreeSet::new()), false),
    };
    match raft.change_membership_if(members, retain, preconditions).await {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(MembershipError::NotLeader { leader: f.leader_id })
        }
        Err(RaftError::APIError(ClientWriteError::PreconditionFailed(e))) => Err(MembershipError::Busy(format!(
            "the leader or the membership moved meanwhile: {e}"
        ))),
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(e)))) => {
            Err(MembershipError::Busy(e.to_string()))
        }
        Err(RaftError::APIError(e)) => Err(MembershipError::Failed(e.to_string())),
        Err(RaftError::Fatal(e)) => Err(MembershipError::Failed(e.to_string())),
    }
}

/// Whether this node leads but is no voter of its own effective configuration: a leader
/// on its way out. (It gets out: openraft's step-down watcher, on by default and never
/// turned off by braft, hands over 150 ms after its removal commits.) It takes no client writes: it steps down as soon as the change that
/// removes it commits, so the caller is better served by a clean "not leader" (and a
/// retry on the next leader) than by an entry appended by a node leaving office.
pub(crate) fn leader_on_its_way_out(m: &Metrics) -> bool {
    m.state == ServerState::Leader && !votes_in_own_config(m)
}

/// Whether this node is a voter of its effective configuration (in either half of a
/// joint one).
fn votes_in_own_config(m: &Metrics) -> bool {
    m.membership_config.membership().voter_ids().any(|v| v == m.id)
}

#[cfg(test)]
mod tests {
    //! The gate's rules on hand-made metrics.
    use super::*;
    use crate::raft::{LogId, StoredMembership, Vote};
    use openraft::Membership;

    fn peer(i: NodeId) -> Peer {
        Peer {
            rpc_addr: format!("10.0.0.{i}:15000"),
            http_addr: format!("10.0.0.{i}:15002"),
        }
    }

    fn log_id(index: u64) -> LogId {
        use openraft::vote::RaftLeaderIdExt;
        LogId::new(
            openraft::impls::leader_id_std::LeaderId::<u64, NodeId>::new_committed(2, 1),
            index,
        )
    }

    fn membership(configs: Vec<BTreeSet<NodeId>>, nodes: &[NodeId]) -> Membership<NodeId, Peer> {
        Membership::new(
            configs,
            nodes.iter().map(|i| (*i, peer(*i))).collect::<BTreeMap<_, _>>(),
        )
        .unwrap()
    }

    /// Node 1 leads term 2; the effective membership (at `effective_at`) is `m`, the
    /// committed one sits at `committed_at`.
    fn leader_metrics(m: Membership<NodeId, Peer>, effective_at: u64, committed_at: u64) -> Metrics {
        let mut metrics = Metrics::new_initial(1);
        metrics.state = ServerState::Leader;
        metrics.current_term = 2;
        metrics.current_leader = Some(1);
        metrics.vote = Vote::new_committed(2, 1);
        metrics.membership_config = std::sync::Arc::new(StoredMembership::new(Some(log_id(effective_at)), m.clone()));
        metrics.committed_membership_config = std::sync::Arc::new(StoredMembership::new(Some(log_id(committed_at)), m));
        metrics
    }

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    fn join(id: NodeId) -> MembershipChange {
        MembershipChange::AddLearner { id, peer: peer(id) }
    }

    /// A committed uniform configuration with the leader in it admits a change, bound to
    /// the observed leader and membership entry.
    #[test]
    fn a_settled_leader_may_change_membership() {
        let m = leader_metrics(membership(vec![set(&[1, 2, 3])], &[1, 2, 3]), 5, 5);
        let pre = admit(&m, &join(4)).unwrap();
        assert_eq!(pre.len(), 2);
        assert!(pre.iter().any(|p| matches!(p,
            Precondition::LastMembershipLogId { last_membership_log_id } if *last_membership_log_id == Some(log_id(5)))));
    }

    /// Seeds 5143 and 700237: the change removing leader 1 has committed; openraft still
    /// holds a Leader for 150 ms. Nothing may change the membership there.
    #[test]
    fn a_removed_leader_changes_nothing() {
        let m = leader_metrics(membership(vec![set(&[2, 3])], &[2, 3]), 7, 7);
        assert!(matches!(admit(&m, &join(4)), Err(MembershipError::Refused(_))));
        assert!(matches!(
            admit(&m, &MembershipChange::RemoveVoter(3)),
            Err(MembershipError::Refused(_))
        ));
        assert!(leader_on_its_way_out(&m));
    }

    /// An uncommitted membership entry blocks every change, also finishing a joint one.
    #[test]
    fn an_uncommitted_membership_blocks_every_change() {
        let m = leader_metrics(membership(vec![set(&[1, 2, 3])], &[1, 2, 3, 4]), 6, 5);
        assert!(matches!(admit(&m, &join(5)), Err(MembershipError::Busy(_))));
        assert!(matches!(
            admit(&m, &MembershipChange::FinishJoint),
            Err(MembershipError::Busy(_))
        ));
    }

    /// A committed joint configuration admits only its finishing step — also from a
    /// leader that is only in the old voter set (it drives its own removal, then steps
    /// down).
    #[test]
    fn a_joint_configuration_admits_only_its_finish() {
        let m = leader_metrics(membership(vec![set(&[1, 2, 3]), set(&[2, 3, 4])], &[1, 2, 3, 4]), 6, 6);
        assert!(admit(&m, &MembershipChange::FinishJoint).is_ok());
        assert!(matches!(admit(&m, &join(5)), Err(MembershipError::Busy(_))));
        assert!(!leader_on_its_way_out(&m));
        let settled = leader_metrics(membership(vec![set(&[1, 2, 3])], &[1, 2, 3]), 6, 6);
        assert!(matches!(
            admit(&settled, &MembershipChange::FinishJoint),
            Err(MembershipError::Refused(_))
        ));
    }

    /// A follower, or a candidate whose vote is not committed, admits nothing.
    #[test]
    fn only_an_established_leader_admits() {
        let mut m = leader_metrics(membership(vec![set(&[1, 2, 3])], &[1, 2, 3]), 5, 5);
        m.vote = Vote::new(2, 1);
        assert!(matches!(admit(&m, &join(4)), Err(MembershipError::NotLeader { .. })));
        m.vote = Vote::new_committed(2, 2);
        m.state = ServerState::Follower;
        m.current_leader = Some(2);
        assert!(matches!(
            admit(&m, &join(4)),
            Err(MembershipError::NotLeader { leader: Some(2) })
        ));
    }
}
