//! The network seam: three nodes on an in-memory network (tokio duplex pipes, no OS
//! sockets at all) form a cluster and serve writes and linearizable reads. This is the
//! hook a deterministic simulation plugs its network into.

mod common;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use braft::config::Discovery;
use braft::kv::{KvCommand, KvOutput, KvQuery, KvQueryOutput};
use braft::transport::{BoxConn, DialFuture, Dialer, Incoming};
use braft::{Config, Consistency, KvService, Node};
use common::{serial, test_config};
use tokio::sync::mpsc;

/// Listeners by address; a dial hands the server end of a fresh pipe to the listener.
#[derive(Clone, Default)]
struct MemNet {
    listeners: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<BoxConn>>>>,
}

impl MemNet {
    fn listen(&self, addr: SocketAddr) -> Incoming {
        let (tx, rx) = mpsc::unbounded_channel();
        self.listeners.lock().unwrap().insert(addr.to_string(), tx);
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|c| (Ok(c), rx))
        }))
    }
}

impl Dialer for MemNet {
    fn dial(&self, addr: &str) -> DialFuture {
        let target = self.listeners.lock().unwrap().get(addr).cloned();
        Box::pin(async move {
            let target = target.ok_or_else(|| io::Error::new(io::ErrorKind::ConnectionRefused, "nobody listens"))?;
            let (client, server) = tokio::io::duplex(1 << 16);
            target
                .send(BoxConn::new(server))
                .map_err(|_| io::Error::new(io::ErrorKind::ConnectionRefused, "listener gone"))?;
            Ok(BoxConn::new(client))
        })
    }
}

async fn start(net: &MemNet, i: usize, peers: &[String], dir: &std::path::Path) -> Node {
    let rpc: SocketAddr = format!("10.0.0.{i}:15000").parse().unwrap();
    let http: SocketAddr = format!("10.0.0.{i}:15002").parse().unwrap();
    let peers = peers.to_vec();
    let dir = dir.join(format!("n{i}"));
    Node::builder()
        .config(Config::default())
        .configure(move |c| {
            test_config(c);
            c.discovery = Discovery::Static(peers);
            c.data_dir = Some(dir);
            c.ip = Some(rpc.ip());
        })
        .service(KvService::default())
        .rpc_incoming(net.listen(rpc), rpc)
        .http_incoming(net.listen(http), http)
        .dialer(net.clone())
        .start()
        .await
        .expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_an_in_memory_network() {
    let _g = serial().await;
    common::init_tracing();
    let net = MemNet::default();
    let tmp = tempfile::tempdir().unwrap();
    let peers: Vec<String> = (1..=3).map(|i| format!("10.0.0.{i}:15000")).collect();
    let mut nodes = Vec::new();
    for i in 1..=3 {
        nodes.push(start(&net, i, &peers, tmp.path()).await);
    }
    // A write through node 3, forwarded to whichever node leads, over the pipes.
    let put = KvCommand::Put {
        map: String::new(),
        key: "k".into(),
        value: b"v".to_vec(),
        precondition: None,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match nodes[2].write::<KvService>(put.clone()).await {
            Ok(KvOutput::Put { .. }) => break,
            other => assert!(std::time::Instant::now() < deadline, "no write: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = nodes[0].raft_status();
    assert_eq!(st.voters.len(), 3, "{st:?}");
    assert!(st.members.values().all(|p| p.rpc_addr.starts_with("10.0.0.")), "{st:?}");
    for n in &nodes {
        let got = n
            .read::<KvService>(
                KvQuery::Get {
                    map: String::new(),
                    key: "k".into(),
                },
                Consistency::Linearizable,
            )
            .await
            .unwrap();
        assert!(
            matches!(got, KvQueryOutput::Value(Some(ref v)) if v.value == b"v"),
            "{got:?}"
        );
    }
    for n in nodes {
        n.shutdown().await;
    }
}
