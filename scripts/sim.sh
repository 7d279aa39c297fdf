#!/usr/bin/env bash
# The seeded simulation (tests/sim.rs) in its deterministic build: openraft's RNG seeded
# (cargo feature `sim`) and tokio seeded by turmoil (`--cfg tokio_unstable`), optimized
# with debug assertions on (cargo profile `sim`). It builds in its own target directory
# so the main build is not invalidated. Each seed runs in a child process of its own.
#
#   scripts/sim.sh                                        # CI: 50 seeds, 10 five-node seeds,
#                                                         #     the pinned seeds, 20 fresh seeds
#                                                         #     of the day (printed), the replay
#                                                         #     and stale-reads checks
#   BRAFT_SIM_SEEDS=1000 scripts/sim.sh seeded -- --nocapture           # a long run
#   BRAFT_SIM_FIRST_SEED=42 BRAFT_SIM_SEEDS=1 scripts/sim.sh seeded -- --nocapture
#   RUST_LOG=warn,braft=info BRAFT_SIM_FIRST_SEED=42 BRAFT_SIM_SEEDS=1 scripts/sim.sh seeded -- --nocapture
#   BRAFT_SIM_FIRST_SEED=10001 BRAFT_SIM_SEEDS=1000 scripts/sim.sh five_node -- --nocapture
#
# BRAFT_SIM_JOBS sets how many seeds run at once (default: the CPU count).
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg tokio_unstable"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/sim}"
if [ $# -eq 0 ]; then
  # The whole suite, with every seed's line shown: today's fresh seeds must be visible
  # in CI's output, with the command that replays each.
  cargo test --profile sim --features sim --test sim -- --nocapture
else
  cargo test --profile sim --features sim --test sim "$@"
fi
