//! Where state-machine snapshots are kept: [`SnapshotStore`], with plain files on disk
//! ([`FileSnapshotStore`]) and an in-memory twin ([`MemSnapshotStore`]). The snapshot's
//! format (header, checksum, body) belongs to the state machine; these only keep bytes.

use std::io;
use std::path::PathBuf;

/// Where snapshots are kept. `save` is durable on return and replaces the previous one.
pub trait SnapshotStore: Send + Sync + 'static {
    fn save(&self, bytes: &[u8]) -> io::Result<()>;
    fn load_latest(&self) -> io::Result<Option<Vec<u8>>>;
}

/// Snapshots as plain files: write to a temp file, fsync, rename over the old one, fsync
/// the directory. A crash at any point leaves either the old or the new snapshot whole.
pub struct FileSnapshotStore {
    dir: PathBuf,
}

impl FileSnapshotStore {
    pub fn new(dir: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }
}

impl SnapshotStore for FileSnapshotStore {
    fn save(&self, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let tmp = self.dir.join("snapshot.tmp");
        let fin = self.dir.join("snapshot.bin");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &fin)?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    fn load_latest(&self) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.dir.join("snapshot.bin")) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The in-memory twin of [`FileSnapshotStore`].
#[derive(Default)]
pub struct MemSnapshotStore {
    latest: std::sync::Mutex<Option<Vec<u8>>>,
}

impl SnapshotStore for MemSnapshotStore {
    fn save(&self, bytes: &[u8]) -> io::Result<()> {
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(bytes.to_vec());
        Ok(())
    }
    fn load_latest(&self) -> io::Result<Option<Vec<u8>>> {
        Ok(self.latest.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
}
