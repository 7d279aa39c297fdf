//! The node's scrape-time readings for `GET /metrics` ([`crate::metrics::Live`]): Raft's
//! state, the leader's view of its peers, watchers, autopilot and the process.

use std::sync::{Arc, Weak};

use super::{Inner, Node};
use crate::metrics::{Live, Metrics};

/// Points the metrics' readings at this node. The source holds the node weakly: the
/// registry lives inside the node and must not keep it alive.
pub(crate) fn attach((node, metrics): &(Weak<Inner>, Arc<Metrics>)) {
    let node = node.clone();
    metrics.set_live(Box::new(move || {
        let inner = node.upgrade()?;
        Some(live(&Node { inner }))
    }));
}

impl Node {
    /// This node's metrics, as `GET /metrics` serves them (OpenMetrics text).
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.encode()
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
}

fn live(node: &Node) -> Live {
    let st = node.status();
    let peers = if st.is_leader() {
        st.members
            .keys()
            .filter(|id| **id != node.id())
            .map(|id| {
                let silent = st.last_ack.get(id).copied().flatten().map(|d| d.as_secs_f64());
                let lag = st
                    .last_log_index
                    .saturating_sub(st.matched.get(id).copied().unwrap_or(0));
                (*id, silent, lag)
            })
            .collect()
    } else {
        Vec::new()
    };
    let report = node.autopilot_report();
    let autopilot = report.leader.then(|| {
        let voters: Vec<_> = report.servers.iter().filter(|s| s.state == "voter").collect();
        let healthy = voters.iter().filter(|s| s.health == "healthy").count();
        let quorum = voters.len() / 2 + 1;
        (healthy == voters.len(), healthy.saturating_sub(quorum) as u64)
    });
    let p = crate::proc_info::read(node.inner.started.into_std());
    Live {
        has_leader: st.leader.is_some(),
        is_leader: st.is_leader(),
        disk_full: node.inner.disk.is_full(),
        term: st.term,
        commit_index: st.commit_index,
        applied_index: st.applied_index,
        last_log_index: st.last_log_index,
        snapshot_index: st.snapshot_index,
        peers,
        watchers: node.inner.state.watch.watchers(),
        autopilot,
        rss_bytes: p.rss_bytes,
        cpu_seconds: p.cpu_seconds,
        open_fds: p.open_fds,
        start_time_seconds: p.start_time_seconds,
    }
}
