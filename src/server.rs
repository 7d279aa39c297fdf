//! The server layer: it owns serving. [`NodeBuilder::start`] builds the node (in
//! [`crate::node`]), serves it on RPORT (gRPC, [`crate::grpc`]) and HPORT (HTTP,
//! [`crate::http`]), then starts the node's background tasks. So the dependencies run
//! one way: the surfaces call the node, and the node knows nothing of them.

use crate::error::Error;
use crate::node::{Node, NodeBuilder};

impl NodeBuilder {
    /// Builds the node, serves it, and starts formation, discovery and autopilot.
    pub async fn start(self) -> Result<Node, Error> {
        let a = self.assemble(crate::grpc::builtin_service_names).await?;
        let node = a.node;
        // Each port's accept loop bounds its connections and runs the TLS handshakes;
        // the servers behind see plain streams either way.
        let max = node.config().max_connections;
        let rpc_listener = crate::transport::serve_accepted(a.rpc_listener, a.tls.peer, max)?;
        let http_listener = crate::transport::serve_accepted(a.http_listener, a.tls.client, max)?;
        // One bound on client requests in flight, whichever port they arrive on.
        let requests = std::sync::Arc::new(crate::http::limit::Limit::new(node.config().max_requests));
        node.spawn(crate::grpc::serve(
            node.clone(),
            rpc_listener,
            a.grpc_routes,
            a.token,
            requests.clone(),
        ));
        node.spawn(crate::http::serve(node.clone(), http_listener, a.http_routes, requests));
        node.launch(a.background).await?;
        Ok(node)
    }
}
