//! The forwarding protocol: what a follower sends the leader for a write or a read, and
//! what comes back. Messages travel wire-encoded inside `braft.v1.Raft/Forward`.

use serde::{Deserialize, Serialize};

use crate::raft::{NodeId, Peer, Response};
use crate::service::ServiceError;

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Consistency {
    /// Linearizable: the leader confirms it still leads (ReadIndex) before serving.
    #[default]
    Linearizable,
    /// The leader serves within its lease without a round of heartbeats. Linearizable as
    /// long as clocks do not drift more than the lease's margin.
    Lease,
    /// Served from this node's applied state; may lag the leader.
    Stale,
}

impl std::str::FromStr for Consistency {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "linearizable" | "" => Ok(Consistency::Linearizable),
            "lease" => Ok(Consistency::Lease),
            "stale" => Ok(Consistency::Stale),
            other => Err(format!(
                "unknown consistency '{other}' (allowed: linearizable, lease, stale)"
            )),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardRequest {
    Write {
        service: String,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
        /// How long the leader may wait for the entry to commit.
        timeout_ms: u64,
    },
    Read {
        service: String,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
        consistency: Consistency,
        timeout_ms: u64,
    },
    /// A follower asks the leader for a read point, on behalf of every read waiting there
    /// (see `node::follower_read`). `lease`: confirm leadership by the lease if it holds.
    ReadIndex { lease: bool, timeout_ms: u64 },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardReply {
    Written {
        index: u64,
        response: Response,
    },
    Read(Result<serde_bytes::ByteBuf, ServiceError>),
    /// Leadership is confirmed: reads that began before the request may be served by any
    /// node that has applied this index.
    ReadIndex {
        index: u64,
    },
    /// The receiver is not the leader; here is who it thinks is.
    NotLeader {
        leader: Option<(NodeId, Peer)>,
    },
    /// The receiver leads but could not confirm a quorum.
    NoQuorum(String),
    /// The entry was appended and then discarded by a leader change.
    Indeterminate(String),
    Fatal(String),
}

/// `Hello`: a formation probe.
#[derive(Debug, Serialize, Deserialize)]
pub struct HelloRequest {
    pub from: NodeId,
    pub peer: Peer,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelloReply {
    pub id: NodeId,
    pub peer: Peer,
    /// Has nothing stored: may take part in forming a new cluster.
    pub pristine: bool,
    /// Belongs to a cluster.
    pub initialized: bool,
    pub leader: Option<(NodeId, Peer)>,
    /// The asker's raft address in the replier's membership: `None` when the asker is
    /// not a member there. A node whose own view disagrees rejoins through the leader.
    #[serde(default)]
    pub your_member_addr: Option<String>,
    /// The replier is the leader now (not merely a node whose vote names itself). Only a
    /// leader's word settles whether the asker is still a member.
    #[serde(default)]
    pub leading: bool,
}

/// `Promise`: the would-be initializer asks a pristine peer to back it. A node backs at
/// most one initializer, ever (the promise is kept on disk), so two overlapping groups
/// can never both form a cluster.
#[derive(Debug, Serialize, Deserialize)]
pub struct PromiseRequest {
    pub initializer: NodeId,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum PromiseReply {
    Granted,
    /// Already promised to another initializer, or no longer pristine.
    Refused(String),
}

/// `Leave`: ask the leader to remove this node from the cluster.
#[derive(Debug, Serialize, Deserialize)]
pub struct LeaveRequest {
    pub id: NodeId,
}

/// `Join`: ask the leader to add this node.
#[derive(Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    pub id: NodeId,
    pub peer: Peer,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum JoinReply {
    /// Added (or already present) as a learner; promotion to voter follows once it has
    /// caught up.
    Accepted,
    NotLeader {
        leader: Option<(NodeId, Peer)>,
    },
    Failed(String),
}
