//! braft's demo use case: a periodic job that runs only on the leader.
//!
//! Start three of these (the README's demo environment works: `BRAFT_RPORT`, `BRAFT_HPORT`,
//! `BRAFT_DISCOVERY`, `BRAFT_DATA`), kill the leader, and watch the ticking move:
//! `cargo run --example leader_ticker`
//!
//! The job starts when this node becomes the leader and its term's first entry is
//! applied, so it sees every write acknowledged before; it stops the moment the node
//! stops leading. Each tick writes `ticker/last` through Raft.
use std::time::Duration;

use braft::kv::KvCommand;
use braft::{KvService, Node, Role};

#[tokio::main]
async fn main() -> Result<(), braft::Error> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let node = Node::builder()
        .service(KvService::default())
        .biz_data(|| serde_json::json!({ "job": "ticker" }))
        .on_leader_change(|e| println!("node {} is now {:?} (term {})", e.node_id, e.role, e.term))
        .start()
        .await?;

    // The async side: follow the roles and run the job while leading.
    let ticker = node.clone();
    tokio::spawn(async move {
        let mut roles = ticker.roles();
        loop {
            if roles.wait_for(|e| e.role == Role::Leader).await.is_err() {
                return;
            }
            let term = roles.borrow().term;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        n += 1;
                        let cmd = KvCommand::Put {
                            map: String::new(),
                            key: "ticker/last".into(),
                            value: format!("node {} term {term} tick {n}", ticker.id()).into_bytes(),
                            precondition: None,
                        };
                        if let Err(e) = ticker.write::<KvService>(cmd).await {
                            println!("tick {n} not written: {e}");
                        }
                    }
                    changed = roles.changed() => {
                        if changed.is_err() || roles.borrow().role != Role::Leader {
                            println!("stopped ticking after {n} ticks");
                            break;
                        }
                    }
                }
            }
        }
    });
    node.run_until_shutdown().await
}
