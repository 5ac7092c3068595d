"""Runs the real warren binary for black-box tests: fresh temp data dir, every port 0, ports read from the
ports file, stdout/stderr captured to files, and a stop that fails unless warren exits 0 on SIGTERM.

For the durability tests one WarrenProcess is several lifetimes of the broker on the same data dir: restart()
stops it cleanly and starts it again, kill9() ends it with SIGKILL (not a failure: the test asked for it), and
start() after kill9() recovers from whatever the kill left on disk. The AMQP port may change at each start; read
amqp_port again after it. The logs of all lifetimes go to the same files, each start marked with a line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "build" / "warren"

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def warren_bin() -> str:
    return os.environ.get("WARREN_BIN", str(DEFAULT_BIN))


class WarrenError(AssertionError):
    pass


class WarrenProcess:
    """One warren process. Flags in `extra_args` replace the default value of the same flag;
    flags named in `omit` are left out (e.g. to let a --config file set them). `prefix` goes before the command
    (e.g. `ip netns exec NS` to run it in a network namespace: tests/support/netns.py); it must exec the binary,
    so that the pid is warren's."""

    def __init__(self, extra_args: list[str] | tuple[str, ...] = (), omit: tuple[str, ...] = (),
                 workers: int = 2, binary: str | None = None, prefix: list[str] | None = None,
                 env: dict[str, str] | None = None):
        self.binary = binary or warren_bin()
        self.env = {**os.environ, **env} if env else None  # more environment variables for the process
        self.prefix = list(prefix or [])
        self.tmp = Path(tempfile.mkdtemp(prefix="warren-it-"))
        self.data_dir = self.tmp / "data"
        self.ports_file = self.tmp / "ports.json"
        self.stderr_path = self.tmp / "stderr.log"
        self.stdout_path = self.tmp / "stdout.log"
        defaults = {
            "--amqp-port": "0",
            "--http-port": "0",
            "--web-port": "0",
            "--prometheus-port": "0",
            "--data-dir": str(self.data_dir),
            "--workers": str(workers),
            "--ports-file": str(self.ports_file),
            "--log-level": "info",
            "--bind": "127.0.0.1",
        }
        extra = list(extra_args)
        overridden = {a.split("=", 1)[0] for a in extra if a.startswith("--")}
        self.args: list[str] = []
        for flag, value in defaults.items():
            if flag in overridden or flag in omit:
                continue
            self.args += [flag, value]
        self.args += extra
        self.proc: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}
        self.stopped = False
        self.lifetimes = 0  # how many times the binary was started on this data dir

    # --- lifecycle ----------------------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> "WarrenProcess":
        """Start the binary (again, on the same data dir, after stop() or kill9()) and wait for its ports file."""
        if not os.path.exists(self.binary):
            raise WarrenError(f"warren binary not found at {self.binary} (set WARREN_BIN or build it)")
        if self.alive():
            raise WarrenError("start() while this warren is still running")
        # A previous lifetime's ports file would be read before the new one is written; a killed broker
        # cannot remove its own.
        self.ports_file.unlink(missing_ok=True)
        self.ports = {}
        self.lifetimes += 1
        self._stdout = open(self.stdout_path, "ab")
        self._stderr = open(self.stderr_path, "ab")
        if self.lifetimes > 1:
            for f in (self._stdout, self._stderr):
                f.write(f"--- test harness: start #{self.lifetimes} on the same data dir ---\n".encode())
                f.flush()
        self.stopped = False
        self.proc = subprocess.Popen([*self.prefix, self.binary, *self.args], stdin=subprocess.DEVNULL,
                                     stdout=self._stdout, stderr=self._stderr, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise WarrenError(f"warren exited with {self.proc.returncode} before writing its ports file\n"
                                  f"args: {self.args}\n{self.log_tail()}")
            if self.ports_file.exists():
                try:
                    self.ports = json.loads(self.ports_file.read_text())
                    break
                except (json.JSONDecodeError, OSError):
                    pass  # not renamed into place atomically: keep polling, the test will say so on timeout
            time.sleep(0.02)
        else:
            self.kill()
            raise WarrenError(f"warren did not write {self.ports_file} within {timeout} s\n{self.log_tail()}")
        # "web" is checked by test_lifecycle.py::test_ports_file only, so that one missing listener does not fail
        # every test.
        for key in ("amqp", "http"):
            if not isinstance(self.ports.get(key), int) or not 0 < self.ports[key] < 65536:
                self.stop(check=False)
                raise WarrenError(f"ports file lacks a valid {key!r} port: {self.ports}")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def amqp_port(self) -> int:
        return self.ports["amqp"]

    @property
    def http_port(self) -> int:
        return self.ports["http"]

    @property
    def web_port(self) -> int:
        return self.ports["web"]

    @property
    def prometheus_port(self) -> int:
        return self.ports["prometheus"]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self) -> None:
        if not self.alive():
            assert self.proc is not None
            raise WarrenError(f"warren is no longer running (exit code {self.proc.returncode})\n{self.log_tail()}")

    def send_signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, check: bool = True, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
        """Send `signum` and wait; with check, fail unless warren was running and exits 0 in time."""
        if self.stopped:
            return self.proc.returncode if self.proc else None
        self.stopped = True
        assert self.proc is not None
        problem = None
        rc = self.proc.poll()
        if rc is not None:
            problem = f"warren had already exited with {rc} (crash?) before it was asked to stop"
        else:
            self.proc.send_signal(signum)
            rc = self.wait(timeout)
            if rc is None:
                stacks = self.thread_stacks()
                self.proc.kill()
                self.proc.wait()
                problem = f"warren did not exit within {timeout} s of {signal.Signals(signum).name}\n{stacks}"
            elif rc != 0:
                problem = f"warren exited with {rc} after {signal.Signals(signum).name}"
        self._close_logs()
        if check and problem:
            raise WarrenError(f"{problem}\n{self.log_tail()}")
        return rc

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stopped = True
        self._close_logs()

    def kill9(self) -> None:
        """SIGKILL, as a crash would: no shutdown code runs. Fails if warren was not running (a broker that died
        on its own must not pass for one we killed). Afterwards stop() has nothing to check; start() again."""
        self.assert_alive()
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.stopped = True
        self._close_logs()

    def restart(self, timeout: float = START_TIMEOUT) -> "WarrenProcess":
        """A clean restart: SIGTERM (exit 0 within STOP_TIMEOUT, as stop() checks), then start on the same data
        dir. After kill9(), only the start."""
        if not self.stopped:
            self.stop()
        return self.start(timeout)

    def _close_logs(self) -> None:
        for f in (getattr(self, "_stdout", None), getattr(self, "_stderr", None)):
            if f is not None and not f.closed:
                f.close()

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- debugging ----------------------------------------------------------------------------------------

    def thread_stacks(self) -> str:
        """Every thread's stack of the running warren, by gdb (scripts/install-deps installs it): what a hang
        waits on, for a failure seen once in CI. Empty if gdb is missing or cannot attach."""
        if self.proc is None or self.proc.poll() is not None or shutil.which("gdb") is None:
            return ""
        try:
            out = subprocess.run(
                ["gdb", "-p", str(self.proc.pid), "-batch", "-nx", "-ex", "set pagination off",
                 "-ex", "thread apply all bt"],
                capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"--- gdb could not list the threads: {e} ---"
        lines = [l for l in out.stdout.splitlines() if l.startswith(("Thread ", "#"))]
        return "--- warren's threads (gdb) ---\n" + "\n".join(lines)

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for label, path in (("stderr", self.stderr_path), ("stdout", self.stdout_path)):
            try:
                text = path.read_text(errors="replace").splitlines()
            except OSError:
                continue
            if text:
                out.append(f"--- warren {label} (last {lines} lines of {path}) ---")
                out.extend(text[-lines:])
        return "\n".join(out)

    def __enter__(self) -> "WarrenProcess":
        return self.start()

    def __exit__(self, exc_type, *rest) -> None:
        try:
            self.stop(check=exc_type is None)
        finally:
            self.cleanup()
