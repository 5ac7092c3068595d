#!/usr/bin/env python3
"""What Warren would do on 16 and 64 cores, from per-message costs measured here (issue 14, item 6).

Runs the real broker with 1, 2, 4 and 8 workers (more workers than this machine's cores is fine: the
figure taken is CPU time per message, not throughput) and drives it with rmq-perf (rabbitmq-c), reading
the broker's CPU time and each thread's over the window. For each row it fits

    cpu_per_msg(N) = local + cross * (N - 1) / N

where `local` is what a message costs when everything it touches is on one worker and `cross` what
the hand-offs between workers add when none of it is: with N workers, a connection or a queue is on a
given worker with probability 1/N, so a fraction (N-1)/N of each hop crosses. It also takes, from the
one-queue row, the busiest worker's CPU per message: the ceiling of one queue (a queue is one worker's).

Predictions for N cores (printed for 16 and 64):
  - broker capacity, every core busy: N / cpu_per_msg(N) messages per second;
  - a workload of Q equally busy queues: bounded by the worker holding the most of them, since queues
    are placed by hash (the placement of the row's real queue names is computed, and the expected
    largest bin for Q queues over N workers by simulation);
  - the smaller of the two.
What the model leaves out is said in docs/benchmarks.md next to its figures.

Usage: bench/core_model.py [--bin build/warren] [--workers 1,2,4,8] [--runs 3] [--seconds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ROWS = {
    # name: (rmq-perf args, queue count)
    "ack50": (["-s", "16", "-q", "200", "--ack-every", "50"], 1),
    "queues8": (["--producers", "8", "--consumers", "8", "--queues", "8"], 8),
}


def fnv1a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def worker_of(vhost: str, queue: str, workers: int) -> int:
    """The worker a queue is placed on (broker: FNV-1a of vhost, NUL, queue name, modulo workers)."""
    return fnv1a(vhost.encode() + b"\0" + queue.encode()) % workers


def expected_largest_bin(queues: int, workers: int, trials: int = 20000) -> float:
    rng = random.Random(1)
    total = 0
    for _ in range(trials):
        bins = [0] * workers
        for _ in range(queues):
            bins[rng.randrange(workers)] += 1
        total += max(bins)
    return total / trials


def one_run(binary: str, rmq_perf: str, workers: int, seconds: float, args: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as d:
        ports = Path(d) / "ports"
        proc = subprocess.Popen(
            [binary, "--data-dir", f"{d}/data", "--amqp-port", "0", "--http-port", "0", "--web-port", "0",
             "--prometheus-port", "0", "--bind", "127.0.0.1", "--ports-file", str(ports), "--log-level", "warn",
             "--workers", str(workers)])
        try:
            for _ in range(100):
                if ports.exists() and ports.stat().st_size:
                    break
                time.sleep(0.1)
            port = json.loads(ports.read_text())["amqp"]
            out = subprocess.run([rmq_perf, "--port", str(port), "-z", str(seconds), "--warmup", "2",
                                  "--broker-pid", str(proc.pid), *args],
                                 check=True, capture_output=True, text=True).stdout
            return json.loads(out.strip().splitlines()[-1])
        finally:
            proc.terminate()
            proc.wait(10)


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares of cpu = local + cross * x, x = (N-1)/N."""
    xs = [(n - 1) / n for n, _ in points]
    ys = [c for _, c in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    cross = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return my - cross * mx, cross


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(ROOT / "build" / "warren"))
    ap.add_argument("--rmq-perf", default=os.environ.get("RMQ_PERF", str(ROOT / "build" / "rmq-perf")))
    ap.add_argument("--workers", default="1,2,4,8")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--predict", default="16,64")
    a = ap.parse_args()
    workers = [int(w) for w in a.workers.split(",")]
    rows = a.rows.split(",")

    results: dict[str, dict[int, list[dict]]] = {r: {w: [] for w in workers} for r in rows}
    for run in range(a.runs):  # interleaved, so drift on a noisy machine spreads over every point
        for row in rows:
            for w in workers:
                j = one_run(a.bin, a.rmq_perf, w, a.seconds, ROWS[row][0])
                results[row][w].append(j)
                print(f"run {run + 1} {row} workers={w}: {j['consume_rate']:.0f} msg/s, "
                      f"{j['broker_cpu_us_per_msg']:.3f} us/msg, threads {j.get('broker_thread_cores')}",
                      flush=True)

    summary = {}
    for row in rows:
        print(f"\n== {row} (median of {a.runs})")
        print(f"{'workers':>8} {'msg/s':>10} {'cpu us/msg':>11} {'busiest us/msg':>15}")
        points = []
        for w in workers:
            runs = results[row][w]
            rate = statistics.median(r["consume_rate"] for r in runs)
            cpu = statistics.median(r["broker_cpu_us_per_msg"] for r in runs)
            # The busiest worker thread's CPU per message: a queue's worker when there is one queue.
            busiest = statistics.median(
                max((v for k, v in r["broker_thread_cores"].items() if k.startswith("worker")), default=0.0)
                * 1e6 / r["consume_rate"] for r in runs)
            points.append((w, cpu))
            print(f"{w:>8} {rate:>10.0f} {cpu:>11.3f} {busiest:>15.3f}")
        local, cross = fit(points)
        worst = max(abs(c - (local + cross * (n - 1) / n)) for n, c in points)
        print(f"fit: cpu_per_msg(N) = {local:.3f} + {cross:.3f} * (N-1)/N us (largest residual {worst:.3f} us)")
        summary[row] = {"local_us": local, "cross_us": cross, "points": points, "residual_us": worst}

    # A queue's ceiling: the one-queue row's queue worker (its thread is named after the worker the
    # hash places the queue on) at the largest worker count measured, where the two connections are
    # least likely to share that worker; if they do, its cost is overstated and the ceiling understated.
    ceiling = None
    if "ack50" in summary:
        w = max(workers)
        name = f"worker-{worker_of('/', 'rmq-perf-0', w)}"
        shares = [sum(v for k, v in r["broker_thread_cores"].items() if k.split("/")[0] == name) * 1e6
                  / r["consume_rate"] for r in results["ack50"][w]]
        queue_us = statistics.median(shares)
        if queue_us > 0:
            ceiling = 1e6 / queue_us
            print(f"\none queue's worker ({name} of {w}): {queue_us:.3f} us/msg -> ceiling {ceiling:.0f} msg/s")

    print("\n== predictions")
    for n in (int(x) for x in a.predict.split(",")):
        for row in rows:
            s = summary[row]
            cpu = s["local_us"] + s["cross_us"] * (n - 1) / n
            capacity = n * 1e6 / cpu
            q = ROWS[row][1]
            real_bins = [0] * n
            for i in range(q):
                real_bins[worker_of("/", f"rmq-perf-{i}", n)] += 1
            line = (f"{n:>3} cores, {row}: {cpu:.3f} us/msg -> capacity {capacity / 1e6:.2f} M msg/s with every "
                    f"core busy")
            if ceiling:
                by_queues = q * ceiling / max(real_bins)
                expected = q * ceiling / expected_largest_bin(q, n)
                line += (f"; {q} queue(s): at most {by_queues / 1e6:.2f} M msg/s with these names "
                         f"(largest bin {max(real_bins)}), {expected / 1e6:.2f} M for random names; "
                         f"bound {min(capacity, by_queues) / 1e6:.2f} M")
            print(line)
        many = summary.get("queues8") or next(iter(summary.values()))
        capacity = n * 1e6 / (many["local_us"] + many["cross_us"] * (n - 1) / n)
        for q in (n, 4 * n):
            if not ceiling:
                break
            largest = expected_largest_bin(q, n, 2000)
            by_queues = q * ceiling / largest
            print(f"{n:>3} cores, {q} equally busy queues: {by_queues / 1e6:.2f} M msg/s by the queues' workers "
                  f"(expected largest bin {largest:.2f}); bound {min(capacity, by_queues) / 1e6:.2f} M")

if __name__ == "__main__":
    main()
