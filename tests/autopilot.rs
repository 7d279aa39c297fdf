//! Autopilot on a live cluster: the voter cap, replacing a dead voter, the quorum floor,
//! the return of a removed node, and leaving.

mod common;

use std::time::Duration;

use braft::Config;
use common::{serial, test_config, Cluster};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(30);

fn three_voters(c: &mut Config) {
    test_config(c);
    c.max_voters = 3;
    c.dead_node_timeout_ms = 2_000;
}

async fn autopilot(c: &Cluster, i: usize) -> Value {
    let r = c.client.get(c.url(i, "/v1/cluster/autopilot")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// A fourth node stays a learner under a cap of three voters. When a voter dies, the
/// learner is promoted, the dead voter is removed, and when the dead node comes back it
/// rejoins as a learner under its old identity.
#[tokio::test]
async fn a_dead_voter_is_replaced_and_comes_back_as_a_learner() {
    let _g = serial().await;
    let mut c = Cluster::start(3, three_voters).await;
    let leader = c.wait_leader(LIMIT).await;
    c.put_ok(leader, "before", "1").await;
    let fourth = c.add_node().await;
    let fourth_id = c.node(fourth).id();
    c.wait_for("the fourth node to join as a learner", LIMIT, |c| {
        c.node(leader).raft_status().members.contains_key(&fourth_id)
    })
    .await;
    // The cap holds it back, and autopilot says why (asked through a follower).
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let r = autopilot(&c, follower).await;
        if r["blocked"].to_string().contains("BRAFT_MAX_VOTERS") {
            assert_eq!(r["reporter"], c.node(leader).id());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never blocked by the cap: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!c.node(leader).raft_status().voters.contains(&fourth_id));

    // A voter (not the leader) dies.
    let victim = (0..3).find(|i| *i != leader).unwrap();
    let victim_id = c.node(victim).id();
    c.stop(victim).await;
    c.wait_for("the learner to replace the dead voter", LIMIT, |c| {
        let st = c.node(leader).raft_status();
        st.voters.contains(&fourth_id) && !st.members.contains_key(&victim_id) && st.voters.len() == 3
    })
    .await;
    // Both decisions are in the log (the entry lands just after the change commits).
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let events = autopilot(&c, leader).await["events"].to_string();
        let promoted = events.contains(&format!("promote learner {fourth_id} to voter"));
        if promoted && events.contains(&format!("remove dead voter {victim_id}")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{events}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No write was lost on the way.
    assert_eq!(c.get(fourth, "before", "linearizable").await.as_deref(), Some("1"));

    // The removed node returns: same id, back as a learner (the cap is full).
    c.restart(victim).await;
    assert_eq!(c.node(victim).id(), victim_id);
    c.wait_for("the returning node to rejoin", LIMIT, |c| {
        let st = c.node(leader).raft_status();
        st.members.contains_key(&victim_id) && !st.voters.contains(&victim_id)
    })
    .await;
    assert_eq!(c.get(victim, "before", "linearizable").await.as_deref(), Some("1"));
    c.shutdown().await;
}

/// With three voters and a quorum floor of three, a dead voter is reported dead but
/// never removed: repeated failures cannot shrink the cluster.
#[tokio::test]
async fn the_quorum_floor_keeps_a_dead_voter() {
    let _g = serial().await;
    let mut c = Cluster::start(3, three_voters).await;
    let leader = c.wait_leader(LIMIT).await;
    let victim = (0..3).find(|i| *i != leader).unwrap();
    let victim_id = c.node(victim).id();
    c.stop(victim).await;
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let r = autopilot(&c, leader).await;
        let dead = r["servers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == victim_id && s["health"] == "dead");
        if dead {
            assert!(r["blocked"].to_string().contains("BRAFT_MIN_QUORUM"), "{r}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never reported dead: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let st = c.node(leader).raft_status();
    assert_eq!(st.voters.len(), 3, "{st:?}");
    assert!(st.voters.contains(&victim_id));
    // /raft shows the dead voter as such.
    let raft: Value = c.get_json(leader, "/raft").await;
    let entry = raft["raftServers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"].as_str() == Some(victim_id.to_string().as_str()))
        .cloned()
        .unwrap();
    assert_eq!(entry["state"], "voter");
    assert_eq!(entry["health"], "dead");
    c.shutdown().await;
}

/// A leader that leaves hands leadership over first, then is removed; the cluster
/// keeps serving.
#[tokio::test]
async fn a_leaving_leader_hands_over_then_is_removed() {
    let _g = serial().await;
    let c = Cluster::start(3, test_config).await;
    let leader = c.wait_leader(LIMIT).await;
    let leader_id = c.node(leader).id();
    c.put_ok(leader, "k", "v").await;
    c.node(leader).leave().await.expect("leaves");
    let other = (0..3).find(|i| *i != leader).unwrap();
    let st = c.node(other).raft_status();
    assert!(!st.members.contains_key(&leader_id), "{st:?}");
    assert_eq!(st.voters.len(), 2);
    assert_ne!(st.leader, Some(leader_id));
    c.put_ok(other, "k2", "v2").await;
    c.shutdown().await;
}

fn dead_after_two_seconds(c: &mut Config) {
    test_config(c);
    c.dead_node_timeout_ms = 2_000;
}

/// Simulation seed 21805: two removed nodes that restart together each still count the
/// other as a member, and each "follows" the leader its stored vote names. Asked first
/// (the static list puts them first), each vouched for the other, and both waited for a
/// leader forever. Only a leader's own word counts now: both rejoin.
#[tokio::test]
async fn two_removed_nodes_that_restart_together_both_rejoin() {
    let _g = serial().await;
    let mut c = Cluster::start(5, dead_after_two_seconds).await;
    let mut leader = c.wait_leader(LIMIT).await;
    if leader < 2 {
        // The victims are the first two in everyone's list; the leader must be another.
        c.node(leader).transfer_leader(c.node(2).id()).await.unwrap();
        c.wait_for("node 2 to lead", LIMIT, |c| c.node(2).is_leader()).await;
        leader = 2;
    }
    c.put_ok(leader, "k", "1").await;
    let ids = [c.node(0).id(), c.node(1).id()];
    c.stop(0).await;
    c.stop(1).await;
    c.wait_for("autopilot to remove both dead voters", LIMIT, |c| {
        let st = c.node(leader).raft_status();
        ids.iter().all(|id| !st.members.contains_key(id))
    })
    .await;
    // Their logs still list each other (they never saw their removals).
    c.restart(0).await;
    c.restart(1).await;
    c.wait_for("both to be members again", LIMIT, |c| {
        let st = c.node(leader).raft_status();
        ids.iter().all(|id| st.members.contains_key(id))
    })
    .await;
    assert_eq!(c.get(0, "k", "linearizable").await.as_deref(), Some("1"));
    c.shutdown().await;
}
