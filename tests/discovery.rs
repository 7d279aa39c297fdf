//! Discovery methods against sources the tests control: a fake Kubernetes API server,
//! a tiny DNS responder on loopback, and mDNS between nodes of this process.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use braft::config::Discovery as Method;
use braft::discovery::{Discovery, DiscoveryError, DnsDiscovery, K8sDiscovery, K8sOptions};
use common::{serial, test_config, Cluster};
use serde_json::{json, Value};

const TOKEN: &str = "sa-token-1234";

/// A pod as the API server lists it.
fn pod(name: &str, ip: &str, phase: &str, ready: bool, port_name: &str) -> Value {
    pod_at(name, ip, phase, ready, port_name, 16000)
}

/// [`pod`], with its peer port.
fn pod_at(name: &str, ip: &str, phase: &str, ready: bool, port_name: &str, port: u16) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "prod", "labels": {"app": "braft"}},
        "spec": {"containers": [{
            "name": "braft",
            "image": "braft:latest",
            "ports": [
                {"name": port_name, "containerPort": port, "protocol": "TCP"},
                {"name": "http", "containerPort": 16002, "protocol": "TCP"}
            ]
        }]},
        "status": {
            "phase": phase,
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": if ready { "True" } else { "False" }},
                {"type": "ContainersReady", "status": if ready { "True" } else { "False" }},
                {"type": "PodScheduled", "status": "True"}
            ]
        }
    })
}

/// One request to the fake API server: the namespace and the label selector.
type Request = (String, Option<String>);

#[derive(Clone, Default)]
struct Seen {
    paths: Arc<Mutex<Vec<Request>>>,
}

/// A fake API server over plain HTTP.
async fn fake_api() -> (SocketAddr, Seen) {
    let (app, seen) = fake_api_app();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (addr, seen)
}

/// A fake API server: `GET /api/v1/namespaces/{ns}/pods` with bearer-token checking.
fn fake_api_app() -> (axum::Router, Seen) {
    async fn pods(
        State(seen): State<Seen>,
        axum::extract::Path(ns): axum::extract::Path<String>,
        Query(q): Query<std::collections::HashMap<String, String>>,
        headers: HeaderMap,
    ) -> axum::response::Response {
        seen.paths
            .lock()
            .unwrap()
            .push((ns.clone(), q.get("labelSelector").cloned()));
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {TOKEN}")) {
            let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "Unauthorized", "reason": "Unauthorized", "code": 401});
            return (StatusCode::UNAUTHORIZED, Json(status)).into_response();
        }
        Json(json!({
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": "12345"},
            "items": [
                pod("braft-0", "10.1.0.10", "Running", true, "raft"),
                pod("braft-1", "10.1.0.11", "Running", true, "raft"),
                pod("braft-2", "10.1.0.12", "Running", false, "raft"),  // not ready
                pod("braft-3", "", "Pending", false, "raft"),           // not scheduled yet
                pod("braft-4", "10.1.0.14", "Succeeded", true, "raft"), // finished
                pod("braft-5", "10.1.0.15", "Running", true, "grpc"),   // no port named raft
            ]
        }))
        .into_response()
    }
    let seen = Seen::default();
    let app = axum::Router::new()
        .route("/api/v1/namespaces/{ns}/pods", axum::routing::get(pods))
        .with_state(seen.clone());
    (app, seen)
}

/// TLS in front of axum, as the in-cluster API server speaks it.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((s, a)) = self.tcp.accept().await else {
                continue;
            };
            // A client that rejects our certificate fails the handshake: next.
            if let Ok(tls) = self.acceptor.accept(s).await {
                return (tls, a);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A fake API server over HTTPS with a fresh self-signed certificate for 127.0.0.1;
/// returns its address and the certificate's PEM (the "cluster CA").
async fn fake_api_tls() -> (SocketAddr, String) {
    use tokio_rustls::rustls;
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    };
    let (app, _) = fake_api_app();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, ck.cert.pem())
}

fn k8s_opts(api: String, dir: &std::path::Path, token: &str) -> K8sOptions {
    std::fs::write(dir.join("token"), token).unwrap();
    std::fs::write(dir.join("namespace"), "prod\n").unwrap();
    K8sOptions {
        api_url: api,
        namespace: None,
        labels: "app=braft".into(),
        port_name: Some("raft".into()),
        default_port: 15000,
        token_path: dir.join("token"),
        ca_path: dir.join("ca.crt"),
        namespace_path: dir.join("namespace"),
        timeout: Duration::from_millis(1500),
        initial_sleep: Duration::ZERO,
    }
}

/// Only running, ready pods with the named port are peers; the namespace comes from the
/// service account and the label selector reaches the API server.
#[tokio::test]
async fn k8s_lists_running_ready_pods_with_the_named_port() {
    let (addr, seen) = fake_api().await;
    let dir = tempfile::tempdir().unwrap();
    let d = K8sDiscovery::new(k8s_opts(format!("http://{addr}"), dir.path(), TOKEN)).unwrap();
    assert_eq!(d.describe(), "k8s://ns=prod/labels=app=braft/portName=raft");
    let peers = d.peers().await.unwrap();
    assert_eq!(
        peers,
        vec!["10.1.0.10:16000".to_string(), "10.1.0.11:16000".to_string()]
    );
    assert_eq!(
        seen.paths.lock().unwrap().clone(),
        vec![("prod".to_string(), Some("app=braft".to_string()))]
    );
    // Without a port name, every running ready pod is a peer on RPORT.
    let mut opts = k8s_opts(format!("http://{addr}"), dir.path(), TOKEN);
    opts.port_name = None;
    let peers = K8sDiscovery::new(opts).unwrap().peers().await.unwrap();
    assert_eq!(peers, vec!["10.1.0.10:15000", "10.1.0.11:15000", "10.1.0.15:15000"]);
}

/// A token the API server refuses is a clear error that names the token.
#[tokio::test]
async fn k8s_wrong_token_is_a_clear_error() {
    let (addr, _) = fake_api().await;
    let dir = tempfile::tempdir().unwrap();
    let d = K8sDiscovery::new(k8s_opts(format!("http://{addr}"), dir.path(), "stale-token")).unwrap();
    match d.peers().await {
        Err(DiscoveryError::Refused(msg)) => {
            assert!(msg.contains("401"), "{msg}");
            assert!(msg.contains("token was refused"), "{msg}");
            assert!(msg.contains("Unauthorized"), "{msg}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// An API server that accepts connections but never answers gives a timeout error
/// after the configured limit, not a hang.
#[tokio::test]
async fn k8s_silent_api_server_times_out() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s); // read nothing, answer nothing
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let d = K8sDiscovery::new(k8s_opts(format!("http://{addr}"), dir.path(), TOKEN)).unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), d.peers())
        .await
        .expect("discovery returned instead of hanging");
    match r {
        Err(DiscoveryError::Unavailable(msg)) => assert!(msg.contains("no answer within 1500 ms"), "{msg}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// The in-cluster way: HTTPS verified against the service account's CA file. A server
/// whose certificate the CA did not sign is refused.
#[tokio::test]
async fn k8s_over_https_trusts_the_cluster_ca_only() {
    let (addr, ca) = fake_api_tls().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), &ca).unwrap();
    let d = K8sDiscovery::new(k8s_opts(format!("https://{addr}"), dir.path(), TOKEN)).unwrap();
    assert_eq!(d.peers().await.unwrap(), vec!["10.1.0.10:16000", "10.1.0.11:16000"]);

    // Another server's certificate, not signed by this CA: no peers, a clear error.
    let (other, _) = fake_api_tls().await;
    let d = K8sDiscovery::new(k8s_opts(format!("https://{other}"), dir.path(), TOKEN)).unwrap();
    match d.peers().await {
        Err(DiscoveryError::Unavailable(msg)) => assert!(msg.to_lowercase().contains("certificate"), "{msg}"),
        other => panic!("expected a certificate error, got {other:?}"),
    }
}

/// HTTPS needs the cluster CA: a missing one is a setup error naming the path.
#[tokio::test]
async fn k8s_https_without_a_ca_is_a_setup_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = K8sDiscovery::new(k8s_opts("https://127.0.0.1:6443".into(), dir.path(), TOKEN))
        .err()
        .expect("no CA file");
    let DiscoveryError::Setup(msg) = err else {
        panic!("expected a setup error, got {err:?}")
    };
    assert!(msg.contains("ca.crt"), "{msg}");
}

/// A minimal authoritative DNS responder: answers A queries for one name with the
/// addresses in `records` (TTL 0), NXDOMAIN for anything else.
async fn dns_responder(name: &'static str, records: Arc<Mutex<Vec<Ipv4Addr>>>) -> SocketAddr {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::{rdata::A, Name, RData, Record, RecordType};
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut reply = Message::new();
            reply
                .set_id(query.id())
                .set_message_type(MessageType::Response)
                .set_op_code(query.op_code())
                .set_recursion_desired(query.recursion_desired())
                .set_recursion_available(true)
                .set_authoritative(true);
            reply.add_queries(query.queries().to_vec());
            let want = Name::from_ascii(name).unwrap();
            match query.queries().first() {
                Some(q) if q.name() == &want => {
                    if q.query_type() == RecordType::A {
                        for ip in records.lock().unwrap().iter() {
                            reply.add_answer(Record::from_rdata(want.clone(), 0, RData::A(A(*ip))));
                        }
                    }
                }
                _ => {
                    reply.set_response_code(ResponseCode::NXDomain);
                }
            }
            let _ = sock.send_to(&reply.to_vec().unwrap(), from).await;
        }
    });
    addr
}

/// DNS discovery follows the records as they change, and an unknown name is an empty
/// list (a headless service with no pods yet), not an error.
#[tokio::test]
async fn dns_re_resolves_the_records_it_is_given() {
    let records = Arc::new(Mutex::new(vec![Ipv4Addr::new(10, 2, 0, 1), Ipv4Addr::new(10, 2, 0, 2)]));
    let server = dns_responder("braft.test.", records.clone()).await;
    let d = DnsDiscovery::new("braft.test.".into(), 16000, Some(server)).unwrap();
    assert_eq!(d.describe(), "dns://braft.test.:16000");
    assert_eq!(d.peers().await.unwrap(), vec!["10.2.0.1:16000", "10.2.0.2:16000"]);

    // A pod goes, another comes: the next resolution shows it (TTL 0: no caching).
    *records.lock().unwrap() = vec![Ipv4Addr::new(10, 2, 0, 2), Ipv4Addr::new(10, 2, 0, 3)];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let peers = d.peers().await.unwrap();
        if peers == ["10.2.0.2:16000", "10.2.0.3:16000"] {
            break;
        }
        assert!(Instant::now() < deadline, "records never refreshed: {peers:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let missing = DnsDiscovery::new("nobody.test.".into(), 16000, Some(server)).unwrap();
    assert_eq!(missing.peers().await.unwrap(), Vec::<String>::new());
}

/// A DNS server that is not there is an error, within the lookup timeout.
#[tokio::test]
async fn dns_unreachable_server_is_an_error() {
    // A bound UDP socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let d = DnsDiscovery::new("braft.test.".into(), 16000, Some(silent.local_addr().unwrap())).unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), d.peers())
        .await
        .expect("no hang");
    assert!(matches!(r, Err(DiscoveryError::Unavailable(_))), "{r:?}");
}

fn mdns_test_config(c: &mut braft::Config) {
    test_config(c);
    // A service type of this test run alone, so that parallel runs never meet.
    c.discovery = Method::Mdns(Some(format!("_bt{}._tcp", std::process::id() % 1_000_000)));
    c.bootstrap_expect = None; // the default for mDNS: 3
}

/// Certificates for the mDNS-with-TLS test (a `Cluster` tweak is a plain `fn`).
static PEER_CERTS: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();

fn mdns_peer_tls_config(c: &mut braft::Config) {
    test_config(c);
    c.discovery = Method::Mdns(Some(format!("_bs{}._tcp", std::process::id() % 1_000_000)));
    c.bootstrap_expect = None;
    let certs = PEER_CERTS.get().expect("certificates made").path();
    c.peer_cert_file = Some(certs.join("node-1.pem"));
    c.peer_key_file = Some(certs.join("node-1-key.pem"));
    c.peer_ca_file = Some(certs.join("ca.pem"));
}

/// mDNS with peer TLS on: nodes announced and found by mDNS form one cluster over
/// mutual TLS (each peer checked against the CA, whatever address it was found at).
#[tokio::test]
async fn three_nodes_form_one_cluster_by_mdns_over_peer_tls() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = common::run_braft(
        &["cert", "init", "--dir", dir.path().to_str().unwrap(), "--nodes", "1"],
        &[],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    PEER_CERTS.set(dir).unwrap();
    let c = Cluster::start(3, mdns_peer_tls_config).await;
    let leader = c.wait_leader(Duration::from_secs(30)).await;
    assert_eq!(c.node(leader).raft_status().voters.len(), 3);
    c.put_ok(0, "found", "by-mdns-over-tls").await;
    assert_eq!(
        c.get(2, "found", "linearizable").await.as_deref(),
        Some("by-mdns-over-tls")
    );
    // The peer port speaks TLS only: a plaintext gRPC client gets nowhere.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", c.members[0].rpc))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await;
    if let Ok(ch) = plain {
        let mut peer = braft::pb::raft_client::RaftClient::new(ch);
        assert!(peer.get_details(braft::pb::GetDetailsRequest {}).await.is_err());
    }
    c.shutdown().await;
}

/// Three nodes that know nothing of each other find each other by mDNS on loopback and
/// form exactly one cluster; `/raft` shows the method and each node's discovered peers.
#[tokio::test]
async fn three_nodes_form_one_cluster_by_mdns_alone() {
    let _g = serial().await;
    let c = Cluster::start(3, mdns_test_config).await;
    let leader = c.wait_leader(Duration::from_secs(30)).await;
    let st = c.node(leader).raft_status();
    assert_eq!(st.voters.len(), 3, "one cluster of all three: {st:?}");
    for i in 0..3 {
        assert_eq!(c.node(i).raft_status().voters, st.voters);
    }
    c.put_ok(0, "found", "by-mdns").await;
    assert_eq!(c.get(2, "found", "linearizable").await.as_deref(), Some("by-mdns"));

    let raft: Value = c.get_json(1, "/raft").await;
    let svc = format!("_bt{}._tcp", std::process::id() % 1_000_000);
    assert_eq!(raft["discovery"], format!("mdns://{svc}"));
    for n in raft["nodes"].as_array().unwrap() {
        let seen: Vec<&str> = n["discoveryNodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for m in &c.members {
            assert!(
                seen.contains(&m.rpc.to_string().as_str()),
                "{} missing from {seen:?}",
                m.rpc
            );
        }
    }
    c.shutdown().await;
}

/// braft's static-list habits: a host-less entry (`:PORT`) means this node's own address,
/// so a node listed that way finds itself and forms; and a list that names the Go
/// braft's discovery port (RPORT+1) of a peer that answers one port lower earns a
/// warning that says so, instead of a silent wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostless_entries_and_the_go_braft_port_hint() {
    let _g = serial().await;
    let tmp = tempfile::tempdir().unwrap();
    let start = |dir: std::path::PathBuf, list: Vec<String>, r: tokio::net::TcpListener, h| {
        braft::Node::builder()
            .config(braft::Config::default())
            .configure(move |c| {
                test_config(c);
                c.ip = Some(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST));
                c.discovery = Method::parse(&list.join(",")).unwrap();
                c.data_dir = Some(dir);
            })
            .service(braft::KvService::default())
            .rpc_listener(r)
            .http_listener(h)
            .start()
    };
    let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
    // A: listed host-less, as braft's `BDI=:15000` — it finds itself and leads.
    // Hold A's RPORT+1 while the other listeners are bound, so that nothing answers there.
    let (ra, guard) = loop {
        let r = bind().await.unwrap();
        let next = r.local_addr().unwrap().port() + 1;
        if let Ok(g) = tokio::net::TcpListener::bind(("127.0.0.1", next)).await {
            break (r, g);
        }
    };
    let ha = bind().await.unwrap();
    let (rb, hb) = (bind().await.unwrap(), bind().await.unwrap());
    drop(guard);
    let a_port = ra.local_addr().unwrap().port();
    let a = start(tmp.path().join("a"), vec![format!(":{a_port}")], ra, ha)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !a.is_leader() {
        assert!(Instant::now() < deadline, "a node listed host-less formed its cluster");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.config().resolved_static_peers(), vec![format!("127.0.0.1:{a_port}")]);

    // B lists A's RPORT+1, as a Go braft user would.
    let wrong = format!("127.0.0.1:{}", a_port + 1);
    let b_port = rb.local_addr().unwrap().port();
    let b = start(tmp.path().join("b"), vec![wrong.clone(), format!(":{b_port}")], rb, hb)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let hint = loop {
        if let Some(w) = b.discovery_warnings().into_iter().next() {
            break w;
        }
        assert!(Instant::now() < deadline, "no hint about the port");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        hint.contains(&format!("did you mean 127.0.0.1:{a_port}?")) && hint.contains(&wrong),
        "{hint}"
    );
    // Said once, however often formation probes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(b.discovery_warnings().len(), 1);
    b.shutdown().await;
    a.shutdown().await;
}

/// Discovery with TLS on: three nodes that find each other through the Kubernetes API
/// (their pods listed with IPs and raft ports, as on a cluster) form a cluster over
/// mutual TLS and serve HTTPS. Peers are checked against the CA, not against the
/// addresses discovery found, so discovered addresses need no names in certificates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k8s_discovered_nodes_form_a_cluster_over_mutual_tls() {
    let _g = serial().await;
    common::init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    let (code, out, err) = common::run_braft(&["cert", "init", "--dir", certs.to_str().unwrap(), "--nodes", "3"], &[]);
    assert_eq!(code, Some(0), "{out}{err}");

    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push((
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        ));
    }
    let items: Vec<Value> = listeners
        .iter()
        .enumerate()
        .map(|(i, (r, _))| {
            let port = r.local_addr().unwrap().port();
            pod_at(&format!("braft-{i}"), "127.0.0.1", "Running", true, "raft", port)
        })
        .collect();
    let app = axum::Router::new().route(
        "/api/v1/namespaces/{ns}/pods",
        axum::routing::get(move || {
            let items = items.clone();
            async move { Json(json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})) }
        }),
    );
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = api.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(api, app).await.unwrap() });

    let mut nodes = Vec::new();
    let mut urls = Vec::new();
    for (i, (r, h)) in listeners.into_iter().enumerate() {
        let sa = tmp.path().join(format!("sa{i}"));
        std::fs::create_dir_all(&sa).unwrap();
        let k8s = K8sDiscovery::new(k8s_opts(format!("http://{api_addr}"), &sa, TOKEN)).unwrap();
        let (dir, certs) = (tmp.path().join(format!("node{i}")), certs.clone());
        urls.push(format!("https://localhost:{}", h.local_addr().unwrap().port()));
        let node = braft::Node::builder()
            .config(braft::Config::default())
            .configure(move |c| {
                test_config(c);
                c.data_dir = Some(dir);
                c.cert_file = Some(certs.join(format!("node-{}.pem", i + 1)));
                c.key_file = Some(certs.join(format!("node-{}-key.pem", i + 1)));
                c.peer_ca_file = Some(certs.join("ca.pem"));
            })
            .service(braft::KvService::default())
            .discovery(k8s)
            .rpc_listener(r)
            .http_listener(h)
            .start();
        nodes.push(node);
    }
    let nodes: Vec<braft::Node> = futures::future::join_all(nodes)
        .await
        .into_iter()
        .map(|n| n.expect("node starts"))
        .collect();
    assert!(nodes[0].discovery_description().starts_with("k8s://"));

    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.join("ca.pem")).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut written = false;
    while !written {
        written = https
            .put(format!("{}/v1/kv/found", urls[0]))
            .body("over-tls")
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        assert!(
            Instant::now() < deadline,
            "no cluster formed over TLS with k8s discovery"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for url in &urls {
        let r = https.get(format!("{url}/v1/kv/found")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "over-tls");
        let v: Value = https
            .get(format!("{url}/v1/cluster/members"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["members"].as_array().map(|m| m.len()), Some(3), "{v}");
    }
    for n in nodes {
        n.shutdown().await;
    }
}
