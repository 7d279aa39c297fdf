#!/usr/bin/env python3
"""failover.py - leader-failover time of a local 3-node braft cluster.

Each round: find the leader, kill -9 it, and from that instant send writes to a
surviving node until one is acknowledged; the failover time is ack - kill. braft
retries internally (forwarding, elections, LeaseExpired) for up to its request
timeout, so one probe usually spans the whole election. Then the killed node is
restarted on its data and the cluster settles before the next round.

Usage: scripts/failover.py [--rounds 5] [--bin target/release/braft]
Default timing: heartbeat 100 ms, election timeout 600-1200 ms (braft's defaults).
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

PORTS = [25000, 26000, 27000]


def http(method, url, body=None, timeout=5.0):
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception:
        return None, b""


def start(binary, port, data, discovery):
    env = dict(os.environ, RUST_LOG="error", BRAFT_DISCOVERY=discovery, BRAFT_IP="127.0.0.1",
               BRAFT_RPORT=str(port), BRAFT_HPORT=str(port + 2), BRAFT_DATA_DIR=os.path.join(data, str(port)))
    return subprocess.Popen([binary, "serve"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def leader_port(alive):
    for p in alive:
        s, b = http("GET", f"http://127.0.0.1:{p + 2}/raft", timeout=2)
        if s == 200:
            r = json.loads(b)
            for n in r["nodes"]:
                if n.get("raftState") == "Leader":
                    return n["raftPort"]
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bin", default="target/release/braft")
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    data = tempfile.mkdtemp(prefix="braft-failover-")
    disc = "static:" + ",".join(f"127.0.0.1:{p}" for p in PORTS)
    procs = {p: start(a.bin, p, data, disc) for p in PORTS}
    times = []
    try:
        deadline = time.time() + 20
        while http("PUT", f"http://127.0.0.1:{PORTS[0] + 2}/v1/kv/warmup", b"x")[0] != 200:
            if time.time() > deadline:
                sys.exit("cluster did not form")
            time.sleep(0.05)
        for rnd in range(a.rounds):
            lp = None
            while lp is None:
                lp = leader_port(PORTS)
                time.sleep(0.05)
            survivor = next(p for p in PORTS if p != lp)
            procs[lp].send_signal(signal.SIGKILL)
            procs[lp].wait()
            t0 = time.monotonic()
            n = 0
            while True:
                s, _ = http("PUT", f"http://127.0.0.1:{survivor + 2}/v1/kv/failover-{rnd}-{n}", b"v", timeout=10)
                n += 1
                if s == 200:
                    break
                if time.monotonic() - t0 > 30:
                    sys.exit(f"round {rnd}: no write acknowledged within 30 s")
                time.sleep(0.01)
            ms = (time.monotonic() - t0) * 1000
            times.append(ms)
            print(f"round {rnd}: killed leader :{lp}, first acknowledged write after {ms:.0f} ms", file=sys.stderr)
            procs[lp] = start(a.bin, lp, data, disc)
            time.sleep(a.settle)
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGKILL)
            p.wait()
    res = {"rounds": len(times), "median_ms": round(statistics.median(times)), "max_ms": round(max(times)),
           "min_ms": round(min(times))}
    print(json.dumps(res) if a.json else f"braft failover: median {res['median_ms']} ms, "
          f"min {res['min_ms']} ms, max {res['max_ms']} ms over {res['rounds']} rounds")


if __name__ == "__main__":
    main()
