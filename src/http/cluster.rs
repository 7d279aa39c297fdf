//! The admin API's read side and snapshot trigger (the rest of `braft.v1.Admin` is to
//! come): `GET /v1/cluster/members`, `POST /v1/cluster/snapshot`, and the leader's
//! autopilot report at `GET /v1/cluster/autopilot`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::ApiResult;
use crate::node::Node;

/// One member, as `GET /v1/cluster/members` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Member {
    id: String,
    rpc_addr: String,
    http_addr: String,
    /// `voter` or `learner`.
    suffrage: String,
    /// `healthy`, `unhealthy` or `dead`, as the leader's autopilot judges.
    health: String,
    /// The last log index the leader knows this member holds.
    match_index: u64,
    /// Entries behind the leader.
    lag: u64,
    /// Milliseconds since the member last acknowledged the leader.
    last_contact_ms: u64,
}

/// `GET /v1/cluster/members`: `{"leader", "term", "members": [...]}`, from the leader's
/// view (asked of the leader when this node does not lead).
pub(super) async fn members(State(node): State<Node>) -> ApiResult<Response> {
    let report = node.cluster_autopilot().await?;
    let st = node.raft_status();
    let leader_last = st.last_log_index.max(st.commit_index);
    let members: Vec<Member> = report
        .servers
        .iter()
        .map(|s| {
            let peer = st.peer(s.id);
            Member {
                id: s.id.to_string(),
                rpc_addr: s.address.clone(),
                http_addr: peer.map(|p| p.http_addr.clone()).unwrap_or_default(),
                suffrage: s.state.clone(),
                health: s.health.clone(),
                match_index: leader_last.saturating_sub(s.trailing_logs),
                lag: s.trailing_logs,
                last_contact_ms: s.silent_ms,
            }
        })
        .collect();
    Ok(Json(serde_json::json!({
        "leader": report.reporter.to_string(),
        "term": st.term,
        "members": members,
    }))
    .into_response())
}

/// `POST /v1/cluster/snapshot`: snapshots this node's state and purges its log now;
/// answers `{"index": N}` once the snapshot covers what was applied when asked.
pub(super) async fn snapshot(State(node): State<Node>) -> ApiResult<Response> {
    let index = node.snapshot_now().await?;
    Ok(Json(serde_json::json!({ "index": index })).into_response())
}
