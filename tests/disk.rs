//! Disk faults, injected through the log-store seam: a leader whose log can no longer
//! be made durable (an fsync that fails) must stop acknowledging writes and give up
//! leadership, and the cluster must go on without losing an acknowledged write.

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
