//! `GET /v1/cluster/hash` (etcd's `hashkv` check): every member's state hash at one
//! common applied index, and the members that disagree with the majority.
//!
//! A member hashes its state at whatever index it has applied, so the hashes are
//! compared only once every member reports the same applied index: the check asks again
//! (every 100 ms, for up to 2 s) until they line up. Under a steady stream of writes
//! they may not; the answer then says so instead of comparing unlike states.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::Node;
use crate::raft::sm::StateHash;
use crate::raft::{wire, NodeId};

const ROUNDS: usize = 20;

/// One member's answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberHash {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The cluster's hash check.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HashCheck {
    /// The common applied index the hashes were compared at; `None` if the members never
    /// lined up (or some did not answer).
    pub index: Option<u64>,
    /// Every member reported the same hash at `index`.
    pub agree: bool,
    /// Members whose hash differs from the majority's.
    pub disagreeing: Vec<String>,
    pub members: Vec<MemberHash>,
}

impl Node {
    async fn member_hash(&self, id: NodeId, addr: &str) -> Result<StateHash, String> {
        if id == self.id() {
            return self.state_hash().map_err(|e| e.to_string());
        }
        let mut client = self.inner.pool.raft_client(addr).map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(
            Duration::from_secs(2),
            client.state_hash(crate::pb::Opaque { data: Vec::new() }),
        )
        .await
        .map_err(|_| format!("{addr} did not answer in time"))?
        .map_err(|s| s.message().to_string())?;
        wire::decode(&resp.into_inner().data).map_err(|e| e.to_string())
    }

    /// Compares every member's state hash at a common applied index.
    pub async fn cluster_hash(&self) -> HashCheck {
        let mut last = Vec::new();
        for round in 0..ROUNDS {
            let st = self.status();
            let asks = st
                .members
                .iter()
                .map(|(id, p)| async move { (*id, self.member_hash(*id, &p.rpc_addr).await) });
            last = futures::future::join_all(asks).await;
            let indexes: Vec<Option<u64>> = last
                .iter()
                .map(|(_, r)| r.as_ref().ok().map(|h| h.applied_index))
                .collect();
            let common = indexes
                .first()
                .copied()
                .flatten()
                .filter(|i| indexes.iter().all(|x| *x == Some(*i)));
            if let Some(index) = common {
                let mut votes: BTreeMap<u32, usize> = BTreeMap::new();
                for (_, r) in &last {
                    if let Ok(h) = r {
                        *votes.entry(h.hash).or_default() += 1;
                    }
                }
                let majority = votes.iter().max_by_key(|(_, n)| **n).map(|(h, _)| *h);
                let disagreeing: Vec<String> = last
                    .iter()
                    .filter(|(_, r)| r.as_ref().ok().map(|h| h.hash) != majority)
                    .map(|(id, _)| id.to_string())
                    .collect();
                return HashCheck {
                    index: Some(index),
                    agree: disagreeing.is_empty(),
                    disagreeing,
                    members: report(&last),
                };
            }
            if round + 1 < ROUNDS {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        HashCheck {
            index: None,
            agree: false,
            disagreeing: Vec::new(),
            members: report(&last),
        }
    }
}

fn report(answers: &[(NodeId, Result<StateHash, String>)]) -> Vec<MemberHash> {
    answers
        .iter()
        .map(|(id, r)| MemberHash {
            id: id.to_string(),
            applied_index: r.as_ref().ok().map(|h| h.applied_index),
            hash: r.as_ref().ok().map(|h| h.hash),
            error: r.as_ref().err().cloned(),
        })
        .collect()
}
