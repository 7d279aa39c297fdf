//! Adapts a [`LogStore`] to openraft's `RaftLogStorage`: entries and votes are encoded
//! with the wire format and stored as opaque bytes. Store calls block on fsync, so they run
//! on tokio's blocking pool, never on the executor threads that drive Raft.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};

use super::{wire, Entry, LogId, TypeConfig, Vote};
use crate::store::{LogStore, MetaKey, RawEntry};

/// The log, as openraft sees it. Cheap to clone: clones share the store.
#[derive(Clone)]
pub struct LogAdapter {
    store: Arc<dyn LogStore>,
}

fn wire_err(e: wire::WireError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl LogAdapter {
    pub fn new(store: Arc<dyn LogStore>) -> Self {
        Self { store }
    }

    async fn blocking<T, F>(&self, f: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn LogStore) -> Result<T, crate::store::StoreError> + Send + 'static,
    {
        let store = self.store.clone();
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
        self.blocking(move |s| s.put_meta(key, &bytes)).await
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
        let raw = self.blocking(move |s| s.read_range(start, end)).await?;
        raw.iter()
            .map(|(_, bytes)| wire::decode::<Entry>(bytes).map_err(wire_err))
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
        let last = self.blocking(|s| s.last_entry()).await?;
        let last_log_id = match last {
            Some((_, bytes)) => Some(wire::decode::<Entry>(&bytes).map_err(wire_err)?.log_id),
            None => last_purged,
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
        self.write_meta(MetaKey::Committed, &committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.read_meta::<Option<LogId>>(MetaKey::Committed).await?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let raw: Vec<RawEntry> = entries
            .into_iter()
            .map(|e| Ok((e.log_id.index, wire::encode(&e).map_err(wire_err)?)))
            .collect::<io::Result<_>>()?;
        let result = self.blocking(move |s| s.append(&raw)).await;
        match result {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let after = last_log_id.map(|l| l.index);
        self.blocking(move |s| s.truncate_after(after)).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // Record the purge point first: after a crash between the two steps the log still
        // holds entries at or below it, which is harmless, while the reverse order could
        // lose track of where the log begins.
        self.write_meta(MetaKey::LastPurged, &log_id).await?;
        let upto = log_id.index;
        self.blocking(move |s| s.purge_upto(upto)).await
    }
}
