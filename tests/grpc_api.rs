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
            ..Default::default()
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
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), tonic::Code::FailedPrecondition);
    for consistency in [pb::Consistency::Linearizable, pb::Consistency::Lease] {
        let got = kv
            .get(pb::GetRequest {
                key: "g".into(),
                consistency: consistency as i32,
                ..Default::default()
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
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let del = kv
        .delete(pb::DeleteRequest {
            key: "g".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(del.existed && del.version > put.version);
    let gone = kv
        .get(pb::GetRequest {
            key: "g".into(),
            consistency: 0,
            ..Default::default()
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

/// `List` with a prefix and a limit, and braft's maps: a key in one map is invisible in
/// another, and the default map is the one HTTP `/v1/kv` serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_maps() {
    let _g = serial().await;
    let c = Cluster::start(1, |_| {}).await;
    c.wait_leader(LIMIT).await;
    let mut kv = pb::kv_client::KvClient::new(c.grpc(0).await);
    for (map, key) in [("", "a/1"), ("", "a/2"), ("", "b/1"), ("users", "a/9")] {
        kv.put(pb::PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            map: map.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let list = |prefix: &str, limit: u32, map: &str| pb::ListRequest {
        prefix: prefix.into(),
        limit,
        map: map.into(),
        ..Default::default()
    };
    let keys = kv.list(list("a/", 0, "")).await.unwrap().into_inner().keys;
    assert_eq!(keys, vec!["a/1", "a/2"]);
    let keys = kv.list(list("", 2, "")).await.unwrap().into_inner().keys;
    assert_eq!(keys, vec!["a/1", "a/2"]);
    let keys = kv.list(list("a/", 0, "users")).await.unwrap().into_inner().keys;
    assert_eq!(keys, vec!["a/9"]);
    let bad = kv.list(list("", 10_001, "")).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    // The map keeps keys apart on reads too; HTTP sees the default map only.
    let got = kv
        .get(pb::GetRequest {
            key: "a/9".into(),
            map: "users".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(got.found);
    assert_eq!(c.get(0, "a/9", "linearizable").await, None);
    assert_eq!(c.get(0, "a/1", "linearizable").await.as_deref(), Some("v"));
    c.shutdown().await;
}

/// `Watch` streams a prefix's puts and deletes in version order from a version, and a
/// start older than the history ends with `compacted` and the oldest version held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_changes_and_reports_compaction() {
    let _g = serial().await;
    let c = Cluster::start(1, |cfg| cfg.watch_history = 5).await;
    c.wait_leader(LIMIT).await;
    let mut kv = pb::kv_client::KvClient::new(c.grpc(0).await);
    let from = c.node(0).applied_index() + 1;
    let mut stream = kv
        .watch(pb::WatchRequest {
            prefix: "w/".into(),
            from_version: from,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let v1 = c.put_ok(0, "w/a", "1").await;
    c.put_ok(0, "other", "x").await;
    let d = c.client.delete(c.url(0, "/v1/kv/w/a")).send().await.unwrap();
    assert_eq!(d.status(), 200);
    let mut events = Vec::new();
    while events.len() < 2 {
        let msg = stream.message().await.unwrap().expect("stream open");
        events.extend(msg.events);
    }
    assert_eq!(events[0].kind, pb::event::Kind::Put as i32);
    assert_eq!(
        (events[0].key.as_str(), events[0].value.as_slice(), events[0].version),
        ("w/a", &b"1"[..], v1)
    );
    assert_eq!(events[1].kind, pb::event::Kind::Delete as i32);
    assert!(events[1].version > v1 + 1, "the put outside the prefix came between");

    for i in 0..10 {
        c.put_ok(0, &format!("w/{i}"), "v").await;
    }
    let mut old = kv
        .watch(pb::WatchRequest {
            from_version: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let msg = old.message().await.unwrap().expect("one message");
    assert!(msg.compacted);
    assert_eq!(msg.oldest_version, c.node(0).watch_oldest());
    assert!(old.message().await.unwrap().is_none(), "then the stream ends");
    c.shutdown().await;
}

/// A client nobody here wrote — Python's official grpcio with grpcio-reflection, which
/// speaks only reflection v1alpha — discovers `braft.v1.Kv` by reflection and calls it.
/// Needs scripts/py-env.sh (scripts/test.sh runs it and sets BRAFT_REQUIRE_PY=1, which
/// turns a missing environment into a failure instead of a skip).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_discovers_kv_by_reflection_v1alpha() {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python");
    if !python.exists() {
        assert!(
            std::env::var_os("BRAFT_REQUIRE_PY").is_none(),
            "BRAFT_REQUIRE_PY is set but {} is missing (run scripts/py-env.sh)",
            python.display()
        );
        eprintln!("skipping: no {} (run scripts/py-env.sh)", python.display());
        return;
    }
    let _g = serial().await;
    let c = Cluster::start(1, |_| {}).await;
    c.wait_leader(LIMIT).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/reflect_kv.py");
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .arg(c.members[0].rpc.to_string())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let services: Vec<&str> = found["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(services.contains(&"braft.v1.Kv"), "{found}");
    for m in ["Put", "Get", "Delete", "List", "Watch"] {
        assert!(
            found["kv_methods"].as_array().unwrap().iter().any(|x| x == m),
            "{m}: {found}"
        );
    }
    assert_eq!(found["found"], true);
    assert_eq!(found["value"], "from python");
    assert_eq!(found["version"], found["put_version"]);
    assert_eq!(found["keys"], serde_json::json!(["py/hello"]));
    // And the write is real: HTTP reads it back.
    assert_eq!(
        c.get(0, "py/hello", "linearizable").await.as_deref(),
        Some("from python")
    );
    c.shutdown().await;
}

/// Raft RPCs name the member they are meant for, and a member answers only its own.
/// (After a data directory is wiped, the node rejoins under a new id at the same
/// address while the leader still replicates to the old id; openraft keeps progress per
/// id, and one process answering for both made a leader panic on a "follower log
/// reversion" in tests/disk.rs.) An append meant for another id is refused as
/// unavailable, before it is even decoded; one meant for this member is decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_rpcs_meant_for_another_member_are_refused() {
    let _g = serial().await;
    let c = Cluster::start(1, |_| {}).await;
    c.wait_leader(LIMIT).await;
    let me = c.node(0).id();
    let mut raft = pb::raft_client::RaftClient::new(c.grpc(0).await);
    let append = |to: u64| {
        let mut req = tonic::Request::new(pb::Opaque {
            data: b"not an append".to_vec(),
        });
        req.metadata_mut().insert("x-braft-target", to.into());
        req
    };
    let other = raft.append(append(me.wrapping_add(1))).await.unwrap_err();
    assert_eq!(other.code(), tonic::Code::Unavailable, "{other:?}");
    assert!(other.message().contains("another member"), "{other:?}");
    let mine = raft.append(append(me)).await.unwrap_err();
    assert_ne!(mine.code(), tonic::Code::Unavailable, "decoded, not refused: {mine:?}");
    // The cluster still serves.
    c.put_ok(0, "after", "ok").await;
    c.shutdown().await;
}
