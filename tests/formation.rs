//! The bootstrap rule's safety mechanism: a pristine node backs at most one initializer,
//! ever, and remembers it across restarts.

mod common;

use braft::config::{Config, Discovery};
use braft::pb;
use braft::{KvService, Node};

async fn promise(addr: &str, initializer: u64) -> String {
    // The Promise RPC carries wire-encoded messages; mirror its two shapes here.
    #[derive(serde::Serialize)]
    struct PromiseRequest {
        initializer: u64,
    }
    #[derive(serde::Deserialize, Debug)]
    enum PromiseReply {
        Granted,
        Refused(String),
    }
    let mut data = vec![1u8];
    rmp_serde::encode::write_named(&mut data, &PromiseRequest { initializer }).unwrap();
    let mut client = pb::raft_client::RaftClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let resp = client.promise(pb::Opaque { data }).await.unwrap().into_inner();
    match rmp_serde::from_slice::<PromiseReply>(&resp.data[1..]).unwrap() {
        PromiseReply::Granted => "granted".into(),
        PromiseReply::Refused(why) => format!("refused: {why}"),
    }
}

async fn start(dir: &std::path::Path, rpc: tokio::net::TcpListener, peers: Vec<String>) -> Node {
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dir = dir.to_path_buf();
    Node::builder()
        .config(Config::default())
        .configure(move |c| {
            common::test_config(c);
            c.discovery = Discovery::Static(peers);
            c.data_dir = Some(dir);
        })
        .service(KvService::default())
        .rpc_listener(rpc)
        .http_listener(http)
        .start()
        .await
        .unwrap()
}

/// A pristine node that is still waiting for its peers backs the first initializer that
/// asks, refuses any other — also after a restart — and stays pristine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pristine_node_backs_only_one_initializer() {
    let _g = common::serial().await;
    common::init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let rpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = rpc.local_addr().unwrap().to_string();
    // Two peers that never answer: the node waits, pristine, and never bootstraps.
    let peers = vec![addr.clone(), "127.0.0.1:1".into(), "127.0.0.1:2".into()];
    let node = start(tmp.path(), rpc, peers.clone()).await;
    assert_eq!(promise(&addr, 7).await, "granted");
    assert_eq!(promise(&addr, 7).await, "granted", "asking again is idempotent");
    assert!(promise(&addr, 5).await.contains("already backs node 7"));
    node.shutdown().await;

    let rpc = tokio::net::TcpListener::bind(&addr).await.unwrap();
    let node = start(tmp.path(), rpc, peers).await;
    assert!(
        promise(&addr, 5).await.contains("already backs node 7"),
        "the promise survives a restart"
    );
    assert!(!node.raft_status().initialized, "it formed no cluster on its own");
    node.shutdown().await;
}
