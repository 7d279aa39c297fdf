//! Prometheus metrics (`GET /metrics`), with one registry per node: several nodes share
//! one process in tests and in the simulation, so nothing is global.
//!
//! Two kinds of series:
//! - **instruments** the code updates as things happen (proposals, fsyncs, applies,
//!   snapshots, forwarded requests, HTTP and gRPC requests): counters and histograms, a
//!   few atomic operations each;
//! - **readings** taken at scrape time ([`Live`]): term, indexes, leadership, peers,
//!   watchers, autopilot and the process. They cost nothing between scrapes.
//!
//! Names mirror what operators already alert on in etcd (`has_leader`,
//! `leader_changes_seen_total`, `proposals_*`) and Consul (`autopilot_healthy`,
//! `autopilot_failure_tolerance`).

use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// Labels of `braft_forwarded_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForwardLabels {
    /// `write`, `read`, or `read_index` (a follower asking for a read point).
    pub kind: &'static str,
    /// `ok`, `not_leader`, `unavailable`, `indeterminate` or `error`.
    pub outcome: &'static str,
}

/// Labels of `braft_http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route pattern (`/v1/kv/{*key}`), never the raw path: bounded cardinality.
    pub route: String,
    pub code: u16,
}

/// Labels of `braft_http_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

/// Labels of `braft_grpc_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    /// `/braft.v1.Kv/Put`, …
    pub method: String,
    /// The gRPC status code's name, `OK` on success.
    pub code: String,
}

/// The state read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Live {
    pub has_leader: bool,
    pub is_leader: bool,
    /// The data directory is out of space (writes refused until it is not).
    pub disk_full: bool,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    pub snapshot_index: u64,
    /// Leader only: (peer id, seconds since its last acknowledgement, entries behind).
    pub peers: Vec<(u64, Option<f64>, u64)>,
    pub watchers: u64,
    /// Leader only: whether every voter is healthy, and how many voters may fail.
    pub autopilot: Option<(bool, u64)>,
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
    pub open_fds: u64,
    pub start_time_seconds: f64,
}

/// Reads [`Live`]; set once the node exists.
pub type LiveSource = Box<dyn Fn() -> Option<Live> + Send + Sync>;

/// One node's metrics.
pub struct Metrics {
    registry: Registry,
    /// `BRAFT_METRICS`: when false, the histograms are not observed (see
    /// [`crate::config::Config::metrics`]).
    pub enabled: bool,
    pub leader_changes: Counter,
    pub proposals_committed: Counter,
    pub proposals_applied: Counter,
    pub proposals_pending: Gauge,
    pub proposals_failed: Counter,
    pub fsync: Histogram,
    pub apply: Histogram,
    pub snapshot: Histogram,
    pub forwarded: Family<ForwardLabels, Counter>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram>,
    pub grpc_requests: Family<GrpcLabels, Counter>,
    live: Arc<OnceLock<LiveSource>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Latency buckets from 100 µs to about 6.5 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let live: Arc<OnceLock<LiveSource>> = Arc::new(OnceLock::new());
        let m = Metrics {
            registry: Registry::default(),
            enabled: true,
            leader_changes: Counter::default(),
            proposals_committed: Counter::default(),
            proposals_applied: Counter::default(),
            proposals_pending: Gauge::default(),
            proposals_failed: Counter::default(),
            fsync: latency(),
            apply: latency(),
            snapshot: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            forwarded: Family::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency),
            grpc_requests: Family::default(),
            live: live.clone(),
        };
        // The root holds the standard, unprefixed `process_*`; braft's own series are
        // under `braft_`.
        let mut root = Registry::default();
        root.register_collector(Box::new(Readings {
            live: live.clone(),
            process: true,
        }));
        let r = root.sub_registry_with_prefix("braft");
        r.register(
            "leader_changes_seen",
            "Leader changes this node has seen",
            m.leader_changes.clone(),
        );
        r.register(
            "proposals_committed",
            "Writes this node proposed as leader that committed",
            m.proposals_committed.clone(),
        );
        r.register(
            "proposals_applied",
            "Log entries this node's state machine applied",
            m.proposals_applied.clone(),
        );
        r.register(
            "proposals_pending",
            "Writes proposed on this node, not yet committed",
            m.proposals_pending.clone(),
        );
        r.register(
            "proposals_failed",
            "Writes proposed on this node that failed or whose fate is unknown",
            m.proposals_failed.clone(),
        );
        r.register_with_unit(
            "log_fsync_duration",
            "How long making appended log entries durable took",
            Unit::Seconds,
            m.fsync.clone(),
        );
        r.register_with_unit(
            "apply_duration",
            "How long applying a batch of committed entries took",
            Unit::Seconds,
            m.apply.clone(),
        );
        r.register_with_unit(
            "snapshot_duration",
            "How long building and storing a snapshot took",
            Unit::Seconds,
            m.snapshot.clone(),
        );
        r.register(
            "forwarded_requests",
            "Requests this node forwarded to the leader, by kind and outcome",
            m.forwarded.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests served, by route and status code",
            m.http_requests.clone(),
        );
        r.register_with_unit(
            "http_request_duration",
            "HTTP request latency, by route",
            Unit::Seconds,
            m.http_duration.clone(),
        );
        r.register(
            "grpc_requests",
            "gRPC requests served, by method and status code",
            m.grpc_requests.clone(),
        );
        r.register_collector(Box::new(Readings { live, process: false }));
        Metrics { registry: root, ..m }
    }

    /// Where the scrape-time readings come from (set once, by the node).
    pub fn set_live(&self, source: LiveSource) {
        let _ = self.live.set(source);
    }

    /// Every series in the classic Prometheus text format (0.0.4), for clients that do
    /// not ask for OpenMetrics (curl, `promtool check metrics`): see
    /// [`to_prometheus_text`].
    pub fn encode_text(&self) -> String {
        to_prometheus_text(&self.encode())
    }

    /// The OpenMetrics text of every series.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("encoding metrics: {e}");
        }
        out
    }
}

/// The scrape-time readings, as gauges and counters.
struct Readings {
    live: Arc<OnceLock<LiveSource>>,
    /// The `process_*` series (unprefixed), or braft's own.
    process: bool,
}

impl std::fmt::Debug for Readings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Readings(process: {})", self.process)
    }
}

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, unit: Option<&Unit>, v: f64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    let me = e.encode_descriptor(name, help, unit, g.metric_type())?;
    g.encode(me)
}

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, unit: Option<&Unit>, v: f64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    let me = e.encode_descriptor(name, help, unit, c.metric_type())?;
    c.encode(me)
}

impl Collector for Readings {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(live) = self.live.get().and_then(|f| f()) else {
            return Ok(());
        };
        let b = |v: bool| if v { 1.0 } else { 0.0 };
        if self.process {
            gauge(
                &mut e,
                "process_resident_memory",
                "Resident memory",
                Some(&Unit::Bytes),
                live.rss_bytes as f64,
            )?;
            counter(
                &mut e,
                "process_cpu",
                "User and system CPU time",
                Some(&Unit::Seconds),
                live.cpu_seconds,
            )?;
            gauge(
                &mut e,
                "process_open_fds",
                "Open file descriptors",
                None,
                live.open_fds as f64,
            )?;
            gauge(
                &mut e,
                "process_start_time",
                "Start time since the Unix epoch",
                Some(&Unit::Seconds),
                live.start_time_seconds,
            )?;
            return Ok(());
        }
        gauge(
            &mut e,
            "has_leader",
            "1 if this node knows a leader",
            None,
            b(live.has_leader),
        )?;
        gauge(
            &mut e,
            "is_leader",
            "1 if this node is the leader",
            None,
            b(live.is_leader),
        )?;
        gauge(
            &mut e,
            "disk_full",
            "1 while the data directory is out of space and writes through this node are refused",
            None,
            b(live.disk_full),
        )?;
        gauge(&mut e, "term", "The current term", None, live.term as f64)?;
        gauge(
            &mut e,
            "commit_index",
            "The committed log index",
            None,
            live.commit_index as f64,
        )?;
        gauge(
            &mut e,
            "applied_index",
            "The applied log index",
            None,
            live.applied_index as f64,
        )?;
        gauge(
            &mut e,
            "last_log_index",
            "The last log index",
            None,
            live.last_log_index as f64,
        )?;
        gauge(
            &mut e,
            "snapshot_index",
            "The last snapshot's log index",
            None,
            live.snapshot_index as f64,
        )?;
        gauge(
            &mut e,
            "watchers",
            "Open watches served by this node",
            None,
            live.watchers as f64,
        )?;
        if let Some((healthy, tolerance)) = live.autopilot {
            gauge(
                &mut e,
                "autopilot_healthy",
                "1 if every voter is healthy (leader only)",
                None,
                b(healthy),
            )?;
            gauge(
                &mut e,
                "autopilot_failure_tolerance",
                "How many voters may fail with a quorum left (leader only)",
                None,
                tolerance as f64,
            )?;
        }
        if !live.peers.is_empty() {
            #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
            struct Peer {
                peer: String,
            }
            let contact = Family::<Peer, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
            let lag = Family::<Peer, Gauge>::default();
            for (id, silent, behind) in &live.peers {
                let l = Peer { peer: id.to_string() };
                if let Some(s) = silent {
                    contact.get_or_create(&l).set(*s);
                }
                lag.get_or_create(&l).set(*behind as i64);
            }
            let me = e.encode_descriptor(
                "peer_last_contact",
                "Seconds since the peer last acknowledged this leader",
                Some(&Unit::Seconds),
                contact.metric_type(),
            )?;
            contact.encode(me)?;
            let me = e.encode_descriptor(
                "peer_lag_entries",
                "How many entries the peer is behind this leader",
                None,
                lag.metric_type(),
            )?;
            lag.encode(me)?;
        }
        Ok(())
    }
}

/// OpenMetrics text to the classic Prometheus text format. The two differ, for what this
/// registry writes, only in that OpenMetrics names a counter's family without `_total`
/// (`# TYPE x counter`, samples `x_total`), and has `# UNIT` and `# EOF` lines. Written
/// here because prometheus-client encodes OpenMetrics only, and Prometheus's own
/// `promtool check metrics` reads the classic format.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(meta.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters get their `_total` family name, `# UNIT` and `# EOF` go, the rest stays.
    #[test]
    fn openmetrics_to_prometheus_text() {
        let om = "# HELP braft_x Things.\n# TYPE braft_x counter\nbraft_x_total 3\n\
                  # HELP braft_d Time.\n# TYPE braft_d gauge\n# UNIT braft_d seconds\nbraft_d 1.5\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP braft_x_total Things.\n# TYPE braft_x_total counter\nbraft_x_total 3\n\
             # HELP braft_d Time.\n# TYPE braft_d gauge\nbraft_d 1.5\n"
        );
    }
}
