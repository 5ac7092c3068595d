#!/usr/bin/env python3
"""The web gateway across nodes (docs/cluster.md, "The web gateway across nodes"), on one machine: a single node,
then one etcd and three warren nodes of this build (one worker each), all started here on free ports. For each
placement it sends --sends messages one at a time over HTTP (POST /api/send) and reads each from a WebSocket tab,
printing the HTTP answer's and the tab's latency (median, p99) from the send:
  - single node;  - owner a, send on a, tab on a;  - owner a, send on b, tab on a;  - owner a, send on b, tab on c.
Usage: bench/gateway_cluster_latency.py [--sends 300]   (WARREN_BIN: default build/warren)"""

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from support.etcd_process import EtcdProcess  # noqa: E402
from support.warren_process import WarrenProcess  # noqa: E402
from support.web_gateway import Gateway, gateway_args  # noqa: E402
from test_cluster_gateway import balanced, user_owned_by  # noqa: E402


def measure(sender, tab, user, n):
    ws = tab.ws(user, since=0, attached=False)
    answers, received = [], []
    for i in range(n):
        t0 = time.perf_counter()
        assert sender.send(user, {"i": i}) is True
        answers.append(time.perf_counter() - t0)
        assert ws.recv_json(5)["data"]["i"] == i
        received.append(time.perf_counter() - t0)
    ws.close_socket()

    def ms(xs):
        xs = sorted(xs)
        return f"p50 {statistics.median(xs) * 1000:.2f} ms, p99 {xs[int(len(xs) * 0.99)] * 1000:.2f} ms"

    return f"answer {ms(answers)}; received {ms(received)}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sends", type=int, default=300)
    n = ap.parse_args().sends
    procs, etcd = [], None
    try:
        one = WarrenProcess(gateway_args(), workers=1)
        procs.append(one)
        one.start()
        g = Gateway(one)
        print("single node:", measure(g, g, "solo", n))
        etcd = EtcdProcess().start()
        nodes = {}
        for name in "abc":
            p = WarrenProcess(gateway_args("--node-name", name, "--cluster-name", "c1", "--etcd-endpoints",
                                           etcd.endpoint, "--etcd-lease-ttl", "2"), workers=1)
            procs.append(p)
            p.start()
            nodes[name] = Gateway(p)
        deadline = time.monotonic() + 10
        while not (slots := balanced(etcd.endpoint, ["a", "b", "c"])):
            assert time.monotonic() < deadline, "the shard map did not settle"
            time.sleep(0.1)
        time.sleep(0.5)
        user = user_owned_by(slots, "a", "bench")
        for send, tab in (("a", "a"), ("b", "a"), ("b", "c")):
            print(f"owner a, send on {send}, tab on {tab}:", measure(nodes[send], nodes[tab], user, n))
    finally:
        for p in procs:
            p.stop(check=False)
        if etcd:
            etcd.cleanup()


if __name__ == "__main__":
    main()
