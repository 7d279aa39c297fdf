//! Client workloads against braft's HTTP API, recording what the checkers need.
//!
//! - **register**: reads, writes and compare-and-sets (by value) on a few keys with
//!   unique values; the history goes to the linearizability checker. Reads alternate
//!   between linearizable (ReadIndex) and lease consistency, both held to
//!   linearizability; on a follower both are served at a read point from the leader.
//! - **set**: inserts of unique keys (`prev_version=0`); afterwards every acknowledged
//!   insert must be readable, and nothing that was never attempted may appear.
//!
//! How HTTP outcomes map: 200/404/409 are answers; a 503 with code `unavailable` or
//! `shutting_down` never took effect, nor did a request whose connection was refused; a
//! failed read is dropped (it changed nothing); any other failed write is indeterminate
//! — it may have applied.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use braft_lincheck::register::{Input, Output};
use braft_lincheck::Operation;
use rand::{Rng, SeedableRng};

pub type Op = Operation<Input, Output>;

/// What one HTTP exchange tells the history.
enum Outcome {
    Done(Output),
    /// The request may or may not have taken effect.
    Unknown,
    /// It certainly did not (e.g. refused before anything was proposed).
    None,
}

/// One register client: random operations on `keys` keys named `{prefix}k{n}` through
/// random nodes (`bases` are `http://host:port`), until `stop`.
#[allow(clippy::too_many_arguments)]
pub async fn register_client(
    http: reqwest::Client,
    bases: Arc<Vec<String>>,
    client: u64,
    seed: u64,
    prefix: String,
    keys: usize,
    start: Instant,
    stop: Instant,
    history: Arc<Mutex<Vec<Op>>>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (client << 32));
    let mut last_seen: Vec<Option<String>> = vec![None; keys];
    let mut n = 0u64;
    while Instant::now() < stop {
        let k = rng.random_range(0..keys);
        let key = format!("{prefix}k{k}");
        let url = format!("{}/v1/kv/{key}", bases[rng.random_range(0..bases.len())]);
        n += 1;
        let value = format!("c{client}-{n}");
        let (input, req) = match rng.random_range(0..3) {
            // Every other read is a lease read (chosen without drawing from the RNG, so
            // a seed's sequence of operations is what it was before lease reads).
            0 if n % 2 == 0 => (
                Input::Read { key: key.clone() },
                http.get(format!("{url}?consistency=lease")),
            ),
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
            // No answer: a read changed nothing; a write that never connected was never
            // sent; any other write may have applied.
            Err(_) if matches!(input, Input::Read { .. }) => Outcome::None,
            Err(e) if e.is_connect() => Outcome::None,
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
            Outcome::None => {
                // Back off a little while the cluster has no leader.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        history.lock().unwrap().push(Operation {
            client,
            input,
            call,
            output,
        });
    }
}

/// What a set client saw.
#[derive(Debug, Default)]
pub struct SetLog {
    /// Inserts acknowledged with 200.
    pub acked: Vec<String>,
    /// Inserts whose fate is unknown (they may or may not be there).
    pub unknown: Vec<String>,
    /// Inserts certainly refused.
    pub refused: usize,
}

/// Inserts unique keys `{prefix}{n}` through random nodes until `stop`.
pub async fn set_client(
    http: reqwest::Client,
    bases: Arc<Vec<String>>,
    seed: u64,
    prefix: String,
    stop: Instant,
    log: Arc<Mutex<SetLog>>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut n = 0u64;
    while Instant::now() < stop {
        n += 1;
        let key = format!("{prefix}{n}");
        let url = format!("{}/v1/kv/{key}?prev_version=0", bases[rng.random_range(0..bases.len())]);
        // 0: acknowledged, 1: refused, 2: unknown.
        let fate = match http.put(&url).body("1").timeout(Duration::from_secs(3)).send().await {
            Ok(r) if r.status() == 200 => 0,
            Ok(r) if r.status() == 503 => {
                let body: serde_json::Value = r.json().await.unwrap_or_default();
                if body["code"] == "unavailable" || body["code"] == "shutting_down" {
                    1
                } else {
                    2
                }
            }
            Err(e) if e.is_connect() => 1,
            _ => 2,
        };
        {
            let mut l = log.lock().unwrap();
            match fate {
                0 => l.acked.push(key),
                1 => l.refused += 1,
                _ => l.unknown.push(key),
            }
        }
        if fate != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
