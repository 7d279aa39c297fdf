//! What TLS costs: write throughput of a 3-node cluster (in this process, on loopback,
//! fsync on) with TLS on both planes — clients over HTTPS/h2 to HPORT, peers over mutual
//! TLS — against the same cluster in plaintext, clients on HPORT either way.
//!
//! `cargo bench --bench tls_cost`. Knobs: `BENCH_SECS` (per run, default 5),
//! `BENCH_CONCURRENCY` (default 64), `BENCH_ROUNDS` (default 3). The two settings run in
//! turns, each on a fresh cluster, so that drift on a shared machine falls on both; it
//! prints every run, the medians and their ratio. The load generator runs in the same
//! process as the nodes, so both sides share the machine's cores alike.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use braft::client::ClientTls;
use braft::Client;
use common::{cluster, env, load, median};

/// A CA and one certificate for 127.0.0.1, shared by the three nodes.
static CERTS: OnceLock<PathBuf> = OnceLock::new();

fn make_certs(dir: &std::path::Path) {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut node = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    node.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let cert = node.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("node.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("node-key.pem"), key.serialize_pem()).unwrap();
}

fn with_tls(c: &mut braft::config::Config) {
    let d = CERTS.get().expect("certificates made");
    c.cert_file = Some(d.join("node.pem"));
    c.key_file = Some(d.join("node-key.pem"));
    c.peer_ca_file = Some(d.join("ca.pem"));
}

/// One run on a fresh cluster; writes/s.
async fn run(tls: bool, secs: u64, concurrency: usize) -> f64 {
    let tmp = tempfile::tempdir().unwrap();
    let nodes = if tls {
        cluster(tmp.path(), with_tls).await
    } else {
        cluster(tmp.path(), |_| {}).await
    };
    // Writes go to the leader's HPORT (see metrics_cost for why the leader).
    let leader = loop {
        if let Some(n) = nodes.iter().find(|n| n.is_leader()) {
            break n.peer().http_addr.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let client = if tls {
        let ca = std::fs::read(CERTS.get().unwrap().join("ca.pem")).unwrap();
        let tls = ClientTls {
            ca_pem: Some(ca),
            ..Default::default()
        };
        Client::with_tls([format!("https://{leader}")], Duration::from_secs(10), tls).unwrap()
    } else {
        Client::new([leader], Duration::from_secs(10)).unwrap()
    };
    load(&client, concurrency, 1).await;
    let rate = load(&client, concurrency, secs).await;
    for n in nodes {
        n.shutdown().await;
    }
    rate
}

#[tokio::main]
async fn main() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    CERTS.set(certs.path().to_path_buf()).unwrap();
    let secs: u64 = env("BENCH_SECS", 5);
    let concurrency: usize = env("BENCH_CONCURRENCY", 64);
    let rounds: usize = env("BENCH_ROUNDS", 3);
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        for tls in [true, false] {
            let rate = run(tls, secs, concurrency).await;
            println!(
                "round {round}: TLS {:<3} {rate:>8.0} writes/s (c={concurrency}, {secs} s)",
                if tls { "on" } else { "off" }
            );
            if tls { &mut on } else { &mut off }.push(rate);
        }
    }
    let (on, off) = (median(on), median(off));
    println!(
        "median: TLS on {on:.0} writes/s, off {off:.0} writes/s; on/off = {:.2}",
        on / off
    );
}
