//! Real clients, a real cluster, a real failure — and the linearizability checker's
//! verdict on the history. Four clients read, write and compare-and-set three keys
//! through random nodes while the leader is stopped and later restarted.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use braft_lincheck::register::Register;
use braft_lincheck::{check, Verdict};
use common::workload::{register_client, Op};
use common::{serial, Cluster};

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
            tokio::spawn(register_client(
                http,
                bases,
                i,
                0,
                String::new(),
                3,
                start,
                stop,
                history,
            ))
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
