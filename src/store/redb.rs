//! [`RedbLogStore`]: the log and vote on disk, in a redb database.
//!
//! redb commits are checksummed and crash-safe; `Durability::Immediate` fsyncs before
//! `commit` returns, which is what makes an acknowledged write survive a power cut.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{LogStore, MetaKey, RawEntry, StoreError};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// A [`LogStore`] in one redb file.
pub struct RedbLogStore {
    db: Database,
}

impl std::fmt::Debug for RedbLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbLogStore").finish_non_exhaustive()
    }
}

fn engine<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Engine(e.to_string())
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
        Ok(Self { db })
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
        let mut txn = self.db.begin_write().map_err(engine)?;
        txn.set_durability(durability).map_err(engine)?;
        f(&txn)?;
        txn.commit().map_err(engine)
    }
}

impl LogStore for RedbLogStore {
    fn append(&self, entries: &[(u64, &[u8])]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.write(|txn| {
            let mut t = txn.open_table(LOG).map_err(engine)?;
            for (i, bytes) in entries {
                t.insert(*i, *bytes).map_err(engine)?;
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
            let mut t = txn.open_table(LOG).map_err(engine)?;
            t.retain_in(from.., |_, _| false).map_err(engine)?;
            Ok(())
        })
    }

    fn purge_upto(&self, upto: u64) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut t = txn.open_table(LOG).map_err(engine)?;
            t.retain_in(..=upto, |_, _| false).map_err(engine)?;
            Ok(())
        })
    }

    fn read_range(&self, start: u64, end: u64) -> Result<Vec<RawEntry>, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read().map_err(engine)?;
        let t = txn.open_table(LOG).map_err(engine)?;
        let mut out = Vec::new();
        for row in t.range(start..end).map_err(engine)? {
            let (k, v) = row.map_err(engine)?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn last_entry(&self) -> Result<Option<RawEntry>, StoreError> {
        let txn = self.db.begin_read().map_err(engine)?;
        let t = txn.open_table(LOG).map_err(engine)?;
        let last = t.last().map_err(engine)?;
        Ok(last.map(|(k, v)| (k.value(), v.value().to_vec())))
    }

    fn put_meta(&self, key: MetaKey, value: &[u8]) -> Result<(), StoreError> {
        // The commit index changes with every commit; an fsync of its own would add one
        // disk flush to every write's latency for a value that is only a restart hint.
        let durability = match key {
            MetaKey::Committed => Durability::None,
            _ => Durability::Immediate,
        };
        self.write_with(durability, |txn| {
            let mut t = txn.open_table(META).map_err(engine)?;
            t.insert(key.name(), value).map_err(engine)?;
            Ok(())
        })
    }

    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(engine)?;
        let t = txn.open_table(META).map_err(engine)?;
        let v = t.get(key.name()).map_err(engine)?;
        Ok(v.map(|v| v.value().to_vec()))
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
