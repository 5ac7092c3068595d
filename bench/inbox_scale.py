#!/usr/bin/python3
"""Durable inboxes at scale (docs/benchmarks.md, "Durable inboxes"): many users who are away, each with events held
on disk, on build/warren (--workers 2, a temporary data dir).

    /usr/bin/python3 bench/inbox_scale.py [--users 1000000] [--events 10] [--rate 0] [--keep]

1. Fill: warren-msggen sends users*events messages over AMQP (warren.users, publisher confirms) to users picked
   uniformly from user-0..N-1, so each user holds `events` on average. RSS before and after: the memory an
   offline user's inbox costs.
2. Resume: 1000 events to one user, a restart (SIGTERM, start; the ports file is written once recovery is done),
   then the time of GET /poll?since=0 for that user, answered from the store (median of 20).
3. Restart time with everything on disk (the stop, and the start until the ports file is written: recovery
   included), and RSS after it. The broker's log (kept with --keep) has the store's and the gateway's recovery
   times.
4. Sends: warren-msggen over HTTP at 20 000 sends/s to 100 000 users who are away, 10 s, 256 connections with one
   request each in flight (the gateway answers one request at a time per connection, and an answer comes after
   the fsync of the event's record, so pipelined requests would wait behind each other's fsync); p99 answer
   latency.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.warren_process import WarrenProcess  # noqa: E402
from support.ws_client import http_request, make_jwt, query  # noqa: E402

SECRET = "inbox-bench-secret-0123456789abcdef"
MSGGEN = str(REPO / "build" / "warren-msggen")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def msggen(*args: str) -> dict:
    out = subprocess.run([MSGGEN, "--json", *args], capture_output=True, text=True, check=False)
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"warren-msggen failed ({out.returncode}): {out.stderr[-2000:]}")
    return lines[-1]


def data_mb(proc: WarrenProcess) -> float:
    return sum(p.stat().st_size for p in proc.data_dir.rglob("*.seg")) / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=10)
    ap.add_argument("--rate", type=float, default=0, help="fill rate, messages/s (0: as fast as confirms allow)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    results: dict[str, float] = {}
    proc = WarrenProcess(["--jwt-secret", SECRET], workers=2)
    try:
        proc.start()
        rss0 = rss_mb(proc.pid)
        total = args.users * args.events
        t0 = time.monotonic()
        fill = msggen("--via", "amqp", "--amqp-port", str(proc.amqp_port), "-n", str(args.users), "-C", str(total),
                      "-r", str(args.rate), "-z", "100000", "-c", "4", "--pad", "40")
        fill_s = time.monotonic() - t0
        print(f"fill: {total} events to {args.users} users in {fill_s:.1f} s ({total / fill_s:.0f}/s): {fill}")
        time.sleep(2)
        rss1 = rss_mb(proc.pid)
        results.update(rss_before_mb=rss0, rss_filled_mb=rss1, bytes_per_offline_user=(rss1 - rss0) * 1048576 /
                       args.users, segments_mb=data_mb(proc))
        print(f"RSS {rss0:.0f} MB empty, {rss1:.0f} MB with {args.users} users away: "
              f"{results['bytes_per_offline_user']:.0f} bytes per user; {results['segments_mb']:.0f} MB of segments")

        big = msggen("-p", str(proc.web_port), "-n", "1", "--user-prefix", "big-", "-C", "1000", "-r", "0")
        print(f"1000 events to big-0: {big.get('answered', big)}")
        t0 = time.monotonic()
        proc.stop()
        stop_s = time.monotonic() - t0
        t0 = time.monotonic()
        proc.start(timeout=300)
        restart_s = time.monotonic() - t0
        results.update(stop_s=stop_s, restart_s=restart_s, rss_restarted_mb=rss_mb(proc.pid))
        print(f"restart with {results['segments_mb']:.0f} MB of inboxes: stop {stop_s:.1f} s, start to listening "
              f"{restart_s:.1f} s, RSS {results['rss_restarted_mb']:.0f} MB")
        token = make_jwt(SECRET, "big-0")
        times = []
        for _ in range(20):
            t0 = time.monotonic()
            r = http_request(proc.web_port, "GET", query("/poll", token=token, since=0, timeout=0), timeout=10)
            times.append((time.monotonic() - t0) * 1000)
            assert r.status == 200 and len(r.json()) == 1000, (r.status, len(r.body))
        results.update(resume_1000_first_ms=times[0], resume_1000_median_ms=statistics.median(times))
        print(f"resume of 1000 held events from 0 (long-poll, HTTP round trip included): first {times[0]:.2f} ms, "
              f"median {statistics.median(times):.2f} ms")

        sends = msggen("-p", str(proc.web_port), "-n", "100000", "--user-prefix", "away-", "-r", "20000", "-z",
                       "10", "-c", "256", "--pipeline", "1")
        results.update(send_p50_ms=sends["response_us"]["p50"] / 1000, send_p99_ms=sends["response_us"]["p99"] / 1000,
                       send_max_ms=sends["response_us"]["max"] / 1000)
        print(f"20 000 sends/s to 100 000 users away: {sends}")
        results["rss_end_mb"] = rss_mb(proc.pid)
        proc.stop()
    finally:
        proc.kill()
        if not args.keep:
            proc.cleanup()
        else:
            print(f"kept {proc.tmp}")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
