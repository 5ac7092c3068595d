#!/usr/bin/python3
"""Memory per remembered deduplication id: start warren, declare an x-message-deduplication exchange with room for
N ids and no bindings, publish N messages with distinct x-deduplication-header values (36-character UUID-like ids),
and report the server's RSS growth per id. A control run publishes the same messages to an exchange that does not
deduplicate, so what publishing itself leaves behind (allocator arenas, mailbox nodes) is subtracted.

    /usr/bin/python3 bench/dedup_memory.py [--ids 1000000] [--workers 2]

WARREN_BIN (default build/warren) picks the binary. The last line printed is a row for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pika

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.warren_process import WarrenProcess  # noqa: E402


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def run(ids: int, workers: int, dedup: bool) -> tuple[int, int, float]:
    """(RSS before in KiB, RSS after in KiB, seconds publishing)."""
    with WarrenProcess([], workers=workers) as w:
        c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", w.amqp_port))
        ch = c.channel()
        if dedup:
            ch.exchange_declare("x", "x-message-deduplication", arguments={"x-cache-size": ids})
        else:
            ch.exchange_declare("x", "fanout")
        ch.queue_declare("sync")  # a round trip on this channel: everything before it was handled
        time.sleep(0.5)
        before = rss_kib(w.pid)
        start = time.monotonic()
        for i in range(ids):
            ch.basic_publish("x", "", b"", pika.BasicProperties(
                headers={"x-deduplication-header": f"{i:08x}-0000-4000-8000-{i:012x}"}))
        ch.queue_declare("sync", passive=True)
        took = time.monotonic() - start
        time.sleep(0.5)
        after = rss_kib(w.pid)
        c.close()
        return before, after, took


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ids", type=int, default=1_000_000)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    cb, ca, ct = run(a.ids, a.workers, dedup=False)
    db, da, dt = run(a.ids, a.workers, dedup=True)
    control = (ca - cb) * 1024
    grown = (da - db) * 1024
    print(f"control (fanout, no dedup): RSS {cb / 1024:.1f} -> {ca / 1024:.1f} MiB, {ct:.1f} s")
    print(f"dedup exchange:             RSS {db / 1024:.1f} -> {da / 1024:.1f} MiB, {dt:.1f} s")
    per_id = (grown - control) / a.ids
    print(f"| {commit} | {a.ids:,} | {db / 1024:.1f} -> {da / 1024:.1f} MiB | {cb / 1024:.1f} -> {ca / 1024:.1f} MiB "
          f"| {per_id:.1f} B | {a.ids / dt:,.0f} /s vs {a.ids / ct:,.0f} /s |")


if __name__ == "__main__":
    main()
