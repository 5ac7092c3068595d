"""Seed 000's flood, scaled down (bench/chat_flood.py runs the full size): idle AMQP connections and WebSockets,
1 MB publishers to a fanout exchange with 50 queues, connection and channel churn, and slowloris sockets on both
HTTP ports, for 20 s, while a well-behaved client publishes with confirms and consumes on a queue of its own.

Checked: the well-behaved client is never blocked (the flood's queues hold their own publishers back before
the memory alarm, which would block every publisher) and its p99 stays under a bound (loose: CI's machine has 2
cores shared with builds: 18 runs of 20 s on 2026-12-07, at a load average of 7-18, measured a p99 of 17-257 ms, and once
1.79 s, a stall of about 1.9 s that the binary before them also had once; the bench records the real figure against the 50 ms target; before the byte limits it was 4 s, blocked
by the alarm); no confirmed message is
lost; RSS stays under the watermark plus 25% (not under sanitizers, which keep freed memory in quarantine); every
slowloris socket is answered 408 and closed by the server's 10 s head deadline (a few seconds of slack: the
script's thread and the broker's tick lag on a loaded machine); the broker survives and exits cleanly; afterwards a
fresh connection publishes and consumes, the well-behaved client's p99 is back, and no queue of the run is left.
Under sanitizers (WARREN_SANITIZE) the flood is smaller and the bounds looser, to stay under a minute."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import chat_flood  # noqa: E402

SANITIZED = bool(os.environ.get("WARREN_SANITIZE"))


def flood_args() -> list[str]:
    if SANITIZED:
        return ["--seconds", "20", "--idle", "300", "--ws", "100", "--publishers", "4", "--churn", "4",
                "--slowloris", "5", "--size", str(256 * 1024), "--connect-rate", "500", "--after-seconds", "5",
                "--p99-ms", "5000", "--margin", "100", "--deadline-slack", "8"]
    return ["--seconds", "20", "--idle", "1000", "--ws", "200", "--publishers", "10", "--churn", "10",
            "--slowloris", "10", "--after-seconds", "5", "--p99-ms", "2000", "--margin", "0.25",
            "--deadline-slack", "6"]


def test_chat_flood_scaled_down():
    for binary in (chat_flood.PERF, chat_flood.FLOOD):
        if not binary.exists():
            pytest.skip(f"{binary} not built")
    args = chat_flood.parser().parse_args(flood_args())
    res = chat_flood.run(args)
    chat_flood.print_summary(res, args)
    good = res.get("good", {})
    assert good.get("blocked") == 0, "the well-behaved client was blocked: the flood reached the memory alarm"
    assert good.get("confirmed", 0) > 0 and good.get("confirmed_unreceived") == 0
    for name in ("mgmt", "web"):
        s = res["slowloris"][name]
        assert s["closed_by_server"] > 0 and s["answers"].get("408", 0) > 0, s
    assert res["failures"] == []
