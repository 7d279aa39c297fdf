//! The gRPC servers on RPORT: the peer protocol (`braft.v1.Raft`), the public key-value
//! API (`braft.v1.Kv`), server reflection, and any services the user added.

use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::auth::ClusterToken;
use crate::kv::{KvCommand, KvOutput, KvQuery, KvQueryOutput, KvService, Precondition};
use crate::node::forward::{ForwardRequest, HelloRequest, JoinRequest};
use crate::node::{Consistency, Node};
use crate::pb;
use crate::raft::network::{self, MAX_MESSAGE_BYTES};
use crate::raft::wire;

/// Serves until the node shuts down.
pub(crate) async fn serve(
    node: Node,
    listener: crate::transport::Listen,
    user_routes: tonic::service::Routes,
    token: ClusterToken,
) {
    let mut shutdown = node.shutdown_signal();
    let raft = pb::raft_server::RaftServer::new(PeerService { node: node.clone() })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // Every peer RPC must carry the cluster token (when one is configured).
    let raft = tonic::service::interceptor::InterceptedService::new(raft, token.checker());
    let kv = pb::kv_server::KvServer::new(KvGrpc { node: node.clone() })
        .max_decoding_message_size(node.config().max_value_bytes + 64 * 1024);
    let reflection = node.config().grpc_reflection.then(|| {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .build_v1()
    });
    let reflection = match reflection {
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            tracing::warn!("gRPC reflection disabled: {e}");
            None
        }
        None => None,
    };
    let mut routes = user_routes.add_service(raft).add_service(kv);
    if let Some(r) = reflection {
        routes = routes.add_service(r);
    }
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    let server = tonic::transport::Server::builder().add_routes(routes);
    let result = match listener {
        // TCP_NODELAY must be set on the accepted sockets here: the builder's
        // `tcp_nodelay` applies only to listeners tonic binds itself. Without it, Raft's
        // small append acks wait out Nagle + delayed ACK (~40 ms).
        crate::transport::Listen::Tcp(l) => {
            server
                .serve_with_incoming_shutdown(TcpIncoming::from(l).with_nodelay(Some(true)), stop)
                .await
        }
        crate::transport::Listen::Custom(l) => server.serve_with_incoming_shutdown(l.incoming, stop).await,
    };
    if let Err(e) = result {
        tracing::error!("gRPC server stopped: {e}");
    }
}

struct PeerService {
    node: Node,
}

#[tonic::async_trait]
impl pb::raft_server::Raft for PeerService {
    async fn append(&self, req: Request<pb::Opaque>) -> Result<Response<pb::Opaque>, Status> {
        self.node.note_leader_contact();
        network::serve_append(self.node.consensus().raft(), req.into_inner())
            .await
            .map(Response::new)
    }

    async fn vote(&self, req: Request<pb::Opaque>) -> Result<Response<pb::Opaque>, Status> {
        network::serve_vote(self.node.consensus().raft(), req.into_inner())
            .await
            .map(Response::new)
    }

    async fn pre_vote(&self, req: Request<pb::Opaque>) -> Result<Response<pb::Opaque>, Status> {
        network::serve_pre_vote(self.node.consensus().raft(), req.into_inner())
            .await
            .map(Response::new)
    }

    async fn transfer_leader(&self, req: Request<pb::Opaque>) -> Result<Response<pb::Opaque>, Status> {
        network::serve_transfer_leader(self.node.consensus().raft(), req.into_inner())
            .await
            .map(Response::new)
    }

    async fn install_snapshot(
        &self,
        req: Request<tonic::Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::Opaque>, Status> {
        network::serve_install_snapshot(self.node.consensus().raft(), req.into_inner(), 4 << 30)
            .await
            .map(Response::new)
    }

    async fn forward(&self, req: Request<pb::Opaque>) -> Result<Response<pb::Opaque>, Status> {
        let fwd: ForwardRequest = wire::decode(&req.into_inner().data)?;
        let reply = match &fwd {
            ForwardRequest::Write { timeout_ms, .. } => {
                let timeout = std::time::Duration::from_millis((*timeout_ms).clamp(10, 3_600_000));
                self.node.handle_forward_write(&fwd, timeout).await
            }
            ForwardRequest::Read { .. } => self.node.handle_forward_read(&fwd).await,
        };
        Ok(Response::new(pb::Opaque {
            data: wire::encode(&reply)?,
        }))
    }

    async fn hello(&self, req: Request<pb::Opaque>) -> Result<Response<pb::Opaque>, Status> {
        let hello: HelloRequest = wire::decode(&req.into_inner().data)?;
        let reply = self.node.handle_hello(hello);
        Ok(Response::new(pb::Opaque {
            data: wire::encode(&reply)?,
        }))
    }

    async fn join(&self, req: Request<pb::Opaque>) -> Result<Response<pb::Opaque>, Status> {
        let join: JoinRequest = wire::decode(&req.into_inner().data)?;
        let reply = self.node.handle_join(join).await;
        Ok(Response::new(pb::Opaque {
            data: wire::encode(&reply)?,
        }))
    }

    async fn promise(&self, req: Request<pb::Opaque>) -> Result<Response<pb::Opaque>, Status> {
        let promise: crate::node::forward::PromiseRequest = wire::decode(&req.into_inner().data)?;
        let reply = self.node.handle_promise(promise.initializer);
        Ok(Response::new(pb::Opaque {
            data: wire::encode(&reply)?,
        }))
    }

    async fn leave(&self, req: Request<pb::Opaque>) -> Result<Response<pb::Opaque>, Status> {
        let leave: crate::node::forward::LeaveRequest = wire::decode(&req.into_inner().data)?;
        let reply = self.node.handle_leave(leave).await;
        Ok(Response::new(pb::Opaque {
            data: wire::encode(&reply)?,
        }))
    }

    async fn autopilot(&self, _req: Request<pb::Opaque>) -> Result<Response<pb::Opaque>, Status> {
        Ok(Response::new(pb::Opaque {
            data: wire::encode(&self.node.autopilot_report())?,
        }))
    }

    async fn get_details(
        &self,
        _req: Request<pb::GetDetailsRequest>,
    ) -> Result<Response<pb::GetDetailsResponse>, Status> {
        Ok(Response::new(self.node.details().await))
    }
}

/// `braft.v1.Kv`: the same semantics as HTTP `/v1/kv`.
struct KvGrpc {
    node: Node,
}

fn to_status(e: crate::Error) -> Status {
    use crate::Error as E;
    match e {
        E::BadRequest(m) => Status::invalid_argument(m),
        E::Service(s) => Status::failed_precondition(s.to_string()),
        E::Unavailable { .. } | E::ShuttingDown => Status::unavailable(e.to_string()),
        E::Indeterminate { .. } => Status::deadline_exceeded(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

impl KvGrpc {
    fn check_key(&self, key: &str) -> Result<(), Status> {
        crate::http::validate_key(key).map_err(Status::invalid_argument)
    }
}

#[tonic::async_trait]
impl pb::kv_server::Kv for KvGrpc {
    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let r = req.into_inner();
        self.check_key(&r.key)?;
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
            map: String::new(),
            key: r.key,
            value: r.value,
            precondition,
        };
        match self.node.write::<KvService>(cmd).await.map_err(to_status)? {
            KvOutput::Put { version } => Ok(Response::new(pb::PutResponse { version })),
            KvOutput::CompareFailed { current_version } => Err(Status::failed_precondition(format!(
                "compare failed; current version {current_version}"
            ))),
            other => Err(Status::internal(format!("unexpected output {other:?}"))),
        }
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let r = req.into_inner();
        self.check_key(&r.key)?;
        let consistency = match pb::Consistency::try_from(r.consistency) {
            Ok(pb::Consistency::Linearizable) => Consistency::Linearizable,
            Ok(pb::Consistency::Lease) => Consistency::Lease,
            Ok(pb::Consistency::Stale) => Consistency::Stale,
            Err(_) => return Err(Status::invalid_argument("unknown consistency")),
        };
        let q = KvQuery::Get {
            map: String::new(),
            key: r.key,
        };
        match self.node.read::<KvService>(q, consistency).await.map_err(to_status)? {
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
        self.check_key(&r.key)?;
        let cmd = KvCommand::Delete {
            map: String::new(),
            key: r.key,
        };
        match self.node.write::<KvService>(cmd).await.map_err(to_status)? {
            KvOutput::Deleted { version, existed } => Ok(Response::new(pb::DeleteResponse { version, existed })),
            other => Err(Status::internal(format!("unexpected output {other:?}"))),
        }
    }
}
