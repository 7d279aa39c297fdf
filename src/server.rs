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
        // TLS wraps the listeners: the servers behind see plain streams either way.
        let rpc_listener = match a.tls.peer {
            Some(plane) => crate::tls::accept(a.rpc_listener, plane)?,
            None => a.rpc_listener,
        };
        let http_listener = match a.tls.client {
            Some(plane) => crate::tls::accept(a.http_listener, plane)?,
            None => a.http_listener,
        };
        node.spawn(crate::grpc::serve(node.clone(), rpc_listener, a.grpc_routes, a.token));
        node.spawn(crate::http::serve(node.clone(), http_listener, a.http_routes));
        node.launch(a.background).await?;
        Ok(node)
    }
}
