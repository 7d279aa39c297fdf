//! Backup: the whole applied state as one file, taken at a linearizable point (etcd's
//! `snapshot save`). The file is a snapshot file (magic, format, CRC-32, body) whose
//! body names the log index and term it covers; `braft restore` (see
//! [`crate::restore`]) turns it into a data directory.
//!
//! The leader takes it: after a ReadIndex round it has applied everything committed
//! before the request, and the copy is taken under the state lock, so it holds every
//! write acknowledged before the backup began. A follower cannot know that point
//! without asking the leader, so it answers `Unavailable` naming the leader, which
//! clients follow (HTTP answers a redirect).

use super::Node;
use crate::error::Error;
use crate::raft::consensus::ReadRefused;

/// A consistent copy of the applied state.
#[derive(Debug, Clone)]
pub struct Backup {
    /// The log index and term the backup covers.
    pub index: u64,
    pub term: u64,
    /// The backup file's bytes.
    pub bytes: Vec<u8>,
}

impl Node {
    /// Takes a backup of the whole state machine (on the leader; a follower answers
    /// [`Error::Unavailable`] naming the leader).
    pub async fn backup(&self) -> Result<Backup, Error> {
        if self.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        let timeout = self.inner.config.request_timeout();
        let why = match self.consensus().read_gate(false, timeout).await {
            Ok(()) => None,
            Err(ReadRefused::NotLeader { leader }) => Some(format!(
                "backups are taken by the leader ({})",
                leader.map_or("none elected".into(), |l| l.to_string())
            )),
            Err(ReadRefused::NoQuorum(e)) => Some(e),
            Err(ReadRefused::Fatal(e)) => return Err(Error::Fatal(e)),
        };
        if let Some(reason) = why {
            let st = self.status();
            let leader = st
                .leader
                .filter(|l| *l != self.id())
                .map(|id| super::hint(id, st.peer(id)));
            return Err(Error::Unavailable { reason, leader });
        }
        let state = self.inner.state.clone();
        let (at, bytes) = tokio::task::spawn_blocking(move || state.backup())
            .await
            .map_err(|e| Error::Fatal(e.to_string()))??;
        let at = at.ok_or_else(|| Error::Unavailable {
            reason: "nothing has been applied yet".into(),
            leader: None,
        })?;
        Ok(Backup {
            index: at.index,
            term: at.leader_id.term,
            bytes,
        })
    }
}
