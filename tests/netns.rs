//! A real multi-host test: braft processes in their own network namespaces on a bridge,
//! finding each other by mDNS alone, with autopilot and an nft partition of the leader.
//!
//! Needs root, `ip` and `nft` (CI runs as root; `scripts/test.sh` installs nftables when
//! it is missing). Without them the test says why and passes as skipped.
//!
//! Story (3 voters max, quorum floor 3, dead-node timeout 4 s, stabilization 2 s):
//! 1. n1..n3 start knowing nothing of each other and form one cluster by mDNS.
//! 2. A voter is killed with SIGKILL. Autopilot reports it dead but keeps it: removing
//!    it would go below the quorum floor.
//! 3. A new node starts: it joins as a learner, is promoted once stable, and only then
//!    is the dead voter removed.
//! 4. The leader is cut off with nft rules: the majority elects a new leader and keeps
//!    taking writes; the old leader takes none. After healing, the old leader follows
//!    the new one and holds every acknowledged write.
//!
//! Everything the test creates (namespaces, veth pairs, the bridge, processes) is
//! removed when it ends, pass or fail.

mod common;

use std::time::{Duration, Instant};

use common::lab::{netns_possible, Lab};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(45);

/// The settings of this story's nodes.
fn env(lab: &Lab) -> Vec<(&'static str, String)> {
    vec![
        ("BRAFT_DISCOVERY", format!("mdns:_{}._tcp", lab.tag)),
        ("BRAFT_HEARTBEAT_MS", "100".into()),
        ("BRAFT_ELECTION_TIMEOUT_MS", "500".into()),
        ("BRAFT_MAX_VOTERS", "3".into()),
        ("BRAFT_MIN_QUORUM", "3".into()),
        ("BRAFT_DEAD_NODE_TIMEOUT", "4s".into()),
        ("BRAFT_STABILIZATION", "2s".into()),
        ("RUST_LOG", "info".into()),
    ]
}

struct Client {
    http: reqwest::Client,
}

impl Client {
    async fn json(&self, url: &str) -> Option<Value> {
        let r = self.http.get(url).send().await.ok()?;
        r.json().await.ok()
    }

    /// Polls until `f` returns `Some`, or fails naming what it waited for.
    async fn until<T>(&self, lab: &Lab, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(v) = f().await {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                lab.logs(25)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn put(&self, url: &str, value: &str) -> u16 {
        match self.http.put(url).body(value.to_string()).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }
}

/// The cluster as host `i` sees it: (leader id, voter ids, learner ids).
fn membership(raft: &Value) -> (String, Vec<String>, Vec<String>) {
    let mut voters = Vec::new();
    let mut learners = Vec::new();
    for s in raft["raftServers"].as_array().into_iter().flatten() {
        let id = s["id"].as_str().unwrap_or_default().to_string();
        if s["state"] == "voter" {
            voters.push(id);
        } else {
            learners.push(id);
        }
    }
    voters.sort();
    learners.sort();
    (
        raft["leaderID"].as_str().unwrap_or_default().to_string(),
        voters,
        learners,
    )
}

async fn node_id(c: &Client, lab: &Lab, i: usize) -> String {
    c.until(lab, &format!("n{i} to answer"), async || {
        let v = c.json(&lab.url(i, "/raft")).await?;
        v["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["address"] == lab.rpc_addr(i))
            .and_then(|n| n["serverID"].as_str().map(str::to_string))
    })
    .await
}

#[tokio::test]
async fn mdns_cluster_across_namespaces_survives_death_and_partition() {
    if !netns_possible() {
        eprintln!(
            "SKIPPED netns test: needs root, `ip` and `nft` (root: {}, ip: {}, nft: {}); \
             scripts/test.sh installs nftables when run as root",
            unsafe { libc::geteuid() } == 0,
            common::lab::have("ip"),
            common::lab::have("nft")
        );
        return;
    }
    let mut lab = Lab::new(4);
    let env = env(&lab);
    let c = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    };

    // 1. Formation by mDNS alone.
    let t0 = Instant::now();
    for i in 1..=3 {
        lab.start(i, &env);
    }
    let ids: Vec<String> = {
        let mut v = Vec::new();
        for i in 1..=3 {
            v.push(node_id(&c, &lab, i).await);
        }
        v
    };
    let mut all3 = ids.clone();
    all3.sort();
    c.until(&lab, "one cluster of n1..n3", async || {
        let mut leader = None;
        for i in 1..=3 {
            let (l, voters, _) = membership(&c.json(&lab.url(i, "/raft")).await?);
            if l.is_empty() || voters != all3 || leader.get_or_insert(l.clone()) != &l {
                return None;
            }
        }
        Some(())
    })
    .await;
    assert_eq!(c.put(&lab.url(1, "/v1/kv/formed"), "yes").await, 200);
    let formation = t0.elapsed();
    let raft = c.json(&lab.url(2, "/raft")).await.unwrap();
    assert_eq!(raft["discovery"], format!("mdns://_{}._tcp", lab.tag));

    // 2. Kill a voter that does not lead.
    let (leader_id, _, _) = membership(&raft);
    let leader = 1 + ids.iter().position(|id| *id == leader_id).unwrap();
    let victim = (1..=3).find(|i| *i != leader).unwrap();
    let victim_id = ids[victim - 1].clone();
    lab.kill(victim);
    let t_kill = Instant::now();
    let dead = c
        .until(&lab, "the killed voter to be reported dead", async || {
            let r = c.json(&lab.url(leader, "/v1/cluster/autopilot")).await?;
            let dead = r["servers"].as_array()?.iter().any(|s| {
                s["id"].as_u64().map(|v| v.to_string()).as_deref() == Some(victim_id.as_str()) && s["health"] == "dead"
            });
            dead.then_some(r)
        })
        .await;
    let detection = t_kill.elapsed();
    assert!(dead["blocked"].to_string().contains("BRAFT_MIN_QUORUM"), "{dead}");
    let (_, voters, _) = membership(&c.json(&lab.url(leader, "/raft")).await.unwrap());
    assert!(voters.contains(&victim_id), "kept at the quorum floor: {voters:?}");

    // 3. A new node joins as a learner, is promoted, and then the dead voter goes.
    lab.start(4, &env);
    let t_join = Instant::now();
    let new_id = node_id(&c, &lab, 4).await;
    c.until(&lab, "n4 as a learner", async || {
        let (_, _, learners) = membership(&c.json(&lab.url(leader, "/raft")).await?);
        learners.contains(&new_id).then_some(())
    })
    .await;
    let as_learner = t_join.elapsed();
    c.until(&lab, "n4 promoted to voter", async || {
        let (_, voters, _) = membership(&c.json(&lab.url(leader, "/raft")).await?);
        voters.contains(&new_id).then_some(())
    })
    .await;
    let promotion = t_join.elapsed();
    c.until(&lab, "the dead voter removed", async || {
        let (_, voters, learners) = membership(&c.json(&lab.url(leader, "/raft")).await?);
        (voters.len() == 3 && !voters.contains(&victim_id) && !learners.contains(&victim_id)).then_some(())
    })
    .await;
    let removal = t_kill.elapsed();

    // 4. Partition the leader away from everyone.
    let mut acked = vec![("formed".to_string(), "yes".to_string())];
    for k in 0..5 {
        let key = format!("before-{k}");
        assert_eq!(c.put(&lab.url(leader, &format!("/v1/kv/{key}")), "1").await, 200);
        acked.push((key, "1".into()));
    }
    let majority: Vec<usize> = [1, 2, 3, 4]
        .into_iter()
        .filter(|i| *i != leader && *i != victim)
        .collect();
    lab.partition(leader, true, true);
    let t_cut = Instant::now();
    // `/ready` answers from local state, so polling it does not slow the measurement.
    let new_leader = c
        .until(&lab, "a new leader on the majority side", async || {
            let a = c.json(&lab.url(majority[0], "/ready")).await?;
            let b = c.json(&lab.url(majority[1], "/ready")).await?;
            let l = a["leader"].as_str()?.to_string();
            (l != leader_id && b["leader"].as_str() == Some(l.as_str())).then_some(l)
        })
        .await;
    let failover = t_cut.elapsed();
    for k in 0..5 {
        let key = format!("during-{k}");
        assert_eq!(c.put(&lab.url(majority[0], &format!("/v1/kv/{key}")), "2").await, 200);
        acked.push((key, "2".into()));
    }
    // The old leader commits nothing on its own (its write times out, unacknowledged).
    let status = c.put(&lab.url(leader, "/v1/kv/minority"), "x").await;
    assert_ne!(status, 200, "the isolated old leader acknowledged a write");

    lab.heal();
    c.until(&lab, "the old leader to follow the new one", async || {
        let (l, _, _) = membership(&c.json(&lab.url(leader, "/raft")).await?);
        (l == new_leader).then_some(())
    })
    .await;
    for (key, value) in &acked {
        let got = c
            .until(&lab, &format!("{key} on the old leader"), async || {
                let r = c
                    .http
                    .get(lab.url(leader, &format!("/v1/kv/{key}?consistency=stale")))
                    .send()
                    .await
                    .ok()?;
                if r.status() == 200 {
                    r.text().await.ok()
                } else {
                    None
                }
            })
            .await;
        assert_eq!(&got, value, "{key}");
    }

    eprintln!(
        "netns timings: formation {:.2}s; dead-voter detection {:.2}s; n4 learner after {:.2}s, voter after {:.2}s; \
         dead voter removed {:.2}s after the kill; leader-partition failover {:.2}s",
        formation.as_secs_f64(),
        detection.as_secs_f64(),
        as_learner.as_secs_f64(),
        promotion.as_secs_f64(),
        removal.as_secs_f64(),
        failover.as_secs_f64()
    );
}
