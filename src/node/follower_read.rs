//! Linearizable and lease reads served by a follower from its own state.
//!
//! Forwarding a read costs the leader a whole request per read: decoding it, running the
//! query, encoding the answer, and the HTTP/2 work around each (the read profile in
//! docs/benchmarks.md: connection handling is most of the CPU). Instead a follower asks
//! the leader only for a *read point* (ReadIndex, Raft thesis §6.4): the leader confirms
//! that it still leads and answers with the index every write acknowledged so far sits
//! at or below. Once the follower has applied that index (committed entries are the same
//! on every node), its own state holds each of those writes, so it serves the read itself.
//!
//! Reads waiting on one follower share one request: at most one is in flight per leader
//! and kind (ReadIndex or lease), and reads that arrive while it is in flight wait for
//! the next. A read may only use a read point the leader fixed *after* the read began, as
//! one fixed earlier could miss a write acknowledged in between; so a batch is closed
//! before its request leaves, and late arrivals go in the next batch.
//!
//! Two ways back to plain forwarding: a leader too old to know the request cannot decode
//! it (INVALID_ARGUMENT), and a follower that has not applied the read point within one
//! election timeout (it is catching up, or its disk is slow) hands the read to the
//! leader rather than keep the client waiting. `BRAFT_FOLLOWER_READS=false` forwards
//! every read, as before.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::forward::{ForwardReply, ForwardRequest};
use super::Node;
use crate::raft::{wire, NodeId, Peer};

/// What one read-point request brought back, shared by every read in its batch.
#[derive(Debug, Clone)]
pub(crate) enum ReadPoint {
    /// Serve the read here once this index is applied.
    At(u64),
    /// No read point this time (not the leader, no quorum, unreachable): retry.
    Retry { leader: Option<NodeId>, why: String },
    /// The leader does not know read points (an older version): forward the read.
    Unsupported,
}

/// The reads waiting on this node for a read point, per leader address and kind.
#[derive(Default)]
pub(crate) struct ReadBatches {
    queues: Mutex<HashMap<(String, bool), Queue>>,
}

#[derive(Default)]
struct Queue {
    /// Reads that joined after the request in flight (if any) left.
    waiting: Vec<oneshot::Sender<ReadPoint>>,
}

/// A running sender. Should it stop any other way than by finding no read waiting (a
/// panic, or its runtime shutting down), dropping it removes the queue's entry: the reads
/// waiting there are woken to retry, and the next read starts a new sender, rather than
/// every later read to that leader waiting out its deadline.
struct Running {
    node: Node,
    key: (String, bool),
    finished: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.finished {
            // While this sender lives, the entry is its own: no other sender can exist.
            self.node.inner.read_batches.lock().remove(&self.key);
        }
    }
}

impl ReadBatches {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, bool), Queue>> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Node {
    /// Whether a read of this kind may be served here, on a follower, with a read point.
    pub(super) fn follower_reads(&self) -> bool {
        // A node whose disk is full cannot apply anything new: forward its reads.
        self.inner.config.follower_reads && !self.inner.disk.is_full()
    }

    /// A read point from `leader` for a read that begins now. Joins the next batch; the
    /// first read of a batch starts the sender, which runs while reads keep coming.
    pub(super) async fn read_point(&self, leader: &Peer, lease: bool, deadline: Instant) -> ReadPoint {
        let (tx, rx) = oneshot::channel();
        let key = (leader.rpc_addr.clone(), lease);
        let start = {
            let mut queues = self.inner.read_batches.lock();
            match queues.get_mut(&key) {
                Some(q) => {
                    q.waiting.push(tx);
                    false
                }
                None => {
                    queues.insert(key.clone(), Queue { waiting: vec![tx] });
                    true
                }
            }
        };
        if start {
            let node = self.clone();
            tokio::spawn(async move { node.send_read_points(key).await });
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(point)) => point,
            Ok(Err(_)) => ReadPoint::Retry {
                leader: None,
                why: "the read-point request was dropped".into(),
            },
            Err(_) => ReadPoint::Retry {
                leader: None,
                why: "no read point from the leader in time".into(),
            },
        }
    }

    /// Sends one read-point request per batch until no read is waiting. A queue's entry
    /// exists exactly while its sender runs, so a read that finds none starts one.
    async fn send_read_points(self, key: (String, bool)) {
        let mut running = Running {
            node: self,
            key,
            finished: false,
        };
        loop {
            let batch = {
                let mut queues = running.node.inner.read_batches.lock();
                let Some(q) = queues.get_mut(&running.key) else {
                    running.finished = true;
                    return;
                };
                // Reads that gave up already (their deadline passed) need no answer.
                q.waiting.retain(|tx| !tx.is_closed());
                if q.waiting.is_empty() {
                    queues.remove(&running.key);
                    running.finished = true;
                    return;
                }
                std::mem::take(&mut q.waiting)
            };
            let point = running.node.ask_read_point(&running.key.0, running.key.1).await;
            for tx in batch {
                let _ = tx.send(point.clone());
            }
        }
    }

    /// One read-point request to the leader at `addr`. It may take two election timeouts
    /// at most (never more than the request timeout): a leader that does not answer by
    /// then is likely gone, and the reads queued behind this request should move on to
    /// the next leader rather than wait out their own deadlines.
    async fn ask_read_point(&self, addr: &str, lease: bool) -> ReadPoint {
        let retry = |why: String| ReadPoint::Retry { leader: None, why };
        let config = &self.inner.config;
        let timeout = Duration::from_millis(2 * config.election_timeout_max_ms()).min(config.request_timeout());
        let mut client = match self.inner.pool.raft_client(addr) {
            Ok(c) => c,
            Err(e) => return retry(format!("bad leader address {addr}: {e}")),
        };
        let req = ForwardRequest::ReadIndex {
            lease,
            timeout_ms: timeout.as_millis() as u64,
        };
        let data = match wire::encode(&req) {
            Ok(d) => d,
            Err(e) => return retry(e.to_string()),
        };
        let answer = tokio::time::timeout(timeout, client.forward(crate::pb::Opaque { data })).await;
        let (outcome, point) = match answer {
            Err(_) => (
                "unavailable",
                retry(format!("no read point from leader {addr} in time")),
            ),
            Ok(Err(s)) if s.code() == tonic::Code::InvalidArgument => ("error", ReadPoint::Unsupported),
            Ok(Err(s)) => ("unavailable", retry(format!("leader {addr}: {s}"))),
            // As for the other kinds, `ok` means the leader answered, whatever it said.
            Ok(Ok(resp)) => match wire::decode::<ForwardReply>(&resp.into_inner().data) {
                Ok(ForwardReply::ReadIndex { index }) => ("ok", ReadPoint::At(index)),
                Ok(ForwardReply::NotLeader { leader }) => (
                    "ok",
                    ReadPoint::Retry {
                        leader: leader.map(|(id, _)| id),
                        why: "leader changed".into(),
                    },
                ),
                Ok(ForwardReply::NoQuorum(e) | ForwardReply::Indeterminate(e) | ForwardReply::Fatal(e)) => {
                    ("ok", retry(e))
                }
                Ok(other) => ("ok", retry(format!("leader {addr} answered {other:?}"))),
                Err(e) => ("error", retry(format!("bad answer from leader {addr}: {e}"))),
            },
        };
        self.inner
            .metrics
            .forwarded
            .get_or_create(&crate::metrics::ForwardLabels {
                kind: "read_index",
                outcome,
            })
            .inc();
        point
    }

    /// Waits until this node has applied `index`, for at most one election timeout (or
    /// until `deadline`). `false`: not in time; the caller forwards the read instead.
    pub(super) async fn applied_in_time(&self, index: u64, deadline: Instant) -> bool {
        let patience = Duration::from_millis(self.inner.config.election_timeout_ms);
        let left = deadline.saturating_duration_since(Instant::now()).min(patience);
        self.inner.consensus.wait_applied(index, left).await.is_ok()
    }

    /// The leader's half: confirm leadership and name the read point.
    pub(crate) async fn handle_read_index(&self, lease: bool, timeout_ms: u64) -> ForwardReply {
        let timeout = Duration::from_millis(timeout_ms.clamp(10, 60_000));
        match self.inner.consensus.read_index(lease, timeout).await {
            Ok(index) => ForwardReply::ReadIndex { index },
            Err(refused) => self.read_refused(refused),
        }
    }
}
