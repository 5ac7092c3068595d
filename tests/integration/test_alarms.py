"""Memory and disk alarms against the real binary, with pika clients (Debian's python3-pika).

The memory test floods a broker started with a small absolute watermark: the publisher must be blocked, the
broker's resident memory (VmRSS in /proc/<pid>/status) must stay under the watermark plus a stated margin while
the publisher keeps trying, a consumer on another connection drains the queue meanwhile, and publishing resumes
once the alarm clears. The disk test starts a broker whose disk_free_limit no disk can meet: publishers are
blocked from their first publish while consumers are still served."""

import base64
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pika
import pika.exceptions
import pytest

from support.warren_process import warren_bin

BODY = b"x" * 65536
# How far above the watermark the broker may go: what a publisher pushes before the monitor's next sample (it
# samples sooner while memory grows fast, about every 1/20 of the watermark's worth of growth) and before the
# workers apply the block, plus, once a consumer runs, what is read from the publisher's socket backlog on
# unblocking and the deliveries being written. Measured here: about 3 MiB while the publisher is blocked, up to
# 13 MiB with the flood and the consumer running together; the rest is room for a loaded machine.
RSS_MARGIN = 32 << 20


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def params(warren, **kwargs):
    kwargs.setdefault("connection_attempts", 1)
    kwargs.setdefault("socket_timeout", 5)
    return pika.ConnectionParameters(host="127.0.0.1", port=warren.amqp_port, **kwargs)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def log_text(warren) -> str:
    return warren.stderr_path.read_text(errors="replace")


class RssSampler(threading.Thread):
    """Samples a process's VmRSS every 10 ms and keeps the peak."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except (OSError, AssertionError):
                return  # the broker has stopped (the test failed and tore it down)
            time.sleep(0.01)


class Flooder(threading.Thread):
    """Publishes 64 KiB messages as fast as pika can, and ignores connection.blocked: once the broker stops
    reading, basic_publish waits in pika until the socket drains. Records the blocked/unblocked notices."""

    def __init__(self, warren, queue: str):
        super().__init__(daemon=True)
        self.events: list[tuple[str, str | None]] = []
        self.conn = pika.BlockingConnection(params(warren))
        self.conn.add_on_connection_blocked_callback(
            lambda _c, frame: self.events.append(("blocked", frame.method.reason)))
        self.conn.add_on_connection_unblocked_callback(lambda _c, _f: self.events.append(("unblocked", None)))
        self.channel = self.conn.channel()
        self.queue = queue
        self.sent = 0
        self.stopping = threading.Event()
        self.error: Exception | None = None

    def run(self):
        try:
            while not self.stopping.is_set():
                self.channel.basic_publish("", self.queue, BODY)
                self.sent += 1
                self.conn.process_data_events(0)  # dispatches the blocked/unblocked callbacks
            self.conn.close()
        except Exception as e:  # reported by the test
            self.error = e


class Consumer(threading.Thread):
    """Consumes with manual acks and a prefetch of 50, on a connection of its own."""

    def __init__(self, warren, queue: str):
        super().__init__(daemon=True)
        self.conn = pika.BlockingConnection(params(warren))
        self.channel = self.conn.channel()
        self.channel.basic_qos(prefetch_count=50)
        self.queue = queue
        self.received = 0
        self.stopping = threading.Event()
        self.error: Exception | None = None

    def run(self):
        try:
            for method, _props, _body in self.channel.consume(self.queue, inactivity_timeout=0.1):
                if self.stopping.is_set():
                    break
                if method is not None:
                    self.channel.basic_ack(method.delivery_tag)
                    self.received += 1
            self.channel.cancel()
            self.conn.close()
        except Exception as e:
            self.error = e


def idle_rss(warren_factory) -> int:
    """RSS of a fresh broker with one client connected and a queue declared."""
    w = warren_factory()
    conn = pika.BlockingConnection(params(w))
    conn.channel().queue_declare("flood")
    time.sleep(0.3)
    rss = rss_bytes(w.pid)
    conn.close()
    w.stop()
    return rss


# ThreadSanitizer resets the shadow of freed memory by writing to it, so the shadow stays resident and RSS
# never comes back down after a flood: the alarm could not clear. (Set by CTest from the build's
# WARREN_SANITIZE; ASan's allocator is told below to return memory.)
needs_rss_to_follow_the_heap = pytest.mark.skipif(
    "thread" in os.environ.get("WARREN_SANITIZE", ""),
    reason="under ThreadSanitizer RSS includes shadow memory that freeing does not release")


def start_for_a_flood(warren_factory, monkeypatch, queue: str, *extra):
    """A broker whose absolute watermark is 40 MiB above its idle RSS, an RSS sampler on it, and `queue` declared.
    Returns (warren, watermark, sampler)."""
    # Under ASan (the CI's first pass) freed memory waits in ASan's quarantine and never leaves RSS, so the alarm
    # could not clear: let its allocator free and return memory as malloc does. A normal build ignores this.
    asan = os.environ.get("ASAN_OPTIONS", "")
    monkeypatch.setenv("ASAN_OPTIONS", ":".join(filter(None, [
        asan, "quarantine_size_mb=0", "allocator_release_to_os_interval_ms=100"])))
    watermark = idle_rss(warren_factory) + (40 << 20)
    warren = warren_factory("--vm-memory-high-watermark-absolute", str(watermark), *extra)
    sampler = RssSampler(warren.pid)
    sampler.start()
    setup = pika.BlockingConnection(params(warren))
    setup.channel().queue_declare(queue)
    setup.close()
    return warren, watermark, sampler


@needs_rss_to_follow_the_heap
def test_memory_alarm_blocks_a_flood_and_publishing_resumes_once_drained(warren_factory, monkeypatch):
    # No paging before the alarm (ratio above 1): paging would free memory and clear the alarm within
    # the second this test watches the publisher stand still. The next test floods with paging on.
    warren, watermark, sampler = start_for_a_flood(warren_factory, monkeypatch, "flood",
                                                   "--vm-memory-high-watermark-paging-ratio", "2")
    assert "memory resource limit alarm set" not in log_text(warren)
    assert "paging mark" not in log_text(warren)

    flooder = Flooder(warren, "flood")
    flooder.start()
    wait_for(lambda: "memory resource limit alarm set" in log_text(warren), 30, "the memory alarm")
    # The publisher is stopped: nothing more gets through for a whole second although it keeps trying.
    deadline = time.monotonic() + 10
    while True:
        before = flooder.sent
        time.sleep(1.0)
        if flooder.sent == before:
            break
        assert time.monotonic() < deadline, f"publisher never stalled ({flooder.sent} sent)"
    stalled_at = flooder.sent
    assert flooder.error is None, flooder.error
    time.sleep(1.0)  # still blocked, still trying
    assert flooder.sent == stalled_at
    assert sampler.peak < watermark + RSS_MARGIN, \
        f"RSS peaked at {sampler.peak >> 20} MiB, watermark {watermark >> 20} MiB"

    peak_blocked = sampler.peak
    # A consumer on another connection is served, drains the queue, and the alarm clears.
    # (Paging past half the watermark may also clear the alarm on its own, the queue's backlog
    # going to disk; the consumer must be served either way.)
    consumer = Consumer(warren, "flood")
    consumer.start()
    wait_for(lambda: consumer.received > 0, 30, "the consumer to be served")
    wait_for(lambda: "memory resource limit alarm cleared" in log_text(warren), 30, "the alarm to clear")
    wait_for(lambda: flooder.sent > stalled_at + 50, 30, "publishing to resume")
    # The flood goes on against the consumer for a while; the broker keeps to its watermark throughout.
    time.sleep(1.0)
    flooder.stopping.set()
    flooder.join(30)
    assert not flooder.is_alive(), "publisher still blocked after it was told to stop"
    assert flooder.error is None, flooder.error
    consumer.stopping.set()
    consumer.join(10)
    assert consumer.error is None, consumer.error
    sampler.stopping.set()
    sampler.join()

    print(f"watermark {watermark >> 20} MiB, RSS peak {peak_blocked / 2**20:.1f} MiB until the consumer came, "
          f"{sampler.peak / 2**20:.1f} MiB in all, {flooder.sent} published, "
          f"{consumer.received} consumed, notices {flooder.events}")
    assert flooder.events, "no connection.blocked reached the publisher"
    assert flooder.events[0] == ("blocked", "low on memory")
    assert ("unblocked", None) in flooder.events
    assert sampler.peak < watermark + RSS_MARGIN, \
        f"RSS peaked at {sampler.peak >> 20} MiB, watermark {watermark >> 20} MiB"
    warren.assert_alive()


@needs_rss_to_follow_the_heap
@pytest.mark.parametrize("paging_ratio", ["0.5", "0.9"])
def test_a_flood_of_large_messages_pages_to_disk_within_the_watermark_and_drains_whole(warren_factory, monkeypatch,
                                                                                       paging_ratio):
    # Paging on: 64 KiB messages go to disk past the paging mark and the alarm blocks the publisher
    # whenever memory still reaches the watermark. RSS stays within the margin both while the flood pages
    # out and while a consumer reads the backlog back (read-ahead is bounded in bytes, not only in
    # messages: 512 of these would be 32 MiB), and every message published is delivered once.
    # At the default ratio (half the watermark) and at 0.9, where most of the watermark's worth of
    # messages is in memory when paging starts: that backlog must go to disk too (a few MiB at a time),
    # or memory stays above the watermark and the publisher, with no consumer yet, is blocked for good.
    warren, watermark, sampler = start_for_a_flood(warren_factory, monkeypatch, "big",
                                                   "--vm-memory-high-watermark-paging-ratio", paging_ratio)

    flooder = Flooder(warren, "big")
    flooder.start()
    wait_for(lambda: "queues page their backlogs to disk" in log_text(warren), 30, "paging to start")
    wait_for(lambda: flooder.sent >= 3000, 60, "3000 messages of 64 KiB (about 4 times the watermark)")
    flooder.stopping.set()
    flooder.join(30)
    assert not flooder.is_alive() and flooder.error is None, flooder.error
    flood_peak = sampler.peak

    consumer = Consumer(warren, "big")
    consumer.start()
    wait_for(lambda: consumer.received >= flooder.sent, 60, f"all {flooder.sent} messages to be consumed")
    time.sleep(0.3)  # nothing more comes
    consumer.stopping.set()
    consumer.join(10)
    assert consumer.error is None, consumer.error
    sampler.stopping.set()
    sampler.join()
    print(f"watermark {watermark >> 20} MiB, RSS peak {flood_peak / 2**20:.1f} MiB while flooding, "
          f"{sampler.peak / 2**20:.1f} MiB in all; {flooder.sent} published, {consumer.received} consumed")
    assert consumer.received == flooder.sent
    check = pika.BlockingConnection(params(warren))
    assert check.channel().queue_declare("big", passive=True).method.message_count == 0
    check.close()
    assert sampler.peak < watermark + RSS_MARGIN, \
        f"RSS peaked at {sampler.peak >> 20} MiB, watermark {watermark >> 20} MiB"
    warren.assert_alive()


def test_disk_alarm_blocks_publishers_from_the_start_and_consumers_are_served(warren_factory):
    warren = warren_factory("--disk-free-limit", "1000TB")
    assert "disk resource limit alarm set" in log_text(warren)

    consumer_conn = pika.BlockingConnection(params(warren))
    consumer = consumer_conn.channel()
    consumer.queue_declare("d")
    received = []
    consumer.basic_consume("d", lambda _ch, _m, _p, body: received.append(body), auto_ack=True)

    events = []
    # The broker will not read this connection again, not even a connection.close: pika's own timeout ends it.
    publisher_conn = pika.BlockingConnection(params(warren, blocked_connection_timeout=3))
    publisher_conn.add_on_connection_blocked_callback(lambda _c, f: events.append(f.method.reason))
    publisher_conn.add_on_connection_unblocked_callback(lambda _c, _f: events.append("unblocked"))
    publisher = publisher_conn.channel()
    publisher_conn.process_data_events(0.3)
    assert events == []  # as RabbitMQ: a connection is told when it publishes
    # The first publish shows that the connection publishes (it is accepted, as in RabbitMQ); from then on the
    # connection is not read.
    publisher.basic_publish("", "d", b"first")
    deadline = time.monotonic() + 5
    while not (received and events) and time.monotonic() < deadline:
        consumer_conn.process_data_events(0.05)
        publisher_conn.process_data_events(0.05)
    assert received == [b"first"], "the consumer was not served during the disk alarm"
    assert events == ["low on disk"]

    publisher.basic_publish("", "d", b"second")
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        consumer_conn.process_data_events(0.05)
        publisher_conn.process_data_events(0.05)
    assert received == [b"first"], "a blocked publisher was read"
    assert events == ["low on disk"]
    with pytest.raises(pika.exceptions.ConnectionBlockedTimeout):
        publisher_conn.process_data_events(10)  # no connection.unblocked comes
    consumer_conn.close()
    warren.assert_alive()


def test_both_alarms_at_start_give_rabbitmqs_combined_reason(warren_factory):
    # A watermark of 0 blocks all publishing, as in RabbitMQ.
    warren = warren_factory("--disk-free-limit", "1000TB", "--vm-memory-high-watermark", "0")
    log = log_text(warren)
    assert "memory resource limit alarm set" in log and "disk resource limit alarm set" in log
    events = []
    conn = pika.BlockingConnection(params(warren, blocked_connection_timeout=3))
    conn.add_on_connection_blocked_callback(lambda _c, f: events.append(f.method.reason))
    conn.channel().basic_publish("", "nowhere", b"x")
    deadline = time.monotonic() + 2
    while not events and time.monotonic() < deadline:
        conn.process_data_events(0.05)
    assert events == ["low on memory & disk"]
    with pytest.raises(pika.exceptions.ConnectionBlockedTimeout):
        conn.process_data_events(10)


def put_watermark(warren, body, user="guest", password="guest"):
    """PUT /api/warren/vm-memory-high-watermark; (status, decoded body)."""
    req = urllib.request.Request(f"http://127.0.0.1:{warren.http_port}/api/warren/vm-memory-high-watermark",
                                 data=json.dumps(body).encode(), method="PUT",
                                 headers={"Content-Type": "application/json", "Authorization": "Basic " +
                                          base64.b64encode(f"{user}:{password}".encode()).decode()})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def mem_limit(warren) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{warren.http_port}/api/nodes",
                                 headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())[0]["mem_limit"]


def test_the_memory_watermark_changes_at_run_time_and_the_alarm_follows(warren_factory):
    # rabbitmqctl set_vm_memory_high_watermark over the management API: a watermark below what the broker uses
    # raises the alarm at once (publishers blocked), and raising it again clears the alarm (unblocked).
    warren = warren_factory()
    start_limit = mem_limit(warren)
    assert start_limit > 0
    events = []
    conn = pika.BlockingConnection(params(warren))
    conn.add_on_connection_blocked_callback(lambda _c, f: events.append(f.method.reason))
    conn.add_on_connection_unblocked_callback(lambda _c, _f: events.append("unblocked"))
    ch = conn.channel()
    ch.queue_declare("w")

    assert put_watermark(warren, {"absolute": "1MiB"}) == (200, {"mem_limit": 1 << 20})
    assert mem_limit(warren) == 1 << 20
    wait_for(lambda: "memory resource limit alarm set" in log_text(warren), 10, "the memory alarm")
    assert "memory high watermark changed to 1.0 MiB" in log_text(warren)
    ch.basic_publish("", "w", b"x")  # a connection is told when it publishes
    deadline = time.monotonic() + 5
    while not events and time.monotonic() < deadline:
        conn.process_data_events(0.05)
    assert events == ["low on memory"]

    # Numbers may come as strings, as RabbitMQ's API reads them.
    status, body = put_watermark(warren, {"fraction": "0.4"})
    assert status == 200 and body["mem_limit"] > 1 << 20
    deadline = time.monotonic() + 5
    while events[-1:] != ["unblocked"] and time.monotonic() < deadline:
        conn.process_data_events(0.05)
    assert events == ["low on memory", "unblocked"]
    assert "memory resource limit alarm cleared" in log_text(warren)
    assert mem_limit(warren) == body["mem_limit"]
    assert put_watermark(warren, {"absolute": start_limit}) == (200, {"mem_limit": start_limit})
    conn.close()


@pytest.mark.parametrize("body", [{}, {"fraction": 1.5}, {"fraction": -0.1}, {"fraction": "lots"},
                                  {"absolute": "200 parsecs"}, {"absolute": 0}, {"absolute": -5},
                                  {"fraction": 0.4, "absolute": "1GiB"}, ["fraction", 0.4]])
def test_bad_watermark_values_are_refused_at_run_time(warren, body):
    before = mem_limit(warren)
    status, answer = put_watermark(warren, body)
    assert status == 400 and answer["error"] == "bad_request", (status, answer)
    assert mem_limit(warren) == before


def test_only_an_administrator_may_change_the_watermark(warren):
    req = urllib.request.Request(f"http://127.0.0.1:{warren.http_port}/api/users/watcher",
                                 data=json.dumps({"password": "pw", "tags": "monitoring"}).encode(), method="PUT",
                                 headers={"Content-Type": "application/json", "Authorization": "Basic " +
                                          base64.b64encode(b"guest:guest").decode()})
    urllib.request.urlopen(req, timeout=10).close()
    before = mem_limit(warren)
    assert put_watermark(warren, {"absolute": "1MiB"}, user="watcher", password="pw")[0] == 401
    assert put_watermark(warren, {"absolute": "1MiB"}, password="wrong")[0] == 401
    assert mem_limit(warren) == before


def test_relative_watermark_is_logged_with_the_total(warren_factory):
    warren = warren_factory("--vm-memory-high-watermark", "0.5")
    log = log_text(warren)
    assert "memory high watermark set to" in log and "(0.5 of total memory" in log
    assert "disk free limit set to 47.7 MiB (50000000 bytes)" in log  # RabbitMQ's default, 50MB


@pytest.mark.parametrize("flag,value", [
    ("--vm-memory-high-watermark", "1.5"),
    ("--vm-memory-high-watermark", "forty"),
    ("--vm-memory-high-watermark-absolute", "12XB"),
    ("--vm-memory-high-watermark-absolute", "1.5GB"),
    ("--disk-free-limit", "-5"),
    ("--disk-free-limit", "lots"),
])
def test_bad_alarm_values_are_refused_at_start(tmp_path, flag, value):
    r = subprocess.run([warren_bin(), "--data-dir", str(tmp_path / "data"), "--amqp-port", "0", "--http-port", "0",
                        flag, value], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert f"{flag}: '{value}': expected" in r.stderr, r.stderr
    assert "started" not in r.stderr


def test_bad_alarm_value_in_the_config_file_is_refused(tmp_path):
    cfg = tmp_path / "warren.toml"
    cfg.write_text('disk_free_limit = "plenty"\n')
    r = subprocess.run([warren_bin(), "--config", str(cfg), "--data-dir", str(tmp_path / "data")],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert "key 'disk_free_limit'" in r.stderr and "expected bytes, or a size" in r.stderr, r.stderr
