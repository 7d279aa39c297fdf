//! `braft::Client` against real nodes: the whole API over gRPC, typed errors, and
//! failover across endpoints when the node it was using dies — its watch included.

mod common;

use std::time::Duration;

use braft::kv::{KvOutput, Precondition};
use braft::watch::EventKind;
use braft::{Client, Consistency, Error};
use common::{serial, Cluster};
use futures::StreamExt;

const LIMIT: Duration = Duration::from_secs(20);

/// Put (with CAS), get, delete, list, distribute and assignment through a client that
/// knows all three nodes; bad input is a typed `BadRequest`; a dead endpoint first in
/// the list costs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_api_with_typed_errors() {
    let _g = serial().await;
    let c = Cluster::start(3, |_| {}).await;
    c.wait_leader(LIMIT).await;
    // A port nothing listens on, first.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut endpoints = vec![dead.to_string()];
    endpoints.extend(c.members.iter().map(|m| m.rpc.to_string()));
    let client = Client::connect(endpoints).await.expect("connects past a dead endpoint");

    let v1 = client.put("a/1", b"one".to_vec()).await.unwrap();
    let got = client.get("a/1", Consistency::Linearizable).await.unwrap().unwrap();
    assert_eq!((got.value.as_slice(), got.version), (&b"one"[..], v1));
    assert_eq!(
        client
            .put_if("a/1", b"two".to_vec(), Some(Precondition::Version(0)))
            .await
            .unwrap(),
        KvOutput::CompareFailed { current_version: v1 }
    );
    let KvOutput::Put { version: v2 } = client
        .put_if("a/1", b"two".to_vec(), Some(Precondition::Value(b"one".to_vec())))
        .await
        .unwrap()
    else {
        panic!("the CAS by value applies");
    };
    assert!(v2 > v1);
    client.put("a/2", b"x".to_vec()).await.unwrap();
    assert_eq!(
        client.list("a/", 10, Consistency::Lease).await.unwrap(),
        vec!["a/1", "a/2"]
    );
    assert!(matches!(
        client.delete("a/2").await.unwrap(),
        KvOutput::Deleted { existed: true, .. }
    ));
    assert_eq!(client.get("a/2", Consistency::Linearizable).await.unwrap(), None);
    assert!(matches!(client.put("", b"x".to_vec()).await, Err(Error::BadRequest(_))));

    client
        .distribute("jobs", vec!["j1".into(), "j2".into(), "j3".into()])
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let a = client.assignment("jobs").await.unwrap().expect("assigned");
        if a.items.len() == 3 && a.by_node().len() == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{a:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(client.assignment("nothing").await.unwrap(), None);
    c.shutdown().await;
}

/// The node a client uses dies: its calls move to the others, and its watch resumes on
/// another node from the next version — every change once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_and_the_watch_resumes_without_gaps() {
    let _g = serial().await;
    let mut c = Cluster::start(3, |_| {}).await;
    let leader = c.wait_leader(LIMIT).await;
    let first = (leader + 1) % 3;
    let mut endpoints = vec![c.members[first].rpc.to_string()];
    endpoints.extend((0..3).filter(|i| *i != first).map(|i| c.members[i].rpc.to_string()));
    let client = Client::connect(endpoints).await.unwrap();
    // Subscribed once this returns: the writes below are all "next changes".
    let mut watch = client.watch("w/", None).await.unwrap();
    let mut versions = Vec::new();
    for i in 0..5 {
        versions.push(client.put(&format!("w/{i}"), b"v".to_vec()).await.unwrap());
    }
    for expect in &versions[..5] {
        let e = tokio::time::timeout(LIMIT, watch.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!((e.kind, e.version), (EventKind::Put, *expect));
    }
    // Kill the node the client (and its watch) use.
    c.stop(first).await;
    for i in 5..10 {
        versions.push(client.put(&format!("w/{i}"), b"v".to_vec()).await.unwrap());
    }
    let del = client.delete("w/0").await.unwrap();
    for expect in &versions[5..] {
        let e = tokio::time::timeout(LIMIT, watch.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!((e.kind, e.version), (EventKind::Put, *expect), "resumed in order");
    }
    let e = tokio::time::timeout(LIMIT, watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let KvOutput::Deleted { version, .. } = del else {
        panic!()
    };
    assert_eq!((e.kind, e.key.as_str(), e.version), (EventKind::Delete, "w/0", version));
    assert_eq!(
        client
            .get("w/9", Consistency::Linearizable)
            .await
            .unwrap()
            .map(|v| v.version),
        Some(versions[9])
    );
    c.shutdown().await;
}
