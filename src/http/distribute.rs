//! The work distributor over HTTP: `PUT`/`GET /v1/distribute/{key}`, and braft's
//! `GET /distribute/{key}`.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{check_key, read_value, ApiError, ApiResult};
use crate::node::Node;

/// `PUT /v1/distribute/{key}` with `{"items": ["a", …]}`: `200 {"version": N}`.
pub(super) async fn put(State(node): State<Node>, Path(key): Path<String>, body: Body) -> ApiResult<Response> {
    check_key(&key)?;
    let body = read_value(&node, body).await?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Items {
        items: Vec<String>,
    }
    let Items { items } = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad("bad_body", format!("expected {{\"items\": [\"…\"]}}: {e}")))?;
    crate::distribute::validate_items(&items).map_err(|e| ApiError::bad("bad_items", e))?;
    let version = node.distribute(&key, items).await?;
    Ok(Json(json!({ "version": version })).into_response())
}

/// The assignment under `key`, or `missing` (404 here, 410 for braft) when none.
async fn assignment(node: &Node, key: &str, missing: StatusCode) -> ApiResult<crate::distribute::Assignment> {
    check_key(key)?;
    node.assignment(key)
        .await?
        .ok_or_else(|| ApiError::new(missing, "not_found", format!("nothing is distributed under '{key}'")))
}

/// `GET /v1/distribute/{key}`: `{"key", "version", "nodes": {"<node id>": [items]}}`.
pub(super) async fn get(State(node): State<Node>, Path(key): Path<String>) -> ApiResult<Response> {
    let a = assignment(&node, &key, StatusCode::NOT_FOUND).await?;
    let nodes: BTreeMap<String, Vec<String>> = a.by_node().into_iter().map(|(n, i)| (n.to_string(), i)).collect();
    Ok(Json(json!({ "key": key, "version": a.version, "nodes": nodes })).into_response())
}

/// braft's `GET /distribute/{key}`: `{"items": [{"id", "nodeId"}]}`, or 410 when the key
/// is missing, as braft answers.
pub(super) async fn compat_get(State(node): State<Node>, Path(key): Path<String>) -> ApiResult<Response> {
    let a = assignment(&node, &key, StatusCode::GONE).await?;
    let items: Vec<serde_json::Value> = a
        .items
        .iter()
        .map(|(id, n)| json!({"id": id, "nodeId": n.to_string()}))
        .collect();
    Ok(Json(json!({ "items": items })).into_response())
}
