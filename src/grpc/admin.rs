//! `braft.v1.Admin`: the admin API over gRPC, the twin of `/v1/cluster/*` and
//! `/v1/snapshot` over HTTP. Each call is one of the node's own admin methods.

use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Response, Status};

use super::kv::{to_status, with, CODE};
use crate::node::admin::{AdminError, AdminOp, Member};
use crate::node::Node;
use crate::pb;
use crate::raft::Peer;

/// Backups stream in chunks of this size.
const CHUNK: usize = 1 << 20;

pub(super) struct AdminGrpc {
    node: Node,
}

impl AdminGrpc {
    pub fn new(node: Node) -> Self {
        Self { node }
    }

    async fn run(&self, op: AdminOp) -> Result<Response<pb::AdminResponse>, Status> {
        let result = self.node.admin(op).await.map_err(admin_status)?;
        Ok(Response::new(pb::AdminResponse { result }))
    }
}

/// `refused` is FAILED_PRECONDITION and `busy` is ABORTED, each with its `x-braft-code`.
fn admin_status(e: AdminError) -> Status {
    match e {
        AdminError::Refused(why) => with(Status::failed_precondition(why), &[(CODE, "refused".into())]),
        AdminError::Busy(why) => with(Status::aborted(why), &[(CODE, "busy".into())]),
        AdminError::Other(e) => to_status(e),
    }
}

fn member_id(id: u64) -> Result<u64, Status> {
    if id == 0 {
        return Err(Status::invalid_argument("node id 0 is not a node"));
    }
    Ok(id)
}

/// A member on the wire, and back (for [`crate::Client`]).
impl From<Member> for pb::Member {
    fn from(m: Member) -> Self {
        pb::Member {
            id: m.id,
            rpc_addr: m.rpc_addr,
            http_addr: m.http_addr,
            suffrage: m.suffrage,
            health: m.health,
            match_index: m.match_index,
            lag: m.lag,
            last_contact_ms: m.last_contact_ms,
        }
    }
}

impl From<pb::Member> for Member {
    fn from(m: pb::Member) -> Self {
        Member {
            id: m.id,
            rpc_addr: m.rpc_addr,
            http_addr: m.http_addr,
            suffrage: m.suffrage,
            health: m.health,
            match_index: m.match_index,
            lag: m.lag,
            last_contact_ms: m.last_contact_ms,
        }
    }
}

type BackupStream = Pin<Box<dyn Stream<Item = Result<pb::BackupChunk, Status>> + Send>>;

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminGrpc {
    async fn members(&self, _req: Request<pb::MembersRequest>) -> Result<Response<pb::MembersResponse>, Status> {
        let m = self.node.members().await.map_err(to_status)?;
        Ok(Response::new(pb::MembersResponse {
            leader: m.leader,
            term: m.term,
            members: m.members.into_iter().map(pb::Member::from).collect(),
        }))
    }

    async fn status(&self, _req: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let nodes = self
            .node
            .member_details()
            .await
            .into_iter()
            .map(|(id, address, d)| match d {
                Ok(details) => pb::NodeStatus {
                    details: Some(details),
                    error: String::new(),
                    address,
                    id,
                },
                Err(error) => pb::NodeStatus {
                    details: None,
                    error,
                    address,
                    id,
                },
            })
            .collect();
        Ok(Response::new(pb::StatusResponse { nodes }))
    }

    async fn add_learner(&self, req: Request<pb::AddLearnerRequest>) -> Result<Response<pb::AdminResponse>, Status> {
        let r = req.into_inner();
        let id = member_id(r.id)?;
        if !crate::node::admin::is_host_port(&r.rpc_addr) {
            return Err(Status::invalid_argument("rpc_addr must be host:port"));
        }
        self.run(AdminOp::AddLearner {
            id,
            peer: Peer {
                rpc_addr: r.rpc_addr,
                http_addr: r.http_addr,
            },
        })
        .await
    }

    async fn promote(&self, req: Request<pb::MemberRequest>) -> Result<Response<pb::AdminResponse>, Status> {
        self.run(AdminOp::Promote(member_id(req.into_inner().id)?)).await
    }

    async fn demote(&self, req: Request<pb::MemberRequest>) -> Result<Response<pb::AdminResponse>, Status> {
        self.run(AdminOp::Demote(member_id(req.into_inner().id)?)).await
    }

    async fn remove(&self, req: Request<pb::MemberRequest>) -> Result<Response<pb::AdminResponse>, Status> {
        self.run(AdminOp::Remove(member_id(req.into_inner().id)?)).await
    }

    async fn transfer_leader(
        &self,
        req: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        let to = req.into_inner().to.map(member_id).transpose()?;
        self.run(AdminOp::TransferLeader { to }).await
    }

    async fn snapshot(&self, _req: Request<pb::SnapshotRequest>) -> Result<Response<pb::SnapshotResponse>, Status> {
        let index = self.node.snapshot_now().await.map_err(to_status)?;
        Ok(Response::new(pb::SnapshotResponse { index }))
    }

    async fn hash(&self, _req: Request<pb::HashRequest>) -> Result<Response<pb::HashResponse>, Status> {
        let c = self.node.cluster_hash().await;
        let id = |s: &str| s.parse::<u64>().unwrap_or_default();
        Ok(Response::new(pb::HashResponse {
            index: c.index,
            agree: c.agree,
            disagreeing: c.disagreeing.iter().map(|s| id(s)).collect(),
            members: c
                .members
                .iter()
                .map(|m| pb::MemberHash {
                    id: id(&m.id),
                    applied_index: m.applied_index,
                    hash: m.hash,
                    error: m.error.clone().unwrap_or_default(),
                })
                .collect(),
        }))
    }

    type BackupStream = BackupStream;

    async fn backup(&self, _req: Request<pb::BackupRequest>) -> Result<Response<BackupStream>, Status> {
        let b = self.node.backup().await.map_err(to_status)?;
        let total = b.bytes.len() as u64;
        let chunks: Vec<Result<pb::BackupChunk, Status>> = b
            .bytes
            .chunks(CHUNK)
            .enumerate()
            .map(|(i, data)| {
                Ok(pb::BackupChunk {
                    data: data.to_vec(),
                    index: if i == 0 { b.index } else { 0 },
                    term: if i == 0 { b.term } else { 0 },
                    total_bytes: if i == 0 { total } else { 0 },
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }
}
