//! First step of the seeded simulation (issue 4): real braft nodes — their tonic and axum
//! servers, forwarding and formation — on turmoil's simulated network, with the
//! in-memory stores. A client host writes through one node and reads through each.
//!
//! The second test drives faults from a seed — partitions (also one-way), held and
//! released links, crashes and restarts with the stores surviving the crash — under a
//! register workload from three client hosts, then heals and checks liveness, that
//! every node's state agrees, and that the history is linearizable.
//!
//! Not yet deterministic: the log writer runs on an OS thread and openraft's RNG is
//! not seeded (see docs/NOTES.md for the plan), so a seed fixes the fault schedule and
//! the clients' choices, but a replay may interleave differently.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use braft::config::Discovery;
use braft::pb::kv_client::KvClient;
use braft::pb::{GetRequest, PutRequest};
use braft::store::{MemLogStore, MemSnapshotStore};
use braft::transport::{BoxConn, DialFuture, Dialer, Incoming};
use braft::{Config, KvService, Node};
use braft_lincheck::register::{Input, Output, Register};
use braft_lincheck::{check, Operation, Verdict};
use rand::{Rng, SeedableRng};

const RPORT: u16 = 15000;
const HPORT: u16 = 15002;

/// Dials through turmoil's network.
struct SimDialer;

impl Dialer for SimDialer {
    fn dial(&self, addr: &str) -> DialFuture {
        let addr = addr.to_string();
        Box::pin(async move { Ok(BoxConn::new(turmoil::net::TcpStream::connect(addr).await?)) })
    }
}

/// Accepts on turmoil's network.
fn listen(port: u16) -> Incoming {
    Box::pin(futures::stream::unfold(
        None,
        move |l: Option<turmoil::net::TcpListener>| async move {
            let l = match l {
                Some(l) => l,
                None => match turmoil::net::TcpListener::bind((IpAddr::from([0, 0, 0, 0]), port)).await {
                    Ok(l) => l,
                    Err(e) => return Some((Err(e), None)),
                },
            };
            let r = l.accept().await.map(|(s, _)| BoxConn::new(s));
            Some((r, Some(l)))
        },
    ))
}

/// Starts node host `n{i+1}` on its surviving stores.
fn add_node_host(
    sim: &mut turmoil::Sim<'_>,
    i: usize,
    seed: u64,
    tmp: Arc<tempfile::TempDir>,
    disk: Disk,
    stale_reads: bool,
) {
    let name = format!("n{}", i + 1);
    let restarts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    sim.host(name, move || {
        let dir = tmp.path().join(format!("n{i}"));
        let disk = disk.clone();
        let lives = restarts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let life = async move {
            let ip = turmoil::lookup(format!("n{}", i + 1));
            let peers: Vec<String> = (1..=3)
                .map(|j| SocketAddr::new(turmoil::lookup(format!("n{j}")), RPORT).to_string())
                .collect();
            let node = Node::builder()
                .config(Config::default())
                .configure(move |c| {
                    c.discovery = Discovery::Static(peers);
                    c.data_dir = Some(dir);
                    c.ip = Some(ip);
                    c.heartbeat_ms = 50;
                    c.election_timeout_ms = 400;
                    c.request_timeout_ms = 2_000;
                    c.snapshot_logs = 200;
                    c.fault_stale_reads = stale_reads;
                    // Fixed ids: generated ones would come from the OS's randomness.
                    c.node_id = Some(i as u64 + 1);
                })
                .service(KvService::default())
                .log_store(disk.log.clone())
                .snapshot_store(disk.snapshots.clone())
                .rpc_incoming(listen(RPORT), SocketAddr::new(ip, RPORT))
                .http_incoming(listen(HPORT), SocketAddr::new(ip, HPORT))
                .dialer(SimDialer)
                .start()
                .await?;
            std::future::pending::<()>().await;
            drop(node);
            Ok(())
        };
        // Under the `sim` feature openraft's randomness comes from the seed (per host
        // and per restart).
        #[cfg(feature = "sim")]
        let life = braft::sim::seeded(seed ^ ((i as u64 + 1) << 48) ^ (lives << 32), life);
        #[cfg(not(feature = "sim"))]
        let _ = (seed, lives);
        life
    });
}

/// A node's "disk": it outlives the host, so a crash keeps what was written.
#[derive(Clone)]
struct Disk {
    log: Arc<MemLogStore>,
    snapshots: Arc<MemSnapshotStore>,
}

impl Disk {
    fn empty() -> Self {
        Disk {
            log: Arc::new(MemLogStore::new()),
            snapshots: Arc::new(MemSnapshotStore::default()),
        }
    }
}

fn channel(host: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{host}:{RPORT}"))
        .unwrap()
        .connect_timeout(Duration::from_millis(500))
        .connect_with_connector_lazy(braft::transport::DialConnector(Arc::new(SimDialer)))
}

type Op = Operation<Input, Output>;

/// One register client: read, write and CAS on three keys through random nodes.
async fn sim_client(client: u64, seed: u64, stop: Duration, history: Arc<std::sync::Mutex<Vec<Op>>>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (client << 40));
    let clients: Vec<KvClient<tonic::transport::Channel>> =
        ["n1", "n2", "n3"].iter().map(|h| KvClient::new(channel(h))).collect();
    let mut last: [Option<String>; 3] = Default::default();
    let mut n = 0;
    while turmoil::elapsed() < stop {
        n += 1;
        let k = rng.random_range(0..3usize);
        let key = format!("k{k}");
        let mut kv = clients[rng.random_range(0..3)].clone();
        let value = format!("c{client}-{n}");
        let call = turmoil::elapsed().as_nanos() as u64;
        let (input, outcome) = match rng.random_range(0..3) {
            0 => {
                let r = tokio::time::timeout(
                    Duration::from_secs(3),
                    kv.get(GetRequest {
                        key: key.clone(),
                        consistency: 0,
                    }),
                )
                .await;
                let out = match r {
                    Ok(Ok(r)) => {
                        let r = r.into_inner();
                        Some(Some(Output::Value(
                            r.found.then(|| String::from_utf8_lossy(&r.value).into_owned()),
                        )))
                    }
                    _ => None, // a failed read changed nothing: drop it
                };
                (Input::Read { key: key.clone() }, out)
            }
            op => {
                let (input, req) = if op == 1 {
                    (
                        Input::Write {
                            key: key.clone(),
                            value: value.clone(),
                        },
                        PutRequest {
                            key: key.clone(),
                            value: value.clone().into_bytes(),
                            prev_version: None,
                            prev_value: None,
                        },
                    )
                } else {
                    let expect = last[k].clone();
                    (
                        Input::CasValue {
                            key: key.clone(),
                            expect: expect.clone(),
                            value: value.clone(),
                        },
                        PutRequest {
                            key: key.clone(),
                            value: value.clone().into_bytes(),
                            prev_version: expect.is_none().then_some(0),
                            prev_value: expect.map(String::into_bytes),
                        },
                    )
                };
                let r = tokio::time::timeout(Duration::from_secs(3), kv.put(req)).await;
                let out = match r {
                    Ok(Ok(_)) => Some(Some(Output::Ok)),
                    Ok(Err(s)) if s.code() == tonic::Code::FailedPrecondition => Some(Some(Output::CompareFailed)),
                    // Refused before anything was proposed: certainly not applied.
                    Ok(Err(s))
                        if s.code() == tonic::Code::Unavailable && s.message().contains("no leader with a quorum") =>
                    {
                        None
                    }
                    // Anything else may have applied.
                    _ => Some(None),
                };
                (input, out)
            }
        };
        let ret = turmoil::elapsed().as_nanos() as u64;
        let Some(output) = outcome else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        match (&input, &output) {
            (Input::Read { .. }, Some(Output::Value(v))) => last[k] = v.clone(),
            (Input::Write { value, .. } | Input::CasValue { value, .. }, Some(Output::Ok)) => {
                last[k] = Some(value.clone())
            }
            _ => {}
        }
        history.lock().unwrap().push(Operation {
            client,
            input,
            call,
            output: output.map(|o| (o, ret)),
        });
    }
}

/// Log timestamps in simulated time.
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "[{:?}]", turmoil::sim_elapsed().unwrap_or_default())
    }
}

/// The outcome of one seeded run.
struct SimRun {
    ops: usize,
    indeterminate: usize,
    faults: Vec<String>,
    /// Everything observable, for the determinism check (deterministic build only).
    #[cfg_attr(not(all(feature = "sim", tokio_unstable)), allow(dead_code))]
    trace: String,
}

fn run_seed(seed: u64, stale_reads: bool) -> Result<SimRun, String> {
    // RUST_LOG=braft=info shows the nodes' logs, stamped with simulated time.
    if std::env::var("RUST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_timer(SimTime)
            .try_init();
    }
    const FAULTS_UNTIL: Duration = Duration::from_secs(20);
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(90))
        .rng_seed(seed)
        .build();
    let tmp = Arc::new(tempfile::tempdir().unwrap());
    for i in 0..3 {
        add_node_host(&mut sim, i, seed, tmp.clone(), Disk::empty(), stale_reads);
    }
    let history: Arc<std::sync::Mutex<Vec<Op>>> = Arc::default();
    for c in 0..3u64 {
        let h = history.clone();
        sim.client(format!("c{c}"), async move {
            sim_client(c, seed, FAULTS_UNTIL + Duration::from_secs(2), h).await;
            Ok(())
        });
    }
    // Liveness: after the heal, a write and a linearizable read through every node
    // succeed, and every node ends with the same applied state.
    sim.client("verifier", async move {
        tokio::time::sleep(FAULTS_UNTIL + Duration::from_secs(3)).await;
        let deadline = FAULTS_UNTIL + Duration::from_secs(40);
        let mut kv = KvClient::new(channel("n1"));
        loop {
            let put = PutRequest {
                key: "final".into(),
                value: b"done".to_vec(),
                prev_version: None,
                prev_value: None,
            };
            if kv.put(put).await.is_ok() {
                break;
            }
            if turmoil::elapsed() > deadline {
                return Err("no write succeeded within 37 s of healing".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut states: Vec<Vec<Option<Vec<u8>>>> = Vec::new();
        for host in ["n1", "n2", "n3"] {
            let mut kv = KvClient::new(channel(host));
            let mut state = Vec::new();
            for key in ["k0", "k1", "k2", "final"] {
                let r = loop {
                    match kv
                        .get(GetRequest {
                            key: key.into(),
                            consistency: 0,
                        })
                        .await
                    {
                        Ok(r) => break r.into_inner(),
                        Err(_) if turmoil::elapsed() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                        Err(e) => return Err(format!("{host}: no read after healing: {e}").into()),
                    }
                };
                state.push(r.found.then_some(r.value));
            }
            states.push(state);
        }
        if states.iter().any(|s| *s != states[0]) {
            return Err(format!("nodes disagree after healing: {states:?}").into());
        }
        Ok(())
    });

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let hosts = ["n1", "n2", "n3"];
    let mut faults = Vec::new();
    let mut crashed: Vec<&str> = Vec::new();
    let mut next_fault = Duration::from_secs(2);
    let mut healed = false;
    loop {
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => return Err(format!("seed {seed}: {e}\nfaults: {faults:?}")),
        }
        let now = sim.elapsed();
        if now >= FAULTS_UNTIL && !healed {
            for a in hosts {
                for b in hosts {
                    if a != b {
                        sim.repair(a, b);
                        sim.release(a, b);
                    }
                }
            }
            for h in crashed.drain(..) {
                sim.bounce(h);
            }
            healed = true;
        }
        if healed || now < next_fault {
            continue;
        }
        next_fault = now + Duration::from_millis(rng.random_range(300..1500));
        let a = hosts[rng.random_range(0..3)];
        let b = hosts[rng.random_range(0..3)];
        let what = match rng.random_range(0..6) {
            0 if a != b => {
                sim.partition(a, b);
                format!("partition {a}-{b}")
            }
            1 if a != b => {
                sim.partition_oneway(a, b);
                format!("one-way partition {a}->{b}")
            }
            2 if a != b => {
                sim.hold(a, b);
                format!("hold {a}-{b}")
            }
            3 if crashed.is_empty() => {
                sim.crash(a);
                crashed.push(a);
                format!("crash {a}")
            }
            4 => {
                for h in crashed.drain(..) {
                    sim.bounce(h);
                }
                for x in hosts {
                    for y in hosts {
                        if x != y {
                            sim.repair(x, y);
                            sim.release(x, y);
                        }
                    }
                }
                "heal all".to_string()
            }
            _ => continue,
        };
        faults.push(format!("{:.1}s {what}", now.as_secs_f64()));
    }
    let history = history.lock().unwrap().clone();
    if let Verdict::Violation(e) = check(&Register, &history) {
        return Err(format!("seed {seed}: not linearizable\n{e}\nfaults: {faults:?}"));
    }
    Ok(SimRun {
        ops: history.len(),
        indeterminate: history.iter().filter(|o| o.output.is_none()).count(),
        trace: format!("{history:?}\n{faults:?}\n{:?}", sim.elapsed()),
        faults,
    })
}

/// Seeded faults with a register workload: the history is linearizable, the cluster
/// heals, and all nodes agree. `BRAFT_SIM_SEEDS` (default 20) seeds from
/// `BRAFT_SIM_FIRST_SEED` (default 1); a failing seed prints how to run it alone.
#[test]
fn seeded_faults_keep_the_history_linearizable() {
    let seeds: u64 = std::env::var("BRAFT_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let first: u64 = std::env::var("BRAFT_SIM_FIRST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let (mut ops, mut indeterminate, mut faults) = (0, 0, 0);
    for seed in first..first + seeds {
        match run_seed(seed, false) {
            Ok(r) => {
                ops += r.ops;
                indeterminate += r.indeterminate;
                faults += r.faults.len();
            }
            Err(e) => panic!(
                "{e}\nrun this seed alone: BRAFT_SIM_FIRST_SEED={seed} BRAFT_SIM_SEEDS=1 cargo test --test sim seeded"
            ),
        }
    }
    eprintln!("sim: {seeds} seeds, {ops} operations ({indeterminate} indeterminate), {faults} faults, no violation");
    assert!(
        ops >= 50 * seeds as usize,
        "the clients made progress: {ops} operations"
    );
}

/// With the deliberate stale-reads bug, the simulation must report a violation within
/// a few seeds — so it can never rot into always passing.
#[test]
fn seeded_faults_catch_the_stale_reads_fault() {
    for seed in 1..=10 {
        if let Err(e) = run_seed(seed, true) {
            // Either the history check or the final "linearizable" reads through every
            // node (which the fault serves locally) must expose it.
            assert!(e.contains("not linearizable") || e.contains("nodes disagree"), "{e}");
            eprintln!(
                "stale-reads fault caught by seed {seed}: {}",
                e.lines().next().unwrap_or_default()
            );
            return;
        }
    }
    panic!("ten seeds with stale reads and the simulation found nothing");
}

/// The same seed gives the same run: every operation, with its simulated call and
/// return times, and every fault. Only meaningful in the deterministic build
/// (`scripts/sim.sh`: the `sim` feature and `--cfg tokio_unstable`).
///
/// Known to fail today: two runs agree until the faults start and diverge soon after
/// (op 52 of ~200, 3.9 s of simulated time, in the last try). Kept, ignored, as the
/// yardstick for the remaining work (docs/NOTES.md); run it with
/// `scripts/sim.sh a_seed_replays -- --ignored`.
#[cfg(all(feature = "sim", tokio_unstable))]
#[test]
#[ignore = "not deterministic yet: runs diverge after the first faults"]
fn a_seed_replays_exactly() {
    let a = run_seed(3, false).expect("seed 3 passes");
    let b = run_seed(3, false).expect("seed 3 passes again");
    assert!(a.ops > 50);
    assert_eq!(a.trace, b.trace, "two runs of seed 3 differ");
}

#[test]
fn three_simulated_hosts_form_a_cluster_and_serve() {
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(120))
        .rng_seed(7)
        .build();
    let tmp = Arc::new(tempfile::tempdir().unwrap());
    for i in 0..3 {
        add_node_host(&mut sim, i, 7, tmp.clone(), Disk::empty(), false);
    }
    sim.client("client", async move {
        let channel = |host: &str| {
            tonic::transport::Endpoint::from_shared(format!("http://{host}:{RPORT}"))
                .unwrap()
                .connect_with_connector_lazy(braft::transport::DialConnector(Arc::new(SimDialer)))
        };
        let mut first = KvClient::new(channel("n1"));
        // Retry until a leader is elected.
        let version = loop {
            let put = PutRequest {
                key: "k".into(),
                value: b"v".to_vec(),
                prev_version: None,
                prev_value: None,
            };
            match first.put(put).await {
                Ok(r) => break r.into_inner().version,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        assert!(version > 0);
        for host in ["n1", "n2", "n3"] {
            let got = KvClient::new(channel(host))
                .get(GetRequest {
                    key: "k".into(),
                    consistency: 0,
                })
                .await?
                .into_inner();
            assert!(got.found, "{host}");
            assert_eq!(got.value, b"v", "{host}");
            assert_eq!(got.version, version, "{host}");
        }
        Ok(())
    });
    sim.run().expect("the simulation passes");
}
