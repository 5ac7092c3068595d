#!/usr/bin/env python3
"""Times of the cluster's foundations (docs/cluster.md), on one machine: one etcd and two warren nodes of this build,
all started here on free ports. Prints, over --rounds rounds:
  - user propagation: PUT /api/users/X on node a until node b answers GET /api/users/X with 200;
  - exchange propagation: exchange.declare on node a (AMQP, declare-ok received) until node b answers
    GET /api/exchanges/%2F/X with 200 (the same for queue.declare and b's GET /api/queues/%2F/X, its record);
  - fencing: etcd killed until node a closes an open AMQP connection (320), with --ttl;
  - recovery: etcd back until node a accepts an AMQP connection again;
  - dead node seen: kill -9 of node b until node a's /api/nodes shows it not running.
Usage: bench/cluster_times.py [--rounds 20] [--ttl 2]   (BUILD_DIR: default build/)"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))
os.environ.setdefault("WARREN_BIN", str(Path(os.environ.get("BUILD_DIR", ROOT / "build")) / "warren"))

import pika  # noqa: E402

from support.etcd_process import EtcdProcess  # noqa: E402
from support.warren_process import WarrenProcess  # noqa: E402
import test_cluster as t  # noqa: E402


def summary(name, xs):
    xs = sorted(xs)
    print(f"{name:24s} n={len(xs):3d}  p50 {statistics.median(xs) * 1000:8.1f} ms  "
          f"p90 {xs[int(len(xs) * 0.9) - 1] * 1000:8.1f} ms  max {xs[-1] * 1000:8.1f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--ttl", type=int, default=2)
    args = ap.parse_args()
    etcd = EtcdProcess().start()
    flags = lambda n: ["--node-name", n, "--cluster-name", "bench", "--etcd-endpoints", etcd.endpoint,
                       "--etcd-lease-ttl", str(args.ttl)]
    a = WarrenProcess(flags("a"), workers=1).start()
    b = WarrenProcess(flags("b"), workers=1).start()
    try:
        prop = []
        for i in range(args.rounds):
            t0 = time.monotonic()
            t.put_json(a, f"/api/users/u{i}", {"password": "pw", "tags": ""})
            while True:
                try:
                    t.api(b, f"/api/users/u{i}")
                    break
                except Exception:
                    time.sleep(0.001)
            prop.append(time.monotonic() - t0)
        summary("user propagation", prop)
        conn = t.connect(a)
        ch = conn.channel()
        for kind in ("exchange", "queue"):
            prop = []
            for i in range(args.rounds):
                name = f"{kind}{i}"
                t0 = time.monotonic()
                if kind == "exchange":
                    ch.exchange_declare(name, "fanout")
                else:
                    ch.queue_declare(name)
                while True:
                    try:
                        t.api(b, f"/api/{kind}s/%2F/{name}")
                        break
                    except Exception:
                        time.sleep(0.001)
                prop.append(time.monotonic() - t0)
            summary(f"{kind} propagation", prop)
        conn.close()
        fence, recover = [], []
        for _ in range(max(1, args.rounds // 4)):
            conn = t.connect(a)
            etcd.stop()
            t0 = time.monotonic()
            try:
                while True:
                    conn.process_data_events(time_limit=0.01)
            except pika.exceptions.ConnectionClosedByBroker:
                fence.append(time.monotonic() - t0)
            etcd.start()
            t0 = time.monotonic()
            while t.refused_reason(a) is not None:
                time.sleep(0.02)
            recover.append(time.monotonic() - t0)
        summary(f"fencing (TTL {args.ttl} s)", fence)
        summary("serving again", recover)
        t.wait_for(lambda: t.running(a) == {"a": True, "b": True}, 10)
        b.kill9()
        t0 = time.monotonic()
        while t.running(a)["b"]:
            time.sleep(0.02)
        summary(f"dead node seen (TTL {args.ttl} s)", [time.monotonic() - t0])
    finally:
        for p in (a, b):
            p.kill()
            p.cleanup()
        etcd.cleanup()


if __name__ == "__main__":
    main()
