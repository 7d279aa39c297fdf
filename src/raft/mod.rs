//! The one module that knows openraft.
//!
//! Everything openraft-specific — the type configuration, the log-store and state-machine
//! adapters, the gRPC network client, the wire encoding — lives here, so that an openraft
//! upgrade touches this directory and nothing else. The rest of braft speaks in
//! [`Request`], [`Response`], node ids and addresses.

pub mod consensus;
pub(crate) mod log;
pub mod membership;
pub(crate) mod network;
pub(crate) mod sm;
pub(crate) mod wire;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::service::ServiceError;

/// A node's id: created at first start, kept in the data directory for life.
pub type NodeId = u64;

/// A member's addresses, as recorded in the Raft membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// `host:port` of the node's gRPC server (Raft traffic and forwarding).
    pub rpc_addr: String,
    /// `host:port` of the node's HTTP API.
    pub http_addr: String,
}

/// A log entry's application payload: an encoded command for one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub service: String,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({} bytes)", self.service, self.payload.len())
    }
}

/// What applying one entry produced: the service's encoded output, or its error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Ok(#[serde(with = "serde_bytes")] Vec<u8>),
    Err(ServiceError),
}

/// The async runtime openraft runs on: tokio; in the simulation (feature `sim`), tokio
/// with openraft's randomness (election timeouts) drawn from a seeded RNG, so every
/// node must start inside [`crate::sim::seeded`].
#[cfg(not(feature = "sim"))]
pub type Runtime = openraft_rt_tokio::TokioRuntime;
#[cfg(feature = "sim")]
pub type Runtime = openraft_rt::deterministic_rng::DeterministicRng<openraft_rt_tokio::TokioRuntime>;

openraft::declare_raft_types!(
    /// braft's openraft type configuration: default votes and entries, with our
    /// request, response and node types, and standard Raft's leader ids: one leader per
    /// term. (openraft's default lets two nodes lead in one term, told apart by node
    /// id; classic Raft's invariant, which the simulation checks and users of etcd or
    /// hashicorp/raft expect, is one.)
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Peer,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, NodeId>,
        AsyncRuntime = Runtime,
);

pub type Raft = openraft::Raft<TypeConfig, sm::StateMachine>;
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, crate::store::SnapshotData>;
