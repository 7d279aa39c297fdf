//! How service commands, outputs and queries become bytes in the Raft log.
//!
//! MessagePack ([`MsgPack`], via rmp-serde) is the default: compact and fast. JSON ([`Json`])
//! is the alternative when humans read the log. Every node of a cluster must use the same
//! codec, since entries are decoded by whoever applies them; the choice is fixed per data
//! directory by configuration (`BRAFT_CODEC`).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A serialization failure.
#[derive(Debug, thiserror::Error)]
#[error("{codec} codec: {message}")]
pub struct CodecError {
    pub codec: &'static str,
    pub message: String,
}

/// The serializer trait. Implementations must be deterministic for a given value: the
/// same command is encoded once and applied on every node.
pub trait Serializer: Send + Sync + 'static {
    /// A short stable name ("msgpack", "json").
    fn name(&self) -> &'static str;
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError>;
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError>;
}

/// MessagePack, with struct fields encoded by name so that adding a field stays
/// compatible with entries already in the log.
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgPack;

impl Serializer for MsgPack {
    fn name(&self) -> &'static str {
        "msgpack"
    }
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        rmp_serde::to_vec_named(value).map_err(|e| CodecError {
            codec: "msgpack",
            message: e.to_string(),
        })
    }
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        rmp_serde::from_slice(bytes).map_err(|e| CodecError {
            codec: "msgpack",
            message: e.to_string(),
        })
    }
}

/// JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Serializer for Json {
    fn name(&self) -> &'static str {
        "json"
    }
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        serde_json::to_vec(value).map_err(|e| CodecError {
            codec: "json",
            message: e.to_string(),
        })
    }
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(|e| CodecError {
            codec: "json",
            message: e.to_string(),
        })
    }
}

/// The codec a node is configured with: one of the [`Serializer`]s above, chosen at
/// run time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    #[default]
    MsgPack,
    Json,
}

impl Serializer for Codec {
    fn name(&self) -> &'static str {
        match self {
            Codec::MsgPack => MsgPack.name(),
            Codec::Json => Json.name(),
        }
    }
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        match self {
            Codec::MsgPack => MsgPack.encode(value),
            Codec::Json => Json.encode(value),
        }
    }
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        match self {
            Codec::MsgPack => MsgPack.decode(bytes),
            Codec::Json => Json.decode(bytes),
        }
    }
}

impl std::str::FromStr for Codec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "msgpack" | "messagepack" | "rmp" => Ok(Codec::MsgPack),
            "json" => Ok(Codec::Json),
            other => Err(format!("unknown codec '{other}' (allowed: msgpack, json)")),
        }
    }
}

/// Encodes with MessagePack: the helper services use for their snapshots.
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    MsgPack.encode(value)
}

/// Decodes MessagePack written by [`to_bytes`].
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    MsgPack.decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Cmd {
        key: String,
        value: Vec<u8>,
    }

    /// Both codecs round-trip a command, and JSON stays readable.
    #[test]
    fn both_codecs_round_trip() {
        let cmd = Cmd {
            key: "k".into(),
            value: vec![1, 2, 3],
        };
        for codec in [Codec::MsgPack, Codec::Json] {
            let bytes = codec.encode(&cmd).unwrap();
            assert_eq!(codec.decode::<Cmd>(&bytes).unwrap(), cmd, "{}", codec.name());
        }
        let json = Codec::Json.encode(&cmd).unwrap();
        assert!(String::from_utf8(json).unwrap().contains("\"key\":\"k\""));
    }

    /// Garbage is an error, not a panic.
    #[test]
    fn garbage_is_an_error() {
        assert!(Codec::MsgPack.decode::<Cmd>(b"\xc1\xff").is_err());
        assert!(Codec::Json.decode::<Cmd>(b"{").is_err());
        assert!("yaml".parse::<Codec>().is_err());
    }
}
