//! etcd's v3 KV API, client side, generated from `proto/etcd_kv.proto` (see `build.rs`),
//! so that `braft bench --target etcd` drives etcd with the same requesters, the same
//! connections and the same clock as braft: native protocol against native protocol.
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("etcdserverpb");
