//! [`MemLogStore`]: the in-memory twin of the on-disk log store, for tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::{LogStore, MetaKey, RawEntry, StoreError};

/// A [`LogStore`] in memory. Every write is "durable" for as long as the value lives,
/// which is what tests of the layers above need.
#[derive(Debug, Default)]
pub struct MemLogStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    log: BTreeMap<u64, Vec<u8>>,
    meta: HashMap<MetaKey, Vec<u8>>,
}

impl MemLogStore {
    pub fn new() -> Self {
        Self::default()
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
        for (i, bytes) in entries {
            g.log.insert(*i, bytes.to_vec());
        }
        Ok(())
    }

    fn truncate_after(&self, after: Option<u64>) -> Result<(), StoreError> {
        let mut g = self.lock();
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
        self.lock().meta.insert(key, value.to_vec());
        Ok(())
    }

    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().meta.get(&key).cloned())
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
}
