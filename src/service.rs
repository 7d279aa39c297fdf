//! Services: the user's state machines, and the registry that routes log entries to them.
//!
//! A braft node replicates one log. Each entry names the service it is for, by a stable
//! string ([`Service::NAME`]), never by a Rust type name, so renaming a type does not break
//! a log already on disk. The routing state machine (`raft::sm`) hands every committed entry
//! to its service, in log order, on every node.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::Format;
use crate::watch::WatchEvent;

/// An error a service returns from `apply` or `query`. It travels back to the caller,
/// across forwarding too, with its code intact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ServiceError {
    /// A short machine-readable code, e.g. `insufficient_funds`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

impl ServiceError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl From<crate::codec::CodecError> for ServiceError {
    fn from(e: crate::codec::CodecError) -> Self {
        ServiceError::new("codec", e.to_string())
    }
}

/// What a service knows about the entry it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyContext {
    /// The Raft log index of the entry: unique, increasing, the same on every node.
    pub index: u64,
}

/// A replicated state machine.
///
/// The contract:
/// - `apply` is deterministic: the same commands in the same order give the same state and
///   outputs on every node. No clocks, no randomness, no I/O.
/// - An `apply` that returns `Err` leaves the state unchanged: the error reaches the
///   caller, and the entry still counts as applied.
/// - `snapshot` captures the whole state; `restore` replaces the whole state with it.
pub trait Service: Send + Sync + 'static {
    /// The stable name entries are routed by. Never change it once data exists.
    const NAME: &'static str;
    /// A write, replicated through the log.
    type Command: Serialize + DeserializeOwned + Send + 'static;
    /// What `apply` answers.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// A read, served from the applied state.
    type Query: Serialize + DeserializeOwned + Send + 'static;
    /// What `query` answers.
    type QueryOutput: Serialize + DeserializeOwned + Send + 'static;

    fn apply(&mut self, ctx: ApplyContext, cmd: Self::Command) -> Result<Self::Output, ServiceError>;
    fn query(&self, query: Self::Query) -> Result<Self::QueryOutput, ServiceError>;
    /// The whole state as bytes (see [`crate::codec::to_bytes`]).
    fn snapshot(&self) -> Result<Vec<u8>, ServiceError>;
    /// The same bytes as `snapshot`, in two steps: this method captures the state, and the
    /// job it returns serialises the capture. The state machine calls it under its state
    /// lock, where applies wait, and runs the job after releasing the lock, off the apply
    /// path, while writes go on. The default serialises at once, so all of `snapshot()`
    /// runs under the lock. A service whose state is a persistent (copy-on-write)
    /// structure can capture it with an O(1) clone and serialise in the job, as
    /// [`crate::kv::KvService`] does: then a snapshot of a million keys stalls no write.
    fn snapshot_job(&self) -> SnapshotJob {
        let bytes = self.snapshot();
        Box::new(move || bytes)
    }
    /// Replaces the whole state with a snapshot's bytes.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), ServiceError>;
    /// The watch events of the last `apply`, taken right after it (see [`crate::watch`]).
    /// The KV service reports its puts and deletes; yours may report its own changes,
    /// with its own name as the `map`. None by default.
    fn take_watch_events(&mut self) -> Vec<WatchEvent> {
        Vec::new()
    }
}

/// The serialising half of [`Service::snapshot_job`]: runs once, off the apply path.
pub type SnapshotJob = Box<dyn FnOnce() -> Result<Vec<u8>, ServiceError> + Send + Sync>;

/// A [`Service`] with its types erased to bytes, so the registry can hold many.
pub(crate) trait DynService: Send + Sync {
    fn apply_bytes(&mut self, codec: &Format, ctx: ApplyContext, cmd: &[u8]) -> Result<Vec<u8>, ServiceError>;
    fn query_bytes(&self, codec: &Format, query: &[u8]) -> Result<Vec<u8>, ServiceError>;
    fn snapshot_job(&self) -> SnapshotJob;
    fn restore_bytes(&mut self, snapshot: &[u8]) -> Result<(), ServiceError>;
    fn take_events(&mut self) -> Vec<WatchEvent>;
}

impl<S: Service> DynService for S {
    fn apply_bytes(&mut self, codec: &Format, ctx: ApplyContext, cmd: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let cmd: S::Command = codec
            .decode(cmd)
            .map_err(|e| ServiceError::new("bad_command", e.to_string()))?;
        let out = self.apply(ctx, cmd)?;
        Ok(codec.encode(&out)?)
    }
    fn query_bytes(&self, codec: &Format, query: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let q: S::Query = codec
            .decode(query)
            .map_err(|e| ServiceError::new("bad_query", e.to_string()))?;
        let out = self.query(q)?;
        Ok(codec.encode(&out)?)
    }
    fn snapshot_job(&self) -> SnapshotJob {
        Service::snapshot_job(self)
    }
    fn restore_bytes(&mut self, snapshot: &[u8]) -> Result<(), ServiceError> {
        self.restore(snapshot)
    }
    fn take_events(&mut self) -> Vec<WatchEvent> {
        self.take_watch_events()
    }
}

/// The registered services, by name.
#[derive(Default)]
pub(crate) struct Registry {
    services: BTreeMap<String, Box<dyn DynService>>,
}

/// Serialises a [`Registry::capture`]: every service's snapshot bytes, by name.
pub(crate) fn finish_snapshot(jobs: Vec<(String, SnapshotJob)>) -> Result<Vec<(String, Vec<u8>)>, ServiceError> {
    jobs.into_iter().map(|(n, job)| Ok((n, job()?))).collect()
}

impl Registry {
    pub fn register<S: Service>(&mut self, service: S) -> bool {
        self.services.insert(S::NAME.to_string(), Box::new(service)).is_none()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.services.contains_key(name)
    }

    fn get(&self, name: &str) -> Result<&dyn DynService, ServiceError> {
        self.services
            .get(name)
            .map(|s| s.as_ref())
            .ok_or_else(|| ServiceError::new("unknown_service", format!("no service named '{name}' is registered")))
    }

    pub fn apply(
        &mut self,
        codec: &Format,
        name: &str,
        ctx: ApplyContext,
        cmd: &[u8],
    ) -> Result<Vec<u8>, ServiceError> {
        match self.services.get_mut(name) {
            Some(s) => s.apply_bytes(codec, ctx, cmd),
            None => Err(ServiceError::new(
                "unknown_service",
                format!("no service named '{name}' is registered"),
            )),
        }
    }

    /// The watch events of the service's last apply.
    pub fn take_watch_events(&mut self, name: &str) -> Vec<WatchEvent> {
        self.services.get_mut(name).map(|s| s.take_events()).unwrap_or_default()
    }

    pub fn query(&self, codec: &Format, name: &str, query: &[u8]) -> Result<Vec<u8>, ServiceError> {
        self.get(name)?.query_bytes(codec, query)
    }

    /// Every service's snapshot capture, by name (see [`Service::snapshot_job`]): taken
    /// under the state lock, serialised by [`finish_snapshot`] after it.
    pub fn capture(&self) -> Vec<(String, SnapshotJob)> {
        self.services
            .iter()
            .map(|(n, s)| (n.clone(), s.snapshot_job()))
            .collect()
    }

    /// Restores every service found in `parts`. A part for a service this node does not
    /// have is an error: applying later entries without it would diverge.
    pub fn restore<'a>(&mut self, parts: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Result<(), ServiceError> {
        for (name, bytes) in parts {
            match self.services.get_mut(name) {
                Some(s) => s.restore_bytes(bytes)?,
                None => {
                    return Err(ServiceError::new(
                        "unknown_service",
                        format!("snapshot holds service '{name}', which this node does not register"),
                    ))
                }
            }
        }
        Ok(())
    }
}
