#!/usr/bin/env bash
# Benchmarks a 3-node braft cluster against a 3-member etcd on this machine, in one run,
# both driven by the same compiled client (`braft bench`: braft's gRPC Kv service, and
# etcd's native gRPC KV API), fsync on, default timeouts, on the same ports layout:
# member N serves clients on 127.0.0.1:N2379 and its second port on N2380 (etcd: peers;
# braft: HTTP, as braft's RPORT carries both peers and clients).
#
# The matrix (each cell bounded by count and by DURATION seconds):
#   put          64 B, to the leader, c = 1, 16, 64, 256
#   get          linearizable, spread over all members, c = 1, 64
#   get          etcd serializable / braft lease, spread, c = 64
#   mixed        90/10 and 50/50 (linearizable reads), spread, c = 64
#   put          4 KiB, 64 KiB and 1 MiB values, to the leader, c = 16
# It writes JSON lines per system and a markdown table with braft/etcd ratios to
# OUT_DIR (default target/bench), and prints the table; also braft's time from three
# nodes started together to the first acknowledged write, and each node's idle RSS.
#
# Usage: scripts/bench.sh [OUT_DIR]
# Env:   DURATION (default 10 s per cell), SCALE (multiplies request counts, default 1),
#        ONLY (etcd|braft: run one system; the table then shows that one)
# As root it installs Debian's etcd-server and etcd-client when etcd is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${1:-$ROOT/target/bench}
DURATION=${DURATION:-10}
SCALE=${SCALE:-1}
ONLY=${ONLY:-}
mkdir -p "$OUT"

source scripts/bench-lib.sh
need_etcd
build_braft
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
stop_all() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  PIDS=()
}
all_clients() { echo "$(client 1),$(client 2),$(client 3)"; }

# bench SYSTEM LEADER_EP LABEL ARGS... : one cell, one JSON line appended to OUT/SYSTEM.jsonl
bench() {
  local sys=$1 leader=$2 label=$3 target; shift 3
  target=$([ "$sys" = etcd ] && echo etcd || echo grpc)
  local eps=$leader
  for a in "$@"; do [ "$a" = --spread ] && eps=$(all_clients); done
  echo "  $sys $label" >&2
  "$BIN" bench --target "$target" --endpoints "$eps" --duration "$DURATION" -o json \
    --label "$label" --prefix "$sys-$label/" "$@" >> "$OUT/$sys.jsonl" ||
    echo "{\"label\": \"$label\", \"ok\": 0, \"errors\": -1}" >> "$OUT/$sys.jsonl"
}

matrix() {
  local sys=$1 leader=$2 n
  rm -f "$OUT/$sys.jsonl"
  for c in 1 16 64 256; do
    n=$(( (c == 1 ? 3000 : 40000) * SCALE ))
    bench "$sys" "$leader" "put c=$c" --mode put -c "$c" --conns "$([ "$c" = 1 ] && echo 1 || echo 4)" -n "$n"
  done
  bench "$sys" "$leader" "get-lin c=1" --mode get --spread -c 1 --conns 1 -n $((4000 * SCALE))
  bench "$sys" "$leader" "get-lin c=64" --mode get --spread -c 64 --conns 2 -n $((60000 * SCALE))
  bench "$sys" "$leader" "get-local c=64" --mode get --spread --consistency lease -c 64 --conns 2 -n $((100000 * SCALE))
  bench "$sys" "$leader" "mixed-90/10 c=64" --mode mixed --read-percent 90 --spread -c 64 --conns 2 -n $((60000 * SCALE))
  bench "$sys" "$leader" "mixed-50/50 c=64" --mode mixed --read-percent 50 --spread -c 64 --conns 2 -n $((40000 * SCALE))
  for v in 4096 65536 1048576; do
    n=$(( (v > 100000 ? 300 : 6000) * SCALE ))
    bench "$sys" "$leader" "put $((v / 1024))KiB c=16" --mode put -c 16 --conns 4 --value-size "$v" -n "$n"
  done
}

# --- etcd: Debian's etcd-server, default durability and timing ---
run_etcd() {
  local i cluster="" st
  for i in 1 2 3; do cluster+="m$i=http://127.0.0.1:${i}2380,"; done
  for i in 1 2 3; do
    # Stray ETCD_* variables would change what starts.
    env -u ETCD_NAME -u ETCD_DATA_DIR etcd --name "m$i" --data-dir "$WORK/etcd-m$i" \
      --listen-client-urls "http://$(client $i)" --advertise-client-urls "http://$(client $i)" \
      --listen-peer-urls "http://127.0.0.1:${i}2380" --initial-advertise-peer-urls "http://127.0.0.1:${i}2380" \
      --initial-cluster "${cluster%,}" --initial-cluster-token bench --initial-cluster-state new \
      --logger zap --log-outputs "$WORK/etcd-m$i.log" </dev/null >/dev/null 2>&1 &
    PIDS+=($!)
  done
  for _ in $(seq 1 300); do
    ETCDCTL_API=3 etcdctl --endpoints "$(all_clients)" --command-timeout=2s endpoint health >/dev/null 2>&1 && break
    sleep 0.1
  done
  st=$(ETCDCTL_API=3 etcdctl --endpoints "$(all_clients)" endpoint status -w json)
  local leader
  leader=$(python3 -c '
import json, sys
for s in json.loads(sys.argv[1]):
    h = s["Status"]
    if h["header"]["member_id"] == h["leader"]:
        print(s["Endpoint"].removeprefix("http://"))' "$st")
  echo "etcd $(etcd --version | head -1), leader $leader" >&2
  matrix etcd "$leader"
  stop_all
}

# --- braft: three nodes started at the same moment ---
FIRST_MS=- RSS=()
run_braft() {
  local i t0 t1 leader disc="static:$(all_clients)"
  t0=$(date +%s%N)
  for i in 1 2 3; do
    RUST_LOG=warn BRAFT_DISCOVERY=$disc BRAFT_IP=127.0.0.1 BRAFT_RPORT=${i}2379 BRAFT_HPORT=${i}2380 \
      BRAFT_DATA_DIR=$WORK/braft-$i "$BIN" serve 2> "$OUT/braft-$i.log" &
    PIDS+=($!)
  done
  until curl -sf -o /dev/null -X PUT --data x http://127.0.0.1:12380/v1/kv/first-write; do sleep 0.01; done
  t1=$(date +%s%N)
  FIRST_MS=$(( (t1 - t0) / 1000000 ))
  sleep 5
  for p in "${PIDS[@]}"; do RSS+=("$(awk '/VmRSS/{printf "%.1f", $2/1024}' "/proc/$p/status")"); done
  leader=$(curl -s http://127.0.0.1:12380/raft | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(["127.0.0.1:%d" % n["raftPort"] for n in r["nodes"] if n["raftState"] == "Leader"][0])')
  echo "braft $("$BIN" --version), leader $leader" >&2
  matrix braft "$leader"
  stop_all
}

[ "$ONLY" = braft ] || run_etcd
[ "$ONLY" = etcd ] || run_braft

python3 - "$OUT" "$FIRST_MS" "${RSS[@]}" > "$OUT/bench.md" <<'PY'
import json, os, sys
out, first_ms, rss = sys.argv[1], sys.argv[2], sys.argv[3:]
def load(name):
    path = f"{out}/{name}.jsonl"
    if not os.path.exists(path):
        return {}
    return {r["label"]: r for r in map(json.loads, open(path))}
e, b = load("etcd"), load("braft")
labels = list(dict.fromkeys(list(e) + list(b)))
def cell(r):
    if r is None:
        return "–", "–"
    if not r.get("ok"):
        return "failed", "–"
    ops = f"{r['ops_per_sec']:,.0f}"
    if r.get("value_size", 64) >= 4096:
        ops += f" ({r['mb_per_sec']:.1f} MB/s)"
    return ops, f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}"
print("| workload | braft ops/s | braft p50 / p99 ms | etcd ops/s | etcd p50 / p99 ms | braft / etcd |")
print("|---|--:|--:|--:|--:|--:|")
for l in labels:
    rb, re = b.get(l), e.get(l)
    ratio = "–"
    if rb and re and rb.get("ok") and re.get("ok"):
        ratio = f"{rb['ops_per_sec'] / re['ops_per_sec']:.2f}x"
    print(f"| {l} | {' | '.join(cell(rb))} | {' | '.join(cell(re))} | {ratio} |")
for name, rows in (("braft", b), ("etcd", e)):
    for l, r in rows.items():
        if r.get("errors"):
            print(f"\n{name} {l}: {r['errors']} errors; first: {r.get('first_error')}")
print()
print("Reads: `get-lin` is linearizable on both; `get-local` is etcd's serializable Range and braft's lease read.")
if first_ms != "-":
    print(f"braft: three nodes started together -> first acknowledged write: {first_ms} ms; idle RSS per node: {', '.join(r + ' MB' for r in rss)}")
PY
cat "$OUT/bench.md"
