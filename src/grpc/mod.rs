//! The gRPC servers on RPORT: the peer protocol (`braft.v1.Raft`), the public key-value
//! API (`braft.v1.Kv`), the work distributor (`braft.v1.Distributor`), the admin API
//! (`braft.v1.Admin`), server reflection, and any services the user added.

mod admin;
mod distribute;
pub(crate) mod kv;
mod metrics;

use tonic::transport::server::TcpIncoming;

use std::sync::Arc;

use crate::access::Guarded;
use tonic::{Request, Response, Status};

use crate::auth::ClusterToken;
use crate::node::forward::{ForwardRequest, HelloRequest, JoinRequest};
use crate::node::Node;
use crate::pb;
use crate::raft::network::{self, MAX_MESSAGE_BYTES};
use crate::raft::wire;

/// The gRPC services braft serves itself with this configuration.
pub(crate) fn builtin_service_names(config: &crate::config::Config) -> Vec<&'static str> {
    use tonic::server::NamedService;
    let mut names = vec![
        <pb::raft_server::RaftServer<PeerService> as NamedService>::NAME,
        <pb::kv_server::KvServer<kv::KvGrpc> as NamedService>::NAME,
        <pb::distributor_server::DistributorServer<distribute::DistributorGrpc> as NamedService>::NAME,
        <pb::admin_server::AdminServer<admin::AdminGrpc> as NamedService>::NAME,
    ];
    if config.grpc_reflection {
        names.extend([
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]);
    }
    names
}

/// The public gRPC services (`Kv`, `Distributor`, `Admin`) as routes for the HTTP port,
/// so that one address serves people and programs: a client given a node's HTTP
/// address (`braft ctl`'s default, `127.0.0.1:15002`) reaches the same services as on
/// RPORT. HTTP/2 with prior knowledge is what gRPC speaks; the HTTP server accepts it
/// beside HTTP/1. The peer protocol stays on RPORT alone.
/// The public services (Kv, Distributor, Admin), each behind the token check; served
/// on RPORT and on HPORT alike. On RPORT each call also takes a request slot
/// (`requests`); on HPORT the HTTP server's layer has taken one already.
#[allow(clippy::type_complexity)]
fn public_services(
    node: &Node,
    requests: Option<Arc<crate::http::limit::Limit>>,
) -> (
    Guarded<pb::kv_server::KvServer<kv::KvGrpc>>,
    Guarded<pb::distributor_server::DistributorServer<distribute::DistributorGrpc>>,
    Guarded<pb::admin_server::AdminServer<admin::AdminGrpc>>,
) {
    let access = node.access();
    let kv = pb::kv_server::KvServer::new(kv::KvGrpc::new(node.clone()))
        .max_decoding_message_size(node.config().max_value_bytes + 64 * 1024);
    let distributor = pb::distributor_server::DistributorServer::new(distribute::DistributorGrpc::new(node.clone()));
    let admin = pb::admin_server::AdminServer::new(admin::AdminGrpc::new(node.clone()));
    (
        Guarded::new(kv, access.clone(), requests.clone()),
        Guarded::new(distributor, access.clone(), requests.clone()),
        Guarded::new(admin, access, requests),
    )
}

pub(crate) fn public_routes(node: &Node) -> axum::Router {
    let count = node
        .config()
        .metrics
        .then(|| metrics::CountLayer(node.inner.metrics.clone()));
    let (kv, distributor, admin) = public_services(node, None);
    let r = axum::Router::new();
    let r = route(r, "/braft.v1.Kv/{method}", kv, &count);
    let r = route(r, "/braft.v1.Distributor/{method}", distributor, &count);
    route(r, "/braft.v1.Admin/{method}", admin, &count)
}

/// `svc` at `path`, counted when metrics are on.
fn route<S>(r: axum::Router, path: &str, svc: S, count: &Option<metrics::CountLayer>) -> axum::Router
where
    S: tower::Service<
            axum::http::Request<axum::body::Body>,
            Response = axum::http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    use tower::Layer;
    match count {
        Some(c) => r.route_service(path, c.layer(svc)),
        None => r.route_service(path, svc),
    }
}

/// Serves until the node shuts down.
pub(crate) async fn serve(
    node: Node,
    listener: crate::transport::Listen,
    user_routes: tonic::service::Routes,
    token: ClusterToken,
    requests: Arc<crate::http::limit::Limit>,
) {
    let mut shutdown = node.shutdown_signal();
    let raft = pb::raft_server::RaftServer::new(PeerService { node: node.clone() })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // Every peer RPC must carry the cluster token (when one is configured).
    let raft = tonic::service::interceptor::InterceptedService::new(raft, token.checker());
    let (kv, distributor, admin) = public_services(&node, Some(requests));
    // Both reflection protocols: v1 for current tools, v1alpha for Python's
    // grpcio-reflection, older grpcurl, grpcui and Postman, which speak only that.
    let reflection = if node.config().grpc_reflection {
        let builder = || {
            tonic_reflection::server::Builder::configure().register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        };
        match (builder().build_v1(), builder().build_v1alpha()) {
            (Ok(v1), Ok(v1alpha)) => Some((v1, v1alpha)),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("gRPC reflection disabled: {e}");
                None
            }
        }
    } else {
        None
    };
    let mut routes = user_routes
        .add_service(raft)
        .add_service(kv)
        .add_service(distributor)
        .add_service(admin);
    if let Some((v1, v1alpha)) = reflection {
        routes = routes.add_service(v1).add_service(v1alpha);
    }
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(node.config().max_streams)
        .http2_max_header_list_size(node.config().max_header_bytes as u32)
        .layer(tower::util::option_layer(
            node.config()
                .metrics
                .then(|| metrics::CountLayer(node.inner.metrics.clone())),
        ))
        .add_routes(routes);
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

impl PeerService {
    /// Refuses a Raft RPC meant for another member id (see
    /// [`network::TARGET_HEADER`]): to the sender, the member it meant is unreachable
    /// here, as a dead one is. A request without the header (a peer of an older
    /// version) is served.
    fn addressed_to_me<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let Some(target) = req.metadata().get(network::TARGET_HEADER) else {
            return Ok(());
        };
        let me = self.node.id();
        match target.to_str().ok().and_then(|t| t.parse::<u64>().ok()) {
            Some(t) if t == me => Ok(()),
            _ => Err(Status::unavailable(format!(
                "this is member {me}, not {}: the address belongs to another member now",
                target.to_str().unwrap_or("?")
            ))),
        }
    }
}

#[tonic::async_trait]
impl pb::raft_server::Raft for PeerService {
    async fn append(&self, req: Request<pb::Opaque>) -> Result<Response<pb::Opaque>, Status> {
        self.addressed_to_me(&req)?;
        self.node.note_leader_contact();
        network::serve_append(self.node.consensus().raft(), req.into_inner())
            .await
            .map(Response::new)
    }

    async fn vote(&self, req: Request<pb::Opaque>) -> Result<Response<pb::Opaque>, Status> {
        self.addressed_to_me(&req)?;
        network::serve_vote(self.node.consensus().raft(), req.into_inner())
            .await
            .map(Response::new)
    }

    async fn pre_vote(&self, req: Request<pb::Opaque>) -> Result<Response<pb::Opaque>, Status> {
        self.addressed_to_me(&req)?;
        network::serve_pre_vote(self.node.consensus().raft(), req.into_inner())
            .await
            .map(Response::new)
    }

    async fn transfer_leader(&self, req: Request<pb::Opaque>) -> Result<Response<pb::Opaque>, Status> {
        self.addressed_to_me(&req)?;
        network::serve_transfer_leader(self.node.consensus().raft(), req.into_inner())
            .await
            .map(Response::new)
    }

    async fn install_snapshot(
        &self,
        req: Request<tonic::Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::Opaque>, Status> {
        self.addressed_to_me(&req)?;
        let into = self
            .node
            .snapshot_incoming()
            .map_err(|e| Status::unavailable(format!("cannot receive a snapshot: {e}")))?;
        network::serve_install_snapshot(self.node.consensus().raft(), req.into_inner(), 4 << 30, into)
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
            ForwardRequest::ReadIndex { lease, timeout_ms } => self.node.handle_read_index(*lease, *timeout_ms).await,
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

    async fn admin(&self, req: Request<pb::Opaque>) -> Result<Response<pb::Opaque>, Status> {
        let op: crate::node::admin::AdminOp = wire::decode(&req.into_inner().data)?;
        let reply = self.node.handle_admin(op).await;
        Ok(Response::new(pb::Opaque {
            data: wire::encode(&reply)?,
        }))
    }

    async fn state_hash(&self, _req: Request<pb::Opaque>) -> Result<Response<pb::Opaque>, Status> {
        let hash = self.node.state_hash().map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::Opaque {
            data: wire::encode(&hash)?,
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
