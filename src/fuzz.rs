//! Fuzz targets on stable Rust: proptest properties that feed arbitrary bytes, and
//! mutations of valid inputs, to every decoder that a peer, a file or a client can
//! reach. Each must answer with an error, never panic (a panic on the network path
//! would take a node's task or the node down).
//!
//! | target | input |
//! |---|---|
//! | `peer_wire_decoder` | the opaque openraft messages of `braft.v1.Raft` (append, vote, snapshot meta, forwarded requests) |
//! | `snapshot_decoder` | snapshot and backup files (framed with a valid checksum, so the body decoder is reached), and the KV and distributor services' restore |
//! | `codecs` | log entry payloads in msgpack and JSON |
//! | `config_parsing` | TOML files and every setting's value |
//! | `http_query_and_path` | query strings, `/v1/kv/` paths, consistency |
//! | `watch_resume` | `from` and `Last-Event-ID` |
//!
//! CI runs `BRAFT_FUZZ_CASES` cases per target (default 10,000, a few seconds each in a
//! debug build). A soak: `BRAFT_FUZZ_CASES=1000000 cargo test --release --lib fuzz::`.
//! A failing case is printed minimized by proptest, with the seed to replay it.

use proptest::prelude::*;

use crate::codec::{Codec, Format};
use crate::raft::{wire, Entry, LogId, SnapshotMeta, TypeConfig, Vote};

fn cases() -> u32 {
    std::env::var("BRAFT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A valid input with some of: bits flipped, a tail cut off, bytes spliced in.
fn mutated(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len().max(1);
    (
        proptest::collection::vec((0..len, any::<u8>()), 0..8),
        proptest::option::of(0..len),
        proptest::option::of((0..len, proptest::collection::vec(any::<u8>(), 0..16))),
    )
        .prop_map(move |(flips, cut, splice)| {
            let mut v = valid.clone();
            for (i, x) in flips {
                if i < v.len() {
                    v[i] ^= x;
                }
            }
            if let Some((at, bytes)) = splice {
                let at = at.min(v.len());
                v.splice(at..at, bytes);
            }
            if let Some(n) = cut {
                v.truncate(n);
            }
            v
        })
}

/// Arbitrary bytes, or a mutation of `valid`.
fn bytes_like(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![proptest::collection::vec(any::<u8>(), 0..256), mutated(valid)]
}

fn log_id(index: u64) -> LogId {
    use openraft::vote::RaftLeaderIdExt;
    type LeaderId = <TypeConfig as openraft::RaftTypeConfig>::LeaderId;
    LogId::new(LeaderId::new_committed(3, 1), index)
}

fn valid_append() -> Vec<u8> {
    use openraft::entry::RaftEntry;
    let entries = vec![
        Entry::new_blank(log_id(7)),
        Entry {
            log_id: log_id(8),
            payload: openraft::EntryPayload::Normal(crate::raft::Request {
                service: "kv".into(),
                payload: b"\x93\xa1k\xa1v\xc0".to_vec(),
            }),
        },
    ];
    wire::encode(&openraft::raft::AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(3, 1),
        prev_log_id: Some(log_id(6)),
        entries,
        leader_commit: Some(log_id(6)),
    })
    .unwrap()
}

fn valid_kv_command(codec: Codec) -> Vec<u8> {
    Format::Builtin(codec)
        .encode(&crate::kv::KvCommand::Put {
            map: String::new(),
            key: "user/1".into(),
            value: b"alice".to_vec(),
            precondition: Some(crate::kv::Precondition::Version(4)),
        })
        .unwrap()
}

/// A service's snapshot bytes, from a KV service holding a few keys.
fn valid_kv_snapshot() -> Vec<u8> {
    use crate::service::Service;
    let mut kv = crate::KvService::default();
    for (i, k) in ["a", "b/c", "d"].iter().enumerate() {
        let ctx = crate::service::ApplyContext { index: i as u64 + 1 };
        kv.apply(
            ctx,
            crate::kv::KvCommand::Put {
                map: String::new(),
                key: k.to_string(),
                value: vec![i as u8; 3],
                precondition: None,
            },
        )
        .unwrap();
    }
    kv.snapshot().unwrap()
}

/// A snapshot file around `body`, with a valid checksum (so the body decoder runs).
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = b"BRAFTSNP".to_vec();
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn peer_wire_decoder(bytes in bytes_like(valid_append())) {
        let _ = wire::decode::<openraft::raft::AppendEntriesRequest<TypeConfig>>(&bytes);
        let _ = wire::decode::<openraft::raft::VoteRequest<TypeConfig>>(&bytes);
        let _ = wire::decode::<(Vote, SnapshotMeta)>(&bytes);
        let _ = wire::decode::<crate::node::forward::ForwardRequest>(&bytes);
    }

    #[test]
    fn snapshot_decoder(body in bytes_like(valid_kv_snapshot()), frame in any::<bool>()) {
        use crate::service::DynService;
        let file = if frame { framed(&body) } else { body.clone() };
        let _ = crate::raft::sm::inspect_backup(&file);
        let _ = crate::KvService::default().restore_bytes(&body);
        let _ = crate::distribute::DistributeService::default().restore_bytes(&body);
    }

    #[test]
    fn codecs((json, bytes) in any::<bool>().prop_flat_map(|json| {
        let codec = if json { Codec::Json } else { Codec::MsgPack };
        (Just(json), bytes_like(valid_kv_command(codec)))
    })) {
        let f = Format::Builtin(if json { Codec::Json } else { Codec::MsgPack });
        let _ = f.decode::<crate::kv::KvCommand>(&bytes);
        let _ = f.decode::<crate::kv::KvQuery>(&bytes);
        let _ = f.decode::<crate::distribute::DistributeCommand>(&bytes);
        let _ = f.decode::<crate::raft::Request>(&bytes);
    }

    #[test]
    fn config_parsing(
        toml in "[a-z_]{1,20} = (\"[ -~]{0,20}\"|[0-9]{1,12}|true|-1)",
        which in 0..crate::config::SETTINGS.len(),
        value in prop_oneof!["[ -~]{0,40}", "[0-9]{1,22}(ms|s|m|h)?", "-?[0-9]{1,5}", "(static|dns|k8s|mdns):[ -~]{0,30}"],
    ) {
        let mut c = crate::config::Config::default();
        let _ = c.apply_toml(&toml);
        let _ = c.validate();
        let mut c = crate::config::Config::default();
        let _ = crate::config::SETTINGS[which].apply(&mut c, &value, "fuzz");
        let _ = c.validate();
    }

    #[test]
    fn http_query_and_path(query in "([a-z_%0-9A-F&=]|%[0-9a-fA-F]{0,2}){0,40}", path in "(%[0-9a-fA-F]{0,2}|[ -~]){0,40}") {
        if let Ok(q) = crate::http::Params::parse(&query) {
            for name in ["prev_version", "prev_value", "consistency", "prefix", "limit", "index", "wait", "from"] {
                let _ = q.get(name);
                let _ = q.bytes(name);
            }
            let _ = crate::http::parse_consistency_of(&q);
        }
        let _ = crate::http::Key::decode(&format!("/v1/kv/{path}"));
    }

    #[test]
    fn watch_resume(from in "[ -~]{0,24}", id in proptest::option::of("[ -~]{0,24}"), max in any::<bool>()) {
        let from = if max { u64::MAX.to_string() } else { from };
        let query = format!("from={}", percent_encoding::utf8_percent_encode(&from, percent_encoding::NON_ALPHANUMERIC));
        let q = crate::http::Params::parse(&query).unwrap();
        let mut headers = axum::http::HeaderMap::new();
        if let Some(id) = id {
            let id = if max { u64::MAX.to_string() } else { id };
            if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
                headers.insert("last-event-id", v);
            }
        }
        let _ = crate::http::start_version_of(&q, &headers);
    }
}
