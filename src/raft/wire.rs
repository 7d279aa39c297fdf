//! How openraft's messages travel over gRPC: opaque bytes, one version byte followed by
//! MessagePack with named fields. Peers never parse openraft types from protobuf, so an
//! openraft upgrade changes only what is inside the bytes, and the version byte lets a
//! future format be told apart from this one.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The current wire format.
pub const WIRE_V1: u8 = 1;

/// A message that could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("empty message")]
    Empty,
    #[error("unsupported wire version {0} (this node speaks {WIRE_V1})")]
    Version(u8),
    #[error("malformed message: {0}")]
    Decode(String),
    #[error("cannot encode message: {0}")]
    Encode(String),
}

pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    encode_into(&mut out, value)?;
    Ok(out)
}

/// [`encode`], appended to `out`.
pub fn encode_into<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), WireError> {
    out.push(WIRE_V1);
    rmp_serde::encode::write_named(out, value).map_err(|e| WireError::Encode(e.to_string()))
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    match bytes.split_first() {
        None => Err(WireError::Empty),
        Some((&WIRE_V1, body)) => rmp_serde::from_slice(body).map_err(|e| WireError::Decode(e.to_string())),
        Some((&v, _)) => Err(WireError::Version(v)),
    }
}

/// [`decode`], reading from `r` as it goes (a staged snapshot file), so that the encoded
/// bytes never sit in memory whole.
pub fn decode_from<T: DeserializeOwned>(mut r: impl std::io::Read) -> Result<T, WireError> {
    let mut version = [0u8; 1];
    r.read_exact(&mut version).map_err(|_| WireError::Empty)?;
    match version[0] {
        WIRE_V1 => rmp_serde::from_read(r).map_err(|e| WireError::Decode(e.to_string())),
        v => Err(WireError::Version(v)),
    }
}

impl From<WireError> for tonic::Status {
    fn from(e: WireError) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages round-trip; wrong versions and garbage are errors, never panics.
    #[test]
    fn versioned_round_trip_and_rejects() {
        let bytes = encode(&("hello", 42u64)).unwrap();
        assert_eq!(bytes[0], WIRE_V1);
        let back: (String, u64) = decode(&bytes).unwrap();
        assert_eq!(back, ("hello".to_string(), 42));
        assert!(matches!(decode::<u64>(&[]), Err(WireError::Empty)));
        assert!(matches!(decode::<u64>(&[9, 1]), Err(WireError::Version(9))));
        assert!(matches!(decode::<String>(&[WIRE_V1, 0xc1]), Err(WireError::Decode(_))));
        // The same from a reader.
        let back: (String, u64) = decode_from(&bytes[..]).unwrap();
        assert_eq!(back, ("hello".to_string(), 42));
        assert!(matches!(decode_from::<u64>(&[][..]), Err(WireError::Empty)));
        assert!(matches!(decode_from::<u64>(&[9, 1][..]), Err(WireError::Version(9))));
        assert!(matches!(
            decode_from::<String>(&[WIRE_V1, 0xc1][..]),
            Err(WireError::Decode(_))
        ));
    }
}
