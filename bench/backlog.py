#!/usr/bin/python3
"""Deep backlog (paging): a queue with millions of 1 KiB messages on disk, measured against the
durability issue's targets. Starts build/warren on free ports with a temporary data dir and drives
it with build/warren-perf:

  1. empty-queue rate: 1 producer, 1 consumer, 1 KiB, prefetch 200, ack every 50 (the `throughput`
     scenario with -s 1024), the best of --repeat runs of --empty-seconds in which the consumer kept
     up (see measure_empty_rate); measured again after the drain, as the machine's load moves;
  2. fill: N messages into perf-q-0 with no consumer (warren-perf --pmessages N --keep-queues),
     the broker's VmRSS sampled every second;
  3. drain: one consumer while one producer publishes at a quarter of the empty-queue rate, until
     the backlog is gone (or --max-drain seconds): deliveries/s, net drain, RSS;
  4. restart (persistent messages to a durable queue, as transient ones are not recovered): fill N
     persistent messages with confirms, stop the broker, start it again on the same data dir and
     time exec -> AMQP port open -> passive queue.declare reporting N. Once after SIGTERM with the
     files in the page cache (warm), once after kill -9 with the data dir's files evicted from the
     page cache first (cold; posix_fadvise on our own files only);
  5. with --persistent-drain, steps 1 and 3 again with persistent messages on the recovered backlog.

    /usr/bin/python3 bench/backlog.py [--messages 10000000] [--size 1024] [--out result.json]
    /usr/bin/python3 bench/backlog.py --messages 100000000 --size 16 --rss-target-mb 256

Transient messages are the primary case (they page to spool records), persistent the secondary.
Every step is bounded in time; the data dir (about N x 1.1 KB) is removed at the end, and the run
refuses to start unless the disk has 2.5 times that free. BUILD_DIR (default build/) picks the
binaries. Needs Debian's python3-pika (as the integration tests do).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pika

REPO = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("BUILD_DIR", REPO / "build"))
WARREN = BUILD / "warren"
PERF = BUILD / "warren-perf"
QUEUE = "perf-q-0"  # warren-perf's first queue
PAGE_THRESHOLD = 20_000  # Warren pages a queue past this many messages in memory (vhost.hpp)
RECORD_OVERHEAD = 96  # bytes per message on disk beyond the body: record framing, ack record
GB = 1e9  # the RSS target is "1 GB": 10^9 bytes, the stricter reading


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def proc_status_kib(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def proc_cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    except (OSError, IndexError):
        return None


def proc_io(pid: int) -> dict[str, int]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            k, v = line.split(":")
            out[k] = int(v)
    except OSError:
        pass
    return out


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total


def evict_from_page_cache(path: Path) -> int:
    """Drops the page cache of our own files only (not the machine's): sync, then POSIX_FADV_DONTNEED."""
    n = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                fd = os.open(os.path.join(root, f), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                n += 1
            finally:
                os.close(fd)
    return n


def queue_depth(port: int, queue: str, timeout: float = 10.0) -> int | None:
    """The queue's message count from a passive queue.declare; None if it does not exist."""
    params = pika.ConnectionParameters("127.0.0.1", port, heartbeat=0, blocked_connection_timeout=timeout,
                                       socket_timeout=timeout, stack_timeout=timeout)
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        try:
            return ch.queue_declare(queue, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker:
            return None
    finally:
        try:
            conn.close()
        except Exception:
            pass


def delete_queue(port: int, queue: str) -> None:
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, heartbeat=0))
    try:
        conn.channel().queue_delete(queue)
    except pika.exceptions.ChannelClosedByBroker:
        pass  # already gone
    finally:
        if conn.is_open:
            conn.close()


class Broker:
    """build/warren on free loopback ports with a data dir that outlives restarts."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.data_dir = tmp / "data"
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.starts = 0

    def start(self, timeout: float) -> dict:
        """Starts and waits for the ports file; returns the timings of the start."""
        self.starts += 1
        ports_file = self.tmp / "ports.json"
        ports_file.unlink(missing_ok=True)
        self.log_path = self.tmp / f"warren-{self.starts}.log"
        args = [str(WARREN), "--amqp-port", "0", "--http-port", "0", "--web-port", "0", "--prometheus-port", "0", "--bind", "127.0.0.1",
                "--data-dir", str(self.data_dir), "--ports-file", str(ports_file), "--log-level", "info"]
        with open(self.log_path, "wb") as out:
            t0 = time.monotonic()
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        deadline = t0 + timeout
        while not ports_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"warren exited with {self.proc.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"warren did not listen within {timeout:.0f} s")
            time.sleep(0.01)
        t_ports = time.monotonic()
        self.port = json.loads(ports_file.read_text())["amqp"]
        return {"t0": t0, "ports_file_s": t_ports - t0}

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def recovered_line(self) -> str:
        for line in self.log_path.read_text(errors="replace").splitlines():
            if "recovered" in line:
                return line.split("] ", 3)[-1] if "] " in line else line
        return ""

    @property
    def pid(self) -> int:
        assert self.proc
        return self.proc.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120.0) -> float:
        """Sends sig and waits; returns the seconds the broker took to exit."""
        if not self.proc or self.proc.poll() is not None:
            return 0.0
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"warren did not exit within {timeout:.0f} s of signal {sig}: killing it")
            self.proc.kill()
            self.proc.wait(30)
        return time.monotonic() - t0


class Sampler(threading.Thread):
    """Every second: the broker's VmRSS, CPU time and I/O, and (when `watch` is set) the queue's depth."""

    def __init__(self, broker: Broker):
        super().__init__(daemon=True)
        self.broker = broker
        self.samples: list[dict] = []
        self.phase = "start"
        self.watch = False
        self.depth: int | None = None
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        t_start = time.monotonic()
        while not self.stopping.is_set():
            t = time.monotonic()
            proc = self.broker.proc
            if proc and proc.poll() is None:
                s = {"t": round(t - t_start, 2), "phase": self.phase, "rss_kib": proc_status_kib(proc.pid, "VmRSS"),
                     "cpu_s": proc_cpu_seconds(proc.pid)}
                io = proc_io(proc.pid)
                s["read_bytes"] = io.get("read_bytes")
                s["write_bytes"] = io.get("write_bytes")
                if self.watch:
                    try:
                        self.depth = queue_depth(self.broker.port, QUEUE, timeout=5)
                    except Exception as e:  # a busy broker may not answer in time: retry next second
                        log(f"queue depth: {e!r}")
                    s["depth"] = self.depth
                with self.lock:
                    self.samples.append(s)
            self.stopping.wait(max(0.0, 1.0 - (time.monotonic() - t)))

    def set_phase(self, phase: str, watch: bool) -> None:
        self.depth = None
        self.watch = watch
        self.phase = phase

    def of(self, phase: str) -> list[dict]:
        with self.lock:
            return [s for s in self.samples if s["phase"] == phase]

    def rss_max_kib(self, phase: str | None = None) -> int:
        with self.lock:
            values = [s["rss_kib"] for s in self.samples
                      if s["rss_kib"] is not None and (phase is None or s["phase"] == phase)]
        return max(values, default=0)


PROGRESS = re.compile(r"sent\s+(\d+) msg/s.*received\s+(\d+) msg/s")


def run_perf(name: str, args: list[str], port: int, tmp: Path, timeout: float,
             stop_when=None) -> dict:
    """One warren-perf run with --json; SIGINT when stop_when() says so or after `timeout` seconds
    (it then prints its summary of what it measured). Returns the summary plus the per-second rates."""
    cmd = [str(PERF), "--port", str(port), "--json", *args]
    err_path = tmp / f"perf-{name}.log"
    log(f"{name}: {' '.join(cmd[1:])}")
    with open(err_path, "wb") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True)
        t0 = time.monotonic()
        interrupted = False
        while p.poll() is None:
            time.sleep(0.2)
            elapsed = time.monotonic() - t0
            if not interrupted and (elapsed > timeout or (stop_when and stop_when())):
                p.send_signal(signal.SIGINT)
                interrupted = True
            if elapsed > timeout + 120:
                p.kill()
                raise RuntimeError(f"warren-perf {name} did not stop")
        out = p.stdout.read() if p.stdout else ""
    lines = [l for l in out.splitlines() if l.startswith("{")]
    if not lines:
        tail = err_path.read_text(errors="replace").splitlines()[-20:]
        raise RuntimeError(f"warren-perf {name} exited {p.returncode} without a summary; the end of {err_path}:\n"
                           + "\n".join(tail))
    summary = json.loads(lines[-1])
    sent, received = [], []
    for line in err_path.read_text(errors="replace").splitlines():
        if m := PROGRESS.search(line):
            sent.append(int(m.group(1)))
            received.append(int(m.group(2)))
    summary["per_second_sent"] = sent
    summary["per_second_received"] = received
    summary["exit_code"] = p.returncode
    summary["command"] = "build/warren-perf " + " ".join(cmd[1:]).replace(f"--port {port}", "--port $PORT")
    if p.returncode != 0:
        log(f"warren-perf {name} exited {p.returncode}; see {err_path}")
    return summary


def measure_empty_rate(broker: Broker, sampler: Sampler, tmp: Path, args, persistent: bool, tag: str) -> dict:
    """The empty-queue rate: the best delivery rate of a run in which the consumer kept up with the
    producer (what is left undelivered at the end is below the paging threshold). First --repeat
    runs with an unlimited producer. On this shared machine a hiccup can let the queue grow past
    the paging threshold; the run then measures a paging queue, whose deliveries drop and do not
    recover while the producer keeps its pace, so such a run does not count. If no unlimited run
    kept up, the producer is paced, from the best unlimited run's delivery rate down by 10% per
    step, --repeat runs per step, until one run keeps up (at most 6 steps). The best run that kept
    up is the rate (the strict reading: the broker showed it can do that); the median of the runs
    that kept up is reported beside it."""
    kind = "persistent" if persistent else "transient"
    extra = ["--persistent"] if persistent else []

    def runs_at(rate: float, step: str) -> list[dict]:
        runs = []
        for i in range(args.repeat):
            phase = f"empty-{kind}-{tag}-{step}-{i + 1}"
            sampler.set_phase(phase, watch=True)
            load = loadavg()
            paced = ["-r", f"{rate:.0f}"] if rate else []
            r = run_perf(phase, ["--scenario", "throughput", "-s", str(args.size), "-z", str(args.empty_seconds),
                                 *paced, *extra], broker.port, tmp, timeout=args.empty_seconds + 60)
            r["max_depth"] = max((s.get("depth") or 0 for s in sampler.of(phase)), default=0)
            r["kept_up"] = r["sent"] - r["received"] < PAGE_THRESHOLD
            r["loadavg"] = load
            runs.append(r)
            log(f"{phase}: received {r['received_rate']:.0f} msg/s, sent {r['sent_rate']:.0f} msg/s, "
                f"max depth {r['max_depth']}, {'kept up' if r['kept_up'] else 'fell behind'}, load {load}")
        sampler.set_phase("idle", watch=False)
        return runs

    unlimited = runs_at(0, "unlimited")
    res = {"kind": kind, "when": tag, "unlimited_runs": unlimited, "paced": []}
    every = list(unlimited)
    rate = max(r["received_rate"] for r in unlimited)
    for step in range(6):
        if any(r["kept_up"] for r in every):
            break
        runs = runs_at(rate, f"paced{step + 1}")
        res["paced"].append({"rate": rate, "runs": runs})
        every += runs
        rate *= 0.9
    kept = [r["received_rate"] for r in every if r["kept_up"]]
    res["verified"] = bool(kept)
    res["rate"] = max(kept) if kept else max(r["received_rate"] for r in every)
    res["kept_up_median"] = statistics.median(kept) if kept else None
    res["kept_up_runs"] = len(kept)
    res["runs_total"] = len(every)
    if not kept:
        log(f"empty-{kind}-{tag}: no run kept up; the best delivery rate is used")
    return res


def fill(broker: Broker, sampler: Sampler, tmp: Path, args, persistent: bool) -> dict:
    kind = "persistent" if persistent else "transient"
    phase = f"fill-{kind}"
    extra = ["--persistent", "--confirm", "1000"] if persistent else []
    sampler.set_phase(phase, watch=True)
    rss0 = proc_status_kib(broker.pid, "VmRSS")
    load = loadavg()
    t0 = time.monotonic()
    r = run_perf(phase, ["-x", "1", "-y", "0", "-s", str(args.size), "--pmessages", str(args.messages),
                         "--keep-queues", "-z", str(args.fill_timeout), *extra],
                 broker.port, tmp, timeout=args.fill_timeout)
    # Without confirms the tool is done once it has written everything; the broker may still be
    # taking the last of it in.
    depth = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        depth = queue_depth(broker.port, QUEUE)
        if depth is not None and depth >= args.messages:
            break
        time.sleep(1)
    seconds = time.monotonic() - t0
    sampler.set_phase("idle", watch=False)
    rss1 = proc_status_kib(broker.pid, "VmRSS")
    res = {"kind": kind, "messages": args.messages, "depth": depth, "seconds": seconds,
           "rate": args.messages / seconds, "rss_before_kib": rss0, "rss_after_kib": rss1,
           "rss_max_kib": max(sampler.rss_max_kib(phase), rss0 or 0, rss1 or 0),
           "disk_bytes": dir_bytes(broker.data_dir), "loadavg_start": load, "loadavg_end": loadavg(),
           "perf": r}
    log(f"{phase}: depth {depth} after {seconds:.1f} s ({res['rate']:.0f} msg/s); RSS "
        f"{rss0} -> {res['rss_after_kib']} KiB (max {res['rss_max_kib']}); data dir {res['disk_bytes'] / GB:.2f} GB")
    if depth != args.messages:
        raise RuntimeError(f"{phase}: the queue holds {depth} messages, not {args.messages}")
    return res


def drain(broker: Broker, sampler: Sampler, tmp: Path, args, persistent: bool, empty_rate: float) -> dict:
    kind = "persistent" if persistent else "transient"
    phase = f"drain-{kind}"
    produce_rate = empty_rate / 4
    extra = ["--persistent"] if persistent else []
    start_depth = queue_depth(broker.port, QUEUE)
    assert start_depth is not None
    # Meeting the target means a net drain of at least a quarter of the empty rate: give it 1.5x
    # the time that takes, within --max-drain.
    timeout = min(args.max_drain, 60 + 1.5 * start_depth / max(produce_rate, 1.0))
    done_below = max(2 * PAGE_THRESHOLD // 10, 1000)  # what is left is no longer a backlog
    sampler.set_phase(phase, watch=True)
    cpu0, io0 = proc_cpu_seconds(broker.pid), proc_io(broker.pid)
    load = loadavg()
    t0 = time.monotonic()
    samples_at_start = len(sampler.of(phase))

    def drained() -> bool:
        d = sampler.depth
        return d is not None and d < done_below and len(sampler.of(phase)) > samples_at_start + 2

    r = run_perf(phase, ["--scenario", "throughput", "-s", str(args.size), "-r", f"{produce_rate:.0f}",
                         "--keep-queues", "-z", str(int(timeout) + 5), *extra],
                 broker.port, tmp, timeout=timeout, stop_when=drained)
    seconds = time.monotonic() - t0
    cpu1, io1 = proc_cpu_seconds(broker.pid), proc_io(broker.pid)
    end_depth = queue_depth(broker.port, QUEUE)
    sampler.set_phase("idle", watch=False)
    samples = sampler.of(phase)
    depth_curve = [(s["t"], s.get("depth"), s["rss_kib"]) for s in samples]
    per_sec = r["per_second_received"]
    # The tool's window starts after its connections are up: rates are over its own duration.
    deliveries = r["received_rate"]
    net = (start_depth - (end_depth or 0)) / r["duration_s"] if r["duration_s"] else 0
    # Every message is accounted for: what was there plus what came in, minus what is left, was
    # delivered (within a prefetch window of 200 still unacked when the consumer closed).
    missing = start_depth + r["sent"] - (end_depth or 0) - r["received"]
    res = {"kind": kind, "start_depth": start_depth, "end_depth": end_depth, "seconds": seconds,
           "duration_s": r["duration_s"], "producer_target_rate": produce_rate, "publish_rate": r["sent_rate"],
           "deliveries_per_s": deliveries,
           "deliveries_median_per_s": statistics.median(per_sec) if per_sec else 0,
           "deliveries_p10_per_s": sorted(per_sec)[len(per_sec) // 10] if per_sec else 0,
           "deliveries_p90_per_s": sorted(per_sec)[len(per_sec) * 9 // 10] if per_sec else 0,
           "net_drain_per_s": net, "drained": end_depth is not None and end_depth < done_below,
           "unaccounted": missing, "rss_max_kib": sampler.rss_max_kib(phase),
           "broker_cpu_s": (cpu1 or 0) - (cpu0 or 0),
           "broker_read_bytes": io1.get("read_bytes", 0) - io0.get("read_bytes", 0),
           "broker_write_bytes": io1.get("write_bytes", 0) - io0.get("write_bytes", 0),
           "loadavg_start": load, "loadavg_end": loadavg(), "depth_curve": depth_curve, "perf": r}
    log(f"{phase}: {deliveries:.0f} deliveries/s (median per second {res['deliveries_median_per_s']:.0f}), "
        f"publishing {r['sent_rate']:.0f} msg/s, net drain {net:.0f} msg/s, depth {start_depth} -> {end_depth} "
        f"in {r['duration_s']:.1f} s, RSS max {res['rss_max_kib']} KiB, unaccounted {missing}")
    return res


def restart(broker: Broker, sampler: Sampler, args, sig: int, cold: bool) -> dict:
    name = ("cold" if cold else "warm") + ("-kill9" if sig == signal.SIGKILL else "-sigterm")
    phase = f"restart-{name}"
    sampler.set_phase(phase, watch=False)
    rss_before = proc_status_kib(broker.pid, "VmRSS")
    load = loadavg()
    stop_s = broker.stop(sig, timeout=args.restart_timeout)
    evicted = evict_from_page_cache(broker.data_dir) if cold else 0
    timings = broker.start(timeout=args.restart_timeout)
    t0 = timings["t0"]
    # The AMQP port: accepts a connection and answers a passive declare with the count.
    depth = None
    deadline = time.monotonic() + args.restart_timeout
    t_count = None
    while time.monotonic() < deadline:
        try:
            depth = queue_depth(broker.port, QUEUE)
            if depth is not None and depth >= args.messages:
                t_count = time.monotonic()
                break
        except Exception:
            pass
        time.sleep(0.05)
    res = {"name": name, "stop_seconds": stop_s, "evicted_files": evicted,
           "exec_to_listening_s": timings["ports_file_s"],
           "exec_to_count_s": (t_count - t0) if t_count else None, "depth": depth,
           "recovered_line": broker.recovered_line(), "rss_before_kib": rss_before,
           "rss_after_kib": proc_status_kib(broker.pid, "VmRSS"), "loadavg": load}
    time.sleep(2)
    res["rss_after_settle_kib"] = proc_status_kib(broker.pid, "VmRSS")
    sampler.set_phase("idle", watch=False)
    log(f"{phase}: stop {stop_s:.1f} s; exec -> listening {res['exec_to_listening_s']:.2f} s, -> count {depth} "
        f"{res['exec_to_count_s']} s; RSS {res['rss_after_kib']} KiB; {res['recovered_line']}")
    return res


def fmt_kib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:,.0f} MiB ({kib * 1024 / GB:.3f} GB)"


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def summary(res: dict) -> str:
    a = res["args"]
    out = [f"== Deep backlog: {a['messages']:,} messages of {a['size']} B, Warren {res['commit']} ==",
           f"load average at start {res['loadavg_start']}, at end {res.get('loadavg_end', '-')}; "
           f"{os.cpu_count()} cores; broker with default workers"]
    for kind in ("transient", "persistent"):
        empties = [e for e in (res.get(f"empty_{kind}"), res.get(f"empty_{kind}_after")) if e]
        for e in empties:
            def desc(runs):
                return ", ".join(f"{r['received_rate']:,.0f}{'' if r['kept_up'] else '*'}" for r in runs)
            med = "-" if e["kept_up_median"] is None else f"{e['kept_up_median']:,.0f}"
            out.append(f"empty-queue rate ({kind}, {e['when']}, 1p/1c, prefetch 200, ack every 50): "
                       f"{e['rate']:,.0f} deliveries/s{'' if e['verified'] else ' (NO run kept up)'}; median of the "
                       f"{e['kept_up_runs']} of {e['runs_total']} runs that kept up {med}")
            out.append(f"  unlimited producer: runs {desc(e['unlimited_runs'])} (* fell behind: the queue paged)")
            for p in e["paced"]:
                out.append(f"  producer paced at {p['rate']:,.0f} msg/s: runs {desc(p['runs'])}")
        f = res.get(f"fill_{kind}")
        if f:
            out.append(f"fill ({kind}, no consumer): {f['messages']:,} in {f['seconds']:.1f} s ({f['rate']:,.0f} msg/s); "
                       f"RSS {fmt_kib(f['rss_before_kib'])} -> {fmt_kib(f['rss_after_kib'])}, max "
                       f"{fmt_kib(f['rss_max_kib'])}; data dir {f['disk_bytes'] / GB:.2f} GB")
        d = res.get(f"drain_{kind}")
        if d:
            out.append(f"drain ({kind}, 1 consumer + 1 producer at {d['producer_target_rate']:,.0f} msg/s = a quarter "
                       f"of the rate before): {d['deliveries_per_s']:,.0f} deliveries/s (per-second median "
                       f"{d['deliveries_median_per_s']:,.0f}, p10 {d['deliveries_p10_per_s']:,.0f}, p90 "
                       f"{d['deliveries_p90_per_s']:,.0f}), publishing "
                       f"{d['publish_rate']:,.0f} msg/s, net drain {d['net_drain_per_s']:,.0f} msg/s; depth "
                       f"{d['start_depth']:,} -> {d['end_depth']:,} in {d['duration_s']:.1f} s"
                       f"{'' if d['drained'] else ' (NOT drained: time limit)'}; RSS max {fmt_kib(d['rss_max_kib'])}; "
                       f"broker CPU {d['broker_cpu_s']:.0f} s, disk read {d['broker_read_bytes'] / GB:.2f} GB; "
                       f"unaccounted {d['unaccounted']}")
            for e in empties:
                half = e["rate"] / 2
                out.append(f"  target drain >= empty/2 ({e['when']}, best run): {d['deliveries_per_s']:,.0f} / "
                           f"{half:,.0f} = {d['deliveries_per_s'] / half:.2f} -> {verdict(d['deliveries_per_s'] >= half)}")
                if e["kept_up_median"]:
                    half = e["kept_up_median"] / 2
                    out.append(f"  (against the median of the runs that kept up: {d['deliveries_per_s'] / half:.2f})")
    rss = res.get("rss_max_transient_kib")
    if rss:
        target = a.get("rss_target_mb", 1000) * 1e6
        out.append(f"  target RSS <= {target / 1e6:,.0f} MB over fill + drain (transient): {fmt_kib(rss)} = "
                   f"{rss * 1024 / target:.2f} of the target -> {verdict(rss * 1024 <= target)}")
        f = res.get("fill_transient")
        if f and f["rss_before_kib"]:
            per = (f["rss_max_kib"] - f["rss_before_kib"]) * 1024 / f["messages"]
            out.append(f"  RSS growth over the fill: {per:.2f} bytes per message")
    for r in res.get("restarts", []):
        out.append(f"restart {r['name']} with {a['messages']:,} persistent messages: stop {r['stop_seconds']:.1f} s; "
                   f"exec -> listening {r['exec_to_listening_s']:.2f} s; exec -> queue reports its count "
                   f"{'-' if r['exec_to_count_s'] is None else format(r['exec_to_count_s'], '.2f')} s; "
                   f"RSS after {fmt_kib(r['rss_after_settle_kib'])}")
        out.append(f"  log: {r['recovered_line']}")
    rss = res.get("rss_max_persistent_kib")
    if rss:
        out.append(f"  RSS max over the persistent phases: {fmt_kib(rss)} = {rss * 1024 / GB:.2f} of 1 GB")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=10_000_000, help="backlog size N (default 10 000 000)")
    ap.add_argument("--size", type=int, default=1024, help="message body bytes (default 1024)")
    ap.add_argument("--empty-seconds", type=int, default=10, help="seconds per empty-queue run (default 10)")
    ap.add_argument("--repeat", type=int, default=3, help="empty-queue runs; their median is the rate (default 3)")
    ap.add_argument("--max-drain", type=float, default=1800, help="seconds a drain may take at most (default 1800)")
    ap.add_argument("--no-restart", action="store_true", help="skip the persistent fill and the restarts")
    ap.add_argument("--persistent-drain", action="store_true",
                    help="after the restarts, the empty-queue rate and the drain with persistent messages")
    ap.add_argument("--rss-target-mb", type=float, default=1000,
                    help="RSS target over fill + drain, in MB of 10^6 bytes (default 1000: the 10 M x 1 KiB "
                         "target; 256 for 100 M x 16 B)")
    ap.add_argument("--tmpdir", default=tempfile.gettempdir(), help="where the data dir goes (default /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep logs (the data dir is always removed)")
    ap.add_argument("--out", help="write every figure as JSON to this file")
    args = ap.parse_args()
    args.fill_timeout = int(120 + args.messages / 5_000)  # far below 5 000 msg/s something is broken
    args.restart_timeout = 120 + args.messages / 20_000

    for b in (WARREN, PERF):
        if not b.exists():
            sys.exit(f"backlog: {b} not found (build first, or set BUILD_DIR)")
    need = args.messages * (args.size + RECORD_OVERHEAD)
    free = shutil.disk_usage(args.tmpdir).free
    if free < 2.5 * need:
        sys.exit(f"backlog: {free / GB:.1f} GB free in {args.tmpdir}, need 2.5 x {need / GB:.1f} GB; refusing")

    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"], capture_output=True,
                           text=True).stdout.strip()
    res: dict = {"args": vars(args), "commit": commit + ("+dirty src" if dirty else ""), "loadavg_start": loadavg(),
                 "restarts": []}
    tmp = Path(tempfile.mkdtemp(prefix="warren-backlog.", dir=args.tmpdir))
    log(f"temp dir {tmp}; {free / GB:.0f} GB free, about {need / GB:.1f} GB needed; commit {res['commit']}")
    broker = Broker(tmp)
    sampler = Sampler(broker)

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    status = 0
    try:
        broker.start(timeout=60)
        sampler.start()
        # Transient: the primary case.
        # The machine is shared and its load swings: the empty-queue rate is measured before the
        # fill and again after the drain, and the higher of the two is the one compared with.
        res["empty_transient"] = measure_empty_rate(broker, sampler, tmp, args, False, "before")
        res["fill_transient"] = fill(broker, sampler, tmp, args, persistent=False)
        res["drain_transient"] = drain(broker, sampler, tmp, args, False, res["empty_transient"]["rate"])
        res["empty_transient_after"] = measure_empty_rate(broker, sampler, tmp, args, False, "after")
        res["rss_max_transient_kib"] = max(res["fill_transient"]["rss_max_kib"],
                                           res["drain_transient"]["rss_max_kib"])
        delete_queue(broker.port, QUEUE)
        if not args.no_restart:
            # Persistent messages to a durable queue: what a restart gives back.
            if args.persistent_drain:
                res["empty_persistent"] = measure_empty_rate(broker, sampler, tmp, args, True, "before")
            res["fill_persistent"] = fill(broker, sampler, tmp, args, persistent=True)
            res["restarts"].append(restart(broker, sampler, args, signal.SIGTERM, cold=False))
            res["restarts"].append(restart(broker, sampler, args, signal.SIGKILL, cold=True))
            if args.persistent_drain:
                res["drain_persistent"] = drain(broker, sampler, tmp, args, True, res["empty_persistent"]["rate"])
                delete_queue(broker.port, QUEUE)
                res["empty_persistent_after"] = measure_empty_rate(broker, sampler, tmp, args, True, "after")
            phases = ("fill-persistent", "restart-", "drain-persistent")
            with sampler.lock:
                res["rss_max_persistent_kib"] = max(
                    (s["rss_kib"] or 0 for s in sampler.samples if s["phase"].startswith(phases)), default=0)
    except (Exception, KeyboardInterrupt) as e:
        log(f"backlog: stopped: {e!r}")
        log(broker.log_tail())
        status = 1
    finally:
        sampler.stopping.set()
        broker.stop(signal.SIGTERM, timeout=120)
        res["loadavg_end"] = loadavg()
        with sampler.lock:
            res["rss_samples"] = [(s["t"], s["phase"], s["rss_kib"], s.get("depth")) for s in sampler.samples]
        if args.out:
            Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
        shutil.rmtree(broker.data_dir, ignore_errors=True)
        if args.keep:
            log(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    try:
        print(summary(res))
    except KeyError as e:
        log(f"summary incomplete ({e})")
    return status


if __name__ == "__main__":
    sys.exit(main())
