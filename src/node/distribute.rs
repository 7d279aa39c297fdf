//! The node's side of the work distributor ([`crate::distribute`]): the library calls,
//! and the leader's task that commits the set of healthy members whenever it changes.
//!
//! A node counts as healthy while it has acknowledged the leader within
//! `BRAFT_DISTRIBUTE_GRACE` (the leader always counts). That holds even while autopilot
//! keeps a dead node as a voter at the quorum floor: a dead node must not hold work. A
//! fresh leader has no acknowledgement times yet, so it judges nobody before it has led
//! for a whole grace period.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::roles::Role;
use super::{Consistency, Node};
use crate::distribute::{
    validate_items, Assignment, DistributeCommand, DistributeQuery, DistributeQueryOutput, DistributeService, EVENT_MAP,
};
use crate::error::Error;
use crate::raft::NodeId;
use crate::service::Service;

/// How often the leader compares the healthy set with the committed one.
const HEALTH_EVERY: Duration = Duration::from_millis(250);

impl Node {
    /// Sets the items distributed under `key` (an empty list removes the key); returns
    /// the key's version. The items are assigned to the healthy nodes, balanced and
    /// sticky; see [`crate::distribute`].
    pub async fn distribute(&self, key: &str, items: Vec<String>) -> Result<u64, Error> {
        crate::kv::validate_key(key).map_err(Error::BadRequest)?;
        validate_items(&items).map_err(Error::BadRequest)?;
        let cmd = DistributeCommand::SetItems {
            key: key.to_string(),
            items,
        };
        Ok(self.write::<DistributeService>(cmd).await?.version)
    }

    /// Who holds each item under `key` (a linearizable read), or `None` if the key has
    /// no items.
    pub async fn assignment(&self, key: &str) -> Result<Option<Assignment>, Error> {
        self.assignment_with(key, Consistency::Linearizable).await
    }

    pub(crate) async fn assignment_with(&self, key: &str, c: Consistency) -> Result<Option<Assignment>, Error> {
        let q = DistributeQuery::Assignment { key: key.to_string() };
        match self.read::<DistributeService>(q, c).await? {
            DistributeQueryOutput::Assignment(a) => Ok(a),
            other => Err(Error::Fatal(format!("unexpected answer {other:?}"))),
        }
    }

    /// This node's items under `key`, as this node has applied them (no leader round
    /// trip: it is what this node should be working on now).
    pub async fn my_items(&self, key: &str) -> Result<Vec<String>, Error> {
        let a = self.assignment_with(key, Consistency::Stale).await?;
        Ok(a.map(|a| a.items_of(self.id())).unwrap_or_default())
    }

    /// Calls `f` with this node's items under `key` now, and again whenever its share
    /// changes, one call at a time on a blocking thread, until the node stops.
    pub fn on_assignment_change(&self, key: &str, f: impl Fn(Vec<String>) + Send + Sync + 'static) {
        let f = Arc::new(f);
        let node = self.clone();
        let key = key.to_string();
        self.spawn(async move {
            let mut watcher = node.watcher(EVENT_MAP, &key, None);
            let mut last: Option<Vec<String>> = None;
            loop {
                match node.my_items(&key).await {
                    Ok(mine) if last.as_ref() != Some(&mine) => {
                        last = Some(mine.clone());
                        let f = f.clone();
                        if let Err(e) = tokio::task::spawn_blocking(move || f(mine)).await {
                            tracing::error!(key, "assignment-change callback failed: {e}");
                        }
                    }
                    Ok(_) => {}
                    Err(Error::ShuttingDown) => return,
                    Err(e) => tracing::warn!(key, "reading my items: {e}"),
                }
                // Any event under the key (or a compaction) means "look again".
                match watcher.next_batch().await {
                    Ok(_) => {}
                    Err(crate::watch::WatchError::Compacted { .. }) => {
                        watcher = node.watcher(EVENT_MAP, &key, None);
                    }
                    Err(crate::watch::WatchError::Closed) => return,
                }
            }
        });
    }

    /// The members the leader counts as healthy now, or `None` while it cannot judge.
    fn healthy_members(&self, leading_since: Instant) -> BTreeSet<NodeId> {
        let st = self.status();
        let grace = Duration::from_millis(self.config().distribute_grace_ms);
        let led = leading_since.elapsed();
        st.members
            .keys()
            .copied()
            .filter(|id| {
                *id == self.id() || {
                    // No acknowledgement yet counts from when this node began leading.
                    let silence = st.last_ack.get(id).copied().flatten().unwrap_or(led);
                    silence <= grace
                }
            })
            .collect()
    }
}

/// On the leader, commits the healthy member set whenever it differs from the one the
/// distributor holds. Runs for the node's lifetime.
pub(crate) async fn run(node: Node) {
    let mut shutdown = node.shutdown_signal();
    let mut roles = node.roles();
    let mut leading_since: Option<(u64, Instant)> = None;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(HEALTH_EVERY) => {}
        }
        let role = *roles.borrow_and_update();
        if role.role != Role::Leader {
            leading_since = None;
            continue;
        }
        let since = match leading_since {
            Some((term, at)) if term == role.term => at,
            _ => {
                let now = Instant::now();
                leading_since = Some((role.term, now));
                now
            }
        };
        let healthy = node.healthy_members(since);
        let committed = match node
            .read::<DistributeService>(DistributeQuery::Nodes, Consistency::Stale)
            .await
        {
            Ok(DistributeQueryOutput::Nodes(n)) => n,
            _ => continue,
        };
        if healthy != committed {
            tracing::info!(?healthy, was = ?committed, "work distributor: healthy nodes changed");
            let cmd = DistributeCommand::SetNodes { nodes: healthy };
            if let Err(e) = node.write::<DistributeService>(cmd).await {
                tracing::warn!("work distributor: committing the healthy nodes: {e}");
            }
        }
    }
}

/// The distributor is built in: every node registers it, so every log can hold its
/// entries.
pub(crate) fn register(registry: &mut crate::service::Registry) {
    let fresh = registry.register(DistributeService::default());
    debug_assert!(fresh, "{} registered once", DistributeService::NAME);
}
