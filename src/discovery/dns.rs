//! DNS discovery (`dns:<name>[:port]`): the A and AAAA records of one name, re-resolved
//! every refresh. A Kubernetes headless service (with `publishNotReadyAddresses`) is
//! the typical source: it lists every pod's IP.
//!
//! Uses hickory-resolver rather than the system's `getaddrinfo`, so that the answer is
//! not cached beyond its TTL by the C library and a test (or an operator) can point it
//! at a specific server with `BRAFT_DNS_SERVER`.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveErrorKind, TokioResolver};

use super::{Discovery, DiscoveryError, PeersFuture};

const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// DNS discovery. See the module docs.
pub struct DnsDiscovery {
    name: String,
    port: u16,
    resolver: TokioResolver,
}

impl DnsDiscovery {
    /// Resolves `name` and pairs each address with `port`. `server` replaces the system
    /// resolver configuration.
    pub fn new(name: String, port: u16, server: Option<SocketAddr>) -> Result<Self, DiscoveryError> {
        let mut opts = ResolverOpts::default();
        opts.timeout = LOOKUP_TIMEOUT;
        opts.attempts = 1;
        // Membership changes must show up promptly: never serve an answer past a
        // few seconds, whatever its TTL.
        opts.positive_max_ttl = Some(Duration::from_secs(5));
        opts.negative_max_ttl = Some(Duration::from_secs(1));
        let resolver = match server {
            Some(s) => {
                let group = NameServerConfigGroup::from_ips_clear(&[s.ip()], s.port(), true);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, vec![], group),
                    TokioConnectionProvider::default(),
                )
                .with_options(opts)
                .build()
            }
            None => {
                let mut b = TokioResolver::builder_tokio()
                    .map_err(|e| DiscoveryError::Setup(format!("reading the system resolver configuration: {e}")))?;
                // Keep the system's options (search domains, ndots), bounding only the
                // timings.
                let o = b.options_mut();
                o.timeout = opts.timeout;
                o.attempts = opts.attempts;
                o.positive_max_ttl = opts.positive_max_ttl;
                o.negative_max_ttl = opts.negative_max_ttl;
                b.build()
            }
        };
        Ok(Self { name, port, resolver })
    }
}

impl Discovery for DnsDiscovery {
    fn describe(&self) -> String {
        format!("dns://{}:{}", self.name, self.port)
    }

    fn peers(&self) -> PeersFuture<'_> {
        Box::pin(async move {
            match self.resolver.lookup_ip(self.name.as_str()).await {
                Ok(ips) => {
                    let mut peers: Vec<String> = ips
                        .iter()
                        .map(|ip| SocketAddr::new(ip, self.port).to_string())
                        .collect();
                    peers.sort();
                    peers.dedup();
                    Ok(peers)
                }
                // No records yet (a headless service with no pods) is an empty list.
                Err(e) if is_no_records(&e) => Ok(Vec::new()),
                Err(e) => Err(DiscoveryError::Unavailable(format!("resolving {}: {e}", self.name))),
            }
        })
    }
}

fn is_no_records(e: &hickory_resolver::ResolveError) -> bool {
    match e.kind() {
        ResolveErrorKind::Proto(p) => matches!(p.kind(), ProtoErrorKind::NoRecordsFound { .. }),
        _ => false,
    }
}
