//! `braft restore`: a data directory from a backup, offline (etcd's `etcdutl snapshot
//! restore`).
//!
//! The directory starts a *new* one-node cluster that holds the backup's state at the
//! backup's log index and term, so versions keep counting up from there (a key's
//! version never goes backwards across a restore). Other nodes then join it as usual.
//!
//! What is written, in a temporary directory renamed into place at the end (so a
//! failure leaves nothing behind):
//! - `node.json`: the node id and the codec the backup was written with;
//! - `snapshots/`: the backup, with the membership rewritten to this node alone;
//! - `raft-log.redb`: an empty log purged up to the backup's log id, that log id as
//!   committed, and a vote for this node in the backup's term (not committed, so the
//!   node's first election moves to a later term than any entry it holds).

use std::path::{Path, PathBuf};

use crate::raft::{wire, LogId, NodeId, Peer, Vote};
use crate::store::{FileSnapshotStore, MetaKey, SnapshotStore};

/// What a restore produced.
#[derive(Debug, Clone)]
pub struct Restored {
    pub node_id: NodeId,
    pub index: u64,
    pub term: u64,
    pub services: Vec<String>,
    pub data_dir: PathBuf,
}

/// Why a restore did not happen. In every case nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("cannot read the backup {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// Truncated, corrupted, or not a braft backup.
    #[error("{path} is not a usable backup: {why}")]
    BadBackup { path: PathBuf, why: String },
    #[error("the data directory {0} already holds files; restore into a new directory")]
    NotEmpty(PathBuf),
    #[error("node id 0 is not allowed")]
    BadNodeId,
    #[error("writing {path}: {why}")]
    Write { path: PathBuf, why: String },
}

/// Restores the backup at `from` into the new data directory `data_dir`, for node
/// `node_id` (random when `None`) reachable at `peer`.
pub fn restore(from: &Path, data_dir: &Path, node_id: Option<NodeId>, peer: Peer) -> Result<Restored, RestoreError> {
    let bytes = std::fs::read(from).map_err(|source| RestoreError::Read {
        path: from.to_path_buf(),
        source,
    })?;
    let bad = |why: String| RestoreError::BadBackup {
        path: from.to_path_buf(),
        why,
    };
    let info = crate::raft::sm::inspect_backup(&bytes).map_err(|e| bad(e.to_string()))?;
    if node_id == Some(0) {
        return Err(RestoreError::BadNodeId);
    }
    if std::fs::read_dir(data_dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(RestoreError::NotEmpty(data_dir.to_path_buf()));
    }
    let id = node_id.unwrap_or_else(crate::node::new_node_id);
    let snapshot = crate::raft::sm::restored_snapshot(&bytes, id, peer).map_err(|e| bad(e.to_string()))?;

    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = data_dir.with_file_name(format!(".{name}.restoring-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let written = write_dir(&tmp, id, &info, &snapshot).and_then(|()| {
        if data_dir.exists() {
            // An empty directory (checked above): replaced by the finished one.
            std::fs::remove_dir(data_dir)?;
        }
        std::fs::rename(&tmp, data_dir)?;
        if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    });
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(RestoreError::Write {
            path: data_dir.to_path_buf(),
            why: e.to_string(),
        });
    }
    Ok(Restored {
        node_id: id,
        index: info.last_log_id.index,
        term: info.last_log_id.leader_id.term,
        services: info.services,
        data_dir: data_dir.to_path_buf(),
    })
}

fn write_dir(dir: &Path, id: NodeId, info: &crate::raft::sm::BackupInfo, snapshot: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let (codec, serializer) = match info.format.parse::<crate::codec::Codec>() {
        Ok(c) => (c, None),
        Err(_) => (crate::codec::Codec::MsgPack, Some(info.format.clone())),
    };
    crate::node::write_identity(dir, id, codec, serializer)?;
    let at: LogId = info.last_log_id;
    let snapshots = FileSnapshotStore::new(dir.join("snapshots"))?;
    snapshots.save(at.index, snapshot)?;
    let log = crate::store::LogEngine::default()
        .open(dir)
        .map_err(std::io::Error::from)?;
    log.put_meta(MetaKey::LastPurged, &enc(&at)?)
        .map_err(std::io::Error::from)?;
    log.put_meta(MetaKey::Committed, &enc(&Some(at))?)
        .map_err(std::io::Error::from)?;
    let vote = Vote::new(at.leader_id.term, id);
    log.put_meta(MetaKey::Vote, &enc(&vote)?)
        .map_err(std::io::Error::from)?;
    drop(log);
    std::fs::File::open(dir)?.sync_all()
}

fn enc<T: serde::Serialize>(v: &T) -> std::io::Result<Vec<u8>> {
    wire::encode(v).map_err(|e| std::io::Error::other(e.to_string()))
}
