//! TLS on the real binary: certificates from `braft cert init`, HTTPS for clients, mutual
//! TLS between peers, client certificates, rotation without a restart, and the exit code
//! 2 for every file that cannot be used.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::lab::Lab;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

const LIMIT: Duration = Duration::from_secs(30);

/// Runs `braft <args>` and returns (exit code, stdout, stderr).
fn braft(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    common::run_braft(args, env)
}

/// `braft cert init` into `dir` (127.0.0.1 and localhost, three nodes).
fn cert_init(dir: &Path) {
    let (code, out, err) = braft(&["cert", "init", "--dir", dir.to_str().unwrap(), "--nodes", "3"], &[]);
    assert_eq!(code, Some(0), "{out}{err}");
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_string()
}

/// The static discovery list of hosts 1..=n.
fn discovery(lab: &Lab, n: usize) -> String {
    format!(
        "static:{}",
        (1..=n).map(|i| lab.rpc_addr(i)).collect::<Vec<_>>().join(",")
    )
}

/// Node `i`'s TLS settings: its own certificate for both planes, peers checked against
/// `ca`, and client certificates required when `client_ca`.
fn tls_env(certs: &Path, name: &str, ca: &Path, client_ca: bool) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("BRAFT_CERT_FILE", path(certs, &format!("{name}.pem"))),
        ("BRAFT_KEY_FILE", path(certs, &format!("{name}-key.pem"))),
        ("BRAFT_PEER_CA_FILE", ca.to_str().unwrap().to_string()),
    ];
    if client_ca {
        env.push(("BRAFT_CLIENT_CA_FILE", ca.to_str().unwrap().to_string()));
    }
    env
}

/// An HTTPS client trusting `ca`, with the client certificate `identity` (cert, key).
fn https(ca: &Path, identity: Option<(&Path, &Path)>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(5));
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(cert).unwrap();
        pem.extend(std::fs::read(key).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

fn https_url(lab: &Lab, i: usize, p: &str) -> String {
    format!("https://{}:{}{p}", lab.ip(i), lab.hport(i))
}

async fn raft_json(lab: &Lab, i: usize, client: &reqwest::Client) -> serde_json::Value {
    client
        .get(https_url(lab, i, "/raft"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn log_of(lab: &Lab, i: usize) -> String {
    std::fs::read_to_string(lab.dir.path().join(format!("n{i}.log"))).unwrap_or_default()
}

/// A cluster formed over mutual TLS serves HTTPS, and refuses plaintext on both ports.
/// `braft ctl` works with the CA and fails without it. A member restarted with a
/// certificate from another CA is cut off: it cannot vote or be replicated to, and
/// the others' term does not move; a brand-new node with such a certificate cannot join.
/// Given its right certificate back, the member catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_refuses_plaintext_and_peers_from_another_ca() {
    let mut lab = Lab::with_mode(4, false);
    let certs = lab.dir.path().join("certs");
    let evil = lab.dir.path().join("evil");
    cert_init(&certs);
    cert_init(&evil);
    let ca = certs.join("ca.pem");
    let disc = discovery(&lab, 3);
    for i in 1..=3 {
        let mut env = tls_env(&certs, &format!("node-{i}"), &ca, false);
        env.push(("BRAFT_DISCOVERY", disc.clone()));
        lab.start(i, &env);
    }
    let client = https(&ca, None);
    lab.wait_ready(&client, &[1, 2, 3], true).await;

    // HTTPS writes on one node and reads on another: replication ran over mutual TLS.
    let r = client
        .put(https_url(&lab, 1, "/v1/kv/greeting"))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let got = client.get(https_url(&lab, 2, "/v1/kv/greeting")).send().await.unwrap();
    assert_eq!(got.text().await.unwrap(), "hello");

    // Plaintext is refused on HPORT (HTTP) and on RPORT (gRPC).
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert!(
        plain.get(lab.url(1, "/v1/kv/greeting")).send().await.is_err(),
        "plaintext HTTP to a TLS node must fail"
    );
    let grpc = braft::Client::new([lab.rpc_addr(1)], Duration::from_secs(3)).unwrap();
    assert!(
        grpc.list("", 1, braft::Consistency::Stale).await.is_err(),
        "plaintext gRPC to a TLS node must fail"
    );

    // ctl: with the CA it reads; without it, it cannot trust the node.
    let ep = https_url(&lab, 3, "");
    let cacert = ca.to_str().unwrap().to_string();
    let (code, out, err) = braft(
        &["ctl", "--endpoints", &ep, "--cacert", &cacert, "get", "greeting"],
        &[],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("hello"), "{out}");
    let (code, _, err) = braft(&["ctl", "--endpoints", &ep, "get", "greeting"], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("certificate"), "{err}");

    // Node 3 comes back with a certificate from another CA (it still trusts ours).
    lab.kill(3);
    let mut env = tls_env(&evil, "node-1", &ca, false);
    env.push(("BRAFT_DISCOVERY", disc.clone()));
    lab.start(3, &env);
    // A brand-new node with a foreign certificate tries to join through discovery.
    let mut env = tls_env(&evil, "node-2", &ca, false);
    env.push(("BRAFT_DISCOVERY", discovery(&lab, 4)));
    lab.start(4, &env);

    // Node 3 may have led: wait for nodes 1 and 2 to serve writes, then note their term.
    let write = || client.put(https_url(&lab, 1, "/v1/kv/during")).body("x").send();
    let deadline = Instant::now() + LIMIT;
    while !write().await.is_ok_and(|r| r.status() == 200) {
        assert!(
            Instant::now() < deadline,
            "nodes 1 and 2 serve no writes\n{}",
            lab.logs(20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut before = Vec::new();
    for i in 1..=2 {
        before.push(raft_json(&lab, i, &client).await["term"].as_u64().unwrap());
    }
    // Long enough for several election timeouts of node 3 and join attempts of node 4.
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        let r = write().await.unwrap();
        assert_eq!(r.status(), 200, "nodes 1 and 2 keep a quorum");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for (k, i) in (1..=2).enumerate() {
        let st = raft_json(&lab, i, &client).await;
        assert_eq!(
            st["term"].as_u64().unwrap(),
            before[k],
            "node {i}: no vote from node 3 reached it"
        );
    }
    let members = client
        .get(https_url(&lab, 1, "/v1/cluster/members"))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let members = members["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "node 4 did not join: {members:?}");
    let rejected = (1..=2)
        .map(|i| log_of(&lab, i))
        .filter(|l| l.contains("TLS handshake from") && l.contains("invalid peer certificate"))
        .count();
    assert!(
        rejected >= 1,
        "the members logged the refused handshakes\n{}",
        lab.logs(10)
    );
    // Node 3 cannot be replicated to: the write made while it was cut off is not there.
    let evil_client = https(&evil.join("ca.pem"), None);
    let r3 = evil_client
        .get(https_url(&lab, 3, "/v1/kv/during?consistency=stale"))
        .send()
        .await
        .unwrap();
    let status = r3.status();
    let body = r3.text().await.unwrap();
    assert!(status != 200 && body != "x", "node 3 received nothing: {status} {body}");

    // With its own certificate back, node 3 catches up.
    lab.kill(3);
    let mut env = tls_env(&certs, "node-3", &ca, false);
    env.push(("BRAFT_DISCOVERY", disc.clone()));
    lab.start(3, &env);
    let deadline = Instant::now() + LIMIT;
    loop {
        let r = client
            .get(https_url(&lab, 3, "/v1/kv/during?consistency=stale"))
            .send()
            .await;
        if let Ok(r) = r {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "node 3 did not catch up\n{}", lab.logs(20));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The served certificate's DER, as a TLS client sees it.
async fn served_cert(addr: &str, ca: &Path, identity: (&Path, &Path)) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<_> = CertificateDer::pem_file_iter(identity.0)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(identity.1).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(braft::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn file_cert(p: &PathBuf) -> Vec<u8> {
    CertificateDer::pem_file_iter(p)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// With BRAFT_CLIENT_CA_FILE, a client needs a certificate from that CA. A node's
/// certificate re-issued under it (`braft cert new`, as a rotation would) is served on
/// new connections of both planes within seconds, without a restart, and the cluster
/// keeps working through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_and_rotated_certificates_are_picked_up() {
    let mut lab = Lab::with_mode(3, false);
    let certs = lab.dir.path().join("certs");
    cert_init(&certs);
    let ca = certs.join("ca.pem");
    let disc = discovery(&lab, 3);
    for i in 1..=3 {
        let mut env = tls_env(&certs, &format!("node-{i}"), &ca, true);
        env.push(("BRAFT_DISCOVERY", disc.clone()));
        lab.start(i, &env);
    }
    let (cert, key) = (certs.join("client.pem"), certs.join("client-key.pem"));
    let client = https(&ca, Some((&cert, &key)));
    lab.wait_ready(&client, &[1, 2, 3], true).await;

    let anonymous = https(&ca, None);
    assert!(
        anonymous.get(https_url(&lab, 1, "/v1/kv/a")).send().await.is_err(),
        "a client without a certificate is refused"
    );
    let r = client
        .put(https_url(&lab, 1, "/v1/kv/a"))
        .body("1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // ctl with its client certificate.
    let ep = https_url(&lab, 2, "");
    let (code, out, err) = braft(
        &[
            "ctl",
            "--endpoints",
            &ep,
            "--cacert",
            ca.to_str().unwrap(),
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "get",
            "a",
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{out}{err}");

    // Rotate node 1's certificate.
    let node1 = certs.join("node-1.pem");
    let old = file_cert(&node1);
    let http_addr = format!("{}:{}", lab.ip(1), lab.hport(1));
    let rpc_addr = lab.rpc_addr(1);
    assert_eq!(served_cert(&http_addr, &ca, (&cert, &key)).await, old);
    let (code, out, err) = braft(
        &[
            "cert",
            "new",
            "--dir",
            certs.to_str().unwrap(),
            "--name",
            "node-1",
            "--hosts",
            "127.0.0.1,localhost",
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let new = file_cert(&node1);
    assert_ne!(new, old);
    let peer_id = (certs.join("node-2.pem"), certs.join("node-2-key.pem"));
    let deadline = Instant::now() + LIMIT;
    loop {
        let http = served_cert(&http_addr, &ca, (&cert, &key)).await;
        let rpc = served_cert(&rpc_addr, &ca, (&peer_id.0, &peer_id.1)).await;
        if http == new && rpc == new {
            break;
        }
        assert!(Instant::now() < deadline, "the rotated certificate was not picked up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Still one cluster: a write through node 1 replicates.
    let r = client
        .put(https_url(&lab, 1, "/v1/kv/b"))
        .body("2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = client.get(https_url(&lab, 3, "/v1/kv/b")).send().await.unwrap();
    assert_eq!(got.text().await.unwrap(), "2");
}

/// Every TLS file that cannot be used stops the node at start with exit code 2, naming
/// the setting and the file: a missing file, a key that belongs to another certificate,
/// an expired certificate, a certificate without its key, and a peer certificate
/// without a CA.
#[test]
fn unusable_tls_files_exit_2_and_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    cert_init(&certs);
    let p = |n: &str| path(&certs, n);
    let data = path(dir.path(), "data");
    let base = [
        ("BRAFT_DATA_DIR", data.as_str()),
        ("BRAFT_RPORT", "19990"),
        ("BRAFT_HPORT", "19992"),
    ];

    // An expired certificate for 127.0.0.1, self-signed.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let expired = params.self_signed(&key).unwrap();
    std::fs::write(certs.join("old.pem"), expired.pem()).unwrap();
    std::fs::write(certs.join("old-key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(certs.join("junk.pem"), "not a certificate").unwrap();

    let missing = p("missing.pem");
    /// The settings given, the setting the error must name, and what it must say.
    type Case<'a> = (Vec<(&'a str, String)>, &'a str, String);
    let cases: Vec<Case> = vec![
        (
            vec![
                ("BRAFT_CERT_FILE", missing.clone()),
                ("BRAFT_KEY_FILE", p("node-1-key.pem")),
            ],
            "BRAFT_CERT_FILE",
            format!("{missing}: cannot read"),
        ),
        (
            vec![
                ("BRAFT_CERT_FILE", p("node-1.pem")),
                ("BRAFT_KEY_FILE", p("node-2-key.pem")),
            ],
            "BRAFT_KEY_FILE",
            "does not match the certificate".into(),
        ),
        (
            vec![("BRAFT_CERT_FILE", p("old.pem")), ("BRAFT_KEY_FILE", p("old-key.pem"))],
            "BRAFT_CERT_FILE",
            "expired".into(),
        ),
        (
            vec![
                ("BRAFT_CERT_FILE", p("junk.pem")),
                ("BRAFT_KEY_FILE", p("node-1-key.pem")),
            ],
            "BRAFT_CERT_FILE",
            "no PEM certificate".into(),
        ),
        (
            vec![("BRAFT_CERT_FILE", p("node-1.pem"))],
            "BRAFT_KEY_FILE",
            "must be set with BRAFT_CERT_FILE".into(),
        ),
        (
            vec![
                ("BRAFT_PEER_CERT_FILE", p("node-1.pem")),
                ("BRAFT_PEER_KEY_FILE", p("node-1-key.pem")),
            ],
            "BRAFT_PEER_CA_FILE",
            "always mutual".into(),
        ),
        (
            vec![
                ("BRAFT_CERT_FILE", p("node-1.pem")),
                ("BRAFT_KEY_FILE", p("node-1-key.pem")),
                ("BRAFT_PEER_CA_FILE", p("junk.pem")),
            ],
            "BRAFT_PEER_CA_FILE",
            "no PEM certificate".into(),
        ),
    ];
    for (env, setting, says) in cases {
        let mut all: Vec<(&str, &str)> = base.to_vec();
        all.extend(env.iter().map(|(k, v)| (*k, v.as_str())));
        let (code, out, err) = braft(&["serve"], &all);
        assert_eq!(code, Some(2), "{env:?}: {out}{err}");
        assert!(
            err.contains(setting) && err.contains(&says),
            "{env:?}: expected {setting} and '{says}' in: {err}"
        );
    }
    // Refused before anything was written.
    assert!(!Path::new(&data).exists());
}

/// `braft demo --tls`: one command makes a CA and certificates, starts three nodes with
/// HTTPS and mutual TLS, and says so; a client trusting the printed CA writes on one
/// node and reads on another; Ctrl-C stops it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_with_tls() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_braft"))
        .args(["demo", "--tls"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Reads the banner, then keeps reading to the end (the demo prints as it stops).
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap_or_default();
            text.push_str(&line);
            text.push('\n');
            if line.contains("Press Ctrl-C") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(text.clone());
                }
            }
        }
    });
    let banner = tokio::time::timeout(LIMIT, rx).await.expect("the banner").unwrap();
    assert!(banner.contains("a 3-node cluster is up"), "{banner}");
    assert!(banner.contains("https://127.0.0.1:15002/ui"), "{banner}");
    let ca = dir.path().join("braft-data/certs/ca.pem");
    let client = https(&ca, None);
    let r = client
        .put("https://127.0.0.1:15002/v1/kv/hello")
        .body("world")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = client.get("https://127.0.0.1:16002/v1/kv/hello").send().await.unwrap();
    assert_eq!(got.text().await.unwrap(), "world");
    // SAFETY: a signal to the child we spawned.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
}
