//! The durable log and vote store behind Raft.
//!
//! [`LogStore`] is deliberately narrow — append, truncate, purge, read a range, and a few
//! metadata cells — so that the engine under it can be swapped without touching the
//! consensus code. Entries are opaque
//! bytes keyed by their log index: the store knows nothing about openraft's types.
//!
//! Three implementations ship: [`WalLogStore`] (a segmented write-ahead log) and
//! [`RedbLogStore`] on disk, and [`MemLogStore`], their in-memory twin for tests. All
//! pass the same conformance suite (`conformance` below).

mod mem;
mod redb;
pub(crate) mod snapshot;
mod wal;

pub use self::mem::MemLogStore;
pub use self::redb::RedbLogStore;
pub use self::snapshot::{FileSnapshotStore, Incoming, MemSnapshotStore, SnapshotData, SnapshotStore, Staged};
pub use self::wal::WalLogStore;

/// Which on-disk [`LogStore`] a node uses (`BRAFT_LOG_ENGINE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogEngine {
    /// [`WalLogStore`] in `<data dir>/raft-wal`: one write and one fdatasync per batch.
    #[default]
    Wal,
    /// [`RedbLogStore`] in `<data dir>/raft-log.redb`.
    Redb,
}

impl std::str::FromStr for LogEngine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "wal" => Ok(LogEngine::Wal),
            "redb" => Ok(LogEngine::Redb),
            other => Err(format!("unknown log engine '{other}' (allowed: wal, redb)")),
        }
    }
}

impl LogEngine {
    /// The engine a data directory already holds a log for, if any: an existing log
    /// decides, whatever the setting says, so that changing the setting never starts a
    /// node on an empty log beside its real one.
    pub fn found_in(data_dir: &std::path::Path) -> Option<LogEngine> {
        if data_dir.join(Self::Redb.file_name()).exists() {
            Some(LogEngine::Redb)
        } else if data_dir.join(Self::Wal.file_name()).exists() {
            Some(LogEngine::Wal)
        } else {
            None
        }
    }

    /// The file or directory the log lives in, inside the data directory.
    pub fn file_name(self) -> &'static str {
        match self {
            LogEngine::Wal => "raft-wal",
            LogEngine::Redb => "raft-log.redb",
        }
    }

    /// Opens (or creates) this engine's log in `data_dir`.
    pub fn open(self, data_dir: &std::path::Path) -> Result<std::sync::Arc<dyn LogStore>, StoreError> {
        let path = data_dir.join(self.file_name());
        Ok(match self {
            LogEngine::Wal => std::sync::Arc::new(WalLogStore::open(&path)?),
            LogEngine::Redb => std::sync::Arc::new(RedbLogStore::open(&path)?),
        })
    }
}

/// A metadata cell kept beside the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetaKey {
    /// The last vote this node cast or accepted (Raft's `currentTerm` + `votedFor`).
    Vote,
    /// The highest log id known to be committed.
    Committed,
    /// The id of the last entry removed by [`LogStore::purge_upto`].
    LastPurged,
}

impl MetaKey {
    pub(crate) fn name(self) -> &'static str {
        match self {
            MetaKey::Vote => "vote",
            MetaKey::Committed => "committed",
            MetaKey::LastPurged => "last_purged",
        }
    }
}

/// An error from the storage engine. Each is fatal for the Raft node (it cannot promise
/// durability any more) except [`StoreError::DiskFull`]: nothing was written, and the
/// same write can be tried again once there is room.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("log store I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The device has no space (or the quota is spent). The write did not happen.
    #[error("disk full: {0}")]
    DiskFull(String),
    #[error("log store engine error: {0}")]
    Engine(String),
    #[error("log store misuse: {0}")]
    Invalid(String),
}

impl From<StoreError> for std::io::Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Io(e) => e,
            other => std::io::Error::other(other.to_string()),
        }
    }
}

/// Whether `e` says the device is out of space (ENOSPC) or quota (EDQUOT).
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Whether this node's data directory is out of space, shared between the log writer
/// (which sets it when a write fails for want of space, and clears it when a retry
/// succeeds) and the node (which refuses writes and gives up leadership meanwhile).
///
/// Read on every request and cleared after every log write, so the common answer
/// ("not full") is one atomic load; the reason sits behind a lock, read only when full.
#[derive(Debug, Clone, Default)]
pub struct DiskHealth(std::sync::Arc<DiskState>);

#[derive(Debug, Default)]
struct DiskState {
    full: std::sync::atomic::AtomicBool,
    why: std::sync::Mutex<String>,
}

impl DiskHealth {
    /// Marks the disk full, with the error that showed it. Returns whether it was not
    /// already.
    pub fn set_full(&self, why: String) -> bool {
        *self.0.why.lock().unwrap_or_else(|p| p.into_inner()) = why;
        !self.0.full.swap(true, std::sync::atomic::Ordering::SeqCst)
    }

    /// Marks the disk usable again. Returns whether it was full.
    pub fn clear(&self) -> bool {
        self.is_full() && self.0.full.swap(false, std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether the disk is full (one atomic load).
    pub fn is_full(&self) -> bool {
        self.0.full.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Why the disk is full, or `None` when it is not.
    pub fn full(&self) -> Option<String> {
        self.is_full()
            .then(|| self.0.why.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// One log entry: its index and its encoded bytes.
pub type RawEntry = (u64, Vec<u8>);

/// The contract every log store keeps.
///
/// - When a mutating method returns `Ok`, its effect is durable (fsynced): a crash right
///   after it loses nothing.
/// - Indexes are contiguous: `append` continues after the last entry (or after a
///   truncation point), and the store never holds a gap.
/// - Methods are synchronous and may block on I/O; callers run them off the async
///   executor (see `raft::log`).
pub trait LogStore: Send + Sync + 'static {
    /// Appends entries in ascending index order, replacing nothing. Durable on return.
    fn append(&self, entries: &[(u64, &[u8])]) -> Result<(), StoreError>;

    /// Whether the log writer should run in the calling task rather than on a thread
    /// of its own. Only for stores whose calls never block (the in-memory twin): a
    /// deterministic simulation cannot have OS threads in the write path.
    fn runs_inline(&self) -> bool {
        false
    }

    /// Removes every entry with an index greater than `after` (every entry, if `None`).
    fn truncate_after(&self, after: Option<u64>) -> Result<(), StoreError>;

    /// Removes every entry with an index up to and including `upto`.
    fn purge_upto(&self, upto: u64) -> Result<(), StoreError>;

    /// The entries with `start <= index < end`, ascending.
    fn read_range(&self, start: u64, end: u64) -> Result<Vec<RawEntry>, StoreError>;

    /// The entry with the highest index, if any.
    fn last_entry(&self) -> Result<Option<RawEntry>, StoreError>;

    /// Stores a metadata cell. Durable on return, except [`MetaKey::Committed`]: that
    /// cell may be written without its own fsync and become durable with the next durable
    /// write. It is a restart hint (how far to re-apply the log at once), never needed for
    /// safety: an acknowledged write is safe because its entry is durable on a quorum.
    fn put_meta(&self, key: MetaKey, value: &[u8]) -> Result<(), StoreError>;

    /// Reads a metadata cell.
    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError>;
}

#[cfg(test)]
pub(crate) mod conformance {
    //! One suite, run against every [`LogStore`] implementation.
    use super::*;

    fn e(i: u64) -> RawEntry {
        (i, format!("entry-{i}").into_bytes())
    }

    /// Appends owned entries through the borrowed-slice API.
    fn app(s: &dyn LogStore, v: &[RawEntry]) {
        let borrowed: Vec<(u64, &[u8])> = v.iter().map(|(i, b)| (*i, b.as_slice())).collect();
        s.append(&borrowed).unwrap();
    }

    fn indexes(v: &[RawEntry]) -> Vec<u64> {
        v.iter().map(|(i, _)| *i).collect()
    }

    /// A fresh store is empty; appended entries read back in order with their bytes.
    pub fn append_then_read(s: &dyn LogStore) {
        assert!(s.last_entry().unwrap().is_none());
        assert!(s.read_range(0, 100).unwrap().is_empty());
        app(s, &[e(1), e(2), e(3)]);
        app(s, &[e(4)]);
        let got = s.read_range(1, 5).unwrap();
        assert_eq!(got, vec![e(1), e(2), e(3), e(4)]);
        assert_eq!(indexes(&s.read_range(2, 4).unwrap()), vec![2, 3]);
        assert_eq!(s.last_entry().unwrap(), Some(e(4)));
    }

    /// Truncation removes the tail after a point; a conflicting suffix can then be rewritten.
    pub fn truncate_then_rewrite(s: &dyn LogStore) {
        app(s, &[e(1), e(2), e(3), e(4)]);
        s.truncate_after(Some(2)).unwrap();
        assert_eq!(indexes(&s.read_range(0, 10).unwrap()), vec![1, 2]);
        app(s, &[(3, b"new-3".to_vec())]);
        assert_eq!(s.last_entry().unwrap(), Some((3, b"new-3".to_vec())));
        s.truncate_after(None).unwrap();
        assert!(s.last_entry().unwrap().is_none());
    }

    /// Purging removes the head; the tail stays readable.
    pub fn purge_keeps_tail(s: &dyn LogStore) {
        app(s, &[e(1), e(2), e(3), e(4), e(5)]);
        s.purge_upto(3).unwrap();
        assert_eq!(indexes(&s.read_range(0, 10).unwrap()), vec![4, 5]);
        s.purge_upto(5).unwrap();
        assert!(s.read_range(0, 10).unwrap().is_empty());
        assert!(s.last_entry().unwrap().is_none());
        // The log continues after a full purge.
        app(s, &[e(6)]);
        assert_eq!(s.last_entry().unwrap(), Some(e(6)));
    }

    /// Metadata cells are independent and overwrite in place.
    pub fn meta_cells(s: &dyn LogStore) {
        assert_eq!(s.get_meta(MetaKey::Vote).unwrap(), None);
        s.put_meta(MetaKey::Vote, b"v1").unwrap();
        s.put_meta(MetaKey::Committed, b"c1").unwrap();
        s.put_meta(MetaKey::Vote, b"v2").unwrap();
        assert_eq!(s.get_meta(MetaKey::Vote).unwrap(), Some(b"v2".to_vec()));
        assert_eq!(s.get_meta(MetaKey::Committed).unwrap(), Some(b"c1".to_vec()));
        assert_eq!(s.get_meta(MetaKey::LastPurged).unwrap(), None);
    }

    /// Runs every case, each on a fresh store from `make`.
    pub fn run_all(make: &dyn Fn() -> Box<dyn LogStore>) {
        append_then_read(&*make());
        truncate_then_rewrite(&*make());
        purge_keeps_tail(&*make());
        meta_cells(&*make());
    }
}
