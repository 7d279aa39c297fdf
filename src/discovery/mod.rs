//! Peer discovery: where a node looks for the other members of its cluster.
//!
//! A [`Discovery`] yields the current set of *candidate* peers (their raft/gRPC
//! addresses), refreshed over time. It only proposes addresses: who is actually a member
//! is decided by Raft, through formation (see `node::formation`) and autopilot. That is
//! why a flaky discovery source can never remove a voter or split the brain — the Go
//! braft's mistake, where gossip silence changed the membership.
//!
//! Built-ins, chosen with `BRAFT_DISCOVERY`/`BDI`:
//! - [`StaticDiscovery`]: `static:a,b,c`, a fixed list;
//! - [`MdnsDiscovery`]: `mdns[:service]`, multicast DNS on the local network;
//! - `K8sDiscovery` (cargo feature `k8s`): `k8s`, ready pods from the Kubernetes API;
//! - [`DnsDiscovery`]: `dns:name[:port]`, A/AAAA records re-resolved periodically.
//!
//! Plug in your own with [`crate::NodeBuilder::discovery`].

mod dns;
#[cfg(feature = "k8s")]
mod k8s;
mod mdns;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

pub use dns::DnsDiscovery;
#[cfg(feature = "k8s")]
pub use k8s::{K8sDiscovery, K8sOptions};
pub use mdns::MdnsDiscovery;

use crate::config::Config;
use crate::raft::NodeId;

/// What [`Discovery::peers`] returns.
pub type PeersFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<String>, DiscoveryError>> + Send + 'a>>;

/// Why discovery could not produce peers this time. Discovery is retried, so these are
/// logged and shown, never fatal, except when building a method from bad settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// The source could not be asked right now (timeout, connection refused, ...).
    #[error("discovery unavailable: {0}")]
    Unavailable(String),
    /// The source answered with a refusal or something unusable (a bad token, a bad
    /// response), which retrying alone will not fix.
    #[error("discovery refused: {0}")]
    Refused(String),
    /// The method cannot start with these settings.
    #[error("discovery setup: {0}")]
    Setup(String),
}

/// This node, as it announces itself to methods that advertise (mDNS).
#[derive(Debug, Clone)]
pub struct Advert {
    pub id: NodeId,
    pub rpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
}

/// A source of candidate peers.
pub trait Discovery: Send + Sync + 'static {
    /// braft's URL-like description, shown in `GET /raft` (`mdns://_braft._tcp`).
    fn describe(&self) -> String;

    /// Called once when the node starts serving; methods that advertise begin here.
    fn start(&self, _me: &Advert) -> Result<(), DiscoveryError> {
        Ok(())
    }

    /// The candidate peers' raft addresses (`host:port`) right now. The list may include
    /// this node itself and nodes that are down; callers probe them.
    fn peers(&self) -> PeersFuture<'_>;

    /// How often the node asks [`Discovery::peers`].
    fn refresh_interval(&self) -> Duration {
        Duration::from_secs(2)
    }

    /// Whether the list is fixed by configuration. Then only nodes named in it take part
    /// in forming a new cluster (others only join), and the bootstrap count defaults to
    /// the list's length.
    fn is_static(&self) -> bool {
        false
    }

    /// Called at shutdown; methods that advertise withdraw here.
    fn stop(&self) {}
}

/// The fixed list of `static:a,b,c`.
#[derive(Debug, Clone)]
pub struct StaticDiscovery {
    peers: Vec<String>,
}

impl StaticDiscovery {
    pub fn new(peers: Vec<String>) -> Self {
        Self { peers }
    }
}

impl Discovery for StaticDiscovery {
    fn describe(&self) -> String {
        format!("static://{}", self.peers.join(","))
    }

    fn peers(&self) -> PeersFuture<'_> {
        let peers = self.peers.clone();
        Box::pin(async move { Ok(peers) })
    }

    fn refresh_interval(&self) -> Duration {
        Duration::from_secs(5)
    }

    fn is_static(&self) -> bool {
        true
    }
}

/// Builds the method the configuration names.
pub fn from_config(config: &Config) -> Result<Box<dyn Discovery>, DiscoveryError> {
    use crate::config::Discovery as D;
    Ok(match &config.discovery {
        D::Static(_) => Box::new(StaticDiscovery::new(config.resolved_static_peers())),
        D::Mdns(_) => Box::new(MdnsDiscovery::new(config.mdns_service_type())?),
        D::Dns { name, port } => Box::new(DnsDiscovery::new(
            name.clone(),
            port.unwrap_or(config.rport),
            config.dns_server,
        )?),
        #[cfg(feature = "k8s")]
        D::K8s => Box::new(K8sDiscovery::new(K8sOptions::from_config(config))?),
        #[cfg(not(feature = "k8s"))]
        D::K8s => {
            return Err(DiscoveryError::Setup(
                "this build has no Kubernetes discovery (enable the cargo feature `k8s`)".into(),
            ))
        }
    })
}
