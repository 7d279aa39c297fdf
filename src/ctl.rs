//! `braft ctl`: operate a cluster from the command line (etcdctl's and Consul's
//! `operator raft` jobs), on [`braft::Client`]. It takes any nodes of the cluster and
//! finds the leader itself (the client follows the leader hints nodes give).
//!
//! Output is a table for people, or JSON (`-o json`) for scripts. Exit codes: 0 when
//! the operation succeeded, 1 when it failed (including a refused change, a failed
//! compare-and-set, a missing key and a hash disagreement), 2 for bad usage (clap's
//! own code). Progress bars (backup, waiting for a promotion) show on a terminal only.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use braft::kv::{KvOutput, Precondition};
use braft::node::admin::AdminError;
use braft::{Client, Consistency};
use clap::{Args, Subcommand, ValueEnum};
use futures::StreamExt;
use serde_json::json;

#[derive(Args, Debug)]
pub struct Ctl {
    /// Any nodes of the cluster, comma-separated: a node's HTTP address (HPORT) or its
    /// RPORT; both serve braft's gRPC API.
    #[arg(
        long,
        env = "BRAFT_ENDPOINTS",
        default_value = "http://127.0.0.1:15002",
        value_delimiter = ',',
        global = true
    )]
    endpoints: Vec<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    /// How long one operation may take, with retries, in seconds.
    #[arg(long, default_value_t = 10.0, global = true)]
    timeout: f64,
    /// For https:// endpoints: the CA (PEM) that signed the nodes' certificates; else
    /// the public web's roots are trusted.
    #[arg(long, env = "BRAFT_CACERT", global = true)]
    cacert: Option<std::path::PathBuf>,
    /// A client certificate (PEM), for nodes that require one (BRAFT_CLIENT_CA_FILE).
    #[arg(long = "cert", env = "BRAFT_CLIENT_CERT", global = true, requires = "client_key")]
    client_cert: Option<std::path::PathBuf>,
    /// A client token (see `braft token new`), for nodes with BRAFT_AUTH_FILE.
    #[arg(long, env = "BRAFT_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// The client certificate's private key (PEM).
    #[arg(long = "key", env = "BRAFT_CLIENT_KEY", global = true, requires = "client_cert")]
    client_key: Option<std::path::PathBuf>,
    #[command(subcommand)]
    cmd: CtlCmd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
enum CtlCmd {
    /// One row per member: id, address, role, leader, term, commit, applied, lag,
    /// health, RSS and version.
    Status,
    /// The members, with suffrage, health and lag.
    Members,
    /// Adds a learner (it receives the log; promote it to vote).
    AddLearner {
        id: u64,
        /// The new member's RPORT address, host:port.
        rpc_addr: String,
        /// Its HTTP address, host:port (shown by `members`).
        #[arg(long, default_value = "")]
        http_addr: String,
    },
    /// Makes a learner a voter.
    Promote {
        id: u64,
        /// Wait until the learner has caught up before promoting it (shows progress).
        #[arg(long)]
        wait: bool,
    },
    /// Makes a voter a learner.
    Demote { id: u64 },
    /// Removes a member.
    Remove { id: u64 },
    /// Hands leadership to another voter.
    TransferLeader {
        #[arg(long)]
        to: Option<u64>,
    },
    /// Snapshots the answering node's state and purges its log now.
    Snapshot,
    /// Writes a consistent backup of the whole state to FILE (`braft restore` reads it).
    Backup { file: std::path::PathBuf },
    /// Compares every member's state hash at a common applied index.
    Check,
    /// Reads a key.
    Get {
        key: String,
        #[arg(long, value_enum, default_value_t = ReadMode::Linearizable)]
        consistency: ReadMode,
    },
    /// Writes a key (optionally only if its version or value is as given).
    Put {
        key: String,
        value: String,
        /// Compare-and-set: apply only if the key's version is this (0: absent).
        #[arg(long, conflicts_with = "prev_value")]
        prev_version: Option<u64>,
        /// Compare-and-set: apply only if the key's value is this.
        #[arg(long)]
        prev_value: Option<String>,
    },
    /// Deletes a key.
    Del { key: String },
    /// Lists keys.
    List {
        #[arg(long, default_value = "")]
        prefix: String,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Streams changes under a prefix until Ctrl-C.
    Watch {
        #[arg(long, default_value = "")]
        prefix: String,
        /// The first version to show (default: the next change).
        #[arg(long)]
        from: Option<u64>,
    },
    /// The work distributor.
    Distribute {
        #[command(subcommand)]
        cmd: DistributeCmd,
    },
}

#[derive(Subcommand, Debug)]
enum DistributeCmd {
    /// Sets the items distributed under KEY (none: removes it).
    Set { key: String, items: Vec<String> },
    /// Shows who holds each item under KEY.
    Get { key: String },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ReadMode {
    Linearizable,
    Lease,
    Stale,
}

/// A failed operation: its message, printed to stderr, and exit code 1.
struct Failed(String);

impl From<braft::Error> for Failed {
    fn from(e: braft::Error) -> Self {
        Failed(e.to_string())
    }
}

impl From<AdminError> for Failed {
    fn from(e: AdminError) -> Self {
        Failed(e.to_string())
    }
}

/// Reads the TLS files named by --cacert, --cert and --key.
fn client_tls(ctl: &Ctl) -> Result<braft::client::ClientTls, String> {
    let read = |flag: &str, p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map(|p| std::fs::read(p).map_err(|e| format!("{flag} {}: {e}", p.display())))
            .transpose()
    };
    Ok(braft::client::ClientTls {
        ca_pem: read("--cacert", &ctl.cacert)?,
        cert_pem: read("--cert", &ctl.client_cert)?,
        key_pem: read("--key", &ctl.client_key)?,
    })
}

pub fn run(ctl: Ctl) -> ExitCode {
    if !(ctl.timeout > 0.0 && ctl.timeout.is_finite()) {
        eprintln!("braft ctl: --timeout must be a positive number of seconds");
        return ExitCode::from(2);
    }
    let tls = match client_tls(&ctl) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("braft ctl: {e}");
            return ExitCode::from(2);
        }
    };
    let client = Client::with_tls(ctl.endpoints.clone(), Duration::from_secs_f64(ctl.timeout), tls).and_then(|c| {
        match &ctl.token {
            Some(t) => c.with_token(t),
            None => Ok(c),
        }
    });
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            eprintln!("braft ctl: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("braft ctl: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(execute(&client, ctl.output, ctl.cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failed(why)) => {
            eprintln!("braft ctl: {why}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(client: &Client, out: Output, cmd: CtlCmd) -> Result<(), Failed> {
    match cmd {
        CtlCmd::Status => status(client, out).await,
        CtlCmd::Members => members(client, out).await,
        CtlCmd::AddLearner {
            id,
            rpc_addr,
            http_addr,
        } => done(out, client.add_learner(id, &rpc_addr, &http_addr).await?),
        CtlCmd::Promote { id, wait } => {
            if wait {
                wait_caught_up(client, id).await?;
            }
            done(out, client.promote(id).await?)
        }
        CtlCmd::Demote { id } => done(out, client.demote(id).await?),
        CtlCmd::Remove { id } => done(out, client.remove(id).await?),
        CtlCmd::TransferLeader { to } => done(out, client.transfer_leader(to).await?),
        CtlCmd::Snapshot => {
            let index = client.snapshot().await?;
            print(out, json!({ "index": index }), || {
                format!("snapshot taken at index {index}")
            });
            Ok(())
        }
        CtlCmd::Backup { file } => backup(client, out, &file).await,
        CtlCmd::Check => check(client, out).await,
        CtlCmd::Get { key, consistency } => {
            let c = match consistency {
                ReadMode::Linearizable => Consistency::Linearizable,
                ReadMode::Lease => Consistency::Lease,
                ReadMode::Stale => Consistency::Stale,
            };
            match client.get(&key, c).await? {
                None => Err(Failed(format!("key '{key}' not found"))),
                Some(v) => {
                    let text = String::from_utf8_lossy(&v.value).to_string();
                    print(out, json!({ "key": key, "value": text, "version": v.version }), || {
                        text.clone()
                    });
                    Ok(())
                }
            }
        }
        CtlCmd::Put {
            key,
            value,
            prev_version,
            prev_value,
        } => {
            let pre = match (prev_version, prev_value) {
                (Some(v), _) => Some(Precondition::Version(v)),
                (_, Some(v)) => Some(Precondition::Value(v.into_bytes())),
                _ => None,
            };
            match client.put_if(&key, value.into_bytes(), pre).await? {
                KvOutput::Put { version } => {
                    print(out, json!({ "key": key, "version": version }), || {
                        format!("OK (version {version})")
                    });
                    Ok(())
                }
                KvOutput::CompareFailed { current_version } => Err(Failed(format!(
                    "compare failed: '{key}' is at version {current_version}; nothing written"
                ))),
                other => Err(Failed(format!("unexpected answer {other:?}"))),
            }
        }
        CtlCmd::Del { key } => match client.delete(&key).await? {
            KvOutput::Deleted { version, existed } => {
                print(
                    out,
                    json!({ "key": key, "version": version, "existed": existed }),
                    || {
                        if existed {
                            format!("deleted (version {version})")
                        } else {
                            "not found; nothing to delete".into()
                        }
                    },
                );
                Ok(())
            }
            other => Err(Failed(format!("unexpected answer {other:?}"))),
        },
        CtlCmd::List { prefix, limit } => {
            let keys = client.list(&prefix, limit, Consistency::Linearizable).await?;
            print(out, json!({ "keys": keys }), || keys.join("\n"));
            Ok(())
        }
        CtlCmd::Watch { prefix, from } => watch(client, out, &prefix, from).await,
        CtlCmd::Distribute { cmd } => match cmd {
            DistributeCmd::Set { key, items } => {
                let version = client.distribute(&key, items).await?;
                print(out, json!({ "key": key, "version": version }), || {
                    format!("OK (version {version})")
                });
                Ok(())
            }
            DistributeCmd::Get { key } => match client.assignment(&key).await? {
                None => Err(Failed(format!("nothing distributed under '{key}'"))),
                Some(a) => {
                    let items: serde_json::Map<String, serde_json::Value> =
                        a.items.iter().map(|(i, n)| (i.clone(), json!(n.to_string()))).collect();
                    print(out, json!({ "key": key, "version": a.version, "items": items }), || {
                        table(
                            &["ITEM", "NODE"],
                            a.items.iter().map(|(i, n)| vec![i.clone(), n.to_string()]).collect(),
                        )
                    });
                    Ok(())
                }
            },
        },
    }
}

/// Prints `value` as JSON, or `text()` for people.
fn print(out: Output, value: serde_json::Value, text: impl FnOnce() -> String) {
    let mut stdout = std::io::stdout().lock();
    let _ = match out {
        Output::Json => writeln!(stdout, "{value}"),
        Output::Table => {
            let t = text();
            if t.is_empty() {
                Ok(())
            } else {
                writeln!(stdout, "{t}")
            }
        }
    };
}

fn done(out: Output, result: String) -> Result<(), Failed> {
    print(out, json!({ "result": result }), || result.clone());
    Ok(())
}

/// Left-aligned columns, two spaces apart. (Hand-written: a dozen lines, where a table
/// crate would bring styling nobody asked for.)
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut lines = vec![line(header.iter().map(|h| h.to_string()).collect())];
    lines.extend(rows.into_iter().map(line));
    lines.join("\n")
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

async fn status(client: &Client, out: Output) -> Result<(), Failed> {
    let (nodes, members) = futures::join!(client.status(), client.members());
    let nodes = nodes?;
    // Health and lag come from the leader's view; without a leader they are unknown.
    let members = members.ok();
    let member = |id: u64| members.as_ref().and_then(|m| m.members.iter().find(|x| x.id == id));
    let mut rows = Vec::new();
    let mut values = Vec::new();
    for n in &nodes {
        let m = member(n.id);
        let health = m.map_or("unknown".to_string(), |m| m.health.clone());
        let lag = m.map(|m| m.lag);
        match &n.details {
            Some(d) => {
                let role = match (d.raft_state.as_str(), m.map(|m| m.suffrage.as_str())) {
                    ("Leader", _) => "leader".to_string(),
                    (_, Some(s)) => s.to_string(),
                    (s, None) => s.to_lowercase(),
                };
                rows.push(vec![
                    n.id.to_string(),
                    n.address.clone(),
                    role.clone(),
                    d.leader_id.to_string(),
                    d.term.to_string(),
                    d.commit_index.to_string(),
                    d.applied_index.to_string(),
                    lag.map_or("-".into(), |l| l.to_string()),
                    health.clone(),
                    mb(d.rss_bytes),
                    d.app_version.clone(),
                ]);
                values.push(json!({
                    "id": n.id.to_string(), "address": n.address, "role": role,
                    "leader": d.leader_id.to_string(), "term": d.term,
                    "commitIndex": d.commit_index, "appliedIndex": d.applied_index,
                    "lag": lag, "health": health, "rssBytes": d.rss_bytes, "version": d.app_version,
                }));
            }
            None => {
                rows.push(vec![
                    n.id.to_string(),
                    n.address.clone(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    lag.map_or("-".into(), |l| l.to_string()),
                    health.clone(),
                    "-".into(),
                    format!("error: {}", n.error),
                ]);
                values.push(json!({
                    "id": n.id.to_string(), "address": n.address, "health": health, "error": n.error,
                }));
            }
        }
    }
    print(out, json!(values), || {
        table(
            &[
                "ID", "ADDRESS", "ROLE", "LEADER", "TERM", "COMMIT", "APPLIED", "LAG", "HEALTH", "RSS", "VERSION",
            ],
            rows,
        )
    });
    Ok(())
}

async fn members(client: &Client, out: Output) -> Result<(), Failed> {
    let m = client.members().await?;
    let value = serde_json::to_value(&m).map_err(|e| Failed(e.to_string()))?;
    print(out, value, || {
        table(
            &[
                "ID", "RPC", "HTTP", "SUFFRAGE", "LEADER", "HEALTH", "MATCH", "LAG", "CONTACT",
            ],
            m.members
                .iter()
                .map(|x| {
                    vec![
                        x.id.to_string(),
                        x.rpc_addr.clone(),
                        x.http_addr.clone(),
                        x.suffrage.clone(),
                        if x.id == m.leader { "*".into() } else { String::new() },
                        x.health.clone(),
                        x.match_index.to_string(),
                        x.lag.to_string(),
                        format!("{} ms", x.last_contact_ms),
                    ]
                })
                .collect(),
        )
    });
    Ok(())
}

/// A progress bar on stderr when it is a terminal; hidden otherwise.
pub(crate) fn bar(len: u64, template: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        b.set_style(style);
    }
    b
}

async fn backup(client: &Client, out: Output, file: &std::path::Path) -> Result<(), Failed> {
    let pb = bar(0, "{spinner} backup {bytes}/{total_bytes} {wide_bar} {eta}");
    let b = client
        .backup(|done, total| {
            pb.set_length(total);
            pb.set_position(done);
        })
        .await;
    pb.finish_and_clear();
    let b = b?;
    // Written to a temporary file and renamed: an interrupted backup leaves no file
    // that looks whole.
    let tmp = file.with_extension("partial");
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&b.bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, file));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Failed(format!("writing {}: {e}", file.display())));
    }
    print(
        out,
        json!({ "file": file.display().to_string(), "index": b.index, "term": b.term, "bytes": b.bytes.len() }),
        || {
            format!(
                "backup of index {} (term {}) written to {} ({} bytes)",
                b.index,
                b.term,
                file.display(),
                b.bytes.len()
            )
        },
    );
    Ok(())
}

/// Waits until learner `id` is within a few entries of the leader, with a progress bar
/// of its lag.
async fn wait_caught_up(client: &Client, id: u64) -> Result<(), Failed> {
    let pb = bar(0, "{spinner} catching up: {pos}/{len} entries {wide_bar}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let result = loop {
        let m = client.members().await?;
        let Some(me) = m.members.iter().find(|x| x.id == id) else {
            break Err(Failed(format!("{id} is not a member")));
        };
        let total = me.match_index + me.lag;
        pb.set_length(total);
        pb.set_position(me.match_index);
        if me.lag <= 10 && me.health == "healthy" {
            break Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            break Err(Failed(format!("{id} did not catch up within 300 s (lag {})", me.lag)));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    pb.finish_and_clear();
    result
}

async fn check(client: &Client, out: Output) -> Result<(), Failed> {
    let h = client.hash().await?;
    let value = json!({
        "agree": h.agree,
        "index": h.index,
        "disagreeing": h.disagreeing.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        "members": h.members.iter().map(|m| json!({
            "id": m.id.to_string(), "appliedIndex": m.applied_index, "hash": m.hash,
            "error": (!m.error.is_empty()).then(|| m.error.clone()),
        })).collect::<Vec<_>>(),
    });
    print(out, value, || {
        let rows = h
            .members
            .iter()
            .map(|m| {
                vec![
                    m.id.to_string(),
                    m.applied_index.map_or("-".into(), |i| i.to_string()),
                    m.hash.map_or("-".into(), |x| format!("{x:08x}")),
                    if !m.error.is_empty() {
                        m.error.clone()
                    } else if h.disagreeing.contains(&m.id) {
                        "DIFFERS".into()
                    } else {
                        "ok".into()
                    },
                ]
            })
            .collect();
        table(&["ID", "APPLIED", "HASH", "STATUS"], rows)
    });
    match (h.agree, h.index) {
        (true, _) => Ok(()),
        (false, Some(i)) => Err(Failed(format!(
            "members disagree at index {i}: {}",
            h.disagreeing
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        (false, None) => Err(Failed(
            "the members never reached one applied index (writes in flight, or a member did not answer)".into(),
        )),
    }
}

async fn watch(client: &Client, out: Output, prefix: &str, from: Option<u64>) -> Result<(), Failed> {
    let mut stream = client.watch(prefix, from).await?;
    loop {
        let item = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            item = stream.next() => item,
        };
        match item {
            None => return Ok(()),
            Some(Err(e)) => return Err(Failed(e.to_string())),
            Some(Ok(e)) => {
                let kind = match e.kind {
                    braft::watch::EventKind::Put => "PUT",
                    braft::watch::EventKind::Delete => "DELETE",
                };
                let value = e
                    .value
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default()
                    .to_string();
                print(
                    out,
                    json!({ "type": kind.to_lowercase(), "key": e.key, "value": value, "version": e.version }),
                    || format!("{kind} {} {} {}", e.version, e.key, value),
                );
            }
        }
    }
}
