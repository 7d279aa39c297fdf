//! braft: make any Rust application distributed, highly available and fault tolerant
//! with Raft.
//!
//! A map of the crate, top-down:
//! - [`server`]: `NodeBuilder::start`: builds the node, serves it on RPORT and HPORT,
//!   starts its background tasks (the surfaces call the node; the node knows none).
//! - [`node`]: [`Node`] and its builder — write, read, forward, admin, shut down.
//! - [`client`]: [`Client`], for applications that are not cluster members (gRPC).
//! - [`service`]: the [`Service`] trait, the user's state machine, and the routing registry.
//! - [`kv`]: [`KvService`], the built-in key-value map service.
//! - [`distribute`]: the built-in work distributor, balanced, sticky and replicated.
//! - [`config`]: [`Config`], its defaults, its `BRAFT_*` environment variables and `validate()`.
//! - [`http`]: the HTTP API, one file per resource (`/v1/kv`, watch, cluster admin,
//!   backup, distribute, metrics, the `/ui` dashboard, braft's `/kv` and `/raft`).
//! - `grpc`: the gRPC servers (peer protocol; public `Kv`, `Distributor`, `Admin`).
//! - [`restore`]: `braft restore`, a data directory from a backup, offline.
//! - `raft`: the only module that knows openraft (types, storage and network adapters).
//! - [`store`]: the durable log/vote store trait, on redb, with an in-memory twin.
//! - [`codec`]: how commands become bytes (MessagePack by default, JSON).
//! - [`watch`]: ordered, resumable streams of the KV service's changes.
//! - [`error`]: the errors callers can act on.

pub mod access;
mod auth;
pub mod client;
pub mod codec;
pub mod config;
pub mod discovery;
pub mod distribute;
pub mod error;
#[cfg(test)]
mod fuzz;
mod grpc;
pub mod http;
pub mod kv;
pub mod metrics;
pub mod node;
pub mod pb;
mod proc_info;
pub(crate) mod raft;
pub mod restore;
pub mod server;
pub mod service;
#[cfg(feature = "sim")]
pub mod sim;
pub mod store;
pub mod tls;
pub mod transport;
pub mod watch;

pub use client::Client;
pub use codec::Codec;
pub use config::Config;
pub use error::Error;
pub use error::LeaderHint;
pub use kv::KvService;
pub use node::roles::{Role, RoleEvent};
pub use node::{Consistency, Node, NodeBuilder};
pub use raft::consensus::RaftStatus;
pub use raft::sm::StateHash;
pub use raft::{NodeId, Peer};
pub use service::{ApplyContext, Service, ServiceError};
