"""The kill -9 loop's gateway variant: sends to one user's inbox with confirmed answers while browsers read it, and
the broker is killed with SIGKILL and started again on the same data dir; then every reader must have received
every confirmed event exactly once. Shared by tests/integration/test_durability_kill9.py and bench/kill9_loop.py
(--gateway).

One cycle is one lifetime of the broker:
- senders: two over HTTP (POST /api/send, each waiting for its answer, one request per connection) and one over
  AMQP (a pika channel in confirm mode, persistent messages to warren.users), each sending {"n": N} with its own
  numbers. An answer 200 or a basic.ack makes N "confirmed"; a send whose answer never came is "in doubt" (it may
  or may not be held after the kill);
- readers: one WebSocket and one SSE connection of the user, each resuming from the last seq it received (since=
  and Last-Event-ID; 0 on the very first connection), as the JavaScript client does across page loads;
- after a random 0.2-1.5 s: SIGKILL, then a start on the same data dir.
After the last cycle a final lifetime lets the readers catch up, and the ledger is judged:
- lost: a confirmed N that a reader never received. Failure.
- delivered twice: a reader got an event whose seq is not above the last it had (the resume position), or the same
  N twice. Failure (a reader resumes from its last seq, so nothing may come again).
- reset: any reset event (nothing held was dropped: the inbox is far below --inbox-size). Failure.
- corrupt: an N never sent, or two readers seeing different N for one seq. Failure."""

from __future__ import annotations

import dataclasses
import itertools
import random
import threading
import time
from typing import Callable

import pika

from support.warren_process import WarrenProcess
from support.ws_client import (
    ClosedByServer, PeerClosed, ReadTimeout, SseClient, WsClient, http_request, make_jwt, query,
)

USER = "k9"
SECRET = "warren-kill9-secret-0123456789abcdef"
ARGS = ["--jwt-secret", SECRET]
MIN_RUN, MAX_RUN = 0.2, 1.5
RESTART_TIMEOUT = 30.0
JOIN_TIMEOUT = 15.0
CATCH_UP_TIMEOUT = 60.0
AUTH = "Basic Z3Vlc3Q6Z3Vlc3Q="  # guest:guest


@dataclasses.dataclass
class Ledger:
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    sent: set[int] = dataclasses.field(default_factory=set)
    confirmed: set[int] = dataclasses.field(default_factory=set)
    in_doubt: set[int] = dataclasses.field(default_factory=set)
    by_seq: dict[int, int] = dataclasses.field(default_factory=dict)  # seq -> N, across readers
    errors: list[str] = dataclasses.field(default_factory=list)

    def error(self, text: str) -> None:
        with self.lock:
            if len(self.errors) < 50:
                self.errors.append(text)


class Sender(threading.Thread):
    def __init__(self, name: str, proc: WarrenProcess, ledger: Ledger, numbers: itertools.count):
        super().__init__(name=name, daemon=True)
        self.proc, self.ledger, self.numbers = proc, ledger, numbers
        self.web_port, self.amqp_port = proc.web_port, proc.amqp_port
        self.confirmed = 0

    def run(self) -> None:
        try:
            self.loop()
        except Exception:  # the kill: whatever was unanswered stays in doubt
            pass

    def take(self) -> int:
        n = next(self.numbers)
        with self.ledger.lock:
            self.ledger.sent.add(n)
            self.ledger.in_doubt.add(n)
        return n

    def confirm(self, n: int) -> None:
        with self.ledger.lock:
            self.ledger.in_doubt.discard(n)
            self.ledger.confirmed.add(n)
        self.confirmed += 1

    def loop(self) -> None:
        raise NotImplementedError


class HttpSender(Sender):
    def loop(self) -> None:
        while True:
            n = self.take()
            r = http_request(self.web_port, "POST", "/api/send", {"user": USER, "data": {"n": n}},
                             {"Authorization": AUTH}, timeout=10)
            if r.status != 200:
                if self.proc.alive():
                    self.ledger.error(f"{self.name}: send {n} answered {r.status} while the broker ran")
                return
            self.confirm(n)


class AmqpSender(Sender):
    def loop(self) -> None:
        conn = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", self.amqp_port, connection_attempts=1, socket_timeout=5))
        ch = conn.channel()
        ch.confirm_delivery()
        while True:
            n = self.take()
            ch.basic_publish("warren.users", USER, f'{{"n": {n}}}'.encode(),
                             properties=pika.BasicProperties(delivery_mode=2))
            self.confirm(n)


class Reader(threading.Thread):
    """One browser connection for one lifetime, resuming from `since`."""

    def __init__(self, transport: str, proc: WarrenProcess, ledger: Ledger, since: int, got: set[int]):
        super().__init__(name=f"{transport} reader", daemon=True)
        self.transport, self.ledger, self.since, self.got = transport, ledger, since, got
        self.port = proc.web_port
        self.stop_event = threading.Event()
        self.received = 0
        self.last_event = time.monotonic()

    def run(self) -> None:
        token = make_jwt(SECRET, USER)
        try:
            if self.transport == "ws":
                client = WsClient(self.port, query("/ws", token=token, since=self.since)).connect()
                next_event = client.recv_json
            else:
                client = SseClient(self.port, query("/sse", token=token), {"Last-Event-ID": str(self.since)})
                if client.status != 200:
                    return
                next_event = lambda t: client.next_event(t).json()  # noqa: E731
            while not self.stop_event.is_set():
                try:
                    ev = next_event(0.2)
                except ReadTimeout:
                    continue
                self.take(ev)
        except (PeerClosed, ClosedByServer, OSError, AssertionError):
            pass  # the kill (or a refused start of the lifetime)

    def take(self, ev: dict) -> None:
        self.last_event = time.monotonic()
        seq, kind = ev.get("seq"), ev.get("type")
        if kind != "message":
            self.ledger.error(f"{self.name}: unexpected {kind} event {ev}")
            return
        n = ev["data"]["n"]
        if seq <= self.since:
            self.ledger.error(f"{self.name}: seq {seq} (n {n}) delivered again after {self.since}")
        if n in self.got:
            self.ledger.error(f"{self.name}: n {n} delivered twice (seq {seq})")
        with self.ledger.lock:
            if n not in self.ledger.sent:
                self.ledger.errors.append(f"{self.name}: n {n} was never sent")
            if self.ledger.by_seq.setdefault(seq, n) != n:
                self.ledger.errors.append(f"{self.name}: seq {seq} is n {n} here, n {self.ledger.by_seq[seq]} "
                                          "for the other reader")
        self.got.add(n)
        self.since = max(self.since, seq)
        self.received += 1


@dataclasses.dataclass
class Summary:
    cycles: int
    confirmed: int
    in_doubt: int
    received: dict[str, int]
    lost: dict[str, list[int]]
    errors: list[str]

    def failures(self) -> list[str]:
        out = list(self.errors)
        for name, lost in self.lost.items():
            if lost:
                out.append(f"{name}: {len(lost)} confirmed events never received, e.g. {lost[:10]}")
        return out

    def __str__(self) -> str:
        return (f"{self.cycles} cycles: {self.confirmed} sends confirmed, {self.in_doubt} in doubt; received "
                + ", ".join(f"{k} {v}" for k, v in self.received.items())
                + "; lost " + ", ".join(f"{k} {len(v)}" for k, v in self.lost.items()))


def run(proc: WarrenProcess, cycles: int, rng: random.Random, report: Callable[[str], None] = print) -> Summary:
    """`cycles` kill -9 cycles on `proc` (started with ARGS, on its data dir), then a final lifetime in which the
    readers catch up; returns the judged summary."""
    ledger = Ledger()
    numbers = itertools.count(1)
    since = {"ws": 0, "sse": 0}
    got: dict[str, set[int]] = {"ws": set(), "sse": set()}
    for cycle in range(1, cycles + 1):
        readers = [Reader(t, proc, ledger, since[t], got[t]) for t in ("ws", "sse")]
        senders = [HttpSender("http sender 1", proc, ledger, numbers),
                   HttpSender("http sender 2", proc, ledger, numbers),
                   AmqpSender("amqp sender", proc, ledger, numbers)]
        for t in readers + senders:
            t.start()
        run_for = rng.uniform(MIN_RUN, MAX_RUN)
        time.sleep(run_for)
        proc.kill9()
        for t in readers + senders:
            t.join(JOIN_TIMEOUT)
            if t.is_alive():
                ledger.error(f"cycle {cycle}: {t.name} did not notice the kill within {JOIN_TIMEOUT} s")
        for r in readers:
            since[r.transport] = r.since
        report(f"cycle {cycle}/{cycles}: killed after {run_for:.2f} s: confirmed "
               f"+{sum(s.confirmed for s in senders)}, received " +
               ", ".join(f"{r.transport} +{r.received}" for r in readers) +
               f", in doubt {len(ledger.in_doubt)}")
        if ledger.errors:
            break
        try:
            proc.start(timeout=RESTART_TIMEOUT)
        except AssertionError as e:
            ledger.error(f"cycle {cycle}: the broker did not start again after the kill: {e}")
            break
    else:
        # The last lifetime: no senders; the readers resume and catch up.
        readers = [Reader(t, proc, ledger, since[t], got[t]) for t in ("ws", "sse")]
        for r in readers:
            r.start()
        deadline = time.monotonic() + CATCH_UP_TIMEOUT
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if all(ledger.confirmed <= got[r.transport] and time.monotonic() - r.last_event > 0.5
                   for r in readers):
                break
        for r in readers:
            r.stop_event.set()
            r.join(JOIN_TIMEOUT)
    lost = {t: sorted(ledger.confirmed - got[t]) for t in got}
    return Summary(cycles, len(ledger.confirmed), len(ledger.in_doubt), {t: len(g) for t, g in got.items()}, lost,
                   ledger.errors)
