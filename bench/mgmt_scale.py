#!/usr/bin/python3
"""The management API at scale, Warren and RabbitMQ 3.10 (Debian's rabbitmq-server with its management plugin) side
by side on the same queues:

  - the unpaged list of 10 000 queues (GET /api/queues), as rabbitmqadmin list queues asks for it;
  - the first page of 100 000 queues (GET /api/queues?page=1&page_size=100), as the dashboards ask for it;
  - /api/overview with 100 000 queues;
  - warren-perf's latency20k (1 producer paced at 20 000 msg/s, 1 consumer) with and without a dashboard polling
    every 5 s (overview with its charts, the first page of queues, nodes), alternated, medians of the p99;
  - resident memory per queue, idle.

Usage: /usr/bin/python3 bench/mgmt_scale.py [--queues 100000] [--unpaged 10000] [--repeat 3] [--duration 15]
                                            [--brokers warren,rabbitmq] [--out FILE]
Everything runs on 127.0.0.1 on free ports with temporary data directories and is stopped at the end. Prints a
Markdown table (and writes it to --out). RabbitMQ is started with tests/support/reference_rabbitmq.sh."""

import argparse
import base64
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pika

ROOT = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("BUILD_DIR", ROOT / "build"))
AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()
POLL = ["/api/overview?lengths_age=600&lengths_incr=5&msg_rates_age=600&msg_rates_incr=5",
        "/api/queues?page=1&page_size=100", "/api/nodes"]


def log(*a):
    print("==", *a, file=sys.stderr, flush=True)


class Broker:
    def __init__(self, kind: str, tmp: Path):
        self.kind, self.tmp = kind, tmp
        self.proc = None

    def start(self):
        if self.kind == "warren":
            data = self.tmp / "warren"
            data.mkdir()
            self.proc = subprocess.Popen(
                [str(BUILD / "warren"), "--data-dir", str(data), "--amqp-port", "0", "--http-port", "0",
                 "--web-port", "0", "--prometheus-port", "0", "--ports-file", str(data / "ports")],
                stdout=subprocess.DEVNULL, stderr=open(data / "stderr.log", "w"))
            for _ in range(200):
                if (data / "ports").exists():
                    break
                time.sleep(0.05)
            ports = json.loads((data / "ports").read_text())
            self.amqp, self.http, self.pid = ports["amqp"], ports["http"], self.proc.pid
        else:
            out = subprocess.run([str(ROOT / "tests/support/reference_rabbitmq.sh"), "start", str(self.tmp / "rmq")],
                                 capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            self.amqp, self.http = (int(x) for x in out.split(","))
            self.pid = int((self.tmp / "rmq" / "pid").read_text().strip())

    def stop(self):
        if self.kind == "warren":
            self.proc.terminate()
            self.proc.wait(30)
        else:
            subprocess.run([str(ROOT / "tests/support/reference_rabbitmq.sh"), "stop", str(self.tmp / "rmq")],
                           capture_output=True)

    def rss(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def get(self, path: str, conn=None):
        """(seconds, status, body bytes) of one GET."""
        c = conn or http.client.HTTPConnection("127.0.0.1", self.http, timeout=600)
        t = time.perf_counter()
        c.request("GET", path, headers={"Authorization": AUTH})
        r = c.getresponse()
        body = r.read()
        took = time.perf_counter() - t
        if conn is None:
            c.close()
        return took, r.status, body


def declare(b: Broker, start: int, end: int, threads: int = 4):
    def work(lo, hi):
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.amqp, heartbeat=0))
        ch = conn.channel()
        for i in range(lo, hi):
            ch.queue_declare(f"scale-{i:06d}")
        conn.close()
    step = (end - start + threads - 1) // threads
    ts = [threading.Thread(target=work, args=(lo, min(lo + step, end))) for lo in range(start, end, step)]
    t = time.monotonic()
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    log(f"{b.kind}: declared {end - start} queues in {time.monotonic() - t:.1f} s")


def timed(b: Broker, path: str, runs: int):
    conn = http.client.HTTPConnection("127.0.0.1", b.http, timeout=600)
    times, size = [], 0
    for _ in range(runs):
        took, status, body = b.get(path, conn)
        assert status == 200, (path, status, body[:200])
        times.append(took)
        size = len(body)
    conn.close()
    return statistics.median(times), size, json.loads(body)


class Poller(threading.Thread):
    """Polls what a dashboard polls, every 5 s, until stopped; keeps the request times."""

    def __init__(self, b: Broker):
        super().__init__(daemon=True)
        self.b, self.stop_ev, self.times = b, threading.Event(), []

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.b.http, timeout=600)
        while not self.stop_ev.is_set():
            for p in POLL:
                self.times.append(self.b.get(p, conn)[0])
            self.stop_ev.wait(5)
        conn.close()


def latency(b: Broker, duration: float, poll: bool) -> float:
    poller = Poller(b) if poll else None
    if poller:
        poller.start()
    out = subprocess.run([str(BUILD / "warren-perf"), "--port", str(b.amqp), "--scenario", "latency20k",
                          "-z", str(duration), "--json"], capture_output=True, text=True, timeout=duration + 120)
    if poller:
        poller.stop_ev.set()
        poller.join()
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return r["latency_us"]["p99"] / 1000.0


def measure(kind: str, args, tmp: Path) -> dict:
    b = Broker(kind, tmp)
    b.start()
    res = {}
    try:
        time.sleep(1)
        rss0 = b.rss()
        declare(b, 0, args.unpaged)
        res["unpaged_s"], res["unpaged_bytes"], body = timed(b, "/api/queues", 5)
        assert len(body) >= args.unpaged, len(body)
        declare(b, args.unpaged, args.queues)
        # RabbitMQ's management collects queue stats every 5 s: let it catch up before timing it.
        time.sleep(10)
        res["rss_per_queue"] = (b.rss() - rss0) / args.queues
        res["paged_s"], _, page = timed(b, "/api/queues?page=1&page_size=100", 10)
        assert page["total_count"] >= args.queues and len(page["items"]) == 100, page.get("total_count")
        res["overview_s"], _, _ = timed(b, POLL[0], 5)
        quiet, polled = [], []
        for _ in range(args.repeat):
            quiet.append(latency(b, args.duration, False))
            polled.append(latency(b, args.duration, True))
        res["p99_quiet_ms"], res["p99_polled_ms"] = statistics.median(quiet), statistics.median(polled)
        res["p99_runs"] = (quiet, polled)
        log(f"{kind}: {res}")
    finally:
        b.stop()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--queues", type=int, default=100_000)
    ap.add_argument("--unpaged", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--duration", type=float, default=15)
    ap.add_argument("--brokers", default="warren,rabbitmq")
    ap.add_argument("--out")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mgmt-scale-"))
    os.chmod(tmp, 0o755)  # RabbitMQ runs as its own user
    results = {}
    try:
        for kind in args.brokers.split(","):
            (tmp / kind).mkdir()
            os.chmod(tmp / kind, 0o777)
            results[kind] = measure(kind, args, tmp / kind)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    rows = [("GET /api/queues, %d queues (unpaged), median of 5" % args.unpaged, "unpaged_s", 1000, "ms"),
            ("GET /api/queues?page=1&page_size=100, %d queues, median of 10" % args.queues, "paged_s", 1000, "ms"),
            ("GET /api/overview (with charts), %d queues, median of 5" % args.queues, "overview_s", 1000, "ms"),
            ("latency20k p99, quiet (median of %d)" % args.repeat, "p99_quiet_ms", 1, "ms"),
            ("latency20k p99, dashboard polling every 5 s (median of %d)" % args.repeat, "p99_polled_ms", 1, "ms"),
            ("resident memory per idle queue", "rss_per_queue", 1, "B")]
    kinds = list(results)
    lines = [f"commit {commit}, {args.queues} queues, `bench/mgmt_scale.py`", "",
             "| | " + " | ".join(kinds) + (" | ratio |" if len(kinds) == 2 else " |"),
             "|---|" + "--:|" * (len(kinds) + (1 if len(kinds) == 2 else 0))]
    for label, key, scale, unit in rows:
        vals = [results[k][key] * scale for k in kinds]
        cells = [(f"{v:,.3f} {unit}" if v < 10 else f"{v:,.1f} {unit}") if unit == "ms" else f"{v:,.0f} {unit}"
                 for v in vals]
        ratio = ""
        if len(vals) == 2 and vals[0] > 0:
            ratio = f" {vals[1] / vals[0]:.1f}x |"
        lines.append(f"| {label} | " + " | ".join(cells) + " |" + ratio)
    for k in kinds:
        q, p = results[k]["p99_runs"]
        lines.append(f"\n{k} latency20k p99 runs (ms): quiet {', '.join(f'{x:.3f}' for x in q)}; polled "
                     f"{', '.join(f'{x:.3f}' for x in p)}")
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
