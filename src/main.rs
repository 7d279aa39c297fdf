//! The `braft` server binary: configuration (flags, environment, TOML file) into the
//! library, serve until SIGINT/SIGTERM, shut down gracefully. `braft demo` runs a local
//! 3-node cluster of child processes, `braft ctl` operates a cluster, `braft
//! restore` builds a data directory from a backup, and `braft cert` makes development
//! certificates.

mod bench;
mod cert;
mod ctl;
mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches, Parser, Subcommand};

use braft::config::{Config, SETTINGS};

/// The binary allocates per request (protobuf messages, HTTP/2 frames, log entries) on
/// two cores shared by three nodes; glibc's malloc and free were 14% of all CPU in a
/// profile of c=64 writes, and mimalloc cuts that (docs/benchmarks.md). Only the binary
/// picks an allocator: an application embedding the library keeps its own.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "braft",
    version,
    about = "A Raft cluster node with a built-in key-value service"
)]
struct Cli {
    /// A TOML file with the same keys as the flags (e.g. `rport = 15000`).
    #[arg(long, env = "BRAFT_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run one node (the default).
    Serve,
    /// Run a local 3-node cluster on 127.0.0.1 (ports 15000/16000/17000, HTTP +2).
    Demo {
        /// With TLS: a development CA and certificates in braft-data/certs, HTTPS for
        /// clients and mutual TLS between the nodes.
        #[arg(long)]
        tls: bool,
    },
    /// Development certificates: a CA and one certificate per node (`init`), or one
    /// more from that CA (`new`, also to rotate one).
    #[command(subcommand)]
    Cert(cert::CertCmd),
    /// Client tokens for BRAFT_AUTH_FILE.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Operate a cluster: status, members, leadership, snapshots, backups, keys.
    Ctl(ctl::Ctl),
    /// A closed-loop load generator: puts and gets over gRPC or HTTP, with latency
    /// percentiles.
    Bench(bench::Bench),
    /// Build a new data directory from a backup (`braft ctl backup`, `GET /v1/snapshot`),
    /// offline. It starts a new one-node cluster holding that state; others then join.
    /// The directory is `--data-dir`, the id `--node-id` (else random), and the node's
    /// address comes from `--ip` and `--rport` as for `serve`.
    Restore {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum TokenCmd {
    /// Print a fresh random token, and the lines to paste into BRAFT_AUTH_FILE (which
    /// stores only its hash). The token goes to stdout's first line.
    New {
        /// Who holds it (shown in logs and errors).
        #[arg(long)]
        name: String,
        /// read (get, list, watch, status), write (also put, delete, distribute) or
        /// admin (also the admin API, backups and membership).
        #[arg(long)]
        role: braft::access::Role,
    },
}

fn token_new(name: &str, role: braft::access::Role) -> ExitCode {
    if name.is_empty() || name.contains(['"', '\\', '\n']) {
        eprintln!("braft token: --name must be non-empty, without quotes, backslashes or newlines");
        return ExitCode::from(2);
    }
    let token = braft::access::new_token();
    println!("{token}");
    println!();
    println!("[[token]]");
    println!("name = \"{name}\"");
    println!("role = \"{}\"", role.as_str());
    println!("sha256 = \"{}\"", braft::access::token_hash(&token));
    eprintln!("the first line is the token: give it to its holder (it is not stored anywhere);");
    eprintln!("paste the [[token]] lines into BRAFT_AUTH_FILE on every node (re-read on change)");
    ExitCode::SUCCESS
}

/// The settings' flags, built from the library's table so that every environment
/// variable has its twin.
fn command() -> Command {
    let mut cmd = Cli::command();
    for s in SETTINGS {
        let env = match s.alias {
            Some(a) => format!("{} or {a}", s.env),
            None => s.env.to_string(),
        };
        cmd = cmd.arg(
            Arg::new(s.key)
                .long(s.key.replace('_', "-"))
                .value_name("VALUE")
                .num_args(0..=1)
                .default_missing_value("true")
                .action(ArgAction::Set)
                .global(true)
                .help(format!("{} [env: {env}]", s.help)),
        );
    }
    cmd
}

/// Defaults, then the file, then the environment, then flags.
fn load_config(cli: &Cli, m: &ArgMatches) -> Result<Config, String> {
    let mut cfg = Config::default();
    if let Some(path) = &cli.config {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("BRAFT_CONFIG: cannot read {}: {e}", path.display()))?;
        cfg.apply_toml(&text)
            .map_err(|e| format!("{} ({})", e, path.display()))?;
    }
    cfg.apply_env(&|k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
    for s in SETTINGS {
        if let Some(v) = m.get_one::<String>(s.key) {
            let flag = format!("--{}", s.key.replace('_', "-"));
            s.apply(&mut cfg, v, &flag).map_err(|e| e.to_string())?;
        }
    }
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

fn main() -> ExitCode {
    let matches = command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,openraft=error".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let restore_from = match cli.cmd {
        Some(Cmd::Demo { tls }) => return demo::run(tls),
        Some(Cmd::Cert(cmd)) => return cert::run(cmd),
        Some(Cmd::Token(TokenCmd::New { ref name, role })) => return token_new(name, role),
        Some(Cmd::Ctl(ctl)) => return ctl::run(ctl),
        Some(Cmd::Bench(b)) => return bench::run(b),
        Some(Cmd::Restore { ref from }) => Some(from.clone()),
        _ => None,
    };
    let config = match load_config(&cli, &matches) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("braft: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(from) = restore_from {
        return restore(&from, &config);
    }
    raise_fd_limit();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("braft: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        let node = braft::Node::builder()
            .config(config)
            .service(braft::KvService::default())
            .start()
            .await?;
        node.run_until_shutdown().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(braft::Error::Config(e)) => {
            eprintln!("braft: invalid configuration: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("braft: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft limit on open files to the hard one (as Go's runtime does): the
/// common default of 1024 would cap a node far below BRAFT_MAX_CONNECTIONS, and accept
/// would fail with EMFILE instead of the limit applying cleanly.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let before = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max.min(1 << 20);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::debug!(before, "could not raise the open-files limit");
            }
        }
    }
}

/// `braft restore`: the backup into a new data directory, for the node this
/// configuration describes.
fn restore(from: &std::path::Path, config: &Config) -> ExitCode {
    let ip = config.advertised_ip();
    let peer = braft::Peer {
        rpc_addr: std::net::SocketAddr::new(ip, config.rport).to_string(),
        http_addr: std::net::SocketAddr::new(ip, config.http_port()).to_string(),
    };
    let dir = config.data_dir();
    match braft::restore::restore(from, &dir, config.node_id, peer.clone()) {
        Ok(r) => {
            println!(
                "restored index {} (term {}; services {}) into {} as node {} at {}",
                r.index,
                r.term,
                r.services.join(", "),
                r.data_dir.display(),
                r.node_id,
                peer.rpc_addr
            );
            println!("start it with the same settings: a one-node cluster that others can join");
            ExitCode::SUCCESS
        }
        Err(e @ (braft::restore::RestoreError::NotEmpty(_) | braft::restore::RestoreError::BadNodeId)) => {
            eprintln!("braft restore: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("braft restore: {e}");
            ExitCode::FAILURE
        }
    }
}
