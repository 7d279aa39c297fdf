//! `braft.v1.Kv`: the public key-value API over gRPC, with the semantics of HTTP `/v1/kv`
//! and `/v1/watch`, plus braft's maps.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::kv::{KvCommand, KvOutput, KvQuery, KvQueryOutput, KvService, Precondition};
use crate::node::{Consistency, Node};
use crate::pb;
use crate::watch::{EventKind, WatchError, WatchItem, Watcher, PROGRESS_EVERY};

/// The default and the largest `limit` of a listing (as on HTTP).
const LIST_DEFAULT: u32 = 1000;
const LIST_MAX: u32 = 10_000;

pub(super) struct KvGrpc {
    node: Node,
}

impl KvGrpc {
    pub fn new(node: Node) -> Self {
        Self { node }
    }
}

/// The metadata keys that let a client ([`crate::Client`]) rebuild the library's typed
/// error from a status: the error's code, and the leader hint or the service's own code.
pub(crate) const CODE: &str = "x-braft-code";
pub(crate) const LEADER_ID: &str = "x-braft-leader-id";
pub(crate) const LEADER_RPC: &str = "x-braft-leader-rpc";
pub(crate) const LEADER_HTTP: &str = "x-braft-leader-http";
pub(crate) const SERVICE_CODE: &str = "x-braft-service-code";
pub(crate) const CURRENT_VERSION: &str = "x-braft-current-version";

pub(super) fn with(mut status: Status, pairs: &[(&'static str, String)]) -> Status {
    for (k, v) in pairs {
        if let Ok(v) = v.parse() {
            status.metadata_mut().insert(*k, v);
        }
    }
    status
}

pub(super) fn to_status(e: crate::Error) -> Status {
    use crate::Error as E;
    let leader = |l: &Option<crate::LeaderHint>| match l {
        Some(l) => vec![
            (LEADER_ID, l.id.to_string()),
            (LEADER_RPC, l.rpc_addr.clone()),
            (LEADER_HTTP, l.http_addr.clone()),
        ],
        None => Vec::new(),
    };
    match &e {
        E::BadRequest(m) => with(Status::invalid_argument(m.clone()), &[(CODE, "bad_request".into())]),
        E::Service(s) => with(
            Status::failed_precondition(s.to_string()),
            &[(CODE, "service_error".into()), (SERVICE_CODE, s.code.clone())],
        ),
        E::UnknownService(_) => with(Status::not_found(e.to_string()), &[(CODE, "unknown_service".into())]),
        E::Unavailable { leader: l, .. } => {
            let mut md = leader(l);
            md.push((CODE, "unavailable".into()));
            with(Status::unavailable(e.to_string()), &md)
        }
        E::ShuttingDown => with(Status::unavailable(e.to_string()), &[(CODE, "shutting_down".into())]),
        E::DiskFull(_) => with(Status::resource_exhausted(e.to_string()), &[(CODE, "disk_full".into())]),
        E::Access(d) => d.status(),
        E::Indeterminate { leader: l, .. } => {
            let mut md = leader(l);
            md.push((CODE, "indeterminate".into()));
            with(Status::deadline_exceeded(e.to_string()), &md)
        }
        _ => with(Status::internal(e.to_string()), &[(CODE, "internal".into())]),
    }
}

fn check_key(key: &str) -> Result<(), Status> {
    crate::kv::validate_key(key).map_err(Status::invalid_argument)
}

pub(super) fn consistency(c: i32) -> Result<Consistency, Status> {
    match pb::Consistency::try_from(c) {
        Ok(pb::Consistency::Linearizable) => Ok(Consistency::Linearizable),
        Ok(pb::Consistency::Lease) => Ok(Consistency::Lease),
        Ok(pb::Consistency::Stale) => Ok(Consistency::Stale),
        Err(_) => Err(Status::invalid_argument("unknown consistency")),
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::kv_server::Kv for KvGrpc {
    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let r = req.into_inner();
        check_key(&r.key)?;
        if r.value.len() > self.node.config().max_value_bytes {
            return Err(Status::invalid_argument(format!(
                "value of {} bytes exceeds BRAFT_MAX_VALUE_BYTES ({})",
                r.value.len(),
                self.node.config().max_value_bytes
            )));
        }
        let precondition = match (r.prev_version, r.prev_value) {
            (Some(_), Some(_)) => return Err(Status::invalid_argument("give prev_version or prev_value, not both")),
            (Some(v), None) => Some(Precondition::Version(v)),
            (None, Some(v)) => Some(Precondition::Value(v)),
            (None, None) => None,
        };
        let cmd = KvCommand::Put {
            map: r.map,
            key: r.key,
            value: r.value,
            precondition,
        };
        match self.node.write::<KvService>(cmd).await.map_err(to_status)? {
            KvOutput::Put { version } => Ok(Response::new(pb::PutResponse { version })),
            KvOutput::CompareFailed { current_version } => Err(with(
                Status::failed_precondition(format!("compare failed; current version {current_version}")),
                &[
                    (CODE, "compare_failed".into()),
                    (CURRENT_VERSION, current_version.to_string()),
                ],
            )),
            other => Err(Status::internal(format!("unexpected output {other:?}"))),
        }
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let r = req.into_inner();
        check_key(&r.key)?;
        let q = KvQuery::Get { map: r.map, key: r.key };
        match self
            .node
            .read::<KvService>(q, consistency(r.consistency)?)
            .await
            .map_err(to_status)?
        {
            KvQueryOutput::Value(Some(v)) => Ok(Response::new(pb::GetResponse {
                found: true,
                value: v.value,
                version: v.version,
            })),
            KvQueryOutput::Value(None) => Ok(Response::new(pb::GetResponse::default())),
            other => Err(Status::internal(format!("unexpected output {other:?}"))),
        }
    }

    async fn delete(&self, req: Request<pb::DeleteRequest>) -> Result<Response<pb::DeleteResponse>, Status> {
        let r = req.into_inner();
        check_key(&r.key)?;
        let cmd = KvCommand::Delete { map: r.map, key: r.key };
        match self.node.write::<KvService>(cmd).await.map_err(to_status)? {
            KvOutput::Deleted { version, existed } => Ok(Response::new(pb::DeleteResponse { version, existed })),
            other => Err(Status::internal(format!("unexpected output {other:?}"))),
        }
    }

    async fn list(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::ListResponse>, Status> {
        let r = req.into_inner();
        let limit = match r.limit {
            0 => LIST_DEFAULT,
            n if n <= LIST_MAX => n,
            n => return Err(Status::invalid_argument(format!("limit {n} must be 1..{LIST_MAX}"))),
        };
        let q = KvQuery::List {
            map: r.map,
            prefix: r.prefix,
            limit: limit as usize,
        };
        match self
            .node
            .read::<KvService>(q, consistency(r.consistency)?)
            .await
            .map_err(to_status)?
        {
            KvQueryOutput::Keys(keys) => Ok(Response::new(pb::ListResponse { keys })),
            other => Err(Status::internal(format!("unexpected output {other:?}"))),
        }
    }

    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<pb::WatchRequest>) -> Result<Response<WatchStream>, Status> {
        let r = req.into_inner();
        let from = (r.from_version > 0).then_some(r.from_version);
        self.node.watch_capacity().map_err(Status::resource_exhausted)?;
        let mut watcher = self.node.watcher(&r.map, &r.prefix, from);
        // The first message comes at once: the events already there, or progress naming
        // the version the watch starts after (so a client that asked for "the next
        // change" knows where to resume), or `compacted`.
        let first = match message(watcher.now()) {
            Some(first) => first,
            None => return Err(Status::unavailable("the node is shutting down")),
        };
        let rest = futures::stream::unfold((watcher, first.1), |(mut w, done)| async move {
            if done {
                return None;
            }
            let (msg, done) = next_message(&mut w).await?;
            Some((Ok(msg), (w, done)))
        });
        let stream = futures::stream::once(async move { Ok(first.0) }).chain(rest);
        Ok(Response::new(Box::pin(stream)))
    }
}

fn events_message(batch: Vec<crate::watch::WatchEvent>) -> pb::WatchResponse {
    let events = batch
        .into_iter()
        .map(|e| pb::Event {
            kind: match e.kind {
                EventKind::Put => pb::event::Kind::Put,
                EventKind::Delete => pb::event::Kind::Delete,
            } as i32,
            key: e.key,
            value: e.value.map(|v| v.to_vec()).unwrap_or_default(),
            version: e.version,
        })
        .collect();
    pb::WatchResponse {
        events,
        ..Default::default()
    }
}

/// The last message of a watch that ends with `e`; `None` when it just stops (the node
/// is shutting down).
fn end_message(e: WatchError) -> Option<pb::WatchResponse> {
    match e {
        WatchError::Compacted { oldest } => Some(pb::WatchResponse {
            compacted: true,
            oldest_version: oldest,
            ..Default::default()
        }),
        WatchError::Closed => None,
    }
}

/// The next message of a watch, and whether the stream ends after it; `None` when it
/// ends now (the node is shutting down).
async fn next_message(w: &mut Watcher) -> Option<(pb::WatchResponse, bool)> {
    message(w.next_or_progress(PROGRESS_EVERY).await)
}

/// A watch item as a message, and whether the stream ends after it.
fn message(item: Result<WatchItem, WatchError>) -> Option<(pb::WatchResponse, bool)> {
    match item {
        Ok(WatchItem::Events(batch)) => Some((events_message(batch), false)),
        Ok(WatchItem::Progress(version)) => Some((
            pb::WatchResponse {
                progress_version: version,
                ..Default::default()
            },
            false,
        )),
        Err(e) => end_message(e).map(|m| (m, true)),
    }
}
