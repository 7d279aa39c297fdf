//! [`KvService`]: the built-in key-value service, braft's "map service".
//!
//! Keys live in named maps (braft's `?map=`); the `/v1/kv` API uses the default map `""`.
//! Each key carries a version: the Raft log index of the write that set it, which makes
//! compare-and-set by version possible and lets readers tell writes apart.
//!
//! The maps are persistent B+trees ([`imbl::OrdMap`]), not `std`'s `BTreeMap`: a clone
//! shares every node, so a snapshot captures a million keys in O(1) under the state lock
//! and serializes them while writes go on (a write then copies only the nodes on its
//! path, once). With `BTreeMap`, serializing a million keys held up every apply for the
//! whole time. The serialized form is the same map of maps as before.

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use crate::service::{ApplyContext, Service, ServiceError};
use crate::watch::{EventKind, WatchEvent};

/// The longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 4096;

/// Checks a key: not empty, at most 4 KiB.
pub fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("key must not be empty".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "key of {} bytes exceeds the {MAX_KEY_BYTES}-byte limit",
            key.len()
        ));
    }
    Ok(())
}

/// The condition of a compare-and-set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precondition {
    /// The key's current version must equal this; 0 means the key must be absent.
    Version(u64),
    /// The key's current value must equal this.
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// A write to the KV service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    Put {
        map: String,
        key: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        precondition: Option<Precondition>,
    },
    Delete {
        map: String,
        key: String,
    },
}

/// The answer to a [`KvCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOutput {
    /// The put applied; `version` is its log index.
    Put { version: u64 },
    /// The delete applied at log index `version`.
    Deleted { version: u64, existed: bool },
    /// The precondition did not hold; nothing changed. `current_version` is 0 when absent.
    CompareFailed { current_version: u64 },
}

/// A read from the KV service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvQuery {
    Get { map: String, key: String },
    List { map: String, prefix: String, limit: usize },
    ListMaps,
}

/// A stored value and its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned {
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub version: u64,
}

/// The answer to a [`KvQuery`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvQueryOutput {
    Value(Option<Versioned>),
    Keys(Vec<String>),
}

/// The in-memory map service.
#[derive(Debug, Default)]
pub struct KvService {
    maps: OrdMap<String, OrdMap<String, Versioned>>,
    /// The last apply's watch events, until the state machine takes them.
    events: Vec<WatchEvent>,
}

impl KvService {
    fn current(&self, map: &str, key: &str) -> Option<&Versioned> {
        self.maps.get(map).and_then(|m| m.get(key))
    }
}

/// A map as a snapshot holds it, read without trusting its stated length. imbl's own
/// `Deserialize` reserves room for as many entries as the input claims, so a damaged
/// snapshot claiming billions aborted the process (found by the snapshot fuzz target);
/// here entries are inserted as they are read.
#[derive(Clone)]
struct Bounded<V>(OrdMap<String, V>);

impl<'de, V: Deserialize<'de> + Clone> Deserialize<'de> for Bounded<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de> + Clone> serde::de::Visitor<'de> for Visit<V> {
            type Value = Bounded<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map with string keys")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut m = OrdMap::new();
                while let Some((k, v)) = a.next_entry::<String, V>()? {
                    m.insert(k, v);
                }
                Ok(Bounded(m))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

impl Service for KvService {
    const NAME: &'static str = "kv";
    type Command = KvCommand;
    type Output = KvOutput;
    type Query = KvQuery;
    type QueryOutput = KvQueryOutput;

    fn apply(&mut self, ctx: ApplyContext, cmd: KvCommand) -> Result<KvOutput, ServiceError> {
        match cmd {
            KvCommand::Put {
                map,
                key,
                value,
                precondition,
            } => {
                let current = self.current(&map, &key);
                let holds = match &precondition {
                    None => true,
                    Some(Precondition::Version(v)) => current.map_or(0, |c| c.version) == *v,
                    Some(Precondition::Value(v)) => current.is_some_and(|c| &c.value == v),
                };
                if !holds {
                    return Ok(KvOutput::CompareFailed {
                        current_version: current.map_or(0, |c| c.version),
                    });
                }
                let version = ctx.index;
                self.events.push(WatchEvent {
                    kind: EventKind::Put,
                    map: map.clone(),
                    key: key.clone(),
                    value: Some(value.clone().into()),
                    version,
                });
                self.maps
                    .entry(map)
                    .or_default()
                    .insert(key, Versioned { value, version });
                Ok(KvOutput::Put { version })
            }
            KvCommand::Delete { map, key } => {
                let existed = match self.maps.get_mut(&map) {
                    Some(m) => {
                        let existed = m.remove(&key).is_some();
                        if m.is_empty() {
                            self.maps.remove(&map);
                        }
                        existed
                    }
                    None => false,
                };
                // Deleting an absent key changes nothing, so it is no event.
                if existed {
                    self.events.push(WatchEvent {
                        kind: EventKind::Delete,
                        map,
                        key,
                        value: None,
                        version: ctx.index,
                    });
                }
                Ok(KvOutput::Deleted {
                    version: ctx.index,
                    existed,
                })
            }
        }
    }

    fn query(&self, query: KvQuery) -> Result<KvQueryOutput, ServiceError> {
        match query {
            KvQuery::Get { map, key } => Ok(KvQueryOutput::Value(self.current(&map, &key).cloned())),
            KvQuery::List { map, prefix, limit } => {
                let keys = match self.maps.get(&map) {
                    Some(m) => m
                        .range(prefix.clone()..)
                        .take_while(|(k, _)| k.starts_with(&prefix))
                        .take(limit)
                        .map(|(k, _)| k.clone())
                        .collect(),
                    None => Vec::new(),
                };
                Ok(KvQueryOutput::Keys(keys))
            }
            KvQuery::ListMaps => Ok(KvQueryOutput::Keys(self.maps.keys().cloned().collect())),
        }
    }

    fn snapshot(&self) -> Result<Vec<u8>, ServiceError> {
        Ok(crate::codec::to_bytes(&self.maps)?)
    }

    fn snapshot_job(&self) -> crate::service::SnapshotJob {
        // O(1): the clone shares the tree; the job serializes it after the lock is gone.
        let maps = self.maps.clone();
        Box::new(move || Ok(crate::codec::to_bytes(&maps)?))
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), ServiceError> {
        let maps: Bounded<Bounded<Versioned>> = crate::codec::from_bytes(snapshot)?;
        self.maps = maps.0.into_iter().map(|(name, m)| (name, m.0)).collect();
        self.events.clear();
        Ok(())
    }

    fn take_watch_events(&mut self) -> Vec<WatchEvent> {
        std::mem::take(&mut self.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(kv: &mut KvService, index: u64, key: &str, value: &str, pre: Option<Precondition>) -> KvOutput {
        let cmd = KvCommand::Put {
            map: String::new(),
            key: key.into(),
            value: value.into(),
            precondition: pre,
        };
        kv.apply(ApplyContext { index }, cmd).unwrap()
    }

    fn get(kv: &KvService, key: &str) -> Option<Versioned> {
        match kv
            .query(KvQuery::Get {
                map: String::new(),
                key: key.into(),
            })
            .unwrap()
        {
            KvQueryOutput::Value(v) => v,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// A put's version is its log index, and compare-and-set by version and by value
    /// refuses a stale expectation without changing anything.
    #[test]
    fn compare_and_set_by_version_and_value() {
        let mut kv = KvService::default();
        assert_eq!(
            put(&mut kv, 5, "a", "1", Some(Precondition::Version(0))),
            KvOutput::Put { version: 5 }
        );
        // The key exists now, so "must be absent" fails and reports the current version.
        assert_eq!(
            put(&mut kv, 6, "a", "2", Some(Precondition::Version(0))),
            KvOutput::CompareFailed { current_version: 5 }
        );
        assert_eq!(
            put(&mut kv, 7, "a", "2", Some(Precondition::Value(b"nope".to_vec()))),
            KvOutput::CompareFailed { current_version: 5 }
        );
        assert_eq!(get(&kv, "a").unwrap().value, b"1");
        assert_eq!(
            put(&mut kv, 8, "a", "3", Some(Precondition::Value(b"1".to_vec()))),
            KvOutput::Put { version: 8 }
        );
        assert_eq!(get(&kv, "a").unwrap().version, 8);
    }

    /// Listing is sorted, prefix-bounded and limited; snapshot and restore round-trip.
    #[test]
    fn list_and_snapshot_round_trip() {
        let mut kv = KvService::default();
        for (i, k) in ["b/2", "a/1", "b/1", "c"].iter().enumerate() {
            put(&mut kv, i as u64 + 1, k, "v", None);
        }
        let list = |kv: &KvService, prefix: &str, limit| {
            kv.query(KvQuery::List {
                map: String::new(),
                prefix: prefix.into(),
                limit,
            })
            .unwrap()
        };
        assert_eq!(
            list(&kv, "b/", 10),
            KvQueryOutput::Keys(vec!["b/1".into(), "b/2".into()])
        );
        assert_eq!(list(&kv, "", 2), KvQueryOutput::Keys(vec!["a/1".into(), "b/1".into()]));
        let snap = kv.snapshot().unwrap();
        let mut other = KvService::default();
        other.restore(&snap).unwrap();
        assert_eq!(list(&other, "", 10), list(&kv, "", 10));
        assert_eq!(get(&other, "c"), get(&kv, "c"));
    }

    /// A snapshot is captured in one step and serialized in another, while writes go on
    /// in between: what it holds is the state at capture. Its bytes are those `std`'s
    /// `BTreeMap` gave for the same maps, so snapshots written before the maps became
    /// persistent trees restore unchanged.
    #[test]
    fn a_snapshot_holds_the_state_at_capture_in_the_old_format() {
        let mut kv = KvService::default();
        let mut old: std::collections::BTreeMap<String, std::collections::BTreeMap<String, Versioned>> =
            Default::default();
        for i in 1..=1000u64 {
            let key = format!("k{i:04}");
            put(&mut kv, i, &key, "old", None);
            let value = Versioned {
                value: b"old".to_vec(),
                version: i,
            };
            old.entry(String::new()).or_default().insert(key, value);
        }
        let then = kv.snapshot().unwrap();
        assert_eq!(then, crate::codec::to_bytes(&old).unwrap());

        let job = Service::snapshot_job(&kv);
        for i in 1..=1000u64 {
            put(&mut kv, 1000 + i, &format!("k{i:04}"), "new", None);
        }
        let cmd = KvCommand::Delete {
            map: String::new(),
            key: "k0500".into(),
        };
        kv.apply(ApplyContext { index: 2001 }, cmd).unwrap();
        put(&mut kv, 2002, "later", "v", None);
        assert_eq!(job().unwrap(), then, "the capture saw writes made after it");

        let mut restored = KvService::default();
        restored.restore(&then).unwrap();
        assert_eq!(get(&restored, "k0500").unwrap().value, b"old");
        assert_eq!(get(&restored, "later"), None);
        assert_eq!(get(&kv, "k0001").unwrap().value, b"new");
        assert_eq!(get(&kv, "k0500"), None);
    }

    /// Delete reports whether the key existed.
    #[test]
    fn delete_reports_existence() {
        let mut kv = KvService::default();
        put(&mut kv, 1, "a", "1", None);
        let del = |kv: &mut KvService, index| {
            kv.apply(
                ApplyContext { index },
                KvCommand::Delete {
                    map: String::new(),
                    key: "a".into(),
                },
            )
            .unwrap()
        };
        assert_eq!(
            del(&mut kv, 2),
            KvOutput::Deleted {
                version: 2,
                existed: true
            }
        );
        assert_eq!(
            del(&mut kv, 3),
            KvOutput::Deleted {
                version: 3,
                existed: false
            }
        );
        assert_eq!(get(&kv, "a"), None);
    }
}
