//! Leader-change hooks (braft's `WithLeaderChange`) and [`Node::roles`]: this node's role
//! as a sequence of events in which `Leader` and not-`Leader` strictly alternate.
//!
//! A watcher task follows the core's metrics and turns them into [`RoleEvent`]s with a
//! small pure state machine ([`RoleTracker`]). Hooks run on a task of their own, one call
//! at a time, each on a blocking thread: a slow hook delays only later hook calls, never
//! Raft, and a panicking one is logged and skipped.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::Node;
pub use crate::raft::consensus::Role;
use crate::raft::consensus::RoleView;
use crate::raft::NodeId;

/// A leader-change hook: called with each new role, never concurrently.
pub type RoleHook = Arc<dyn Fn(RoleEvent) + Send + Sync + 'static>;

/// A change of this node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RoleEvent {
    /// The node whose role changed (handy when one hook serves several nodes).
    pub node_id: NodeId,
    pub role: Role,
    /// The term the role belongs to.
    pub term: u64,
    /// This node's applied index when the change was seen. For [`Role::Leader`], the
    /// applied state already holds every write acknowledged before the term began.
    pub applied_index: u64,
}

impl RoleEvent {
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }
}

/// Turns role observations into events in which `Leader` and not-`Leader` alternate.
#[derive(Debug)]
pub(crate) struct RoleTracker {
    node_id: NodeId,
    /// The term this node is leading in, when it is.
    leading: Option<u64>,
    stopped: bool,
}

impl RoleTracker {
    pub fn new(node_id: NodeId) -> Self {
        Self {
            node_id,
            leading: None,
            stopped: false,
        }
    }

    /// The events that one observation calls for (zero, one or two).
    pub fn observe(&mut self, v: RoleView) -> Vec<RoleEvent> {
        if self.stopped {
            return Vec::new();
        }
        let event = |role, term| RoleEvent {
            node_id: self.node_id,
            role,
            term,
            applied_index: v.applied_index,
        };
        match (self.leading, v.role) {
            (_, Role::Shutdown) => {
                self.stopped = true;
                vec![event(Role::Shutdown, v.term)]
            }
            (Some(t), Role::Leader) if t == v.term => Vec::new(),
            // Leading again in a later term without a not-leader moment in between
            // (metrics skip states): it campaigned to get there, so say so first.
            (Some(_), Role::Leader) => {
                self.leading = Some(v.term);
                vec![event(Role::Candidate, v.term), event(Role::Leader, v.term)]
            }
            (None, Role::Leader) => {
                self.leading = Some(v.term);
                vec![event(Role::Leader, v.term)]
            }
            (Some(_), role) => {
                self.leading = None;
                vec![event(role, v.term)]
            }
            (None, _) => Vec::new(),
        }
    }

    /// The event that stopping the node calls for, unless it already stopped.
    pub fn stop(&mut self, term: u64, applied_index: u64) -> Option<RoleEvent> {
        self.observe(RoleView {
            role: Role::Shutdown,
            term,
            applied_index,
            leader: None,
        })
        .pop()
    }
}

/// Follows the core's role until the node shuts down, publishing every event on `tx` and
/// queueing it for the hooks.
pub(crate) async fn watch_roles(node: Node, tx: watch::Sender<RoleEvent>, hooks: Vec<RoleHook>) {
    let (queue, calls) = mpsc::unbounded_channel();
    if !hooks.is_empty() {
        node.spawn(run_hooks(calls, hooks));
    }
    let mut roles = node.consensus().role_watch();
    let mut shutdown = node.shutdown_signal();
    let mut tracker = RoleTracker::new(node.id());
    let mut last_leader = None;
    let publish = |e: RoleEvent| {
        tracing::info!(role = ?e.role, term = e.term, "role changed");
        tx.send_replace(e);
        // Only fails once the hook task is gone, at the very end of shutdown.
        let _ = queue.send(e);
    };
    loop {
        let view = roles.view();
        // etcd's leader_changes_seen_total: every new leader this node learns of.
        if view.leader.is_some() && view.leader != last_leader {
            node.inner.metrics.leader_changes.inc();
        }
        last_leader = view.leader.or(last_leader);
        for e in tracker.observe(view) {
            publish(e);
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            alive = roles.changed() => if !alive { break },
        }
    }
    let v = roles.view();
    if let Some(e) = tracker.stop(v.term, v.applied_index) {
        publish(e);
    }
}

/// Calls the hooks with each event, in order, one call at a time.
async fn run_hooks(mut calls: mpsc::UnboundedReceiver<RoleEvent>, hooks: Vec<RoleHook>) {
    while let Some(e) = calls.recv().await {
        for hook in &hooks {
            let hook = hook.clone();
            let started = tokio::time::Instant::now();
            match tokio::task::spawn_blocking(move || hook(e)).await {
                Ok(()) => {}
                Err(err) if err.is_panic() => {
                    tracing::error!(role = ?e.role, term = e.term, "leader-change hook panicked: {err}")
                }
                Err(err) => tracing::error!("leader-change hook did not finish: {err}"),
            }
            if started.elapsed() > Duration::from_secs(1) {
                tracing::warn!(
                    role = ?e.role,
                    ms = started.elapsed().as_millis() as u64,
                    "a slow leader-change hook delays the next hook call (Raft itself is not delayed)"
                );
            }
        }
        if e.role == Role::Shutdown {
            return;
        }
    }
}

impl Node {
    /// This node's role as a watch: the latest [`RoleEvent`] (a follower's at start, until
    /// the first change). `Leader` and not-`Leader` events alternate; a watch keeps only
    /// the newest, so use [`crate::NodeBuilder::on_leader_change`] to see every one.
    pub fn roles(&self) -> watch::Receiver<RoleEvent> {
        self.inner.roles.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(role: Role, term: u64) -> RoleView {
        RoleView {
            role,
            term,
            applied_index: term * 10,
            leader: None,
        }
    }

    fn roles(t: &mut RoleTracker, views: &[(Role, u64)]) -> Vec<(Role, u64)> {
        views
            .iter()
            .flat_map(|(r, term)| t.observe(view(*r, *term)))
            .map(|e| (e.role, e.term))
            .collect()
    }

    /// Only leadership changes are events, and Leader and not-Leader alternate, even when
    /// the metrics jump from leading one term to leading the next.
    #[test]
    fn leader_and_not_leader_alternate() {
        use Role::*;
        let mut t = RoleTracker::new(7);
        let got = roles(
            &mut t,
            &[
                (Follower, 1),
                (Candidate, 2),
                (Candidate, 2), // elected, first entry not yet applied
                (Leader, 2),
                (Leader, 2),
                (Leader, 4), // re-elected: metrics skipped the campaign
                (Follower, 5),
                (Candidate, 6),
                (Leader, 6),
            ],
        );
        assert_eq!(
            got,
            vec![(Leader, 2), (Candidate, 4), (Leader, 4), (Follower, 5), (Leader, 6)]
        );
        assert_eq!(t.stop(6, 0).map(|e| e.role), Some(Shutdown));
        assert_eq!(t.stop(6, 0), None, "Shutdown is reported once");
        assert!(t.observe(view(Leader, 7)).is_empty(), "nothing after Shutdown");
    }
}
