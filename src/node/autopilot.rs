//! Autopilot: membership automation, run by the leader, in the manner of Consul's.
//!
//! Raft's own heartbeats are the failure detector: a node is *healthy* while it keeps
//! acknowledging the leader (within the maximum election timeout) and trails its log by
//! at most `BRAFT_MAX_TRAILING_LOGS`; it is *dead* once it has been silent for
//! `BRAFT_DEAD_NODE_TIMEOUT`. Discovery never changes the membership by itself.
//!
//! Each round the leader builds a [`ClusterView`] and [`decide`] — a pure function —
//! returns at most one action:
//! 1. remove a dead learner; else
//! 2. remove a dead voter, but never below `BRAFT_MIN_QUORUM` voters and never when the
//!    remaining healthy voters would not be a majority of the new configuration; else
//! 3. promote the longest-healthy learner that has been healthy for
//!    `BRAFT_STABILIZATION`, while fewer than `BRAFT_MAX_VOTERS` voters are healthy.
//!
//! One action per round, and none while a membership change is in flight, keeps changes
//! serialized; every action is idempotent (removing an absent node or promoting a voter
//! is a no-op decision, because the next view no longer offers it). A voter that dies
//! is replaced because promotion counts *healthy* voters: the learner is promoted first,
//! which then lets the dead voter's removal pass the quorum floor.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

// Tokio's clock, not the OS's: a simulation (or a paused test runtime) drives it.
use tokio::time::Instant;

use serde::{Deserialize, Serialize};

use super::Node;
use crate::config::Config;
use crate::raft::consensus::RaftStatus;
use crate::raft::membership::MembershipChange;
use crate::raft::NodeId;

/// How often the leader re-evaluates the cluster.
const TICK: Duration = Duration::from_millis(250);
/// How many recent actions the report keeps.
const EVENTS_KEPT: usize = 50;
/// An action that has not finished in this long is given up (and retried next round).
const ACTION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a committed joint configuration may wait for its second step before
/// autopilot finishes it.
const JOINT_GRACE: Duration = Duration::from_secs(1);

/// Autopilot's settings, from [`Config`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutopilotConfig {
    pub max_trailing_logs: u64,
    pub stabilization: Duration,
    pub max_voters: usize,
    /// `None`: dead nodes are never removed.
    pub dead_node_timeout: Option<Duration>,
    pub min_quorum: usize,
    /// A node silent for longer than this is unhealthy (the maximum election timeout).
    pub health_window: Duration,
}

impl AutopilotConfig {
    pub fn from_config(c: &Config) -> Self {
        Self {
            max_trailing_logs: c.max_trailing_logs,
            stabilization: Duration::from_millis(c.stabilization_ms),
            max_voters: c.max_voters,
            dead_node_timeout: Some(Duration::from_millis(c.dead_node_timeout_ms)).filter(|d| !d.is_zero()),
            min_quorum: c.min_quorum,
            health_window: c.election_timeout_max(),
        }
    }

    fn is_healthy(&self, silent_for: Duration, trailing: u64) -> bool {
        silent_for <= self.health_window && trailing <= self.max_trailing_logs
    }

    fn is_dead(&self, m: &MemberView) -> bool {
        self.dead_node_timeout.is_some_and(|t| m.silent_for >= t)
    }
}

/// One member as the leader sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberView {
    pub id: NodeId,
    pub voter: bool,
    /// Time since it last acknowledged the leader (zero for the leader itself).
    pub silent_for: Duration,
    /// How many entries it trails the leader's log by.
    pub trailing: u64,
    /// `Some(d)`: healthy now, and continuously for `d`. `None`: unhealthy now.
    pub healthy_for: Option<Duration>,
}

/// The cluster as the leader sees it, the input of [`decide`].
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterView {
    pub leader: NodeId,
    pub members: Vec<MemberView>,
    /// A membership change is in flight: decide nothing until it completes.
    pub changing: bool,
    /// A committed joint configuration nobody has finished: its proposer lost
    /// leadership between openraft's two steps. Left alone, every later change waits
    /// on it forever.
    pub stuck_joint: bool,
}

/// A membership change autopilot wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Promote(NodeId),
    RemoveVoter(NodeId),
    RemoveLearner(NodeId),
    FinishJoint,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Promote(id) => write!(f, "promote learner {id} to voter"),
            Action::RemoveVoter(id) => write!(f, "remove dead voter {id}"),
            Action::RemoveLearner(id) => write!(f, "remove dead learner {id}"),
            Action::FinishJoint => write!(f, "finish an interrupted joint membership change"),
        }
    }
}

/// What [`decide`] concluded: at most one action, and why other things wait.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub action: Option<Action>,
    /// Changes that are due but held back, and why.
    pub blocked: Vec<String>,
}

fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// The pure decision function. See the module docs for the rules.
pub fn decide(view: &ClusterView, cfg: &AutopilotConfig) -> Decision {
    let mut d = Decision::default();
    if view.stuck_joint {
        d.action = Some(Action::FinishJoint);
        return d;
    }
    if view.changing {
        d.blocked.push("a membership change is in progress".into());
        return d;
    }
    let healthy = |m: &MemberView| m.id == view.leader || m.healthy_for.is_some();
    let voters: Vec<&MemberView> = view.members.iter().filter(|m| m.voter).collect();

    // 1. Dead learners cost nothing to remove; the longest-silent goes first.
    let mut dead: Vec<&MemberView> = view
        .members
        .iter()
        .filter(|m| m.id != view.leader && cfg.is_dead(m))
        .collect();
    dead.sort_by_key(|m| (std::cmp::Reverse(m.silent_for), m.id));
    if let Some(m) = dead.iter().find(|m| !m.voter) {
        d.action = Some(Action::RemoveLearner(m.id));
        return d;
    }

    // 2. Dead voters, within the quorum floor.
    for m in dead.iter().filter(|m| m.voter) {
        let after = voters.len() - 1;
        let healthy_after = voters.iter().filter(|v| v.id != m.id && healthy(v)).count();
        if after < cfg.min_quorum {
            d.blocked.push(format!(
                "dead voter {} stays: removing it would leave {after} voters, below BRAFT_MIN_QUORUM ({})",
                m.id, cfg.min_quorum
            ));
        } else if healthy_after < majority(after) {
            d.blocked.push(format!(
                "dead voter {} stays: only {healthy_after} of the remaining {after} voters are healthy, not a quorum",
                m.id
            ));
        } else {
            d.action = Some(Action::RemoveVoter(m.id));
            return d;
        }
    }

    // 3. Promote stable learners while too few voters are healthy.
    let healthy_voters = voters.iter().filter(|v| healthy(v)).count();
    let mut stable: Vec<&MemberView> = view
        .members
        .iter()
        .filter(|m| !m.voter && m.healthy_for.is_some_and(|h| h >= cfg.stabilization))
        .collect();
    stable.sort_by_key(|m| (std::cmp::Reverse(m.healthy_for), m.id));
    if let Some(m) = stable.first() {
        if healthy_voters < cfg.max_voters {
            d.action = Some(Action::Promote(m.id));
            return d;
        }
        d.blocked.push(format!(
            "learner {} stays a learner: {healthy_voters} healthy voters already (BRAFT_MAX_VOTERS {})",
            m.id, cfg.max_voters
        ));
    }
    d
}

/// Turns the leader's Raft status into views, remembering since when each node has been
/// healthy. Forgets everything when leadership changes hands.
#[derive(Debug, Default)]
pub struct Tracker {
    term: Option<u64>,
    leading_since: Option<Instant>,
    healthy_since: BTreeMap<NodeId, Instant>,
    /// Since when the membership has been a committed joint configuration.
    joint_since: Option<Instant>,
    /// When each member first appeared under this leader: `None` for those already
    /// there when it took over. A node added (or added back) a moment ago cannot have
    /// been silent for longer than that.
    member_since: BTreeMap<NodeId, Option<Instant>>,
}

impl Tracker {
    /// The view, if this node leads.
    pub fn observe(&mut self, st: &RaftStatus, cfg: &AutopilotConfig, now: Instant) -> Option<ClusterView> {
        if !st.is_leader() {
            *self = Tracker::default();
            return None;
        }
        if self.term != Some(st.term) {
            *self = Tracker {
                term: Some(st.term),
                leading_since: Some(now),
                member_since: st.members.keys().map(|id| (*id, None)).collect(),
                ..Tracker::default()
            };
        }
        let leading_for = now.saturating_duration_since(self.leading_since.unwrap_or(now));
        let mut members = Vec::new();
        for id in st.members.keys() {
            let voter = st.voters.contains(id);
            if *id == st.id {
                members.push(MemberView {
                    id: *id,
                    voter,
                    silent_for: Duration::ZERO,
                    trailing: 0,
                    healthy_for: Some(leading_for),
                });
                continue;
            }
            // Silent at most since it became a member under this leader: without this
            // cap, a learner added back after a removal was "dead" on arrival (never
            // acknowledged, or acknowledged long ago) and removed again at once, over
            // and over (found by the simulation, seed 1).
            let last_ack = st.last_ack.get(id).copied().flatten();
            let silent_for = match *self.member_since.entry(*id).or_insert(Some(now)) {
                // There from the start: never acknowledged means silent since takeover.
                None => last_ack.unwrap_or(leading_for),
                Some(since) => {
                    let member_for = now.saturating_duration_since(since);
                    last_ack.map_or(member_for, |ack| ack.min(member_for))
                }
            };
            let trailing = st
                .last_log_index
                .saturating_sub(st.matched.get(id).copied().unwrap_or(0));
            let healthy_for = if cfg.is_healthy(silent_for, trailing) {
                let since = *self.healthy_since.entry(*id).or_insert(now);
                Some(now.saturating_duration_since(since))
            } else {
                self.healthy_since.remove(id);
                None
            };
            members.push(MemberView {
                id: *id,
                voter,
                silent_for,
                trailing,
                healthy_for,
            });
        }
        // openraft runs the second step right after the first commits; a joint
        // configuration still there a second later has lost its proposer.
        let stuck_joint = if st.joint_membership && st.membership_committed {
            now.saturating_duration_since(*self.joint_since.get_or_insert(now)) >= JOINT_GRACE
        } else {
            self.joint_since = None;
            false
        };
        self.healthy_since.retain(|id, _| st.members.contains_key(id));
        self.member_since.retain(|id, _| st.members.contains_key(id));
        Some(ClusterView {
            leader: st.id,
            members,
            changing: st.membership_changing,
            stuck_joint,
        })
    }
}

/// `GET /v1/cluster/autopilot`: the answering node's autopilot state. Only the leader
/// runs autopilot; other nodes fetch the leader's.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutopilotReport {
    /// The node that produced this report.
    pub reporter: NodeId,
    /// Whether the reporter leads (and so runs autopilot).
    pub leader: bool,
    pub settings: Option<AutopilotSettings>,
    pub servers: Vec<ServerHealth>,
    /// Changes that are due but held back, and why.
    pub blocked: Vec<String>,
    /// The latest actions, oldest first.
    pub events: VecDeque<AutopilotEvent>,
}

/// The settings, in milliseconds, as the report shows them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutopilotSettings {
    pub max_trailing_logs: u64,
    pub stabilization_ms: u64,
    pub max_voters: usize,
    pub dead_node_timeout_ms: u64,
    pub min_quorum: usize,
}

/// One member's state in the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerHealth {
    pub id: NodeId,
    pub address: String,
    /// `voter` or `learner`.
    pub state: String,
    /// `healthy`, `unhealthy` or `dead`.
    pub health: String,
    pub leader: bool,
    pub silent_ms: u64,
    pub trailing_logs: u64,
    /// How long it has been healthy without a break.
    pub healthy_for_ms: Option<u64>,
}

/// One action autopilot took, and how it went.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutopilotEvent {
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub action: String,
    /// `ok`, or the error.
    pub outcome: String,
}

/// The leader's loop: observe, decide, act, report.
pub(super) async fn run(node: Node) {
    let cfg = AutopilotConfig::from_config(node.config());
    let settings = AutopilotSettings {
        max_trailing_logs: cfg.max_trailing_logs,
        stabilization_ms: cfg.stabilization.as_millis() as u64,
        max_voters: cfg.max_voters,
        dead_node_timeout_ms: cfg.dead_node_timeout.map_or(0, |d| d.as_millis() as u64),
        min_quorum: cfg.min_quorum,
    };
    let mut tracker = Tracker::default();
    let mut shutdown = node.shutdown_signal();
    let mut last_blocked: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        let st = node.status();
        let view = tracker.observe(&st, &cfg, Instant::now());
        let decision = view.as_ref().map(|v| decide(v, &cfg)).unwrap_or_default();
        if decision.blocked != last_blocked {
            for b in &decision.blocked {
                tracing::info!("autopilot: {b}");
            }
            last_blocked = decision.blocked.clone();
        }
        {
            let mut r = node.inner.autopilot.lock().unwrap_or_else(|p| p.into_inner());
            r.reporter = node.id();
            r.leader = view.is_some();
            r.settings = Some(settings.clone());
            r.servers = view.as_ref().map(|v| servers(&st, v, &cfg)).unwrap_or_default();
            r.blocked = decision.blocked.clone();
        }
        let Some(action) = decision.action else {
            continue;
        };
        tracing::info!("autopilot: {action}");
        let change = match action {
            Action::Promote(id) => MembershipChange::Promote(std::collections::BTreeSet::from([id])),
            Action::RemoveVoter(id) => MembershipChange::RemoveVoter(id),
            Action::RemoveLearner(id) => MembershipChange::RemoveLearner(id),
            Action::FinishJoint => MembershipChange::FinishJoint,
        };
        let result = tokio::time::timeout(ACTION_TIMEOUT, node.consensus().change_membership(change))
            .await
            .map_err(|_| format!("not done within {} s", ACTION_TIMEOUT.as_secs()))
            .and_then(|r| r.map_err(|e| e.to_string()));
        let outcome = match &result {
            Ok(()) => "ok".to_string(),
            Err(e) => {
                tracing::warn!("autopilot: {action} failed: {e}");
                e.clone()
            }
        };
        let mut r = node.inner.autopilot.lock().unwrap_or_else(|p| p.into_inner());
        r.events.push_back(AutopilotEvent {
            at_ms: super::now_ms(),
            action: action.to_string(),
            outcome,
        });
        while r.events.len() > EVENTS_KEPT {
            r.events.pop_front();
        }
    }
}

fn servers(st: &RaftStatus, view: &ClusterView, cfg: &AutopilotConfig) -> Vec<ServerHealth> {
    view.members
        .iter()
        .map(|m| ServerHealth {
            id: m.id,
            address: st.peer(m.id).map(|p| p.rpc_addr.clone()).unwrap_or_default(),
            state: if m.voter { "voter" } else { "learner" }.into(),
            health: if m.id == view.leader || m.healthy_for.is_some() {
                "healthy"
            } else if cfg.is_dead(m) {
                "dead"
            } else {
                "unhealthy"
            }
            .into(),
            leader: m.id == view.leader,
            silent_ms: m.silent_for.as_millis() as u64,
            trailing_logs: m.trailing,
            healthy_for_ms: m.healthy_for.map(|d| d.as_millis() as u64),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! The decision rules as stories: a cluster view in, at most one action out.
    use super::*;

    fn cfg() -> AutopilotConfig {
        AutopilotConfig {
            max_trailing_logs: 250,
            stabilization: Duration::from_secs(10),
            max_voters: 5,
            dead_node_timeout: Some(Duration::from_secs(60)),
            min_quorum: 3,
            health_window: Duration::from_millis(750),
        }
    }

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    /// The status of leader `id` in `term` over `members`, the first three voters, its
    /// log at index 100.
    fn leading(id: NodeId, term: u64, members: std::ops::RangeInclusive<NodeId>) -> RaftStatus {
        let mut st = RaftStatus {
            id,
            state: "Leader".into(),
            term,
            leader: Some(id),
            last_log_index: 100,
            voters: [1, 2, 3].into(),
            ..Default::default()
        };
        for m in members {
            st.members.insert(m, Default::default());
        }
        st
    }

    fn member(v: &ClusterView, id: NodeId) -> MemberView {
        v.members.iter().find(|m| m.id == id).cloned().unwrap()
    }

    fn voter(id: NodeId) -> MemberView {
        MemberView {
            id,
            voter: true,
            silent_for: Duration::ZERO,
            trailing: 0,
            healthy_for: Some(s(100)),
        }
    }

    fn learner(id: NodeId, healthy_for: u64) -> MemberView {
        MemberView {
            voter: false,
            healthy_for: Some(s(healthy_for)),
            ..voter(id)
        }
    }

    fn dead(mut m: MemberView, silent: u64) -> MemberView {
        m.silent_for = s(silent);
        m.healthy_for = None;
        m
    }

    fn view(members: Vec<MemberView>) -> ClusterView {
        ClusterView {
            leader: 1,
            members,
            changing: false,
            stuck_joint: false,
        }
    }

    #[test]
    fn a_healthy_cluster_is_left_alone() {
        let d = decide(&view(vec![voter(1), voter(2), voter(3)]), &cfg());
        assert_eq!(d, Decision::default());
    }

    #[test]
    fn a_learner_is_promoted_only_after_stabilization() {
        let young = view(vec![voter(1), voter(2), voter(3), learner(4, 9)]);
        assert_eq!(decide(&young, &cfg()).action, None);
        let stable = view(vec![voter(1), voter(2), voter(3), learner(4, 10)]);
        assert_eq!(decide(&stable, &cfg()).action, Some(Action::Promote(4)));
    }

    #[test]
    fn an_unhealthy_or_trailing_learner_is_never_promoted() {
        let mut lagging = learner(4, 0);
        lagging.healthy_for = None;
        lagging.trailing = 1_000;
        let d = decide(&view(vec![voter(1), voter(2), voter(3), lagging]), &cfg());
        assert_eq!(d.action, None);
    }

    #[test]
    fn the_voter_cap_keeps_extra_nodes_learners() {
        let full = view(vec![voter(1), voter(2), voter(3), voter(4), voter(5), learner(6, 60)]);
        let d = decide(&full, &cfg());
        assert_eq!(d.action, None);
        assert!(d.blocked[0].contains("BRAFT_MAX_VOTERS"), "{d:?}");
        let three = AutopilotConfig { max_voters: 3, ..cfg() };
        let d = decide(&view(vec![voter(1), voter(2), voter(3), learner(4, 60)]), &three);
        assert_eq!(d.action, None);
    }

    #[test]
    fn the_longest_healthy_learner_goes_first() {
        let v = view(vec![voter(1), voter(2), voter(3), learner(5, 20), learner(4, 30)]);
        assert_eq!(decide(&v, &cfg()).action, Some(Action::Promote(4)));
    }

    #[test]
    fn a_dead_voter_is_not_removed_before_the_timeout() {
        let v = view(vec![voter(1), voter(2), voter(3), voter(4), dead(voter(5), 59)]);
        assert_eq!(decide(&v, &cfg()).action, None);
        let v = view(vec![voter(1), voter(2), voter(3), voter(4), dead(voter(5), 60)]);
        assert_eq!(decide(&v, &cfg()).action, Some(Action::RemoveVoter(5)));
    }

    #[test]
    fn the_quorum_floor_keeps_three_voters_even_when_one_is_dead() {
        // Repeated blips must never shrink a three-node cluster: the dead voter stays.
        let v = view(vec![voter(1), voter(2), dead(voter(3), 600)]);
        let d = decide(&v, &cfg());
        assert_eq!(d.action, None);
        assert!(d.blocked[0].contains("BRAFT_MIN_QUORUM"), "{d:?}");
    }

    #[test]
    fn a_dead_voter_is_replaced_by_promoting_a_learner_first() {
        // 3 voters (one dead) and a stable learner, max 3 voters: promote first...
        let three = AutopilotConfig { max_voters: 3, ..cfg() };
        let before = view(vec![voter(1), voter(2), dead(voter(3), 600), learner(4, 30)]);
        assert_eq!(decide(&before, &three).action, Some(Action::Promote(4)));
        // ...then the dead voter can go without dropping below the floor.
        let after = view(vec![voter(1), voter(2), dead(voter(3), 600), voter(4)]);
        assert_eq!(decide(&after, &three).action, Some(Action::RemoveVoter(3)));
    }

    #[test]
    fn one_removal_at_a_time_and_learners_first() {
        let v = view(vec![
            voter(1),
            voter(2),
            voter(3),
            dead(voter(4), 100),
            dead(voter(5), 200),
            dead(learner(6, 0), 70),
        ]);
        let d = decide(&v, &cfg());
        assert_eq!(d.action, Some(Action::RemoveLearner(6)));
        // Without the learner, the longest-dead voter goes, alone.
        let v = view(vec![
            voter(1),
            voter(2),
            voter(3),
            dead(voter(4), 100),
            dead(voter(5), 200),
        ]);
        assert_eq!(decide(&v, &cfg()).action, Some(Action::RemoveVoter(5)));
    }

    #[test]
    fn a_removal_that_would_lose_quorum_is_refused() {
        // 5 voters, 3 silent: the two healthy ones are no majority of the 4 that would
        // remain, so nothing is removed (and nothing could commit anyway).
        let v = view(vec![
            voter(1),
            voter(2),
            dead(voter(3), 100),
            dead(voter(4), 100),
            dead(voter(5), 100),
        ]);
        let floor_one = AutopilotConfig { min_quorum: 1, ..cfg() };
        let d = decide(&v, &floor_one);
        assert_eq!(d.action, None);
        assert!(d.blocked.iter().all(|b| b.contains("not a quorum")), "{d:?}");
    }

    #[test]
    fn nothing_happens_during_a_membership_change() {
        let mut v = view(vec![
            voter(1),
            voter(2),
            voter(3),
            learner(4, 60),
            dead(learner(5, 0), 100),
        ]);
        v.changing = true;
        assert_eq!(decide(&v, &cfg()).action, None);
    }

    #[test]
    fn a_zero_dead_node_timeout_never_removes() {
        let off = AutopilotConfig {
            dead_node_timeout: None,
            ..cfg()
        };
        let v = view(vec![voter(1), voter(2), voter(3), voter(4), dead(voter(5), 100_000)]);
        assert_eq!(decide(&v, &off).action, None);
    }

    /// The tracker measures health streaks from the leader's heartbeats.
    #[test]
    fn tracker_measures_health_since_first_healthy_round() {
        let cfg = cfg();
        let mut st = leading(1, 2, 1..=4);
        st.matched = [(2, 100), (3, 100), (4, 100)].into();
        st.last_ack = [(2, Some(Duration::ZERO)), (3, Some(s(5))), (4, Some(Duration::ZERO))].into();
        let mut t = Tracker::default();
        let t0 = Instant::now();
        let v = t.observe(&st, &cfg, t0).unwrap();
        assert_eq!(member(&v, 4).healthy_for, Some(Duration::ZERO));
        assert_eq!(member(&v, 3).healthy_for, None, "silent for 5 s: unhealthy");
        let v = t.observe(&st, &cfg, t0 + s(11)).unwrap();
        assert_eq!(member(&v, 4).healthy_for, Some(s(11)));
        assert_eq!(decide(&v, &cfg).action, Some(Action::Promote(4)));
        // A new term starts the streaks over.
        st.term = 3;
        let v = t.observe(&st, &cfg, t0 + s(12)).unwrap();
        assert_eq!(member(&v, 4).healthy_for, Some(Duration::ZERO));
        // Not the leader: no view.
        st.state = "Follower".into();
        assert!(t.observe(&st, &cfg, t0 + s(13)).is_none());
    }

    /// A joint configuration left behind by a leader that lost office between the two
    /// steps is finished, after a grace period, before anything else is considered.
    #[test]
    fn an_interrupted_joint_change_is_finished() {
        let cfg = cfg();
        let mut st = RaftStatus {
            joint_membership: true,
            membership_committed: true,
            membership_changing: true,
            ..leading(2, 3, 1..=3)
        };
        st.last_ack = [(1, Some(Duration::ZERO)), (3, Some(Duration::ZERO))].into();
        let mut t = Tracker::default();
        let t0 = Instant::now();
        let v = t.observe(&st, &cfg, t0).unwrap();
        assert_eq!(decide(&v, &cfg).action, None, "its proposer may still be finishing it");
        let v = t.observe(&st, &cfg, t0 + JOINT_GRACE).unwrap();
        assert_eq!(decide(&v, &cfg).action, Some(Action::FinishJoint));
        // An uncommitted joint configuration is still in flight: wait.
        st.membership_committed = false;
        let v = t.observe(&st, &cfg, t0 + s(5)).unwrap();
        assert_eq!(decide(&v, &cfg).action, None);
    }

    /// A node added while this leader leads is silent only since it was added, however
    /// long ago it last acknowledged anything: a removed node that rejoins as a learner
    /// must not be removed again as dead on arrival.
    #[test]
    fn a_member_added_back_is_not_dead_on_arrival() {
        let cfg = cfg(); // dead after 60 s
        let mut st = leading(1, 2, 1..=3);
        st.last_ack = [(2, Some(Duration::ZERO)), (3, Some(Duration::ZERO))].into();
        let mut t = Tracker::default();
        let t0 = Instant::now();
        t.observe(&st, &cfg, t0).unwrap();

        // 100 s later node 4 joins; openraft reports no ack yet, or an old one.
        st.members.insert(4, Default::default());
        for ack in [None, Some(s(500))] {
            st.last_ack.insert(4, ack);
            let v = t.observe(&st, &cfg, t0 + s(100)).unwrap();
            assert_eq!(member(&v, 4).silent_for, Duration::ZERO);
            assert_eq!(decide(&v, &cfg).action, None, "ack {ack:?}");
        }
        // Still silent 61 s after joining: now it is dead, and removed.
        st.last_ack.insert(4, None);
        let v = t.observe(&st, &cfg, t0 + s(161)).unwrap();
        assert_eq!(member(&v, 4).silent_for, s(61));
        assert_eq!(decide(&v, &cfg).action, Some(Action::RemoveLearner(4)));

        // Removed, then added back 10 s later: its clock starts over.
        st.members.remove(&4);
        t.observe(&st, &cfg, t0 + s(162)).unwrap();
        st.members.insert(4, Default::default());
        let v = t.observe(&st, &cfg, t0 + s(172)).unwrap();
        assert_eq!(member(&v, 4).silent_for, Duration::ZERO);
    }
}
