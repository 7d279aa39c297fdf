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

    /// Somewhere to put a snapshot arriving from a leader while it arrives. A store on
    /// disk gives a temporary file beside its snapshots, so that a stream of any size
    /// never sits in memory; the in-memory twin gives a buffer.
    fn incoming(&self) -> io::Result<Incoming> {
        Ok(Incoming::Mem(Vec::new()))
    }

    /// The newest snapshot as an open file, with the index it covers, so that a leader
    /// can send it without reading it into memory inside the state machine (whose one
    /// task also applies entries: reading a large file there held up every write). The
    /// in-memory twin has no files. An open file stays readable if a newer snapshot
    /// replaces it meanwhile.
    fn open_latest(&self) -> io::Result<Option<(u64, std::fs::File)>> {
        Ok(None)
    }

    /// Makes a received (staged) snapshot the newest one, as [`SnapshotStore::save`]
    /// does with bytes. Returns whether it was kept.
    fn adopt(&self, index: u64, staged: &Staged) -> io::Result<bool> {
        let bytes = std::fs::read(&staged.path)?;
        self.save(index, &bytes)
    }
}

/// A snapshot's bytes as openraft carries them between the state machine and the
/// network: in memory (built here, loaded for sending, or received by the in-memory
/// twin), or in a staged file (received from a leader by a store on disk).
#[derive(Debug)]
pub enum SnapshotData {
    Bytes(Vec<u8>),
    File(Staged),
    /// The store's newest snapshot, opened for sending (see [`SnapshotStore::open_latest`]).
    Stored(std::fs::File),
}

impl SnapshotData {
    /// The whole snapshot in memory (for a staged file: read back).
    pub fn into_bytes(self) -> io::Result<Vec<u8>> {
        match self {
            SnapshotData::Bytes(b) => Ok(b),
            SnapshotData::File(s) => std::fs::read(&s.path),
            SnapshotData::Stored(mut f) => {
                use std::io::{Read, Seek};
                let mut out = Vec::new();
                f.seek(io::SeekFrom::Start(0))?;
                f.read_to_end(&mut out)?;
                Ok(out)
            }
        }
    }
}

/// A received snapshot in a temporary file beside the store's snapshots. The file is
/// removed when this is dropped, unless the store adopted it (renamed it into place).
#[derive(Debug)]
pub struct Staged {
    path: PathBuf,
}

impl Staged {
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // Gone already once adopted; any other error leaves a `.tmp` that the next
        // start removes.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A snapshot stream being received.
#[derive(Debug)]
pub enum Incoming {
    Mem(Vec<u8>),
    File {
        file: tokio::fs::File,
        staged: Staged,
        len: u64,
    },
}

impl Incoming {
    /// Appends one chunk.
    pub async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        match self {
            Incoming::Mem(b) => b.extend_from_slice(chunk),
            Incoming::File { file, len, .. } => {
                file.write_all(chunk).await?;
                *len += chunk.len() as u64;
            }
        }
        Ok(())
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        match self {
            Incoming::Mem(b) => b.len() as u64,
            Incoming::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole stream has arrived: a staged file is flushed and fsynced.
    pub async fn finish(self) -> io::Result<SnapshotData> {
        use tokio::io::AsyncWriteExt;
        match self {
            Incoming::Mem(b) => Ok(SnapshotData::Bytes(b)),
            Incoming::File { mut file, staged, .. } => {
                file.flush().await?;
                file.sync_all().await?;
                Ok(SnapshotData::File(staged))
            }
        }
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
    /// Numbers the files of snapshots being received.
    received: std::sync::atomic::AtomicU64,
}

impl FileSnapshotStore {
    pub fn new(dir: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        // Temporary files left by a crash while saving or receiving are never whole.
        for e in std::fs::read_dir(&dir)? {
            let path = e?.path();
            if path.extension().is_some_and(|x| x == "tmp") {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(Self {
            dir,
            lock: Mutex::new(()),
            received: Default::default(),
        })
    }

    /// Renames a whole, fsynced file to the snapshot at `index`, then fsyncs the
    /// directory and removes older snapshots. Returns false (doing nothing) when a
    /// snapshot as new is already stored.
    fn install_file(&self, index: u64, whole: &std::path::Path) -> io::Result<bool> {
        let existing = self.files()?;
        if existing.last().is_some_and(|(i, _)| *i >= index) {
            return Ok(false);
        }
        let fin = self.dir.join(format!("snapshot-{index:020}.bin"));
        std::fs::rename(whole, &fin)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        for (_, old) in existing {
            let _ = std::fs::remove_file(old);
        }
        Ok(true)
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
        self.install_file(index, &tmp)
    }

    fn open_latest(&self) -> io::Result<Option<(u64, std::fs::File)>> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        match self.files()?.pop() {
            Some((index, path)) => Ok(Some((index, std::fs::File::open(path)?))),
            None => Ok(None),
        }
    }

    fn incoming(&self) -> io::Result<Incoming> {
        let n = self.received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Unique within the process and across restarts (a stale one is removed at start).
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = self.dir.join(format!("incoming-{t}-{n}.tmp"));
        let file = std::fs::File::create(&path)?;
        Ok(Incoming::File {
            file: tokio::fs::File::from_std(file),
            staged: Staged { path },
            len: 0,
        })
    }

    fn adopt(&self, index: u64, staged: &Staged) -> io::Result<bool> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.install_file(index, &staged.path)
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

    fn tmp_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "tmp"))
            .collect()
    }

    /// A snapshot received from a leader goes to a temporary file as it arrives; once
    /// whole, the store renames it into place. One abandoned midway, or refused as
    /// older than what is stored, leaves no file behind.
    #[tokio::test]
    async fn a_received_snapshot_is_staged_in_a_file_then_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileSnapshotStore::new(dir.path().to_path_buf()).unwrap();
        let mut inc = s.incoming().unwrap();
        assert!(matches!(inc, Incoming::File { .. }));
        for chunk in [&b"one "[..], b"two ", b"three"] {
            inc.write(chunk).await.unwrap();
        }
        assert_eq!(inc.len(), 13);
        assert_eq!(tmp_files(dir.path()).len(), 1, "the stream is on disk as it arrives");
        let SnapshotData::File(staged) = inc.finish().await.unwrap() else {
            panic!("a store on disk stages in a file")
        };
        assert!(s.adopt(7, &staged).unwrap());
        drop(staged);
        assert_eq!(s.load_latest().unwrap().as_deref(), Some(&b"one two three"[..]));
        assert!(tmp_files(dir.path()).is_empty());

        let mut abandoned = s.incoming().unwrap();
        abandoned.write(b"half").await.unwrap();
        drop(abandoned);
        let older = s.incoming().unwrap().finish().await.unwrap();
        let SnapshotData::File(older) = older else { panic!() };
        assert!(!s.adopt(5, &older).unwrap());
        drop(older);
        assert!(tmp_files(dir.path()).is_empty(), "{:?}", tmp_files(dir.path()));
        assert_eq!(s.load_latest().unwrap().as_deref(), Some(&b"one two three"[..]));
    }

    /// The in-memory twin receives into a buffer.
    #[tokio::test]
    async fn the_mem_store_receives_into_memory() {
        let s = MemSnapshotStore::default();
        let mut inc = s.incoming().unwrap();
        inc.write(b"abc").await.unwrap();
        assert!(matches!(inc.finish().await.unwrap(), SnapshotData::Bytes(b) if b == b"abc"));
    }

    #[test]
    fn mem_store_keeps_the_newest() {
        newest_wins(&MemSnapshotStore::default());
    }
}
