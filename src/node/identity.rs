//! The node's identity, kept in `<data_dir>/node.json`: created on first start, checked on
//! every later one. A node that restarts is the same member with the same data; a data
//! directory never silently changes hands or codecs.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::codec::{Codec, Format};
use crate::config::ConfigError;
use crate::error::Error;
use crate::raft::NodeId;

#[derive(Debug, Serialize, Deserialize)]
struct Identity {
    node_id: NodeId,
    codec: Codec,
    /// The application's own serializer, by name, when it has one (then `codec` is
    /// unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    serializer: Option<String>,
}

impl Identity {
    fn format_name(&self) -> &str {
        self.serializer.as_deref().unwrap_or(self.codec.name())
    }
}

/// Returns the stored id, or creates the identity file (with `wanted` or a random id).
pub fn load_or_create(dir: &Path, wanted: Option<NodeId>, format: &Format) -> Result<NodeId, Error> {
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
            if id.format_name() != format.name() {
                return Err(Error::Config(ConfigError {
                    setting: "BRAFT_CODEC".into(),
                    problem: format!(
                        "{} differs from {}, which this data directory was written with",
                        format.name(),
                        id.format_name()
                    ),
                }));
            }
            Ok(id.node_id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let node_id = wanted.unwrap_or_else(new_id);
            let (codec, serializer) = match format {
                Format::Builtin(c) => (*c, None),
                Format::Custom(s) => (Codec::MsgPack, Some(s.name().to_string())),
            };
            create(dir, node_id, codec, serializer)?;
            tracing::info!(node_id, "created node identity in {}", path.display());
            Ok(node_id)
        }
        Err(e) => Err(e.into()),
    }
}

/// A fresh random node id (never 0).
pub(crate) fn new_id() -> NodeId {
    rand::random::<u64>() >> 1 | 1
}

/// Writes `dir/node.json` durably (temp file, fsync, rename, fsync the directory).
pub(crate) fn create(dir: &Path, node_id: NodeId, codec: Codec, serializer: Option<String>) -> std::io::Result<()> {
    let tmp = dir.join("node.json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        let identity = Identity {
            node_id,
            codec,
            serializer,
        };
        f.write_all(&serde_json::to_vec_pretty(&identity).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join("node.json"))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id survives restarts; a conflicting BRAFT_NODE_ID or codec is refused.
    #[test]
    fn identity_is_kept_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let msgpack = Format::Builtin(Codec::MsgPack);
        let id = load_or_create(dir.path(), None, &msgpack).unwrap();
        assert_ne!(id, 0);
        assert_eq!(load_or_create(dir.path(), None, &msgpack).unwrap(), id);
        assert_eq!(load_or_create(dir.path(), Some(id), &msgpack).unwrap(), id);
        assert!(matches!(
            load_or_create(dir.path(), Some(id + 1), &msgpack),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            load_or_create(dir.path(), None, &Format::Builtin(Codec::Json)),
            Err(Error::Config(_))
        ));
        // An application's own serializer is pinned by name.
        let other = tempfile::tempdir().unwrap();
        let custom = Format::Custom(std::sync::Arc::new(crate::codec::Json));
        let id = load_or_create(other.path(), None, &custom).unwrap();
        assert_eq!(load_or_create(other.path(), None, &custom).unwrap(), id);
        assert!(matches!(
            load_or_create(other.path(), None, &msgpack),
            Err(Error::Config(_))
        ));
    }
}
