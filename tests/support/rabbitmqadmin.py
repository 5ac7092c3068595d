"""Finds Debian's rabbitmqadmin (the Python v1 client of the management API, from the rabbitmq-server package that
scripts/install-deps unpacks without installing Erlang) and runs it against a management port.

rabbitmqadmin prints its tables on stdout and its errors on stderr as "*** <reason>", exiting 1: "Access refused"
for a 401, "Not found" for a 404, the JSON `reason` for a 400; any other status >= 400 is a Python traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# Where scripts/install-deps unpacks the package (dpkg-deb -x); the script is usr/bin/rabbitmqadmin inside it.
UNPACKED_DIR = Path("/var/cache/warren-deps/rabbitmq-server")


def find_rabbitmqadmin() -> str | None:
    """$WARREN_RABBITMQADMIN, else the unpacked package, else an installed rabbitmq-server's; None if none."""
    candidates = [os.environ.get("WARREN_RABBITMQADMIN"), str(UNPACKED_DIR / "usr/bin/rabbitmqadmin"),
                  "/usr/bin/rabbitmqadmin", shutil.which("rabbitmqadmin")]
    for c in candidates:
        if c and os.path.isfile(c):
            return c
    return None


@dataclass
class AdminResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> "AdminResult":
        """Fails the test unless the command exited 0 without a traceback; returns self."""
        assert self.returncode == 0 and "Traceback" not in self.stderr, self.describe()
        return self

    def describe(self) -> str:
        return (f"rabbitmqadmin {' '.join(self.args)}\nexit {self.returncode}\n"
                f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}")


def run_rabbitmqadmin(http_port: int, *args: str, user: str = "guest", password: str = "guest",
                      vhost: str | None = None, host: str = "127.0.0.1", stdin: bytes | None = None,
                      timeout: float = 30) -> AdminResult:
    """Runs `rabbitmqadmin -H host -P port -u user -p password [-V vhost] args...` with the Python running the tests
    (rabbitmqadmin needs only the standard library)."""
    script = find_rabbitmqadmin()
    if script is None:
        raise FileNotFoundError("rabbitmqadmin not found: run scripts/install-deps")
    argv = ["-H", host, "-P", str(http_port), "-u", user, "-p", password]
    if vhost is not None:
        argv += ["-V", vhost]
    argv += list(args)
    p = subprocess.run([sys.executable, script, *argv], input=stdin, capture_output=True, timeout=timeout)
    return AdminResult(argv, p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"))


def parse_tsv(text: str) -> list[dict[str, str]]:
    """Rows of `-f tsv` output (a header line, then one line per item) as dicts; [] for "No items"."""
    lines = [line for line in text.splitlines() if line != ""]
    if not lines or lines == ["No items"]:
        return []
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def parse_table(text: str) -> list[dict[str, str]]:
    """Rows of the default table format (+---+ borders, a header row, then items) as dicts; [] for "No items"."""
    rows = [[cell.strip() for cell in line.strip()[1:-1].split("|")]
            for line in text.splitlines() if line.startswith("|")]
    if not rows:
        return []
    return [dict(zip(rows[0], r)) for r in rows[1:]]


def table_header(text: str) -> list[str]:
    """The column names of a table, in order."""
    for line in text.splitlines():
        if line.startswith("|"):
            return [cell.strip() for cell in line.strip()[1:-1].split("|")]
    return []
