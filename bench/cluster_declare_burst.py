#!/usr/bin/env python3
"""A burst of declares in a cluster (docs/cluster.md, "Exchanges, bindings and queue records"): one etcd and two
warren nodes of this build (--workers 1) on free ports; N queue.declare on node a, one after the other over one
channel, then polls node b's GET /api/queues every 0.2 s until it lists all N (their records). Prints both
times and each node's CPU time (user + system, from /proc) over the run.
Usage: bench/cluster_declare_burst.py N   (WARREN_BIN: default build/warren)"""
import os, sys, time
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests")); sys.path.insert(0, str(ROOT / "tests" / "integration"))
os.environ.setdefault("WARREN_BIN", str(ROOT / "build" / "warren"))
from support.etcd_process import EtcdProcess
from support.warren_process import WarrenProcess
import test_cluster as t
N = int(sys.argv[1])
etcd = EtcdProcess().start()
fl = lambda n: ["--node-name", n, "--cluster-name", "s", "--etcd-endpoints", etcd.endpoint, "--etcd-lease-ttl", "4"]
a = WarrenProcess(fl("a"), workers=1).start(); b = WarrenProcess(fl("b"), workers=1).start()
try:
    conn = t.connect(a); ch = conn.channel()
    t0 = time.monotonic()
    for i in range(N):
        ch.queue_declare(f"q{i}")
    t1 = time.monotonic()
    while len(t.api(b, "/api/queues/%2F?columns=name")) < N:
        time.sleep(0.2)
    t2 = time.monotonic()
    print(f"{N} queue.declare on a: {t1-t0:.2f} s; all listed on b after {t2-t0:.2f} s")
    ut = lambda p: sum(int(x) for x in open(f"/proc/{p.pid}/stat").read().split()[13:15]) / os.sysconf("SC_CLK_TCK")
    print(f"cpu a {ut(a):.2f} s, b {ut(b):.2f} s")
finally:
    for p in (a, b): p.kill(); p.cleanup()
    etcd.cleanup()
