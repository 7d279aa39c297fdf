//! The cluster token: a shared secret (`BRAFT_CLUSTER_TOKEN`) that peers send with every
//! peer RPC (`braft.v1.Raft`: replication, votes, snapshots, forwarding, formation, join)
//! and check on receipt. Without it, anyone who can reach RPORT could join the cluster or
//! inject Raft messages. Unset, peer RPCs are open (as in a trusted network).
//!
//! The token rides in the `x-braft-token` metadata of each gRPC request. It is a shared
//! secret, not encryption: on untrusted networks, run braft behind TLS as well.

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

const HEADER: &str = "x-braft-token";

/// Adds the token to outgoing peer requests and checks it on incoming ones.
#[derive(Clone, Default)]
pub struct ClusterToken {
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl ClusterToken {
    /// `None` or empty: no token.
    pub fn new(token: Option<&str>) -> Result<Self, String> {
        let token = match token.filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => Some(
                t.parse()
                    .map_err(|_| "must be printable ASCII (it travels as gRPC metadata)".to_string())?,
            ),
        };
        Ok(Self { token })
    }

    /// The server-side check, as an interceptor.
    pub fn checker(&self) -> impl Interceptor + Clone {
        let expected = self.token.clone();
        move |req: Request<()>| -> Result<Request<()>, Status> {
            let Some(expected) = &expected else {
                return Ok(req);
            };
            match req.metadata().get(HEADER) {
                Some(got) if constant_time_eq(got.as_bytes(), expected.as_bytes()) => Ok(req),
                Some(_) => Err(Status::unauthenticated("wrong cluster token")),
                None => Err(Status::unauthenticated("missing cluster token (BRAFT_CLUSTER_TOKEN)")),
            }
        }
    }
}

/// The client side: attach the token.
impl Interceptor for ClusterToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(t) = &self.token {
            req.metadata_mut().insert(HEADER, t.clone());
        }
        Ok(req)
    }
}

/// Compares without an early exit, so timing does not reveal how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request carrying the right token passes; a wrong or missing one is refused; with
    /// no token configured everything passes.
    #[test]
    fn tokens_are_checked() {
        let mut client = ClusterToken::new(Some("s3cret")).unwrap();
        let mut check = client.checker();
        let signed = client.call(Request::new(())).unwrap();
        assert!(check.call(signed).is_ok());
        assert_eq!(
            check.call(Request::new(())).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let mut wrong = ClusterToken::new(Some("guess")).unwrap();
        let forged = wrong.call(Request::new(())).unwrap();
        assert_eq!(check.call(forged).unwrap_err().code(), tonic::Code::Unauthenticated);
        let mut open = ClusterToken::new(None).unwrap().checker();
        assert!(open.call(Request::new(())).is_ok());
        assert!(ClusterToken::new(Some("bad\nvalue")).is_err());
    }
}
