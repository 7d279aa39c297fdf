//! [`Node`]: one braft cluster member — its Raft core, its services, and its gRPC and
//! HTTP servers — and [`NodeBuilder`], which starts one in about ten lines:
//!
//! ```no_run
//! # async fn run() -> Result<(), braft::Error> {
//! let node = braft::Node::builder()          // defaults from BRAFT_* env vars
//!     .service(braft::KvService::default())  // user services register the same way
//!     .start().await?;
//! node.run_until_shutdown().await?;          // serves gRPC + HTTP until SIGINT/SIGTERM
//! # Ok(()) }
//! ```
//!
//! Writes and reads may be sent to any node: a follower forwards writes to the leader over
//! gRPC, and serves linearizable reads itself once the leader has named a read point
//! (`follower_read`), retrying with backoff through elections until the request timeout.

pub mod admin;
pub mod autopilot;
mod backup;
mod compaction;
mod disk;
mod distribute;
mod follower_read;
mod formation;
pub(crate) mod forward;
pub mod hash;
mod identity;
#[cfg(test)]
mod interleavings;
mod metrics;
pub mod roles;
pub(crate) mod status;
mod watching;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// Tokio's clock, not the OS's: a simulation (or a paused test runtime) drives it.
use tokio::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use self::backup::Backup;
pub use self::forward::Consistency;
use self::forward::{ForwardReply, ForwardRequest};
pub(crate) use self::identity::{create as write_identity, new_id as new_node_id};
use crate::config::Config;
use crate::discovery::Discovery;
use crate::error::{Error, LeaderHint};
use crate::raft::consensus::{Consensus, Proposal, RaftStatus, ReadRefused};
use crate::raft::network::ChannelPool;
use crate::raft::sm::{SharedState, StateHash, StateMachine};
use crate::raft::{wire, NodeId, Peer, Request, Response};
use crate::service::{Registry, Service, ServiceError};
use crate::store::{FileSnapshotStore, LogEngine, LogStore, SnapshotStore};

/// Backoff between retries of a request that found no usable leader.
const RETRY_MIN: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_millis(50);

/// Configures and starts a [`Node`].
pub struct NodeBuilder {
    config: Result<Config, crate::config::ConfigError>,
    registry: Registry,
    duplicate_service: Option<&'static str>,
    rpc_listener: Option<crate::transport::Listen>,
    http_listener: Option<crate::transport::Listen>,
    dialer: Option<Arc<dyn crate::transport::Dialer>>,
    log_store: Option<Arc<dyn LogStore>>,
    snapshot_store: Option<Arc<dyn SnapshotStore>>,
    grpc_routes: tonic::service::Routes,
    http_routes: axum::Router,
    discovery: Option<Arc<dyn Discovery>>,
    role_hooks: Vec<roles::RoleHook>,
    biz_data: Option<status::BizData>,
    serializer: Option<Arc<dyn crate::codec::Serializer>>,
    /// The names of the user's gRPC services, checked against braft's own at start.
    grpc_names: Vec<&'static str>,
}

impl NodeBuilder {
    /// Replaces the whole configuration (the environment defaults are discarded).
    pub fn config(mut self, config: Config) -> Self {
        self.config = Ok(config);
        self
    }

    /// Adjusts the configuration in place.
    pub fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        if let Ok(c) = &mut self.config {
            f(c);
        }
        self
    }

    /// Registers a service (a state machine). Every node of a cluster must register the
    /// same services.
    pub fn service<S: Service>(mut self, service: S) -> Self {
        if !self.registry.register(service) {
            self.duplicate_service = Some(S::NAME);
        }
        self
    }

    /// Serves Raft and gRPC on this listener instead of binding `rport`.
    pub fn rpc_listener(mut self, l: TcpListener) -> Self {
        self.rpc_listener = Some(crate::transport::Listen::Tcp(l));
        self
    }

    /// Serves HTTP on this listener instead of binding `hport`.
    pub fn http_listener(mut self, l: TcpListener) -> Self {
        self.http_listener = Some(crate::transport::Listen::Tcp(l));
        self
    }

    /// Serves Raft and gRPC on connections from `incoming`, advertising `addr` to peers
    /// (a simulated network; see [`crate::transport`]).
    pub fn rpc_incoming(mut self, incoming: crate::transport::Incoming, addr: SocketAddr) -> Self {
        self.rpc_listener = Some(crate::transport::Listen::Custom(crate::transport::IncomingListener {
            incoming,
            addr,
        }));
        self
    }

    /// Serves HTTP on connections from `incoming`, advertising `addr`.
    pub fn http_incoming(mut self, incoming: crate::transport::Incoming, addr: SocketAddr) -> Self {
        self.http_listener = Some(crate::transport::Listen::Custom(crate::transport::IncomingListener {
            incoming,
            addr,
        }));
        self
    }

    /// Dials peers with `dialer` instead of the OS's TCP.
    pub fn dialer(mut self, dialer: impl crate::transport::Dialer) -> Self {
        self.dialer = Some(Arc::new(dialer));
        self
    }

    /// Finds peers with this discovery instead of the one `BRAFT_DISCOVERY` names.
    pub fn discovery(mut self, d: impl Discovery) -> Self {
        self.discovery = Some(Arc::new(d));
        self
    }

    /// Uses this log store instead of the redb file in the data directory.
    pub fn log_store(mut self, store: Arc<dyn LogStore>) -> Self {
        self.log_store = Some(store);
        self
    }

    /// Uses this snapshot store instead of files in the data directory.
    pub fn snapshot_store(mut self, store: Arc<dyn SnapshotStore>) -> Self {
        self.snapshot_store = Some(store);
        self
    }

    /// Adds your own tonic service, served on RPORT beside braft's.
    pub fn grpc_service<S>(mut self, svc: S) -> Self
    where
        S: tonic::codegen::Service<tonic::codegen::http::Request<tonic::body::Body>, Error = std::convert::Infallible>
            + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.grpc_names.push(S::NAME);
        self.grpc_routes = self.grpc_routes.add_service(svc);
        self
    }

    /// Calls `f` with this node's new role whenever it starts or stops leading (braft's
    /// `WithLeaderChange`): [`roles::Role::Leader`] once this node leads *and* its term's
    /// first entry is committed and applied here, so work started then sees every
    /// acknowledged write; `Follower`, `Learner` or `Candidate` when it stops leading; and
    /// `Shutdown` once on stop. Calls never overlap and Leader and not-Leader alternate.
    /// Each call runs on a blocking thread (a slow or panicking hook never stalls Raft).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), braft::Error> {
    /// let node = braft::Node::builder()
    ///     .service(braft::KvService::default())
    ///     .on_leader_change(|e| println!("now {:?} in term {}", e.role, e.term))
    ///     .start().await?;
    /// # Ok(()) }
    /// ```
    pub fn on_leader_change(mut self, f: impl Fn(roles::RoleEvent) + Send + Sync + 'static) -> Self {
        self.role_hooks.push(Arc::new(f));
        self
    }

    /// Publishes `f()` as this node's business data (braft's `WithBizData`): `/raft` shows
    /// it as `nodes[].bizData`, and `GetDetails` as JSON. It is called on each request for
    /// details; a panic, or taking longer than 500 ms, shows as that node's `error`.
    pub fn biz_data(mut self, f: impl Fn() -> serde_json::Value + Send + Sync + 'static) -> Self {
        self.biz_data = Some(Arc::new(f));
        self
    }

    /// Encodes log entries with your own format instead of `BRAFT_CODEC`'s built-in one
    /// (see [`crate::codec::Serializer`]). Every node of the cluster must use the same;
    /// its name is pinned in the data directory.
    pub fn serializer(mut self, s: Arc<dyn crate::codec::Serializer>) -> Self {
        self.serializer = Some(s);
        self
    }

    /// Adds your own axum routes, served on HPORT beside braft's.
    pub fn http_routes(mut self, router: axum::Router) -> Self {
        self.http_routes = self.http_routes.merge(router);
        self
    }

    /// Opens (or creates) the data directory, starts Raft, the servers and cluster
    /// formation, and returns once the node is serving.
    /// Builds the node: storage, Raft, identity, listeners bound. Nothing is served and
    /// no background task runs yet; [`crate::server`] serves it and then calls
    /// [`Node::launch`]. `reserved` names the gRPC services the server layer serves
    /// itself, which the user's may not reuse.
    pub(crate) async fn assemble(self, reserved: fn(&Config) -> Vec<&'static str>) -> Result<Assembled, Error> {
        let config = self.config?;
        config.validate()?;
        // Before binding anything: a TLS file that does not load is a configuration
        // error (exit 2), named with its setting.
        let tls = crate::tls::Planes::from_config(&config)?;
        let access = Arc::new(match &config.auth_file {
            Some(path) => crate::access::Access::from_file(path, config.metrics_auth)?,
            None => crate::access::Access::open(),
        });
        if let Some(name) = self.duplicate_service {
            return Err(Error::BadRequest(format!("service '{name}' registered twice")));
        }
        if let Some(name) = self.grpc_names.iter().find(|n| reserved(&config).contains(n)) {
            return Err(Error::BadRequest(format!(
                "gRPC service '{name}' is one braft serves itself (turn braft's reflection off with DISABLE_GRPC_REFLECTION to serve your own)"
            )));
        }
        if config.sleep_ms > 0 {
            let ms = rand::random_range(0..config.sleep_ms);
            tracing::info!("BRAFT_SLEEP: waiting {ms} ms before start");
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }

        let data_dir = config.data_dir();
        std::fs::create_dir_all(&data_dir)?;
        let format = match self.serializer {
            Some(s) => crate::codec::Format::Custom(s),
            None => crate::codec::Format::Builtin(config.codec),
        };
        let id = identity::load_or_create(&data_dir, config.node_id, &format)?;

        let rpc_listener = match self.rpc_listener {
            Some(l) => l,
            None => crate::transport::Listen::Tcp(bind("BRAFT_RPORT", config.rport).await?),
        };
        let http_listener = match self.http_listener {
            Some(l) => l,
            None => crate::transport::Listen::Tcp(bind("BRAFT_HPORT", config.http_port()).await?),
        };
        let ip = match rpc_listener.local_addr()?.ip() {
            a if a.is_unspecified() => config.advertised_ip(),
            a => config.ip.unwrap_or(a),
        };
        let peer = Peer {
            rpc_addr: SocketAddr::new(ip, rpc_listener.local_addr()?.port()).to_string(),
            http_addr: SocketAddr::new(ip, http_listener.local_addr()?.port()).to_string(),
        };

        let log_store: Arc<dyn LogStore> = match self.log_store {
            Some(s) => s,
            None => open_log(&data_dir, config.log_engine).await?,
        };
        let snapshots: Arc<dyn SnapshotStore> = match self.snapshot_store {
            Some(s) => s,
            None => Arc::new(FileSnapshotStore::new(data_dir.join("snapshots"))?),
        };
        let watch_limits = crate::watch::Limits {
            events: config.watch_history,
            bytes: config.watch_history_bytes,
        };
        let mut metrics = crate::metrics::Metrics::new();
        metrics.enabled = config.metrics;
        let metrics = Arc::new(metrics);
        let sm = StateMachine::open(self.registry, format, snapshots.clone(), watch_limits, metrics.clone())?;
        let state = sm.shared();
        let token = crate::auth::ClusterToken::new(config.cluster_token.as_deref()).map_err(|problem| {
            crate::config::ConfigError {
                setting: "BRAFT_CLUSTER_TOKEN".into(),
                problem,
            }
        })?;
        let dialer = match (&tls.peer, self.dialer) {
            (Some(plane), inner) => Some(Arc::new(crate::transport::TlsDialer {
                inner: inner.unwrap_or_else(|| Arc::new(crate::transport::TcpDialer)),
                tls: plane.clone(),
            }) as Arc<dyn crate::transport::Dialer>),
            (None, inner) => inner,
        };
        warn_if_open(&config, &tls, &access);
        let pool = ChannelPool::new(Duration::from_millis(500), token.clone(), dialer);
        let disk = state.disk.clone();
        let consensus = Consensus::start(id, &config, pool.clone(), log_store, sm, disk.clone())
            .await
            .map_err(Error::Fatal)?;

        let discovery: Arc<dyn Discovery> = match self.discovery {
            Some(d) => d,
            None => Arc::from(
                crate::discovery::from_config(&config).map_err(|e| crate::config::ConfigError {
                    setting: "BRAFT_DISCOVERY".into(),
                    problem: e.to_string(),
                })?,
            ),
        };
        let advert = crate::discovery::Advert {
            id,
            rpc_addr: parse_addr(&peer.rpc_addr)?,
            http_addr: parse_addr(&peer.http_addr)?,
        };

        let (shutdown_tx, _) = watch::channel(false);
        let first = consensus.role_watch().view();
        let (roles_tx, _) = watch::channel(roles::RoleEvent {
            node_id: id,
            role: first.role,
            term: first.term,
            applied_index: first.applied_index,
        });
        let inner = Arc::new(Inner {
            id,
            config,
            consensus,
            state,
            pool,
            peer,
            started: Instant::now(),
            started_at_ms: now_ms(),
            shutdown: shutdown_tx,
            stopped: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
            discovery,
            discovered: Mutex::new(Discovered::default()),
            cluster_seen: Default::default(),
            leader_contact: Mutex::new(None),
            autopilot: Mutex::new(Default::default()),
            promised_to: Mutex::new(formation::load_promise(&data_dir)?),
            data_dir: data_dir.clone(),
            roles: roles_tx.clone(),
            biz_data: self.biz_data,
            discovery_warnings: Mutex::new(Vec::new()),
            metrics,
            access,
            disk,
            snapshots,
            read_batches: Default::default(),
        });
        metrics::attach(&node_weak(&inner));
        let node = Node { inner };
        if node.inner.config.fault_stale_reads {
            tracing::error!("BRAFT_FAULT_STALE_READS is on: reads are served WITHOUT linearizability (a test fault)");
        }
        tracing::info!(
            id,
            rpc = %node.inner.peer.rpc_addr,
            http = %node.inner.peer.http_addr,
            "braft node started"
        );

        Ok(Assembled {
            node,
            rpc_listener,
            http_listener,
            grpc_routes: self.grpc_routes,
            http_routes: self.http_routes,
            token,
            tls,
            background: Background {
                advert,
                roles_tx,
                role_hooks: self.role_hooks,
            },
        })
    }
}

/// A built node and what the server layer needs to serve it.
pub(crate) struct Assembled {
    pub node: Node,
    pub rpc_listener: crate::transport::Listen,
    pub http_listener: crate::transport::Listen,
    pub grpc_routes: tonic::service::Routes,
    pub http_routes: axum::Router,
    pub token: crate::auth::ClusterToken,
    pub tls: crate::tls::Planes,
    pub background: Background,
}

/// Says at start what is left unprotected, so that nobody runs an open cluster
/// believing it closed.
fn warn_if_open(config: &Config, tls: &crate::tls::Planes, access: &crate::access::Access) {
    if !access.enabled() {
        tracing::warn!("the client API is open: anyone who reaches HPORT or RPORT can read and write every key and change membership; set BRAFT_AUTH_FILE (see `braft token new`)");
    }
    if tls.peer.is_none() && config.cluster_token.is_none() {
        tracing::warn!(
            "peer RPCs on RPORT are unauthenticated and unencrypted: anyone who reaches it can join or remove members; set BRAFT_CLUSTER_TOKEN or peer TLS (BRAFT_PEER_CERT_FILE/BRAFT_PEER_KEY_FILE/BRAFT_PEER_CA_FILE)"
        );
    } else if tls.peer.is_none() {
        tracing::warn!(
            "peer traffic on RPORT is not encrypted (only BRAFT_CLUSTER_TOKEN is set); set peer TLS to encrypt it"
        );
    }
    if tls.client.is_some() && tls.peer.is_none() {
        tracing::warn!("client TLS is on but peer TLS is off: set BRAFT_PEER_CA_FILE (or BRAFT_CLIENT_CA_FILE) to encrypt peer traffic with the same certificate");
    }
}

/// What the node's background tasks start from.
pub(crate) struct Background {
    advert: crate::discovery::Advert,
    roles_tx: watch::Sender<roles::RoleEvent>,
    role_hooks: Vec<roles::RoleHook>,
}

impl Node {
    /// Starts discovery and the node's background tasks (role hooks, the distributor's
    /// health, formation, autopilot), once the node is being served.
    pub(crate) async fn launch(&self, b: Background) -> Result<(), Error> {
        let node = self;
        let Background {
            advert,
            roles_tx,
            role_hooks,
        } = b;
        if let Err(e) = node.inner.discovery.start(&advert) {
            node.shutdown().await;
            return Err(crate::config::ConfigError {
                setting: "BRAFT_DISCOVERY".into(),
                problem: e.to_string(),
            }
            .into());
        }
        tracing::info!(discovery = %node.inner.discovery.describe(), "discovery started");
        node.spawn(roles::watch_roles(node.clone(), roles_tx, role_hooks));
        node.spawn(distribute::run(node.clone()));
        node.spawn(poll_discovery(node.clone()));
        node.spawn(formation::run(node.clone()));
        node.spawn(autopilot::run(node.clone()));
        node.spawn(disk::step_down_while_full(node.clone()));
        node.spawn(compaction::snapshot_by_size(node.clone()));
        Ok(())
    }
}

/// Opens the log: the engine the data directory already holds, else `engine`. The
/// lock may still be held for a moment by a node of this same process that is shutting
/// down (its Raft tasks drop the store last), so a locked log is retried briefly
/// before giving up with a clear error.
async fn open_log(data_dir: &std::path::Path, engine: LogEngine) -> Result<Arc<dyn LogStore>, Error> {
    let engine = LogEngine::found_in(data_dir).unwrap_or(engine);
    let path = data_dir.join(engine.file_name());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match engine.open(data_dir) {
            Ok(s) => return Ok(s),
            Err(e) if e.to_string().contains("already open") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                let text = e.to_string();
                let hint = if text.contains("already open") {
                    " (is another node using this data directory?)"
                } else if text.contains("corrupt") || text.contains("length") || text.contains("skips") {
                    // Serving from a damaged log would serve less than was acknowledged.
                    " (the file is damaged: if the other members are healthy, remove this data directory and let the node rejoin; see the README)"
                } else {
                    ""
                };
                return Err(Error::Fatal(format!("opening the log {}: {e}{hint}", path.display())));
            }
        }
    }
}

fn parse_addr(a: &str) -> Result<SocketAddr, Error> {
    a.parse()
        .map_err(|e| Error::Fatal(format!("advertised address {a} is not ip:port: {e}")))
}

/// What discovery found last, for formation and `GET /raft`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Discovered {
    pub peers: Vec<String>,
    pub error: Option<String>,
    /// Discovery has answered at least once. Until then an empty list means "not
    /// asked yet", not "alone": formation must not read it as a one-node cluster.
    pub answered: bool,
}

/// Asks discovery for peers every refresh interval, for the node's lifetime.
async fn poll_discovery(node: Node) {
    let mut shutdown = node.shutdown_signal();
    let mut last_error: Option<String> = None;
    loop {
        let found = tokio::select! {
            _ = shutdown.changed() => return,
            r = node.inner.discovery.peers() => r,
        };
        {
            let mut d = node.inner.discovered.lock().unwrap_or_else(|p| p.into_inner());
            match found {
                Ok(peers) => {
                    if peers != d.peers {
                        tracing::info!(?peers, "discovered peers");
                    }
                    d.peers = peers;
                    d.error = None;
                    d.answered = true;
                    last_error = None;
                }
                // Keep the last good list: a discovery outage must not look like an
                // empty cluster.
                Err(e) => {
                    let e = e.to_string();
                    if last_error.as_ref() != Some(&e) {
                        tracing::warn!("{e}");
                    }
                    d.error = Some(e.clone());
                    last_error = Some(e);
                }
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(node.inner.discovery.refresh_interval()) => {}
        }
    }
}

async fn bind(var: &str, port: u16) -> Result<TcpListener, Error> {
    TcpListener::bind(("0.0.0.0", port)).await.map_err(|e| {
        Error::Io(std::io::Error::new(
            e.kind(),
            format!("{var}: cannot listen on port {port}: {e}"),
        ))
    })
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) struct Inner {
    pub id: NodeId,
    pub config: Config,
    pub consensus: Consensus,
    pub state: Arc<SharedState>,
    pub pool: ChannelPool,
    pub peer: Peer,
    pub started: Instant,
    pub started_at_ms: i64,
    shutdown: watch::Sender<bool>,
    /// Turns true once shutdown has finished.
    stopped: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    pub discovery: Arc<dyn Discovery>,
    pub discovered: Mutex<Discovered>,
    /// Formation has reached a node that belongs to a cluster: this node will join one
    /// rather than form one.
    pub cluster_seen: std::sync::atomic::AtomicBool,
    /// When an append (or heartbeat) last arrived from a leader.
    pub leader_contact: Mutex<Option<Instant>>,
    /// The latest autopilot round's report (meaningful on the leader).
    pub autopilot: Mutex<autopilot::AutopilotReport>,
    /// The initializer this pristine node has backed for forming the cluster (on disk).
    pub promised_to: Mutex<Option<NodeId>>,
    pub data_dir: std::path::PathBuf,
    /// This node's latest role event.
    pub roles: watch::Sender<roles::RoleEvent>,
    pub biz_data: Option<status::BizData>,
    /// Advice about the discovery settings, each given once (see `formation`).
    pub discovery_warnings: Mutex<Vec<String>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Who may do what on the client plane (checked by the surfaces, before the node).
    pub access: Arc<crate::access::Access>,
    /// Whether the data directory is out of space (see `disk`).
    pub disk: crate::store::DiskHealth,
    /// Where snapshots are kept; snapshots sent by a leader are received into it.
    pub snapshots: Arc<dyn SnapshotStore>,
    /// Reads on this follower waiting for a read point from the leader.
    read_batches: follower_read::ReadBatches,
}

fn node_weak(inner: &Arc<Inner>) -> (std::sync::Weak<Inner>, Arc<crate::metrics::Metrics>) {
    (Arc::downgrade(inner), inner.metrics.clone())
}

/// A running braft node. Cheap to clone; clones share the node.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

/// The outcome of one attempt at a request.
enum Attempt<T> {
    Done(Result<T, Error>),
    Retry { leader: Option<NodeId>, why: String },
}

impl Node {
    /// A builder whose configuration starts from the `BRAFT_*` environment variables.
    pub fn builder() -> NodeBuilder {
        let mut registry = Registry::default();
        distribute::register(&mut registry);
        NodeBuilder {
            config: Config::from_env(),
            registry,
            duplicate_service: None,
            rpc_listener: None,
            http_listener: None,
            dialer: None,
            log_store: None,
            snapshot_store: None,
            grpc_routes: tonic::service::Routes::default(),
            http_routes: axum::Router::new(),
            discovery: None,
            role_hooks: Vec::new(),
            biz_data: None,
            serializer: None,
            grpc_names: Vec::new(),
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// This node's advertised addresses.
    pub fn peer(&self) -> &Peer {
        &self.inner.peer
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The client plane's tokens and roles.
    pub fn access(&self) -> Arc<crate::access::Access> {
        self.inner.access.clone()
    }

    pub(crate) fn status(&self) -> RaftStatus {
        self.inner.consensus.status()
    }

    /// The current leader, if known.
    pub fn leader(&self) -> Option<LeaderHint> {
        let st = self.status();
        let id = st.leader?;
        Some(hint(id, st.peer(id)))
    }

    /// Hands leadership to another voter (call on the leader).
    pub async fn transfer_leader(&self, to: NodeId) -> Result<(), Error> {
        self.inner.consensus.transfer_leader(to).await.map_err(Error::Fatal)
    }

    /// Takes a snapshot now (normally one is taken every `snapshot_logs` entries).
    pub async fn snapshot(&self) -> Result<(), Error> {
        self.inner.consensus.snapshot().await.map_err(Error::Fatal)
    }

    /// Takes a snapshot now and waits until it covers everything applied when asked;
    /// returns its index.
    pub async fn snapshot_now(&self) -> Result<u64, Error> {
        let target = self.status().applied_index;
        self.snapshot().await?;
        let deadline = Instant::now() + self.inner.config.request_timeout();
        loop {
            let at = self.status().snapshot_index;
            if at >= target {
                return Ok(at);
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable {
                    reason: format!("the snapshot did not reach index {target} in time (at {at})"),
                    leader: None,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether this node is the leader right now.
    pub fn is_leader(&self) -> bool {
        self.status().is_leader()
    }

    /// A status page of this node's Raft state (term, indexes, members).
    pub fn raft_status(&self) -> RaftStatus {
        self.status()
    }

    /// A fingerprint of this node's applied state and the index it was taken at. Two
    /// replicas at the same index must report the same hash (see
    /// [`StateHash`]); the simulation checks this after every restart.
    pub fn state_hash(&self) -> Result<StateHash, Error> {
        self.inner.state.hash().map_err(Error::Service)
    }

    /// The candidate peers discovery found last.
    pub fn discovered_peers(&self) -> Vec<String> {
        self.inner
            .discovered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .peers
            .clone()
    }

    /// The peers discovery found last, or `None` before its first answer.
    pub(crate) fn discovery_answer(&self) -> Option<Vec<String>> {
        let d = self.inner.discovered.lock().unwrap_or_else(|p| p.into_inner());
        d.answered.then(|| d.peers.clone())
    }

    /// Records that a leader just sent an append or a heartbeat.
    pub(crate) fn note_leader_contact(&self) {
        *self.inner.leader_contact.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// How long since a leader last reached this node (since start, if never). A
    /// leader's id in the metrics can outlive the leader, since it is restored from the
    /// stored vote: only actual contact shows that someone still leads this node.
    pub(crate) fn leader_silence(&self) -> Duration {
        self.inner
            .leader_contact
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or(self.inner.started)
            .elapsed()
    }

    /// Whether formation has met a node that already belongs to a cluster.
    pub fn cluster_seen(&self) -> bool {
        self.inner.cluster_seen.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Advice about the discovery settings found while forming, e.g. a static list that
    /// names the Go braft's discovery ports instead of Raft ports.
    pub fn discovery_warnings(&self) -> Vec<String> {
        self.inner
            .discovery_warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The discovery method, in braft's URL-like form.
    pub fn discovery_description(&self) -> String {
        self.inner.discovery.describe()
    }

    /// This node's autopilot report. Only the leader runs autopilot: on other nodes this
    /// says so and lists no servers (see [`Node::cluster_autopilot`]).
    pub fn autopilot_report(&self) -> autopilot::AutopilotReport {
        self.inner.autopilot.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The leader's autopilot report, asked over gRPC when this node does not lead.
    pub async fn cluster_autopilot(&self) -> Result<autopilot::AutopilotReport, Error> {
        let local = self.autopilot_report();
        let (leader, peer) = self.inner.consensus.leader();
        if local.leader || leader == Some(self.id()) {
            return Ok(local);
        }
        let unavailable = |reason: String| Error::Unavailable {
            reason,
            leader: leader.map(|id| hint(id, peer.as_ref())),
        };
        let Some(peer) = peer.as_ref().filter(|_| leader.is_some() && leader != Some(self.id())) else {
            return Err(unavailable(
                "no leader known, and only the leader runs autopilot".into(),
            ));
        };
        let mut client = self
            .inner
            .pool
            .raft_client(&peer.rpc_addr)
            .map_err(|e| unavailable(e.to_string()))?;
        let resp = tokio::time::timeout(
            Duration::from_millis(800),
            client.autopilot(crate::pb::Opaque { data: Vec::new() }),
        )
        .await
        .map_err(|_| unavailable(format!("leader {} did not answer in time", peer.rpc_addr)))?
        .map_err(|s| unavailable(format!("leader {}: {}", peer.rpc_addr, s.message())))?;
        wire::decode(&resp.into_inner().data).map_err(|e| unavailable(format!("bad autopilot report: {e}")))
    }

    /// Somewhere to receive a snapshot a leader streams here.
    pub(crate) fn snapshot_incoming(&self) -> std::io::Result<crate::store::Incoming> {
        self.inner.snapshots.incoming()
    }

    pub(crate) fn consensus(&self) -> &Consensus {
        &self.inner.consensus
    }

    pub(crate) fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        let h = tokio::spawn(fut);
        self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(h);
    }

    /// A receiver that turns true when the node begins shutting down.
    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    /// Applies a command through Raft (from any node) and returns the service's output.
    pub async fn write<S: Service>(&self, cmd: S::Command) -> Result<S::Output, Error> {
        let codec = &self.inner.state.codec;
        let payload = codec.encode(&cmd)?;
        let (_, bytes) = self.write_raw(S::NAME, payload).await?;
        Ok(codec.decode(&bytes)?)
    }

    /// Queries a service with the given consistency (from any node).
    pub async fn read<S: Service>(&self, query: S::Query, consistency: Consistency) -> Result<S::QueryOutput, Error> {
        let codec = &self.inner.state.codec;
        let payload = codec.encode(&query)?;
        let bytes = self.read_raw(S::NAME, payload, consistency).await?;
        Ok(codec.decode(&bytes)?)
    }

    /// The untyped write path: returns the log index and the encoded output.
    pub(crate) async fn write_raw(&self, service: &str, payload: Vec<u8>) -> Result<(u64, Vec<u8>), Error> {
        self.check_service(service)?;
        self.check_disk()?;
        let req = ForwardRequest::Write {
            service: service.to_string(),
            payload,
            timeout_ms: 0,
        };
        self.with_retries(|deadline| self.write_once(&req, deadline)).await
    }

    /// The untyped read path.
    pub(crate) async fn read_raw(
        &self,
        service: &str,
        payload: Vec<u8>,
        consistency: Consistency,
    ) -> Result<Vec<u8>, Error> {
        self.check_service(service)?;
        if consistency == Consistency::Stale || self.inner.config.fault_stale_reads {
            return Ok(self.inner.state.query(service, &payload)?);
        }
        let req = ForwardRequest::Read {
            service: service.to_string(),
            payload,
            consistency,
            timeout_ms: 0,
        };
        self.with_retries(|deadline| self.read_once(&req, deadline)).await
    }

    fn check_service(&self, service: &str) -> Result<(), Error> {
        if self.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        if !self.inner.state.read().registry.contains(service) {
            return Err(Error::UnknownService(service.to_string()));
        }
        Ok(())
    }

    /// Runs attempts until one is done or the request timeout passes, backing off
    /// between them. Leader elections, `LeaseExpired` on a fresh leader and unreachable
    /// leaders all end up here.
    async fn with_retries<'a, T, F, Fut>(&'a self, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut(Instant) -> Fut,
        Fut: std::future::Future<Output = Attempt<T>> + 'a,
    {
        let deadline = Instant::now() + self.inner.config.request_timeout();
        let mut backoff = RETRY_MIN;
        loop {
            let (leader, why) = match attempt(deadline).await {
                Attempt::Done(r) => return r,
                Attempt::Retry { leader, why } => (leader, why),
            };
            if self.is_shutting_down() {
                return Err(Error::ShuttingDown);
            }
            let now = Instant::now();
            if now + backoff >= deadline {
                let st = self.status();
                let leader = leader.or(st.leader).map(|id| hint(id, st.peer(id)));
                return Err(Error::Unavailable {
                    reason: format!(
                        "no leader with a quorum within {} ms: {why}",
                        self.inner.config.request_timeout_ms
                    ),
                    leader,
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }

    async fn write_once(&self, req: &ForwardRequest, deadline: Instant) -> Attempt<(u64, Vec<u8>)> {
        let (leader, leader_peer) = self.inner.consensus.leader();
        let req = &match req {
            ForwardRequest::Write { service, payload, .. } => ForwardRequest::Write {
                service: service.clone(),
                payload: payload.clone(),
                timeout_ms: deadline.saturating_duration_since(Instant::now()).as_millis() as u64,
            },
            other => return Attempt::Done(Err(Error::BadRequest(format!("not a write: {other:?}")))),
        };
        match leader {
            Some(l) if l == self.inner.id => {
                let remaining = deadline.saturating_duration_since(Instant::now());
                written(Ok(self.handle_forward_write(req, remaining).await))
            }
            Some(l) => match &leader_peer {
                Some(p) => written(self.forward(p, req, deadline).await),
                None => Attempt::Retry {
                    leader: Some(l),
                    why: "leader address unknown".into(),
                },
            },
            None => Attempt::Retry {
                leader: None,
                why: "no leader elected".into(),
            },
        }
    }

    async fn read_once(&self, req: &ForwardRequest, deadline: Instant) -> Attempt<Vec<u8>> {
        let (leader, leader_peer) = self.read_leader().await;
        let req = match req {
            ForwardRequest::Read {
                service,
                payload,
                consistency,
                ..
            } => ForwardRequest::Read {
                service: service.clone(),
                payload: payload.clone(),
                consistency: *consistency,
                timeout_ms: deadline.saturating_duration_since(Instant::now()).as_millis() as u64,
            },
            other => return Attempt::Done(Err(Error::BadRequest(format!("not a read: {other:?}")))),
        };
        match leader {
            Some(l) if l == self.inner.id => read_reply(self.handle_forward_read(&req).await),
            Some(l) => match &leader_peer {
                Some(p) if self.follower_reads() => self.read_here(l, p, &req, deadline).await,
                Some(p) => self.forward_read(l, p, &req, deadline).await,
                None => Attempt::Retry {
                    leader: Some(l),
                    why: "leader address unknown".into(),
                },
            },
            None => Attempt::Retry {
                leader: None,
                why: "no leader elected".into(),
            },
        }
    }

    /// Serves a read on this follower at a read point from the leader `l` (see
    /// `follower_read`), or forwards it when that cannot be done in time.
    async fn read_here(&self, l: NodeId, p: &Peer, req: &ForwardRequest, deadline: Instant) -> Attempt<Vec<u8>> {
        let ForwardRequest::Read {
            service,
            payload,
            consistency,
            ..
        } = req
        else {
            return Attempt::Done(Err(Error::BadRequest(format!("not a read: {req:?}"))));
        };
        match self.read_point(p, *consistency == Consistency::Lease, deadline).await {
            follower_read::ReadPoint::At(index) if self.applied_in_time(index, deadline).await => {
                read_reply(self.query_reply(service, payload))
            }
            follower_read::ReadPoint::At(_) | follower_read::ReadPoint::Unsupported => {
                self.forward_read(l, p, req, deadline).await
            }
            // As `read_reply` does: a leader on its way out names nobody, on purpose.
            follower_read::ReadPoint::Retry { leader, why } => Attempt::Retry { leader, why },
        }
    }

    /// Hands a read to the leader `l` whole.
    async fn forward_read(&self, l: NodeId, p: &Peer, req: &ForwardRequest, deadline: Instant) -> Attempt<Vec<u8>> {
        match self.forward(p, req, deadline).await {
            Ok(reply) => read_reply(reply),
            // A read is idempotent, so any failure to reach the leader is retried.
            Err(e) => Attempt::Retry {
                leader: Some(l),
                why: e.to_string(),
            },
        }
    }

    /// Sends a request to the leader. A failure before the request left this node (the
    /// connection could not be made) is a retryable `Unavailable`; a failure after it may
    /// have arrived is, for a write, `Indeterminate`: retrying could apply it twice.
    async fn forward(&self, leader: &Peer, req: &ForwardRequest, deadline: Instant) -> Result<ForwardReply, Error> {
        let unavailable = |why: String| Error::Unavailable {
            reason: why,
            leader: None,
        };
        let mut client = self
            .inner
            .pool
            .raft_client(&leader.rpc_addr)
            .map_err(|e| unavailable(format!("bad leader address {}: {e}", leader.rpc_addr)))?;
        let data = wire::encode(req).map_err(|e| Error::BadRequest(e.to_string()))?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let is_write = matches!(req, ForwardRequest::Write { .. });
        let lost = |why: String| {
            if is_write {
                self.indeterminate(why)
            } else {
                unavailable(why)
            }
        };
        let answer = tokio::time::timeout(remaining, client.forward(crate::pb::Opaque { data })).await;
        let outcome = match &answer {
            Ok(Ok(_)) => "ok",
            Ok(Err(s)) if crate::transport::never_sent(s) => "unavailable",
            _ if is_write => "indeterminate",
            _ => "unavailable",
        };
        self.inner
            .metrics
            .forwarded
            .get_or_create(&crate::metrics::ForwardLabels {
                kind: if is_write { "write" } else { "read" },
                outcome,
            })
            .inc();
        match answer {
            Err(_) => Err(lost(format!("no answer from leader {} in time", leader.rpc_addr))),
            Ok(Err(status)) if crate::transport::never_sent(&status) => Err(unavailable(format!(
                "cannot reach leader {}: {status}",
                leader.rpc_addr
            ))),
            Ok(Err(status)) => Err(lost(format!("leader {}: {status}", leader.rpc_addr))),
            Ok(Ok(resp)) => wire::decode(&resp.into_inner().data)
                .map_err(|e| lost(format!("bad answer from leader {}: {e}", leader.rpc_addr))),
        }
    }

    /// Serves a write here, as leader. Never forwards further: a node that is not the
    /// leader answers `NotLeader` and the origin retries, so requests cannot loop.
    pub(crate) async fn handle_forward_write(&self, req: &ForwardRequest, timeout: Duration) -> ForwardReply {
        let ForwardRequest::Write { service, payload, .. } = req else {
            return ForwardReply::Fatal("expected a write".into());
        };
        if self.inner.disk.is_full() {
            // This leader is handing over (`disk`): the caller retries with the next.
            return ForwardReply::NotLeader { leader: None };
        }
        if !self.inner.state.read().registry.contains(service) {
            return ForwardReply::Written {
                index: 0,
                response: Response::Err(ServiceError::new(
                    "unknown_service",
                    format!("the leader has no service named '{service}'"),
                )),
            };
        }
        let request = Request {
            service: service.clone(),
            payload: payload.clone(),
        };
        let m = &self.inner.metrics;
        m.proposals_pending.inc();
        let proposal = tokio::time::timeout(timeout, self.inner.consensus.propose(request)).await;
        m.proposals_pending.dec();
        match &proposal {
            Ok(Proposal::Applied { .. }) => m.proposals_committed.inc(),
            _ => m.proposals_failed.inc(),
        };
        let proposal = match proposal {
            Ok(p) => p,
            Err(_) => {
                return ForwardReply::Indeterminate(format!(
                    "not committed within {} ms (no quorum?); it may still commit",
                    timeout.as_millis()
                ))
            }
        };
        match proposal {
            Proposal::Applied { index, response } => ForwardReply::Written { index, response },
            Proposal::NotLeader { leader } => self.not_leader(leader),
            Proposal::Discarded => {
                ForwardReply::Indeterminate("entry discarded by a leader change; it may still commit".into())
            }
            // The core stopped (shutting down, or a storage failure) with the entry
            // possibly appended: its fate is unknown, not failed.
            Proposal::Fatal(e) => ForwardReply::Indeterminate(format!("raft stopped: {e}")),
        }
    }

    /// Serves a linearizable or lease read here, as leader.
    pub(crate) async fn handle_forward_read(&self, req: &ForwardRequest) -> ForwardReply {
        let ForwardRequest::Read {
            service,
            payload,
            consistency,
            timeout_ms,
        } = req
        else {
            return ForwardReply::Fatal("expected a read".into());
        };
        let timeout = Duration::from_millis((*timeout_ms).clamp(10, 60_000));
        let lease = *consistency == Consistency::Lease;
        if *consistency != Consistency::Stale {
            if let Err(refused) = self.inner.consensus.read_gate(lease, timeout).await {
                return self.read_refused(refused);
            }
        }
        self.query_reply(service, payload)
    }

    /// Runs a query on this node's state, as a reply.
    fn query_reply(&self, service: &str, payload: &[u8]) -> ForwardReply {
        ForwardReply::Read(self.inner.state.query(service, payload).map(serde_bytes::ByteBuf::from))
    }

    /// Why this node, asked as leader, could not confirm a read.
    fn read_refused(&self, refused: ReadRefused) -> ForwardReply {
        match refused {
            ReadRefused::NotLeader { leader } => self.not_leader(leader),
            ReadRefused::NoQuorum(e) => ForwardReply::NoQuorum(e),
            ReadRefused::Fatal(e) => ForwardReply::Fatal(e),
        }
    }

    /// An `Indeterminate` error naming the leader as far as this node knows it.
    fn indeterminate(&self, reason: String) -> Error {
        let st = self.status();
        Error::Indeterminate {
            reason,
            leader: st.leader.map(|id| hint(id, st.peer(id))),
        }
    }

    fn not_leader(&self, leader: Option<NodeId>) -> ForwardReply {
        let st = self.status();
        // A leader on its way out (no voter of its own configuration) names no leader:
        // it is about to step down, and the caller should wait for the next one.
        let leading = st.is_leader() && st.voters.contains(&self.inner.id);
        let leader = leader.or(st.leader).filter(|l| *l != self.inner.id || leading);
        ForwardReply::NotLeader {
            leader: leader.and_then(|l| st.peer(l).map(|p| (l, p.clone()))),
        }
    }

    /// Waits for SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn run_until_shutdown(&self) -> Result<(), Error> {
        wait_for_signal().await;
        tracing::info!("signal received, shutting down");
        if self.inner.config.leave_on_shutdown {
            if let Err(e) = self.leave().await {
                tracing::warn!("BRAFT_LEAVE_ON_SHUTDOWN: {e}");
            }
        }
        self.shutdown().await;
        Ok(())
    }

    /// Stops accepting requests, stops the servers, and stops Raft. In-flight requests
    /// get a short grace period.
    /// Safe to call more than once and from several tasks: every caller returns once the
    /// node has fully stopped (its data directory is then free to reopen).
    pub async fn shutdown(&self) {
        if self.inner.shutdown.send_replace(true) {
            let mut stopped = self.inner.stopped.subscribe();
            let _ = stopped.wait_for(|s| *s).await;
            return;
        }
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for mut t in tasks {
            if tokio::time::timeout(Duration::from_secs(3), &mut t).await.is_err() {
                tracing::warn!("a task did not stop within 3 s; aborting it");
                t.abort();
            }
        }
        let discovery = self.inner.discovery.clone();
        let _ = tokio::task::spawn_blocking(move || discovery.stop()).await;
        self.inner.consensus.shutdown().await;
        self.inner.stopped.send_replace(true);
        tracing::info!(id = self.inner.id, "node stopped");
    }
}

fn hint(id: NodeId, peer: Option<&Peer>) -> LeaderHint {
    LeaderHint {
        id,
        rpc_addr: peer.map(|p| p.rpc_addr.clone()).unwrap_or_default(),
        http_addr: peer.map(|p| p.http_addr.clone()).unwrap_or_default(),
    }
}

fn written(r: Result<ForwardReply, Error>) -> Attempt<(u64, Vec<u8>)> {
    match r {
        Err(e @ Error::Unavailable { .. }) => Attempt::Retry {
            leader: None,
            why: e.to_string(),
        },
        Err(e) => Attempt::Done(Err(e)),
        Ok(ForwardReply::Written { index, response }) => Attempt::Done(match response {
            Response::Ok(bytes) => Ok((index, bytes)),
            Response::Err(e) if e.code == "unknown_service" => Err(Error::UnknownService(e.message)),
            Response::Err(e) => Err(Error::Service(e)),
        }),
        Ok(ForwardReply::NotLeader { leader }) => Attempt::Retry {
            leader: leader.map(|(id, _)| id),
            why: "leader changed".into(),
        },
        Ok(ForwardReply::NoQuorum(e)) => Attempt::Retry { leader: None, why: e },
        Ok(ForwardReply::Indeterminate(e)) => Attempt::Done(Err(Error::Indeterminate {
            reason: e,
            leader: None,
        })),
        Ok(ForwardReply::Fatal(e)) => Attempt::Done(Err(Error::Fatal(e))),
        Ok(ForwardReply::Read(_) | ForwardReply::ReadIndex { .. }) => {
            Attempt::Done(Err(Error::Fatal("leader answered a write with a read".into())))
        }
    }
}

fn read_reply(r: ForwardReply) -> Attempt<Vec<u8>> {
    match r {
        ForwardReply::Read(Ok(b)) => Attempt::Done(Ok(b.into_vec())),
        ForwardReply::Read(Err(e)) if e.code == "unknown_service" => {
            Attempt::Done(Err(Error::UnknownService(e.message)))
        }
        ForwardReply::Read(Err(e)) => Attempt::Done(Err(Error::Service(e))),
        ForwardReply::NotLeader { leader } => Attempt::Retry {
            leader: leader.map(|(id, _)| id),
            why: "leader changed".into(),
        },
        ForwardReply::NoQuorum(e) => Attempt::Retry { leader: None, why: e },
        // A read changes nothing, so a leader that stopped mid-read is simply retried.
        ForwardReply::Indeterminate(e) | ForwardReply::Fatal(e) => Attempt::Retry { leader: None, why: e },
        ForwardReply::Written { .. } | ForwardReply::ReadIndex { .. } => {
            Attempt::Done(Err(Error::Fatal("leader answered a read with something else".into())))
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
