"""A real etcd (Debian's etcd-server) for the cluster tests: free loopback ports, a temp data dir, started and
stopped by the test. stop() kills it (SIGKILL, as a crash); start() again brings it back on the same ports and
data, so a test can take etcd away from the nodes and give it back.

A member of a multi-member etcd is the same class with `name`, `host`, fixed ports and `initial_cluster`
("e1=http://ip:2380,..."); `prefix` runs it inside a network namespace (tests/support/netns.py)."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EtcdProcess:
    def __init__(self, binary: str = "etcd", name: str = "test", host: str = "127.0.0.1",
                 client_port: int | None = None, peer_port: int | None = None, initial_cluster: str | None = None,
                 prefix: list[str] | None = None, extra: list[str] | None = None):
        if shutil.which(binary) is None:
            raise RuntimeError("etcd not found: run scripts/install-deps (Debian's etcd-server)")
        self.binary = binary
        self.name = name
        self.host = host
        self.tmp = Path(tempfile.mkdtemp(prefix="warren-etcd-"))
        self.client_port = client_port or free_port()
        self.peer_port = peer_port or free_port()
        self.initial_cluster = initial_cluster
        self.prefix = list(prefix or [])
        self.extra = list(extra or [])
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    def launch(self) -> "EtcdProcess":
        """Starts the process without waiting: the members of a new multi-member etcd become healthy only once a
        majority of them runs."""
        client, peer = self.endpoint, self.peer_url
        state = "existing" if (self.tmp / "data" / "member").is_dir() else "new"
        log = open(self.tmp / "etcd.log", "ab")
        self.proc = subprocess.Popen(
            [*self.prefix, self.binary, "--name", self.name, "--data-dir", str(self.tmp / "data"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", self.initial_cluster or f"{self.name}={peer}",
             "--initial-cluster-state", state, "--log-level", "warn", *self.extra],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        return self

    def wait_healthy(self, timeout: float = 10.0) -> "EtcdProcess":
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.healthy():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"etcd not healthy within {timeout} s:\n{self.log_tail()}")

    def start(self, timeout: float = 10.0) -> "EtcdProcess":
        return self.launch().wait_healthy(timeout)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + "/health", timeout=1) as r:
                return json.loads(r.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def call(self, path: str, body: dict) -> dict:
        """POSTs to the JSON gateway, as the nodes do (for checks from the test)."""
        req = urllib.request.Request(self.endpoint + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.tmp / "etcd.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
