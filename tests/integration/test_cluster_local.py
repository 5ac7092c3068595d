"""scripts/cluster-local as an operator runs it (README, "A cluster"): three etcd members and three Warren nodes on
this machine; every node lists the three as running, a user created on one node logs in on another, a node killed
is seen as not running by the others while the rest run on, and SIGTERM stops every process the script started."""

import base64
import json
import os
import random
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pika
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "cluster-local"
NODES = 3
SPAN = 6 * NODES  # etcd clients and peers, then four ports per Warren node


def free_range() -> int:
    """The first of SPAN consecutive loopback ports that are all free now."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - SPAN)
        socks = []
        try:
            for p in range(base, base + SPAN):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


def api(port, method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode())
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=5) as r:
        text = r.read()
        return json.loads(text) if text else None


def wait_until(fn, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as e:  # a node still starting or stopping
            last = e
        if last is True:
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def port_open(port) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(subprocess.run(["which", "etcd"], capture_output=True).returncode != 0,
                    reason="etcd (Debian's etcd-server) not installed")
def test_cluster_local_starts_three_nodes_and_stops_them(tmp_path):
    base = free_range()
    http = [base + 2 * NODES + 4 * i + 1 for i in range(NODES)]
    amqp = [base + 2 * NODES + 4 * i for i in range(NODES)]
    env = dict(os.environ)
    env.setdefault("WARREN_BIN", str(REPO_ROOT / "build" / "warren"))
    out = open(tmp_path / "out.txt", "w")
    proc = subprocess.Popen([str(SCRIPT), "--no-build", "--dir", str(tmp_path / "c"), "--ports-from", str(base),
                             "--", "--etcd-lease-ttl", "2"], stdout=out, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    try:
        wait_until(lambda: "cluster ready" in (tmp_path / "out.txt").read_text() or proc.poll() is not None and
                   f"exited {proc.returncode}: {(tmp_path / 'out.txt').read_text()}", 90, "cluster ready")
        for port in http:
            nodes = api(port, "GET", "nodes")
            assert sorted(n["name"] for n in nodes if n["running"]) == ["node0", "node1", "node2"], nodes

        # Users are the cluster's: created on node1, used on node2.
        api(http[1], "PUT", "users/op", {"password": "s3cret", "tags": "administrator"})
        api(http[1], "PUT", "permissions/%2F/op", {"configure": ".*", "write": ".*", "read": ".*"})

        def op_logs_in_on_node2():
            c = pika.BlockingConnection(pika.ConnectionParameters(
                "127.0.0.1", amqp[2], credentials=pika.PlainCredentials("op", "s3cret"), heartbeat=0))
            c.close()
            return True
        wait_until(op_logs_in_on_node2, 10, "the user made on node1 to log in on node2")

        # A node killed (kill -9) is seen as not running by the others once its 2 s lease is gone.
        import re
        pid = int(re.search(r"^node2 \(pid (\d+)\)", (tmp_path / "out.txt").read_text(), re.M).group(1))
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: {n["name"]: n["running"] for n in api(http[0], "GET", "nodes")}.get("node2") is False,
                   15, "node2 seen as not running")
        assert "ended (status" in (tmp_path / "out.txt").read_text() and proc.poll() is None
        # node1 still serves; SIGTERM to the script stops the rest.
        assert sorted(n["name"] for n in api(http[1], "GET", "nodes") if n["running"]) == ["node0", "node1"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        out.close()
    # Nothing it started is left: every port closed.
    wait_until(lambda: not any(port_open(p) for p in range(base, base + SPAN)), 20, "every port closed")


@pytest.mark.skipif(subprocess.run(["which", "etcd"], capture_output=True).returncode != 0,
                    reason="etcd (Debian's etcd-server) not installed")
def test_cluster_local_sigterm_stops_everything(tmp_path):
    base = free_range()
    env = dict(os.environ)
    env.setdefault("WARREN_BIN", str(REPO_ROOT / "build" / "warren"))
    out = open(tmp_path / "out.txt", "w")
    proc = subprocess.Popen([str(SCRIPT), "--no-build", "--nodes", "1", "--dir", str(tmp_path / "c"),
                             "--ports-from", str(base)], stdout=out, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    try:
        wait_until(lambda: "cluster ready" in (tmp_path / "out.txt").read_text() or proc.poll() is not None and
                   f"exited {proc.returncode}", 60, "cluster ready")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        out.close()
    wait_until(lambda: not any(port_open(p) for p in range(base, base + 6)), 20, "every port closed")
    text = (tmp_path / "c" / "node0.log").read_text()
    assert "node0" in text


def test_cluster_local_refuses_bad_arguments():
    r = subprocess.run([str(SCRIPT), "--nodes", "12", "--no-build"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "--nodes takes 1 to 5" in r.stderr
    r = subprocess.run([str(SCRIPT), "--bogus"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "unknown argument '--bogus'" in r.stderr
