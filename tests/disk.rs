//! Disk faults. Injected through the log-store seam: a leader whose log can no longer
//! be made durable (an fsync that fails) must stop acknowledging writes and give up
//! leadership, and the cluster must go on without losing an acknowledged write. On the
//! real binary: a data directory that fills up (a small tmpfs), and one damaged while
//! the node was down.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use braft::store::{LogStore, MemLogStore, MetaKey, RawEntry, StoreError};
use common::{serial, Cluster};

const LIMIT: Duration = Duration::from_secs(20);

/// The in-memory log twin, with a switch that makes every durable write fail as a
/// failed fsync would.
struct FaultyLog {
    inner: MemLogStore,
    failing: Arc<AtomicBool>,
}

impl FaultyLog {
    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Io(std::io::Error::other("injected: fsync failed (EIO)")));
        }
        Ok(())
    }
}

impl LogStore for FaultyLog {
    fn append(&self, entries: &[(u64, &[u8])]) -> Result<(), StoreError> {
        self.check()?;
        self.inner.append(entries)
    }
    fn truncate_after(&self, after: Option<u64>) -> Result<(), StoreError> {
        self.check()?;
        self.inner.truncate_after(after)
    }
    fn purge_upto(&self, upto: u64) -> Result<(), StoreError> {
        self.inner.purge_upto(upto)
    }
    fn read_range(&self, start: u64, end: u64) -> Result<Vec<RawEntry>, StoreError> {
        self.inner.read_range(start, end)
    }
    fn last_entry(&self) -> Result<Option<RawEntry>, StoreError> {
        self.inner.last_entry()
    }
    fn put_meta(&self, key: MetaKey, value: &[u8]) -> Result<(), StoreError> {
        self.check()?;
        self.inner.put_meta(key, value)
    }
    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_meta(key)
    }
}

/// The switches of the nodes' logs, in the order the nodes were built.
static SWITCHES: Mutex<Vec<Arc<AtomicBool>>> = Mutex::new(Vec::new());

fn faulty(b: braft::NodeBuilder) -> braft::NodeBuilder {
    let failing = Arc::new(AtomicBool::new(false));
    SWITCHES.lock().unwrap().push(failing.clone());
    b.log_store(Arc::new(FaultyLog {
        inner: MemLogStore::new(),
        failing,
    }))
}

/// The leader's log starts failing every write. A write sent to it is not acknowledged
/// (an error, never a success); it stops leading; the other two elect a leader and take
/// writes; and every write acknowledged before, during or after reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_fsync_fails_steps_down_and_nothing_acknowledged_is_lost() {
    let _g = serial().await;
    SWITCHES.lock().unwrap().clear();
    let c = Cluster::start_with(3, |_| {}, faulty).await;
    let leader = c.wait_leader(LIMIT).await;
    let mut acked = Vec::new();
    for i in 0..20 {
        let k = format!("before/{i}");
        c.put_ok(leader, &k, "v").await;
        acked.push(k);
    }

    SWITCHES.lock().unwrap()[leader].store(true, Ordering::SeqCst);
    let r = c.put(leader, "during", "x").await;
    eprintln!("the write to the leader with the failed disk: {}", r.status());
    assert!(
        !r.status().is_success(),
        "a write the leader could not make durable was acknowledged: {}",
        r.status()
    );

    // The others elect a leader among themselves.
    let deadline = Instant::now() + LIMIT;
    let new = loop {
        if let Some(i) = (0..3).filter(|&i| i != leader).find(|&i| c.node(i).is_leader()) {
            break i;
        }
        assert!(
            Instant::now() < deadline,
            "no new leader after the old one's disk failed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        !c.node(leader).is_leader(),
        "the node with the failed disk no longer leads"
    );
    for i in 0..10 {
        let k = format!("after/{i}");
        c.put_ok(new, &k, "v").await;
        acked.push(k);
    }
    let other = (0..3).find(|&i| i != leader && i != new).unwrap();
    for k in &acked {
        assert_eq!(c.get(other, k, "linearizable").await.as_deref(), Some("v"), "{k}");
    }
    // "during" was refused: if it reads back, it was only because the entry reached a
    // quorum before the leader failed, which is allowed; either way nothing acknowledged
    // is missing.
    c.shutdown().await;
}

/// Waits for host `i`'s process to exit by itself; its exit status.
fn wait_exit(lab: &mut common::lab::Lab, i: usize) -> std::process::ExitStatus {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(s) = lab.exited(i) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "node {i} kept running on a damaged data directory"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A member's data directory is damaged while it is down: first a bit flipped in its
/// newest snapshot, then its log cut short (the redb engine), and, in its next life on
/// the default WAL engine, a record in the middle of the log damaged. Each time it
/// refuses to start, naming the file, rather than serve less than was acknowledged.
/// Following the README's recovery (remove the data directory, start again), it rejoins
/// as a new member and serves every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_data_directory_stops_the_node_and_a_fresh_one_rejoins() {
    use common::lab::Lab;
    let mut lab = Lab::with_mode(3, false);
    let disc = format!(
        "static:{}",
        (1..=3).map(|i| lab.rpc_addr(i)).collect::<Vec<_>>().join(",")
    );
    let env = [
        ("BRAFT_DISCOVERY", disc.clone()),
        ("BRAFT_SNAPSHOT_LOGS", "5".to_string()),
    ];
    for i in 1..=2 {
        lab.start(i, &env);
    }
    let mut redb_env = env.to_vec();
    redb_env.push(("BRAFT_LOG_ENGINE", "redb".to_string()));
    lab.start(3, &redb_env);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut written = 0;
    let deadline = Instant::now() + LIMIT;
    while written < 30 {
        let r = http
            .put(lab.url(1, &format!("/v1/kv/k{written}")))
            .body(format!("v{written}"))
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == 200) {
            written += 1;
        } else {
            assert!(Instant::now() < deadline, "no writes\n{}", lab.logs(20));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Node 3 has applied everything and snapshotted.
    let dir3 = lab.dir.path().join("n3");
    let snapshots = dir3.join("snapshots");
    let deadline = Instant::now() + LIMIT;
    while !std::fs::read_dir(&snapshots).is_ok_and(|mut d| d.next().is_some())
        || !http
            .get(lab.url(3, "/v1/kv/k29?consistency=stale"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "node 3 never snapshotted\n{}", lab.logs(20));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    lab.kill(3);

    // A bit flipped in the newest snapshot.
    let mut files: Vec<_> = std::fs::read_dir(&snapshots)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let newest = files.last().unwrap().clone();
    let mut bytes = std::fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&newest, &bytes).unwrap();
    // The error names the snapshot file.
    refuses_to_start(&mut lab, &env, &[&format!("{}: checksum mismatch", newest.display())]);

    // The snapshot put right, the log database cut short.
    bytes[mid] ^= 0x40;
    std::fs::write(&newest, &bytes).unwrap();
    let db = dir3.join("raft-log.redb");
    let len = std::fs::metadata(&db).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.set_len(len / 3).unwrap();
    drop(f);
    // The error names the log file and the way out.
    refuses_to_start(
        &mut lab,
        &env,
        &[
            &format!("opening the log {}", db.display()),
            "remove this data directory",
        ],
    );

    // The recovery: a fresh data directory; the node joins as a new member.
    lab.wipe(3, 1);
    lab.start(3, &env);
    serves_every_key(&lab, &http).await;

    // Now on the WAL, with more entries in it than the snapshot it joined by: a payload
    // byte flipped in a record with whole records after it.
    for k in 30..40 {
        let r = http
            .put(lab.url(1, &format!("/v1/kv/k{k}")))
            .body(format!("v{k}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let deadline = Instant::now() + LIMIT;
    while !http
        .get(lab.url(3, "/v1/kv/k39?consistency=stale"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "node 3 never applied k39\n{}", lab.logs(20));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    lab.kill(3);
    let wal = lab.dir.path().join("n3-g1").join("raft-wal");
    let segment = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .expect("a WAL segment");
    let mut bytes = std::fs::read(&segment).unwrap();
    // The segment format (src/store/wal.rs): an 8-byte magic, then records of
    // crc32 | len (u32 LE) | kind | index (u64) | payload.
    let mut records = Vec::new();
    let mut at = 8;
    while at + 17 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        records.push((at + 17, len));
        at += 17 + len;
    }
    assert!(records.len() > 4, "the WAL holds records: {}", records.len());
    let (payload, len) = records[records.len() / 2];
    bytes[payload + len / 2] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();
    // The error names the segment and the way out.
    refuses_to_start(
        &mut lab,
        &env,
        &[
            &format!("{}: the log is corrupt", segment.display()),
            "remove this data directory",
        ],
    );
    lab.wipe(3, 2);
    lab.start(3, &env);
    serves_every_key(&lab, &http).await;
}

/// Starts node 3, which must exit by itself with a failure, having logged every one of
/// `says`.
fn refuses_to_start(lab: &mut common::lab::Lab, env: &[(&str, String)], says: &[&str]) {
    lab.start(3, env);
    let status = wait_exit(lab, 3);
    assert!(!status.success());
    let log = std::fs::read_to_string(lab.dir.path().join("n3.log")).unwrap();
    for s in says {
        assert!(log.contains(s), "node 3's log lacks '{s}':\n{}", lab.logs(5));
    }
    lab.wait_exit(3);
}

/// Node 3 serves k0..k29 (with their values) from its own state, within the limit.
async fn serves_every_key(lab: &common::lab::Lab, http: &reqwest::Client) {
    let deadline = Instant::now() + LIMIT;
    for k in 0..30 {
        loop {
            let r = http
                .get(lab.url(3, &format!("/v1/kv/k{k}?consistency=stale")))
                .send()
                .await;
            if let Ok(r) = r {
                if r.status() == 200 {
                    assert_eq!(r.text().await.unwrap(), format!("v{k}"));
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the fresh node 3 never served k{k}\n{}",
                lab.logs(20)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system under `dir` with one file, until a write fails for want of
/// space.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5au8; 1 << 16];
    loop {
        match f.write_all(&chunk) {
            Ok(()) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
                break;
            }
        }
    }
    let _ = f.sync_all();
    path
}

/// Writes ten keys `{prefix}0`..`{prefix}9` through one node, each acknowledged.
async fn put_ten(http: &reqwest::Client, prefix: &str, acked: &mut Vec<(String, String)>) {
    let key0 = prefix.rsplit('/').next().unwrap();
    for k in 0..10 {
        let (key, value) = (format!("{key0}{k}"), format!("{key0}-v{k}"));
        let r = http
            .put(format!("{prefix}{k}"))
            .body(value.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        acked.push((key, value));
    }
}

/// The id of the member whose HTTP address is `http`, and the current leader, as
/// `/v1/cluster/members` on `url` tells.
async fn ids(http: &reqwest::Client, url: &str, addr: &str) -> Option<(String, String)> {
    let v: serde_json::Value = http.get(url).send().await.ok()?.json().await.ok()?;
    let me = v["members"].as_array()?.iter().find(|m| m["httpAddr"] == addr)?["id"]
        .as_str()?
        .to_string();
    Some((me, v["leader"].as_str()?.to_string()))
}

/// Node 1's data directory is a 48 MiB tmpfs, and node 1 leads. The tmpfs is filled.
/// Writes through node 1 soon fail with 507 `disk_full` — each answered, none hanging —
/// and node 1 hands leadership to another node, so writes through the others go on.
/// Node 1 keeps serving reads and stays a voter. Once the filler is removed, writes
/// through node 1 work again without a restart, and every acknowledged write is
/// readable on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_hands_over_leadership_and_recovers_when_space_is_freed() {
    use common::lab::Lab;
    let mut lab = Lab::with_mode(3, false);
    let _tmpfs = Tmpfs::mount(&lab.dir.path().join("n1"), "48m");
    let disc = format!(
        "static:{}",
        (1..=3).map(|i| lab.rpc_addr(i)).collect::<Vec<_>>().join(",")
    );
    let env = [("BRAFT_DISCOVERY", disc)];
    for i in 1..=3 {
        lab.start(i, &env);
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    lab.wait_ready(&http, &[1, 2, 3], false).await;
    let addr = |i: usize| format!("{}:{}", lab.ip(i), lab.hport(i));
    let members = |i: usize| lab.url(i, "/v1/cluster/members");

    // Node 1 leads.
    let deadline = Instant::now() + LIMIT;
    let id1 = loop {
        if let Some((me, leader)) = ids(&http, &members(1), &addr(1)).await {
            if me == leader {
                break me;
            }
            let r = http
                .post(lab.url(2, "/v1/cluster/leader"))
                .json(&serde_json::json!({ "to": me }))
                .send()
                .await;
            if let Ok(r) = r {
                let _ = r.text().await;
            }
        }
        assert!(Instant::now() < deadline, "node 1 never led\n{}", lab.logs(20));
        tokio::time::sleep(Duration::from_millis(300)).await;
    };

    let mut acked: Vec<(String, String)> = Vec::new();
    put_ten(&http, &lab.url(1, "/v1/kv/before"), &mut acked).await;

    // The disk fills up. Writes through node 1 (values of 16 KiB, so that the log must
    // grow) keep getting answers until one is refused for want of space.
    let filler = fill(&lab.dir.path().join("n1"));
    let big = "x".repeat(16 << 10);
    let deadline = Instant::now() + LIMIT;
    let mut k = 0;
    let refusal = loop {
        let key = format!("during{k}");
        k += 1;
        let started = Instant::now();
        let r = http
            .put(lab.url(1, &format!("/v1/kv/{key}")))
            .body(big.clone())
            .send()
            .await
            .expect("a write through the full node is answered, never left hanging");
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        match status {
            200 => acked.push((key, big.clone())),
            507 => break body,
            // The write met the handover: outcome unknown or no leader in time.
            503 | 504 => {}
            other => panic!("write during a full disk: {other} {body}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(9),
            "a write took {:?}",
            started.elapsed()
        );
        assert!(
            Instant::now() < deadline,
            "no write was refused as disk_full\n{}",
            lab.logs(30)
        );
    };
    let v: serde_json::Value = serde_json::from_str(&refusal).unwrap();
    assert_eq!(v["code"], "disk_full", "{refusal}");
    assert!(v["error"].as_str().unwrap().contains("disk full"), "{refusal}");

    // Node 1 hands leadership over; writes through node 2 go on.
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some((_, leader)) = ids(&http, &members(2), &addr(2)).await {
            if leader != id1 && leader != "0" {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the full leader kept leading\n{}",
            lab.logs(30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    put_ten(&http, &lab.url(2, "/v1/kv/elsewhere"), &mut acked).await;

    // Node 1 still refuses writes, at once, says so in its metrics, serves reads, and
    // is still a voter.
    let started = Instant::now();
    let r = http.put(lab.url(1, "/v1/kv/refused")).body("x").send().await.unwrap();
    assert_eq!(r.status(), 507);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the refusal took {:?}",
        started.elapsed()
    );
    let metrics = http
        .get(lab.url(1, "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("braft_disk_full 1"), "{metrics}");
    for (key, value) in acked.iter().filter(|(k, _)| k.starts_with("before")) {
        let r = http.get(lab.url(1, &format!("/v1/kv/{key}"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "read of {key} through the full node");
        assert_eq!(&r.text().await.unwrap(), value);
    }
    let v: serde_json::Value = http.get(members(2)).send().await.unwrap().json().await.unwrap();
    let m1 = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id1.as_str());
    assert_eq!(
        m1.map(|m| m["suffrage"].clone()),
        Some(serde_json::json!("voter")),
        "{v}"
    );

    // Space is freed: node 1 recovers by itself.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + LIMIT;
    loop {
        let r = http.put(lab.url(1, "/v1/kv/after")).body("freed").send().await;
        if r.is_ok_and(|r| r.status() == 200) {
            acked.push(("after".into(), "freed".into()));
            break;
        }
        assert!(Instant::now() < deadline, "node 1 never wrote again\n{}", lab.logs(30));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let metrics = http
        .get(lab.url(1, "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("braft_disk_full 0"), "{metrics}");

    // Nothing acknowledged is lost, on any node; no node stopped or panicked.
    for i in 1..=3 {
        for (key, value) in &acked {
            let r = http.get(lab.url(i, &format!("/v1/kv/{key}"))).send().await.unwrap();
            assert_eq!(r.status(), 200, "node {i} lost {key}");
            assert_eq!(&r.text().await.unwrap(), value, "node {i}: {key}");
        }
        assert!(lab.exited(i).is_none(), "node {i} exited\n{}", lab.logs(30));
    }
    lab.wait_ready(&http, &[1, 2, 3], false).await;
    assert!(!lab.logs(10_000).contains("panicked"), "{}", lab.logs(50));
    // The log tells the operator what happened, in order.
    let log = std::fs::read_to_string(lab.dir.path().join("n1.log")).unwrap();
    let at = |what: &str| {
        log.find(what)
            .unwrap_or_else(|| panic!("n1.log lacks {what:?}:\n{log}"))
    };
    assert!(
        at("disk full, log writes wait for space") < at("disk full (")
            && at("disk full (") < at("disk has space again")
    );
}
