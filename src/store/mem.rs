//! [`MemLogStore`]: the in-memory twin of the on-disk log store, for tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::{LogStore, MetaKey, RawEntry, StoreError};

/// A [`LogStore`] in memory. Every write is "durable" for as long as the value lives,
/// which is what tests of the layers above need, with one exception that mirrors the
/// disk store: the commit hint ([`MetaKey::Committed`]) is written without its own fsync
/// and becomes durable only with the next durable write. [`MemLogStore::crash`] loses
/// it the way a power cut would, so a simulation that keeps this store across a
/// simulated crash sees what a restarted process would find on disk.
#[derive(Debug, Default)]
pub struct MemLogStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    log: BTreeMap<u64, Vec<u8>>,
    meta: HashMap<MetaKey, Vec<u8>>,
    /// A commit hint not yet carried to "disk" by a durable write.
    volatile_committed: Option<Vec<u8>>,
}

impl Inner {
    /// A durable write also makes the pending commit hint durable (as redb does with a
    /// `Durability::None` commit followed by an `Immediate` one).
    fn sync(&mut self) {
        if let Some(c) = self.volatile_committed.take() {
            self.meta.insert(MetaKey::Committed, c);
        }
    }
}

impl MemLogStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets what a crash loses: the commit hint written since the last durable
    /// write. Everything else was durable when its call returned.
    pub fn crash(&self) {
        self.lock().volatile_committed = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock can only come from a bug in this file; the data
        // is plain maps, so carrying on with it is sound.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl LogStore for MemLogStore {
    fn runs_inline(&self) -> bool {
        true
    }

    fn append(&self, entries: &[(u64, &[u8])]) -> Result<(), StoreError> {
        let mut g = self.lock();
        g.sync();
        for (i, bytes) in entries {
            g.log.insert(*i, bytes.to_vec());
        }
        Ok(())
    }

    fn truncate_after(&self, after: Option<u64>) -> Result<(), StoreError> {
        let mut g = self.lock();
        g.sync();
        match after {
            Some(i) => {
                g.log.split_off(&(i + 1));
            }
            None => g.log.clear(),
        }
        Ok(())
    }

    fn purge_upto(&self, upto: u64) -> Result<(), StoreError> {
        let mut g = self.lock();
        g.sync();
        let keep = g.log.split_off(&(upto + 1));
        g.log = keep;
        Ok(())
    }

    fn read_range(&self, start: u64, end: u64) -> Result<Vec<RawEntry>, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let g = self.lock();
        Ok(g.log.range(start..end).map(|(i, b)| (*i, b.clone())).collect())
    }

    fn last_entry(&self) -> Result<Option<RawEntry>, StoreError> {
        Ok(self.lock().log.last_key_value().map(|(i, b)| (*i, b.clone())))
    }

    fn put_meta(&self, key: MetaKey, value: &[u8]) -> Result<(), StoreError> {
        let mut g = self.lock();
        if key == MetaKey::Committed {
            g.volatile_committed = Some(value.to_vec());
        } else {
            g.sync();
            g.meta.insert(key, value.to_vec());
        }
        Ok(())
    }

    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        let g = self.lock();
        if key == MetaKey::Committed {
            if let Some(c) = &g.volatile_committed {
                return Ok(Some(c.clone()));
            }
        }
        Ok(g.meta.get(&key).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The in-memory twin keeps the same contract as the disk store.
    #[test]
    fn mem_store_passes_conformance_suite() {
        crate::store::conformance::run_all(&|| Box::new(MemLogStore::new()));
    }

    /// A crash loses the commit hint written after the last durable write, and nothing
    /// else: the entries and the vote survive, and so does a hint a later append carried.
    #[test]
    fn a_crash_loses_only_the_unsynced_commit_hint() {
        let s = MemLogStore::new();
        s.append(&[(1, b"a".as_slice())]).unwrap();
        s.put_meta(MetaKey::Committed, b"1").unwrap();
        s.append(&[(2, b"b".as_slice())]).unwrap(); // carries hint 1 to disk
        s.put_meta(MetaKey::Committed, b"2").unwrap();
        s.put_meta(MetaKey::Vote, b"v").unwrap(); // a durable write: hint 2 is safe too
        s.put_meta(MetaKey::Committed, b"3").unwrap();
        assert_eq!(
            s.get_meta(MetaKey::Committed).unwrap().as_deref(),
            Some(b"3".as_slice())
        );

        s.crash();
        assert_eq!(
            s.get_meta(MetaKey::Committed).unwrap().as_deref(),
            Some(b"2".as_slice())
        );
        assert_eq!(s.get_meta(MetaKey::Vote).unwrap().as_deref(), Some(b"v".as_slice()));
        assert_eq!(s.read_range(1, 3).unwrap().len(), 2);
    }
}
