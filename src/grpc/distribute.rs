//! `braft.v1.Distributor`: the work distributor over gRPC, as `/v1/distribute` over HTTP.

use tonic::{Request, Response, Status};

use super::kv::{consistency, to_status};
use crate::node::Node;
use crate::pb;

pub(super) struct DistributorGrpc {
    node: Node,
}

impl DistributorGrpc {
    pub fn new(node: Node) -> Self {
        Self { node }
    }
}

#[tonic::async_trait]
impl pb::distributor_server::Distributor for DistributorGrpc {
    async fn distribute(
        &self,
        req: Request<pb::DistributeRequest>,
    ) -> Result<Response<pb::DistributeResponse>, Status> {
        let r = req.into_inner();
        let version = self.node.distribute(&r.key, r.items).await.map_err(to_status)?;
        Ok(Response::new(pb::DistributeResponse { version }))
    }

    async fn assignment(
        &self,
        req: Request<pb::AssignmentRequest>,
    ) -> Result<Response<pb::AssignmentResponse>, Status> {
        let r = req.into_inner();
        crate::kv::validate_key(&r.key).map_err(Status::invalid_argument)?;
        let a = self
            .node
            .assignment_with(&r.key, consistency(r.consistency)?)
            .await
            .map_err(to_status)?;
        Ok(Response::new(match a {
            None => pb::AssignmentResponse::default(),
            Some(a) => pb::AssignmentResponse {
                found: true,
                version: a.version,
                items: a.items.into_iter().collect(),
            },
        }))
    }
}
