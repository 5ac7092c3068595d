#!/usr/bin/python3
"""The kill -9 loop at length: start warren, then per cycle publish persistent messages with confirms and consume
them with manual acks while the broker is killed with SIGKILL after 0.2-1.5 s and started again on the same data
dir; after the last cycle drain the queue and judge. The rules (lost, duplicates, corrupt) are in
tests/support/kill9_loop.py, shared with tests/integration/test_durability_kill9.py.

    /usr/bin/python3 bench/kill9_loop.py --cycles 100 [--seed N] [--workers 2] [--keep] [--gateway]

--gateway runs the web gateway's variant instead (tests/support/kill9_gateway.py): sends to a user's inbox over
HTTP and AMQP with confirmed answers, a WebSocket and an SSE reader resuming from their last seq after each kill.

WARREN_BIN (default build/warren) picks the binary. One line per cycle, then the totals; the exit status is 1 if
any confirmed message was lost or any other rule was broken, 0 otherwise. The temp dir (data, logs of every
lifetime) is kept on failure or with --keep.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support import kill9_gateway, kill9_loop  # noqa: E402
from support.warren_process import WarrenProcess  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=100)
    ap.add_argument("--seed", type=int, default=None, help="for the kill times and ack batches (default: time)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir even when every rule held")
    ap.add_argument("--gateway", action="store_true", help="the web gateway's variant (inbox sends and readers)")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else time.time_ns() % 1_000_000_007
    print(f"kill9_loop: {args.cycles} cycles, seed {seed}", flush=True)

    proc = WarrenProcess(kill9_gateway.ARGS if args.gateway else [], workers=args.workers)
    started = time.monotonic()
    failures: list[str] = []
    try:
        proc.start()
        loop = kill9_gateway if args.gateway else kill9_loop
        summary = loop.run(proc, args.cycles, random.Random(seed), lambda line: print(line, flush=True))
        if args.gateway:
            print(summary)
        failures += summary.failures()
        proc.stop()  # the last lifetime ends with SIGTERM: exit 0 is checked too
    except AssertionError as e:  # WarrenError: the broker did not start, or crashed, or did not stop cleanly
        failures.append(str(e))
    finally:
        proc.kill()
    print(f"elapsed {time.monotonic() - started:.1f} s, seed {seed}")
    for f in failures:
        print(f"FAILED: {f}")
    if failures or args.keep:
        print(f"temp dir kept: {proc.tmp}")
        if failures:
            print(proc.log_tail())
    else:
        proc.cleanup()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
