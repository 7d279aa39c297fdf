#!/usr/bin/env bash
# The seeded simulation (tests/sim.rs) in its deterministic build: openraft's RNG seeded
# (cargo feature `sim`) and tokio seeded by turmoil (`--cfg tokio_unstable`), optimized
# with debug assertions on (cargo profile `sim`). It builds in its own target directory
# so the main build is not invalidated. Each seed runs in a child process of its own.
#
#   scripts/sim.sh                                        # CI: 50 seeds, the replay check,
#                                                         #     the stale-reads check
#   BRAFT_SIM_SEEDS=1000 scripts/sim.sh seeded -- --nocapture           # a long run
#   BRAFT_SIM_FIRST_SEED=42 BRAFT_SIM_SEEDS=1 scripts/sim.sh seeded -- --nocapture
#   RUST_LOG=warn,braft=info BRAFT_SIM_FIRST_SEED=42 BRAFT_SIM_SEEDS=1 scripts/sim.sh seeded -- --nocapture
#
# BRAFT_SIM_JOBS sets how many seeds run at once (default: the CPU count).
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg tokio_unstable"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/sim}"
cargo test --profile sim --features sim --test sim "$@"
