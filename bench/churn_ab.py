#!/usr/bin/env python3
"""A/B of connection and channel churn between warren binaries, alternated on the same machine.

Each run starts a fresh `warren --workers W` on a temporary data dir and free ports and drives it
with `warren-perf --churn N --channel-cycles C` (each churning client opens a connection and a
channel, closes and reopens the channel C times, closes the connection, and again) for S seconds.
Prints every run, then per binary the medians of connection cycles per second and of the broker's
CPU time (user + system, from /proc) per channel closed (C + 1 per cycle: the last goes with the
connection).

Usage: /usr/bin/python3 bench/churn_ab.py [--runs 3] [--seconds 8] [--churn 4] [--channel-cycles 20]
                                          [--workers 2] BINARY...
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_port(port: int, limit: float = 10.0) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"churn_ab: the broker did not listen on {port}")


def one_run(binary: str, args: argparse.Namespace) -> tuple[float, float, int]:
    data = tempfile.mkdtemp(prefix="warren-churn-")
    port = free_port()
    broker = subprocess.Popen(
        [binary, "--workers", str(args.workers), "--data-dir", data, "--amqp-port", str(port),
         "--http-port", "0", "--web-port", "0", "--prometheus-port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        before = cpu_seconds(broker.pid)
        out = subprocess.run(
            [str(ROOT / "build/warren-perf"), "--uri", f"amqp://guest:guest@127.0.0.1:{port}/", "-x", "0",
             "-y", "0", "--churn", str(args.churn), "--channel-cycles", str(args.channel_cycles),
             "-z", str(args.seconds), "--json"],
            capture_output=True, text=True, check=True)
        spent = cpu_seconds(broker.pid) - before
    finally:
        broker.terminate()
        broker.wait()
        shutil.rmtree(data, ignore_errors=True)
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    cycles = summary.get("churn_cycles", 0)
    closes = cycles * (args.channel_cycles + 1)
    return cycles / args.seconds, spent * 1e6 / max(1, closes), summary.get("churn_failed", 0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("binaries", nargs="+")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--churn", type=int, default=4)
    p.add_argument("--channel-cycles", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    results: dict[str, list[tuple[float, float, int]]] = {b: [] for b in args.binaries}
    for run in range(args.runs):
        for b in args.binaries:
            r = one_run(b, args)
            results[b].append(r)
            print(f"{b} run {run + 1}: {r[0]:.0f} connection cycles/s, {r[1]:.1f} us broker CPU per channel "
                  f"closed, {r[2]} failed", flush=True)
    print("| binary | runs | connection cycles/s (median) | broker CPU us per channel closed (median) |")
    print("| --- | ---: | ---: | ---: |")
    for b, rs in results.items():
        print(f"| {b} | {len(rs)} | {statistics.median(r[0] for r in rs):,.0f} | "
              f"{statistics.median(r[1] for r in rs):.1f} |")


if __name__ == "__main__":
    main()
