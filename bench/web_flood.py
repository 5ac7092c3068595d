#!/usr/bin/python3
"""The web gateway at scale, side by side with nginx + nchan. Starts build/warren (free ports, a temporary
data dir, --jwt-secret) and drives it with build/warren-flood and build/warren-msggen:

  1. idle WebSocket users: --users1 (10 000) and then --users2 (19 000) users connect (user-<n>, HS256 tokens,
     source addresses spread over 127.0.0.0/8, flood processes of at most --per-process connections);
     server RSS after minus before, per connection;
  2. messages: --rate (2000) msg/s to random user ids over POST /api/send for --seconds (30), with all
     --users2 connected: delivery latency p50/p90/p99/max (send time in the message, read by the flood
     clients), messages delivered against messages routed, RSS after;
  3. room fan-out: --members (10 000) users join one room; publishes to it over HTTP at rising rates
     (--fanout-rates, --fanout-seconds each) until delivery falls behind: deliveries/s;

then the same against nginx with Debian's nchan module (a minimal nginx.conf in a temporary directory,
nginx in the foreground on a free port): --users1 idle WebSocket subscribers, one channel each (memory per
subscriber: the nginx processes' PSS, which counts nchan's shared memory once); fan-out of one channel to
--members subscribers, the same rate steps. It prints Warren/nchan ratios and the verdicts against the
web issue's targets, samples the servers' RSS and connections every second and draws them with gnuplot
(one PNG per server), and prints what 1 million users would need, extrapolated from the measured figures.

    /usr/bin/python3 bench/web_flood.py [--out result.json] [--png-dir DIR] [--skip-nchan]

Every process it starts is stopped at the end (and after --time-limit at the latest). Needs nginx-light,
libnginx-mod-nchan and gnuplot-nox (scripts/install-deps). BUILD_DIR (default build/) picks the tools and
WARREN_BIN the broker. Loopback only: clients bind to 127.a.b.c, servers listen on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("BUILD_DIR", REPO / "build"))
WARREN = Path(os.environ.get("WARREN_BIN", BUILD / "warren"))
FLOOD = BUILD / "warren-flood"
MSGGEN = BUILD / "warren-msggen"
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
FILE_LIMIT = 20_000  # per process, hard, on this machine
MAX_CONNECTIONS = 19_000  # what one server process may hold under FILE_LIMIT
PER_SOURCE = 500  # connections per source address (Warren refuses more than 1000 per address)
SECRET = "web-flood-bench-secret"
ROOM = "lobby"

TARGET_IDLE_KIB = 2.0  # idle WebSocket user, server RSS
TARGET_P99_MS = 20.0  # 19k users, 2000 msg/s to random ids
TARGET_FANOUT_RATIO = 3.0  # room fan-out deliveries/s, Warren over nchan


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system time of a process (all its threads), in seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        f = stat[stat.rindex(")") + 2:].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return 0.0


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def children_of(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
                if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                    out.append(int(d))
            except (OSError, ValueError):
                pass
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sysctl(name: str) -> str:
    try:
        return Path("/proc/sys/" + name.replace(".", "/")).read_text().split("\n")[0].replace("\t", " ")
    except OSError:
        return "?"


class Server:
    """A server under test: its processes' memory and open files, and a stop."""

    name = "?"

    def __init__(self, tmp: Path):
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=tmp))  # its own, per run
        self.proc: subprocess.Popen | None = None

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc else []

    def rss_kib(self) -> int:
        return sum(status_kib(p, "VmRSS") for p in self.pids())

    def pss_kib(self) -> int:
        return sum(pss_kib(p) for p in self.pids())

    def fds(self) -> int:
        return sum(fd_count(p) for p in self.pids())

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class WarrenServer(Server):
    name = "warren"

    def start(self, workers: int) -> None:
        data = self.tmp / "warren-data"
        ports = self.tmp / "warren-ports.json"
        self.log_path = self.tmp / "warren.log"
        self.proc = subprocess.Popen(
            [str(WARREN), "--amqp-port", "0", "--http-port", "0", "--web-port", "0", "--prometheus-port", "0", "--bind", "127.0.0.1",
             "--data-dir", str(data), "--ports-file", str(ports), "--workers", str(workers),
             "--jwt-secret", SECRET, "--log-level", "warning"],
            stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not ports.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("warren did not start:\n" + self.log_path.read_text()[-2000:])
            time.sleep(0.05)
        time.sleep(0.1)
        self.ports = json.loads(ports.read_text())
        self.web_port = self.ports["web"]


class NchanServer(Server):
    name = "nchan"

    def start(self, workers: int) -> None:
        prefix = self.tmp / "nginx"
        prefix.mkdir()
        self.port = free_port()
        user = "user root root;\n" if os.geteuid() == 0 else ""
        temps = "".join(f"  {k}_temp_path {prefix}/{k};\n"
                        for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = f"""# Written by bench/web_flood.py: nchan's pub/sub over WebSocket, nothing else.
load_module {NCHAN_MODULE};
{user}worker_processes {workers};
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
worker_rlimit_nofile {FILE_LIMIT};
events {{ worker_connections {FILE_LIMIT - 500}; multi_accept on; }}
http {{
  access_log off;
{temps}  nchan_shared_memory_size 512m;
  server {{
    listen 127.0.0.1:{self.port} backlog=4096;
    location ~ ^/sub/([\\w-]+)$ {{
      nchan_subscriber websocket eventsource;
      nchan_channel_id $1;
      nchan_subscriber_first_message newest;
    }}
    location ~ ^/pub/([\\w-]+)$ {{
      nchan_publisher;
      nchan_channel_id $1;
      nchan_message_buffer_length 20;
      nchan_message_timeout 60s;
    }}
  }}
}}
"""
        (prefix / "nginx.conf").write_text(conf)
        self.log_path = prefix / "stderr.log"
        self.proc = subprocess.Popen(["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                                     stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("nginx did not start:\n" + self.log_path.read_text()[-2000:]
                                   + (prefix / "error.log").read_text()[-2000:])
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.05)
        self.web_port = self.port

    def pids(self) -> list[int]:
        if not self.proc:
            return []
        return [self.proc.pid] + children_of(self.proc.pid)


class FloodProc:
    """One warren-flood process with --json, read by a thread: its ticks (with the wall time they arrived),
    snapshots and summary."""

    def __init__(self, args: list[str], tmp: Path, tag: str):
        self.stderr_path = tmp / f"flood-{tag}.err"
        self.proc = subprocess.Popen([str(FLOOD), "--json", *args], stdout=subprocess.PIPE,
                                     stderr=open(self.stderr_path, "w"), text=True)
        self.ticks: list[tuple[float, dict]] = []
        self.snapshots: list[dict] = []
        self.summary: dict | None = None
        self.cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                j = json.loads(line)
            except ValueError:
                continue
            with self.cv:
                if j["type"] == "tick":
                    self.ticks.append((time.time(), j))
                elif j["type"] == "snapshot":
                    self.snapshots.append(j)
                elif j["type"] == "summary":
                    self.summary = j
                self.cv.notify_all()

    def last(self, key: str) -> int:
        with self.cv:
            return self.ticks[-1][1][key] if self.ticks else 0

    def snapshot(self, timeout: float = 10) -> dict:
        with self.cv:
            n = len(self.snapshots)
            self.proc.send_signal(signal.SIGUSR1)
            if not self.cv.wait_for(lambda: len(self.snapshots) > n, timeout):
                raise RuntimeError("warren-flood gave no snapshot")
            return self.snapshots[-1]

    def stop(self) -> dict:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with self.cv:
            self.cv.wait_for(lambda: self.summary is not None, 5)
            return self.summary or {}

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)


class Sampler(threading.Thread):
    """Every second: the server's RSS, PSS and open files, and the flood clients' open connections."""

    def __init__(self):
        super().__init__(daemon=True)
        self.server: Server | None = None
        self.floods: list[FloodProc] = []
        self.phase = "idle"
        self.run_index = 0
        self.rows: list[dict] = []
        self.phases: list[tuple[str, str, float, int]] = []  # (server, phase, t, run)
        self.t0 = time.monotonic()
        self.stop_event = threading.Event()

    def set(self, server: Server | None, phase: str) -> None:
        self.server = server
        self.phase = phase
        if server:
            self.phases.append((server.name, phase, time.monotonic() - self.t0, self.run_index))
        log(f"{server.name if server else '-'}: {phase} (load {loadavg()})")

    def run(self) -> None:
        while not self.stop_event.wait(1.0):
            s = self.server
            if not s or not s.alive():
                continue
            self.rows.append({"t": round(time.monotonic() - self.t0, 1), "server": s.name, "phase": self.phase,
                              "run": self.run_index,
                              "rss_kib": s.rss_kib(), "pss_kib": s.pss_kib(), "fds": s.fds(),
                              "open": sum(f.last("open") for f in self.floods if f.proc.poll() is None)})


class Bench:
    def __init__(self, args, tmp: Path):
        self.args = args
        self.tmp = tmp
        self.sampler = Sampler()
        self.floods: list[FloodProc] = []
        self.next_source = 20  # flood process k binds from 127.<k>.0.1: no two processes share an address
        self.server: Server | None = None

    # --- flood processes ------------------------------------------------------------------------------------

    def start_floods(self, total: int, first: int, prefix: str, path: str | None, extra: list[str],
                     tag: str) -> list[FloodProc]:
        if total <= 0:
            return []  # nothing to add (--users2 equal to --users1)
        per = self.args.per_process
        n_proc = max(1, math.ceil(total / per))
        group = []
        assigned = 0
        for k in range(n_proc):
            n = total // n_proc + (1 if k < total % n_proc else 0)
            src = self.next_source
            self.next_source += 1
            if self.next_source > 250:
                self.next_source = 20
            args = ["--port", str(self.server.web_port), "-n", str(n), "--first-user", str(first + assigned),
                    "--user-prefix", prefix, "--source-base", f"127.{src}.0.1", "--per-source", str(PER_SOURCE),
                    "-r", str(self.args.connect_rate), "-z", str(self.args.time_limit)]
            args += ["--path", path] if path else ["--jwt-secret", SECRET]
            group.append(FloodProc(args + extra, self.tmp, f"{self.server.name}-r{self.sampler.run_index}-{tag}-{k}"))
            assigned += n
        self.floods += group
        self.sampler.floods = self.floods
        return group

    def wait_connected(self, group: list[FloodProc], n: int, joined: bool = False) -> float:
        t0 = time.monotonic()
        deadline = t0 + n / (self.args.connect_rate * max(1, len(group))) * 4 + 60
        key = "joined" if joined else "open"
        while True:
            got = sum(f.last(key) for f in group)
            failed = sum(f.last("connect_failed") + f.last("refused") + f.last("timed_out") for f in group)
            if got >= n:
                return time.monotonic() - t0
            if failed > 0 or time.monotonic() > deadline or not self.server.alive():
                raise RuntimeError(f"{key} {got} of {n}, {failed} failed to connect; see "
                                   f"{group[0].stderr_path}")
            time.sleep(0.25)

    def stop_floods(self, group: list[FloodProc]) -> list[dict]:
        summaries = [f.stop() for f in group]
        self.floods = [f for f in self.floods if f not in group]
        self.sampler.floods = self.floods
        return summaries

    def wait_fds(self, base: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.server.fds() > base + 50 and time.monotonic() < deadline:
            time.sleep(0.5)

    # --- measurements --------------------------------------------------------------------------------------

    def settled_memory(self, quiet: float = 3.0) -> tuple[int, int]:
        """RSS and PSS once RSS has stopped moving (under 0.5% over 2 s), at most 20 s."""
        time.sleep(quiet)
        deadline = time.monotonic() + 20
        prev = self.server.rss_kib()
        while time.monotonic() < deadline:
            time.sleep(2)
            cur = self.server.rss_kib()
            if abs(cur - prev) <= prev * 0.005:
                break
            prev = cur
        return self.server.rss_kib(), self.server.pss_kib()

    def msggen(self, args: list[str], timeout: float) -> dict:
        p = subprocess.run([str(MSGGEN), "--json", "--port", str(self.server.web_port), *args],
                           capture_output=True, text=True, timeout=timeout)
        lines = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
        summary = next((j for j in reversed(lines) if j.get("type") == "summary"), None)
        if summary is None:
            raise RuntimeError(f"warren-msggen failed ({p.returncode}): {p.stderr[-2000:]}")
        summary["exit"] = p.returncode
        return summary

    @staticmethod
    def merge_latency(snapshots: list[dict]) -> dict:
        """Percentiles over the merged histograms of several flood processes (bucket midpoints, us)."""
        buckets: dict[int, int] = {}
        for s in snapshots:
            for v, n in s["latency_us"].get("buckets", []):
                buckets[v] = buckets.get(v, 0) + n
        total = sum(buckets.values())
        out = {"count": total}
        if total == 0:
            return out | {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
        values = sorted(buckets.items())
        for q, key in ((0.5, "p50_ms"), (0.9, "p90_ms"), (0.99, "p99_ms")):
            rank, seen = max(1, int(q * total)), 0
            for v, n in values:
                seen += n
                if seen >= rank:
                    out[key] = v / 1000
                    break
        out["max_ms"] = max(s["latency_us"]["max"] for s in snapshots) / 1000
        return out

    def delivered_since(self, group: list[FloodProc], before: list[int]) -> int:
        return sum(f.last("messages") for f in group) - sum(before)

    def wait_delivered(self, group: list[FloodProc], before: list[int], expected: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            got = self.delivered_since(group, before)
            if got >= expected:
                return got
            if got != last:
                last, last_change = got, time.monotonic()
            elif time.monotonic() - last_change > 3:
                break  # nothing more is arriving
            time.sleep(0.25)
        return self.delivered_since(group, before)

    @staticmethod
    def rate_between(group: list[FloodProc], t0: float, t1: float) -> float:
        """Deliveries per second summed over the flood processes, each from its ticks inside [t0, t1]."""
        total = 0.0
        for f in group:
            with f.cv:
                inside = [j for (w, j) in f.ticks if t0 <= w <= t1]
            if len(inside) >= 2 and inside[-1]["elapsed"] > inside[0]["elapsed"]:
                total += (inside[-1]["messages"] - inside[0]["messages"]) / (inside[-1]["elapsed"] - inside[0]["elapsed"])
        return total

    def fanout_steps(self, group: list[FloodProc], members: int, api: list[str]) -> list[dict]:
        steps = []
        for rate in self.args.fanout_rates:
            start = [f.snapshot() for f in group]
            before = [f.last("messages") for f in group]
            server_cpu0, flood_cpu0 = self.server.cpu(), sum(f.cpu() for f in group)
            t0 = time.time()
            m = self.msggen([*api, "--room", ROOM, "-r", str(rate), "-z", str(self.args.fanout_seconds),
                             "-c", "1", "--pipeline", "64", "--drain-timeout", "60"],
                            timeout=self.args.fanout_seconds + 120)
            t1 = time.time()
            # A request still unanswered when msggen closes may or may not have been published.
            expected = m["answered"] * members
            got = self.wait_delivered(group, before, expected, timeout=30)
            drained = time.time()
            server_cpu = self.server.cpu() - server_cpu0
            flood_cpu = sum(f.cpu() for f in group) - flood_cpu0
            snaps = [f.snapshot() for f in group]
            lat = self.merge_latency(snaps)
            # Deliveries/s while publishing, from the ticks one second in until the end (the first second
            # includes the ramp-up); over the whole send-and-drain time when publishing was shorter.
            during = self.rate_between(group, t0 + 1, t1 + 0.5)
            overall = got / max(0.001, drained - t0)
            step = {"publish_rate": rate, "sent": m["sent"], "answered": m["answered"], "expected": expected,
                    "response_us": m["response_us"],
                    # Cumulative counters: this step's share is the difference to the step's start.
                    **{k: sum(e[k] - b[k] for e, b in zip(snaps, start))
                       for k in ("seq_missing", "seq_backwards", "resets", "lost")},
                    "delivered": got, "deliveries_per_s": round(during or overall),
                    "deliveries_per_s_with_drain": round(overall), "latency": lat,
                    "server_cpu_s": round(server_cpu, 2), "flood_cpu_s": round(flood_cpu, 2),
                    "server_us_per_delivery": round(server_cpu * 1e6 / got, 2) if got else None,
                    "flood_us_per_delivery": round(flood_cpu * 1e6 / got, 2) if got else None,
                    "kept_up": m["answered"] == m["sent"] and got >= 0.99 * expected
                               and (lat.get("p99_ms") or 0) < 1000}
            steps.append(step)
            log(f"fan-out {rate}/s x {members}: {got}/{expected} delivered, {step['deliveries_per_s']:,}/s, "
                f"p99 {lat.get('p99_ms')} ms, server {step['server_us_per_delivery']} us CPU per delivery, "
                f"clients {step['flood_us_per_delivery']}{'' if step['kept_up'] else ' (fell behind)'}")
            if not step["kept_up"]:
                break
        return steps

    # --- the two servers -----------------------------------------------------------------------------------

    def run_warren(self) -> dict:
        a = self.args
        res: dict = {"load_before": loadavg()}
        server = WarrenServer(self.tmp)
        server.start(a.workers)
        self.server = server
        self.sampler.set(server, "idle")
        try:
            rss0, pss0 = self.settled_memory(2)
            fds0 = server.fds()
            res["idle"] = {"rss_kib": rss0, "pss_kib": pss0, "fds": fds0}

            self.sampler.set(server, f"{a.users1} users")
            g1 = self.start_floods(a.users1, 0, "user-", None, [], "a")
            secs = self.wait_connected(g1, a.users1)
            rss1, pss1 = self.settled_memory()
            res["users1"] = {"users": a.users1, "connect_s": round(secs, 1), "rss_kib": rss1, "pss_kib": pss1,
                             "fds": server.fds(), "kib_per_user": round((rss1 - rss0) / a.users1, 3)}
            log(f"warren: {a.users1} idle users: RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB, "
                f"{res['users1']['kib_per_user']:.2f} KiB per user")

            self.sampler.set(server, f"{a.users2} users")
            g2 = self.start_floods(a.users2 - a.users1, a.users1, "user-", None, [], "b")
            secs = self.wait_connected(g1 + g2, a.users2)
            rss2, pss2 = self.settled_memory()
            res["users2"] = {"users": a.users2, "connect_s": round(secs, 1), "rss_kib": rss2, "pss_kib": pss2,
                             "fds": server.fds(), "kib_per_user": round((rss2 - rss0) / a.users2, 3)}
            log(f"warren: {a.users2} idle users: RSS {rss2 / 1024:.1f} MiB, "
                f"{res['users2']['kib_per_user']:.2f} KiB per user")

            self.sampler.set(server, f"{a.rate} msg/s")
            everyone = g1 + g2
            start = [f.snapshot() for f in everyone]
            before = [f.last("messages") for f in everyone]
            m = self.msggen(["-n", str(a.users2), "-r", str(a.rate), "-z", str(a.seconds), "-c", "2",
                             "--drain-timeout", "30"], timeout=a.seconds + 90)
            got = self.wait_delivered(everyone, before, m["routed"], timeout=60)
            snaps = [f.snapshot() for f in everyone]
            res["messages"] = {"rate": a.rate, "seconds": a.seconds, "sent": m["sent"], "routed": m["routed"],
                               "unroutable": m["unroutable"], "errors": m["errors"], "delivered": got,
                               "seq_missing": sum(e["seq_missing"] - b["seq_missing"] for e, b in zip(snaps, start)),
                               "seq_backwards": sum(e["seq_backwards"] - b["seq_backwards"]
                                                    for e, b in zip(snaps, start)),
                               "latency": self.merge_latency(snaps), "response_us": m["response_us"],
                               "lost_connections": sum(e["lost"] - b["lost"] for e, b in zip(snaps, start))}
            rss3, _ = self.settled_memory()
            res["messages"]["rss_after_kib"] = rss3
            res["messages"]["kib_per_user_after"] = round((rss3 - rss2) / a.users2, 3)
            lat = res["messages"]["latency"]
            log(f"warren: {m['sent']} messages, {got} delivered of {m['routed']} routed; latency ms p50 "
                f"{lat['p50_ms']} p90 {lat['p90_ms']} p99 {lat['p99_ms']} max {lat['max_ms']}")

            self.sampler.set(server, "closing")
            self.stop_floods(everyone)
            self.wait_fds(fds0)

            if a.members > 0:
                self.sampler.set(server, f"{a.members} members")
                gm = self.start_floods(a.members, 0, "member-", None, ["--room", ROOM], "m")
                self.wait_connected(gm, a.members, joined=True)
                rssm, _ = self.settled_memory(2)
                self.sampler.set(server, "fan-out")
                res["fanout"] = {"members": a.members, "rss_kib": rssm,
                                 "steps": self.fanout_steps(gm, a.members, [])}
                self.sampler.set(server, "closing")
                self.stop_floods(gm)
        finally:
            for f in list(self.floods):
                f.kill()
            self.floods = []
            server.stop()
            self.sampler.set(None, "stopped")
        res["exit"] = server.proc.returncode
        res["load_after"] = loadavg()
        return res

    def run_nchan(self) -> dict:
        a = self.args
        res: dict = {"load_before": loadavg()}
        server = NchanServer(self.tmp)
        server.start(a.workers)
        self.server = server
        self.sampler.set(server, "idle")
        try:
            rss0, pss0 = self.settled_memory(2)
            fds0 = server.fds()
            res["idle"] = {"rss_kib": rss0, "pss_kib": pss0, "fds": fds0}
            self.sampler.set(server, f"{a.users1} subscribers")
            g1 = self.start_floods(a.users1, 0, "user-", "/sub/{user}", [], "a")
            secs = self.wait_connected(g1, a.users1)
            rss1, pss1 = self.settled_memory()
            res["users1"] = {"users": a.users1, "connect_s": round(secs, 1), "rss_kib": rss1, "pss_kib": pss1,
                             "fds": server.fds(), "kib_per_user": round((pss1 - pss0) / a.users1, 3),
                             "rss_sum_kib_per_user": round((rss1 - rss0) / a.users1, 3)}
            log(f"nchan: {a.users1} idle subscribers: PSS {pss0 / 1024:.1f} -> {pss1 / 1024:.1f} MiB, "
                f"{res['users1']['kib_per_user']:.2f} KiB per subscriber")
            self.sampler.set(server, "closing")
            self.stop_floods(g1)
            self.wait_fds(fds0)

            if a.members > 0:
                self.sampler.set(server, f"{a.members} subscribers of one channel")
                gm = self.start_floods(a.members, 0, "member-", f"/sub/{ROOM}", [], "m")
                self.wait_connected(gm, a.members)
                self.sampler.set(server, "fan-out")
                res["fanout"] = {"members": a.members,
                                 "steps": self.fanout_steps(gm, a.members, ["--api", "nchan"])}
                self.sampler.set(server, "closing")
                self.stop_floods(gm)
        finally:
            for f in list(self.floods):
                f.kill()
            self.floods = []
            server.stop()
            self.sampler.set(None, "stopped")
        res["load_after"] = loadavg()
        return res

    def cleanup(self) -> None:
        for f in self.floods:
            f.kill()
        if self.server:
            self.server.stop()


def plot(rows: list[dict], phases: list[tuple], server: str, png: Path, tmp: Path) -> bool:
    """RSS (MiB, left axis) and connections (right axis) over time, phases marked; the first run only."""
    rows = [r for r in rows if r["server"] == server and r["run"] == 0]
    if not rows or not shutil.which("gnuplot"):
        return False
    t0 = rows[0]["t"]
    data = tmp / f"{server}.dat"
    data.write_text("".join(f"{r['t'] - t0:.1f} {r['rss_kib'] / 1024:.2f} {r['pss_kib'] / 1024:.2f} {r['open']}\n"
                            for r in rows))
    marks = ""
    for i, (name, phase, t, _) in enumerate(p for p in phases if p[0] == server and p[3] == 0):
        x = max(0.0, t - t0)
        marks += (f"set arrow from {x:.1f}, graph 0 to {x:.1f}, graph 1 nohead dt 3 lc rgb '#999999'\n"
                  f"set label \"{phase}\" at {x:.1f}, graph {0.97 - 0.05 * (i % 4):.2f} font ',8' offset 0.3,0\n")
    top = max(r["open"] for r in rows) * 1.15 or 1
    memory = "RSS" if server == "warren" else "PSS of all nginx processes"
    col = 2 if server == "warren" else 3
    script = f"""set terminal pngcairo size 1100,520
set output '{png}'
set title '{server}: memory and connections over time'
set xlabel 'seconds'
set ylabel '{memory} (MiB)'
set y2label 'open connections (flood clients)'
set ytics nomirror
set y2tics
set yrange [0:*]
set offsets 0, 0, graph 0.1, 0
set y2range [0:{top:.0f}]
set key bottom right
set grid
{marks}plot '{data}' using 1:{col} with lines lw 2 title '{memory} MiB' axes x1y1, \\
     '' using 1:4 with lines lw 2 title 'connections' axes x1y2
"""
    p = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True, timeout=30)
    if p.returncode != 0:
        log(f"gnuplot failed: {p.stderr}")
        return False
    return True


def fanout_best(res: dict | None) -> dict | None:
    if not res or "fanout" not in res or not res["fanout"]["steps"]:
        return None
    return max(res["fanout"]["steps"], key=lambda s: s["deliveries_per_s"])


def million_text(w: dict | None, n: dict | None) -> str:
    per = w["users2"]["kib_per_user"] if w and "users2" in w else None
    lines = ["What 1 million users need (extrapolated from the figures above; not measured here):"]
    if per is not None:
        lines.append(f"  server memory:    {per:.2f} KiB x 1,000,000 = {per * 1e6 / 1024 / 1024:.1f} GiB of Warren RSS for "
                     f"idle WebSocket users, plus the base ({w['idle']['rss_kib'] / 1024:.0f} MiB) and held inbox events")
    if n and "users1" in n:
        nper = n["users1"]["kib_per_user"]
        lines.append(f"                    nchan at the same rate: {nper * 1e6 / 1024 / 1024:.1f} GiB")
    lines += [
        "  kernel:           each idle TCP socket also costs the kernel about 1-2 KiB (socket, inode, dentry,",
        "                    epoll item; buffers only while data waits): roughly 2-3 GiB more, not in RSS",
        "  open files:       fs.nr_open = 1100000 and fs.file-max = 2200000 (server and clients on one machine);",
        "                    ulimit -n 1048576 for warren (LimitNOFILE=1048576 under systemd)",
        "  ports:            net.ipv4.ip_local_port_range = 1024 65535: 64 511 connections per source address",
        "                    towards one server port",
        "  source addresses: 1,000,000 / --web-max-connections-per-ip (1000) = 1000 client addresses in",
        f"                    127.0.0.0/8 (warren-flood --source-base, --per-source {PER_SOURCE} -> 2000 here), or raise",
        "                    the per-IP limit; the port range alone would need 16",
        "  backlog:          net.core.somaxconn = 65535, net.ipv4.tcp_max_syn_backlog = 65535",
        "  conntrack:        net.netfilter.nf_conntrack_max >= 1100000 if nf_conntrack is loaded",
        f"  clients:          warren-flood holds {MAX_CONNECTIONS:,} connections per process under this machine's",
        "                    20 000-file limit: 53 processes, or a few with a raised ulimit",
        "  Current values here: "
        f"ulimit -n {resource.getrlimit(resource.RLIMIT_NOFILE)[1]}, fs.nr_open {sysctl('fs.nr_open')}, "
        f"fs.file-max {sysctl('fs.file-max')}, ip_local_port_range {sysctl('net.ipv4.ip_local_port_range')}, "
        f"somaxconn {sysctl('net.core.somaxconn')}",
    ]
    return "\n".join(lines)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("MET" if ok else "NOT MET")


def run_block(res: dict, w: dict | None, n: dict | None) -> list[str]:
    out = []
    if w:
        out.append(f"Warren ({res['commit']}, {res['workers']} workers), load {w['load_before']} -> {w['load_after']}")
        for key in ("users1", "users2"):
            u = w[key]
            out.append(f"  {u['users']:>6} idle WebSocket users: RSS {w['idle']['rss_kib'] / 1024:.1f} -> "
                       f"{u['rss_kib'] / 1024:.1f} MiB = {u['kib_per_user']:.2f} KiB per user "
                       f"(connected in {u['connect_s']} s)")
        m = w["messages"]
        lat = m["latency"]
        out.append(f"  {m['rate']} msg/s to random ids of {w['users2']['users']} for {m['seconds']} s: sent {m['sent']}, "
                   f"routed {m['routed']}, delivered {m['delivered']}, sequence gaps {m['seq_missing']}")
        out.append(f"    delivery latency ms: p50 {lat['p50_ms']} p90 {lat['p90_ms']} p99 {lat['p99_ms']} "
                   f"max {lat['max_ms']}; RSS after {m['rss_after_kib'] / 1024:.1f} MiB "
                   f"({m['kib_per_user_after']:+.2f} KiB per user: held inbox events)")
        if "fanout" in w:
            out += fanout_lines(w, "members")
    if n:
        out.append(f"nchan (nginx {res.get('nginx_version', '?')}, {res['workers']} workers), "
                   f"load {n['load_before']} -> {n['load_after']}")
        u = n["users1"]
        out.append(f"  {u['users']:>6} idle WebSocket subscribers: PSS {n['idle']['pss_kib'] / 1024:.1f} -> "
                   f"{u['pss_kib'] / 1024:.1f} MiB = {u['kib_per_user']:.2f} KiB per subscriber "
                   f"(sum of RSS: {u['rss_sum_kib_per_user']:.2f})")
        if "fanout" in n:
            out += fanout_lines(n, "subscribers")
    return out


def fanout_lines(r: dict, who: str) -> list[str]:
    return [f"  fan-out {s['publish_rate']:>4}/s to {r['fanout']['members']} {who}: "
            f"{s['deliveries_per_s']:>9,} deliveries/s, {s['delivered']}/{s['expected']}, "
            f"p99 {s['latency'].get('p99_ms')} ms, server CPU {s['server_us_per_delivery']} us/delivery, "
            f"clients {s['flood_us_per_delivery']} us, publish answered in p50 "
            f"{s['response_us']['p50'] / 1000:.1f} ms, gaps {s['seq_missing']}{'' if s['kept_up'] else '  (fell behind)'}"
            for s in r["fanout"]["steps"]]


def med(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits: int = 2) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def report(res: dict) -> str:
    runs = res["runs"]
    out = []
    for i, r in enumerate(runs):
        out.append(f"--- run {i + 1} of {len(runs)}")
        out += run_block(res, r.get("warren"), r.get("nchan"))
    ws = [r["warren"] for r in runs if r.get("warren")]
    ns = [r["nchan"] for r in runs if r.get("nchan")]
    w_idle1 = med([w["users1"]["kib_per_user"] for w in ws if "users1" in w])
    w_idle2 = med([w["users2"]["kib_per_user"] for w in ws if "users2" in w])
    n_idle = med([n["users1"]["kib_per_user"] for n in ns if "users1" in n])
    w_msgs = [w["messages"] for w in ws if "messages" in w]
    p50, p99, pmax = (med([m["latency"][k] for m in w_msgs]) for k in ("p50_ms", "p99_ms", "max_ms"))
    complete = all(m["delivered"] >= m["routed"] for m in w_msgs) if w_msgs else None
    w_best = med([(fanout_best(w) or {}).get("deliveries_per_s") for w in ws])
    n_best = med([(fanout_best(n) or {}).get("deliveries_per_s") for n in ns])
    w_cpu = med([s["server_us_per_delivery"] for w in ws if "fanout" in w for s in w["fanout"]["steps"]])
    n_cpu = med([s["server_us_per_delivery"] for n in ns if "fanout" in n for s in n["fanout"]["steps"]])
    out.append(f"=== medians over {len(runs)} run(s), load average {res.get('load_start')} -> {res.get('load_end')}")
    out.append(f"  idle WebSocket user, Warren RSS:       {fmt(w_idle1)} KiB at {res['args']['users1']}, "
               f"{fmt(w_idle2)} KiB at {res['args']['users2']}   target <= {TARGET_IDLE_KIB}: "
               f"{verdict(None if w_idle2 is None else w_idle2 <= TARGET_IDLE_KIB)}")
    out.append(f"  idle WebSocket subscriber, nchan PSS:  {fmt(n_idle)} KiB; Warren/nchan "
               f"{fmt(None if not (w_idle1 and n_idle) else w_idle1 / n_idle)}x")
    out.append(f"  {res['args']['users2']} users, {res['args']['rate']} msg/s to random ids: latency ms p50 {fmt(p50, 3)} "
               f"p99 {fmt(p99, 3)} max {fmt(pmax, 1)}, all delivered: {complete}   target p99 < {TARGET_P99_MS} ms: "
               f"{verdict(None if p99 is None else p99 < TARGET_P99_MS and bool(complete))}")
    ratio = w_best / n_best if w_best and n_best else None
    out.append(f"  room fan-out to {res['args']['members']}: best deliveries/s Warren {fmt(w_best, 0)}, nchan "
               f"{fmt(n_best, 0)} = {fmt(ratio)}x   target >= {TARGET_FANOUT_RATIO}x: "
               f"{verdict(None if ratio is None else ratio >= TARGET_FANOUT_RATIO)}")
    cratio = n_cpu / w_cpu if w_cpu and n_cpu else None
    out.append(f"  server CPU per fan-out delivery:       Warren {fmt(w_cpu)} us, nchan {fmt(n_cpu)} us "
               f"(nchan/Warren {fmt(cratio)}x)")
    out.append(million_text(ws[-1] if ws else None, ns[-1] if ns else None))
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users1", type=int, default=10_000)
    p.add_argument("--users2", type=int, default=19_000)
    p.add_argument("--members", type=int, default=10_000, help="room members for the fan-out (0: no fan-out)")
    p.add_argument("--rate", type=int, default=2000, help="messages per second to random users")
    p.add_argument("--seconds", type=int, default=30, help="how long the messages run")
    p.add_argument("--fanout-rates", default="1,2,4,8,16,32,64,128",
                   help="room publishes per second, tried in turn until delivery falls behind")
    p.add_argument("--fanout-seconds", type=int, default=5)
    p.add_argument("--workers", type=int, default=2, help="Warren workers and nginx worker processes")
    p.add_argument("--per-process", type=int, default=5000, help="connections per warren-flood process")
    p.add_argument("--connect-rate", type=int, default=2000, help="new connections per second per process")
    p.add_argument("--skip-nchan", action="store_true")
    p.add_argument("--skip-warren", action="store_true")
    p.add_argument("--png-dir", type=Path, default=Path("."), help="where web_flood_<server>.png go")
    p.add_argument("--out", type=Path, help="write every figure and sample as JSON")
    p.add_argument("--time-limit", type=int, default=1500, help="seconds; the whole run stops after this")
    p.add_argument("--repeat", type=int, default=1, help="runs of both servers, interleaved; medians reported")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, nginx.conf)")
    args = p.parse_args()
    args.fanout_rates = [int(x) for x in args.fanout_rates.split(",") if x]
    if not 0 < args.users1 <= args.users2 <= MAX_CONNECTIONS or args.members > MAX_CONNECTIONS:
        p.error(f"users and members must be at most {MAX_CONNECTIONS} (one server process, {FILE_LIMIT} files)")
    if args.per_process > MAX_CONNECTIONS:
        p.error(f"--per-process must be at most {MAX_CONNECTIONS}")
    for binary in (FLOOD, MSGGEN) + (() if args.skip_warren else (WARREN,)):
        if not binary.exists():
            p.error(f"{binary} not found: build it (cmake --build build --target {binary.name})")
    if not args.skip_nchan and (not shutil.which("nginx") or not NCHAN_MODULE.exists()):
        p.error("nginx with nchan not installed (apt-get install nginx-light libnginx-mod-nchan), or --skip-nchan")

    # Children inherit the file limit: raise it to the hard limit (20 000 here).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.users2 + 500:
        p.error(f"the file limit is {hard}: use fewer --users2")
    log(f"ulimit -n {hard}; ip_local_port_range {sysctl('net.ipv4.ip_local_port_range')}; "
        f"fs.nr_open {sysctl('fs.nr_open')}; load {loadavg()}")

    tmp = Path(tempfile.mkdtemp(prefix="web-flood-"))
    bench = Bench(args, tmp)
    bench.sampler.start()

    def on_alarm(signum, frame):
        raise TimeoutError(f"--time-limit {args.time_limit} s reached")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(KeyboardInterrupt()))
    signal.alarm(args.time_limit)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "?"
    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1] \
        if shutil.which("nginx") else "?"
    res: dict = {"commit": commit, "workers": args.workers, "nginx_version": nginx_v,
                 "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    res["runs"] = []
    res["load_start"] = loadavg()
    rc = 0
    try:
        for i in range(args.repeat):
            run: dict = {}
            res["runs"].append(run)
            bench.sampler.run_index = i
            if not args.skip_warren:
                run["warren"] = bench.run_warren()
            if not args.skip_nchan:
                run["nchan"] = bench.run_nchan()
    except BaseException as e:  # report what was measured, then fail
        log(f"stopped: {type(e).__name__}: {e}")
        rc = 1
    finally:
        signal.alarm(0)
        bench.cleanup()
        bench.sampler.stop_event.set()
    res["load_end"] = loadavg()
    res["samples"] = bench.sampler.rows
    res["phases"] = bench.sampler.phases
    args.png_dir.mkdir(parents=True, exist_ok=True)
    for name in ("warren", "nchan"):
        png = args.png_dir / f"web_flood_{name}.png"
        if plot(bench.sampler.rows, bench.sampler.phases, name, png, tmp):
            log(f"wrote {png}")
    if args.out:
        args.out.write_text(json.dumps(res, indent=1))
        log(f"wrote {args.out}")
    try:
        print(report(res))
    except (KeyError, TypeError) as e:
        log(f"incomplete results ({e}); see --out")
        rc = 1
    if args.keep or rc:
        log(f"logs kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
