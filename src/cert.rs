//! `braft cert`: development certificates with rcgen, so trying TLS takes one command.
//!
//! - `braft cert init --dir DIR` makes a CA (`ca.pem`, `ca-key.pem`), one certificate per
//!   node (`node-1.pem`, `node-1-key.pem`, ...) for both planes, and one client
//!   certificate (`client.pem`) for `braft ctl` and curl when client certificates are
//!   required.
//! - `braft cert new --dir DIR --name NAME` issues one more from that CA, or re-issues
//!   one to rotate it: running nodes pick the new files up (see [`braft::tls`]).
//!
//! Every file is written beside its target and renamed into place, so a node reloading
//! never reads half a file. Keys are readable by their owner only.
//!
//! A production CA belongs in your PKI; these are for development and for clusters
//! whose operators are happy to keep `ca-key.pem` safe themselves.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

#[derive(clap::Subcommand, Debug)]
pub enum CertCmd {
    /// Make a development CA, one certificate per node (both planes) and one for clients.
    Init {
        /// Where the files go; it must not hold a CA already.
        #[arg(long)]
        dir: PathBuf,
        /// The names and IP addresses the node certificates are valid for.
        #[arg(long, value_delimiter = ',', default_value = "127.0.0.1,localhost")]
        hosts: Vec<String>,
        /// How many node certificates.
        #[arg(long, default_value_t = 3)]
        nodes: u32,
        /// How long the node and client certificates are valid (the CA: ten times that).
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Issue one certificate from the CA in DIR (again, to rotate it).
    New {
        /// The directory holding ca.pem and ca-key.pem.
        #[arg(long)]
        dir: PathBuf,
        /// The file name (NAME.pem, NAME-key.pem) and the certificate's common name.
        #[arg(long)]
        name: String,
        /// The names and IP addresses it is valid for.
        #[arg(long, value_delimiter = ',', default_value = "127.0.0.1,localhost")]
        hosts: Vec<String>,
        /// How long it is valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// A client certificate only (it cannot serve).
        #[arg(long)]
        client: bool,
    },
}

/// Why a command failed: bad usage (exit 2) or a failure (exit 1).
enum Failure {
    Usage(String),
    Failed(String),
}

pub fn run(cmd: CertCmd) -> ExitCode {
    let result = match cmd {
        CertCmd::Init {
            dir,
            hosts,
            nodes,
            days,
        } => init(&dir, &hosts, nodes, days),
        CertCmd::New {
            dir,
            name,
            hosts,
            days,
            client,
        } => issue_one(&dir, &name, &hosts, days, client),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("braft cert: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(e)) => {
            eprintln!("braft cert: {e}");
            ExitCode::FAILURE
        }
    }
}

/// For `braft demo --tls`: a CA and three node certificates for 127.0.0.1 in `dir`,
/// unless it holds a CA already.
pub fn ensure_demo_certs(dir: &Path) -> Result<(), String> {
    if dir.join("ca.pem").exists() {
        return Ok(());
    }
    let hosts = ["127.0.0.1".to_string(), "localhost".to_string()];
    make_all(dir, &hosts, 3, 365).map_err(|f| match f {
        Failure::Usage(e) | Failure::Failed(e) => e,
    })
}

fn init(dir: &Path, hosts: &[String], nodes: u32, days: u32) -> Result<(), Failure> {
    make_all(dir, hosts, nodes, days)?;
    let d = dir.display();
    println!("wrote {d}/ca.pem, {d}/node-1.pem .. node-{nodes}.pem (with -key.pem), {d}/client.pem");
    println!("valid for: {}", hosts.join(", "));
    println!();
    println!("node i, TLS for clients and mutual TLS between peers:");
    println!("  BRAFT_CERT_FILE={d}/node-1.pem BRAFT_KEY_FILE={d}/node-1-key.pem BRAFT_PEER_CA_FILE={d}/ca.pem braft");
    println!("  (add BRAFT_CLIENT_CA_FILE={d}/ca.pem to require client certificates)");
    println!("clients:");
    println!("  curl --cacert {d}/ca.pem https://127.0.0.1:15002/v1/kv/hello");
    println!("  braft ctl --endpoints https://127.0.0.1:15002 --cacert {d}/ca.pem status");
    println!("keep {d}/ca-key.pem private: whoever holds it can mint peers");
    Ok(())
}

fn make_all(dir: &Path, hosts: &[String], nodes: u32, days: u32) -> Result<(), Failure> {
    check_days(days)?;
    if !(1..=100).contains(&nodes) {
        return Err(Failure::Usage("--nodes: allowed 1..100".into()));
    }
    if dir.join("ca.pem").exists() {
        return Err(Failure::Usage(format!(
            "{} already holds a CA (ca.pem); issue more with `braft cert new --dir {} --name NAME`",
            dir.display(),
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Failure::Failed(format!("{}: {e}", dir.display())))?;

    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "braft development CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, days.saturating_mul(10));
    let ca_key = KeyPair::generate().map_err(failed)?;
    let ca_cert = params.self_signed(&ca_key).map_err(failed)?;
    write(&dir.join("ca.pem"), &ca_cert.pem(), false)?;
    write(&dir.join("ca-key.pem"), &ca_key.serialize_pem(), true)?;
    let issuer = Issuer::new(params, ca_key);

    for i in 1..=nodes {
        issue(dir, &issuer, &format!("node-{i}"), hosts, days, false)?;
    }
    issue(dir, &issuer, "client", &[], days, true)?;
    Ok(())
}

fn issue_one(dir: &Path, name: &str, hosts: &[String], days: u32, client: bool) -> Result<(), Failure> {
    check_days(days)?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(Failure::Usage(format!(
            "--name '{name}': use letters, digits, '-', '_' and '.'"
        )));
    }
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f)).map_err(|e| {
            Failure::Usage(format!(
                "{}: {e} (make a CA with `braft cert init`)",
                dir.join(f).display()
            ))
        })
    };
    let (ca_pem, key_pem) = (read("ca.pem")?, read("ca-key.pem")?);
    let key = KeyPair::from_pem(&key_pem).map_err(|e| Failure::Usage(format!("ca-key.pem: {e}")))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, key).map_err(|e| Failure::Usage(format!("ca.pem: {e}")))?;
    issue(dir, &issuer, name, hosts, days, client)?;
    println!(
        "wrote {}/{name}.pem and {}/{name}-key.pem (valid for: {})",
        dir.display(),
        dir.display(),
        if client {
            "client use".to_string()
        } else {
            hosts.join(", ")
        }
    );
    Ok(())
}

/// One certificate signed by `issuer`: for serving and dialling peers, or (`client`)
/// for clients only. The key is written first, so a reloading node that sees the new
/// certificate finds its key already there.
fn issue(
    dir: &Path,
    issuer: &Issuer<'_, KeyPair>,
    name: &str,
    hosts: &[String],
    days: u32,
    client: bool,
) -> Result<(), Failure> {
    let mut params = CertificateParams::new(hosts.to_vec()).map_err(|e| Failure::Usage(format!("--hosts: {e}")))?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = if client {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    } else {
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
    };
    validity(&mut params, days);
    let key = KeyPair::generate().map_err(failed)?;
    let cert = params.signed_by(&key, issuer).map_err(failed)?;
    write(&dir.join(format!("{name}-key.pem")), &key.serialize_pem(), true)?;
    write(&dir.join(format!("{name}.pem")), &cert.pem(), false)?;
    Ok(())
}

fn check_days(days: u32) -> Result<(), Failure> {
    if !(1..=3650).contains(&days) {
        return Err(Failure::Usage("--days: allowed 1..3650".into()));
    }
    Ok(())
}

/// From an hour ago (clocks differ a little) for `days`.
fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days.into());
}

fn failed(e: rcgen::Error) -> Failure {
    Failure::Failed(e.to_string())
}

/// Writes beside the target, then renames over it.
fn write(path: &Path, text: &str, private: bool) -> Result<(), Failure> {
    use std::io::Write;
    let tmp = path.with_extension("pem.tmp");
    let fail = |e: std::io::Error| Failure::Failed(format!("{}: {e}", path.display()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    let mut f = opts.open(&tmp).map_err(fail)?;
    f.write_all(text.as_bytes()).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}
