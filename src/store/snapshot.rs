//! Where state-machine snapshots are kept: [`SnapshotStore`], with plain files on disk
//! ([`FileSnapshotStore`]) and an in-memory twin ([`MemSnapshotStore`]). The snapshot's
//! format (header, checksum, body) belongs to the state machine; these only keep bytes
//! and the log index each snapshot covers.

use std::io;
use std::path::PathBuf;
use std::sync::Mutex;

/// Where snapshots are kept.
///
/// The contract:
/// - `save` is durable on return, and replaces the stored snapshot only with a newer one:
///   a snapshot covering the same or an older index is dropped (`Ok(false)`). A locally
///   built snapshot can finish after a newer one was installed from the leader; keeping
///   the older one would leave the node unable to restart once the log is purged.
/// - Saves are serialized; `load_latest` returns the newest complete snapshot.
pub trait SnapshotStore: Send + Sync + 'static {
    /// Stores `bytes` as the snapshot covering the log up to `index`. Returns whether it
    /// was kept.
    fn save(&self, index: u64, bytes: &[u8]) -> io::Result<bool>;
    fn load_latest(&self) -> io::Result<Option<Vec<u8>>>;

    /// Where the newest snapshot lives, for error messages ("its file").
    fn describe_latest(&self) -> String {
        "the newest snapshot".into()
    }

    /// Whether calls may run in the calling task instead of on tokio's blocking pool.
    /// Only for stores that never block (the in-memory twin): a deterministic
    /// simulation cannot have OS threads in the path.
    fn runs_inline(&self) -> bool {
        false
    }
}

/// Runs `f` on the store: inline if it asks for that, else on the blocking pool.
pub(crate) async fn on_store<T: Send + 'static>(
    store: std::sync::Arc<dyn SnapshotStore>,
    f: impl FnOnce(&dyn SnapshotStore) -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    if store.runs_inline() {
        return f(store.as_ref());
    }
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(io::Error::other)?
}

/// Snapshots as plain files named by index: write a temp file, fsync, rename, fsync the
/// directory, then remove older ones. A crash at any point leaves a whole snapshot.
pub struct FileSnapshotStore {
    dir: PathBuf,
    lock: Mutex<()>,
}

impl FileSnapshotStore {
    pub fn new(dir: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            lock: Mutex::new(()),
        })
    }

    /// The snapshot files present, by index, ascending.
    fn files(&self) -> io::Result<Vec<(u64, PathBuf)>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(idx) = name
                .strip_prefix("snapshot-")
                .and_then(|n| n.strip_suffix(".bin"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                out.push((idx, e.path()));
            }
        }
        out.sort();
        Ok(out)
    }
}

impl SnapshotStore for FileSnapshotStore {
    fn save(&self, index: u64, bytes: &[u8]) -> io::Result<bool> {
        use std::io::Write;
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let existing = self.files()?;
        if existing.last().is_some_and(|(i, _)| *i >= index) {
            return Ok(false);
        }
        let tmp = self.dir.join(format!("snapshot-{index:020}.tmp"));
        let fin = self.dir.join(format!("snapshot-{index:020}.bin"));
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        if let Err(e) = written {
            // A half-written file would hold on to the space that ran out.
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &fin)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        for (_, old) in existing {
            let _ = std::fs::remove_file(old);
        }
        Ok(true)
    }

    fn load_latest(&self) -> io::Result<Option<Vec<u8>>> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        match self.files()?.last() {
            Some((_, path)) => Ok(Some(std::fs::read(path)?)),
            None => Ok(None),
        }
    }

    fn describe_latest(&self) -> String {
        match self.files().ok().and_then(|f| f.last().cloned()) {
            Some((_, path)) => path.display().to_string(),
            None => self.dir.display().to_string(),
        }
    }
}

/// The in-memory twin of [`FileSnapshotStore`].
#[derive(Default)]
pub struct MemSnapshotStore {
    latest: Mutex<Option<(u64, Vec<u8>)>>,
}

impl MemSnapshotStore {
    /// The index of the snapshot held, if any (for checks in tests).
    pub fn latest_index(&self) -> Option<u64> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(i, _)| *i)
    }
}

impl SnapshotStore for MemSnapshotStore {
    fn runs_inline(&self) -> bool {
        true
    }

    fn save(&self, index: u64, bytes: &[u8]) -> io::Result<bool> {
        let mut g = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        if g.as_ref().is_some_and(|(i, _)| *i >= index) {
            return Ok(false);
        }
        *g = Some((index, bytes.to_vec()));
        Ok(true)
    }
    fn load_latest(&self) -> io::Result<Option<Vec<u8>>> {
        Ok(self
            .latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(_, b)| b.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both stores keep the newest snapshot and drop an older one saved after it.
    fn newest_wins(s: &dyn SnapshotStore) {
        assert_eq!(s.load_latest().unwrap(), None);
        assert!(s.save(10, b"ten").unwrap());
        assert!(s.save(20, b"twenty").unwrap());
        assert!(!s.save(15, b"fifteen, finished late").unwrap());
        assert!(!s.save(20, b"twenty again").unwrap());
        assert_eq!(s.load_latest().unwrap().as_deref(), Some(&b"twenty"[..]));
    }

    #[test]
    fn file_store_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileSnapshotStore::new(dir.path().to_path_buf()).unwrap();
        newest_wins(&s);
        // Older files are removed; a reopened store finds the newest.
        assert_eq!(s.files().unwrap().len(), 1);
        let again = FileSnapshotStore::new(dir.path().to_path_buf()).unwrap();
        assert_eq!(again.load_latest().unwrap().as_deref(), Some(&b"twenty"[..]));
    }

    #[test]
    fn mem_store_keeps_the_newest() {
        newest_wins(&MemSnapshotStore::default());
    }
}
