//! The routing state machine: hands each committed entry to its service, and builds,
//! stores and installs snapshots of all services at once.
//!
//! A snapshot file is `BRAFTSNP`, the format version (u32 LE), the CRC-32 of the body
//! (u32 LE), then the body: the wire encoding of [`SnapshotBody`]. The checksum catches a
//! torn or corrupted file before it replaces good state.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};

use super::{wire, LogId, Response, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use crate::codec::{Codec, Format};
use crate::service::{ApplyContext, Registry, ServiceError};
use crate::store::{SnapshotData, SnapshotStore};
use crate::watch::WatchHub;

const MAGIC: &[u8; 8] = b"BRAFTSNP";
const FORMAT_V1: u32 = 1;

/// What a snapshot holds.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotBody {
    meta: SnapshotMeta,
    /// The built-in codec the entries were written with...
    codec: Codec,
    /// ...unless the application's own serializer, by name, wrote them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    serializer: Option<String>,
    services: Vec<(String, serde_bytes::ByteBuf)>,
}

/// What a snapshot holds, captured under the state lock and not yet serialized.
struct Capture {
    meta: SnapshotMeta,
    codec: Codec,
    serializer: Option<String>,
    jobs: Vec<(String, crate::service::SnapshotJob)>,
}

impl Capture {
    /// Serializes every service's capture: the expensive half, run without the lock.
    fn finish(self) -> io::Result<SnapshotBody> {
        let parts = crate::service::finish_snapshot(self.jobs)
            .map_err(|e| io::Error::other(format!("service snapshot failed: {e}")))?;
        Ok(SnapshotBody {
            meta: self.meta,
            codec: self.codec,
            serializer: self.serializer,
            services: parts
                .into_iter()
                .map(|(n, b)| (n, serde_bytes::ByteBuf::from(b)))
                .collect(),
        })
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// The snapshot file: magic, format, CRC-32 of the rest, then the wire-encoded body.
/// One buffer, sized up front: the header is reserved and its checksum filled in last,
/// since a separate buffer for the body would hold a second copy of the whole state.
fn encode_snapshot(body: &SnapshotBody) -> io::Result<Vec<u8>> {
    let services: usize = body.services.iter().map(|(n, b)| n.len() + b.len() + 16).sum();
    // 64 KiB for the metadata: the membership, with every member's addresses.
    let mut out = Vec::with_capacity(16 + (64 << 10) + services);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_V1.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    wire::encode_into(&mut out, body).map_err(|e| invalid(e.to_string()))?;
    let crc = crc32fast::hash(&out[16..]);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// [`decode_snapshot`] for a snapshot in a file, read in pieces: the checksum over a
/// first pass, then the body decoded from the reader.
fn decode_snapshot_file(path: &std::path::Path) -> io::Result<SnapshotBody> {
    use std::io::{Read, Seek};
    let mut f = io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let mut header = [0u8; 16];
    f.read_exact(&mut header)
        .map_err(|_| invalid("not a braft snapshot (bad magic)"))?;
    if &header[..8] != MAGIC {
        return Err(invalid("not a braft snapshot (bad magic)"));
    }
    let format = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if format != FORMAT_V1 {
        return Err(invalid(format!("unsupported snapshot format {format}")));
    }
    let crc = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    if hasher.finalize() != crc {
        return Err(invalid("checksum mismatch: the file is corrupted or truncated"));
    }
    f.seek(io::SeekFrom::Start(16))?;
    wire::decode_from(f).map_err(|e| invalid(e.to_string()))
}

fn decode_snapshot(bytes: &[u8]) -> io::Result<SnapshotBody> {
    check_snapshot(bytes)?;
    wire::decode(&bytes[16..]).map_err(|e| invalid(e.to_string()))
}

/// Checks a snapshot file's header and checksum, without decoding its body.
pub(crate) fn check_snapshot(bytes: &[u8]) -> io::Result<()> {
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err(invalid("not a braft snapshot (bad magic)"));
    }
    let format = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if format != FORMAT_V1 {
        return Err(invalid(format!("unsupported snapshot format {format}")));
    }
    let crc = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    if crc32fast::hash(&bytes[16..]) != crc {
        return Err(invalid("checksum mismatch: the file is corrupted or truncated"));
    }
    Ok(())
}

/// The applied state, shared between the state machine (which openraft owns) and the node
/// (which serves queries from it).
pub struct Applied {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub(crate) registry: Registry,
}

/// See [`SharedState::hash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateHash {
    pub applied_index: u64,
    pub applied_term: u64,
    /// CRC-32 of every service's snapshot bytes and the applied membership.
    pub hash: u32,
}

/// The state shared by the state machine and the node's read path.
pub struct SharedState {
    state: RwLock<Applied>,
    pub codec: Format,
    /// The recent events of the applied log, for watchers.
    pub(crate) watch: Arc<WatchHub>,
    /// This node's metrics (applies, snapshots; the log writer's fsyncs).
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// Whether the data directory is out of space (set by the log writer and by
    /// snapshot saves, read by the node).
    pub(crate) disk: crate::store::DiskHealth,
    /// The payload bytes applied since the last snapshot, for snapshots by size.
    pub(crate) growth: LogGrowth,
}

/// Counts the payload bytes applied since the last snapshot, and says when they reach
/// the size at which the node asks for one (`BRAFT_SNAPSHOT_LOG_BYTES`; the node's
/// `compaction` task waits on it). openraft's own policy counts entries only, so without
/// this a log of large values would grow on disk far past what its entry count suggests.
#[derive(Default)]
pub(crate) struct LogGrowth {
    since_snapshot: AtomicU64,
    /// 0: off (the node sets it at start).
    limit: AtomicU64,
    due: tokio::sync::Notify,
}

impl LogGrowth {
    pub fn set_limit(&self, bytes: u64) {
        self.limit.store(bytes, Ordering::Relaxed);
    }
    fn applied(&self, bytes: u64) {
        let total = self.since_snapshot.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let limit = self.limit.load(Ordering::Relaxed);
        if limit > 0 && total >= limit {
            // Stores a permit if nobody waits yet: the task sees it on its next wait.
            self.due.notify_one();
        }
    }
    /// A snapshot was captured (or installed): what came before is in it.
    fn reset(&self) {
        self.since_snapshot.store(0, Ordering::Relaxed);
    }
    pub fn is_due(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        limit > 0 && self.since_snapshot.load(Ordering::Relaxed) >= limit
    }
    /// Returns once the limit has been reached (possibly before this call).
    pub async fn due(&self) {
        self.due.notified().await
    }
}

impl SharedState {
    pub fn read(&self) -> RwLockReadGuard<'_, Applied> {
        // Services must not panic in apply; if one did, the node is already unsound and
        // openraft stops it. Reading what is there is the most useful thing left to do.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write(&self) -> RwLockWriteGuard<'_, Applied> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A fingerprint of the applied state, captured under the state lock so the index and
    /// the contents match. Replicas at the same applied index must agree on it: a
    /// difference means a replica diverged (etcd's `HashKV` check). It serializes every
    /// service, so it costs as much as a snapshot; copy-on-write services serialize after
    /// the lock is released (see [`Capture`]).
    pub fn hash(&self) -> Result<StateHash, ServiceError> {
        let (applied, membership, jobs) = {
            let g = self.read();
            // The membership is applied state too (Debug of ordered maps: deterministic).
            (g.last_applied, format!("{:?}", g.membership), g.registry.capture())
        };
        let mut h = crc32fast::Hasher::new();
        for (name, bytes) in crate::service::finish_snapshot(jobs)? {
            h.update(&(name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
        h.update(membership.as_bytes());
        Ok(StateHash {
            applied_index: applied.map_or(0, |l| l.index),
            applied_term: applied.map_or(0, |l| l.leader_id.term),
            hash: h.finalize(),
        })
    }

    /// A point-in-time capture of every service and the applied membership, taken under
    /// the state lock. Only the capture happens under the lock; [`Capture::finish`]
    /// serializes it afterwards, so applies wait only as long as the services' captures
    /// take (O(1) for the KV service).
    fn capture(&self) -> Capture {
        let g = self.read();
        Capture {
            meta: SnapshotMeta {
                last_log_id: g.last_applied,
                last_membership: g.membership.clone(),
            },
            codec: match &self.codec {
                Format::Builtin(c) => *c,
                Format::Custom(_) => Codec::MsgPack,
            },
            serializer: match &self.codec {
                Format::Builtin(_) => None,
                Format::Custom(s) => Some(s.name().to_string()),
            },
            jobs: g.registry.capture(),
        }
    }

    /// A backup: the applied state now, as a snapshot file (magic, format, checksum,
    /// body), with the log id it covers.
    pub(crate) fn backup(&self) -> io::Result<(Option<LogId>, Vec<u8>)> {
        let body = self.capture().finish()?;
        Ok((body.meta.last_log_id, encode_snapshot(&body)?))
    }

    /// Runs a read-only query against a service's applied state.
    pub fn query(&self, service: &str, query: &[u8]) -> Result<Vec<u8>, ServiceError> {
        self.read().registry.query(&self.codec, service, query)
    }
}

/// The state machine handed to openraft.
pub struct StateMachine {
    shared: Arc<SharedState>,
    snapshots: Arc<dyn SnapshotStore>,
    /// What the newest stored snapshot covers, so that sending it needs only its file.
    latest: Latest,
}

/// The metadata of the newest stored snapshot, kept when it is restored at start, built
/// or installed; `None` until then (or where it is unknown, e.g. a builder lost a race).
#[derive(Clone, Default)]
struct Latest(Arc<std::sync::Mutex<Option<SnapshotMeta>>>);

impl Latest {
    fn get(&self) -> Option<SnapshotMeta> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// Records `meta` if it is newer than what is recorded (stores keep only newer).
    fn offer(&self, meta: &SnapshotMeta) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if g.as_ref().is_none_or(|m| m.last_log_id < meta.last_log_id) {
            *g = Some(meta.clone());
        }
    }
}

impl StateMachine {
    /// Builds the state machine over `registry`, restoring the latest snapshot if any.
    pub fn open(
        registry: Registry,
        codec: Format,
        snapshots: Arc<dyn SnapshotStore>,
        watch_limits: crate::watch::Limits,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> io::Result<Self> {
        let latest = Latest::default();
        let mut applied = Applied {
            last_applied: None,
            membership: StoredMembership::default(),
            registry,
        };
        if let Some(bytes) = snapshots.load_latest()? {
            // A snapshot that does not decode stops the start: serving without it would
            // serve less data than was acknowledged. The error names the file, so the
            // operator can remove the data directory and rejoin (see the README).
            let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", snapshots.describe_latest()));
            let body = decode_snapshot(&bytes).map_err(named)?;
            restore_into(&mut applied, &body).map_err(named)?;
            latest.offer(&body.meta);
            tracing::info!(last_applied = ?applied.last_applied, "restored snapshot");
        }
        let watch = Arc::new(WatchHub::new(applied.last_applied.map_or(0, |l| l.index), watch_limits));
        Ok(Self {
            shared: Arc::new(SharedState {
                state: RwLock::new(applied),
                codec,
                watch,
                metrics,
                disk: Default::default(),
                growth: Default::default(),
            }),
            snapshots,
            latest,
        })
    }

    pub fn shared(&self) -> Arc<SharedState> {
        self.shared.clone()
    }
}

fn restore_into(applied: &mut Applied, body: &SnapshotBody) -> io::Result<()> {
    // Borrowed, not copied: a service's part can be the size of the whole state.
    let parts = body.services.iter().map(|(n, b)| (n.as_str(), b.as_slice()));
    applied
        .registry
        .restore(parts)
        .map_err(|e| invalid(format!("restoring snapshot: {e}")))?;
    applied.last_applied = body.meta.last_log_id;
    applied.membership = body.meta.last_membership.clone();
    Ok(())
}

/// What a backup file covers, as [`inspect_backup`] reads it.
#[derive(Debug, Clone)]
pub struct BackupInfo {
    pub last_log_id: LogId,
    /// The codec or serializer name the entries were written with.
    pub format: String,
    pub services: Vec<String>,
}

/// Checks a backup file (magic, format, checksum, body) and says what it covers.
pub fn inspect_backup(bytes: &[u8]) -> io::Result<BackupInfo> {
    let body = decode_snapshot(bytes)?;
    let last_log_id = body
        .meta
        .last_log_id
        .ok_or_else(|| invalid("the backup holds no applied state (taken before the first entry)"))?;
    Ok(BackupInfo {
        last_log_id,
        format: body.serializer.clone().unwrap_or_else(|| body.codec.name().to_string()),
        services: body.services.iter().map(|(n, _)| n.clone()).collect(),
    })
}

/// Rewrites a backup as the snapshot a restored one-node cluster starts from: the same
/// state and log id, with `id` at `peer` as the only voter.
pub(crate) fn restored_snapshot(bytes: &[u8], id: super::NodeId, peer: super::Peer) -> io::Result<Vec<u8>> {
    let mut body = decode_snapshot(bytes)?;
    let at = body.meta.last_log_id;
    let membership = openraft::Membership::new(
        vec![std::collections::BTreeSet::from([id])],
        std::collections::BTreeMap::from([(id, peer)]),
    )
    .map_err(|e| invalid(e.to_string()))?;
    body.meta.last_membership = StoredMembership::new(at, membership);
    encode_snapshot(&body)
}

/// A point-in-time copy of every service, taken while apply is paused, written out later.
pub struct SnapshotBuilder {
    image: Option<Capture>,
    latest: Latest,
    snapshots: Arc<dyn SnapshotStore>,
    metrics: Arc<crate::metrics::Metrics>,
    disk: crate::store::DiskHealth,
}

/// Saves a snapshot file, waiting while the disk is full rather than failing: openraft
/// stops a node whose snapshot cannot be built or installed, and a full disk is a
/// condition that passes. (Building runs in a task of its own, so waiting there holds
/// up nothing else; an install waits in the state machine, as the log writer does.)
async fn save_waiting_for_space(
    store: Arc<dyn SnapshotStore>,
    disk: &crate::store::DiskHealth,
    index: u64,
    bytes: Arc<Vec<u8>>,
) -> io::Result<bool> {
    let mut backoff = std::time::Duration::from_millis(50);
    let mut marked = false;
    loop {
        let (s, b) = (store.clone(), bytes.clone());
        match crate::store::snapshot::on_store(s, move |s| s.save(index, &b)).await {
            Err(e) if crate::store::is_disk_full(&e) && !store.runs_inline() => {
                if disk.set_full(format!("saving snapshot {index}: {e}")) {
                    tracing::warn!("disk full, the snapshot at {index} waits for space: {e}");
                }
                marked = true;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
            }
            r => {
                if marked && r.is_ok() {
                    disk.clear();
                }
                return r;
            }
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let started = std::time::Instant::now();
        let capture = self.image.take().ok_or_else(|| invalid("snapshot already built"))?;
        // Serializing a large state is CPU work of its own: the blocking pool takes it,
        // so the runtime's workers keep serving (the in-memory twin runs it inline).
        let (meta, bytes) = crate::store::snapshot::on_store(self.snapshots.clone(), move |_| {
            let body = capture.finish()?;
            Ok((body.meta.clone(), encode_snapshot(&body)?))
        })
        .await?;
        let bytes = Arc::new(bytes);
        let index = meta.last_log_id.map_or(0, |l| l.index);
        let kept = save_waiting_for_space(self.snapshots.clone(), &self.disk, index, bytes.clone()).await?;
        let bytes = Arc::try_unwrap(bytes).unwrap_or_else(|b| b.as_ref().clone());
        if self.metrics.enabled {
            self.metrics.snapshot.observe(started.elapsed().as_secs_f64());
        }
        if kept {
            self.latest.offer(&meta);
            tracing::info!(last_log_id = ?meta.last_log_id, bytes = bytes.len(), "snapshot built");
        } else {
            tracing::info!(last_log_id = ?meta.last_log_id, "snapshot built, but a newer one is stored");
        }
        Ok(Snapshot {
            meta,
            snapshot: SnapshotData::Bytes(bytes),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let g = self.shared.read();
        Ok((g.last_applied, g.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let codec = self.shared.codec.clone();
        let started = std::time::Instant::now();
        let mut applied = 0u64;
        let mut bytes = 0u64;
        while let Some(item) = entries.next().await {
            applied += 1;
            let (entry, responder) = item?;
            let response = {
                let mut g = self.shared.write();
                g.last_applied = Some(entry.log_id);
                let index = entry.log_id.index;
                // Events are published under the state lock: whoever reads the state at
                // version V and then watches from V + 1 misses nothing.
                let mut events = Vec::new();
                let response = match entry.payload {
                    EntryPayload::Blank => Response::Ok(Vec::new()),
                    EntryPayload::Normal(req) => {
                        bytes += req.payload.len() as u64;
                        let ctx = ApplyContext { index };
                        let r = match g.registry.apply(&codec, &req.service, ctx, &req.payload) {
                            Ok(out) => Response::Ok(out),
                            Err(e) => Response::Err(e),
                        };
                        events = g.registry.take_watch_events(&req.service);
                        r
                    }
                    EntryPayload::Membership(m) => {
                        g.membership = StoredMembership::new(Some(entry.log_id), m);
                        Response::Ok(Vec::new())
                    }
                };
                self.shared.watch.publish(index, events);
                response
            };
            if let Some(r) = responder {
                r.send(response);
            }
        }
        let m = &self.shared.metrics;
        m.proposals_applied.inc_by(applied);
        self.shared.growth.applied(bytes);
        if m.enabled {
            m.apply.observe(started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    async fn try_create_snapshot_builder(&mut self, force: bool) -> Option<Self::SnapshotBuilder> {
        // A scheduled snapshot waits while the disk is full; the log keeps the entries.
        if !force && self.shared.disk.is_full() {
            return None;
        }
        Some(self.get_snapshot_builder().await)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.shared.growth.reset();
        SnapshotBuilder {
            image: Some(self.shared.capture()),
            snapshots: self.snapshots.clone(),
            latest: self.latest.clone(),
            metrics: self.shared.metrics.clone(),
            disk: self.shared.disk.clone(),
        }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotData) -> Result<(), io::Error> {
        // A snapshot received over the network is in a staged file (a store on disk):
        // it is checked and decoded from the file, never read into memory whole.
        let (snapshot, body) = match snapshot {
            // Only a sender opens the stored file; read it whole if one arrives here.
            SnapshotData::Stored(_) => {
                let b = snapshot.into_bytes()?;
                let body = decode_snapshot(&b)?;
                (SnapshotData::Bytes(b), body)
            }
            SnapshotData::Bytes(b) => {
                let body = decode_snapshot(&b)?;
                (SnapshotData::Bytes(b), body)
            }
            SnapshotData::File(staged) => {
                let path = staged.path().to_path_buf();
                let body = tokio::task::spawn_blocking(move || decode_snapshot_file(&path))
                    .await
                    .map_err(io::Error::other)??;
                (SnapshotData::File(staged), body)
            }
        };
        if body.meta.last_log_id != meta.last_log_id {
            return Err(invalid("snapshot metadata does not match its body"));
        }
        let written_with = body.serializer.as_deref().unwrap_or(body.codec.name());
        if written_with != self.shared.codec.name() {
            return Err(invalid(format!(
                "snapshot was written with codec {written_with}, this node uses {}",
                self.shared.codec.name()
            )));
        }
        // Restore first, save after: a snapshot that cannot be restored must never become
        // the one this node starts from. A failed restore is fatal for the node (openraft
        // stops it), which beats serving from a half-restored state.
        {
            let mut g = self.shared.write();
            restore_into(&mut g, &body)?;
            // The events between the old state and the snapshot are unknown here.
            self.shared.watch.reset(meta.last_log_id.map_or(0, |l| l.index));
        }
        self.shared.growth.reset();
        let index = meta.last_log_id.map_or(0, |l| l.index);
        let kept = match snapshot {
            SnapshotData::File(staged) => {
                // Already written and fsynced as it arrived: renamed into place.
                crate::store::snapshot::on_store(self.snapshots.clone(), move |s| s.adopt(index, &staged)).await?
            }
            other => {
                let b = Arc::new(other.into_bytes()?);
                save_waiting_for_space(self.snapshots.clone(), &self.shared.disk, index, b).await?
            }
        };
        if kept {
            self.latest.offer(meta);
        }
        tracing::info!(last_log_id = ?meta.last_log_id, "installed snapshot from leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        // This runs in the state machine's task, between applies: with the metadata
        // known, only the file is opened here, and the network task reads it.
        if let Some(meta) = self.latest.get() {
            let store = self.snapshots.clone();
            if let Some((index, file)) = crate::store::snapshot::on_store(store, |s| s.open_latest()).await? {
                if Some(index) == meta.last_log_id.map(|l| l.index) {
                    return Ok(Some(Snapshot {
                        meta,
                        snapshot: SnapshotData::Stored(file),
                    }));
                }
            }
        }
        let store = self.snapshots.clone();
        let bytes = crate::store::snapshot::on_store(store, |s| s.load_latest()).await?;
        match bytes {
            None => Ok(None),
            Some(bytes) => {
                let body = decode_snapshot(&bytes)?;
                Ok(Some(Snapshot {
                    meta: body.meta,
                    snapshot: SnapshotData::Bytes(bytes),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot file round-trips, and a flipped bit is caught by the checksum.
    #[test]
    fn snapshot_file_checksum_catches_corruption() {
        let body = SnapshotBody {
            meta: SnapshotMeta::default(),
            codec: Codec::MsgPack,
            serializer: None,
            services: vec![("kv".into(), serde_bytes::ByteBuf::from(vec![1, 2, 3]))],
        };
        let mut bytes = encode_snapshot(&body).unwrap();
        let back = decode_snapshot(&bytes).unwrap();
        assert_eq!(back.services, body.services);
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        let err = decode_snapshot(&bytes).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        assert!(decode_snapshot(b"short").is_err());

        // The same checks when the snapshot is read from a file, piece by piece.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.tmp");
        bytes[last] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(decode_snapshot_file(&path).unwrap().services, body.services);
        bytes[last] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let err = decode_snapshot_file(&path).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        std::fs::write(&path, b"short").unwrap();
        assert!(decode_snapshot_file(&path).is_err());
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(decode_snapshot_file(&path).is_err());
    }
}
