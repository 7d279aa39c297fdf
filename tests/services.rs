//! User services: a counter with a typed error, registered beside the KV service, and a
//! user's own HTTP route served on HPORT.

mod common;

use std::time::Duration;

use braft::{ApplyContext, Consistency, Error, Service, ServiceError};
use common::{serial, Cluster};
use serde::{Deserialize, Serialize};

const LIMIT: Duration = Duration::from_secs(20);

/// A counter that refuses to go below zero.
#[derive(Default)]
struct Counter(i64);

#[derive(Serialize, Deserialize)]
enum CounterCmd {
    Add(i64),
}

impl Service for Counter {
    const NAME: &'static str = "counter";
    type Command = CounterCmd;
    type Output = i64;
    type Query = ();
    type QueryOutput = i64;

    fn apply(&mut self, _ctx: ApplyContext, cmd: CounterCmd) -> Result<i64, ServiceError> {
        let CounterCmd::Add(n) = cmd;
        if self.0 + n < 0 {
            return Err(ServiceError::new("negative", format!("{} + {n} < 0", self.0)));
        }
        self.0 += n;
        Ok(self.0)
    }
    fn query(&self, _: ()) -> Result<i64, ServiceError> {
        Ok(self.0)
    }
    fn snapshot(&self) -> Result<Vec<u8>, ServiceError> {
        Ok(braft::codec::to_bytes(&self.0)?)
    }
    fn restore(&mut self, b: &[u8]) -> Result<(), ServiceError> {
        self.0 = braft::codec::from_bytes(b)?;
        Ok(())
    }
}

fn with_counter(b: braft::NodeBuilder) -> braft::NodeBuilder {
    let route = axum::Router::new().route("/hello", axum::routing::get(|| async { "hi from my route" }));
    b.service(Counter::default()).http_routes(route)
}

/// A service error raised on the leader reaches a caller on a follower with its code,
/// and the refused command changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_errors_travel_back_across_forwarding() {
    let _g = serial().await;
    let c = Cluster::start_with(3, |_| {}, with_counter).await;
    let leader = c.wait_leader(LIMIT).await;
    let follower = c.node((leader + 1) % 3);
    assert_eq!(follower.write::<Counter>(CounterCmd::Add(5)).await.unwrap(), 5);
    match follower.write::<Counter>(CounterCmd::Add(-10)).await {
        Err(Error::Service(e)) => assert_eq!(e.code, "negative"),
        other => panic!("expected the service's error, got {other:?}"),
    }
    assert_eq!(
        follower.read::<Counter>((), Consistency::Linearizable).await.unwrap(),
        5
    );
    c.shutdown().await;
}

/// Writing to a service that is not registered is refused before anything is proposed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_service_is_refused() {
    let _g = serial().await;
    let c = Cluster::start(1, |_| {}).await;
    c.wait_leader(LIMIT).await;
    let before = c.node(0).raft_status().last_log_index;
    let r = c.node(0).write::<Counter>(CounterCmd::Add(1)).await;
    assert!(
        matches!(r, Err(Error::UnknownService(ref s)) if s == "counter"),
        "{r:?}"
    );
    assert_eq!(c.node(0).raft_status().last_log_index, before, "nothing was proposed");
    c.shutdown().await;
}

/// The user's own axum routes are served on HPORT next to braft's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_http_routes_are_served() {
    let _g = serial().await;
    let c = Cluster::start_with(1, |_| {}, with_counter).await;
    let r = c.client.get(c.url(0, "/hello")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hi from my route");
    c.shutdown().await;
}

/// A restarted node restores services from its snapshot and replays the log after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_restores_snapshot_then_replays_log() {
    let _g = serial().await;
    let mut c = Cluster::start_with(1, |cfg| cfg.snapshot_logs = 10, with_counter).await;
    c.wait_leader(LIMIT).await;
    for _ in 0..25 {
        c.node(0).write::<Counter>(CounterCmd::Add(1)).await.unwrap();
    }
    let st = c.node(0).raft_status();
    assert!(st.snapshot_index > 0, "a snapshot was taken: {st:?}");
    assert!(st.last_log_index > st.snapshot_index, "some entries come after it");
    c.stop(0).await;
    c.restart(0).await;
    c.wait_leader(LIMIT).await;
    assert_eq!(
        c.node(0).read::<Counter>((), Consistency::Linearizable).await.unwrap(),
        25
    );
    c.shutdown().await;
}

/// The user's own tonic service is served on RPORT next to braft's (here a reflection
/// service stands in for "your service"; braft's own reflection is off so the two do not
/// claim the same route).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_grpc_services_are_served() {
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;

    fn with_user_grpc(b: braft::NodeBuilder) -> braft::NodeBuilder {
        let svc = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(braft::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .unwrap();
        b.grpc_service(svc)
    }
    let _g = serial().await;
    let c = Cluster::start_with(1, |cfg| cfg.grpc_reflection = false, with_user_grpc).await;
    let ch = c.grpc(0).await;
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(ch)
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .expect("the user's service answers")
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    assert!(matches!(
        resp.message_response,
        Some(MessageResponse::ListServicesResponse(_))
    ));
    c.shutdown().await;
}
