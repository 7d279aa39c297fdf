//! The node's identity, kept in `<data_dir>/node.json`: created on first start, checked on
//! every later one. A node that restarts is the same member with the same data; a data
//! directory never silently changes hands or codecs.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::codec::Codec;
use crate::config::ConfigError;
use crate::error::Error;
use crate::raft::NodeId;

#[derive(Debug, Serialize, Deserialize)]
struct Identity {
    node_id: NodeId,
    codec: Codec,
}

/// Returns the stored id, or creates the identity file (with `wanted` or a random id).
pub fn load_or_create(dir: &Path, wanted: Option<NodeId>, codec: Codec) -> Result<NodeId, Error> {
    let path = dir.join("node.json");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let id: Identity = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Fatal(format!("{} is corrupt: {e}", path.display())))?;
            if let Some(w) = wanted {
                if w != id.node_id {
                    return Err(Error::Config(ConfigError {
                        setting: "BRAFT_NODE_ID".into(),
                        problem: format!(
                            "{w} differs from the id {} stored in {}; a data directory belongs to one node",
                            id.node_id,
                            path.display()
                        ),
                    }));
                }
            }
            if id.codec != codec {
                return Err(Error::Config(ConfigError {
                    setting: "BRAFT_CODEC".into(),
                    problem: format!(
                        "{codec:?} differs from {:?}, which this data directory was written with",
                        id.codec
                    ),
                }));
            }
            Ok(id.node_id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Ids are random 63-bit numbers: unique in practice, and never 0.
            let node_id = wanted.unwrap_or_else(|| rand::random::<u64>() >> 1 | 1);
            let tmp = dir.join("node.json.tmp");
            {
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&serde_json::to_vec_pretty(&Identity { node_id, codec }).map_err(std::io::Error::other)?)?;
                f.sync_all()?;
            }
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(dir)?.sync_all()?;
            tracing::info!(node_id, "created node identity in {}", path.display());
            Ok(node_id)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id survives restarts; a conflicting BRAFT_NODE_ID or codec is refused.
    #[test]
    fn identity_is_kept_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let id = load_or_create(dir.path(), None, Codec::MsgPack).unwrap();
        assert_ne!(id, 0);
        assert_eq!(load_or_create(dir.path(), None, Codec::MsgPack).unwrap(), id);
        assert_eq!(load_or_create(dir.path(), Some(id), Codec::MsgPack).unwrap(), id);
        assert!(matches!(
            load_or_create(dir.path(), Some(id + 1), Codec::MsgPack),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            load_or_create(dir.path(), None, Codec::Json),
            Err(Error::Config(_))
        ));
    }
}
