//! The admin API on real nodes (the parts built so far): the member list from the
//! leader's view, asked of any node, and a snapshot on demand.

mod common;

use std::time::Duration;

use common::{serial, Cluster};

const LIMIT: Duration = Duration::from_secs(20);

/// A follower answers `GET /v1/cluster/members` with the leader's view: three healthy
/// voters with their addresses, the leader named, the term; `POST /v1/cluster/snapshot`
/// answers the index its snapshot covers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_from_any_node_and_a_snapshot_on_demand() {
    let _g = serial().await;
    let c = Cluster::start(3, |_| {}).await;
    let leader = c.wait_leader(LIMIT).await;
    let follower = (leader + 1) % 3;
    for i in 0..20 {
        c.put_ok(leader, &format!("k{i}"), "v").await;
    }
    c.wait_for("the leader's first autopilot round", LIMIT, |c| {
        c.node(leader).autopilot_report().servers.len() == 3
    })
    .await;
    let v = c.get_json(follower, "/v1/cluster/members").await;
    assert_eq!(v["leader"], c.node(leader).id().to_string(), "{v}");
    assert!(v["term"].as_u64().unwrap() >= 1);
    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{v}");
    for m in members {
        let id: u64 = m["id"].as_str().unwrap().parse().unwrap();
        let i = (0..3).find(|i| c.node(*i).id() == id).expect("a known member");
        assert_eq!(m["rpcAddr"], c.node(i).peer().rpc_addr, "{m}");
        assert_eq!(m["httpAddr"], c.node(i).peer().http_addr, "{m}");
        assert_eq!(m["suffrage"], "voter");
        assert_eq!(m["health"], "healthy");
        assert!(m["lag"].as_u64().unwrap() <= 20, "{m}");
        assert!(m["matchIndex"].as_u64().is_some() && m["lastContactMs"].as_u64().is_some());
    }

    let applied = c.node(follower).applied_index();
    let r = c
        .client
        .post(c.url(follower, "/v1/cluster/snapshot"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let index = r.json::<serde_json::Value>().await.unwrap()["index"].as_u64().unwrap();
    assert!(index >= applied, "{index} < {applied}");
    assert_eq!(c.node(follower).raft_status().snapshot_index, index);
    c.shutdown().await;
}
