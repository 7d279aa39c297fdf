//! Node configuration: one plain struct, its defaults, the settings table that maps
//! braft's environment variables (with their short aliases), TOML keys and flags onto it,
//! and `validate()`, which names the bad setting and what is allowed.
//!
//! Layers apply in this order, later ones winning: defaults, the TOML file, the
//! environment, command-line flags. The binary builds its flags from [`SETTINGS`], so
//! every variable has a flag twin and the two can never drift apart.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::codec::Codec;

/// The port of a peer address given without one.
pub const DEFAULT_RPORT: u16 = 15000;

/// A configuration problem, naming the setting (its environment variable) and what is
/// allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    /// The environment variable (or TOML key / flag) at fault.
    pub setting: String,
    /// What was wrong, and what is allowed.
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(setting: &str, problem: impl Into<String>) -> Self {
        Self {
            setting: setting.to_string(),
            problem: problem.into(),
        }
    }
}

/// How a node finds its peers (`BRAFT_DISCOVERY`/`BDI`). The running implementations
/// live in [`crate::discovery`]; this is only the parsed setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// A fixed list of peers' raft/gRPC addresses (`host:port`). Empty means "just me":
    /// a one-node cluster.
    Static(Vec<String>),
    /// mDNS on the local network: `mdns`, or `mdns:<service>` to override
    /// `MDNS_SERVICE`.
    Mdns(Option<String>),
    /// Pods listed through the Kubernetes API (`K8S_*` settings).
    K8s,
    /// A DNS name re-resolved periodically (`dns:<name>[:port]`); without a port, peers
    /// use this node's `BRAFT_RPORT`.
    Dns { name: String, port: Option<u16> },
}

impl Discovery {
    /// Parses `static:h1:p1,h2:p2` (or a bare comma list), `mdns[:service]`, `k8s`
    /// (or `kubernetes`) and `dns:name[:port]`. A static peer without a port means 15000.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "mdns" || s == "mdns://" {
            return Ok(Discovery::Mdns(None));
        }
        if let Some(svc) = s.strip_prefix("mdns:") {
            let svc = svc.trim_start_matches("//").trim();
            if svc.is_empty() {
                return Ok(Discovery::Mdns(None));
            }
            check_mdns_service(svc)?;
            return Ok(Discovery::Mdns(Some(svc.to_string())));
        }
        if s == "k8s" || s == "kubernetes" || s.starts_with("k8s:") || s.starts_with("kubernetes:") {
            return Ok(Discovery::K8s);
        }
        if let Some(rest) = s.strip_prefix("dns:") {
            let rest = rest.trim_start_matches("//").trim();
            if rest.is_empty() {
                return Err("'dns:' needs a name, e.g. dns:braft-headless.default.svc.cluster.local:15000".into());
            }
            let (name, port) = match rest.rsplit_once(':') {
                Some((n, p)) if !n.contains(':') => (n, Some(parse_port(p).map_err(|e| format!("'{s}': {e}"))?)),
                _ => (rest, None),
            };
            return Ok(Discovery::Dns {
                name: name.to_string(),
                port,
            });
        }
        let list = s.strip_prefix("static:").unwrap_or(s);
        let list = list.strip_prefix("//").unwrap_or(list);
        let mut peers = Vec::new();
        for item in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            peers.push(normalize_peer(item)?);
        }
        Ok(Discovery::Static(peers))
    }

    /// Whether this is the static list, whose members alone may form the cluster.
    pub fn is_static(&self) -> bool {
        matches!(self, Discovery::Static(_))
    }
}

/// An mDNS service type such as `_braft._tcp`.
fn check_mdns_service(svc: &str) -> Result<(), String> {
    let bare = svc.trim_end_matches('.').trim_end_matches(".local");
    let ok = bare.starts_with('_')
        && (bare.ends_with("._tcp") || bare.ends_with("._udp"))
        && bare.len() > 6
        && bare.split('.').next().is_some_and(|l| l.len() <= 16);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{svc}' is not an mDNS service type (e.g. _braft._tcp; the name is at most 15 characters)"
        ))
    }
}

/// `host` or `host:port` to `host:port`, checking the port.
fn normalize_peer(item: &str) -> Result<String, String> {
    // An IPv6 literal must be bracketed to carry a port.
    if let Some(rest) = item.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').ok_or_else(|| format!("'{item}': unclosed '['"))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => parse_port(p).map_err(|e| format!("'{item}': {e}"))?,
            None if tail.is_empty() => DEFAULT_RPORT,
            None => return Err(format!("'{item}': expected host:port")),
        };
        return Ok(format!("[{host}]:{port}"));
    }
    match item.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => {
            let port = parse_port(port).map_err(|e| format!("'{item}': {e}"))?;
            Ok(format!("{host}:{port}"))
        }
        // braft's `:15000`: this node's own address, filled in at start.
        Some((_, port)) => {
            let port = parse_port(port).map_err(|e| format!("'{item}': {e}"))?;
            Ok(format!(":{port}"))
        }
        None => Ok(format!("{item}:{DEFAULT_RPORT}")),
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("'{s}' is not a port (allowed: 1..65535)")),
        Ok(p) => Ok(p),
    }
}

/// Parses `500ms`, `2s`, `1m`, `1h`; a bare number means milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mul_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (s, 1)
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (e.g. 500ms, 2s, 1m)"))?;
    Ok(Duration::from_millis(n.saturating_mul(mul_ms)))
}

/// A file path; empty means unset.
fn path_setting(v: &str) -> Option<PathBuf> {
    Some(v.trim()).filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" => Ok(true),
        "0" | "false" | "no" | "off" | "n" | "" => Ok(false),
        other => Err(format!("'{other}' is not a boolean (allowed: true/false, 1/0, yes/no)")),
    }
}

fn parse_num<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.trim().parse::<T>().map_err(|_| format!("'{s}' is not {what}"))
}

/// Everything a node needs to start. Build it with [`Config::default`] and the setters
/// or layers, then call [`Config::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// How peers are found (`BRAFT_DISCOVERY`/`BDI`).
    pub discovery: Discovery,
    /// The address this node advertises to peers (`BRAFT_IP`/`BIP`). `None` picks the
    /// first non-loopback IPv4 (of `interface`, if set), else 127.0.0.1.
    pub ip: Option<IpAddr>,
    /// The network interface to take the address from (`BRAFT_IF`/`BIF`).
    pub interface: Option<String>,
    /// Raft and gRPC port (`BRAFT_RPORT`/`BRP`).
    pub rport: u16,
    /// HTTP port (`BRAFT_HPORT`/`BHP`); `None` means `rport + 2`.
    pub hport: Option<u16>,
    /// braft's discovery (memberlist gossip) port (`BRAFT_DPORT`/`BDP`); accepted for
    /// compatibility and unused, since braft has no gossip layer.
    pub dport: Option<u16>,
    /// Serve gRPC reflection (off with `DISABLE_GRPC_REFLECTION`/`DGR`).
    pub grpc_reflection: bool,
    /// Record and serve Prometheus metrics (`BRAFT_METRICS`, default on). Off, the
    /// per-request counting layers and the latency histograms are not installed and
    /// `/metrics` answers 404; a few plain atomic counters still count.
    pub metrics: bool,
    /// Where the log, vote, snapshots and identity live (`BRAFT_DATA_DIR`); `None` means
    /// `./braft-data/<rport>`.
    pub data_dir: Option<PathBuf>,
    /// A fixed node id (`BRAFT_NODE_ID`); `None` generates one on first start.
    pub node_id: Option<u64>,
    /// How many fresh nodes must see each other before one bootstraps the cluster
    /// (`BRAFT_BOOTSTRAP_EXPECT`); `None` means the static list's length.
    pub bootstrap_expect: Option<usize>,
    /// Take a snapshot and purge the log after this many entries (`BRAFT_SNAPSHOT_LOGS`).
    /// etcd's `--snapshot-count` is the same, and so is its default: a snapshot writes
    /// the whole state, so at a million keys one every 10,000 entries took a core.
    pub snapshot_logs: u64,
    /// ...or once the entries applied since the last snapshot carry this many bytes of
    /// payload (`BRAFT_SNAPSHOT_LOG_BYTES`), whichever comes first: large values must
    /// not grow the log on disk without bound while the entry count is low.
    pub snapshot_log_bytes: u64,
    /// Leader heartbeat interval (`BRAFT_HEARTBEAT_MS`).
    pub heartbeat_ms: u64,
    /// Minimum election timeout; the maximum is 1.2x this and is also the leader lease
    /// (`BRAFT_ELECTION_TIMEOUT_MS`).
    pub election_timeout_ms: u64,
    /// How long a write or read may retry before failing (`BRAFT_REQUEST_TIMEOUT_MS`).
    pub request_timeout_ms: u64,
    /// The largest value accepted (`BRAFT_MAX_VALUE_BYTES`).
    pub max_value_bytes: usize,
    /// How many watch events each node keeps in memory for watchers to resume from
    /// (`BRAFT_WATCH_HISTORY`).
    pub watch_history: usize,
    /// ...and the most bytes of keys and values they may hold (`BRAFT_WATCH_HISTORY_BYTES`);
    /// the older events go first when either bound is reached.
    pub watch_history_bytes: usize,
    /// Random start-up delay, up to this long (`BRAFT_SLEEP`); braft's jitter.
    pub sleep_ms: u64,
    /// Log entry encoding (`BRAFT_CODEC`): msgpack or json.
    pub codec: Codec,
    /// The on-disk log for a new data directory (`BRAFT_LOG_ENGINE`): wal or redb. A
    /// directory that already holds a log keeps its engine.
    pub log_engine: crate::store::LogEngine,
    /// The shared secret peers present on every peer RPC (`BRAFT_CLUSTER_TOKEN`); `None`
    /// leaves peer RPCs open.
    pub cluster_token: Option<String>,
    /// The client plane's certificate and key (`BRAFT_CERT_FILE`, `BRAFT_KEY_FILE`):
    /// set, HPORT speaks TLS only (see [`crate::tls`]).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The CA client certificates must chain to (`BRAFT_CLIENT_CA_FILE`); set, HPORT
    /// refuses clients without one (etcd's `--client-cert-auth`).
    pub client_ca_file: Option<PathBuf>,
    /// The peer plane's certificate, key and CA (`BRAFT_PEER_CERT_FILE`, ...), each
    /// falling back to the client plane's; peer TLS is always mutual.
    pub peer_cert_file: Option<PathBuf>,
    pub peer_key_file: Option<PathBuf>,
    pub peer_ca_file: Option<PathBuf>,
    /// Client tokens with roles (`BRAFT_AUTH_FILE`, see [`crate::access`]); `None`
    /// leaves the client API open.
    pub auth_file: Option<PathBuf>,
    /// `/metrics` needs a read token too (`BRAFT_METRICS_AUTH`).
    pub metrics_auth: bool,
    /// Open connections per port (`BRAFT_MAX_CONNECTIONS`); at the limit the node
    /// stops accepting until one closes.
    pub max_connections: usize,
    /// Requests in flight on HPORT (`BRAFT_MAX_REQUESTS`), watches and probes apart;
    /// past it, 503 with `Retry-After`.
    pub max_requests: usize,
    /// Open watches per node (`BRAFT_MAX_WATCHERS`); past it, 503 / RESOURCE_EXHAUSTED.
    pub max_watchers: usize,
    /// The largest request head, HTTP/1 headers or an HTTP/2 header list
    /// (`BRAFT_MAX_HEADER_BYTES`).
    pub max_header_bytes: usize,
    /// How long a client may take to send a request's headers (`BRAFT_HEADER_TIMEOUT`),
    /// against slow-loris clients.
    pub header_timeout_ms: u64,
    /// Concurrent HTTP/2 streams per connection (`BRAFT_MAX_STREAMS`), both ports.
    pub max_streams: u32,
    /// The mDNS service type advertised and browsed (`MDNS_SERVICE`/`MDS`).
    pub mdns_service: String,
    /// The namespace whose pods Kubernetes discovery lists (`K8S_NAMESPACE`/`K8N`);
    /// `None` means the pod's own, read from the service account.
    pub k8s_namespace: Option<String>,
    /// The label selector of the braft pods (`K8S_LABELS`/`K8L`).
    pub k8s_labels: String,
    /// The container port (by name) peers listen on (`K8S_PORTNAME`/`K8P`); `None`
    /// means `BRAFT_RPORT`.
    pub k8s_port_name: Option<String>,
    /// A delay before Kubernetes discovery first lists pods (`K8S_SLEEP`).
    pub k8s_sleep_ms: u64,
    /// The Kubernetes API base URL (`BRAFT_K8S_API`); `None` means the in-cluster
    /// `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`.
    pub k8s_api: Option<String>,
    /// The DNS server DNS discovery asks (`BRAFT_DNS_SERVER`); `None` means the
    /// system's resolver configuration.
    pub dns_server: Option<SocketAddr>,
    /// A learner is promoted only within this many entries of the leader's log
    /// (`BRAFT_MAX_TRAILING_LOGS`).
    pub max_trailing_logs: u64,
    /// ...and only after it has been healthy this long (`BRAFT_STABILIZATION`).
    pub stabilization_ms: u64,
    /// The work distributor counts a node unhealthy, and moves its items away, once it has
    /// not acknowledged the leader for this long (`BRAFT_DISTRIBUTE_GRACE`).
    pub distribute_grace_ms: u64,
    /// The most voters autopilot keeps; an odd number (`BRAFT_MAX_VOTERS`).
    pub max_voters: usize,
    /// A node that has not acknowledged the leader for this long is removed
    /// (`BRAFT_DEAD_NODE_TIMEOUT`).
    pub dead_node_timeout_ms: u64,
    /// Dead voters are never removed below this many voters (`BRAFT_MIN_QUORUM`).
    pub min_quorum: usize,
    /// Leave the cluster on SIGTERM (`BRAFT_LEAVE_ON_SHUTDOWN`); off by default, since
    /// rolling restarts are common.
    pub leave_on_shutdown: bool,
    /// Serve linearizable and lease reads on followers, at a read point from the leader,
    /// instead of forwarding each read (`BRAFT_FOLLOWER_READS`; default on).
    pub follower_reads: bool,
    /// A deliberate bug, for tests of the correctness tooling only: serve "linearizable"
    /// and lease reads from local state without confirming leadership. The checkers must
    /// catch it; never set it anywhere else.
    #[doc(hidden)]
    pub fault_stale_reads: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            discovery: Discovery::Static(Vec::new()),
            ip: None,
            interface: None,
            rport: DEFAULT_RPORT,
            hport: None,
            dport: None,
            grpc_reflection: true,
            metrics: true,
            data_dir: None,
            node_id: None,
            bootstrap_expect: None,
            snapshot_logs: 100_000,
            snapshot_log_bytes: 256 << 20,
            heartbeat_ms: 100,
            election_timeout_ms: 300,
            request_timeout_ms: 5_000,
            max_value_bytes: 1 << 20,
            watch_history: 100_000,
            watch_history_bytes: 64 << 20,
            sleep_ms: 0,
            codec: Codec::MsgPack,
            log_engine: crate::store::LogEngine::default(),
            cluster_token: None,
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            peer_cert_file: None,
            peer_key_file: None,
            peer_ca_file: None,
            auth_file: None,
            metrics_auth: false,
            max_connections: 10_000,
            max_requests: 4_096,
            max_watchers: 10_000,
            max_header_bytes: 64 << 10,
            header_timeout_ms: 10_000,
            max_streams: 256,
            mdns_service: "_braft._tcp".into(),
            k8s_namespace: None,
            k8s_labels: "app=braft".into(),
            k8s_port_name: None,
            k8s_sleep_ms: 0,
            k8s_api: None,
            dns_server: None,
            max_trailing_logs: 250,
            stabilization_ms: 10_000,
            distribute_grace_ms: 10_000,
            max_voters: 5,
            dead_node_timeout_ms: 60_000,
            min_quorum: 3,
            leave_on_shutdown: false,
            follower_reads: true,
            fault_stale_reads: false,
        }
    }
}

/// One configurable setting: its names everywhere, and how to apply a raw string.
pub struct Setting {
    /// The TOML key and the flag name (`--<flag>` with `_` as `-`).
    pub key: &'static str,
    /// The environment variable.
    pub env: &'static str,
    /// braft's short alias, if it has one.
    pub alias: Option<&'static str>,
    /// One line of help.
    pub help: &'static str,
    apply: fn(&mut Config, &str) -> Result<(), String>,
}

impl Setting {
    /// Applies a raw value, naming this setting in the error.
    pub fn apply(&self, cfg: &mut Config, raw: &str, source: &str) -> Result<(), ConfigError> {
        (self.apply)(cfg, raw).map_err(|p| ConfigError::new(source, p))
    }
}

/// Every setting braft reads. The first eight are braft's own names.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "discovery",
        env: "BRAFT_DISCOVERY",
        alias: Some("BDI"),
        help: "peer discovery: static:host:port,... | mdns[:service] | k8s | dns:name[:port]",
        apply: |c, v| {
            c.discovery = Discovery::parse(v)?;
            Ok(())
        },
    },
    Setting {
        key: "ip",
        env: "BRAFT_IP",
        alias: Some("BIP"),
        help: "address to advertise (default: first non-loopback IPv4)",
        apply: |c, v| {
            c.ip = Some(v.trim().parse().map_err(|_| format!("'{v}' is not an IP address"))?);
            Ok(())
        },
    },
    Setting {
        key: "if",
        env: "BRAFT_IF",
        alias: Some("BIF"),
        help: "network interface to take the advertised address from",
        apply: |c, v| {
            c.interface = Some(v.trim().to_string()).filter(|s| !s.is_empty());
            Ok(())
        },
    },
    Setting {
        key: "rport",
        env: "BRAFT_RPORT",
        alias: Some("BRP"),
        help: "Raft and gRPC port (default 15000)",
        apply: |c, v| {
            c.rport = parse_port(v)?;
            Ok(())
        },
    },
    Setting {
        key: "hport",
        env: "BRAFT_HPORT",
        alias: Some("BHP"),
        help: "HTTP port (default RPORT+2)",
        apply: |c, v| {
            c.hport = Some(parse_port(v)?);
            Ok(())
        },
    },
    Setting {
        key: "dport",
        env: "BRAFT_DPORT",
        alias: Some("BDP"),
        help: "braft's gossip port; accepted for compatibility, unused",
        apply: |c, v| {
            c.dport = Some(parse_port(v)?);
            Ok(())
        },
    },
    Setting {
        key: "disable_grpc_reflection",
        env: "DISABLE_GRPC_REFLECTION",
        alias: Some("DGR"),
        help: "turn gRPC server reflection off",
        apply: |c, v| {
            c.grpc_reflection = !parse_bool(v)?;
            Ok(())
        },
    },
    Setting {
        key: "metrics",
        env: "BRAFT_METRICS",
        alias: None,
        help: "record and serve Prometheus metrics at /metrics (default true)",
        apply: |c, v| {
            c.metrics = parse_bool(v)?;
            Ok(())
        },
    },
    Setting {
        key: "sleep",
        env: "BRAFT_SLEEP",
        alias: None,
        help: "random start-up delay up to this long, e.g. 2s (default none)",
        apply: |c, v| {
            c.sleep_ms = parse_duration(v)?.as_millis() as u64;
            Ok(())
        },
    },
    Setting {
        key: "data_dir",
        env: "BRAFT_DATA_DIR",
        alias: None,
        help: "data directory (default ./braft-data/<rport>)",
        apply: |c, v| {
            if v.trim().is_empty() {
                return Err("must not be empty".into());
            }
            c.data_dir = Some(PathBuf::from(v.trim()));
            Ok(())
        },
    },
    Setting {
        key: "node_id",
        env: "BRAFT_NODE_ID",
        alias: None,
        help: "fixed node id, a positive integer (default: generated once, then kept)",
        apply: |c, v| {
            c.node_id = Some(parse_num(v, "a positive integer")?);
            Ok(())
        },
    },
    Setting {
        key: "bootstrap_expect",
        env: "BRAFT_BOOTSTRAP_EXPECT",
        alias: None,
        help: "fresh nodes that must meet before the cluster forms (default: static list length, else 3)",
        apply: |c, v| {
            c.bootstrap_expect = Some(parse_num(v, "a positive integer")?);
            Ok(())
        },
    },
    Setting {
        key: "snapshot_logs",
        env: "BRAFT_SNAPSHOT_LOGS",
        alias: None,
        help: "snapshot and purge the log every this many entries (default 100000)",
        apply: |c, v| {
            c.snapshot_logs = parse_num(v, "a positive integer")?;
            Ok(())
        },
    },
    Setting {
        key: "snapshot_log_bytes",
        env: "BRAFT_SNAPSHOT_LOG_BYTES",
        alias: None,
        help: "...or once the entries since the last snapshot hold this many payload bytes (default 268435456)",
        apply: |c, v| {
            c.snapshot_log_bytes = parse_num(v, "a number of bytes")?;
            Ok(())
        },
    },
    Setting {
        key: "heartbeat_ms",
        env: "BRAFT_HEARTBEAT_MS",
        alias: None,
        help: "leader heartbeat interval in ms (default 100)",
        apply: |c, v| {
            c.heartbeat_ms = parse_num(v, "a number of milliseconds")?;
            Ok(())
        },
    },
    Setting {
        key: "election_timeout_ms",
        env: "BRAFT_ELECTION_TIMEOUT_MS",
        alias: None,
        help: "minimum election timeout in ms; the maximum (and leader lease) is 1.2x it (default 300)",
        apply: |c, v| {
            c.election_timeout_ms = parse_num(v, "a number of milliseconds")?;
            Ok(())
        },
    },
    Setting {
        key: "request_timeout_ms",
        env: "BRAFT_REQUEST_TIMEOUT_MS",
        alias: None,
        help: "how long a request may wait for a leader or quorum, in ms (default 5000)",
        apply: |c, v| {
            c.request_timeout_ms = parse_num(v, "a number of milliseconds")?;
            Ok(())
        },
    },
    Setting {
        key: "max_value_bytes",
        env: "BRAFT_MAX_VALUE_BYTES",
        alias: None,
        help: "largest accepted value in bytes (default 1048576)",
        apply: |c, v| {
            c.max_value_bytes = parse_num(v, "a number of bytes")?;
            Ok(())
        },
    },
    Setting {
        key: "watch_history",
        env: "BRAFT_WATCH_HISTORY",
        alias: None,
        help: "watch events kept in memory for resuming watchers (default 100000)",
        apply: |c, v| {
            c.watch_history = parse_num(v, "a positive integer")?;
            Ok(())
        },
    },
    Setting {
        key: "watch_history_bytes",
        env: "BRAFT_WATCH_HISTORY_BYTES",
        alias: None,
        help: "the most bytes of keys and values those events may hold (default 67108864)",
        apply: |c, v| {
            c.watch_history_bytes = parse_num(v, "a number of bytes")?;
            Ok(())
        },
    },
    Setting {
        key: "cluster_token",
        env: "BRAFT_CLUSTER_TOKEN",
        alias: None,
        help: "shared secret every peer RPC must carry (default: none, peer RPCs open)",
        apply: |c, v| {
            crate::auth::ClusterToken::new(Some(v.trim()))?;
            c.cluster_token = Some(v.trim().to_string()).filter(|t| !t.is_empty());
            Ok(())
        },
    },
    Setting {
        key: "cert_file",
        env: "BRAFT_CERT_FILE",
        alias: None,
        help: "PEM certificate for HTTP and client gRPC on HPORT; turns TLS on (default: none, plaintext)",
        apply: |c, v| {
            c.cert_file = path_setting(v);
            Ok(())
        },
    },
    Setting {
        key: "key_file",
        env: "BRAFT_KEY_FILE",
        alias: None,
        help: "PEM private key of BRAFT_CERT_FILE",
        apply: |c, v| {
            c.key_file = path_setting(v);
            Ok(())
        },
    },
    Setting {
        key: "client_ca_file",
        env: "BRAFT_CLIENT_CA_FILE",
        alias: None,
        help: "PEM CA that client certificates must chain to; set, clients without one are refused",
        apply: |c, v| {
            c.client_ca_file = path_setting(v);
            Ok(())
        },
    },
    Setting {
        key: "peer_cert_file",
        env: "BRAFT_PEER_CERT_FILE",
        alias: None,
        help: "PEM certificate for peer traffic on RPORT, always mutual (default: BRAFT_CERT_FILE)",
        apply: |c, v| {
            c.peer_cert_file = path_setting(v);
            Ok(())
        },
    },
    Setting {
        key: "peer_key_file",
        env: "BRAFT_PEER_KEY_FILE",
        alias: None,
        help: "PEM private key of the peer certificate (default: BRAFT_KEY_FILE)",
        apply: |c, v| {
            c.peer_key_file = path_setting(v);
            Ok(())
        },
    },
    Setting {
        key: "peer_ca_file",
        env: "BRAFT_PEER_CA_FILE",
        alias: None,
        help: "PEM CA that peers' certificates must chain to (default: BRAFT_CLIENT_CA_FILE)",
        apply: |c, v| {
            c.peer_ca_file = path_setting(v);
            Ok(())
        },
    },
    Setting {
        key: "auth_file",
        env: "BRAFT_AUTH_FILE",
        alias: None,
        help: "TOML file of client tokens with roles (read, write, admin); re-read on change (default: none, the client API is open)",
        apply: |c, v| {
            c.auth_file = path_setting(v);
            Ok(())
        },
    },
    Setting {
        key: "metrics_auth",
        env: "BRAFT_METRICS_AUTH",
        alias: None,
        help: "require a read token for /metrics too (default false)",
        apply: |c, v| {
            c.metrics_auth = parse_bool(v)?;
            Ok(())
        },
    },
    Setting {
        key: "max_connections",
        env: "BRAFT_MAX_CONNECTIONS",
        alias: None,
        help: "open connections per port; at the limit the node stops accepting until one closes (default 10000)",
        apply: |c, v| {
            c.max_connections = parse_num(v, "a number of connections")?;
            Ok(())
        },
    },
    Setting {
        key: "max_requests",
        env: "BRAFT_MAX_REQUESTS",
        alias: None,
        help: "requests in flight on HPORT, watches and probes apart; past it 503 with Retry-After (default 4096)",
        apply: |c, v| {
            c.max_requests = parse_num(v, "a number of requests")?;
            Ok(())
        },
    },
    Setting {
        key: "max_watchers",
        env: "BRAFT_MAX_WATCHERS",
        alias: None,
        help: "open watches per node; past it 503 / RESOURCE_EXHAUSTED (default 10000)",
        apply: |c, v| {
            c.max_watchers = parse_num(v, "a number of watchers")?;
            Ok(())
        },
    },
    Setting {
        key: "max_header_bytes",
        env: "BRAFT_MAX_HEADER_BYTES",
        alias: None,
        help: "the largest request head (HTTP/1 headers, HTTP/2 header list) (default 65536)",
        apply: |c, v| {
            c.max_header_bytes = parse_num(v, "a number of bytes")?;
            Ok(())
        },
    },
    Setting {
        key: "header_timeout",
        env: "BRAFT_HEADER_TIMEOUT",
        alias: None,
        help: "how long a client may take to send a request's headers, against slow loris (default 10s)",
        apply: |c, v| {
            c.header_timeout_ms = parse_duration(v)?.as_millis() as u64;
            Ok(())
        },
    },
    Setting {
        key: "max_streams",
        env: "BRAFT_MAX_STREAMS",
        alias: None,
        help: "concurrent HTTP/2 streams per connection, both ports (default 256)",
        apply: |c, v| {
            c.max_streams = parse_num(v, "a number of streams")?;
            Ok(())
        },
    },
    Setting {
        key: "mdns_service",
        env: "MDNS_SERVICE",
        alias: Some("MDS"),
        help: "mDNS service type to advertise and browse (default _braft._tcp)",
        apply: |c, v| {
            check_mdns_service(v.trim())?;
            c.mdns_service = v.trim().to_string();
            Ok(())
        },
    },
    Setting {
        key: "k8s_namespace",
        env: "K8S_NAMESPACE",
        alias: Some("K8N"),
        help: "Kubernetes namespace to list pods in (default: the pod's own)",
        apply: |c, v| {
            c.k8s_namespace = Some(v.trim().to_string()).filter(|s| !s.is_empty());
            Ok(())
        },
    },
    Setting {
        key: "k8s_labels",
        env: "K8S_LABELS",
        alias: Some("K8L"),
        help: "label selector of the braft pods, e.g. app=braft (default app=braft)",
        apply: |c, v| {
            if v.trim().is_empty() {
                return Err("must not be empty: it selects the braft pods".into());
            }
            c.k8s_labels = v.trim().to_string();
            Ok(())
        },
    },
    Setting {
        key: "k8s_portname",
        env: "K8S_PORTNAME",
        alias: Some("K8P"),
        help: "name of the container port peers listen on (default: BRAFT_RPORT)",
        apply: |c, v| {
            c.k8s_port_name = Some(v.trim().to_string()).filter(|s| !s.is_empty());
            Ok(())
        },
    },
    Setting {
        key: "k8s_sleep",
        env: "K8S_SLEEP",
        alias: None,
        help: "wait this long before first listing pods, e.g. 5s (default none)",
        apply: |c, v| {
            c.k8s_sleep_ms = parse_duration(v)?.as_millis() as u64;
            Ok(())
        },
    },
    Setting {
        key: "k8s_api",
        env: "BRAFT_K8S_API",
        alias: None,
        help: "Kubernetes API URL (default: in-cluster https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)",
        apply: |c, v| {
            let v = v.trim().trim_end_matches('/');
            if !(v.starts_with("https://") || v.starts_with("http://")) {
                return Err(format!("'{v}' is not an http(s) URL"));
            }
            c.k8s_api = Some(v.to_string());
            Ok(())
        },
    },
    Setting {
        key: "dns_server",
        env: "BRAFT_DNS_SERVER",
        alias: None,
        help: "DNS server for dns: discovery, ip:port (default: the system resolver)",
        apply: |c, v| {
            c.dns_server = Some(v.trim().parse().map_err(|_| format!("'{v}' is not ip:port"))?);
            Ok(())
        },
    },
    Setting {
        key: "max_trailing_logs",
        env: "BRAFT_MAX_TRAILING_LOGS",
        alias: None,
        help: "promote a learner only within this many entries of the leader (default 250)",
        apply: |c, v| {
            c.max_trailing_logs = parse_num(v, "a number of entries")?;
            Ok(())
        },
    },
    Setting {
        key: "distribute_grace",
        env: "BRAFT_DISTRIBUTE_GRACE",
        alias: None,
        help: "the work distributor moves a node's items away after it is silent this long (default 10s)",
        apply: |c, v| {
            c.distribute_grace_ms = parse_duration(v)?.as_millis() as u64;
            Ok(())
        },
    },
    Setting {
        key: "stabilization",
        env: "BRAFT_STABILIZATION",
        alias: None,
        help: "promote a learner only after it has been healthy this long (default 10s)",
        apply: |c, v| {
            c.stabilization_ms = parse_duration(v)?.as_millis() as u64;
            Ok(())
        },
    },
    Setting {
        key: "max_voters",
        env: "BRAFT_MAX_VOTERS",
        alias: None,
        help: "most voters kept; extra nodes stay learners; odd (default 5)",
        apply: |c, v| {
            c.max_voters = parse_num(v, "an odd positive integer")?;
            Ok(())
        },
    },
    Setting {
        key: "dead_node_timeout",
        env: "BRAFT_DEAD_NODE_TIMEOUT",
        alias: None,
        help: "remove a node silent for this long (default 60s; 0 turns removal off)",
        apply: |c, v| {
            c.dead_node_timeout_ms = parse_duration(v)?.as_millis() as u64;
            Ok(())
        },
    },
    Setting {
        key: "min_quorum",
        env: "BRAFT_MIN_QUORUM",
        alias: None,
        help: "never remove dead voters below this many voters (default 3)",
        apply: |c, v| {
            c.min_quorum = parse_num(v, "a positive integer")?;
            Ok(())
        },
    },
    Setting {
        key: "leave_on_shutdown",
        env: "BRAFT_LEAVE_ON_SHUTDOWN",
        alias: None,
        help: "leave the cluster on SIGTERM, handing over leadership first (default off)",
        apply: |c, v| {
            c.leave_on_shutdown = parse_bool(v)?;
            Ok(())
        },
    },
    Setting {
        key: "follower_reads",
        env: "BRAFT_FOLLOWER_READS",
        alias: None,
        help: "followers serve linearizable and lease reads at a read point from the leader, rather than forward each (default true)",
        apply: |c, v| {
            c.follower_reads = parse_bool(v)?;
            Ok(())
        },
    },
    Setting {
        key: "codec",
        env: "BRAFT_CODEC",
        alias: None,
        help: "log entry encoding: msgpack (default) or json",
        apply: |c, v| {
            c.codec = v.parse()?;
            Ok(())
        },
    },
    Setting {
        key: "log_engine",
        env: "BRAFT_LOG_ENGINE",
        alias: None,
        help: "the log on disk for a new data directory: wal (default) or redb; an existing log keeps its own",
        apply: |c, v| {
            c.log_engine = v.parse()?;
            Ok(())
        },
    },
];

impl Config {
    /// Defaults, then the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut c = Config::default();
        c.apply_env(&|k| std::env::var(k).ok())?;
        Ok(c)
    }

    /// Applies every setting found through `lookup` (an environment). The long name wins
    /// over braft's alias when both are set.
    pub fn apply_env(&mut self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        for s in SETTINGS {
            if let Some(v) = lookup(s.env) {
                s.apply(self, &v, s.env)?;
            } else if let Some(alias) = s.alias {
                if let Some(v) = lookup(alias) {
                    s.apply(self, &v, alias)?;
                }
            }
        }
        // The correctness tools' deliberate bug, for the chaos harness's binaries. Not a
        // setting: no flag, no help, no TOML key.
        if let Some(v) = lookup("BRAFT_FAULT_STALE_READS") {
            self.fault_stale_reads = parse_bool(&v).map_err(|p| ConfigError::new("BRAFT_FAULT_STALE_READS", p))?;
        }
        Ok(())
    }

    /// Applies a TOML document whose keys are the settings' keys (`rport = 15000`).
    pub fn apply_toml(&mut self, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::new("config file", e.message().to_string()))?;
        for (key, value) in &table {
            let s = SETTINGS
                .iter()
                .find(|s| s.key == key)
                .ok_or_else(|| ConfigError::new(key, "unknown setting in config file"))?;
            let raw = match value {
                toml::Value::String(v) => v.clone(),
                toml::Value::Integer(v) => v.to_string(),
                toml::Value::Boolean(v) => v.to_string(),
                toml::Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map(str::to_string).unwrap_or_else(|| i.to_string()))
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            s.apply(self, &raw, key)?;
        }
        Ok(())
    }

    /// Checks every setting and the relations between them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let peers = self.static_peers();
        if let Some(h) = self.hport {
            if h == self.rport {
                return Err(ConfigError::new("BRAFT_HPORT", "must differ from BRAFT_RPORT"));
            }
        }
        if self.node_id == Some(0) {
            return Err(ConfigError::new("BRAFT_NODE_ID", "must be a positive integer"));
        }
        match self.bootstrap_expect {
            Some(0) => {
                return Err(ConfigError::new("BRAFT_BOOTSTRAP_EXPECT", "must be at least 1"));
            }
            Some(n) if !peers.is_empty() && n > peers.len() => {
                return Err(ConfigError::new(
                    "BRAFT_BOOTSTRAP_EXPECT",
                    format!("{n} exceeds the {} peers in BRAFT_DISCOVERY", peers.len()),
                ));
            }
            // Two groups of a majority each always share a node; smaller groups could
            // each form a cluster of their own.
            Some(n) if !peers.is_empty() && n * 2 <= peers.len() => {
                return Err(ConfigError::new(
                    "BRAFT_BOOTSTRAP_EXPECT",
                    format!("{n} must be a majority of the {} peers in BRAFT_DISCOVERY", peers.len()),
                ));
            }
            _ => {}
        }
        if self.snapshot_logs == 0 {
            return Err(ConfigError::new("BRAFT_SNAPSHOT_LOGS", "must be at least 1"));
        }
        if self.snapshot_log_bytes < 4096 {
            return Err(ConfigError::new("BRAFT_SNAPSHOT_LOG_BYTES", "must be at least 4096"));
        }
        if !(10..=60_000).contains(&self.heartbeat_ms) {
            return Err(ConfigError::new("BRAFT_HEARTBEAT_MS", "allowed: 10..60000"));
        }
        if self.election_timeout_ms < 3 * self.heartbeat_ms || self.election_timeout_ms > 600_000 {
            return Err(ConfigError::new(
                "BRAFT_ELECTION_TIMEOUT_MS",
                format!(
                    "{} must be at least 3x BRAFT_HEARTBEAT_MS ({}) and at most 600000",
                    self.election_timeout_ms, self.heartbeat_ms
                ),
            ));
        }
        if !(100..=3_600_000).contains(&self.request_timeout_ms) {
            return Err(ConfigError::new("BRAFT_REQUEST_TIMEOUT_MS", "allowed: 100..3600000"));
        }
        if !(1..=(32 << 20)).contains(&self.max_value_bytes) {
            return Err(ConfigError::new("BRAFT_MAX_VALUE_BYTES", "allowed: 1..33554432"));
        }
        if !(1..=100_000_000).contains(&self.watch_history) {
            return Err(ConfigError::new("BRAFT_WATCH_HISTORY", "allowed: 1..100000000"));
        }
        if self.watch_history_bytes < self.max_value_bytes + crate::kv::MAX_KEY_BYTES {
            return Err(ConfigError::new(
                "BRAFT_WATCH_HISTORY_BYTES",
                format!(
                    "{} must hold at least one event of the largest size (BRAFT_MAX_VALUE_BYTES + 4096 = {})",
                    self.watch_history_bytes,
                    self.max_value_bytes + crate::kv::MAX_KEY_BYTES
                ),
            ));
        }
        if self.max_voters == 0 || self.max_voters % 2 == 0 {
            return Err(ConfigError::new(
                "BRAFT_MAX_VOTERS",
                format!(
                    "{} must be odd (1, 3, 5, 7, ...): an even count adds no fault tolerance",
                    self.max_voters
                ),
            ));
        }
        if self.min_quorum == 0 || self.min_quorum > self.max_voters {
            return Err(ConfigError::new(
                "BRAFT_MIN_QUORUM",
                format!(
                    "{} must be between 1 and BRAFT_MAX_VOTERS ({})",
                    self.min_quorum, self.max_voters
                ),
            ));
        }
        let lease = self.election_timeout_max_ms();
        if self.dead_node_timeout_ms != 0 && self.dead_node_timeout_ms < 2 * lease {
            return Err(ConfigError::new(
                "BRAFT_DEAD_NODE_TIMEOUT",
                format!(
                    "{} ms is too short: at least twice the maximum election timeout ({} ms), or 0 for never",
                    self.dead_node_timeout_ms,
                    2 * lease
                ),
            ));
        }
        if self.distribute_grace_ms < self.election_timeout_ms || self.distribute_grace_ms > 3_600_000 {
            return Err(ConfigError::new(
                "BRAFT_DISTRIBUTE_GRACE",
                format!(
                    "{} ms must be at least BRAFT_ELECTION_TIMEOUT_MS ({}) and at most 1h",
                    self.distribute_grace_ms, self.election_timeout_ms
                ),
            ));
        }
        if self.stabilization_ms > 3_600_000 {
            return Err(ConfigError::new("BRAFT_STABILIZATION", "allowed: at most 1h"));
        }
        if self.k8s_sleep_ms > 3_600_000 {
            return Err(ConfigError::new("K8S_SLEEP", "allowed: at most 1h"));
        }
        if self.sleep_ms > 3_600_000 {
            return Err(ConfigError::new("BRAFT_SLEEP", "allowed: at most 1h"));
        }
        self.validate_tls()
    }

    /// Which TLS files go together. Whether they load is checked when the node starts
    /// ([`crate::tls::Planes::from_config`]).
    fn validate_tls(&self) -> Result<(), ConfigError> {
        let pairs = [
            ("BRAFT_CERT_FILE", &self.cert_file, "BRAFT_KEY_FILE", &self.key_file),
            (
                "BRAFT_PEER_CERT_FILE",
                &self.peer_cert_file,
                "BRAFT_PEER_KEY_FILE",
                &self.peer_key_file,
            ),
        ];
        for (a, x, b, y) in pairs {
            match (x, y) {
                (Some(_), None) => return Err(ConfigError::new(b, format!("must be set with {a}"))),
                (None, Some(_)) => return Err(ConfigError::new(a, format!("must be set with {b}"))),
                _ => {}
            }
        }
        let limits: [(&str, u64, u64, u64); 6] = [
            ("BRAFT_MAX_CONNECTIONS", self.max_connections as u64, 16, 1_000_000),
            ("BRAFT_MAX_REQUESTS", self.max_requests as u64, 1, 1_000_000),
            ("BRAFT_MAX_WATCHERS", self.max_watchers as u64, 1, 1_000_000),
            ("BRAFT_MAX_HEADER_BYTES", self.max_header_bytes as u64, 8192, 16 << 20),
            ("BRAFT_HEADER_TIMEOUT", self.header_timeout_ms, 100, 600_000),
            ("BRAFT_MAX_STREAMS", self.max_streams as u64, 1, 100_000),
        ];
        for (setting, v, lo, hi) in limits {
            if !(lo..=hi).contains(&v) {
                return Err(ConfigError::new(setting, format!("{v}: allowed {lo}..{hi}")));
            }
        }
        if self.metrics_auth && self.auth_file.is_none() {
            return Err(ConfigError::new(
                "BRAFT_METRICS_AUTH",
                "needs BRAFT_AUTH_FILE (the tokens to check)",
            ));
        }
        if self.client_ca_file.is_some() && self.cert_file.is_none() {
            return Err(ConfigError::new(
                "BRAFT_CLIENT_CA_FILE",
                "needs BRAFT_CERT_FILE and BRAFT_KEY_FILE: client certificates are checked only over TLS",
            ));
        }
        if self.peer_cert_file.is_some() && self.peer_ca_file.is_none() && self.client_ca_file.is_none() {
            return Err(ConfigError::new(
                "BRAFT_PEER_CA_FILE",
                "peer TLS is always mutual: set the CA that peers' certificates chain to",
            ));
        }
        if self.peer_ca_file.is_some() && self.peer_cert_file.is_none() && self.cert_file.is_none() {
            return Err(ConfigError::new(
                "BRAFT_PEER_CERT_FILE",
                "must be set (or BRAFT_CERT_FILE) with BRAFT_PEER_CA_FILE",
            ));
        }
        Ok(())
    }

    /// The static peer list with host-less entries (braft's `:15000`) given this node's
    /// advertised address, as braft does.
    pub fn resolved_static_peers(&self) -> Vec<String> {
        let ip = self.advertised_ip();
        self.static_peers()
            .iter()
            .map(
                |p| match p.strip_prefix(':').and_then(|port| port.parse::<u16>().ok()) {
                    Some(port) => std::net::SocketAddr::new(ip, port).to_string(),
                    None => p.clone(),
                },
            )
            .collect()
    }

    /// The static peer list (empty for the other discovery methods).
    pub fn static_peers(&self) -> &[String] {
        match &self.discovery {
            Discovery::Static(p) => p,
            _ => &[],
        }
    }

    /// How many fresh nodes must meet before one forms the cluster: the setting, else
    /// the static list's length (at least 1), else 3.
    pub fn expected_bootstrap(&self) -> usize {
        match (&self.discovery, self.bootstrap_expect) {
            (_, Some(n)) => n,
            (Discovery::Static(p), None) => p.len().max(1),
            (_, None) => 3,
        }
    }

    /// The mDNS service type in use: the one in `mdns:<service>`, else `MDNS_SERVICE`.
    pub fn mdns_service_type(&self) -> &str {
        match &self.discovery {
            Discovery::Mdns(Some(s)) => s,
            _ => &self.mdns_service,
        }
    }

    /// The discovery method in braft's URL-like form, shown in `GET /raft`.
    pub fn describe_discovery(&self) -> String {
        match &self.discovery {
            Discovery::Static(peers) => format!("static://{}", peers.join(",")),
            Discovery::Mdns(_) => format!("mdns://{}", self.mdns_service_type()),
            Discovery::K8s => format!(
                "k8s://ns={}/labels={}/portName={}",
                self.k8s_namespace.as_deref().unwrap_or(""),
                self.k8s_labels,
                self.k8s_port_name.clone().unwrap_or_else(|| self.rport.to_string())
            ),
            Discovery::Dns { name, port } => format!("dns://{name}:{}", port.unwrap_or(self.rport)),
        }
    }

    /// The election timeout range's maximum, which is also the leader lease: 1.2x the
    /// minimum. openraft lets a follower campaign only once the lease of the leader it
    /// last heard has run out *and* its own random timeout has passed after that, so
    /// failover takes max + rand[min, max). A narrow range keeps that short (median
    /// failover at 300 ms: 0.81 s with 1.5x, 0.70 s with 1.2x; docs/benchmarks.md); a
    /// split vote is still unlikely, since each campaign draws a fresh timeout and
    /// pre-vote keeps a lone follower from disturbing a live leader.
    pub fn election_timeout_max(&self) -> Duration {
        Duration::from_millis(self.election_timeout_max_ms())
    }

    /// `election_timeout_max` in milliseconds, as openraft's config takes it.
    pub fn election_timeout_max_ms(&self) -> u64 {
        self.election_timeout_ms + self.election_timeout_ms / 5
    }

    /// The HTTP port: `hport`, or `rport + 2`.
    pub fn http_port(&self) -> u16 {
        self.hport.unwrap_or(self.rport.wrapping_add(2))
    }

    /// The advertised IP: `ip`, else the first non-loopback IPv4 (of `interface` if set),
    /// else 127.0.0.1.
    pub fn advertised_ip(&self) -> IpAddr {
        if let Some(ip) = self.ip {
            return ip;
        }
        let ifaces = if_addrs::get_if_addrs().unwrap_or_default();
        ifaces
            .iter()
            .filter(|i| self.interface.as_deref().is_none_or(|n| i.name == n))
            .filter(|i| !i.is_loopback())
            .map(|i| i.ip())
            .find(|ip| ip.is_ipv4())
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// The data directory: `data_dir`, or `./braft-data/<rport>`.
    /// `https` when HPORT speaks TLS, else `http`: for URLs that point at a node.
    pub fn http_scheme(&self) -> &'static str {
        if self.cert_file.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("braft-data").join(self.rport.to_string()))
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    /// braft's short aliases work, and the long name wins when both are set.
    #[test]
    fn aliases_and_precedence() {
        let mut c = Config::default();
        c.apply_env(&env(&[("BRP", "16000"), ("BHP", "16002"), ("BRAFT_HPORT", "17002")]))
            .unwrap();
        assert_eq!(c.rport, 16000);
        assert_eq!(c.http_port(), 17002);
        c.apply_env(&env(&[("DGR", "1")])).unwrap();
        assert!(!c.grpc_reflection);
    }

    /// A static list accepts braft's forms, and a missing port means 15000.
    #[test]
    fn static_discovery_forms() {
        let d = Discovery::parse("static:10.0.0.1:16000,10.0.0.2").unwrap();
        assert_eq!(
            d,
            Discovery::Static(vec!["10.0.0.1:16000".into(), "10.0.0.2:15000".into()])
        );
        assert_eq!(
            Discovery::parse("a:1,b:2").unwrap(),
            Discovery::Static(vec!["a:1".into(), "b:2".into()])
        );
        assert_eq!(Discovery::parse("").unwrap(), Discovery::Static(vec![]));
        assert!(Discovery::parse("a:notaport").is_err());
        assert_eq!(Discovery::parse("mdns").unwrap(), Discovery::Mdns(None));
        assert_eq!(
            Discovery::parse("mdns:_kv._tcp").unwrap(),
            Discovery::Mdns(Some("_kv._tcp".into()))
        );
        assert!(Discovery::parse("mdns:printer").is_err());
        assert_eq!(Discovery::parse("k8s").unwrap(), Discovery::K8s);
        assert_eq!(
            Discovery::parse("dns:braft.default.svc:16000").unwrap(),
            Discovery::Dns {
                name: "braft.default.svc".into(),
                port: Some(16000)
            }
        );
        assert_eq!(
            Discovery::parse("dns:braft").unwrap(),
            Discovery::Dns {
                name: "braft".into(),
                port: None
            }
        );
        assert!(Discovery::parse("dns:").is_err());
    }

    /// Bad values name the variable that carried them.
    #[test]
    fn errors_name_the_variable() {
        let mut c = Config::default();
        let e = c.apply_env(&env(&[("BRP", "abc")])).unwrap_err();
        assert_eq!(e.setting, "BRP");
        assert!(e.problem.contains("1..65535"), "{e}");
        let e = c.apply_env(&env(&[("BRAFT_RPORT", "70000")])).unwrap_err();
        assert_eq!(e.setting, "BRAFT_RPORT");
        let e = c.apply_env(&env(&[("BRAFT_CODEC", "yaml")])).unwrap_err();
        assert_eq!(e.setting, "BRAFT_CODEC");
    }

    /// validate() rejects impossible combinations, naming the setting.
    #[test]
    fn validate_checks_relations() {
        assert!(Config::default().validate().is_ok());
        let bad = |f: fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            c.validate().unwrap_err().setting
        };
        assert_eq!(bad(|c| c.hport = Some(c.rport)), "BRAFT_HPORT");
        assert_eq!(
            bad(|c| c.election_timeout_ms = c.heartbeat_ms),
            "BRAFT_ELECTION_TIMEOUT_MS"
        );
        assert_eq!(bad(|c| c.snapshot_logs = 0), "BRAFT_SNAPSHOT_LOGS");
        assert_eq!(bad(|c| c.snapshot_log_bytes = 100), "BRAFT_SNAPSHOT_LOG_BYTES");
        assert_eq!(bad(|c| c.node_id = Some(0)), "BRAFT_NODE_ID");
        assert_eq!(bad(|c| c.max_value_bytes = 0), "BRAFT_MAX_VALUE_BYTES");
        assert_eq!(bad(|c| c.watch_history = 0), "BRAFT_WATCH_HISTORY");
        assert_eq!(bad(|c| c.distribute_grace_ms = 10), "BRAFT_DISTRIBUTE_GRACE");
        assert_eq!(bad(|c| c.watch_history_bytes = 1000), "BRAFT_WATCH_HISTORY_BYTES");
        assert_eq!(bad(|c| c.max_voters = 4), "BRAFT_MAX_VOTERS");
        assert_eq!(bad(|c| c.min_quorum = 7), "BRAFT_MIN_QUORUM");
        assert_eq!(bad(|c| c.dead_node_timeout_ms = 100), "BRAFT_DEAD_NODE_TIMEOUT");
        assert_eq!(
            bad(|c| {
                c.discovery = Discovery::Static(vec!["a:1".into()]);
                c.bootstrap_expect = Some(2);
            }),
            "BRAFT_BOOTSTRAP_EXPECT"
        );
        // Not a majority of four: two pairs could each bootstrap.
        assert_eq!(
            bad(|c| {
                c.discovery = Discovery::Static(vec!["a:1".into(), "b:1".into(), "c:1".into(), "d:1".into()]);
                c.bootstrap_expect = Some(2);
            }),
            "BRAFT_BOOTSTRAP_EXPECT"
        );
    }

    /// braft's describe strings, and the bootstrap default per method.
    #[test]
    fn discovery_descriptions_and_expect() {
        let mut c = Config::default();
        c.apply_env(&env(&[("BDI", "mdns"), ("MDS", "_kv._tcp")])).unwrap();
        assert_eq!(c.describe_discovery(), "mdns://_kv._tcp");
        assert_eq!(c.expected_bootstrap(), 3);
        c.apply_env(&env(&[
            ("BDI", "k8s"),
            ("K8N", "prod"),
            ("K8L", "app=kv"),
            ("K8P", "raft"),
        ]))
        .unwrap();
        assert_eq!(c.describe_discovery(), "k8s://ns=prod/labels=app=kv/portName=raft");
        c.apply_env(&env(&[("BDI", "a:1,b:1")])).unwrap();
        assert_eq!(c.describe_discovery(), "static://a:1,b:1");
        assert_eq!(c.expected_bootstrap(), 2);
    }

    /// braft's host-less entries (`BDI=:15000,:16000`) mean this node's own address.
    #[test]
    fn hostless_static_entries_mean_this_node() {
        let mut c = Config::default();
        c.apply_env(&env(&[("BDI", ":15000,:16000,10.0.0.9:15000"), ("BIP", "10.0.0.5")]))
            .unwrap();
        assert_eq!(c.static_peers(), [":15000", ":16000", "10.0.0.9:15000"]);
        assert_eq!(
            c.resolved_static_peers(),
            ["10.0.0.5:15000", "10.0.0.5:16000", "10.0.0.9:15000"]
        );
        assert!(c.apply_env(&env(&[("BDI", ":0")])).is_err());
    }

    /// A TOML file gives the same keys; unknown keys are refused.
    #[test]
    fn toml_file_layer() {
        let mut c = Config::default();
        c.apply_toml("rport = 16000\ndiscovery = [\"a:1\", \"b\"]\nsleep = \"2s\"\n")
            .unwrap();
        assert_eq!(c.rport, 16000);
        assert_eq!(c.static_peers(), ["a:1".to_string(), "b:15000".to_string()]);
        assert_eq!(c.sleep_ms, 2000);
        assert_eq!(c.apply_toml("bogus = 1").unwrap_err().setting, "bogus");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("250").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("soon").is_err());
    }
}
