//! The errors a caller of [`crate::Node`] can act on.

use serde::{Deserialize, Serialize};

use crate::raft::NodeId;
use crate::service::ServiceError;

/// Who the leader is, as far as this node knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderHint {
    pub id: NodeId,
    /// The leader's gRPC address.
    pub rpc_addr: String,
    /// The leader's HTTP address.
    pub http_addr: String,
}

/// A failed write, read or start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No leader or no quorum answered within the request timeout. Nothing was applied
    /// (for a write: it was never accepted by a leader). Retrying later is safe.
    #[error("unavailable: {reason}{}", leader_suffix(.leader))]
    Unavailable { reason: String, leader: Option<LeaderHint> },

    /// A write was handed to a leader but its outcome is unknown (the leader changed or
    /// the connection broke before the answer). It may or may not be applied.
    #[error("outcome unknown: {reason}{}", leader_suffix(.leader))]
    Indeterminate { reason: String, leader: Option<LeaderHint> },

    /// The service refused the command or query; the state is unchanged.
    #[error("service error: {0}")]
    Service(#[from] ServiceError),

    /// No service with this name is registered on this node.
    #[error("unknown service '{0}'")]
    UnknownService(String),

    /// The request itself is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),

    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::config::ConfigError),

    /// Local I/O failed (data directory, sockets).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// The node is shutting down.
    #[error("node is shutting down")]
    ShuttingDown,
    /// The caller's token is missing, unknown, or its role too low
    /// (`BRAFT_AUTH_FILE`).
    #[error("{0}")]
    Access(#[from] crate::access::Denied),

    /// This node's data directory is out of space: it refuses writes until space is
    /// freed (it keeps serving reads). Nothing was applied; retry, or write through
    /// another node.
    #[error("disk full: {0}")]
    DiskFull(String),

    /// The Raft core stopped; this node can no longer serve.
    #[error("fatal: {0}")]
    Fatal(String),
}

fn leader_suffix(leader: &Option<LeaderHint>) -> String {
    match leader {
        Some(l) => format!(" (leader {} at {})", l.id, l.rpc_addr),
        None => " (no leader known)".to_string(),
    }
}

impl From<crate::codec::CodecError> for Error {
    fn from(e: crate::codec::CodecError) -> Self {
        Error::BadRequest(e.to_string())
    }
}
