"""A real etcd (Debian's etcd-server) for the cluster tests: free loopback ports, a temp data dir, started and
stopped by the test. stop() kills it (SIGKILL, as a crash); start() again brings it back on the same ports and
data, so a test can take etcd away from the nodes and give it back."""

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
    def __init__(self, binary: str = "etcd"):
        if shutil.which(binary) is None:
            raise RuntimeError("etcd not found: run scripts/install-deps (Debian's etcd-server)")
        self.binary = binary
        self.tmp = Path(tempfile.mkdtemp(prefix="warren-etcd-"))
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self, timeout: float = 10.0) -> "EtcdProcess":
        client, peer = self.endpoint, f"http://127.0.0.1:{self.peer_port}"
        log = open(self.tmp / "etcd.log", "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--name", "test", "--data-dir", str(self.tmp / "data"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"test={peer}", "--log-level", "warn"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.healthy():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"etcd not healthy within {timeout} s:\n{self.log_tail()}")

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
