//! Support for the deterministic simulation (cargo feature `sim`, see tests/sim.rs).

use std::future::Future;

/// Runs `fut` — a node's whole life — with openraft's randomness seeded from `seed`.
/// Under the `sim` feature a node must be started inside this, or openraft panics on
/// its first random draw.
pub fn seeded<F: Future>(seed: u64, fut: F) -> impl Future<Output = F::Output> {
    openraft_rt::deterministic_rng::DeterministicRng::<openraft_rt_tokio::TokioRuntime>::scope(seed, fut)
}
