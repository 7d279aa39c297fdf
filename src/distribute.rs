//! [`DistributeService`]: the replicated work distributor (braft's `Distribute`/`Picker`,
//! made safe). Under a key, a list of items is assigned to the cluster's healthy nodes:
//! balanced (shares differ by at most one) and sticky (an item moves only when its node
//! is no longer healthy, or when balance requires it).
//!
//! In the Go braft the sticky map lives in the leader's memory, so a leader change
//! reshuffles everything. Here the assignment is replicated state, computed by
//! [`rebalance`] inside `apply` from two kinds of log entries: the item lists
//! (`SetItems`) and the set of healthy nodes (`SetNodes`), which the leader commits
//! whenever membership or health changes (`node::distribute`). Being a pure function of
//! the log, it is the same on every node and survives leader changes and restarts.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::raft::NodeId;
use crate::service::{ApplyContext, Service, ServiceError};
use crate::watch::{EventKind, WatchEvent};

/// The watch-event map that assignment changes are published under.
pub const EVENT_MAP: &str = "@distribute";
/// The most items under one key.
pub const MAX_ITEMS: usize = 100_000;

/// A write to the distributor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DistributeCommand {
    /// Sets the items under `key` (an empty list removes the key).
    SetItems { key: String, items: Vec<String> },
    /// The nodes that may hold work now (the leader's view of healthy members).
    SetNodes { nodes: BTreeSet<NodeId> },
}

/// What a [`DistributeCommand`] answers: the version of the key (or of the node set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistributeOutput {
    pub version: u64,
}

/// A read from the distributor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DistributeQuery {
    Assignment { key: String },
    Nodes,
}

/// One key's items and who holds them (an item no node can take yet is absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The log index of the last change to this key's assignment.
    pub version: u64,
    /// Item → node.
    pub items: BTreeMap<String, NodeId>,
}

impl Assignment {
    /// The items of `node`, sorted.
    pub fn items_of(&self, node: NodeId) -> Vec<String> {
        self.items
            .iter()
            .filter(|(_, n)| **n == node)
            .map(|(i, _)| i.clone())
            .collect()
    }

    /// Node → its items.
    pub fn by_node(&self) -> BTreeMap<NodeId, Vec<String>> {
        let mut out: BTreeMap<NodeId, Vec<String>> = BTreeMap::new();
        for (item, node) in &self.items {
            out.entry(*node).or_default().push(item.clone());
        }
        out
    }
}

/// What a [`DistributeQuery`] answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DistributeQueryOutput {
    Assignment(Option<Assignment>),
    Nodes(BTreeSet<NodeId>),
}

/// One key: its items (kept even while no node can take them) and their assignment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct KeyState {
    items: BTreeSet<String>,
    assignment: Assignment,
}

/// The distributor's replicated state.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DistributeService {
    nodes: BTreeSet<NodeId>,
    keys: BTreeMap<String, KeyState>,
    #[serde(skip)]
    events: Vec<WatchEvent>,
}

/// Checks an item list: items are non-empty and at most 4 KiB, and there are at most
/// [`MAX_ITEMS`]. Duplicates are allowed and count once.
pub fn validate_items(items: &[String]) -> Result<(), String> {
    if items.len() > MAX_ITEMS {
        return Err(format!("{} items exceed the limit of {MAX_ITEMS}", items.len()));
    }
    for i in items {
        crate::kv::validate_key(i).map_err(|e| format!("item: {e}"))?;
    }
    Ok(())
}

/// Assigns `items` to `nodes`: balanced (shares differ by at most one) with the fewest
/// moves from `prev`. An item keeps its node while that node is in `nodes` and under its
/// quota; the nodes already holding the most keep the larger quotas; released and new
/// items go to the emptiest nodes. Ties break by item and node order, so the result is a
/// function of its inputs alone.
pub fn rebalance(
    prev: &BTreeMap<String, NodeId>,
    items: &BTreeSet<String>,
    nodes: &BTreeSet<NodeId>,
) -> BTreeMap<String, NodeId> {
    if nodes.is_empty() {
        return BTreeMap::new();
    }
    let (base, extra) = (items.len() / nodes.len(), items.len() % nodes.len());
    let mut kept: BTreeMap<NodeId, Vec<&String>> = nodes.iter().map(|n| (*n, Vec::new())).collect();
    for item in items {
        if let Some(n) = prev.get(item).filter(|n| nodes.contains(n)) {
            kept.get_mut(n).expect("a node of the set").push(item);
        }
    }
    // The `extra` larger quotas go to the nodes holding most already (fewest moves).
    let mut order: Vec<NodeId> = nodes.iter().copied().collect();
    order.sort_by_key(|n| (std::cmp::Reverse(kept[n].len()), *n));
    let quota: BTreeMap<NodeId, usize> = order
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, base + usize::from(i < extra)))
        .collect();
    let mut out = BTreeMap::new();
    let mut count: BTreeMap<NodeId, usize> = BTreeMap::new();
    for (n, held) in &kept {
        for item in held.iter().take(quota[n]) {
            out.insert((*item).clone(), *n);
        }
        count.insert(*n, held.len().min(quota[n]));
    }
    let homeless: Vec<&String> = items.iter().filter(|i| !out.contains_key(*i)).collect();
    for item in homeless {
        let n = *nodes
            .iter()
            .filter(|n| count[n] < quota[n])
            .min_by_key(|n| (count[n], **n))
            .expect("quotas add up to the item count");
        *count.get_mut(&n).expect("counted") += 1;
        out.insert(item.clone(), n);
    }
    out
}

impl DistributeService {
    fn event(&mut self, key: &str, version: u64, removed: bool) {
        self.events.push(WatchEvent {
            kind: if removed { EventKind::Delete } else { EventKind::Put },
            map: EVENT_MAP.to_string(),
            key: key.to_string(),
            value: None,
            version,
        });
    }
}

impl Service for DistributeService {
    const NAME: &'static str = "distribute";
    type Command = DistributeCommand;
    type Output = DistributeOutput;
    type Query = DistributeQuery;
    type QueryOutput = DistributeQueryOutput;

    fn apply(&mut self, ctx: ApplyContext, cmd: DistributeCommand) -> Result<DistributeOutput, ServiceError> {
        let version = ctx.index;
        match cmd {
            DistributeCommand::SetItems { key, items } => {
                validate_items(&items).map_err(|e| ServiceError::new("bad_items", e))?;
                if items.is_empty() {
                    if self.keys.remove(&key).is_some() {
                        self.event(&key, version, true);
                    }
                    return Ok(DistributeOutput { version });
                }
                let items: BTreeSet<String> = items.into_iter().collect();
                let k = self.keys.entry(key.clone()).or_default();
                let next = rebalance(&k.assignment.items, &items, &self.nodes);
                k.items = items;
                if k.assignment.items != next || k.assignment.version == 0 {
                    k.assignment.items = next;
                    k.assignment.version = version;
                    self.event(&key, version, false);
                }
                Ok(DistributeOutput {
                    version: self.keys[&key].assignment.version,
                })
            }
            DistributeCommand::SetNodes { nodes } => {
                if nodes == self.nodes {
                    return Ok(DistributeOutput { version });
                }
                self.nodes = nodes;
                let mut changed = Vec::new();
                for (key, k) in self.keys.iter_mut() {
                    let next = rebalance(&k.assignment.items, &k.items, &self.nodes);
                    if next != k.assignment.items {
                        k.assignment.items = next;
                        k.assignment.version = version;
                        changed.push(key.clone());
                    }
                }
                for key in changed {
                    self.event(&key, version, false);
                }
                Ok(DistributeOutput { version })
            }
        }
    }

    fn query(&self, query: DistributeQuery) -> Result<DistributeQueryOutput, ServiceError> {
        match query {
            DistributeQuery::Assignment { key } => Ok(DistributeQueryOutput::Assignment(
                self.keys.get(&key).map(|k| k.assignment.clone()),
            )),
            DistributeQuery::Nodes => Ok(DistributeQueryOutput::Nodes(self.nodes.clone())),
        }
    }

    fn snapshot(&self) -> Result<Vec<u8>, ServiceError> {
        Ok(crate::codec::to_bytes(self)?)
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), ServiceError> {
        *self = crate::codec::from_bytes(snapshot)?;
        Ok(())
    }

    fn take_watch_events(&mut self) -> Vec<WatchEvent> {
        std::mem::take(&mut self.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> BTreeSet<String> {
        (0..n).map(|i| format!("item-{i:03}")).collect()
    }

    fn shares(a: &BTreeMap<String, NodeId>) -> BTreeMap<NodeId, usize> {
        let mut out = BTreeMap::new();
        for n in a.values() {
            *out.entry(*n).or_default() += 1;
        }
        out
    }

    fn moves(a: &BTreeMap<String, NodeId>, b: &BTreeMap<String, NodeId>) -> usize {
        a.iter().filter(|(i, n)| b.get(*i) != Some(n)).count()
    }

    /// 100 items on 3 nodes: 34/33/33. A node lost: only its items move. It comes back:
    /// balance returns with the fewest moves. A 4th node: at most ⌈100/4⌉ = 25 move.
    #[test]
    fn balanced_and_sticky() {
        let all = items(100);
        let three: BTreeSet<NodeId> = [1, 2, 3].into();
        let a = rebalance(&BTreeMap::new(), &all, &three);
        let mut s: Vec<usize> = shares(&a).into_values().collect();
        s.sort();
        assert_eq!(s, vec![33, 33, 34]);

        let two: BTreeSet<NodeId> = [1, 3].into();
        let b = rebalance(&a, &all, &two);
        assert_eq!(
            moves(&a, &b),
            a.values().filter(|n| **n == 2).count(),
            "only node 2's items move"
        );
        assert_eq!(shares(&b).into_values().collect::<Vec<_>>(), vec![50, 50]);

        let c = rebalance(&b, &all, &three);
        assert_eq!(moves(&b, &c), 33, "the returning node takes its share, no more");
        let mut s: Vec<usize> = shares(&c).into_values().collect();
        s.sort();
        assert_eq!(s, vec![33, 33, 34]);

        let four: BTreeSet<NodeId> = [1, 2, 3, 4].into();
        let d = rebalance(&c, &all, &four);
        assert!(moves(&c, &d) <= 25, "{} moved", moves(&c, &d));
        assert_eq!(shares(&d).into_values().collect::<Vec<_>>(), vec![25, 25, 25, 25]);
        // Recomputing with the same inputs moves nothing.
        assert_eq!(rebalance(&d, &all, &four), d);
    }

    /// The state machine: items and node sets applied in log order give versions, events
    /// and the same state after a snapshot round trip.
    #[test]
    fn apply_and_snapshot() {
        let mut s = DistributeService::default();
        let ctx = |index| ApplyContext { index };
        // Items set before any node is known wait for one.
        s.apply(
            ctx(1),
            DistributeCommand::SetItems {
                key: "early".into(),
                items: vec!["x".into()],
            },
        )
        .unwrap();
        s.apply(ctx(1), DistributeCommand::SetNodes { nodes: [1, 2].into() })
            .unwrap();
        let out = s
            .apply(
                ctx(2),
                DistributeCommand::SetItems {
                    key: "jobs".into(),
                    items: vec!["a".into(), "b".into(), "c".into(), "a".into()],
                },
            )
            .unwrap();
        assert_eq!(out.version, 2);
        let DistributeQueryOutput::Assignment(Some(a)) =
            s.query(DistributeQuery::Assignment { key: "jobs".into() }).unwrap()
        else {
            panic!("assigned")
        };
        assert_eq!(a.items.len(), 3, "duplicates count once");
        assert_eq!(s.keys["early"].assignment.items.len(), 1, "the early item found a node");
        assert_eq!(s.take_watch_events().len(), 3);
        // The same node set again changes nothing and is no event.
        s.apply(ctx(3), DistributeCommand::SetNodes { nodes: [1, 2].into() })
            .unwrap();
        assert!(s.take_watch_events().is_empty());
        let snap = s.snapshot().unwrap();
        let mut back = DistributeService::default();
        back.restore(&snap).unwrap();
        assert_eq!(back.keys, s.keys);
        assert_eq!(back.nodes, s.nodes);
        // Bad items are refused and change nothing.
        assert!(s
            .apply(
                ctx(4),
                DistributeCommand::SetItems {
                    key: "jobs".into(),
                    items: vec![String::new()],
                },
            )
            .is_err());
        assert_eq!(back.keys, s.keys);
    }
}
