//! The admin API over HTTP (`braft.v1.Admin` is its gRPC twin): the members
//! (`GET`, `POST /v1/cluster/members`, `POST …/{id}/promote|demote`, `DELETE …/{id}`),
//! leadership transfer (`POST /v1/cluster/leader`) and a snapshot on demand
//! (`POST /v1/cluster/snapshot`). Any node takes them; see [`crate::node::admin`].

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{read_value, ApiError, ApiResult};
use crate::node::admin::{AdminError, AdminOp};
use crate::node::Node;
use crate::raft::{NodeId, Peer};

/// `GET /v1/cluster/members`: `{"leader", "term", "members": [...]}`, from the leader's
/// view (asked of the leader when this node does not lead).
pub(super) async fn members(State(node): State<Node>) -> ApiResult<Response> {
    Ok(Json(node.members().await?).into_response())
}

/// `GET /v1/cluster/hash`: every member's state hash at a common applied index; 200
/// when they agree, 409 naming the members that disagree (or that the members never
/// lined up at one index).
pub(super) async fn hash(State(node): State<Node>) -> Response {
    let check = node.cluster_hash().await;
    let status = if check.agree {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    (status, Json(check)).into_response()
}

/// `POST /v1/cluster/snapshot`: snapshots this node's state and purges its log now;
/// answers `{"index": N}` once the snapshot covers what was applied when asked.
pub(super) async fn snapshot(State(node): State<Node>) -> ApiResult<Response> {
    let index = node.snapshot_now().await?;
    Ok(Json(serde_json::json!({ "index": index })).into_response())
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Refused(why) => ApiError::new(StatusCode::CONFLICT, "refused", why),
            AdminError::Busy(why) => ApiError::new(StatusCode::CONFLICT, "busy", why),
            AdminError::Other(e) => e.into(),
        }
    }
}

async fn run(node: &Node, op: AdminOp) -> ApiResult<Response> {
    let result = node.admin(op).await?;
    Ok(Json(serde_json::json!({ "result": result })).into_response())
}

/// A node id from a path or a body: a decimal string or a number.
fn node_id(v: &serde_json::Value) -> Result<NodeId, ApiError> {
    v.as_u64()
        .or_else(|| v.as_str()?.parse().ok())
        .filter(|id| *id != 0)
        .ok_or_else(|| ApiError::bad("bad_parameter", format!("{v} is not a node id")))
}

/// `POST /v1/cluster/members` with `{"id", "rpcAddr", "httpAddr", "role": "learner"}`.
pub(super) async fn add(State(node): State<Node>, body: Body) -> ApiResult<Response> {
    let body = read_value(&node, body).await?;
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad("bad_body", format!("not JSON: {e}")))?;
    let id = node_id(&v["id"])?;
    let rpc_addr = v["rpcAddr"]
        .as_str()
        .filter(|a| crate::node::admin::is_host_port(a))
        .ok_or_else(|| ApiError::bad("bad_parameter", "rpcAddr must be host:port"))?
        .to_string();
    let http_addr = v["httpAddr"].as_str().unwrap_or_default().to_string();
    match v["role"].as_str().unwrap_or("learner") {
        "learner" => {}
        other => {
            return Err(ApiError::bad(
                "bad_parameter",
                format!("role '{other}': a member is added as a learner, then promoted"),
            ))
        }
    }
    run(
        &node,
        AdminOp::AddLearner {
            id,
            peer: Peer { rpc_addr, http_addr },
        },
    )
    .await
}

/// `POST /v1/cluster/members/{id}/promote`.
pub(super) async fn promote(State(node): State<Node>, Path(id): Path<String>) -> ApiResult<Response> {
    run(&node, AdminOp::Promote(node_id(&id.into())?)).await
}

/// `POST /v1/cluster/members/{id}/demote`.
pub(super) async fn demote(State(node): State<Node>, Path(id): Path<String>) -> ApiResult<Response> {
    run(&node, AdminOp::Demote(node_id(&id.into())?)).await
}

/// `DELETE /v1/cluster/members/{id}`.
pub(super) async fn remove(State(node): State<Node>, Path(id): Path<String>) -> ApiResult<Response> {
    run(&node, AdminOp::Remove(node_id(&id.into())?)).await
}

/// `POST /v1/cluster/leader` with an optional `{"to": id}`: answers once the new leader
/// is known.
pub(super) async fn transfer(State(node): State<Node>, body: Body) -> ApiResult<Response> {
    let body = read_value(&node, body).await?;
    let to = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| ApiError::bad("bad_body", format!("not JSON: {e}")))?;
        match &v["to"] {
            serde_json::Value::Null => None,
            id => Some(node_id(id)?),
        }
    };
    run(&node, AdminOp::TransferLeader { to }).await
}
