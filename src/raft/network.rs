//! The Raft network over gRPC: the client half that openraft drives, and the decode-call-
//! encode helpers the server half uses. One lazily connected tonic channel per peer address
//! is shared by every RPC to that peer (HTTP/2 multiplexes them).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::errors::{NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Timeout, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RPCTypes, RaftNetworkV2};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use super::{wire, NodeId, Peer, Raft, Snapshot, SnapshotMeta, TypeConfig, Vote};
use crate::pb;
use crate::pb::raft_client::RaftClient;

/// The size of one snapshot chunk on the wire.
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// gRPC message limit; Raft batches and snapshot chunks stay well below it.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The metadata key naming the member a Raft RPC is meant for. A node answers only RPCs
/// meant for itself: after a member's data directory is wiped and it rejoins under a new
/// id at the same address, the leader still replicates to the old id until autopilot
/// removes it, and those RPCs must not reach the new member (openraft tracks progress per
/// id; one process answering for two ids made a leader see a follower's log go backward).
pub const TARGET_HEADER: &str = "x-braft-target";

/// A channel to a peer that signs every request with the cluster token.
pub type PeerChannel = InterceptedService<Channel, crate::auth::ClusterToken>;

/// How often an idle peer connection is pinged, and how long a PING may go unanswered
/// before the connection is dropped and made again. PINGs are answered by the peer's
/// HTTP/2 layer, not by Raft, so a busy peer still answers in time.
const PEER_KEEPALIVE: Duration = Duration::from_secs(2);

/// See `ChannelPool::channel`: remembered reset streams expire by count, not by the
/// wall clock.
const RESET_STREAM_MEMORY: Duration = Duration::from_secs(3600);

/// Peer channels, by address. Cheap to clone.
#[derive(Clone)]
pub struct ChannelPool {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    connect_timeout: Duration,
    token: crate::auth::ClusterToken,
    /// Dials peers instead of the OS's TCP (a simulation's network).
    dialer: Option<Arc<dyn crate::transport::Dialer>>,
}

impl ChannelPool {
    pub fn new(
        connect_timeout: Duration,
        token: crate::auth::ClusterToken,
        dialer: Option<Arc<dyn crate::transport::Dialer>>,
    ) -> Self {
        Self {
            channels: Arc::default(),
            connect_timeout,
            token,
            dialer,
        }
    }

    /// The channel to `addr` (`host:port`), created on first use. Connecting happens
    /// lazily on the first request and again after a failure.
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut g = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = g.get(addr) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            // A connection whose peer vanished while a partition swallowed its FIN or
            // RST looks open forever, and everything queued behind it waits. PINGs, also
            // while no call is open, find it within two intervals and reconnect (found
            // by the simulation: a follower cut off for 40 s after its partition healed).
            .http2_keep_alive_interval(PEER_KEEPALIVE)
            .keep_alive_timeout(PEER_KEEPALIVE)
            .keep_alive_while_idle(true)
            // h2 forgets a locally reset stream (a timed-out RPC) after this long, measured
            // on the OS clock, not tokio's. Its default (1 s) made the seeded simulation
            // depend on how fast the machine ran it. Memory stays bounded by h2's count
            // limit (50 streams per connection).
            .http2_reset_stream_duration(RESET_STREAM_MEMORY);
        let ch = match &self.dialer {
            None => endpoint.connect_lazy(),
            Some(d) => endpoint.connect_with_connector_lazy(crate::transport::DialConnector(d.clone())),
        };
        g.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    /// A `braft.v1.Raft` client for `addr`.
    pub fn raft_client(&self, addr: &str) -> Result<RaftClient<PeerChannel>, tonic::transport::Error> {
        Ok(RaftClient::with_interceptor(self.channel(addr)?, self.token.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }
}

/// Hands openraft a client per peer.
pub struct NetworkFactory {
    pub pool: ChannelPool,
    pub self_id: NodeId,
    /// How long an AppendEntries that carries entries may take; see `PeerClient::append_ttl`.
    pub append_timeout: Duration,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Peer) -> Self::Network {
        PeerClient {
            self_id: self.self_id,
            target,
            addr: node.rpc_addr.clone(),
            client: self.pool.raft_client(&node.rpc_addr).map_err(|e| e.to_string()),
            append_timeout: self.append_timeout,
        }
    }
}

/// The client half for one peer.
pub struct PeerClient {
    self_id: NodeId,
    target: NodeId,
    addr: String,
    client: Result<RaftClient<PeerChannel>, String>,
    append_timeout: Duration,
}

fn status_to_rpc<E: std::error::Error>(s: tonic::Status) -> RPCError<TypeConfig, E> {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::Cancelled => RPCError::Unreachable(Unreachable::new(&s)),
        _ => RPCError::Network(NetworkError::new(&s)),
    }
}

impl PeerClient {
    fn client(&self) -> Result<RaftClient<PeerChannel>, Unreachable<TypeConfig>> {
        self.client
            .clone()
            .map_err(|e| Unreachable::from_string(format!("bad peer address {}: {e}", self.addr)))
    }

    /// `msg` as a request addressed to this client's target member.
    fn addressed<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.metadata_mut()
            .insert(TARGET_HEADER, tonic::metadata::MetadataValue::from(self.target));
        r
    }

    /// The deadline for one AppendEntries. openraft offers one heartbeat interval (100 ms by
    /// default) for every append. That suits a heartbeat, which openraft also times itself,
    /// but not a batch of entries: a follower that needed longer to take one (two cores,
    /// three members serializing snapshots at once) failed the RPC, which ends openraft's
    /// replication session, and got the batch again, more work for a follower already
    /// behind (13 such timeouts in one 1M-key load; 0 with this deadline, though the
    /// longest write did not change measurably). A batch gets `append_timeout` (the
    /// election timeout): a slow follower is waited for, not sent the same entries again;
    /// a dead one is still noticed by the transport's keepalive and by this deadline.
    /// Heartbeats keep openraft's deadline.
    fn append_ttl(&self, rpc: &AppendEntriesRequest<TypeConfig>, option: &RPCOption) -> Duration {
        if rpc.entries.is_empty() {
            option.hard_ttl()
        } else {
            option.hard_ttl().max(self.append_timeout)
        }
    }

    fn timeout(&self, action: RPCTypes, ttl: Duration) -> Timeout<TypeConfig> {
        Timeout {
            action,
            id: self.self_id,
            target: self.target,
            timeout: ttl,
        }
    }

    /// One unary call: encode, send within `ttl`, decode the remote `Result`.
    async fn call<Req, Resp, F, Fut>(
        &mut self,
        action: RPCTypes,
        req: &Req,
        ttl: Duration,
        send: F,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        F: FnOnce(RaftClient<PeerChannel>, tonic::Request<pb::Opaque>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<pb::Opaque>, tonic::Status>>,
    {
        let client = self.client()?;
        let data = wire::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let resp = match tokio::time::timeout(ttl, send(client, self.addressed(pb::Opaque { data }))).await {
            Err(_) => return Err(RPCError::Timeout(self.timeout(action, ttl))),
            Ok(Err(status)) => return Err(status_to_rpc(status)),
            Ok(Ok(r)) => r.into_inner(),
        };
        let result: Result<Resp, RaftError<TypeConfig>> =
            wire::decode(&resp.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::Network(NetworkError::from_string(format!("remote: {e}"))))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = crate::store::SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let ttl = self.append_ttl(&rpc, &option);
        self.call(RPCTypes::AppendEntries, &rpc, ttl, |mut c, m| async move {
            c.append(m).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RPCTypes::Vote, &rpc, option.hard_ttl(), |mut c, m| async move {
            c.vote(m).await
        })
        .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RPCTypes::Vote, &rpc, option.hard_ttl(), |mut c, m| async move {
            c.pre_vote(m).await
        })
        .await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(
            RPCTypes::TransferLeader,
            &req,
            option.hard_ttl(),
            |mut c, m| async move { c.transfer_leader(m).await },
        )
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let mut client = self.client()?;
        let meta = wire::encode(&(vote, &snapshot.meta)).map_err(|e| NetworkError::new(&e))?;
        // A leader sends its stored snapshot file (or, from the in-memory twin, bytes),
        // read here rather than in the state machine's task.
        let data = match snapshot.snapshot {
            crate::store::SnapshotData::Bytes(b) => b,
            file => tokio::task::spawn_blocking(move || {
                let bytes = file.into_bytes()?;
                // The stored file was not read when openraft asked for it (that would hold
                // up the state machine's task), so it is checked here: a damaged one must
                // stop at the sender, not in each follower's install, which is fatal there.
                super::sm::check_snapshot(&bytes)
                    .map_err(|e| std::io::Error::new(e.kind(), format!("the stored snapshot: {e}")))?;
                Ok::<_, std::io::Error>(bytes)
            })
            .await
            .map_err(|e| NetworkError::new(&e))?
            .map_err(|e| NetworkError::new(&e))?,
        };
        let first = pb::SnapshotChunk {
            meta,
            data: Vec::new(),
            size: data.len() as u64,
        };
        // Chunks are cut as the stream is read, not all up front: a second copy of a
        // large snapshot would sit in memory for the whole transfer.
        let count = data.len().div_ceil(SNAPSHOT_CHUNK_BYTES);
        let rest = (0..count).map(move |i| {
            let at = i * SNAPSHOT_CHUNK_BYTES;
            pb::SnapshotChunk {
                meta: Vec::new(),
                data: data[at..(at + SNAPSHOT_CHUNK_BYTES).min(data.len())].to_vec(),
                size: 0,
            }
        });
        let chunks = std::iter::once(first).chain(rest);
        let ttl = option.hard_ttl().max(Duration::from_secs(60));
        let send = client.install_snapshot(self.addressed(tokio_stream::iter(chunks)));
        let resp = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = tokio::time::timeout(ttl, send) => match r {
                Err(_) => return Err(StreamingError::Timeout(self.timeout(RPCTypes::InstallSnapshot, ttl))),
                Ok(Err(s)) if s.code() == tonic::Code::Unavailable => return Err(Unreachable::new(&s).into()),
                Ok(Err(s)) => return Err(NetworkError::new(&s).into()),
                Ok(Ok(r)) => r.into_inner(),
            }
        };
        let result: Result<SnapshotResponse<TypeConfig>, RaftError<TypeConfig>> =
            wire::decode(&resp.data).map_err(|e| NetworkError::new(&e))?;
        result.map_err(|e| NetworkError::from_string(format!("remote: {e}")).into())
    }
}

// --- The server half: decode, call the local Raft, encode the `Result`. ---

fn reply<T: serde::Serialize>(r: &T) -> Result<pb::Opaque, tonic::Status> {
    Ok(pb::Opaque { data: wire::encode(r)? })
}

pub async fn serve_append(raft: &Raft, req: pb::Opaque) -> Result<pb::Opaque, tonic::Status> {
    let rpc: AppendEntriesRequest<TypeConfig> = wire::decode(&req.data)?;
    reply(&raft.append_entries(rpc).await)
}

pub async fn serve_vote(raft: &Raft, req: pb::Opaque) -> Result<pb::Opaque, tonic::Status> {
    let rpc: VoteRequest<TypeConfig> = wire::decode(&req.data)?;
    reply(&raft.vote(rpc).await)
}

pub async fn serve_pre_vote(raft: &Raft, req: pb::Opaque) -> Result<pb::Opaque, tonic::Status> {
    let rpc: VoteRequest<TypeConfig> = wire::decode(&req.data)?;
    reply(&raft.pre_vote(rpc).await)
}

pub async fn serve_transfer_leader(raft: &Raft, req: pb::Opaque) -> Result<pb::Opaque, tonic::Status> {
    let rpc: TransferLeaderRequest<TypeConfig> = wire::decode(&req.data)?;
    let r: Result<TransferLeaderResponse<TypeConfig>, RaftError<TypeConfig>> =
        raft.handle_transfer_leader(rpc).await.map_err(RaftError::Fatal);
    reply(&r)
}

/// Receives a snapshot stream into `into` (a temporary file, for a store on disk),
/// checking it against its announced size and `max_bytes`, then installs it.
pub async fn serve_install_snapshot(
    raft: &Raft,
    mut chunks: tonic::Streaming<pb::SnapshotChunk>,
    max_bytes: usize,
    into: crate::store::Incoming,
) -> Result<pb::Opaque, tonic::Status> {
    let first = chunks
        .message()
        .await?
        .ok_or_else(|| tonic::Status::invalid_argument("empty snapshot stream"))?;
    // The announced size (0: not announced) bounds what is read: one over the limit is
    // refused before any of it arrives, and one longer than announced as soon as it is.
    let announced = first.size as usize;
    if announced > max_bytes {
        return Err(tonic::Status::resource_exhausted(format!(
            "snapshot of {announced} bytes exceeds the limit of {max_bytes}"
        )));
    }
    let bound = if announced > 0 { announced } else { max_bytes } as u64;
    let staging = |e: std::io::Error| {
        if crate::store::is_disk_full(&e) {
            tonic::Status::resource_exhausted(format!("no space to receive the snapshot: {e}"))
        } else {
            tonic::Status::unavailable(format!("receiving the snapshot: {e}"))
        }
    };
    let mut data = into;
    data.write(&first.data).await.map_err(staging)?;
    while let Some(c) = chunks.message().await? {
        if data.len() + c.data.len() as u64 > bound {
            return Err(tonic::Status::resource_exhausted(if announced > 0 {
                format!("snapshot stream longer than the {announced} bytes announced")
            } else {
                format!("snapshot exceeds the limit of {max_bytes} bytes")
            }));
        }
        data.write(&c.data).await.map_err(staging)?;
    }
    if announced > 0 && data.len() != announced as u64 {
        return Err(tonic::Status::invalid_argument(format!(
            "snapshot stream of {} bytes, {announced} announced",
            data.len()
        )));
    }
    let (vote, meta): (Vote, SnapshotMeta) = wire::decode(&first.meta)?;
    let data = data.finish().await.map_err(staging)?;
    reply(&install_snapshot(raft, vote, Snapshot { meta, snapshot: data }).await)
}

/// Installs a snapshot the leader sent, unless this follower's log already holds the
/// snapshot's last entry, appended under the sender's own vote.
///
/// Why: a leader whose append acknowledgements to a follower were lost (timed out) may
/// judge that follower behind its purged log and send a snapshot, although the follower
/// has appended beyond the snapshot meanwhile. openraft 0.10.0-alpha.37 then installs it
/// anyway when the follower's *commit* index is still below the snapshot, and its log I/O
/// cursor goes backwards (the debug assertion "expect submitted:… < new_submitted:…",
/// simulation seeds 260577 and 700566). In a release build the cursor regresses silently
/// and caps what the state machine may apply, so an entry that commits may stay unapplied
/// until the next append (an idle cluster: forever, and reads that wait on it time out).
///
/// Raft's own rule (§7 of the paper) is that a follower whose log holds the snapshot's
/// last entry keeps its log and installs nothing. It answers with its vote, which equals
/// the sender's, once an empty append after that entry confirms the log is durable up to
/// it; the leader records the follower as matching the snapshot's last entry and goes on
/// appending after it. The check runs inside `RaftCore` (`with_raft_state`),
/// atomically with the log and vote it reads. Log matching makes it sufficient: an entry
/// with the snapshot's log id at the snapshot's index means an identical prefix.
pub(crate) async fn install_snapshot(
    raft: &Raft,
    vote: Vote,
    snapshot: Snapshot,
) -> Result<SnapshotResponse<TypeConfig>, RaftError<TypeConfig>> {
    let (sender, last) = (vote, snapshot.meta.last_log_id);
    let held = raft
        .with_raft_state(move |st| {
            let last = last?;
            let holds = *st.vote_ref() == sender && st.log_ids.get(last.index) == Some(last);
            let newer = st.local_committed() < Some(&last);
            (holds && newer).then(|| *st.vote_ref())
        })
        .await
        .map_err(RaftError::Fatal)?;
    if let (Some(vote), Some(last)) = (held, last) {
        // The answer must mean "durable up to `last`", as an append's does: an empty
        // append after `last` answers only once the log is flushed that far (and cannot
        // move any cursor back). If it does not match after all, install as usual.
        let flushed = raft
            .append_entries(AppendEntriesRequest {
                vote,
                prev_log_id: Some(last),
                entries: vec![],
                leader_commit: None,
            })
            .await
            .is_ok_and(|r| r.is_success());
        if flushed {
            tracing::debug!(%last, "snapshot not installed: the log already holds its last entry");
            return Ok(SnapshotResponse::new(vote));
        }
    }
    raft.install_full_snapshot(vote, snapshot)
        .await
        .map_err(RaftError::Fatal)
}
