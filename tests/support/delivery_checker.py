"""Load with a memory, for fault tests: publishers that publish persistent messages with confirms and remember what
each confirm covered, consumers that remember every delivery, and the count a fault test asserts on (docs/cluster.md,
"Faults, tested").

Each publisher is a thread with its own pika connection, publishing `"<publisher>:<seq>"` to one durable queue through
the default exchange (mandatory, so a message no queue took is returned, not confirmed), one message in flight at a
time; a confirmed seq was acknowledged by the broker after it stored the message, a nacked or returned one was
refused, the others (in flight when the connection failed) may or may not have been stored. Each consumer is a thread
with its own connection, consuming one queue with manual acks and recording (publisher, seq, redelivered) before
acking. Connections that fail are opened again every 0.2 s for as long as the load runs, on whatever port the node
has then (a node started again gets a new one), so a node that comes back is used again.

The count, per queue: **lost** (confirmed, never delivered), **unexpected** (delivered, never published),
**duplicates** (delivered more than once: legitimate after a crash, since AMQP 0-9-1 acks are not confirmed, and
reported as a figure), of which **unflagged** (a second delivery without the `redelivered` flag: at-least-once
allows a repeat only of a message handed out before and not known to be acknowledged, which the broker flags, so an
unflagged one means the message was stored twice or served from two places; Warren flags every message it recovers
after a crash, as RabbitMQ does for messages it may have delivered), **order broken** (a message first delivered after a later one of the same publisher: one
channel's messages to one queue keep their order, redeliveries apart).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import pika
import pika.exceptions

logging.getLogger("pika").setLevel(logging.CRITICAL)

Connect = Callable[[], pika.BlockingConnection]


def close_quietly(conn: pika.BlockingConnection) -> None:
    try:
        if conn.is_open:
            conn.close()
    except Exception:  # noqa: BLE001 - a connection the broker already dropped
        pass


class Publisher(threading.Thread):
    def __init__(self, name: str, connect: Connect, queue: str):
        super().__init__(daemon=True, name=f"publisher {name}")
        self.pub = name
        self.connect = connect
        self.queue = queue
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.attempted: set[int] = set()
        self.confirmed: set[int] = set()
        self.refused: set[int] = set()  # nacked or returned
        self.sent_at: dict[int, float] = {}  # monotonic time each seq was handed to pika
        self.failures = 0  # connections lost or refused
        self.last_confirm = 0.0  # monotonic time of the newest confirm

    def confirmed_count(self) -> int:
        with self.lock:
            return len(self.confirmed)

    def run(self) -> None:
        seq = 0
        while not self.stopping.is_set():
            try:
                conn = self.connect()
            except Exception:  # noqa: BLE001 - a node down, fenced or starting: try again
                self.failures += 1
                self.stopping.wait(0.2)
                continue
            try:
                ch = conn.channel()
                ch.confirm_delivery()
                props = pika.BasicProperties(delivery_mode=2)
                while not self.stopping.is_set():
                    seq += 1
                    with self.lock:
                        self.attempted.add(seq)
                        self.sent_at[seq] = time.monotonic()
                    try:
                        ch.basic_publish("", self.queue, f"{self.pub}:{seq}".encode(), props, mandatory=True)
                    except (pika.exceptions.NackError, pika.exceptions.UnroutableError):
                        with self.lock:
                            self.refused.add(seq)
                        self.stopping.wait(0.01)  # a node away nacks at once: no busy loop on 2 cores
                        continue
                    with self.lock:
                        self.confirmed.add(seq)
                        self.last_confirm = time.monotonic()
            except Exception:  # noqa: BLE001 - the node went away mid-publish: that seq is in doubt
                self.failures += 1
                self.stopping.wait(0.2)
            finally:
                close_quietly(conn)


class Consumer(threading.Thread):
    def __init__(self, connect: Connect, queue: str):
        super().__init__(daemon=True, name=f"consumer {queue}")
        self.connect = connect
        self.queue = queue
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.deliveries: list[tuple[str, int, bool]] = []  # (publisher, seq, redelivered), in delivery order
        self.other: list[bytes] = []  # bodies that are not "<publisher>:<seq>"
        self.failures = 0
        self.cancels = 0  # basic.cancel from the broker (consumer_cancel_notify)
        self.last_delivery = 0.0

    def count(self) -> int:
        with self.lock:
            return len(self.deliveries) + len(self.other)

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                conn = self.connect()
            except Exception:  # noqa: BLE001
                self.failures += 1
                self.stopping.wait(0.2)
                continue
            try:
                ch = conn.channel()
                ch.basic_qos(prefetch_count=100)

                def on_message(c, method, _props, body):
                    with self.lock:
                        pub, _, seq = body.decode(errors="replace").rpartition(":")
                        if pub and seq.isdigit():
                            self.deliveries.append((pub, int(seq), bool(method.redelivered)))
                        else:
                            self.other.append(body)
                        self.last_delivery = time.monotonic()
                    c.basic_ack(method.delivery_tag)

                # A consumer on another node than its queue is cancelled when the queue's node goes (basic.cancel,
                # as RabbitMQ does): consume again, on a new connection.
                cancelled = threading.Event()
                ch.add_on_cancel_callback(lambda _frame: cancelled.set())
                ch.basic_consume(self.queue, on_message)
                while not self.stopping.is_set() and not cancelled.is_set():
                    conn.process_data_events(time_limit=0.1)
                if cancelled.is_set():
                    self.failures += 1
                    self.cancels += 1
                    self.stopping.wait(0.2)
            except Exception:  # noqa: BLE001
                self.failures += 1
                self.stopping.wait(0.2)
            finally:
                close_quietly(conn)


@dataclass
class Count:
    confirmed: int = 0
    attempted: int = 0
    delivered: int = 0
    lost: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    duplicates: int = 0
    unflagged: list[str] = field(default_factory=list)  # duplicates delivered without the redelivered flag
    order_broken: list[str] = field(default_factory=list)
    refused: int = 0

    def line(self) -> str:
        return (f"confirmed {self.confirmed} of {self.attempted} published ({self.refused} refused), delivered "
                f"{self.delivered}: lost {len(self.lost)}, unexpected {len(self.unexpected)}, duplicates "
                f"{self.duplicates} ({len(self.unflagged)} unflagged), order broken {len(self.order_broken)}")


class Load:
    """`queues` maps each queue to a function returning a connection to the node its publishers use (called at each
    (re)connection), and `consumers_on`, if given, to the one its consumer uses (by default the same); `publishers`
    threads publish to each queue and one consumer consumes it, from the start or, with `consume=False`, only from
    `drain` on (so that messages wait in the queue meanwhile)."""

    def __init__(self, queues: dict[str, Connect], publishers: int = 2, consume: bool = True,
                 consumers_on: dict[str, Connect] | None = None):
        self.publishers = {q: [Publisher(f"{q}.p{i}", c, q) for i in range(publishers)] for q, c in queues.items()}
        self.consumers = {q: Consumer((consumers_on or queues)[q], q) for q in queues}
        self.consume = consume

    def start(self) -> "Load":
        for t in [*(self.consumers.values() if self.consume else []),
                  *(p for ps in self.publishers.values() for p in ps)]:
            t.start()
        return self

    def confirmed(self, queue: str) -> int:
        return sum(p.confirmed_count() for p in self.publishers[queue])

    def wait_confirmed(self, queue: str, more: int, timeout: float) -> float:
        """Waits until `more` messages to `queue` are confirmed from now; returns how long it took."""
        target = self.confirmed(queue) + more
        started = time.monotonic()
        while self.confirmed(queue) < target:
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{queue}: {more} more confirms not seen within {timeout} s "
                                     f"({self.confirmed(queue)} of {target})")
            time.sleep(0.02)
        return time.monotonic() - started

    def confirmed_sent_between(self, queue: str, start: float, end: float) -> list[str]:
        """The confirmed messages to `queue` that were sent between `start` and `end` (monotonic times)."""
        out = []
        for p in self.publishers[queue]:
            with p.lock:
                out += [f"{p.pub}:{s}" for s in sorted(p.confirmed) if start <= p.sent_at.get(s, -1.0) <= end]
        return out

    def stop_publishing(self) -> None:
        for ps in self.publishers.values():
            for p in ps:
                p.stopping.set()
        for ps in self.publishers.values():
            for p in ps:
                p.join(10)
                assert not p.is_alive(), f"{p.name} did not stop"

    def drain(self, queue_depth: Callable[[str], int], timeout: float = 30) -> None:
        """Lets the consumers run until every queue is empty and nothing was delivered for 0.5 s."""
        for c in self.consumers.values():
            if not c.is_alive():
                c.start()
        deadline = time.monotonic() + timeout
        while True:
            quiet = all(time.monotonic() - c.last_delivery > 0.5 for c in self.consumers.values())
            try:
                empty = all(queue_depth(q) == 0 for q in self.consumers)
            except Exception:  # noqa: BLE001 - a node still coming back
                empty = False
            if quiet and empty:
                break
            assert time.monotonic() < deadline, "queues not drained in time: " + ", ".join(
                f"{q} delivered {c.count()}" for q, c in self.consumers.items())
            time.sleep(0.1)
        for c in self.consumers.values():
            c.stopping.set()
        for c in self.consumers.values():
            c.join(10)

    def count(self) -> dict[str, Count]:
        out = {}
        for q, pubs in self.publishers.items():
            n = Count()
            known = {p.pub: p for p in pubs}
            c = self.consumers[q]
            seen: collections.Counter = collections.Counter()
            newest: dict[str, int] = {}
            for pub, seq, redelivered in c.deliveries:
                n.delivered += 1
                seen[(pub, seq)] += 1
                if seen[(pub, seq)] > 1:
                    n.duplicates += 1
                    if not redelivered:
                        n.unflagged.append(f"{pub}:{seq}")
                    continue
                p = known.get(pub)
                if p is None or seq not in p.attempted:
                    n.unexpected.append(f"{pub}:{seq}")
                    continue
                if seq < newest.get(pub, 0):
                    n.order_broken.append(f"{pub}:{seq} after {pub}:{newest[pub]}")
                newest[pub] = max(seq, newest.get(pub, 0))
            n.unexpected += [repr(b) for b in c.other]
            n.delivered += len(c.other)
            for p in pubs:
                n.attempted += len(p.attempted)
                n.confirmed += len(p.confirmed)
                n.refused += len(p.refused)
                n.lost += [f"{p.pub}:{s}" for s in sorted(p.confirmed) if (p.pub, s) not in seen]
            out[q] = n
        return out
