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

    // Every replica's state hash at one applied index: they agree.
    let r = c.client.get(c.url(follower, "/v1/cluster/hash")).send().await.unwrap();
    let status = r.status();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["agree"], true);
    assert!(v["index"].as_u64().unwrap() >= 20);
    let hashes: Vec<&serde_json::Value> = v["members"].as_array().unwrap().iter().map(|m| &m["hash"]).collect();
    assert_eq!(hashes.len(), 3);
    assert!(hashes.iter().all(|h| h.is_u64() && *h == hashes[0]), "{v}");

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

async fn post(c: &Cluster, i: usize, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = c.client.post(c.url(i, path)).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Membership by hand through a follower: add a learner (twice: idempotent), promote,
/// demote and remove it; a demote that would leave no healthy majority is a 409 that
/// changes nothing; leadership moves on request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_by_hand_is_safe_and_idempotent() {
    let _g = serial().await;
    // Autopilot would promote learners by itself; give it a long stabilization so the
    // test sees its own steps.
    let mut c = Cluster::start(3, |cfg| cfg.stabilization_ms = 600_000).await;
    let leader = c.wait_leader(LIMIT).await;
    let follower = (leader + 1) % 3;

    // A learner at an address nothing answers (its log simply waits).
    let add = serde_json::json!({"id": "424242", "rpcAddr": "127.0.0.1:9", "role": "learner"});
    for _ in 0..2 {
        let (s, v) = post(&c, follower, "/v1/cluster/members", add.clone()).await;
        assert_eq!(s, 200, "{v}");
    }
    let st = c.node(leader).raft_status();
    assert!(st.members.contains_key(&424242) && !st.voters.contains(&424242));
    let moved = serde_json::json!({"id": 424242, "rpcAddr": "127.0.0.1:10"});
    let (s, v) = post(&c, follower, "/v1/cluster/members", moved).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("refused")), "{v}");
    let r = c
        .client
        .delete(c.url(follower, "/v1/cluster/members/424242"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!c.node(leader).raft_status().members.contains_key(&424242));
    let r = c
        .client
        .delete(c.url(follower, "/v1/cluster/members/424242"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "removing a non-member is a no-op");

    // Demote a follower to learner and promote it back.
    let other = (leader + 2) % 3;
    let id = c.node(other).id();
    let (s, v) = post(
        &c,
        follower,
        &format!("/v1/cluster/members/{id}/demote"),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(!c.node(leader).raft_status().voters.contains(&id));
    let (s, _) = post(
        &c,
        follower,
        &format!("/v1/cluster/members/{id}/demote"),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(s, 200, "demoting a learner is a no-op");
    let (s, v) = post(
        &c,
        follower,
        &format!("/v1/cluster/members/{id}/promote"),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(c.node(leader).raft_status().voters.contains(&id));

    // With one voter down, demoting another would leave 1 healthy voter of 2: refused.
    c.stop(other).await;
    c.wait_for("the leader to see the node unhealthy", LIMIT, |c| {
        c.node(leader)
            .autopilot_report()
            .servers
            .iter()
            .any(|s| s.id == id && s.health != "healthy")
    })
    .await;
    let fid = c.node(follower).id();
    let (s, v) = post(
        &c,
        leader,
        &format!("/v1/cluster/members/{fid}/demote"),
        serde_json::json!({}),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (409, Some("refused")), "{v}");
    assert!(v["error"].as_str().unwrap().contains("quorum"), "{v}");
    assert_eq!(c.node(leader).raft_status().voters.len(), 3, "nothing changed");
    c.restart(other).await;

    // Leadership moves to the named voter, through any node.
    let (s, v) = post(&c, other, "/v1/cluster/leader", serde_json::json!({"to": fid})).await;
    assert_eq!(s, 200, "{v}");
    c.wait_for("the new leader", LIMIT, |c| c.node(follower).is_leader())
        .await;
    let (s, v) = post(&c, follower, "/v1/cluster/leader", serde_json::json!({"to": 777})).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("refused")), "{v}");
    let (s, _) = post(&c, follower, "/v1/cluster/members/abc/promote", serde_json::json!({})).await;
    assert_eq!(s, 400);
    c.shutdown().await;
}
