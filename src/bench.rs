//! `braft bench`: a closed-loop load generator, compiled, so that it does not eat the
//! core the servers need (a Python one did). `-c` requesters share `--conns`
//! connections; each sends one request, waits for the answer, and sends the next,
//! until `-n` requests are done or `--duration` has passed. It reports ops/s, MB/s and
//! latency percentiles (exact: every latency is kept and sorted), as a table or as one
//! JSON line.
//!
//! Targets: braft's gRPC `Kv` service (`grpc`, the native client path), its HTTP API
//! (`http`, `/v1/kv`), and etcd's native gRPC KV API (`etcd`: `KV.Put` and `KV.Range`),
//! so that etcd and braft are measured by the same client code. Workloads: puts of unique keys, gets (linearizable, lease or
//! stale) over a keyspace loaded first, or a mix. With several endpoints, `--spread`
//! sends to all of them in turn; otherwise everything goes to the first (the leader,
//! when that is the one given first).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use braft::pb;

mod etcd;

#[derive(clap::Args, Debug, Clone)]
pub struct Bench {
    /// Comma-separated `host:port` endpoints (gRPC: RPORT or HPORT; http: HPORT; etcd:
    /// its client URLs).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:15002")]
    endpoints: Vec<String>,
    /// `grpc` (braft.v1.Kv), `http` (/v1/kv) or `etcd` (etcdserverpb.KV).
    #[arg(long, default_value = "grpc")]
    target: Target,
    /// `put`, `get`, or `mixed` (see --read-percent).
    #[arg(long, default_value = "put")]
    mode: Mode,
    /// For `mixed`: the share of gets, in percent.
    #[arg(long, default_value_t = 90)]
    read_percent: u32,
    /// Read consistency: linearizable, lease or stale. etcd has no lease reads: lease and
    /// stale both send its serializable (member-local) Range.
    #[arg(long, default_value = "linearizable")]
    consistency: String,
    /// Concurrent requesters.
    #[arg(short = 'c', long = "concurrency", default_value_t = 16)]
    concurrency: usize,
    /// Connections the requesters share (per endpoint with --spread).
    #[arg(long, default_value_t = 4)]
    conns: usize,
    /// Requests in all.
    #[arg(short = 'n', long = "requests", default_value_t = 10_000)]
    requests: u64,
    /// Stop after this many seconds even if fewer requests were sent.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 64)]
    value_size: usize,
    /// Keys the gets read (loaded before the run).
    #[arg(long, default_value_t = 1_000)]
    keyspace: u64,
    /// Send to every endpoint in turn instead of the first only.
    #[arg(long)]
    spread: bool,
    /// Key prefix (puts use `<prefix><n>`, unique within a run).
    #[arg(long, default_value = "bench/")]
    prefix: String,
    /// A label copied into the JSON output.
    #[arg(long, default_value = "")]
    label: String,
    /// `table` or `json` (one line).
    #[arg(short = 'o', long = "output", default_value = "table")]
    output: String,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Grpc,
    Http,
    Etcd,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Put,
    Get,
    Mixed,
}

/// One connection to one endpoint.
#[derive(Clone)]
enum Conn {
    Grpc(pb::kv_client::KvClient<tonic::transport::Channel>),
    Http { client: reqwest::Client, base: String },
    Etcd(etcd::kv_client::KvClient<tonic::transport::Channel>),
}

impl Conn {
    async fn put(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        match self {
            Conn::Grpc(c) => c
                .put(pb::PutRequest {
                    key,
                    value,
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .map_err(|s| s.message().to_string()),
            Conn::Etcd(c) => c
                .put(etcd::PutRequest {
                    key: key.into_bytes(),
                    value,
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .map_err(|s| s.message().to_string()),
            Conn::Http { client, base } => {
                let r = client
                    .put(format!("{base}/v1/kv/{key}"))
                    .body(value)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                match r.status().is_success() {
                    true => Ok(()),
                    false => Err(format!("HTTP {}", r.status())),
                }
            }
        }
    }

    async fn get(&mut self, key: String, consistency: &str) -> Result<usize, String> {
        match self {
            Conn::Grpc(c) => {
                let level = match consistency {
                    "stale" => pb::Consistency::Stale,
                    "lease" => pb::Consistency::Lease,
                    _ => pb::Consistency::Linearizable,
                };
                c.get(pb::GetRequest {
                    key,
                    consistency: level as i32,
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner().value.len())
                .map_err(|s| s.message().to_string())
            }
            Conn::Etcd(c) => {
                let r = c
                    .range(etcd::RangeRequest {
                        key: key.into_bytes(),
                        serializable: consistency != "linearizable",
                        ..Default::default()
                    })
                    .await
                    .map_err(|s| s.message().to_string())?;
                // A read of a key the run loaded must find it: an empty answer is an
                // error, not a fast read.
                match r.into_inner().kvs.first() {
                    Some(kv) => Ok(kv.value.len()),
                    None => Err("etcd: key not found".into()),
                }
            }
            Conn::Http { client, base } => {
                let r = client
                    .get(format!("{base}/v1/kv/{key}?consistency={consistency}"))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !r.status().is_success() {
                    return Err(format!("HTTP {}", r.status()));
                }
                r.bytes().await.map(|b| b.len()).map_err(|e| e.to_string())
            }
        }
    }
}

async fn connect(b: &Bench, endpoint: &str) -> Result<Conn, String> {
    let base = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    };
    let channel = || async {
        tonic::transport::Endpoint::from_shared(base.clone())
            .map_err(|e| format!("{endpoint}: {e}"))?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("{endpoint}: {e}"))
    };
    match b.target {
        Target::Grpc => Ok(Conn::Grpc(
            pb::kv_client::KvClient::new(channel().await?).max_decoding_message_size(usize::MAX),
        )),
        Target::Etcd => Ok(Conn::Etcd(
            etcd::kv_client::KvClient::new(channel().await?)
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
        )),
        Target::Http => {
            let client = reqwest::Client::builder()
                .tcp_nodelay(true)
                .pool_max_idle_per_host(usize::MAX)
                .build()
                .map_err(|e| e.to_string())?;
            Ok(Conn::Http { client, base })
        }
    }
}

/// What a run measured.
struct Report {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    bytes: u64,
    elapsed: Duration,
    /// Every successful request's latency, in microseconds, sorted.
    latencies_us: Vec<u64>,
}

impl Report {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let rank = ((self.latencies_us.len() as f64) * p).ceil() as usize;
        self.latencies_us[rank.clamp(1, self.latencies_us.len()) - 1] as f64 / 1000.0
    }
}

pub fn run(b: Bench) -> ExitCode {
    if b.endpoints.is_empty() || b.concurrency == 0 || b.conns == 0 || b.requests == 0 {
        eprintln!("braft bench: --endpoints, -c, --conns and -n must be non-empty and positive");
        return ExitCode::from(2);
    }
    if !(b.duration > 0.0 && b.duration.is_finite()) || b.read_percent > 100 {
        eprintln!("braft bench: --duration must be positive, --read-percent at most 100");
        return ExitCode::from(2);
    }
    if !["linearizable", "lease", "stale"].contains(&b.consistency.as_str()) {
        eprintln!("braft bench: --consistency is linearizable, lease or stale");
        return ExitCode::from(2);
    }
    if !["table", "json"].contains(&b.output.as_str()) {
        eprintln!("braft bench: -o is table or json");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("braft bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(bench(&b)) {
        Ok(report) => {
            print_report(&b, &report);
            if report.ok == 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("braft bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(b: &Bench) -> Result<Report, String> {
    let targets: Vec<&String> = if b.spread {
        b.endpoints.iter().collect()
    } else {
        b.endpoints.iter().take(1).collect()
    };
    let mut conns = Vec::new();
    for e in &targets {
        for _ in 0..b.conns {
            conns.push(connect(b, e).await?);
        }
    }
    let value = vec![b'v'; b.value_size];
    if b.mode != Mode::Put {
        // The keys the gets read, written once through the first connection.
        let mut c = conns[0].clone();
        for k in 0..b.keyspace {
            c.put(format!("{}r{k}", b.prefix), value.clone())
                .await
                .map_err(|e| format!("loading the keyspace: {e}"))?;
        }
    }
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(b.duration);
    let bar = crate::ctl::bar(b.requests, "{spinner} {pos}/{len} {wide_bar} {per_sec} {eta}");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..b.concurrency {
        let mut conn = conns[i % conns.len()].clone();
        let (next, value, bar) = (next.clone(), value.clone(), bar.clone());
        let (b, prefix) = (b.clone(), format!("{}{run_id}/", b.prefix));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let (mut errors, mut bytes, mut first_error) = (0u64, 0u64, None);
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= b.requests || Instant::now() >= deadline {
                    break;
                }
                let read = match b.mode {
                    Mode::Put => false,
                    Mode::Get => true,
                    Mode::Mixed => (n * 7919 % 100) < b.read_percent as u64,
                };
                let t = Instant::now();
                let r = if read {
                    conn.get(format!("{}r{}", b.prefix, n % b.keyspace.max(1)), &b.consistency)
                        .await
                } else {
                    conn.put(format!("{prefix}{n}"), value.clone())
                        .await
                        .map(|_| value.len())
                };
                match r {
                    Ok(len) => {
                        lat.push(t.elapsed().as_micros() as u64);
                        bytes += len as u64;
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
                bar.inc(1);
            }
            (lat, errors, bytes, first_error)
        }));
    }
    let mut report = Report {
        ok: 0,
        errors: 0,
        first_error: None,
        bytes: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    for t in tasks {
        let (lat, errors, bytes, first_error) = t.await.map_err(|e| e.to_string())?;
        report.latencies_us.extend(lat);
        report.errors += errors;
        report.bytes += bytes;
        if report.first_error.is_none() {
            report.first_error = first_error;
        }
    }
    report.elapsed = started.elapsed();
    bar.finish_and_clear();
    report.ok = report.latencies_us.len() as u64;
    report.latencies_us.sort_unstable();
    Ok(report)
}

fn print_report(b: &Bench, r: &Report) {
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let ops = r.ok as f64 / secs;
    let mbs = r.bytes as f64 / secs / 1e6;
    let mode = match b.mode {
        Mode::Put => "put".to_string(),
        Mode::Get => format!("get-{}", b.consistency),
        Mode::Mixed => format!("mixed-{}r-{}", b.read_percent, b.consistency),
    };
    let target = match b.target {
        Target::Grpc => "grpc",
        Target::Http => "http",
        Target::Etcd => "etcd",
    };
    if b.output == "json" {
        let v = serde_json::json!({
            "label": b.label,
            "target": target,
            "mode": mode,
            "concurrency": b.concurrency,
            "conns": b.conns,
            "value_size": b.value_size,
            "spread": b.spread,
            "ok": r.ok,
            "errors": r.errors,
            "first_error": r.first_error,
            "seconds": secs,
            "ops_per_sec": ops,
            "mb_per_sec": mbs,
            "p50_ms": r.percentile(0.50),
            "p90_ms": r.percentile(0.90),
            "p99_ms": r.percentile(0.99),
            "p999_ms": r.percentile(0.999),
            "max_ms": r.percentile(1.0),
        });
        println!("{v}");
        return;
    }
    println!(
        "{target} {mode}  c={} conns={} value={} B{}",
        b.concurrency,
        b.conns,
        b.value_size,
        if b.spread { " spread" } else { "" }
    );
    println!(
        "{:>10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "ops/s", "MB/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "errors"
    );
    println!(
        "{:>10.0} {:>9.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8}",
        ops,
        mbs,
        r.percentile(0.50),
        r.percentile(0.90),
        r.percentile(0.99),
        r.percentile(0.999),
        r.percentile(1.0),
        r.errors
    );
    if let Some(e) = &r.first_error {
        println!("first error: {e}");
    }
    if std::io::stdout().is_terminal() && r.ok == 0 {
        eprintln!("no request succeeded");
    }
}
