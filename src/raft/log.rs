//! Adapts a [`LogStore`] to openraft's `RaftLogStorage`: entries and votes are encoded
//! with the wire format and stored as opaque bytes.
//!
//! Writes go through one writer thread, in order. `append` returns as soon as its entries
//! are queued — openraft learns of durability through the `IOFlushed` callback, fired once
//! the fsync is done — so a leader replicates an entry while it is still flushing it
//! locally, as etcd does, instead of paying for two fsyncs in a row. Appends queued
//! while the disk is busy are written together with one fsync (group commit).
//!
//! The newest entries also stay in memory (`Tail`): those not yet written, so readers see
//! them, and recently written ones up to a byte budget, so that replication to followers
//! reads memory instead of the database in the steady state.
//!
//! Everything else (vote, truncate, purge, commit index) also goes through the writer
//! and is awaited, so it is ordered after earlier appends and durable when it returns.
//!
//! A write refused because the disk is full is not an error for openraft: the writer
//! marks the node's [`DiskHealth`] and tries the same write again, backing off up to a
//! second, until it succeeds. Meanwhile nothing after it is written (the log stays
//! contiguous), the entries stay readable from the tail, and the node refuses new
//! writes and hands leadership away (`node::disk`). Any other failure is final.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;

use prometheus_client::metrics::histogram::Histogram;
use std::sync::{Arc, Mutex};

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};

use super::{wire, Entry, LogId, TypeConfig, Vote};
use crate::store::{DiskHealth, LogStore, MetaKey, StoreError};

/// A write other than an append. `FnMut`, because a write refused for want of space is
/// run again once there is room.
type Op = Box<dyn FnMut(&dyn LogStore) -> Result<(), StoreError> + Send>;

enum Job {
    Append {
        entries: Vec<(u64, Arc<Vec<u8>>)>,
        callback: IOFlushed<TypeConfig>,
    },
    Op {
        op: Op,
        done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
    },
}

/// How many bytes of already-durable entries the tail keeps for readers.
const TAIL_KEEP_BYTES: usize = 32 << 20;

/// The newest entries, by index. An entry enters at `append` and may leave only once it
/// is durable (then it is in the store): at every instant an entry is here, in the
/// store, or both.
#[derive(Default)]
struct Tail {
    entries: BTreeMap<u64, (Arc<Vec<u8>>, bool)>,
    durable_bytes: usize,
}

impl Tail {
    fn insert(&mut self, index: u64, bytes: Arc<Vec<u8>>) {
        if let Some((old, true)) = self.entries.insert(index, (bytes, false)) {
            self.durable_bytes -= old.len();
        }
    }

    /// Marks `bytes` at `index` durable, if it is still the entry there.
    fn mark_durable(&mut self, index: u64, bytes: &Arc<Vec<u8>>) {
        if let Some((cur, durable)) = self.entries.get_mut(&index) {
            if Arc::ptr_eq(cur, bytes) && !*durable {
                *durable = true;
                self.durable_bytes += cur.len();
            }
        }
    }

    /// Drops the oldest durable entries beyond the byte budget.
    fn trim(&mut self) {
        while self.durable_bytes > TAIL_KEEP_BYTES {
            match self.entries.first_key_value() {
                Some((&i, (_, true))) => {
                    let (b, _) = self.entries.remove(&i).expect("present");
                    self.durable_bytes -= b.len();
                }
                _ => break,
            }
        }
    }

    /// Keeps only the entries whose index satisfies `keep`.
    fn remove_where(&mut self, keep: impl Fn(u64) -> bool) {
        let gone: Vec<u64> = self.entries.keys().copied().filter(|i| !keep(*i)).collect();
        for i in gone {
            if let Some((b, true)) = self.entries.remove(&i) {
                self.durable_bytes -= b.len();
            }
        }
    }
}

type Pending = Arc<Mutex<Tail>>;

/// The log, as openraft sees it. Cheap to clone: clones share the store and the writer.
#[derive(Clone)]
pub struct LogAdapter {
    store: Arc<dyn LogStore>,
    pending: Pending,
    jobs: mpsc::Sender<Job>,
    /// Inline mode: the writer and its queue, run by whoever queues a job.
    inline: Option<Inline>,
}

/// The writer and its queue, for inline mode.
type Inline = Arc<Mutex<(Writer, mpsc::Receiver<Job>)>>;

fn wire_err(e: wire::WireError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn lock(p: &Pending) -> std::sync::MutexGuard<'_, Tail> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

impl LogAdapter {
    /// Wraps `store` and starts its writer thread, which ends once every clone of the
    /// adapter is dropped (and then releases the store).
    #[cfg(test)]
    pub fn new(store: Arc<dyn LogStore>) -> io::Result<Self> {
        Self::start(store, None, DiskHealth::default())
    }

    /// [`LogAdapter::new`], timing every durable append (one fsync) into `fsync`, and
    /// reporting a full disk to `disk`.
    pub fn start(store: Arc<dyn LogStore>, fsync: Option<Histogram>, disk: DiskHealth) -> io::Result<Self> {
        let (jobs, rx) = mpsc::channel();
        let pending: Pending = Arc::default();
        let w = Writer {
            store: store.clone(),
            pending: pending.clone(),
            failed: None,
            fsync,
            disk,
            // An inline writer runs in the caller's task and must not sleep there.
            waits_for_space: !store.runs_inline(),
        };
        let inline = if store.runs_inline() {
            Some(Arc::new(Mutex::new((w, rx))))
        } else {
            std::thread::Builder::new()
                .name("braft-log-writer".into())
                .spawn(move || writer(w, rx))?;
            None
        };
        Ok(Self {
            store,
            pending,
            jobs,
            inline,
        })
    }

    /// Inline mode: runs every queued job now, in this task.
    fn pump(&self) {
        if let Some(inline) = &self.inline {
            let mut g = inline.lock().unwrap_or_else(|p| p.into_inner());
            let (w, rx) = &mut *g;
            let mut next = rx.try_recv().ok();
            while let Some(job) = next.take() {
                next = w.handle(job, &mut || rx.try_recv().ok()).or_else(|| rx.try_recv().ok());
            }
        }
    }

    /// Runs `op` on the writer thread after everything queued before it, and waits.
    async fn op(&self, op: impl FnMut(&dyn LogStore) -> Result<(), StoreError> + Send + 'static) -> io::Result<()> {
        let (done, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job::Op { op: Box::new(op), done })
            .map_err(|_| io::Error::other("log writer stopped"))?;
        self.pump();
        rx.await
            .map_err(|_| io::Error::other("log writer stopped"))?
            .map_err(io::Error::from)
    }

    /// Runs a read on tokio's blocking pool.
    async fn blocking<T, F>(&self, f: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn LogStore) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        if self.inline.is_some() {
            return f(store.as_ref()).map_err(io::Error::from);
        }
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(io::Error::other)?
            .map_err(io::Error::from)
    }

    async fn read_meta<T: serde::de::DeserializeOwned>(&self, key: MetaKey) -> io::Result<Option<T>> {
        match self.blocking(move |s| s.get_meta(key)).await? {
            Some(bytes) => Ok(Some(wire::decode(&bytes).map_err(wire_err)?)),
            None => Ok(None),
        }
    }

    async fn write_meta<T: serde::Serialize>(&self, key: MetaKey, value: &T) -> io::Result<()> {
        let bytes = wire::encode(value).map_err(wire_err)?;
        self.op(move |s| s.put_meta(key, &bytes)).await
    }
}

/// The writer: appends queued together share one store write (one fsync); other
/// operations run in queue order between them. It runs on its own thread, or — for
/// stores that ask for it, like the in-memory twin in a deterministic simulation —
/// inline, in the task that queued the job.
struct Writer {
    store: Arc<dyn LogStore>,
    pending: Pending,
    /// After the first failure nothing more is written: a later batch landing on disk
    /// after a failed one would leave a hole in the durable log. Every later job gets
    /// the error, and openraft stops the node.
    failed: Option<String>,
    /// Where append (fsync) durations go.
    fsync: Option<Histogram>,
    /// Set while a write waits for space.
    disk: DiskHealth,
    /// Whether a write refused for want of space waits and retries (thread mode) or
    /// fails (inline mode).
    waits_for_space: bool,
}

impl Writer {
    /// A panic in the store must not drop callbacks unanswered (openraft would wait
    /// for the flush forever): it is caught and treated as a failure.
    fn guarded(f: &mut dyn FnMut() -> Result<(), StoreError>) -> Result<(), StoreError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .unwrap_or_else(|_| Err(StoreError::Engine("log store panicked".into())))
    }

    /// Runs `f` until it succeeds or fails for a reason other than a full disk; while
    /// the disk is full, the node's [`DiskHealth`] says so.
    fn until_space(&self, f: &mut dyn FnMut() -> Result<(), StoreError>) -> Result<(), StoreError> {
        let mut backoff = std::time::Duration::from_millis(50);
        loop {
            match Self::guarded(f) {
                Err(StoreError::DiskFull(why)) if self.waits_for_space => {
                    if self.disk.set_full(why.clone()) {
                        tracing::warn!("disk full, log writes wait for space: {why}");
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
                }
                r => {
                    if r.is_ok() && self.disk.clear() {
                        tracing::info!("disk has space again; log writes resumed");
                    }
                    return r;
                }
            }
        }
    }

    /// Handles `job`, gathering the appends queued right behind an append (`more`
    /// yields what is already queued). Returns the job that ended the gathering.
    fn handle(&mut self, job: Job, more: &mut dyn FnMut() -> Option<Job>) -> Option<Job> {
        match job {
            Job::Op { op, done } => {
                let r = match &self.failed {
                    Some(e) => Err(StoreError::Engine(format!("log writer stopped after: {e}"))),
                    None => {
                        let mut op = op;
                        let store = self.store.clone();
                        let r = self.until_space(&mut || op(store.as_ref()));
                        if let Err(e) = &r {
                            self.failed = Some(e.to_string());
                        }
                        r
                    }
                };
                let _ = done.send(r);
                None
            }
            Job::Append { entries, callback } => {
                let mut batch = vec![(entries, callback)];
                let mut next = None;
                // Gather every append already queued, stopping at the first other job.
                while let Some(job) = more() {
                    match job {
                        Job::Append { entries, callback } => batch.push((entries, callback)),
                        other => {
                            next = Some(other);
                            break;
                        }
                    }
                }
                let result = match &self.failed {
                    Some(e) => Err(StoreError::Engine(format!("log writer stopped after: {e}"))),
                    None => {
                        let raw: Vec<(u64, &[u8])> = batch
                            .iter()
                            .flat_map(|(es, _)| es.iter().map(|(i, b)| (*i, b.as_slice())))
                            .collect();
                        let store = self.store.clone();
                        let started = std::time::Instant::now();
                        let r = self.until_space(&mut || store.append(&raw));
                        if let Some(h) = &self.fsync {
                            h.observe(started.elapsed().as_secs_f64());
                        }
                        r
                    }
                };
                match &result {
                    Ok(()) => {
                        // Now durable: these may leave the tail, unless a later append
                        // has already replaced an index (after a truncation).
                        let mut p = lock(&self.pending);
                        for (es, _) in &batch {
                            for (i, b) in es {
                                p.mark_durable(*i, b);
                            }
                        }
                        p.trim();
                    }
                    Err(e) if self.failed.is_none() => {
                        tracing::error!("log append failed: {e}");
                        self.failed = Some(e.to_string());
                    }
                    Err(_) => {}
                }
                for (_, callback) in batch {
                    let r = match &result {
                        Ok(()) => Ok(()),
                        Err(e) => Err(io::Error::other(e.to_string())),
                    };
                    callback.io_completed(r);
                }
                next
            }
        }
    }
}

/// The writer thread's loop; it ends when every sender is gone.
fn writer(mut w: Writer, rx: mpsc::Receiver<Job>) {
    let mut next = rx.recv().ok();
    while let Some(job) = next.take() {
        next = w.handle(job, &mut || rx.try_recv().ok()).or_else(|| rx.recv().ok());
    }
}

impl RaftLogReader<TypeConfig> for LogAdapter {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        };
        if start >= end {
            return Ok(Vec::new());
        }
        // Copy the tail first, then read the store: an entry leaves the tail only after
        // it is in the store, so it is in one or the other (reading in the opposite order
        // could miss an entry written in between). A tail entry is newer than a stored one
        // at the same index. In the steady state the tail covers the whole range.
        let queued: Vec<(u64, Arc<Vec<u8>>)> = lock(&self.pending)
            .entries
            .range(start..end)
            .map(|(i, (b, _))| (*i, b.clone()))
            .collect();
        let covered = queued.first().is_some_and(|(i, _)| *i == start) && queued.len() as u64 == end - start;
        let mut merged: BTreeMap<u64, Arc<Vec<u8>>> = if covered {
            BTreeMap::new()
        } else {
            let stored = self.blocking(move |s| s.read_range(start, end)).await?;
            stored.into_iter().map(|(i, b)| (i, Arc::new(b))).collect()
        };
        merged.extend(queued);
        // Entries come back contiguous or not at all: a hole would mean a storage bug,
        // and openraft must hear about it rather than replicate around it.
        if let Some(w) = merged
            .keys()
            .collect::<Vec<_>>()
            .windows(2)
            .find(|w| *w[1] != *w[0] + 1)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("log hole between {} and {}", w[0], w[1]),
            ));
        }
        merged
            .values()
            .map(|bytes| wire::decode::<Entry>(bytes).map_err(wire_err))
            .collect()
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.read_meta(MetaKey::Vote).await
    }
}

impl RaftLogStorage<TypeConfig> for LogAdapter {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged: Option<LogId> = self.read_meta(MetaKey::LastPurged).await?;
        let queued = lock(&self.pending)
            .entries
            .last_key_value()
            .map(|(_, (b, _))| b.clone());
        let last = match queued {
            Some(b) => Some(b.as_ref().clone()),
            None => self.blocking(|s| s.last_entry()).await?.map(|(_, b)| b),
        };
        let last_entry = match last {
            Some(bytes) => Some(wire::decode::<Entry>(&bytes).map_err(wire_err)?.log_id),
            None => None,
        };
        // A purge records its point before deleting; after a crash in between, or when a
        // snapshot installed past the end of a short log, entries at or below the purge
        // point may remain. The log logically ends at the later of the two.
        let last_log_id = match (last_entry, last_purged) {
            (Some(e), Some(p)) if e.index <= p.index => Some(p),
            (Some(e), _) => Some(e),
            (None, p) => p,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.write_meta(MetaKey::Vote, vote).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Queued behind the appends it covers, but not awaited: openraft's core awaits
        // this call, and a restart hint is not worth stalling it behind an fsync.
        let bytes = wire::encode(&committed).map_err(wire_err)?;
        let (done, _) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job::Op {
                op: Box::new(move |s: &dyn LogStore| s.put_meta(MetaKey::Committed, &bytes)),
                done,
            })
            .map_err(|_| io::Error::other("log writer stopped"))?;
        self.pump();
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.read_meta::<Option<LogId>>(MetaKey::Committed).await?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<(u64, Arc<Vec<u8>>)> = entries
            .into_iter()
            .map(|e| Ok((e.log_id.index, Arc::new(wire::encode(&e).map_err(wire_err)?))))
            .collect::<io::Result<_>>()?;
        {
            let mut p = lock(&self.pending);
            for (i, b) in &entries {
                p.insert(*i, b.clone());
            }
        }
        self.jobs
            .send(Job::Append { entries, callback })
            .map_err(|_| io::Error::other("log writer stopped"))?;
        self.pump();
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let after = last_log_id.map(|l| l.index);
        let from = after.map_or(0, |a| a + 1);
        lock(&self.pending).remove_where(|i| i < from);
        self.op(move |s| s.truncate_after(after)).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // Record the purge point first: after a crash between the two steps the log still
        // holds entries at or below it, which is harmless, while the reverse order could
        // lose track of where the log begins.
        self.write_meta(MetaKey::LastPurged, &log_id).await?;
        let upto = log_id.index;
        lock(&self.pending).remove_where(|i| i > upto);
        self.op(move |s| s.purge_upto(upto)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    use openraft::testing::log::{StoreBuilder, Suite};
    use openraft::StorageError;

    use super::{DiskHealth, LogAdapter};
    use crate::codec::Codec;
    use crate::raft::sm::StateMachine;
    use crate::raft::TypeConfig;
    use crate::service::Registry;
    use crate::store::{LogEngine, MemLogStore, MemSnapshotStore};

    /// `None`: the in-memory twin; else that engine on disk.
    struct Builder {
        engine: Option<LogEngine>,
    }

    impl StoreBuilder<TypeConfig, LogAdapter, StateMachine, Option<tempfile::TempDir>> for Builder {
        async fn build(
            &self,
        ) -> Result<(Option<tempfile::TempDir>, LogAdapter, StateMachine), StorageError<TypeConfig>> {
            let (dir, store): (_, Arc<dyn crate::store::LogStore>) = match self.engine {
                Some(engine) => {
                    let dir = tempfile::tempdir().unwrap();
                    let s = engine.open(dir.path()).unwrap();
                    (Some(dir), s)
                }
                None => (None, Arc::new(MemLogStore::new())),
            };
            let log = LogAdapter::new(store).unwrap();
            let sm = StateMachine::open(
                Registry::default(),
                crate::codec::Format::Builtin(Codec::MsgPack),
                Arc::new(MemSnapshotStore::default()),
                Default::default(),
                Default::default(),
            )
            .unwrap();
            Ok((dir, log, sm))
        }
    }

    /// Readers racing the writer thread always see a contiguous log: an entry is in
    /// `pending` or in the store at every instant, never in neither. (Regression: reading
    /// the store before `pending` could miss an entry moved in between, which openraft's
    /// replication caught as a gap.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reads_never_see_a_gap() {
        use openraft::entry::RaftEntry;
        use openraft::storage::{IOFlushed, RaftLogStorage};
        use openraft::vote::RaftLeaderIdExt;
        use openraft::RaftLogReader;

        type LeaderId = <TypeConfig as openraft::RaftTypeConfig>::LeaderId;
        let mut log = LogAdapter::new(Arc::new(MemLogStore::new())).unwrap();
        let appended = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let reader = {
            let (mut r, appended) = (log.clone(), appended.clone());
            tokio::spawn(async move {
                let mut reads = 0u64;
                while appended.load(std::sync::atomic::Ordering::SeqCst) < 20_000 {
                    let last = appended.load(std::sync::atomic::Ordering::SeqCst);
                    if last == 0 {
                        tokio::task::yield_now().await;
                        continue;
                    }
                    let got = r.try_get_log_entries(1..=last).await.unwrap();
                    let idx: Vec<u64> = got.iter().map(|e| e.log_id.index).collect();
                    assert_eq!(idx, (1..=last).collect::<Vec<_>>(), "a gap in the log");
                    reads += 1;
                }
                reads
            })
        };
        for i in 1..=20_000u64 {
            let entry = crate::raft::Entry::new_blank(crate::raft::LogId::new(LeaderId::new_committed(1, 1), i));
            log.append([entry], IOFlushed::noop()).await.unwrap();
            appended.store(i, std::sync::atomic::Ordering::SeqCst);
            if i % 16 == 0 {
                tokio::task::yield_now().await;
            }
        }
        assert!(reader.await.unwrap() > 0, "the reader ran");
    }

    fn log_id(index: u64) -> crate::raft::LogId {
        use openraft::vote::RaftLeaderIdExt;
        type LeaderId = <TypeConfig as openraft::RaftTypeConfig>::LeaderId;
        crate::raft::LogId::new(LeaderId::new_committed(1, 1), index)
    }

    fn blank(index: u64) -> crate::raft::Entry {
        use openraft::entry::RaftEntry;
        crate::raft::Entry::new_blank(log_id(index))
    }

    /// A crash between recording a purge point and deleting the entries (or a snapshot
    /// installed past the end of a short log) leaves entries at or below the purge point:
    /// the log still reports it ends at the purge point, so the node can restart.
    #[tokio::test]
    async fn log_state_after_an_interrupted_purge() {
        use openraft::storage::{IOFlushed, RaftLogStorage};
        let store = Arc::new(MemLogStore::new());
        let mut log = LogAdapter::new(store.clone()).unwrap();
        log.append((1..=5).map(blank), IOFlushed::noop()).await.unwrap();
        // Only the first half of purge(10) happened.
        let bytes = crate::raft::wire::encode(&log_id(10)).unwrap();
        crate::store::LogStore::put_meta(store.as_ref(), crate::store::MetaKey::LastPurged, &bytes).unwrap();
        let mut reopened = LogAdapter::new(store).unwrap();
        let st = reopened.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id, Some(log_id(10)));
        assert_eq!(st.last_log_id, Some(log_id(10)));
    }

    /// A store with injected faults: it fails its second append (when `fail_second`),
    /// and refuses every write for want of space while `full` is set.
    #[derive(Default)]
    struct Injected {
        inner: MemLogStore,
        appends: std::sync::atomic::AtomicU32,
        fail_second: bool,
        full: AtomicBool,
    }

    impl Injected {
        fn check_space(&self) -> Result<(), crate::store::StoreError> {
            match self.full.load(std::sync::atomic::Ordering::SeqCst) {
                true => Err(crate::store::StoreError::DiskFull("injected ENOSPC".into())),
                false => Ok(()),
            }
        }
    }

    impl crate::store::LogStore for Injected {
        fn append(&self, e: &[(u64, &[u8])]) -> Result<(), crate::store::StoreError> {
            self.check_space()?;
            if self.appends.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 && self.fail_second {
                return Err(crate::store::StoreError::Invalid("injected".into()));
            }
            self.inner.append(e)
        }
        fn truncate_after(&self, a: Option<u64>) -> Result<(), crate::store::StoreError> {
            self.inner.truncate_after(a)
        }
        fn purge_upto(&self, u: u64) -> Result<(), crate::store::StoreError> {
            self.inner.purge_upto(u)
        }
        fn read_range(&self, s: u64, e: u64) -> Result<Vec<crate::store::RawEntry>, crate::store::StoreError> {
            self.inner.read_range(s, e)
        }
        fn last_entry(&self) -> Result<Option<crate::store::RawEntry>, crate::store::StoreError> {
            self.inner.last_entry()
        }
        fn put_meta(&self, k: crate::store::MetaKey, v: &[u8]) -> Result<(), crate::store::StoreError> {
            self.check_space()?;
            self.inner.put_meta(k, v)
        }
        fn get_meta(&self, k: crate::store::MetaKey) -> Result<Option<Vec<u8>>, crate::store::StoreError> {
            self.inner.get_meta(k)
        }
    }

    /// After a failed append nothing later reaches the disk (it would leave a hole in the
    /// durable log), and every later flush is reported as failed.
    #[tokio::test]
    async fn nothing_is_written_after_a_failed_append() {
        use openraft::storage::{IOFlushed, RaftLogStorage};
        let store = Arc::new(Injected {
            fail_second: true,
            ..Default::default()
        });
        let mut log = LogAdapter::new(store.clone()).unwrap();
        let mut results = Vec::new();
        for i in 1..=3u64 {
            let (tx, rx) = <TypeConfig as openraft::type_config::TypeConfigExt>::oneshot();
            log.append([blank(i)], IOFlushed::signal(tx)).await.unwrap();
            results.push(rx.await.unwrap().is_ok());
        }
        assert_eq!(results, [true, false, false]);
        let on_disk: Vec<u64> = crate::store::LogStore::read_range(store.as_ref(), 0, 10)
            .unwrap()
            .iter()
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(on_disk, [1], "entry 3 must not land after the failed entry 2");
        assert!(log.save_vote(&crate::raft::Vote::new(1, 1)).await.is_err());
    }

    /// A write refused for want of space is not a failure: the flush is reported only
    /// once the same write succeeds, later writes wait behind it (in order), and the
    /// disk is marked full meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_holds_writes_until_there_is_room() {
        use openraft::storage::{IOFlushed, RaftLogStorage};
        use std::sync::atomic::Ordering::SeqCst;
        let store = Arc::new(Injected::default());
        let disk = DiskHealth::default();
        let mut log = LogAdapter::start(store.clone(), None, disk.clone()).unwrap();
        log.append([blank(1)], IOFlushed::noop()).await.unwrap();
        store.full.store(true, SeqCst);
        let (tx, mut flushed) = <TypeConfig as openraft::type_config::TypeConfigExt>::oneshot();
        log.append([blank(2)], IOFlushed::signal(tx)).await.unwrap();
        let vote = {
            let mut log = log.clone();
            tokio::spawn(async move { log.save_vote(&crate::raft::Vote::new(2, 1)).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            flushed.try_recv().is_err(),
            "no flush is reported while the disk is full"
        );
        assert!(!vote.is_finished(), "the vote waits behind the append");
        assert!(disk.full().is_some_and(|why| why.contains("injected ENOSPC")));
        // The entry waiting for space is readable meanwhile.
        let got = openraft::RaftLogReader::try_get_log_entries(&mut log, 1..=2)
            .await
            .unwrap();
        assert_eq!(got.len(), 2);

        store.full.store(false, SeqCst);
        assert!(flushed.await.unwrap().is_ok());
        vote.await.unwrap().unwrap();
        assert_eq!(disk.full(), None);
        let on_disk: Vec<u64> = crate::store::LogStore::read_range(store.as_ref(), 0, 10)
            .unwrap()
            .iter()
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(on_disk, [1, 2]);
    }

    /// openraft's own storage test suite passes against the log adapter (with its writer
    /// thread and pending overlay) over every log store, and the routing state machine.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn openraft_storage_suite_passes() {
        Suite::test_all(Builder { engine: None }).await.unwrap();
        Suite::test_all(Builder {
            engine: Some(LogEngine::Redb),
        })
        .await
        .unwrap();
        Suite::test_all(Builder {
            engine: Some(LogEngine::Wal),
        })
        .await
        .unwrap();
    }
}
