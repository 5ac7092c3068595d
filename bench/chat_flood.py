#!/usr/bin/python3
"""Seed 000's flood, scaled: the RabbitMQ web chat that Reddit took down (idle WebSockets, bots publishing,
scripts opening connections), thrown at one Warren at once, while a well-behaved client publishes with confirms
and consumes. Starts build/warren (free loopback ports, a temporary data dir, --jwt-secret, an absolute memory
watermark) and, all for --seconds:

  - --idle idle AMQP connections and --churn churning ones (connection, channel, channel closed and reopened
    twice, connection closed, again): one `warren-perf --idle --churn` process;
  - --ws idle WebSocket users: `warren-flood`;
  - --publishers clients publishing --size byte messages as fast as the broker takes them to a fanout exchange
    bound to --queues queues, one consumer on each (prefetch 10, ack each): `warren-perf --fanout`. The chat's
    consumers exist but are slow: they are this machine's load-generator, which reads the deliveries as fast as
    it can on the cores it shares with the broker (and with whatever else runs);
  - --slowloris sockets to each HTTP port (management API and web gateway), each trickling a request head one
    byte a second and opening again when the server closes it (this script, one thread);
  - the well-behaved client: one producer with a confirm window of 10 at --good-rate msg/s of 256 B to a queue
    of its own (same vhost), one consumer (prefetch 100): `warren-perf --confirm`, which reports publish-to-
    delivery latency and counts confirmed messages that never arrived.

The broker's RSS and open files are sampled every second. After the flood: the broker is alive, a fresh
connection publishes with confirms and consumes, the well-behaved client runs again alone (--after-seconds),
no queue of the run is left, and RSS and open files are read once they have settled.

    /usr/bin/python3 bench/chat_flood.py                          # the full size, 5 minutes
    /usr/bin/python3 bench/chat_flood.py --seconds 20 --idle 1000 --ws 200 --publishers 10 --churn 10 \\
        --slowloris 10                                            # the integration test's size

It prints a summary with the targets (p99 under --p99-ms, RSS under the watermark plus --margin, nothing lost,
no crash, slowloris sockets closed within the gateway's and management API's head deadline of 10 s, recovery)
and exits 1 if one is missed; --out writes every figure as JSON. Every process it starts is bounded by time and
stopped at the end. BUILD_DIR (default build/) picks the binaries; WARREN_BIN the broker.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
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
PERF = BUILD / "warren-perf"
FLOOD = BUILD / "warren-flood"
SECRET = "chat-flood-secret"
HEAD_DEADLINE_S = 10  # both HTTP servers: a request head must be in within this (http_handler, gateway_handler)

sys.path.insert(0, str(REPO / "tests"))
from support.warren_process import WarrenProcess  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def open_files(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class Sampler(threading.Thread):
    """The broker's RSS and open files every second, tagged with the phase."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.phase = "start"
        self.samples: list[dict] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.stopping.is_set():
            self.samples.append({"t": round(time.monotonic() - t0, 1), "phase": self.phase,
                                 "rss_mib": rss_mib(self.pid), "fds": open_files(self.pid)})
            self.stopping.wait(1.0)

    def of(self, phase: str, key: str) -> list:
        return [s[key] for s in self.samples if s["phase"] == phase and s[key] is not None]


class Slowloris(threading.Thread):
    """`per_port` sockets to each port, each sending a request head one byte a second, never finishing it. When
    the server closes one (after answering 408 or not), its lifetime is recorded and a new one opens. Bounded by
    stop()."""

    HEAD = b"GET / HTTP/1.1\r\nHost: chat\r\nUser-Agent: slowloris\r\nX-Padding: " + b"a" * 100_000

    def __init__(self, ports: dict[str, int], per_port: int):
        super().__init__(daemon=True)
        self.ports = ports
        self.per_port = per_port
        self.sel = selectors.DefaultSelector()
        self.lifetimes: dict[str, list[float]] = {name: [] for name in ports}
        self.answers: dict[str, dict[str, int]] = {name: {} for name in ports}
        self.connect_errors = 0
        self.stopping = threading.Event()
        self.open_at_stop: dict[str, list[float]] = {}

    def _open(self, name: str) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect_ex(("127.0.0.1", self.ports[name]))
        except OSError:
            self.connect_errors += 1
            s.close()
            return
        self.sel.register(s, selectors.EVENT_READ, {"name": name, "t0": time.monotonic(), "sent": 0, "got": b""})

    def run(self) -> None:
        for name in self.ports:
            for _ in range(self.per_port):
                self._open(name)
        next_byte = time.monotonic()
        while not self.stopping.is_set():
            for key, _ in self.sel.select(timeout=max(0.0, next_byte - time.monotonic())):
                s, st = key.fileobj, key.data
                try:
                    data = s.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    st["got"] += data[:64]
                    continue
                self._closed(s, st)
            if time.monotonic() >= next_byte:
                next_byte += 1.0
                for key in list(self.sel.get_map().values()):
                    s, st = key.fileobj, key.data
                    try:
                        s.send(self.HEAD[st["sent"]:st["sent"] + 1])
                        st["sent"] += 1
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        self._closed(s, st)
        now = time.monotonic()
        for key in list(self.sel.get_map().values()):
            self.open_at_stop.setdefault(key.data["name"], []).append(round(now - key.data["t0"], 1))
            self.sel.unregister(key.fileobj)
            key.fileobj.close()

    def _closed(self, s: socket.socket, st: dict) -> None:
        name = st["name"]
        self.lifetimes[name].append(time.monotonic() - st["t0"])
        status = st["got"].split(b" ", 2)[1].decode(errors="replace") if st["got"].startswith(b"HTTP/") else "none"
        self.answers[name][status] = self.answers[name].get(status, 0) + 1
        self.sel.unregister(s)
        s.close()
        if not self.stopping.is_set():
            self._open(name)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)

    def summary(self) -> dict:
        out = {}
        for name, ls in self.lifetimes.items():
            out[name] = {"closed_by_server": len(ls), "answers": self.answers[name],
                         "held_s_max": round(max(ls), 1) if ls else None,
                         "held_s_median": round(statistics.median(ls), 1) if ls else None,
                         "open_at_stop_s_max": max(self.open_at_stop.get(name, []), default=None)}
        return out


class Proc:
    """A load tool with --json: stdout lines kept, stderr to a file; stop() sends SIGINT then kills."""

    def __init__(self, name: str, cmd: list[str], tmp: Path):
        self.name = name
        self.cmd = cmd
        self.err_path = tmp / f"{name}.log"
        self.lines: list[str] = []
        log(f"{name}: {' '.join(str(c) for c in cmd)}")
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=self.err,
                                     stdin=subprocess.DEVNULL, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def wait(self, timeout: float) -> int:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.name} still running after {timeout:.0f} s: interrupting it")
            self.stop()
        self.reader.join(5)
        self.err.close()
        return self.proc.returncode

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def last_json(self) -> dict:
        for line in reversed(self.lines):
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except json.JSONDecodeError:
                    pass
        return {}

    def stderr_text(self) -> str:
        return self.err_path.read_text(errors="replace")


def wait_for(pred, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - t0


def perf_cmd(port: int, *args) -> list:
    return [PERF, "--port", port, "--json", *args]


def good_client(port: int, args, seconds: float) -> list:
    nice = ["nice", "-n", str(args.good_nice)] if args.good_nice else []
    return nice + perf_cmd(port, "-x", 1, "-y", 1, "--confirm", 10, "-r", args.good_rate, "-s", 256, "-q", 100,
                    "--prefix", "good-", "-z", seconds, "--threads", 1)


def fresh_connection_check(port: int) -> dict:
    """A new connection after the flood: declare, publish 100 with confirms, consume them back."""
    import pika
    t0 = time.monotonic()
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, blocked_connection_timeout=10,
                                                             socket_timeout=10))
    ch = conn.channel()
    ch.confirm_delivery()
    q = ch.queue_declare("", exclusive=True).method.queue
    for i in range(100):
        ch.basic_publish("", q, str(i).encode(), mandatory=True)
    got = 0
    for _method, _props, _body in ch.consume(q, auto_ack=True, inactivity_timeout=10):
        if _method is None:
            break
        got += 1
        if got == 100:
            break
    ch.cancel()
    conn.close()
    return {"published_confirmed": 100, "consumed": got, "seconds": round(time.monotonic() - t0, 2)}


def leftover_queues(http_port: int) -> list[dict]:
    import base64
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{http_port}/api/queues",
                                 headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
    with urllib.request.urlopen(req, timeout=30) as r:
        qs = json.loads(r.read())
    return [{"name": q["name"], "messages": q.get("messages")} for q in qs
            if q["name"].startswith(("flood-", "good-", "crowd-"))]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, seconds: float) -> float:
    """Waits (at most `seconds`) until the broker uses under 10% of a core over a second: the flood's queues
    are deleted by then and their backlog freed."""
    t0 = time.monotonic()
    prev = cpu_seconds(pid)
    while time.monotonic() - t0 < seconds:
        time.sleep(1)
        cur = cpu_seconds(pid)
        if cur - prev < 0.1:
            break
        prev = cur
    return time.monotonic() - t0


def settle(pid: int, seconds: float) -> tuple[float | None, int | None]:
    """RSS and open files once RSS changes by less than 1% over 2 s (at most `seconds`)."""
    deadline = time.monotonic() + seconds
    prev = rss_mib(pid)
    while time.monotonic() < deadline:
        time.sleep(2)
        cur = rss_mib(pid)
        if prev and cur and abs(cur - prev) < 0.01 * prev:
            break
        prev = cur
    return rss_mib(pid), open_files(pid)


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run(args) -> dict:
    """One flood; returns every figure and the list of failed targets (res["failures"])."""
    nofile = raise_nofile()
    if args.idle + args.churn + 200 > nofile or args.ws + 100 > nofile:
        raise SystemExit(f"open-file limit {nofile} is too low for {args.idle} idle AMQP connections")
    watermark = args.watermark_mib
    broker = WarrenProcess(["--workers", str(args.workers), "--jwt-secret", SECRET, "--log-level", "warning",
                            "--vm-memory-high-watermark-absolute", f"{watermark}MiB"])
    tmp = Path(tempfile.mkdtemp(prefix="chat-flood-"))
    res: dict = {"args": {k: v for k, v in vars(args).items() if k != "out"}, "load_before": loadavg()}
    failures: list[str] = []
    procs: list[Proc] = []
    sampler = slow = None
    try:
        broker.start(timeout=30)
        pid, amqp, http, web = broker.pid, broker.amqp_port, broker.http_port, broker.web_port
        sampler = Sampler(pid)
        sampler.start()
        time.sleep(1.5)
        res["rss_idle_mib"] = rss_mib(pid)
        res["fds_idle"] = open_files(pid)

        # The idle crowd first: AMQP connections, then WebSocket users.
        sampler.phase = "connect"
        n = args.seconds + 10
        crowd = Proc("crowd", perf_cmd(amqp, "-x", 0, "-y", 0, "--idle", args.idle, "--churn", args.churn,
                                       "--prefix", "crowd-", "--connect-rate", args.connect_rate, "--threads", 1,
                                       "-z", n), tmp)
        procs.append(crowd)
        t_idle = wait_for(lambda: "idle connections open" in crowd.stderr_text() or crowd.proc.poll() is not None,
                          args.idle / args.connect_rate * 4 + 60, "idle AMQP connections")
        if crowd.proc.poll() is not None:
            raise RuntimeError(f"warren-perf --idle exited {crowd.proc.returncode}: {crowd.stderr_text()[-2000:]}")
        ws = Proc("ws", [FLOOD, "--json", "-p", web, "--jwt-secret", SECRET, "-n", args.ws, "-r", 1000,
                         "--source-base", "127.31.0.1", "-z", n + 5], tmp)
        procs.append(ws)

        def ws_open() -> bool:
            for line in reversed(ws.lines):
                if line.startswith("{") and '"open"' in line:
                    try:
                        return json.loads(line).get("open", 0) >= args.ws
                    except json.JSONDecodeError:
                        return False
            return ws.proc.poll() is not None
        t_ws = wait_for(ws_open, args.ws / 1000 * 4 + 60, "idle WebSocket users")
        res["ws_open"] = args.ws if ws.proc.poll() is None else 0
        res["connect_s"] = {"amqp_idle": round(t_idle, 1), "ws": round(t_ws, 1)}
        res["rss_connected_mib"] = rss_mib(pid)
        res["fds_connected"] = open_files(pid)
        log(f"{args.idle} idle AMQP, {args.ws} WebSockets open; RSS {res['rss_connected_mib']:.0f} MiB "
            f"(load {loadavg()})")

        # The flood, the slowloris and the well-behaved client, all for --seconds.
        sampler.phase = "flood"
        slow = Slowloris({"mgmt": http, "web": web}, args.slowloris)
        slow.start()
        flood = Proc("flood", perf_cmd(amqp, "-x", args.publishers, "--fanout", args.queues, "-s", args.size,
                                       "-q", 10, "--prefix", "flood-", "-z", args.seconds), tmp)
        procs.append(flood)
        time.sleep(min(5.0, args.seconds / 10))
        good = Proc("good", good_client(amqp, args, args.seconds - min(5.0, args.seconds / 10) - 1), tmp)
        procs.append(good)
        res["load_during"] = []
        t_end = time.monotonic() + args.seconds
        while time.monotonic() < t_end and broker.alive():
            time.sleep(min(30.0, max(0.1, t_end - time.monotonic())))
            res["load_during"].append(loadavg())
        codes = {p.name: p.wait(120) for p in (good, flood)}
        slow.stop()
        res["slowloris"] = slow.summary()
        res["good"] = good.last_json()
        res["flood"] = flood.last_json()
        res["exit_codes"] = codes
        crowd.stop()
        ws.stop()
        codes["crowd"] = crowd.wait(60)
        codes["ws"] = ws.wait(60)
        res["crowd"] = crowd.last_json()
        res["ws"] = ws.last_json()
        res["rss_flood_mib"] = {"max": max(sampler.of("flood", "rss_mib"), default=None),
                                "median": round(statistics.median(sampler.of("flood", "rss_mib")), 1)
                                if sampler.of("flood", "rss_mib") else None}
        res["fds_flood_max"] = max(sampler.of("flood", "fds"), default=None)

        # Recovery.
        sampler.phase = "after"
        res["alive_after_flood"] = broker.alive()
        if broker.alive():
            res["idle_wait_s"] = round(wait_idle(pid, 60), 1)
            res["fresh_connection"] = fresh_connection_check(amqp)
            after = Proc("good-after", good_client(amqp, args, args.after_seconds), tmp)
            after.wait(args.after_seconds + 60)
            res["good_after"] = after.last_json()
            res["leftover_queues"] = leftover_queues(http)
            rss, fds = settle(pid, 30)
            res["rss_after_mib"], res["fds_after"] = rss, fds
        res["load_after"] = loadavg()
        res["samples"] = sampler.samples
    finally:
        if slow:
            slow.stop()
        for p in procs:
            p.stop()
        if sampler:
            sampler.stopping.set()
        alive = broker.alive()
        code = broker.stop(check=False, timeout=60) if alive else broker.proc.returncode if broker.proc else None
        res["broker_exit"] = code
        res["broker_log_tail"] = broker.log_tail(20) if code not in (0, None) else ""
        broker.cleanup()
        if args.keep:
            log(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    res["failures"] = failures + check(res, args)
    return res


def check(res: dict, args) -> list[str]:
    """The targets; each failed one as a sentence."""
    f = []
    good, lat = res.get("good", {}), res.get("good", {}).get("latency_us", {})
    if not good:
        f.append("the well-behaved client gave no summary")
    elif (lat.get("p99") or 1e12) > args.p99_ms * 1000:
        f.append(f"well-behaved client p99 {lat.get('p99', 0) / 1000:.1f} ms above {args.p99_ms} ms")
    if good and (good.get("confirmed_unreceived", 1) > 0 or good.get("confirmed", 0) == 0):
        f.append(f"confirmed messages lost: {good.get('confirmed_unreceived')} of {good.get('confirmed')}")
    if good.get("errors"):
        f.append("the well-behaved client's connection failed")
    bound = args.watermark_mib * (1 + args.margin)
    rss_max = (res.get("rss_flood_mib") or {}).get("max")
    if rss_max is None or rss_max > bound:
        f.append(f"RSS {rss_max} MiB above the watermark {args.watermark_mib} MiB + {args.margin:.0%}")
    if not res.get("alive_after_flood") or res.get("broker_exit") not in (0,):
        f.append(f"broker died or did not exit cleanly (exit {res.get('broker_exit')})")
    for name, s in (res.get("slowloris") or {}).items():
        held = max(s["held_s_max"] or 0, s["open_at_stop_s_max"] or 0)
        if held > HEAD_DEADLINE_S + args.deadline_slack:
            f.append(f"{name}: a slowloris socket was held {held} s (deadline {HEAD_DEADLINE_S} s)")
        if args.seconds > HEAD_DEADLINE_S + args.deadline_slack and not s["closed_by_server"]:
            f.append(f"{name}: the server closed no slowloris socket")
    crowd = res.get("crowd", {})
    if crowd.get("idle_open", 0) < args.idle:
        f.append(f"only {crowd.get('idle_open')} of {args.idle} idle AMQP connections opened")
    if crowd.get("idle_failed", 0) > 0:
        f.append(f"{crowd.get('idle_failed')} idle AMQP connections were lost")
    if args.churn and crowd.get("churn_cycles", 0) == 0:
        f.append("no churn cycle completed")
    ws = res.get("ws", {})
    if ws and ws.get("lost", 0) > 0:
        f.append(f"{ws.get('lost')} idle WebSockets were lost")
    if res.get("flood", {}).get("received", 0) == 0:
        f.append("the flood's consumers received nothing")
    fresh = res.get("fresh_connection") or {}
    if fresh.get("consumed") != 100:
        f.append(f"a fresh connection after the flood got {fresh.get('consumed')} of 100 messages")
    after = (res.get("good_after") or {}).get("latency_us", {})
    if (after.get("p99") or 1e12) > args.p99_ms * 1000:
        f.append(f"after the flood the well-behaved client's p99 is {after.get('p99', 0) / 1000:.1f} ms")
    if res.get("leftover_queues"):
        f.append(f"queues left after the flood: {res['leftover_queues'][:5]}")
    for name, code in (res.get("exit_codes") or {}).items():
        if code not in (0, None) and not (name in ("crowd", "ws") and code in (0, 1, -2, 130)):
            f.append(f"{name} exited {code}")
    return f


def print_summary(res: dict, args) -> None:
    g, a = res.get("good", {}), res.get("good_after", {})
    gl, al = g.get("latency_us", {}), a.get("latency_us", {})
    fl, cr, ws = res.get("flood", {}), res.get("crowd", {}), res.get("ws", {})
    ms = lambda us: f"{us / 1000:.1f}" if us is not None else "-"  # noqa: E731
    print(f"=== chat flood: {args.seconds} s, load before {res.get('load_before')}, during "
          f"{', '.join(res.get('load_during', []))}, after {res.get('load_after')}")
    print(f"  idle: {cr.get('idle_open')} AMQP of {args.idle} ({cr.get('idle_failed')} lost), "
          f"{res.get('ws_open')} WebSockets of {args.ws} ({ws.get('lost')} lost); connect {res.get('connect_s')}")
    print(f"  churn: {cr.get('churn_cycles')} connections ({cr.get('churn_cycles', 0) / max(1, args.seconds):.0f}/s)"
          f", {cr.get('churn_failed')} failed")
    print(f"  flood: {args.publishers} publishers x {args.size} B to {args.queues} queues: sent "
          f"{fl.get('sent_rate', 0):.1f} msg/s, delivered {fl.get('received_rate', 0):.0f} msg/s "
          f"({fl.get('received_rate', 0) * args.size / 2**20:.0f} MiB/s), blocked {fl.get('blocked')} time(s)")
    print(f"  well-behaved client: {g.get('confirmed')} confirmed, {g.get('confirmed_unreceived')} lost, "
          f"blocked {g.get('blocked')}; latency p50 {ms(gl.get('p50'))} ms, p95 {ms(gl.get('p95'))} ms, "
          f"p99 {ms(gl.get('p99'))} ms, max {ms(gl.get('max'))} ms (target p99 < {args.p99_ms} ms)")
    print(f"  after the flood: p50 {ms(al.get('p50'))} ms, p99 {ms(al.get('p99'))} ms; fresh connection "
          f"{res.get('fresh_connection')}; leftover queues {res.get('leftover_queues')}")
    rf = res.get("rss_flood_mib", {})
    print(f"  RSS: idle {res.get('rss_idle_mib')} MiB, connected {res.get('rss_connected_mib')} MiB, flood median "
          f"{rf.get('median')} max {rf.get('max')} MiB (watermark {args.watermark_mib} MiB + {args.margin:.0%}), "
          f"after {res.get('rss_after_mib')} MiB")
    print(f"  open files: idle {res.get('fds_idle')}, connected {res.get('fds_connected')}, flood max "
          f"{res.get('fds_flood_max')}, after {res.get('fds_after')}")
    for name, s in (res.get("slowloris") or {}).items():
        print(f"  slowloris {name}: {s['closed_by_server']} closed by the server, answers {s['answers']}, held "
              f"median {s['held_s_median']} s, max {s['held_s_max']} s; open at the end: up to "
              f"{s['open_at_stop_s_max']} s")
    print(f"  broker exit {res.get('broker_exit')}")
    for f in res["failures"]:
        print(f"FAIL {f}")
    if not res["failures"]:
        print("all targets met")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=300)
    p.add_argument("--idle", type=int, default=10_000, help="idle AMQP connections")
    p.add_argument("--ws", type=int, default=2_000, help="idle WebSocket users")
    p.add_argument("--publishers", type=int, default=100)
    p.add_argument("--queues", type=int, default=50)
    p.add_argument("--size", type=int, default=1 << 20)
    p.add_argument("--churn", type=int, default=100, help="clients opening and closing connections and channels")
    p.add_argument("--slowloris", type=int, default=50, help="trickling sockets per HTTP port")
    p.add_argument("--connect-rate", type=float, default=2000, help="idle AMQP connections opened per second")
    p.add_argument("--good-rate", type=float, default=100, help="the well-behaved client's messages per second")
    p.add_argument("--after-seconds", type=float, default=10)
    p.add_argument("--good-nice", type=int, default=0,
                   help="nice value of the well-behaved client's process (negative: ahead of the flood's load "
                        "generators on the shared cores, as a client on its own machine would be; needs root)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--watermark-mib", type=int, default=1024, help="--vm-memory-high-watermark-absolute")
    p.add_argument("--margin", type=float, default=0.25, help="RSS may exceed the watermark by this fraction")
    p.add_argument("--p99-ms", type=float, default=50)
    p.add_argument("--deadline-slack", type=float, default=3, help="seconds past the head deadline still accepted")
    p.add_argument("--out", type=Path)
    p.add_argument("--keep", action="store_true", help="keep the load tools' logs")
    return p


def main() -> int:
    args = parser().parse_args()
    for binary in (PERF, FLOOD):
        if not binary.exists():
            sys.exit(f"{binary} not found: build warren, warren-perf and warren-flood first")
    res = run(args)
    if args.out:
        args.out.write_text(json.dumps(res, indent=1))
    print_summary(res, args)
    return 1 if res["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
