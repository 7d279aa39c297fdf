//! `braft ctl` and `braft restore`: the real binary against a real 3-node cluster, for
//! every command and every exit code (0 done, 1 failed, 2 bad usage); and a backup of
//! 10,000 keys restored into a new one-node cluster that serves every key back.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, serial, Cluster};

const LIMIT: Duration = Duration::from_secs(20);

/// What one run of the binary did.
struct Run {
    code: Option<i32>,
    out: String,
    err: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\nstdout: {}\nstderr: {}", self.code, self.out, self.err)
    }
}

impl Run {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// Runs `braft <args>` off the async runtime (the cluster lives on it).
async fn braft(args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_braft"))
            .args(&args)
            .env_remove("BRAFT_ENDPOINTS")
            .env("RUST_LOG", "error")
            .output()
            .expect("run braft");
        Run {
            code: out.status.code(),
            out: String::from_utf8_lossy(&out.stdout).into_owned(),
            err: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

/// `braft ctl --endpoints <e> <args>`.
async fn ctl(endpoint: &str, args: &[&str]) -> Run {
    let mut all = vec!["ctl", "--endpoints", endpoint];
    all.extend_from_slice(args);
    braft(&all).await
}

fn ok(r: &Run) {
    assert_eq!(r.code, Some(0), "{r:?}");
}

fn failed(r: &Run, says: &str) {
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.err.contains(says), "expected '{says}' in: {r:?}");
}

/// An operator drives a cluster through one follower's HTTP address (the default kind of
/// endpoint): status and members, keys with compare-and-set, the distributor, a
/// snapshot, the hash check, a backup, membership by hand, and a leadership transfer.
/// Each success exits 0; each refusal, failed compare or missing key exits 1 and says
/// why; bad usage exits 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ctl_command_against_a_real_cluster() {
    let _g = serial().await;
    let c = Cluster::start(3, |_| {}).await;
    let leader = c.wait_leader(LIMIT).await;
    let follower = (leader + 1) % 3;
    let ep = c.members[follower].http.to_string();
    let ep = ep.as_str();
    let id = |i: usize| c.node(i).id().to_string();
    c.wait_for("the leader's first autopilot round", LIMIT, |c| {
        c.node(leader).autopilot_report().servers.len() == 3
    })
    .await;

    // status: one row per member, the leader marked, as a table and as JSON.
    let r = ctl(ep, &["status"]).await;
    ok(&r);
    assert!(r.out.starts_with("ID"), "{r:?}");
    assert_eq!(r.out.lines().count(), 4, "{r:?}");
    let v = ctl(ep, &["status", "-o", "json"]).await.json();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{v}");
    let leaders: Vec<&serde_json::Value> = rows.iter().filter(|r| r["role"] == "leader").collect();
    assert_eq!(leaders.len(), 1, "{v}");
    assert_eq!(leaders[0]["id"], id(leader));
    for row in rows {
        assert_eq!(row["leader"], id(leader), "{row}");
        assert_eq!(row["health"], "healthy", "{row}");
        assert!(row["rssBytes"].as_u64().unwrap() > 0, "{row}");
    }

    // members.
    let v = ctl(ep, &["-o", "json", "members"]).await.json();
    assert_eq!(v["leader"], id(leader), "{v}");
    assert_eq!(v["members"].as_array().unwrap().len(), 3, "{v}");

    // Keys: put, compare-and-set by version and by value, get, list, del.
    let r = ctl(ep, &["put", "app/a", "one"]).await;
    ok(&r);
    assert!(r.out.contains("version"), "{r:?}");
    let v = ctl(ep, &["get", "app/a", "-o", "json"]).await.json();
    assert_eq!(v["value"], "one");
    let version = v["version"].as_u64().unwrap().to_string();
    failed(
        &ctl(ep, &["put", "app/a", "two", "--prev-version", "1"]).await,
        "compare failed",
    );
    ok(&ctl(ep, &["put", "app/a", "two", "--prev-version", &version]).await);
    failed(
        &ctl(ep, &["put", "app/a", "three", "--prev-value", "one"]).await,
        "compare failed",
    );
    ok(&ctl(ep, &["put", "app/a", "three", "--prev-value", "two"]).await);
    let r = ctl(ep, &["get", "app/a", "--consistency", "stale"]).await;
    ok(&r);
    assert_eq!(r.out.trim(), "three", "{r:?}");
    ok(&ctl(ep, &["put", "app/b", "x"]).await);
    let r = ctl(ep, &["list", "--prefix", "app/"]).await;
    ok(&r);
    assert_eq!(r.out.lines().collect::<Vec<_>>(), ["app/a", "app/b"], "{r:?}");
    let v = ctl(ep, &["del", "app/b", "-o", "json"]).await.json();
    assert_eq!(v["existed"], true, "{v}");
    failed(&ctl(ep, &["get", "app/b"]).await, "not found");

    // The distributor.
    ok(&ctl(ep, &["distribute", "set", "jobs", "a", "b", "c"]).await);
    let v = ctl(ep, &["distribute", "get", "jobs", "-o", "json"]).await.json();
    assert_eq!(v["items"].as_object().unwrap().len(), 3, "{v}");
    failed(&ctl(ep, &["distribute", "get", "nothing"]).await, "nothing distributed");

    // Snapshot, hash check, backup.
    let v = ctl(ep, &["snapshot", "-o", "json"]).await.json();
    assert!(v["index"].as_u64().unwrap() > 0, "{v}");
    let r = ctl(ep, &["check"]).await;
    ok(&r);
    assert_eq!(r.out.matches(" ok").count(), 3, "{r:?}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.snap");
    let v = ctl(ep, &["backup", file.to_str().unwrap(), "-o", "json"]).await.json();
    assert!(v["index"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), v["bytes"].as_u64().unwrap());

    // Membership by hand: a learner (at an address nobody answers), idempotent; moved
    // only after removal; promoted, demoted, removed. Demoting the leader is refused.
    let r = ctl(
        ep,
        &["add-learner", "4242", "127.0.0.1:9", "--http-addr", "127.0.0.1:11"],
    )
    .await;
    ok(&r);
    let r = ctl(ep, &["add-learner", "4242", "127.0.0.1:9"]).await;
    ok(&r);
    assert!(r.out.contains("already"), "{r:?}");
    failed(&ctl(ep, &["add-learner", "4242", "127.0.0.1:10"]).await, "refused");
    let v = ctl(ep, &["members", "-o", "json"]).await.json();
    let learner = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "4242")
        .cloned();
    assert_eq!(
        learner.as_ref().map(|m| m["suffrage"].clone()),
        Some("learner".into()),
        "{v}"
    );
    ok(&ctl(ep, &["promote", "4242"]).await);
    assert!(c.node(leader).raft_status().voters.contains(&4242));
    ok(&ctl(ep, &["demote", "4242"]).await);
    assert!(!c.node(leader).raft_status().voters.contains(&4242));
    ok(&ctl(ep, &["remove", "4242"]).await);
    assert!(!c.node(leader).raft_status().members.contains_key(&4242));
    let r = ctl(ep, &["remove", "4242"]).await;
    ok(&r);
    assert!(r.out.contains("not a member"), "{r:?}");
    failed(&ctl(ep, &["demote", &id(leader)]).await, "transfer leadership first");

    // Leadership transfer to a named voter; answers once it leads.
    let to = (leader + 2) % 3;
    let r = ctl(ep, &["transfer-leader", "--to", &id(to)]).await;
    ok(&r);
    assert!(r.out.contains("now leads"), "{r:?}");
    assert_eq!(c.node(to).leader().map(|l| l.id), Some(c.node(to).id()));
    failed(&ctl(ep, &["transfer-leader", "--to", "4242"]).await, "not a voter");

    // The RPORT serves the same API.
    ok(&ctl(&c.members[leader].rpc.to_string(), &["members"]).await);

    // Bad usage exits 2; an unreachable cluster exits 1.
    for args in [
        &["bogus"][..],
        &["put", "only-a-key"],
        &["-o", "yaml", "status"],
        &["promote", "not-a-number"],
        &["--timeout", "0", "status"],
        &["put", "k", "v", "--prev-version", "1", "--prev-value", "x"],
    ] {
        let r = ctl(ep, args).await;
        assert_eq!(r.code, Some(2), "{args:?}: {r:?}");
    }
    let r = ctl("127.0.0.1:9", &["--timeout", "1", "status"]).await;
    assert_eq!(r.code, Some(1), "{r:?}");
    c.shutdown().await;
}

/// `braft ctl watch` streams puts and deletes under its prefix until Ctrl-C, then
/// exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_watch_streams_until_interrupted() {
    let _g = serial().await;
    let c = Cluster::start(3, |_| {}).await;
    let leader = c.wait_leader(LIMIT).await;
    let ep = c.members[leader].http.to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_braft"))
        .args(["ctl", "--endpoints", &ep, "watch", "--prefix", "w/", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .take(3)
            .map(|l| l.unwrap())
            .collect::<Vec<_>>()
    });
    // The watch subscribes when it starts; give it a moment, then write.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.put_ok(leader, "w/1", "a").await;
    c.put_ok(leader, "elsewhere", "x").await;
    c.put_ok(leader, "w/2", "b").await;
    let del = c.client.delete(c.url(leader, "/v1/kv/w/1")).send().await.unwrap();
    assert_eq!(del.status(), 200);
    let lines = tokio::task::spawn_blocking(move || lines.join().unwrap())
        .await
        .unwrap();
    let events: Vec<serde_json::Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["key"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("put".into(), "w/1".into()),
            ("put".into(), "w/2".into()),
            ("delete".into(), "w/1".into())
        ]
    );
    assert!(events[0]["version"].as_u64() < events[1]["version"].as_u64());
    // Ctrl-C ends it cleanly.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    c.shutdown().await;
}

/// The backup story: 10,000 keys written, a backup taken over HTTP from a follower (it
/// redirects to the leader) and one with `braft ctl backup`; a corrupted and a truncated
/// copy are refused with nothing written; the good one restores into a new directory,
/// which starts a one-node cluster serving every key with its value and version, and
/// whose next write gets a later version than any restored key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_restore_ten_thousand_keys() {
    let _g = serial().await;
    let c = Cluster::start(3, |_| {}).await;
    let leader = c.wait_leader(LIMIT).await;
    let follower = (leader + 1) % 3;
    let client = braft::Client::new([c.members[leader].rpc.to_string()], Duration::from_secs(20)).unwrap();
    const KEYS: usize = 10_000;
    let writes = (0..32).map(|w| {
        let client = client.clone();
        tokio::spawn(async move {
            for k in (w..KEYS).step_by(32) {
                client
                    .put(&format!("key/{k:05}"), format!("value-{k}").into_bytes())
                    .await
                    .unwrap();
            }
        })
    });
    for w in futures::future::join_all(writes).await {
        w.unwrap();
    }

    // Over HTTP, from a follower: a redirect to the leader, then the file.
    let r = c.client.get(c.url(follower, "/v1/snapshot")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let index: u64 = r.headers()["x-braft-index"].to_str().unwrap().parse().unwrap();
    assert!(r.headers().contains_key("x-braft-term"));
    let http_backup = r.bytes().await.unwrap();
    assert!(index >= KEYS as u64, "index {index}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.snap");
    let file_s = file.to_str().unwrap();
    ok(&ctl(&c.members[follower].http.to_string(), &["backup", file_s]).await);
    c.shutdown().await;

    // Broken copies are refused, and leave no directory behind.
    let restore = |from: &std::path::Path, to: &std::path::Path, port: u16| {
        let (from, to, port) = (
            from.to_str().unwrap().to_string(),
            to.to_str().unwrap().to_string(),
            port.to_string(),
        );
        async move {
            braft(&[
                "restore",
                "--from",
                &from,
                "--data-dir",
                &to,
                "--node-id",
                "7",
                "--ip",
                "127.0.0.1",
                "--rport",
                &port,
            ])
            .await
        }
    };
    let target = dir.path().join("restored");
    let mut corrupt = http_backup.to_vec();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0x40;
    let bad = dir.path().join("corrupt.snap");
    std::fs::write(&bad, &corrupt).unwrap();
    failed(&restore(&bad, &target, 1).await, "checksum");
    assert!(!target.exists());
    std::fs::write(&bad, &http_backup[..http_backup.len() - 100]).unwrap();
    failed(&restore(&bad, &target, 1).await, "not a usable backup");
    assert!(!target.exists());
    std::fs::write(&bad, b"hello").unwrap();
    failed(&restore(&bad, &target, 1).await, "not a usable backup");
    assert!(!target.exists());

    // The good one.
    let (rport, hport) = (free_port(), free_port());
    let r = restore(&file, &target, rport).await;
    ok(&r);
    assert!(r.out.contains("as node 7"), "{r:?}");
    // A second restore into the same directory is refused as bad usage.
    assert_eq!(restore(&file, &target, rport).await.code, Some(2));

    let mut server = Command::new(env!("CARGO_BIN_EXE_braft"))
        .arg("serve")
        .env("BRAFT_RPORT", rport.to_string())
        .env("BRAFT_HPORT", hport.to_string())
        .env("BRAFT_IP", "127.0.0.1")
        .env("BRAFT_DATA_DIR", &target)
        .env("BRAFT_DISCOVERY", format!("static:127.0.0.1:{rport}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let restored = braft::Client::new([format!("127.0.0.1:{rport}")], Duration::from_secs(20)).unwrap();
    let keys = restored
        .list("key/", 10_000, braft::Consistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(keys.len(), KEYS);
    let reads = (0..32).map(|w| {
        let restored = restored.clone();
        tokio::spawn(async move {
            let mut max_version = 0;
            for k in (w..KEYS).step_by(32) {
                let v = restored
                    .get(&format!("key/{k:05}"), braft::Consistency::Stale)
                    .await
                    .unwrap()
                    .unwrap_or_else(|| panic!("key/{k:05} missing after restore"));
                assert_eq!(v.value, format!("value-{k}").into_bytes());
                max_version = max_version.max(v.version);
            }
            max_version
        })
    });
    let mut max_version = 0;
    for r in futures::future::join_all(reads).await {
        max_version = max_version.max(r.unwrap());
    }
    assert!(max_version <= index);
    let next = restored.put("after-restore", b"x".to_vec()).await.unwrap();
    assert!(
        next > index,
        "a write after the restore got version {next}, the backup covered {index}"
    );
    let status = ctl(&format!("127.0.0.1:{hport}"), &["status", "-o", "json"])
        .await
        .json();
    assert_eq!(status.as_array().unwrap().len(), 1, "{status}");
    assert_eq!(status[0]["id"], "7");
    let _ = server.kill();
    let _ = server.wait();
}

/// `braft bench` drives a cluster with puts over gRPC, then linearizable gets spread
/// over every node, then a 90/10 mix over HTTP: every request is answered, and the
/// JSON line says so. The keys it put are there afterwards. Bad usage exits 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_puts_and_gets_and_reports_every_request() {
    let _g = serial().await;
    let c = Cluster::start(3, |_| {}).await;
    let leader = c.wait_leader(LIMIT).await;
    let lead = c.members[leader].http.to_string();
    let all: Vec<String> = c.members.iter().map(|m| m.rpc.to_string()).collect();
    let all = all.join(",");
    let runs = [
        vec!["--endpoints", &lead, "-n", "300", "-c", "8", "--label", "puts"],
        vec![
            "--endpoints",
            &all,
            "--spread",
            "--mode",
            "get",
            "--keyspace",
            "20",
            "-n",
            "300",
            "-c",
            "8",
        ],
        vec![
            "--endpoints",
            &lead,
            "--target",
            "http",
            "--mode",
            "mixed",
            "--keyspace",
            "20",
            "-n",
            "200",
        ],
    ];
    for args in runs {
        let mut all_args = vec!["bench", "-o", "json"];
        all_args.extend(args.iter().copied());
        let r = braft(&all_args).await;
        ok(&r);
        let v = r.json();
        let n: u64 = args[args.iter().position(|a| *a == "-n").unwrap() + 1].parse().unwrap();
        assert_eq!(v["ok"], n, "{v}");
        assert_eq!(v["errors"], 0, "{v}");
        assert!(v["ops_per_sec"].as_f64().unwrap() > 0.0, "{v}");
        assert!(v["p50_ms"].as_f64().unwrap() <= v["p99_ms"].as_f64().unwrap(), "{v}");
    }
    let listed = c.get_json(leader, "/v1/kv?prefix=bench/r").await;
    assert!(
        listed.to_string().contains("bench/r19"),
        "the get keyspace was loaded: {listed}"
    );
    let r = braft(&["bench", "-n", "0"]).await;
    assert_eq!(r.code, Some(2), "{r:?}");
    let r = braft(&["bench", "--consistency", "eventual"]).await;
    assert_eq!(r.code, Some(2), "{r:?}");
    c.shutdown().await;
}

/// A real etcd (Debian's `etcd-server`, which scripts/test.sh installs as root and then
/// requires through BRAFT_REQUIRE_ETCD=1) answers `braft bench --target etcd`: puts, then
/// linearizable and serializable gets of the keys it loaded. etcd's own `etcdctl` then
/// finds every key the bench wrote, with the value it sent: our copy of etcd's message
/// shapes is the one etcd speaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_drives_a_real_etcd_through_its_native_api() {
    if !common::lab::have("etcd") || !common::lab::have("etcdctl") {
        assert!(
            std::env::var_os("BRAFT_REQUIRE_ETCD").is_none(),
            "BRAFT_REQUIRE_ETCD is set but etcd or etcdctl is missing"
        );
        eprintln!("skipping: no etcd (apt-get install etcd-server etcd-client)");
        return;
    }
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let etcd = Command::new("etcd")
        .args(["--name", "solo", "--data-dir"])
        .arg(dir.path().join("etcd"))
        .args([
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args(["--initial-cluster", &format!("solo={peer_url}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcd");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _etcd = Kill(etcd);
    let etcdctl = |args: &[&str]| {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &client_url, "--command-timeout=2s"])
            .args(args)
            .output()
            .expect("run etcdctl")
    };
    let deadline = std::time::Instant::now() + LIMIT;
    while !etcdctl(&["endpoint", "health"]).status.success() {
        assert!(std::time::Instant::now() < deadline, "etcd never became healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let ep = format!("127.0.0.1:{client}");
    let common = ["bench", "-o", "json", "--target", "etcd", "--endpoints", &ep];
    let runs: [&[&str]; 3] = [
        &["--prefix", "t/", "-n", "200", "-c", "4", "--value-size", "100"],
        &["--prefix", "t/", "--mode", "get", "--keyspace", "20", "-n", "200"],
        &[
            "--prefix",
            "u/",
            "--mode",
            "get",
            "--keyspace",
            "5",
            "--consistency",
            "stale",
            "-n",
            "50",
        ],
    ];
    for args in runs {
        let r = braft(&[&common[..], args].concat()).await;
        ok(&r);
        let v = r.json();
        let n: u64 = args[args.iter().position(|a| *a == "-n").unwrap() + 1].parse().unwrap();
        assert_eq!((v["ok"].as_u64(), v["errors"].as_u64()), (Some(n), Some(0)), "{v}");
        assert_eq!(v["target"], "etcd", "{v}");
    }
    // 200 unique puts and 20 loaded keys under t/, 5 loaded keys under u/.
    let count = |prefix: &str| {
        let out = etcdctl(&["get", "--prefix", prefix, "--keys-only"]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .count()
    };
    assert_eq!(count("t/"), 220);
    assert_eq!(count("u/"), 5);
    let value = etcdctl(&["get", "t/r7", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&value.stdout).trim(), "v".repeat(64));
}
