"""warren-flood and warren-msggen against the real gateway: counts must add up end to end. Flood users connect
over WebSocket or SSE with HS256 tokens; msggen sends over HTTP (POST /api/send, /api/rooms/R/publish) or AMQP
(warren.users, warren.rooms) with its send time in each message; the flood's summary must account for every
routed message, in sequence, with a latency for each."""

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from support.warren_process import warren_bin

BUILD = Path(warren_bin()).parent
FLOOD = Path(os.environ.get("WARREN_FLOOD_BIN", BUILD / "warren-flood"))
MSGGEN = Path(os.environ.get("WARREN_MSGGEN_BIN", BUILD / "warren-msggen"))
SECRET = "integration-secret"


class Flood:
    """A warren-flood process with --json: its lines are read in a thread; wait_for() polls the last tick."""

    def __init__(self, port: int, *args: str, duration: float = 30):
        if not FLOOD.exists():
            pytest.skip(f"{FLOOD} not built")
        self.proc = subprocess.Popen([str(FLOOD), "--port", str(port), "--json", "-z", str(duration), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.tick: dict = {}
        self.summary: dict | None = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            j = json.loads(line)
            if j["type"] == "tick":
                self.tick = j
            elif j["type"] == "summary":
                self.summary = j

    def wait_for(self, pred, timeout: float = 15) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.tick and pred(self.tick):
                return self.tick
            assert self.proc.poll() is None, f"warren-flood ended early: {self.proc.stderr.read()}"
            time.sleep(0.1)
        raise AssertionError(f"timed out; last tick {self.tick}")

    def stop(self) -> tuple[int, dict]:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=15)
        self.reader.join(timeout=5)
        assert self.summary is not None, self.proc.stderr.read()
        return rc, self.summary


def msggen(*args: str, timeout: float = 30) -> dict:
    if not MSGGEN.exists():
        pytest.skip(f"{MSGGEN} not built")
    p = subprocess.run([str(MSGGEN), "--json", *args], capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.fixture
def gateway(warren_factory):
    return warren_factory("--jwt-secret", SECRET)


def test_websocket_users_get_every_message_sent_over_http(gateway):
    flood = Flood(gateway.web_port, "-n", "50", "--jwt-secret", SECRET, "--source-base", "127.7.0.1",
                  "--per-source", "20")
    flood.wait_for(lambda t: t["open"] == 50)
    m = msggen("--port", str(gateway.web_port), "-n", "50", "-r", "200", "-z", "2")
    assert m["sent"] == m["answered"] == m["ok"] == m["routed"] >= 390
    flood.wait_for(lambda t: t["messages"] == m["routed"])
    rc, s = flood.stop()
    assert rc == 0
    assert s["connected"] == 50 and s["lost"] == 0 and s["refused"] == 0
    assert s["messages"] == m["routed"]
    assert s["latency_us"]["count"] == m["routed"]
    assert 0 < s["latency_us"]["p50"] < 1_000_000
    assert s["seq_missing"] == 0 and s["seq_backwards"] == 0


def test_room_members_get_every_amqp_publish(gateway):
    flood = Flood(gateway.web_port, "-n", "20", "--jwt-secret", SECRET, "--room", "lobby", "--user-prefix",
                  "member-", "--source-base", "127.7.1.1")
    flood.wait_for(lambda t: t["open"] == 20 and t["joined"] == 20)
    m = msggen("--via", "amqp", "--amqp-port", str(gateway.amqp_port), "--room", "lobby", "-r", "100", "-z", "1",
               "-c", "1")
    assert m["sent"] == m["answered"] == m["routed"] >= 90
    flood.wait_for(lambda t: t["messages"] == 20 * m["sent"])
    rc, s = flood.stop()
    assert rc == 0
    assert s["joined"] == 20 and s["join_errors"] == 0
    assert s["messages"] == 20 * m["sent"] and s["seq_missing"] == 0


def test_sse_users_and_unroutable_sends(gateway):
    flood = Flood(gateway.web_port, "-t", "sse", "-n", "10", "--jwt-secret", SECRET, "--source-base", "127.7.2.1")
    flood.wait_for(lambda t: t["open"] == 10)
    m = msggen("--port", str(gateway.web_port), "-n", "10", "-r", "100", "-z", "1")
    assert m["routed"] == m["sent"]
    # Users nobody connected as: held in their inboxes all the same (routed), over HTTP and AMQP.
    h = msggen("--port", str(gateway.web_port), "-n", "10", "--first-user", "1000", "-r", "100", "-z", "1")
    assert h["routed"] == h["sent"] and h["unroutable"] == 0
    # Anonymous users are never sent to: answered, not routed; over AMQP, returned.
    u = msggen("--port", str(gateway.web_port), "-n", "10", "--user-prefix", "anonymous:", "-r", "100", "-z", "1")
    assert u["unroutable"] == u["sent"] and u["routed"] == 0
    a = msggen("--via", "amqp", "--amqp-port", str(gateway.amqp_port), "-n", "10", "--user-prefix", "anonymous:",
               "-r", "100", "-z", "1", "-c", "1")
    assert a["unroutable"] == a["sent"] and a["routed"] == 0
    flood.wait_for(lambda t: t["messages"] == m["routed"])
    rc, s = flood.stop()
    assert rc == 0 and s["messages"] == m["routed"] and s["seq_missing"] == 0


def test_wrong_secret_is_refused_with_401(gateway):
    flood = Flood(gateway.web_port, "-n", "5", "--jwt-secret", "not-the-secret", "--source-base", "127.7.3.1")
    flood.wait_for(lambda t: t["refused"] == 5)
    rc, s = flood.stop()
    assert rc == 1
    assert s["connected"] == 0 and s["refusals"] == {"401": 5}
