//! Real clients, a real cluster, a real failure — and the linearizability checker's
//! verdict on the history. Four clients read, write and compare-and-set three keys
//! through random nodes while the leader is stopped and later restarted.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use braft_lincheck::register::{Input, Output, Register};
use braft_lincheck::{check, Operation, Verdict};
use common::{serial, Cluster};

use rand::{Rng, SeedableRng};

type Op = Operation<Input, Output>;

/// What one HTTP exchange tells the history.
enum Outcome {
    Done(Output),
    /// The request may or may not have taken effect.
    Unknown,
    /// It certainly did not (e.g. refused before anything was proposed).
    None,
}

async fn run_client(
    http: reqwest::Client,
    bases: Arc<Vec<String>>,
    client: u64,
    start: Instant,
    stop: Instant,
    history: Arc<Mutex<Vec<Op>>>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(client);
    let mut last_seen: [Option<String>; 3] = Default::default();
    let mut n = 0u64;
    while Instant::now() < stop {
        let k = rng.random_range(0..3usize);
        let key = format!("k{k}");
        let url = format!("{}/v1/kv/{key}", bases[rng.random_range(0..bases.len())]);
        n += 1;
        let value = format!("c{client}-{n}");
        let (input, req) = match rng.random_range(0..3) {
            0 => (Input::Read { key: key.clone() }, http.get(&url)),
            1 => (
                Input::Write {
                    key: key.clone(),
                    value: value.clone(),
                },
                http.put(&url).body(value.clone()),
            ),
            _ => {
                let expect = last_seen[k].clone();
                let req = match &expect {
                    Some(v) => http.put(format!("{url}?prev_value={v}")).body(value.clone()),
                    None => http.put(format!("{url}?prev_version=0")).body(value.clone()),
                };
                (
                    Input::CasValue {
                        key: key.clone(),
                        expect,
                        value: value.clone(),
                    },
                    req,
                )
            }
        };
        let call = start.elapsed().as_nanos() as u64;
        let outcome = match req.timeout(Duration::from_secs(3)).send().await {
            // No answer: a read changed nothing; a write may have applied.
            Err(_) if matches!(input, Input::Read { .. }) => Outcome::None,
            Err(_) => Outcome::Unknown,
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.bytes().await.unwrap_or_default();
                let code = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["code"].as_str().map(str::to_string))
                    .unwrap_or_default();
                match (&input, status) {
                    (Input::Read { .. }, 200) => {
                        Outcome::Done(Output::Value(Some(String::from_utf8_lossy(&body).into())))
                    }
                    (Input::Read { .. }, 404) => Outcome::Done(Output::Value(None)),
                    (Input::Read { .. }, _) => Outcome::None,
                    (_, 200) => Outcome::Done(Output::Ok),
                    (Input::CasValue { .. }, 409) => Outcome::Done(Output::CompareFailed),
                    (_, 503) if code == "unavailable" || code == "shutting_down" => Outcome::None,
                    _ => Outcome::Unknown,
                }
            }
        };
        let ret = start.elapsed().as_nanos() as u64;
        match &outcome {
            Outcome::Done(Output::Value(v)) => last_seen[k] = v.clone(),
            Outcome::Done(Output::Ok) => {
                if let Input::Write { value, .. } | Input::CasValue { value, .. } = &input {
                    last_seen[k] = Some(value.clone());
                }
            }
            _ => {}
        }
        let output = match outcome {
            Outcome::Done(o) => Some((o, ret)),
            Outcome::Unknown => None,
            Outcome::None => continue,
        };
        history.lock().unwrap().push(Operation {
            client,
            input,
            call,
            output,
        });
    }
}

/// Runs four clients for six seconds, stopping the leader after two and restarting it
/// after four; returns the history.
async fn run_workload(tweak: fn(&mut braft::Config)) -> Vec<Op> {
    let mut cluster = Cluster::start(3, tweak).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let history: Arc<Mutex<Vec<Op>>> = Arc::default();
    let start = Instant::now();
    let stop = start + Duration::from_secs(6);
    let bases: Arc<Vec<String>> = Arc::new((0..3).map(|i| cluster.url(i, "")).collect());
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (http, bases, history) = (cluster.client.clone(), bases.clone(), history.clone());
            tokio::spawn(run_client(http, bases, i, start, stop, history))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.stop(leader).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.restart(leader).await;
    for c in clients {
        c.await.unwrap();
    }
    cluster.shutdown().await;
    let h = history.lock().unwrap().clone();
    h
}

/// Through a leader stop and restart, every completed operation — reads, writes and
/// compare-and-sets from four clients through any node — fits one linear order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_across_a_leader_failover_is_linearizable() {
    let _g = serial().await;
    let history = run_workload(|_| {}).await;
    let done = history.iter().filter(|o| o.output.is_some()).count();
    let after_failover = history
        .iter()
        .filter(|o| o.call > 2_500_000_000 && o.output.is_some())
        .count();
    eprintln!(
        "{} operations recorded ({done} completed, {} indeterminate, {after_failover} completed after the failover)",
        history.len(),
        history.len() - done
    );
    assert!(done > 50, "the clients made progress");
    assert!(after_failover > 10, "the cluster served after the failover");
    if let Verdict::Violation(e) = check(&Register, &history) {
        panic!("{e}");
    }
}

/// The same workload with a deliberate bug — reads served from local state without
/// ReadIndex — is caught: the checker cannot rot into always passing. (Stale reads need
/// a lagging follower to be hit at the right moment, so up to three runs are allowed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_reads_fault_is_caught() {
    let _g = serial().await;
    for attempt in 1..=3 {
        let history = run_workload(|c| c.fault_stale_reads = true).await;
        if let Verdict::Violation(e) = check(&Register, &history) {
            eprintln!("caught on run {attempt}:\n{e}");
            return;
        }
    }
    panic!("three runs with stale reads and the checker found nothing");
}
