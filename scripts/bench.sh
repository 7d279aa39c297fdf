#!/usr/bin/env bash
# Benchmarks a 3-node braft cluster against a 3-member etcd on this machine, in one run,
# with the shared tools in ../shared/bench (kvload.py, etcd-cluster.sh): fsync on, 64-byte
# values, concurrency 1/16/64, writes to the leader. Also reports braft's time from
# starting three nodes together to the first acknowledged write, and each node's idle RSS.
#
# Usage: scripts/bench.sh [OUT_DIR]          (needs: apt-get install etcd-server etcd-client)
# Env:   BENCH_TOOLS (default ../shared/bench), REQUESTS_SCALE (default 1), DURATION (20 s)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS=${BENCH_TOOLS:-$ROOT/../shared/bench}
OUT=${1:-$ROOT/target/bench}
DURATION=${DURATION:-20}
SCALE=${REQUESTS_SCALE:-1}
mkdir -p "$OUT"
rm -f "$OUT"/etcd.jsonl "$OUT"/braft.jsonl
command -v etcd >/dev/null || { echo "etcd not found: apt-get install -y etcd-server etcd-client" >&2; exit 1; }
cargo build --release --quiet
BIN=$ROOT/target/release/braft
n_for() { case $1 in 1) echo $((3000 * SCALE)) ;; 16) echo $((20000 * SCALE)) ;; *) echo $((40000 * SCALE)) ;; esac; }

PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  "$TOOLS"/etcd-cluster.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

# --- etcd ---
"$TOOLS"/etcd-cluster.sh start >&2
L=$("$TOOLS"/etcd-cluster.sh leader)
EP=$("$TOOLS"/etcd-cluster.sh endpoints "$L")
for c in 1 16 64; do
  python3 "$TOOLS"/kvload.py --mode etcd-put --endpoints "$EP" -c "$c" -n "$(n_for $c)" -d "$DURATION" \
    --warmup 200 --key-prefix "e$c/" --json | sed "s/^{/{\"c\": $c, /" >> "$OUT"/etcd.jsonl
done
"$TOOLS"/etcd-cluster.sh stop >&2

# --- braft: three nodes started at the same moment ---
DATA=$(mktemp -d)
PORTS=(25000 26000 27000)
DISC="static:127.0.0.1:25000,127.0.0.1:26000,127.0.0.1:27000"
t0=$(date +%s%N)
for p in "${PORTS[@]}"; do
  RUST_LOG=warn BRAFT_DISCOVERY=$DISC BRAFT_IP=127.0.0.1 BRAFT_RPORT=$p BRAFT_HPORT=$((p + 2)) \
    BRAFT_DATA_DIR=$DATA/$p "$BIN" serve 2> "$OUT/braft-$p.log" &
  PIDS+=($!)
done
until curl -sf -o /dev/null -X PUT --data x http://127.0.0.1:25002/v1/kv/first-write; do sleep 0.01; done
t1=$(date +%s%N)
FIRST_MS=$(( (t1 - t0) / 1000000 ))
sleep 5
RSS=()
for pid in "${PIDS[@]}"; do RSS+=("$(awk '/VmRSS/{printf "%.1f", $2/1024}' /proc/$pid/status)"); done
LEADER=$(curl -s http://127.0.0.1:25002/raft | python3 -c 'import json,sys; r=json.load(sys.stdin); print([n for n in r["nodes"] if n["raftState"]=="Leader"][0]["httpPort"])')
for c in 1 16 64; do
  python3 "$TOOLS"/kvload.py --mode kv-put --path-prefix /v1 --endpoints "http://127.0.0.1:$LEADER" -c "$c" \
    -n "$(n_for $c)" -d "$DURATION" --warmup 200 --key-prefix "b$c/" --json | sed "s/^{/{\"c\": $c, /" >> "$OUT"/braft.jsonl
done
for p in "${PIDS[@]}"; do kill "$p"; done
wait 2>/dev/null || true
PIDS=()
rm -rf "$DATA"

python3 - "$OUT" "$FIRST_MS" "${RSS[@]}" <<'PY'
import json, sys
out, first_ms, rss = sys.argv[1], sys.argv[2], sys.argv[3:]
load = lambda f: {r["c"]: r for r in map(json.loads, open(f"{out}/{f}"))}
e, b = load("etcd.jsonl"), load("braft.jsonl")
print("| concurrency | braft writes/s | braft p50 / p99 ms | etcd writes/s | etcd p50 / p99 ms | braft / etcd |")
print("|--:|--:|--:|--:|--:|--:|")
for c in sorted(b):
    bl, el = b[c]["lat_ms"], e[c]["lat_ms"]
    print(f"| {c} | {b[c]['ops_per_s']:,.0f} | {bl['p50']} / {bl['p99']} | {e[c]['ops_per_s']:,.0f} | {el['p50']} / {el['p99']} | {b[c]['ops_per_s'] / e[c]['ops_per_s']:.2f}x |")
    for name, r in (("braft", b[c]), ("etcd", e[c])):
        if r.get("errors"):
            print(f"  ({name} c={c} errors: {r['errors']})")
print()
print(f"braft: three nodes started together -> first acknowledged write: {first_ms} ms")
print(f"braft: idle RSS per node: {', '.join(r + ' MB' for r in rss)}")
PY
