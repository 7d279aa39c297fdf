//! First step of the seeded simulation (issue 4): real braft nodes — their tonic and axum
//! servers, forwarding and formation — on turmoil's simulated network, with the
//! in-memory stores. A client host writes through one node and reads through each.
//!
//! Not yet deterministic: the log writer runs on an OS thread and openraft's RNG is
//! not seeded (see docs/NOTES.md for the plan). So this is a smoke test of the network
//! seam under turmoil, not the seeded fault simulation.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use braft::config::Discovery;
use braft::pb::kv_client::KvClient;
use braft::pb::{GetRequest, PutRequest};
use braft::store::{MemLogStore, MemSnapshotStore};
use braft::transport::{BoxConn, DialFuture, Dialer, Incoming};
use braft::{Config, KvService, Node};

const RPORT: u16 = 15000;
const HPORT: u16 = 15002;

/// Dials through turmoil's network.
struct SimDialer;

impl Dialer for SimDialer {
    fn dial(&self, addr: &str) -> DialFuture {
        let addr = addr.to_string();
        Box::pin(async move { Ok(BoxConn::new(turmoil::net::TcpStream::connect(addr).await?)) })
    }
}

/// Accepts on turmoil's network.
fn listen(port: u16) -> Incoming {
    Box::pin(futures::stream::unfold(
        None,
        move |l: Option<turmoil::net::TcpListener>| async move {
            let l = match l {
                Some(l) => l,
                None => match turmoil::net::TcpListener::bind((IpAddr::from([0, 0, 0, 0]), port)).await {
                    Ok(l) => l,
                    Err(e) => return Some((Err(e), None)),
                },
            };
            let r = l.accept().await.map(|(s, _)| BoxConn::new(s));
            Some((r, Some(l)))
        },
    ))
}

/// A tonic connector for the client host.
#[derive(Clone)]
struct SimConnector;

impl tower::Service<tonic::codegen::http::Uri> for SimConnector {
    type Response = hyper_util::rt::TokioIo<BoxConn>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: tonic::codegen::http::Uri) -> Self::Future {
        let addr = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        Box::pin(async move {
            Ok(hyper_util::rt::TokioIo::new(BoxConn::new(
                turmoil::net::TcpStream::connect(addr).await?,
            )))
        })
    }
}

#[test]
fn three_simulated_hosts_form_a_cluster_and_serve() {
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(120))
        .rng_seed(7)
        .build();
    let tmp = Arc::new(tempfile::tempdir().unwrap());
    let names = ["n1", "n2", "n3"];
    for (i, name) in names.iter().enumerate() {
        let tmp = tmp.clone();
        sim.host(*name, move || {
            let dir = tmp.path().join(format!("n{i}"));
            async move {
                let ip = turmoil::lookup(format!("n{}", i + 1));
                let peers: Vec<String> = (1..=3)
                    .map(|j| SocketAddr::new(turmoil::lookup(format!("n{j}")), RPORT).to_string())
                    .collect();
                let node = Node::builder()
                    .config(Config::default())
                    .configure(move |c| {
                        c.discovery = Discovery::Static(peers);
                        c.data_dir = Some(dir);
                        c.ip = Some(ip);
                        c.heartbeat_ms = 50;
                        c.election_timeout_ms = 400;
                    })
                    .service(KvService::default())
                    .log_store(Arc::new(MemLogStore::new()))
                    .snapshot_store(Arc::new(MemSnapshotStore::default()))
                    .rpc_incoming(listen(RPORT), SocketAddr::new(ip, RPORT))
                    .http_incoming(listen(HPORT), SocketAddr::new(ip, HPORT))
                    .dialer(SimDialer)
                    .start()
                    .await?;
                // Serve until the simulation ends.
                std::future::pending::<()>().await;
                drop(node);
                Ok(())
            }
        });
    }
    sim.client("client", async move {
        let channel = |host: &str| {
            tonic::transport::Endpoint::from_shared(format!("http://{host}:{RPORT}"))
                .unwrap()
                .connect_with_connector_lazy(SimConnector)
        };
        let mut first = KvClient::new(channel("n1"));
        // Retry until a leader is elected.
        let version = loop {
            let put = PutRequest {
                key: "k".into(),
                value: b"v".to_vec(),
                prev_version: None,
                prev_value: None,
            };
            match first.put(put).await {
                Ok(r) => break r.into_inner().version,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        assert!(version > 0);
        for host in ["n1", "n2", "n3"] {
            let got = KvClient::new(channel(host))
                .get(GetRequest {
                    key: "k".into(),
                    consistency: 0,
                })
                .await?
                .into_inner();
            assert!(got.found, "{host}");
            assert_eq!(got.value, b"v", "{host}");
            assert_eq!(got.version, version, "{host}");
        }
        Ok(())
    });
    sim.run().expect("the simulation passes");
}
