//! Code generated from `proto/braft.proto` (see `build.rs`): message types, and the
//! clients and servers for `braft.v1.Raft` (peers) and `braft.v1.Kv` (public API).
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("braft.v1");

/// The encoded file descriptor set, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("braft_descriptor");
