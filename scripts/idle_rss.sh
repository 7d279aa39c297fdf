#!/usr/bin/env bash
# Idle memory of a 3-node cluster: starts the given braft binary (default
# target/release/braft) three times on loopback (ports 24100-24105, data in a temp
# directory), writes 100 keys, lets the cluster idle for 10 s, then prints each node's
# resident set (VmRSS) and the median. Used for the idle-RSS figure in
# docs/benchmarks.md. Each line also splits the set: RssAnon (the node's own heap and
# stacks), RssFile (pages of the executable and libraries, shared by the three nodes
# through the page cache) and Pss (the node's proportional share of what it maps).
set -euo pipefail
bin="${1:-target/release/braft}"
dir="$(mktemp -d)"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
disc="static:127.0.0.1:24100,127.0.0.1:24102,127.0.0.1:24104"
for i in 0 1 2; do
  BRAFT_IP=127.0.0.1 BRAFT_RPORT=$((24100 + 2 * i)) BRAFT_HPORT=$((24101 + 2 * i)) \
    BRAFT_DATA_DIR="$dir/n$i" BRAFT_DISCOVERY="$disc" RUST_LOG=warn \
    "$bin" serve >"$dir/n$i.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 100); do
  curl -sf -o /dev/null http://127.0.0.1:24101/v1/kv/warmup -X PUT -d x && break
  sleep 0.2
done
for k in $(seq 100); do curl -sf -o /dev/null -X PUT -d "value-$k" "http://127.0.0.1:24101/v1/kv/k$k"; done
sleep 10
rss=()
for p in "${pids[@]}"; do
  kb=$(awk '/^VmRSS/ {print $2}' "/proc/$p/status")
  rss+=("$kb")
  mb() { echo "$(($1 / 1024)).$((($1 % 1024) * 10 / 1024)) MB"; }
  anon=$(awk '/^RssAnon/ {print $2}' "/proc/$p/status")
  file=$(awk '/^RssFile/ {print $2}' "/proc/$p/status")
  pss=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup")
  echo "node pid $p: VmRSS $(mb "$kb") (RssAnon $(mb "$anon"), RssFile $(mb "$file"); Pss $(mb "$pss"))"
done
median=$(printf '%s\n' "${rss[@]}" | sort -n | sed -n 2p)
echo "median VmRSS: $((median / 1024)).$(((median % 1024) * 10 / 1024)) MB"
