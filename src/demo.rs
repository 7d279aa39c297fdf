//! `braft demo`: three child processes of this binary on 127.0.0.1, the URLs and a few
//! curl commands, and a clean stop of all three on Ctrl-C. Each node logs to
//! `braft-data/<port>/node.log`, so the terminal shows only the banner.

use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const PORTS: [u16; 3] = [15000, 16000, 17000];

/// Where `braft demo --tls` keeps its development CA and certificates.
const CERTS: &str = "braft-data/certs";

pub fn run(tls: bool) -> ExitCode {
    if tls {
        if let Err(e) = crate::cert::ensure_demo_certs(std::path::Path::new(CERTS)) {
            eprintln!("braft demo: cannot make certificates in {CERTS}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let scheme = if tls { "https" } else { "http" };
    // curl needs the CA that signed the nodes' certificates.
    let curl = if tls {
        format!("curl --cacert {CERTS}/ca.pem")
    } else {
        "curl".to_string()
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("braft demo: cannot find my own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let discovery = format!("static:{}", PORTS.map(|p| format!("127.0.0.1:{p}")).join(","));
    let mut children: Vec<Child> = Vec::new();
    for (i, port) in PORTS.into_iter().enumerate() {
        let mut cmd = Command::new(&exe);
        if tls {
            // Client TLS on HPORT, mutual TLS between the nodes, one certificate each.
            cmd.env("BRAFT_CERT_FILE", format!("{CERTS}/node-{}.pem", i + 1))
                .env("BRAFT_KEY_FILE", format!("{CERTS}/node-{}-key.pem", i + 1))
                .env("BRAFT_PEER_CA_FILE", format!("{CERTS}/ca.pem"));
        }
        cmd.arg("serve")
            .env("BRAFT_DISCOVERY", &discovery)
            .env("BRAFT_IP", "127.0.0.1")
            .env("BRAFT_RPORT", port.to_string())
            .env("BRAFT_HPORT", (port + 2).to_string())
            .env("BRAFT_DATA_DIR", format!("braft-data/{port}"))
            .stdin(Stdio::null());
        // Each node's log goes to its data directory; interleaved on the terminal, three
        // nodes' logs bury the banner.
        match node_log(port) {
            Ok((out, err)) => {
                cmd.stdout(out).stderr(err);
            }
            Err(e) => eprintln!("braft demo: cannot open braft-data/{port}/node.log ({e}); logging here"),
        }
        // The aliases would override nothing, but a stray one in the caller's
        // environment should not either.
        for alias in ["BDI", "BIP", "BRP", "BHP", "BRAFT_CONFIG"] {
            cmd.env_remove(alias);
        }
        die_with_parent(&mut cmd);
        match cmd.spawn() {
            Ok(c) => children.push(c),
            Err(e) => {
                eprintln!("braft demo: cannot start node on port {port}: {e}");
                stop(&mut children);
                return ExitCode::FAILURE;
            }
        }
    }

    let ready = wait_ready(Duration::from_secs(15), tls);
    println!();
    if ready {
        println!("braft demo: a 3-node cluster is up (data and logs in ./braft-data/<port>/).");
    } else {
        println!("braft demo: the nodes are starting (not ready yet); see ./braft-data/<port>/node.log.");
    }
    println!("  dashboard: {scheme}://127.0.0.1:15002/ui");
    for port in PORTS {
        println!(
            "  node {port}: raft/gRPC 127.0.0.1:{port}  HTTP {scheme}://127.0.0.1:{}",
            port + 2
        );
    }
    if tls {
        println!("  TLS: CA and certificates in {CERTS}/ (clients trust {CERTS}/ca.pem; peers use mutual TLS)");
    }
    println!();
    println!("Try:");
    println!("  {curl} -X PUT --data 'world' {scheme}://127.0.0.1:15002/v1/kv/hello");
    println!("  {curl} {scheme}://127.0.0.1:16002/v1/kv/hello");
    println!("  {curl} {scheme}://127.0.0.1:17002/raft");
    println!("  {curl} -N '{scheme}://127.0.0.1:16002/v1/watch?prefix=he'        # changes, live (SSE)");
    println!("  {curl} -X PUT -d '{{\"items\":[\"a\",\"b\",\"c\"]}}' {scheme}://127.0.0.1:15002/v1/distribute/jobs");
    println!("  {curl} {scheme}://127.0.0.1:17002/v1/distribute/jobs                # who holds which item");
    if tls {
        println!("  braft ctl --endpoints https://127.0.0.1:15002 --cacert {CERTS}/ca.pem status");
    } else {
        println!("  braft ctl status                                             # or: members, check, backup FILE");
    }
    println!();
    println!("Press Ctrl-C to stop all three nodes.");

    let (tx, rx) = std::sync::mpsc::channel();
    let _ = ctrlc_channel(tx);
    loop {
        if rx.recv_timeout(Duration::from_millis(500)).is_ok() {
            break;
        }
        if children.iter_mut().all(|c| matches!(c.try_wait(), Ok(Some(_)))) {
            eprintln!("braft demo: all nodes exited");
            return ExitCode::FAILURE;
        }
    }
    println!("\nbraft demo: stopping...");
    stop(&mut children);
    ExitCode::SUCCESS
}

/// Opens `braft-data/<port>/node.log` for appending, as the child's stdout and stderr.
fn node_log(port: u16) -> std::io::Result<(Stdio, Stdio)> {
    let dir = std::path::PathBuf::from(format!("braft-data/{port}"));
    std::fs::create_dir_all(&dir)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("node.log"))?;
    Ok((Stdio::from(f.try_clone()?), Stdio::from(f)))
}

/// Polls node 1's `/ready` with a bare HTTP/1.0 request (no client library needed),
/// through rustls when the demo runs with TLS.
fn wait_ready(limit: Duration, tls: bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready_once(tls).unwrap_or(false) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn ready_once(tls: bool) -> Result<bool, Box<dyn std::error::Error>> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", PORTS[0] + 2))?;
    tcp.set_read_timeout(Some(Duration::from_secs(1)))?;
    let request = b"GET /ready HTTP/1.0\r\nHost: localhost\r\n\r\n";
    let mut buf = Vec::new();
    if tls {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_file_iter(format!("{CERTS}/ca.pem"))? {
            roots.add(c?)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(braft::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), "127.0.0.1".try_into()?)?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        s.write_all(request)?;
        let _ = s.read_to_end(&mut buf);
    } else {
        tcp.write_all(request)?;
        let _ = tcp.read_to_end(&mut buf);
    }
    Ok(buf.starts_with(b"HTTP/1.0 200") || buf.starts_with(b"HTTP/1.1 200"))
}

fn stop(children: &mut [Child]) {
    for c in children.iter() {
        // SAFETY: kill(2) with a pid we spawned and own; no memory is involved.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for c in children.iter_mut() {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Children get SIGTERM if the demo itself dies, so no orphan keeps the ports.
fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
    }
}

/// Sends on `tx` at SIGINT or SIGTERM (a tiny runtime just for the signal).
fn ctrlc_channel(tx: std::sync::mpsc::Sender<()>) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::spawn(move || {
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = match signal(SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    let _ = tx.send(());
                    return;
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            let _ = tx.send(());
        });
    });
    Ok(())
}
