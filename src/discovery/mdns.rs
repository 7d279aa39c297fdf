//! mDNS discovery (`mdns` or `mdns:<service>`), with the mdns-sd crate.
//!
//! Each node registers an instance `braft-<id>` of the service type (default
//! `_braft._tcp.local.`) whose SRV port is its raft port and whose TXT records carry
//! `id`, `rport` and `hport`, and browses the same type. Entries leave the list when
//! their node says goodbye (a clean shutdown), when their records expire, or — since
//! record TTLs are long — when a periodic TCP probe of their raft port fails and an
//! mDNS re-query (RFC 6762 §10.4, mdns-sd's `verify`) goes unanswered.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};

use super::{Advert, Discovery, DiscoveryError, PeersFuture};

/// How often each entry's raft port is probed.
const PROBE_EVERY: Duration = Duration::from_secs(3);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a re-query may go unanswered before the entry is flushed.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(2);

/// mDNS discovery. See the module docs.
pub struct MdnsDiscovery {
    /// The short form shown to people (`_braft._tcp`).
    service: String,
    /// The fully qualified type mdns-sd wants (`_braft._tcp.local.`).
    service_type: String,
    daemon: Mutex<Option<ServiceDaemon>>,
    registered: Mutex<Option<String>>,
    /// Resolved instances: full name -> raft address.
    entries: Arc<Mutex<BTreeMap<String, SocketAddr>>>,
    /// Turns true on stop; ends the background tasks.
    stopped: tokio::sync::watch::Sender<bool>,
}

impl MdnsDiscovery {
    /// Discovery for `service` (`_braft._tcp`, with or without `.local.`).
    pub fn new(service: &str) -> Result<Self, DiscoveryError> {
        let short = service.trim_end_matches('.').trim_end_matches(".local").to_string();
        Ok(Self {
            service_type: format!("{short}.local."),
            service: short,
            daemon: Mutex::new(None),
            registered: Mutex::new(None),
            entries: Arc::new(Mutex::new(BTreeMap::new())),
            stopped: tokio::sync::watch::channel(false).0,
        })
    }
}

impl Discovery for MdnsDiscovery {
    fn describe(&self) -> String {
        format!("mdns://{}", self.service)
    }

    fn start(&self, me: &Advert) -> Result<(), DiscoveryError> {
        let setup = |e: mdns_sd::Error| DiscoveryError::Setup(format!("mDNS: {e}"));
        let daemon = ServiceDaemon::new().map_err(setup)?;
        let ip = me.rpc_addr.ip();
        if ip.is_loopback() {
            // mdns-sd leaves loopback out by default; a node advertising a loopback
            // address (a one-machine cluster) is only reachable there.
            let kind = if ip.is_ipv4() {
                IfKind::LoopbackV4
            } else {
                IfKind::LoopbackV6
            };
            daemon.enable_interface(kind).map_err(setup)?;
        }
        let instance = format!("braft-{}", me.id);
        let host = format!("braft-{}.local.", me.id);
        let props = [
            ("id", me.id.to_string()),
            ("rport", me.rpc_addr.port().to_string()),
            ("hport", me.http_addr.port().to_string()),
        ];
        let info = ServiceInfo::new(&self.service_type, &instance, &host, ip, me.rpc_addr.port(), &props[..])
            .map_err(setup)?;
        let fullname = info.get_fullname().to_string();
        daemon.register(info).map_err(setup)?;
        let events = daemon.browse(&self.service_type).map_err(setup)?;
        tracing::info!(service = %self.service_type, instance = %fullname, "mDNS: advertising and browsing");

        let entries = self.entries.clone();
        let mut stop = self.stopped.subscribe();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = stop.changed() => return,
                    e = events.recv_async() => match e {
                        Ok(e) => e,
                        Err(_) => return,
                    },
                };
                match event {
                    ServiceEvent::ServiceResolved(svc) => {
                        let port = svc
                            .get_property_val_str("rport")
                            .and_then(|p| p.parse().ok())
                            .unwrap_or(svc.get_port());
                        // Prefer an IPv4 address, as braft advertises one by default.
                        let mut addrs: Vec<IpAddr> = svc.get_addresses().iter().map(|a| a.to_ip_addr()).collect();
                        addrs.sort_by_key(|a| (!a.is_ipv4(), a.is_loopback()));
                        if let Some(ip) = addrs.first() {
                            let addr = SocketAddr::new(*ip, port);
                            tracing::debug!(instance = svc.get_fullname(), %addr, "mDNS: peer resolved");
                            lock(&entries).insert(svc.get_fullname().to_string(), addr);
                        }
                    }
                    ServiceEvent::ServiceRemoved(_, fullname) => {
                        tracing::debug!(instance = %fullname, "mDNS: peer removed");
                        lock(&entries).remove(&fullname);
                    }
                    _ => {}
                }
            }
        });

        // Records live for minutes; probe the peers' raft ports so that a dead node's
        // entry is re-queried and flushed within seconds.
        let probe_daemon = daemon.clone();
        let entries = self.entries.clone();
        let own = fullname.clone();
        let mut stop = self.stopped.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(PROBE_EVERY) => {}
                }
                let snapshot: Vec<(String, SocketAddr)> = lock(&entries)
                    .iter()
                    .filter(|(n, _)| **n != own)
                    .map(|(n, a)| (n.clone(), *a))
                    .collect();
                for (name, addr) in snapshot {
                    let alive = matches!(
                        tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await,
                        Ok(Ok(_))
                    );
                    if !alive {
                        tracing::debug!(instance = %name, %addr, "mDNS: peer not answering; re-querying");
                        if probe_daemon.verify(name, VERIFY_TIMEOUT).is_err() {
                            return; // The daemon has shut down.
                        }
                    }
                }
            }
        });
        *lock(&self.registered) = Some(fullname);
        *lock(&self.daemon) = Some(daemon);
        Ok(())
    }

    fn peers(&self) -> PeersFuture<'_> {
        let peers: Vec<String> = lock(&self.entries).values().map(|a| a.to_string()).collect();
        Box::pin(async move { Ok(peers) })
    }

    fn refresh_interval(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn stop(&self) {
        self.stopped.send_replace(true);
        let Some(daemon) = lock(&self.daemon).take() else {
            return;
        };
        // Say goodbye, so that peers drop this entry at once.
        if let Some(name) = lock(&self.registered).take() {
            if let Ok(rx) = daemon.unregister(&name) {
                let _ = rx.recv_timeout(Duration::from_millis(500));
            }
        }
        if let Ok(rx) = daemon.shutdown() {
            let _ = rx.recv_timeout(Duration::from_millis(500));
        }
    }
}

impl Drop for MdnsDiscovery {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
