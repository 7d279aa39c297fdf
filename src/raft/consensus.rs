//! [`Consensus`]: the narrow face of the Raft core that the rest of braft uses. It turns
//! openraft's rich error types into the few outcomes callers act on.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::{ReadPolicy, ServerState};

use super::membership::{MembershipChange, MembershipError};
use super::{NodeId, Peer, Raft, Request, Response};

/// The outcome of proposing one entry on this node.
#[derive(Debug)]
pub enum Proposal {
    /// Committed and applied at this log index.
    Applied { index: u64, response: Response },
    /// Not leader (or not yet able to lead): try the hinted leader, or wait.
    NotLeader { leader: Option<NodeId> },
    /// The entry was appended but discarded by a leader change: it may still commit.
    Discarded,
    /// The core has stopped.
    Fatal(String),
}

/// Why this node could not confirm a read (as leader).
#[derive(Debug)]
pub enum ReadRefused {
    NotLeader {
        leader: Option<NodeId>,
    },
    /// Quorum could not be confirmed in time (or the read point was not applied in time).
    NoQuorum(String),
    Fatal(String),
}

/// A snapshot of this node's Raft state, for status pages and probes.
#[derive(Debug, Clone, Default)]
pub struct RaftStatus {
    pub id: NodeId,
    pub state: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    pub snapshot_index: u64,
    /// The last log index removed from the log (0 if none).
    pub purged_index: u64,
    pub voters: BTreeSet<NodeId>,
    pub members: BTreeMap<NodeId, Peer>,
    /// True once this node holds a membership: it belongs to a cluster.
    pub initialized: bool,
    /// Nothing stored at all: no term, no log, no snapshot. Only such nodes may form a
    /// new cluster.
    pub pristine: bool,
    /// Leader only: each follower's last matched log index.
    pub matched: BTreeMap<NodeId, u64>,
    /// Leader only: how long ago each node last acknowledged a heartbeat or an append
    /// (`None`: not since this node became leader).
    pub last_ack: BTreeMap<NodeId, Option<Duration>>,
    /// A membership change is under way (a joint configuration, or the latest
    /// membership entry is not committed yet).
    pub membership_changing: bool,
    /// The membership is a joint configuration (old and new voter sets at once).
    pub joint_membership: bool,
    /// The latest membership entry is committed.
    pub membership_committed: bool,
}

impl RaftStatus {
    pub fn is_leader(&self) -> bool {
        self.leader == Some(self.id) && self.state == "Leader"
    }
    pub fn peer(&self, id: NodeId) -> Option<&Peer> {
        self.members.get(&id)
    }
}

/// A node's role in the cluster, as leader-change hooks and [`crate::Node::roles`] report
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Role {
    /// Leading, with this term's first entry committed and applied here: the applied
    /// state holds every write acknowledged before this node took office.
    Leader,
    Follower,
    Learner,
    /// Campaigning, or elected but not yet established (its first entry uncommitted).
    Candidate,
    /// The node stopped.
    Shutdown,
}

/// One observation of this node's role, taken from a metrics update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleView {
    pub role: Role,
    pub term: u64,
    /// The applied index at that moment.
    pub applied_index: u64,
    /// The leader this node knows of, if any.
    pub leader: Option<NodeId>,
}

/// Follows this node's role through the core's metrics.
pub struct RoleWatch {
    rx: openraft::alias::WatchReceiverOf<super::TypeConfig, openraft::RaftMetrics<super::TypeConfig>>,
}

impl RoleWatch {
    /// Waits for the next metrics update; false once the core has stopped.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }

    /// The role as the latest metrics show it. A leader counts as [`Role::Leader`] only
    /// once it has applied an entry of its own term: that entry (the blank one every new
    /// leader appends) is committed, so every entry of earlier terms is committed and
    /// applied too. Until then it is a [`Role::Candidate`].
    pub fn view(&self) -> RoleView {
        let m = self.rx.borrow_watched();
        let applied_term = m.last_applied.map_or(0, |l| l.leader_id.term);
        let role = match m.state {
            ServerState::Leader if m.current_leader == Some(m.id) && applied_term == m.current_term => Role::Leader,
            ServerState::Leader | ServerState::Candidate => Role::Candidate,
            ServerState::Follower => Role::Follower,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        };
        RoleView {
            role,
            term: m.current_term,
            applied_index: m.last_applied.map_or(0, |l| l.index),
            leader: m.current_leader,
        }
    }
}

/// The Raft core, wrapped.
#[derive(Clone)]
pub struct Consensus {
    raft: Raft,
}

impl Consensus {
    pub(crate) fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn status(&self) -> RaftStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let state = match m.state {
            ServerState::Leader => "Leader",
            ServerState::Follower => "Follower",
            ServerState::Candidate => "Candidate",
            ServerState::Learner => "Learner",
            ServerState::Shutdown => "Shutdown",
        };
        let members: BTreeMap<NodeId, Peer> = membership.nodes().map(|(id, p)| (*id, p.clone())).collect();
        let matched = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, l)| (*id, l.as_ref().map_or(0, |l| l.index)))
                    .collect()
            })
            .unwrap_or_default();
        let last_ack = m
            .heartbeat
            .as_ref()
            .map(|h| {
                h.iter()
                    .map(|(id, t)| (*id, t.as_ref().map(|t| openraft::Instant::elapsed(&**t))))
                    .collect()
            })
            .unwrap_or_default();
        let joint_membership = membership.get_joint_config().len() > 1;
        let membership_committed = m.membership_config.log_id() == m.committed_membership_config.log_id();
        let membership_changing = joint_membership || !membership_committed;
        RaftStatus {
            id: m.id,
            state: state.to_string(),
            term: m.current_term,
            leader: m.current_leader,
            commit_index: m.local_committed.map_or(0, |l| l.index),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            last_log_index: m.last_log_index.unwrap_or(0),
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
            purged_index: m.purged.map_or(0, |l| l.index),
            voters: membership.voter_ids().collect(),
            initialized: !members.is_empty(),
            pristine: members.is_empty() && m.current_term == 0 && m.last_log_index.is_none() && m.snapshot.is_none(),
            members,
            matched,
            last_ack,
            membership_changing,
            joint_membership,
            membership_committed,
        }
    }

    /// The current leader and its addresses, read without copying the whole status (this
    /// is on every request's path).
    pub fn leader(&self) -> (Option<NodeId>, Option<Peer>) {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let leader = m.current_leader;
        let peer = leader.and_then(|l| m.membership_config.membership().get_node(&l).cloned());
        (leader, peer)
    }

    /// A watch on this node's role.
    pub fn role_watch(&self) -> RoleWatch {
        RoleWatch {
            rx: self.raft.metrics(),
        }
    }

    /// Proposes one entry and waits until it is applied here (on the leader).
    pub async fn propose(&self, req: Request) -> Proposal {
        if super::membership::leader_on_its_way_out(&self.raft.metrics().borrow_watched()) {
            // It steps down once its removal commits; the caller retries on the next leader.
            return Proposal::NotLeader { leader: None };
        }
        match self.raft.client_write(req).await {
            Ok(resp) => Proposal::Applied {
                index: resp.log_id.index,
                response: resp.data,
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Proposal::NotLeader { leader: f.leader_id }
            }
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => Proposal::Discarded,
            Err(RaftError::APIError(e)) => Proposal::Fatal(e.to_string()),
            Err(RaftError::Fatal(e)) => Proposal::Fatal(e.to_string()),
        }
    }

    /// Confirms leadership (ReadIndex, or the lease) and waits until the local state
    /// machine has applied up to the read point: the local state machine then holds
    /// everything committed before the read began. `lease` falls back to ReadIndex when
    /// the lease has lapsed.
    pub async fn read_gate(&self, lease: bool, timeout: Duration) -> Result<(), ReadRefused> {
        let started = tokio::time::Instant::now();
        let index = self.read_index(lease, timeout).await?;
        let left = timeout.saturating_sub(started.elapsed());
        self.wait_applied(index, left).await.map_err(ReadRefused::NoQuorum)
    }

    /// Leader only: confirms leadership (a ReadIndex round of heartbeats, or the lease)
    /// and returns the read point: the log index that any node must have applied before
    /// it serves a read that began before this call. It does not wait for this node's
    /// own state machine; see [`Self::wait_applied`].
    pub async fn read_index(&self, lease: bool, timeout: Duration) -> Result<u64, ReadRefused> {
        let policy = if lease {
            ReadPolicy::LeaseRead
        } else {
            ReadPolicy::ReadIndex
        };
        let r = tokio::time::timeout(timeout, self.raft.get_read_linearizer(policy)).await;
        let r = match r {
            Err(_) => return Err(ReadRefused::NoQuorum("timed out confirming leadership".into())),
            Ok(r) => r,
        };
        match r {
            Ok(linearizer) => Ok(linearizer.read_log_id().index()),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
                if lease && f.leader_id == Some(*self.raft.node_id()) {
                    // Lease lapsed while still leader: confirm with ReadIndex instead.
                    return Box::pin(self.read_index(false, timeout)).await;
                }
                Err(ReadRefused::NotLeader { leader: f.leader_id })
            }
            Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(e))) => {
                if lease {
                    // The lease lapsed (openraft reports it as too few recent acks):
                    // confirm leadership with a ReadIndex round instead.
                    return Box::pin(self.read_index(false, timeout)).await;
                }
                Err(ReadRefused::NoQuorum(e.to_string()))
            }
            Err(RaftError::Fatal(e)) => Err(ReadRefused::Fatal(e.to_string())),
        }
    }

    /// Waits until this node's state machine has applied `index`. On any node: entries
    /// up to a committed index are the same everywhere, so a follower that has applied
    /// the leader's read point may serve the read from its own state.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), String> {
        // Usually already applied: answer without setting up a timed wait.
        if self
            .raft
            .metrics()
            .borrow_watched()
            .last_applied
            .as_ref()
            .map(|l| l.index)
            >= Some(index)
        {
            return Ok(());
        }
        match self
            .raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "read point")
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("read point {index} not applied here in time: {e}")),
        }
    }

    /// Forms a new cluster with exactly these voters. Only ever called on a pristine node
    /// chosen by the formation rule.
    pub async fn initialize(&self, members: BTreeMap<NodeId, Peer>) -> Result<(), String> {
        self.raft.initialize(members).await.map_err(|e| e.to_string())
    }

    /// Changes the membership through the one gate ([`super::membership`]); returns once
    /// the change is committed.
    pub async fn change_membership(&self, change: MembershipChange) -> Result<(), MembershipError> {
        super::membership::change(&self.raft, change).await
    }

    /// Hands leadership to `to` (leader only).
    pub async fn transfer_leader(&self, to: NodeId) -> Result<(), String> {
        self.raft.trigger().transfer_leader(to).await.map_err(|e| e.to_string())
    }

    /// Takes a snapshot now.
    pub async fn snapshot(&self) -> Result<(), String> {
        self.raft.trigger().snapshot().await.map_err(|e| e.to_string())
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
    }
}

impl Consensus {
    /// Builds the openraft configuration from braft's and starts the Raft core.
    pub async fn start(
        id: NodeId,
        config: &crate::config::Config,
        pool: super::network::ChannelPool,
        log_store: std::sync::Arc<dyn crate::store::LogStore>,
        sm: super::sm::StateMachine,
        disk: crate::store::DiskHealth,
    ) -> Result<Self, String> {
        let raft_config = openraft::Config {
            cluster_name: "braft".into(),
            heartbeat_interval: config.heartbeat_ms,
            election_timeout_min: config.election_timeout_ms,
            // The lease, too; see `Config::election_timeout_max`.
            election_timeout_max: config.election_timeout_max_ms(),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_logs),
            // Keep a tail after a snapshot so briefly lagging followers catch up from the
            // log; anything further behind gets the snapshot.
            max_in_snapshot_log_to_keep: config.snapshot_logs.min(1_000),
            enable_pre_vote: Some(true),
            // Never resume leadership after a restart without an election. The commit
            // index is stored only as an unflushed restart hint and the state machine is
            // rebuilt from the snapshot and log, so a restored leader could serve
            // ReadIndex reads from a state that misses acknowledged writes. Found by the
            // chaos harness (kill -9 of a majority); see tests/crash.rs.
            enable_leader_restore: Some(false),
            ..Default::default()
        }
        .validate()
        .map_err(|e| format!("raft config: {e}"))?;
        let network = super::network::NetworkFactory {
            pool,
            self_id: id,
            append_timeout: std::time::Duration::from_millis(config.election_timeout_ms),
        };
        let raft = Raft::new(
            id,
            std::sync::Arc::new(raft_config),
            network,
            super::log::LogAdapter::start(
                log_store,
                Some(sm.shared().metrics.fsync.clone()).filter(|_| sm.shared().metrics.enabled),
                disk,
            )
            .map_err(|e| format!("starting the log writer: {e}"))?,
            sm,
        )
        .await
        .map_err(|e| format!("starting raft: {e}"))?;
        Ok(Self { raft })
    }
}
