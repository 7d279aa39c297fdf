#!/usr/bin/env bash
# What a large data set costs: braft against etcd on this machine, in one run, both
# driven by `braft bench` (braft's gRPC Kv, etcd's native gRPC KV), fsync on, default
# timeouts, the same ports layout as scripts/bench.sh (member N: clients on N2379,
# second port on N2380; the fourth member that joins: 9379 and 9380).
#
# For each system, on a fresh 3-member cluster:
#   load      KEYS unique keys with 64 B values, c = 256 to the leader
#   rss       each member's RSS once the load is in
#   snapshot  one full image of the state, taken on the leader, timed:
#             braft: POST /v1/cluster/snapshot (returns once the snapshot file is saved);
#             etcd: `etcdctl snapshot save` (a copy of its whole database; etcd's own
#             periodic Raft snapshot does not copy the state, which is already on disk)
#   writes during the snapshot: c = 16 puts for WINDOW seconds, the snapshot taken 2 s in;
#             ops/s, p99 and the longest single write; ROUNDS times, each after a
#             window of the same writes with no snapshot running, for comparison
#   restart   member 3 killed with SIGKILL and started again -> it serves (braft: /ready
#             200, i.e. a member, a leader known, everything committed applied; etcd:
#             /health true)
#   catch-up  a fourth member, fresh, joins while c = 16 puts run for WINDOW seconds;
#             the time until it has applied everything the leader had committed when it
#             started (etcd: its revision reaches the leader's), plus the writes' ops/s,
#             p99 and longest write while it is caught up by snapshot
# Results: OUT_DIR/data-{braft,etcd}.json and OUT_DIR/data.md (markdown), printed too.
#
# Usage: scripts/bench-data.sh [OUT_DIR]
# Env:   KEYS (default 1000000), WINDOW (default 10 s), ROUNDS (writes-during-snapshot
#        windows, default 3), ONLY (etcd|braft)
# As root it installs Debian's etcd-server and etcd-client when etcd is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${1:-$ROOT/target/bench}
KEYS=${KEYS:-1000000}
WINDOW=${WINDOW:-10}
ROUNDS=${ROUNDS:-3}
ONLY=${ONLY:-}
mkdir -p "$OUT"

source scripts/bench-lib.sh
need_etcd
build_braft
WORK=$(mktemp -d)
declare -A PID
cleanup() {
  for p in "${PID[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
stop_all() {
  for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PID[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  PID=()
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
rss_mb() { awk '/VmRSS/{printf "%.0f", $2/1024}' "/proc/$1/status"; }
etcdctl3() { ETCDCTL_API=3 etcdctl --command-timeout=30s "$@"; }
# load SYSTEM LEADER: KEYS puts; prints bench's JSON line
load() {
  local target; target=$([ "$1" = etcd ] && echo etcd || echo grpc)
  "$BIN" bench --target "$target" --endpoints "$2" --mode put -c 256 --conns 4 -n "$KEYS" \
    --duration 3600 --prefix data/ -o json --label load
}
# writes SYSTEM LEADER LABEL: c = 16 puts for WINDOW seconds, in the background; JSON to $WORK/LABEL.json
writes() {
  local target; target=$([ "$1" = etcd ] && echo etcd || echo grpc)
  "$BIN" bench --target "$target" --endpoints "$2" --mode put -c 16 --conns 4 -n 100000000 \
    --duration "$WINDOW" --prefix "$3/" -o json --label "$3" > "$WORK/$3.json" &
  WRITER=$!
}

# --- etcd ---
start_etcd() { # start_etcd I CLUSTER STATE
  env -u ETCD_NAME -u ETCD_DATA_DIR etcd --name "m$1" --data-dir "$WORK/etcd-m$1" \
    --listen-client-urls "http://$(client "$1")" --advertise-client-urls "http://$(client "$1")" \
    --listen-peer-urls "http://127.0.0.1:$(pport "$1")" --initial-advertise-peer-urls "http://127.0.0.1:$(pport "$1")" \
    --initial-cluster "$2" --initial-cluster-token data --initial-cluster-state "$3" \
    --logger zap --log-outputs "$WORK/etcd-m$1.log" </dev/null >/dev/null 2>&1 &
  PID[$1]=$!
}
etcd_healthy() { curl -sf "http://$(client "$1")/health" 2>/dev/null | grep -q '"health":"true"'; }
etcd_rev() { # member's own (serializable) revision
  etcdctl3 --endpoints "$(client "$1")" endpoint status -w json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])'
}
run_etcd() {
  local i cluster="" leader leader_i t0 t1 rev
  for i in 1 2 3; do cluster+="m$i=http://127.0.0.1:${i}2380,"; done
  cluster=${cluster%,}
  for i in 1 2 3; do start_etcd "$i" "$cluster" new; done
  for _ in $(seq 1 300); do etcd_healthy 1 && etcd_healthy 2 && etcd_healthy 3 && break; sleep 0.1; done
  leader_i=$(etcdctl3 --endpoints "$(client 1),$(client 2),$(client 3)" endpoint status -w json | python3 -c '
import json, sys
for s in json.load(sys.stdin):
    h = s["Status"]
    if h["header"]["member_id"] == h["leader"]:
        print(s["Endpoint"].removeprefix("http://127.0.0.1:")[0])')
  leader=$(client "$leader_i")
  echo "etcd $(etcd --version | head -1), leader $leader, loading $KEYS keys" >&2
  load etcd "$leader" > "$WORK/load.json"
  sleep 5
  RES=(); for i in 1 2 3; do RES+=("$(rss_mb "${PID[$i]}")"); done
  echo "  snapshot" >&2
  t0=$(now_ms); etcdctl3 --endpoints "$leader" snapshot save "$WORK/etcd.snap" >/dev/null 2>&1; t1=$(now_ms)
  SNAP_MS=$((t1 - t0)); SNAP_BYTES=$(stat -c %s "$WORK/etcd.snap"); rm -f "$WORK/etcd.snap"
  echo "  writes during a snapshot" >&2
  for n in $(seq 1 "$ROUNDS"); do
    writes etcd "$leader" "steady-$n"; wait "$WRITER"
    writes etcd "$leader" "during-snapshot-$n"; sleep 2
    etcdctl3 --endpoints "$leader" snapshot save "$WORK/etcd.snap" >/dev/null 2>&1; rm -f "$WORK/etcd.snap"
    wait "$WRITER"
  done
  echo "  restart" >&2
  local r=3; [ "$leader_i" = 3 ] && r=2
  kill -9 "${PID[$r]}"; wait "${PID[$r]}" 2>/dev/null || true
  t0=$(now_ms); start_etcd "$r" "$cluster" new
  until etcd_healthy "$r"; do sleep 0.01; done
  RESTART_MS=$(( $(now_ms) - t0 ))
  echo "  catch-up of a fourth member" >&2
  # etcd refuses a member add until every member has been connected for a while (its
  # strict reconfiguration check), so it is retried.
  for _ in $(seq 1 60); do
    etcdctl3 --endpoints "$leader" member add m4 --peer-urls=http://127.0.0.1:$(pport 4) >/dev/null 2>&1 && break
    sleep 0.5
  done
  writes etcd "$leader" during-catch-up; sleep 2
  rev=$(etcd_rev "$leader_i")
  t0=$(now_ms); start_etcd 4 "$cluster,m4=http://127.0.0.1:$(pport 4)" existing
  until etcd_healthy 4 && [ "$(etcd_rev 4 2>/dev/null || echo 0)" -ge "$rev" ]; do sleep 0.05; done
  CATCHUP_MS=$(( $(now_ms) - t0 ))
  wait "$WRITER"
  sleep 2; RES4=$(rss_mb "${PID[4]}")
  report etcd
  stop_all
}

# --- braft ---
start_braft() { # start_braft I DISCOVERY
  RUST_LOG=warn BRAFT_DISCOVERY=$2 BRAFT_IP=127.0.0.1 BRAFT_RPORT=$(cport "$1") BRAFT_HPORT=$(pport "$1") \
    BRAFT_DATA_DIR=$WORK/braft-$1 "$BIN" serve 2>> "$OUT/data-braft-$1.log" &
  PID[$1]=$!
}
braft_ready() { curl -sf -o /dev/null "http://127.0.0.1:$(pport "$1")/ready"; }
braft_field() { # braft_field I FIELD: a number from the member's /ready body
  curl -s "http://127.0.0.1:$(pport "$1")/ready" | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"
}
run_braft() {
  local i disc="static:$(client 1),$(client 2),$(client 3)" leader leader_i t0 commit
  rm -f "$OUT"/data-braft-*.log
  for i in 1 2 3; do start_braft "$i" "$disc"; done
  until curl -sf -o /dev/null -X PUT --data x http://127.0.0.1:12380/v1/kv/first-write; do sleep 0.05; done
  leader_i=$(curl -s http://127.0.0.1:12380/raft | python3 -c '
import json, sys
r = json.load(sys.stdin)
print([str(n["raftPort"])[0] for n in r["nodes"] if n["raftState"] == "Leader"][0])')
  leader=$(client "$leader_i")
  echo "braft $("$BIN" --version), leader $leader, loading $KEYS keys" >&2
  load braft "$leader" > "$WORK/load.json"
  sleep 5
  RES=(); for i in 1 2 3; do RES+=("$(rss_mb "${PID[$i]}")"); done
  echo "  snapshot" >&2
  t0=$(now_ms); curl -sf -o /dev/null -X POST "http://127.0.0.1:${leader_i}2380/v1/cluster/snapshot"
  SNAP_MS=$(( $(now_ms) - t0 ))
  SNAP_BYTES=$(stat -c %s "$(ls -t "$WORK/braft-$leader_i"/snapshots/snapshot-*.bin | head -1)" 2>/dev/null || echo 0)
  echo "  writes during a snapshot" >&2
  for n in $(seq 1 "$ROUNDS"); do
    writes braft "$leader" "steady-$n"; wait "$WRITER"
    writes braft "$leader" "during-snapshot-$n"; sleep 2
    curl -sf -o /dev/null -X POST "http://127.0.0.1:${leader_i}2380/v1/cluster/snapshot" ||
      echo "  (snapshot request failed)" >&2
    wait "$WRITER"
  done
  echo "  restart" >&2
  local r=3; [ "$leader_i" = 3 ] && r=2
  kill -9 "${PID[$r]}"; wait "${PID[$r]}" 2>/dev/null || true
  t0=$(now_ms); start_braft "$r" "$disc"
  until braft_ready "$r"; do sleep 0.01; done
  RESTART_MS=$(( $(now_ms) - t0 ))
  echo "  catch-up of a fourth member" >&2
  writes braft "$leader" during-catch-up; sleep 2
  commit=$(braft_field "$leader_i" commitIndex)
  t0=$(now_ms); start_braft 4 "$disc,$(client 4)"
  until [ "$(braft_field 4 appliedIndex 2>/dev/null || echo 0)" -ge "$commit" ]; do sleep 0.05; done
  CATCHUP_MS=$(( $(now_ms) - t0 ))
  wait "$WRITER"
  sleep 2; RES4=$(rss_mb "${PID[4]}")
  report braft
  stop_all
}

# report SYSTEM: one JSON object with every figure
report() {
  python3 - "$1" "$WORK" "$ROUNDS" "$SNAP_MS" "$SNAP_BYTES" "$RESTART_MS" "$CATCHUP_MS" "$RES4" "${RES[@]}" \
    > "$OUT/data-$1.json" <<'PY'
import json, sys
sys_, work, rounds, snap_ms, snap_bytes, restart_ms, catchup_ms, rss4, *rss = sys.argv[1:]
def run(name):
    r = json.load(open(f"{work}/{name}.json"))
    return {k: r.get(k) for k in ("ok", "errors", "ops_per_sec", "p50_ms", "p99_ms", "max_ms")}
print(json.dumps({
    "system": sys_, "load": run("load"), "rss_mb": [int(x) for x in rss],
    "snapshot_ms": int(snap_ms), "snapshot_bytes": int(snap_bytes),
    "steady": [run(f"steady-{n}") for n in range(1, int(rounds) + 1)],
    "during_snapshot": [run(f"during-snapshot-{n}") for n in range(1, int(rounds) + 1)],
    "restart_ms": int(restart_ms),
    "catch_up_ms": int(catchup_ms), "during_catch_up": run("during-catch-up"),
    "new_member_rss_mb": int(rss4),
}))
PY
  cat "$OUT/data-$1.json" >&2
}

[ "$ONLY" = braft ] || run_etcd
[ "$ONLY" = etcd ] || run_braft

python3 - "$OUT" "$KEYS" > "$OUT/data.md" <<'PY'
import json, os, sys
out, keys = sys.argv[1], int(sys.argv[2])
def load(s):
    p = f"{out}/data-{s}.json"
    return json.load(open(p)) if os.path.exists(p) else None
b, e = load("braft"), load("etcd")
def med(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]
def ws(rs):
    if not all(r.get("ok") for r in rs):
        return "–"
    return (f"{med([r['ops_per_sec'] for r in rs]):,.0f} /s, p99 {med([r['p99_ms'] for r in rs]):.1f} ms; "
            f"max per window {', '.join(str(round(r['max_ms'])) for r in rs)} ms")
def w(r):
    return f"{r['ops_per_sec']:,.0f} /s, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.0f} ms" if r and r.get("ok") else "–"
rows = [
    ("load: puts/s at c = 256", lambda r: f"{r['load']['ops_per_sec']:,.0f}"),
    ("RSS per member after the load", lambda r: ", ".join(f"{x} MB" for x in r["rss_mb"])),
    ("one full snapshot of the state", lambda r: f"{r['snapshot_ms']:,} ms ({r['snapshot_bytes'] / 1e6:,.0f} MB)"),
    ("c = 16 writes, no snapshot running (median of windows)", lambda r: ws(r["steady"])),
    ("c = 16 writes while a snapshot is taken (median of windows)", lambda r: ws(r["during_snapshot"])),
    ("SIGKILL, restart -> serving", lambda r: f"{r['restart_ms']:,} ms"),
    ("a new member caught up", lambda r: f"{r['catch_up_ms']:,} ms (then {r['new_member_rss_mb']} MB)"),
    ("c = 16 writes while it catches up", lambda r: w(r["during_catch_up"])),
]
print(f"| {keys:,} keys, 64 B values | braft | etcd |")
print("|---|--:|--:|")
for name, f in rows:
    print(f"| {name} | {f(b) if b else '–'} | {f(e) if e else '–'} |")
PY
cat "$OUT/data.md"
