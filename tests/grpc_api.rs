//! The gRPC surface on RPORT: the public `braft.v1.Kv` service (same semantics as HTTP),
//! the `GetDetails` status RPC, and server reflection.

mod common;

use std::time::Duration;

use braft::pb;
use common::{serial, Cluster};

const LIMIT: Duration = Duration::from_secs(20);

/// Put through a follower, compare-and-set, get with each consistency, delete — over gRPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_service_put_get_delete() {
    let _g = serial().await;
    let c = Cluster::start(3, |_| {}).await;
    let leader = c.wait_leader(LIMIT).await;
    let follower = (leader + 1) % 3;
    let mut kv = pb::kv_client::KvClient::new(c.grpc(follower).await);
    let put = kv
        .put(pb::PutRequest {
            key: "g".into(),
            value: b"1".to_vec(),
            prev_version: Some(0),
            prev_value: None,
        })
        .await
        .unwrap()
        .into_inner();
    let conflict = kv
        .put(pb::PutRequest {
            key: "g".into(),
            value: b"2".to_vec(),
            prev_version: Some(0),
            prev_value: None,
        })
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), tonic::Code::FailedPrecondition);
    for consistency in [pb::Consistency::Linearizable, pb::Consistency::Lease] {
        let got = kv
            .get(pb::GetRequest {
                key: "g".into(),
                consistency: consistency as i32,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(got.found);
        assert_eq!(got.value, b"1");
        assert_eq!(got.version, put.version);
    }
    let bad = kv
        .get(pb::GetRequest {
            key: String::new(),
            consistency: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let del = kv
        .delete(pb::DeleteRequest { key: "g".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(del.existed && del.version > put.version);
    let gone = kv
        .get(pb::GetRequest {
            key: "g".into(),
            consistency: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!gone.found);
    c.shutdown().await;
}

/// `GetDetails` reports the node's own state and build; reflection lists braft's services.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_details_and_reflection() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let _g = serial().await;
    let c = Cluster::start(1, |_| {}).await;
    c.wait_leader(LIMIT).await;
    let ch = c.grpc(0).await;
    let d = pb::raft_client::RaftClient::new(ch.clone())
        .get_details(pb::GetDetailsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.server_id, c.node(0).id());
    assert_eq!(d.raft_state, "Leader");
    assert_eq!(d.app_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(d.pid, std::process::id());

    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(ch)
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer {resp:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"braft.v1.Kv".to_string()), "{names:?}");
    assert!(names.contains(&"braft.v1.Raft".to_string()), "{names:?}");
    c.shutdown().await;
}

/// With DISABLE_GRPC_REFLECTION set, reflection is not served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_can_be_disabled() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let _g = serial().await;
    let c = Cluster::start(1, |cfg| cfg.grpc_reflection = false).await;
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let r = ServerReflectionClient::new(c.grpc(0).await)
        .server_reflection_info(tokio_stream::iter([req]))
        .await;
    assert_eq!(r.unwrap_err().code(), tonic::Code::Unimplemented);
    c.shutdown().await;
}

/// With BRAFT_CLUSTER_TOKEN set, the cluster works as before among its members, while a
/// peer RPC without the token, or with a wrong one, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_rpcs_require_the_cluster_token() {
    let _g = serial().await;
    let c = Cluster::start(3, |cfg| cfg.cluster_token = Some("s3cret".into())).await;
    let leader = c.wait_leader(LIMIT).await;
    // Members sign their RPCs: forwarding from a follower works.
    c.put_ok((leader + 1) % 3, "guarded", "yes").await;
    let mut raft = pb::raft_client::RaftClient::new(c.grpc(0).await);
    let no_token = raft.get_details(pb::GetDetailsRequest {}).await.unwrap_err();
    assert_eq!(no_token.code(), tonic::Code::Unauthenticated);
    let mut req = tonic::Request::new(pb::GetDetailsRequest {});
    req.metadata_mut().insert("x-braft-token", "guess".parse().unwrap());
    assert_eq!(
        raft.get_details(req).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    let mut req = tonic::Request::new(pb::GetDetailsRequest {});
    req.metadata_mut().insert("x-braft-token", "s3cret".parse().unwrap());
    assert!(raft.get_details(req).await.is_ok());
    // /raft still gathers every member's details (peers sign those calls too).
    let raft_status: serde_json::Value = c.get_json(0, "/raft").await;
    for n in raft_status["nodes"].as_array().unwrap() {
        assert!(n.get("error").is_none(), "{n}");
    }
    c.shutdown().await;
}
