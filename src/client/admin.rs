//! The admin half of [`Client`]: `braft.v1.Admin` (members, membership by hand,
//! leadership, snapshots, the hash check and backups), for `braft ctl` and for tools.
//!
//! Membership operations are idempotent on the server (asking for the state that
//! already holds changes nothing), so they are retried like reads.

use futures::StreamExt;

use super::{Ch, Client, Retry};
use crate::error::Error;
use crate::node::admin::{AdminError, Member, Members};
use crate::node::Backup;
use crate::pb;
use crate::raft::NodeId;

fn admin(ch: Ch) -> pb::admin_client::AdminClient<Ch> {
    pb::admin_client::AdminClient::new(ch).max_decoding_message_size(64 << 20)
}

/// A refusal or a busy answer comes back as its own [`AdminError`].
fn admin_error(e: Error) -> AdminError {
    match e {
        Error::Service(s) if s.code == "refused" => AdminError::Refused(s.message),
        Error::Service(s) if s.code == "busy" => AdminError::Busy(s.message),
        e => AdminError::Other(e),
    }
}

impl Client {
    /// The members as the leader sees them.
    pub async fn members(&self) -> Result<Members, Error> {
        let r = self
            .call(Retry::Always, |ch| async move {
                admin(ch).members(pb::MembersRequest {}).await
            })
            .await?
            .into_inner();
        Ok(Members {
            leader: r.leader,
            term: r.term,
            members: r.members.into_iter().map(Member::from).collect(),
        })
    }

    /// Every member's own status (`/raft`'s `nodes`), or why it did not answer.
    pub async fn status(&self) -> Result<Vec<pb::NodeStatus>, Error> {
        Ok(self
            .call(Retry::Always, |ch| async move {
                admin(ch).status(pb::StatusRequest {}).await
            })
            .await?
            .into_inner()
            .nodes)
    }

    async fn admin_op<F, Fut>(&self, call: F) -> Result<String, AdminError>
    where
        F: FnMut(Ch) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<pb::AdminResponse>, tonic::Status>>,
    {
        self.call(Retry::Always, call)
            .await
            .map(|r| r.into_inner().result)
            .map_err(admin_error)
    }

    /// Adds a learner (a member that receives the log but does not vote).
    pub async fn add_learner(&self, id: NodeId, rpc_addr: &str, http_addr: &str) -> Result<String, AdminError> {
        let req = pb::AddLearnerRequest {
            id,
            rpc_addr: rpc_addr.to_string(),
            http_addr: http_addr.to_string(),
        };
        self.admin_op(|ch| {
            let req = req.clone();
            async move { admin(ch).add_learner(req).await }
        })
        .await
    }

    /// Makes a learner a voter.
    pub async fn promote(&self, id: NodeId) -> Result<String, AdminError> {
        self.admin_op(|ch| async move { admin(ch).promote(pb::MemberRequest { id }).await })
            .await
    }

    /// Makes a voter a learner (refused when the voters left would lack a quorum).
    pub async fn demote(&self, id: NodeId) -> Result<String, AdminError> {
        self.admin_op(|ch| async move { admin(ch).demote(pb::MemberRequest { id }).await })
            .await
    }

    /// Removes a member (refused when the voters left would lack a quorum).
    pub async fn remove(&self, id: NodeId) -> Result<String, AdminError> {
        self.admin_op(|ch| async move { admin(ch).remove(pb::MemberRequest { id }).await })
            .await
    }

    /// Hands leadership to `to`, or to a voter of the leader's choice; answers once the
    /// new leader is known.
    pub async fn transfer_leader(&self, to: Option<NodeId>) -> Result<String, AdminError> {
        self.call(Retry::IfNotApplied, |ch| async move {
            admin(ch).transfer_leader(pb::TransferLeaderRequest { to }).await
        })
        .await
        .map(|r| r.into_inner().result)
        .map_err(admin_error)
    }

    /// Has the node that answers take a snapshot and purge its log now; returns the
    /// snapshot's index.
    pub async fn snapshot(&self) -> Result<u64, Error> {
        Ok(self
            .call(Retry::Always, |ch| async move {
                admin(ch).snapshot(pb::SnapshotRequest {}).await
            })
            .await?
            .into_inner()
            .index)
    }

    /// Every member's state hash at a common applied index (etcd's `hashkv`).
    pub async fn hash(&self) -> Result<pb::HashResponse, Error> {
        Ok(self
            .call(
                Retry::Always,
                |ch| async move { admin(ch).hash(pb::HashRequest {}).await },
            )
            .await?
            .into_inner())
    }

    /// A consistent backup of the whole state, from the leader. `progress` is called
    /// with the bytes received so far and the total.
    pub async fn backup(&self, mut progress: impl FnMut(u64, u64)) -> Result<Backup, Error> {
        let mut stream = self
            .call(Retry::Always, |ch| async move {
                admin(ch).backup(pb::BackupRequest {}).await
            })
            .await?
            .into_inner();
        let lost = |why: String| Error::Unavailable {
            reason: format!("the backup stream broke: {why}"),
            leader: None,
        };
        let first = match stream.next().await {
            Some(Ok(c)) => c,
            Some(Err(s)) => return Err(lost(s.message().to_string())),
            None => return Err(lost("it was empty".into())),
        };
        let (index, term, total) = (first.index, first.term, first.total_bytes);
        let mut bytes = Vec::with_capacity(total as usize);
        bytes.extend_from_slice(&first.data);
        progress(bytes.len() as u64, total);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|s| lost(s.message().to_string()))?;
            bytes.extend_from_slice(&chunk.data);
            progress(bytes.len() as u64, total);
        }
        if bytes.len() as u64 != total {
            return Err(lost(format!("got {} of {total} bytes", bytes.len())));
        }
        Ok(Backup { index, term, bytes })
    }
}
