//! How service commands, outputs and queries become bytes in the Raft log.
//!
//! MessagePack ([`MsgPack`], via rmp-serde) is the default: compact and fast. JSON ([`Json`])
//! is built in too, for when humans read the log. Your own format plugs in with
//! [`crate::NodeBuilder::serializer`]: implement [`Serializer`] (it is object safe, through
//! erased-serde, so a node can hold one chosen at run time). Every node of a cluster
//! must use the same format, since entries are decoded by whoever applies them; the
//! format's name is pinned in the data directory at first start.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A serialization failure.
#[derive(Debug, thiserror::Error)]
#[error("{codec} codec: {message}")]
pub struct CodecError {
    pub codec: String,
    pub message: String,
}

impl CodecError {
    pub fn new(codec: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self {
            codec: codec.into(),
            message: message.to_string(),
        }
    }
}

/// What [`Serializer::decode`] hands its deserializer to: it builds the value.
pub trait Visit {
    fn visit(&mut self, de: &mut dyn erased_serde::Deserializer<'_>) -> Result<(), erased_serde::Error>;
}

/// A serialization format for log entries. Implementations must be deterministic for a
/// given value: a command is encoded once and applied on every node.
///
/// ```
/// use braft::codec::{CodecError, Serializer, Visit};
///
/// /// JSON under another name: a user's own format.
/// struct MyJson;
/// impl Serializer for MyJson {
///     fn name(&self) -> &str { "my-json" }
///     fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, CodecError> {
///         serde_json::to_vec(value).map_err(|e| CodecError::new("my-json", e))
///     }
///     fn decode(&self, bytes: &[u8], visit: &mut dyn Visit) -> Result<(), CodecError> {
///         let mut de = serde_json::Deserializer::from_slice(bytes);
///         visit
///             .visit(&mut <dyn erased_serde::Deserializer>::erase(&mut de))
///             .map_err(|e| CodecError::new("my-json", e))
///     }
/// }
/// let bytes = braft::codec::encode_with(&MyJson, &vec![1, 2]).unwrap();
/// assert_eq!(braft::codec::decode_with::<Vec<u8>>(&MyJson, &bytes).unwrap(), vec![1, 2]);
/// ```
pub trait Serializer: Send + Sync + 'static {
    /// A short stable name ("msgpack", "json"); pinned in the data directory.
    fn name(&self) -> &str;
    /// Serializes `value`.
    fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, CodecError>;
    /// Deserializes `bytes` by handing this format's deserializer to `visit`.
    fn decode(&self, bytes: &[u8], visit: &mut dyn Visit) -> Result<(), CodecError>;
}

/// Encodes a typed value with any [`Serializer`].
pub fn encode_with<T: Serialize>(s: &dyn Serializer, value: &T) -> Result<Vec<u8>, CodecError> {
    s.encode(value)
}

/// Decodes a typed value with any [`Serializer`].
pub fn decode_with<T: DeserializeOwned>(s: &dyn Serializer, bytes: &[u8]) -> Result<T, CodecError> {
    struct Slot<T>(Option<T>);
    impl<T: DeserializeOwned> Visit for Slot<T> {
        fn visit(&mut self, de: &mut dyn erased_serde::Deserializer<'_>) -> Result<(), erased_serde::Error> {
            self.0 = Some(erased_serde::deserialize(de)?);
            Ok(())
        }
    }
    let mut slot = Slot(None);
    s.decode(bytes, &mut slot)?;
    slot.0
        .ok_or_else(|| CodecError::new(s.name(), "the deserializer produced no value"))
}

/// MessagePack, with struct fields encoded by name so that adding a field stays
/// compatible with entries already in the log.
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgPack;

impl Serializer for MsgPack {
    fn name(&self) -> &str {
        "msgpack"
    }
    fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, CodecError> {
        rmp_serde::to_vec_named(value).map_err(|e| CodecError::new("msgpack", e))
    }
    fn decode(&self, bytes: &[u8], visit: &mut dyn Visit) -> Result<(), CodecError> {
        let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
        visit
            .visit(&mut <dyn erased_serde::Deserializer>::erase(&mut de))
            .map_err(|e| CodecError::new("msgpack", e))
    }
}

/// JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Serializer for Json {
    fn name(&self) -> &str {
        "json"
    }
    fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, CodecError> {
        serde_json::to_vec(value).map_err(|e| CodecError::new("json", e))
    }
    fn decode(&self, bytes: &[u8], visit: &mut dyn Visit) -> Result<(), CodecError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        visit
            .visit(&mut <dyn erased_serde::Deserializer>::erase(&mut de))
            .map_err(|e| CodecError::new("json", e))?;
        de.end().map_err(|e| CodecError::new("json", e))
    }
}

/// The built-in format a node is configured with (`BRAFT_CODEC`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    #[default]
    MsgPack,
    Json,
}

impl Codec {
    pub fn name(&self) -> &'static str {
        match self {
            Codec::MsgPack => "msgpack",
            Codec::Json => "json",
        }
    }
    /// Encodes with this format (statically dispatched: the write path's fast lane).
    pub fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        match self {
            Codec::MsgPack => rmp_serde::to_vec_named(value).map_err(|e| CodecError::new("msgpack", e)),
            Codec::Json => serde_json::to_vec(value).map_err(|e| CodecError::new("json", e)),
        }
    }
    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        match self {
            Codec::MsgPack => rmp_serde::from_slice(bytes).map_err(|e| CodecError::new("msgpack", e)),
            Codec::Json => serde_json::from_slice(bytes).map_err(|e| CodecError::new("json", e)),
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

/// The format a node runs with: a built-in [`Codec`], or the application's own
/// [`Serializer`].
#[derive(Clone)]
pub enum Format {
    Builtin(Codec),
    Custom(Arc<dyn Serializer>),
}

impl std::fmt::Debug for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name())
    }
}

impl Format {
    /// The name pinned in the data directory and in snapshots.
    pub fn name(&self) -> &str {
        match self {
            Format::Builtin(c) => c.name(),
            Format::Custom(s) => s.name(),
        }
    }
    pub fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        match self {
            Format::Builtin(c) => c.encode(value),
            Format::Custom(s) => encode_with(s.as_ref(), value),
        }
    }
    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        match self {
            Format::Builtin(c) => c.decode(bytes),
            Format::Custom(s) => decode_with(s.as_ref(), bytes),
        }
    }
}

/// Encodes with MessagePack: the helper services use for their snapshots.
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    Codec::MsgPack.encode(value)
}

/// Decodes MessagePack written by [`to_bytes`].
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    Codec::MsgPack.decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Cmd {
        key: String,
        value: Vec<u8>,
    }

    /// Every format round-trips a command — built in, or erased behind `dyn Serializer`
    /// — and the erased encoders write the very bytes the static ones do.
    #[test]
    fn every_format_round_trips() {
        let cmd = Cmd {
            key: "k".into(),
            value: vec![1, 2, 3],
        };
        let formats = [
            Format::Builtin(Codec::MsgPack),
            Format::Builtin(Codec::Json),
            Format::Custom(Arc::new(MsgPack)),
            Format::Custom(Arc::new(Json)),
        ];
        for f in &formats {
            let bytes = f.encode(&cmd).unwrap();
            assert_eq!(f.decode::<Cmd>(&bytes).unwrap(), cmd, "{}", f.name());
        }
        assert_eq!(formats[0].encode(&cmd).unwrap(), formats[2].encode(&cmd).unwrap());
        assert_eq!(formats[1].encode(&cmd).unwrap(), formats[3].encode(&cmd).unwrap());
        let json = Codec::Json.encode(&cmd).unwrap();
        assert!(String::from_utf8(json).unwrap().contains("\"key\":\"k\""));
    }

    /// Garbage is an error, not a panic.
    #[test]
    fn garbage_is_an_error() {
        assert!(Codec::MsgPack.decode::<Cmd>(b"\xc1\xff").is_err());
        assert!(Codec::Json.decode::<Cmd>(b"{").is_err());
        assert!(decode_with::<Cmd>(&Json, b"{} trailing").is_err());
        assert!(decode_with::<Cmd>(&MsgPack, b"\xc1").is_err());
        assert!("yaml".parse::<Codec>().is_err());
    }
}
