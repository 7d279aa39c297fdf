//! Node details (braft's `GetDetails`) and the cluster status behind `GET /raft`, with
//! braft's camelCase field names.

use std::time::Duration;

use serde::Serialize;

use super::Node;
use crate::pb;

/// How long `/raft` waits for each peer's details.
const PEER_TIMEOUT: Duration = Duration::from_millis(800);
/// How long the application's business-data closure may take.
const BIZ_DATA_TIMEOUT: Duration = Duration::from_millis(500);

/// The application's business-data closure ([`crate::NodeBuilder::biz_data`]).
pub(crate) type BizData = std::sync::Arc<dyn Fn() -> serde_json::Value + Send + Sync + 'static>;

impl Node {
    /// The business data as JSON text, or why there is none. The closure runs on a
    /// blocking thread, so a panic or a hang costs this answer, not the node.
    async fn biz_data(&self) -> (String, String) {
        let Some(f) = self.inner.biz_data.clone() else {
            return (String::new(), String::new());
        };
        match tokio::time::timeout(BIZ_DATA_TIMEOUT, tokio::task::spawn_blocking(move || f())).await {
            Ok(Ok(v)) => (v.to_string(), String::new()),
            Ok(Err(e)) => (String::new(), format!("bizData: the closure failed: {e}")),
            Err(_) => (
                String::new(),
                format!(
                    "bizData: the closure took longer than {} ms",
                    BIZ_DATA_TIMEOUT.as_millis()
                ),
            ),
        }
    }

    /// This node's own details.
    pub(crate) async fn details(&self) -> pb::GetDetailsResponse {
        let (biz_data, biz_data_error) = self.biz_data().await;
        let st = self.status();
        let p = crate::proc_info::read(self.inner.started.into_std());
        let port = |a: &str| a.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
        pb::GetDetailsResponse {
            server_id: self.id(),
            address: self.peer().rpc_addr.clone(),
            raft_state: st.state.clone(),
            leader_id: st.leader.unwrap_or(0),
            leader_addr: st
                .leader
                .and_then(|l| st.peer(l))
                .map(|p| p.rpc_addr.clone())
                .unwrap_or_default(),
            term: st.term,
            commit_index: st.commit_index,
            applied_index: st.applied_index,
            last_log_index: st.last_log_index,
            snapshot_index: st.snapshot_index,
            start_time_ms: self.inner.started_at_ms,
            pid: p.pid,
            rss_bytes: p.rss_bytes,
            pcpu: p.pcpu,
            raft_port: port(&self.peer().rpc_addr),
            http_port: port(&self.peer().http_addr),
            app_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: env!("BRAFT_GIT_COMMIT").to_string(),
            // build.rs records Unix seconds; operators read RFC 3339.
            build_time: env!("BRAFT_BUILD_TIME")
                .parse::<i64>()
                .map(|secs| format_rfc3339(secs * 1000))
                .unwrap_or_else(|_| env!("BRAFT_BUILD_TIME").to_string()),
            discovery: self.discovery_description(),
            initialized: st.initialized,
            discovery_nodes: self.discovered_peers(),
            biz_data,
            biz_data_error,
        }
    }

    /// Every member's own details (this node's too, member or not), or why it did not
    /// answer: `(id, rpc address, details)`.
    pub(crate) async fn member_details(&self) -> Vec<(u64, String, Result<pb::GetDetailsResponse, String>)> {
        let st = self.status();
        let mut targets: Vec<(u64, String)> = st.members.iter().map(|(id, p)| (*id, p.rpc_addr.clone())).collect();
        if !st.members.contains_key(&self.id()) {
            targets.push((self.id(), self.peer().rpc_addr.clone()));
        }
        let asks = targets.into_iter().map(|(id, addr)| async move {
            let d = if id == self.id() {
                Ok(self.details().await)
            } else {
                self.peer_details(&addr).await
            };
            (id, addr, d)
        });
        futures::future::join_all(asks).await
    }

    /// The cluster as `GET /raft` shows it: this node's view plus every member's own
    /// details, asked in parallel with a short timeout.
    pub async fn cluster_status(&self) -> ClusterStatus {
        let asks = async {
            self.member_details()
                .await
                .into_iter()
                .map(|(id, address, d)| match d {
                    Ok(d) => NodeEntry::from_details(&d),
                    Err(e) => NodeEntry {
                        server_id: id.to_string(),
                        address,
                        error: Some(e),
                        ..Default::default()
                    },
                })
                .collect::<Vec<_>>()
        };
        let (nodes, autopilot) = futures::future::join(asks, self.cluster_autopilot()).await;
        let st = self.status();
        let health: std::collections::BTreeMap<u64, String> = autopilot
            .map(|r| r.servers.into_iter().map(|s| (s.id, s.health)).collect())
            .unwrap_or_default();
        let leader_addr = st
            .leader
            .and_then(|l| st.peer(l))
            .map(|p| p.rpc_addr.clone())
            .unwrap_or_default();
        ClusterStatus {
            current_leader: st.is_leader(),
            discovery: self.discovery_description(),
            leader_addr,
            leader_id: st.leader.map(|l| l.to_string()).unwrap_or_default(),
            node_num: nodes.len(),
            raft_servers: st
                .members
                .iter()
                .map(|(id, p)| RaftServer {
                    suffrage: if st.voters.contains(id) { "Voter" } else { "Nonvoter" }.to_string(),
                    id: id.to_string(),
                    address: p.rpc_addr.clone(),
                    state: if st.voters.contains(id) { "voter" } else { "learner" }.to_string(),
                    health: health.get(id).cloned().unwrap_or_else(|| "unknown".into()),
                })
                .collect(),
            nodes,
            term: st.term,
            commit_index: st.commit_index,
            applied_index: st.applied_index,
            last_log_index: st.last_log_index,
            snapshot_index: st.snapshot_index,
        }
    }

    pub(super) async fn peer_details(&self, addr: &str) -> Result<pb::GetDetailsResponse, String> {
        let mut client = self.inner.pool.raft_client(addr).map_err(|e| e.to_string())?;
        match tokio::time::timeout(PEER_TIMEOUT, client.get_details(pb::GetDetailsRequest {})).await {
            Err(_) => Err(format!("no answer within {} ms", PEER_TIMEOUT.as_millis())),
            Ok(Err(s)) => Err(s.message().to_string()),
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }
}

/// `GET /raft`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// Whether the answering node is the leader.
    pub current_leader: bool,
    pub discovery: String,
    pub leader_addr: String,
    #[serde(rename = "leaderID")]
    pub leader_id: String,
    pub node_num: usize,
    pub nodes: Vec<NodeEntry>,
    pub raft_servers: Vec<RaftServer>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    pub snapshot_index: u64,
}

/// One entry of `raftServers` (hashicorp/raft's configuration shape).
#[derive(Debug, Clone, Serialize)]
pub struct RaftServer {
    pub suffrage: String,
    pub id: String,
    pub address: String,
    /// `voter` or `learner`.
    pub state: String,
    /// `healthy`, `unhealthy` or `dead`, as the leader's autopilot sees it; `unknown`
    /// when no leader answered.
    pub health: String,
}

/// One entry of `nodes`: a member's own report, or the error reaching it.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeEntry {
    #[serde(rename = "serverID")]
    pub server_id: String,
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub raft_state: String,
    pub leader: String,
    pub start_time: String,
    pub duration: String,
    pub pid: u32,
    pub rss: u64,
    pub pcpu: f64,
    pub raft_log_sum: u64,
    pub raft_port: u32,
    pub http_port: u32,
    pub app_version: String,
    pub git_commit: String,
    pub build_time: String,
    pub discovery: String,
    /// The candidate peers this node's discovery sees.
    pub discovery_nodes: Vec<String>,
    /// The application's business data (braft's `bizData`), when it publishes any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub biz_data: Option<serde_json::Value>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    pub snapshot_index: u64,
}

impl NodeEntry {
    fn from_details(d: &pb::GetDetailsResponse) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let up = Duration::from_millis((now - d.start_time_ms).max(0) as u64);
        NodeEntry {
            server_id: d.server_id.to_string(),
            address: d.address.clone(),
            error: (!d.biz_data_error.is_empty()).then(|| d.biz_data_error.clone()),
            biz_data: serde_json::from_str(&d.biz_data).ok(),
            raft_state: d.raft_state.clone(),
            leader: d.leader_addr.clone(),
            start_time: format_rfc3339(d.start_time_ms),
            duration: format!("{:.3}s", up.as_secs_f64()),
            pid: d.pid,
            rss: d.rss_bytes,
            pcpu: (d.pcpu * 100.0).round() / 100.0,
            raft_log_sum: d.last_log_index,
            raft_port: d.raft_port,
            http_port: d.http_port,
            app_version: d.app_version.clone(),
            git_commit: d.git_commit.clone(),
            build_time: d.build_time.clone(),
            discovery: d.discovery.clone(),
            discovery_nodes: d.discovery_nodes.clone(),
            term: d.term,
            commit_index: d.commit_index,
            applied_index: d.applied_index,
            last_log_index: d.last_log_index,
            snapshot_index: d.snapshot_index,
        }
    }
}

/// Milliseconds since the epoch as an RFC 3339 UTC timestamp (civil-from-days, Howard
/// Hinnant's algorithm), to avoid a date crate for one field.
fn format_rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(super::format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::format_rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
