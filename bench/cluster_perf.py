#!/usr/bin/env python3
"""Throughput, latency and CPU per message per node when producer, queue and consumer are on different
nodes of a cluster, against the same on one node (issue 15, item 7). One etcd and three warren nodes of
this build (a, b, c; --workers each) are started here on free ports, plus one node without a cluster for
reference; the load is rmq-perf (librabbitmq, not Warren's own client), one producer, one queue, one
consumer, 16 B messages, prefetch 200, ack every 50.

A placement is written producer-queue-consumer: `b-a-a` publishes on b to a queue declared on (homed on)
a and consumed on a. For each placement and run: the consumed rate as fast as it goes, and the latency
(p50, p99) at --rate msg/s offered; each node's CPU time per consumed message over the window.

Then a model for separate machines: on this machine the nodes share 2 cores with the load generator, so
the measured rate is not what a cluster of machines would give. With one node per machine, a node whose
work on one message costs c_n microseconds of CPU on its busiest worker can pass at most 1e6 / c_n
messages a second; the pipeline goes at the smallest of these, printed as `bound`.

Usage: bench/cluster_perf.py [--runs 3] [--seconds 8] [--rate 20000] [--workers 1]
                             [--placements single,a-a-a,b-a-a,a-a-c,b-a-c]
(BUILD_DIR: default build/; a placement whose consumer is on another node than its queue needs
consumers across nodes.)"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("BUILD_DIR", ROOT / "build"))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("WARREN_BIN", str(BUILD / "warren"))

from support.etcd_process import EtcdProcess  # noqa: E402
from support.warren_process import WarrenProcess  # noqa: E402


def rmq_perf(args, nodes, placement, rate):
    prod, queue, cons = placement
    cmd = [str(BUILD / "rmq-perf"), "--port", str(nodes[queue].amqp_port),
           "--producer-port", str(nodes[prod].amqp_port), "--consumer-port", str(nodes[cons].amqp_port),
           "--size", "16", "--prefetch", "200", "--ack-every", "50", "--duration", str(args.seconds),
           "--warmup", "2", "--queue-prefix", f"perf-{''.join(placement)}"]
    if rate:
        cmd += ["--rate", str(rate)]
    names = sorted(set(placement))
    for n in names:
        cmd += ["--broker-pid", str(nodes[n].pid)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"rmq-perf {placement}: {out.stderr.strip()}")
    r = json.loads(out.stdout)
    brokers = r.get("brokers") or [{"pid": nodes[names[0]].pid, "cpu_us_per_msg": r.get("broker_cpu_us_per_msg"),
                                    "thread_cores": r.get("broker_thread_cores", {})}]
    by_pid = {b["pid"]: b for b in brokers}
    per_node = {}
    for n in names:
        b = by_pid.get(nodes[n].pid, {})
        cores = b.get("thread_cores", {})
        msgs = r["consumed"] or 1
        # The busiest thread's CPU per message: what one core of that node must do per message.
        busiest = max(cores.values(), default=0) * args.seconds * 1e6 / msgs
        per_node[n] = {"us": b.get("cpu_us_per_msg") or 0.0, "busiest_us": busiest}
    return r, per_node


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rate", type=int, default=20000, help="offered msg/s for the latency runs")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--placements", default="single,a-a-a,b-a-a,a-a-c,b-a-c")
    args = ap.parse_args()
    placements = [p if p == "single" else tuple(p.split("-")) for p in args.placements.split(",")]

    etcd = EtcdProcess().start()
    flags = lambda n: ["--node-name", n, "--cluster-name", "perf", "--etcd-endpoints", etcd.endpoint]  # noqa: E731
    nodes = {n: WarrenProcess(flags(n), workers=args.workers).start() for n in "abc"}
    single = WarrenProcess([], workers=args.workers).start()
    results = {}
    try:
        for _ in range(args.runs):  # runs interleaved, so that each placement sees the same load
            for p in placements:
                key = p if p == "single" else "-".join(p)
                pl = ("s", "s", "s") if p == "single" else p
                ns = {"s": single} if p == "single" else nodes
                try:
                    thr, cpu = rmq_perf(args, ns, pl, 0)
                    lat, _ = rmq_perf(args, ns, pl, args.rate)
                except RuntimeError as e:
                    results[key] = str(e)
                    continue
                if isinstance(results.get(key), str):
                    continue
                results.setdefault(key, []).append((thr, cpu, lat))
    finally:
        for w in (*nodes.values(), single):
            w.kill()
            w.cleanup()
        etcd.cleanup()

    print(f"{args.runs} runs, {args.seconds:g} s each, {args.workers} worker(s) per node; "
          f"medians; latency at {args.rate} msg/s offered")
    print(f"{'placement':10s} {'msg/s':>9s} {'p50 ms':>7s} {'p99 ms':>7s}  CPU us/msg per node (busiest thread)"
          f"   bound, 1 node per machine")
    for key, rs in results.items():
        if isinstance(rs, str):
            print(f"{key:10s} not measured: {rs}")
            continue
        rate = statistics.median(r[0]["consume_rate"] for r in rs)
        p50 = statistics.median(r[2]["latency_us"]["p50"] for r in rs) / 1000
        p99 = statistics.median(r[2]["latency_us"]["p99"] for r in rs) / 1000
        node_names = rs[0][1].keys()
        per = {n: (statistics.median(r[1][n]["us"] for r in rs),
                   statistics.median(r[1][n]["busiest_us"] for r in rs)) for n in node_names}
        text = ", ".join(f"{n} {u:.2f} ({b:.2f})" for n, (u, b) in per.items())
        bound = 1e6 / max(b for _, b in per.values()) if per and max(b for _, b in per.values()) > 0 else 0
        print(f"{key:10s} {rate:9.0f} {p50:7.2f} {p99:7.2f}  {text}   {bound:,.0f} msg/s")


if __name__ == "__main__":
    main()
