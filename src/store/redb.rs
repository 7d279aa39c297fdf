//! [`RedbLogStore`]: the log and vote on disk, in a redb database.
//!
//! redb commits are checksummed and crash-safe; `Durability::Immediate` fsyncs before
//! `commit` returns, which is what makes an acknowledged write survive a power cut.
//!
//! After an I/O error redb answers every call with `PreviousIo` until the database is
//! closed and opened again. So a failed write marks the store broken, and the next call
//! reopens it first: that is how a node whose disk filled up writes again once space is
//! freed, without a restart. (A commit that failed left nothing behind: redb's commit is
//! all or nothing, and the reopen rolls back to the last good one.)

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{LogStore, MetaKey, RawEntry, StoreError};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// A [`LogStore`] in one redb file.
pub struct RedbLogStore {
    path: PathBuf,
    /// `None` while a reopen after a failure has not succeeded yet.
    db: RwLock<Option<Database>>,
    /// Set by a call that failed with an I/O error; the next call reopens.
    broken: AtomicBool,
}

impl std::fmt::Debug for RedbLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbLogStore").finish_non_exhaustive()
    }
}

fn engine<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Engine(e.to_string())
}

/// Whether a redb error came from the device running out of space.
fn out_of_space(e: &redb::Error) -> bool {
    match e {
        redb::Error::Io(io) => super::is_disk_full(io),
        other => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(other);
            while let Some(s) = source {
                if s.downcast_ref::<std::io::Error>().is_some_and(super::is_disk_full) {
                    return true;
                }
                source = s.source();
            }
            false
        }
    }
}

impl RedbLogStore {
    /// Opens the database at `path`, creating it (and its tables) if absent.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(engine)?;
        let txn = db.begin_write().map_err(engine)?;
        {
            txn.open_table(LOG).map_err(engine)?;
            txn.open_table(META).map_err(engine)?;
        }
        txn.commit().map_err(engine)?;
        Ok(Self {
            path: path.to_path_buf(),
            db: RwLock::new(Some(db)),
            broken: AtomicBool::new(false),
        })
    }

    /// Turns a redb error into ours; an I/O error (or redb's `PreviousIo` after one)
    /// marks the store for reopening.
    fn fail(&self, e: impl Into<redb::Error>) -> StoreError {
        let e: redb::Error = e.into();
        let full = out_of_space(&e);
        if full
            || matches!(
                e,
                redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::Backend(_)
            )
        {
            self.broken.store(true, Ordering::SeqCst);
        }
        if full {
            StoreError::DiskFull(format!("{}: {e}", self.path.display()))
        } else {
            StoreError::Engine(e.to_string())
        }
    }

    /// The open database, reopened first if a call failed since it was last opened.
    fn db(&self) -> Result<RwLockReadGuard<'_, Option<Database>>, StoreError> {
        if self.broken.load(Ordering::SeqCst) {
            let mut g = self.db.write().unwrap_or_else(|p| p.into_inner());
            if self.broken.load(Ordering::SeqCst) {
                // Close the failed instance first: redb holds a lock on the file.
                drop(g.take());
                match Database::create(&self.path) {
                    Ok(db) => {
                        *g = Some(db);
                        self.broken.store(false, Ordering::SeqCst);
                        tracing::debug!(path = %self.path.display(), "log database reopened after an I/O error");
                    }
                    Err(e) => return Err(self.fail(e)),
                }
            }
        }
        let g = self.db.read().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            return Err(StoreError::Engine("log database is not open".into()));
        }
        Ok(g)
    }

    /// Runs `f` in one write transaction and commits it durably.
    fn write<F>(&self, f: F) -> Result<(), StoreError>
    where
        F: FnOnce(&redb::WriteTransaction) -> Result<(), StoreError>,
    {
        self.write_with(Durability::Immediate, f)
    }

    fn write_with<F>(&self, durability: Durability, f: F) -> Result<(), StoreError>
    where
        F: FnOnce(&redb::WriteTransaction) -> Result<(), StoreError>,
    {
        let g = self.db()?;
        let db = g.as_ref().expect("db() checked");
        let mut txn = db.begin_write().map_err(|e| self.fail(e))?;
        txn.set_durability(durability).map_err(|e| self.fail(e))?;
        f(&txn)?;
        txn.commit().map_err(|e| self.fail(e))
    }

    /// Runs `f` in a read transaction.
    fn read<T>(&self, f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>) -> Result<T, StoreError> {
        let g = self.db()?;
        let db = g.as_ref().expect("db() checked");
        let txn = db.begin_read().map_err(|e| self.fail(e))?;
        f(&txn).map_err(|e| self.fail(e))
    }
}

impl LogStore for RedbLogStore {
    fn append(&self, entries: &[(u64, &[u8])]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.write(|txn| {
            let mut t = txn.open_table(LOG).map_err(|e| self.fail(e))?;
            for (i, bytes) in entries {
                t.insert(*i, *bytes).map_err(|e| self.fail(e))?;
            }
            Ok(())
        })
    }

    fn truncate_after(&self, after: Option<u64>) -> Result<(), StoreError> {
        let from = match after {
            Some(i) => i.saturating_add(1),
            None => 0,
        };
        self.write(|txn| {
            let mut t = txn.open_table(LOG).map_err(|e| self.fail(e))?;
            t.retain_in(from.., |_, _| false).map_err(|e| self.fail(e))?;
            Ok(())
        })
    }

    fn purge_upto(&self, upto: u64) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut t = txn.open_table(LOG).map_err(|e| self.fail(e))?;
            t.retain_in(..=upto, |_, _| false).map_err(|e| self.fail(e))?;
            Ok(())
        })
    }

    fn read_range(&self, start: u64, end: u64) -> Result<Vec<RawEntry>, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        self.read(|txn| {
            let t = txn.open_table(LOG)?;
            let mut out = Vec::new();
            for row in t.range(start..end)? {
                let (k, v) = row?;
                out.push((k.value(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    fn last_entry(&self) -> Result<Option<RawEntry>, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(LOG)?;
            let last = t.last()?;
            Ok(last.map(|(k, v)| (k.value(), v.value().to_vec())))
        })
    }

    fn put_meta(&self, key: MetaKey, value: &[u8]) -> Result<(), StoreError> {
        // The commit index changes with every commit; an fsync of its own would add one
        // disk flush to every write's latency for a value that is only a restart hint.
        let durability = match key {
            MetaKey::Committed => Durability::None,
            _ => Durability::Immediate,
        };
        self.write_with(durability, |txn| {
            let mut t = txn.open_table(META).map_err(|e| self.fail(e))?;
            t.insert(key.name(), value).map_err(|e| self.fail(e))?;
            Ok(())
        })
    }

    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(META)?;
            let v = t.get(key.name())?;
            Ok(v.map(|v| v.value().to_vec()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The disk store keeps the `LogStore` contract.
    #[test]
    fn redb_store_passes_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let n = std::sync::atomic::AtomicU32::new(0);
        crate::store::conformance::run_all(&|| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::new(RedbLogStore::open(&dir.path().join(format!("log-{i}.redb"))).unwrap())
        });
    }

    /// What was committed is there after the database is closed and opened again.
    #[test]
    fn redb_store_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        {
            let s = RedbLogStore::open(&path).unwrap();
            s.append(&[(1, &b"a"[..]), (2, &b"b"[..])]).unwrap();
            s.put_meta(MetaKey::Vote, b"vote").unwrap();
        }
        let s = RedbLogStore::open(&path).unwrap();
        assert_eq!(s.last_entry().unwrap(), Some((2, b"b".to_vec())));
        assert_eq!(s.get_meta(MetaKey::Vote).unwrap(), Some(b"vote".to_vec()));
    }
}
