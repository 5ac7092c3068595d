"""The kill -9 loop: publish and consume persistent messages while the broker is killed with SIGKILL and started
again on the same data dir, then check that no confirmed message was lost and that no message was delivered twice
without a kill in between. Shared by tests/integration/test_durability_kill9.py and bench/kill9_loop.py.

One cycle is one lifetime of the broker:
- a publisher connection (confirm mode) sends persistent messages, each with the next sequence number, keeping up
  to WINDOW unconfirmed; a consumer connection (prefetch PREFETCH, manual acks, some single and some multiple=true
  batches) takes them from the same durable queue, paced slower than the publisher and sometimes starting late, so
  that confirmed messages wait in the queue when the kill comes (the loop reports how many: if there were none,
  a broker that keeps nothing on disk would pass);
- after a random 0.2-1.5 s the broker gets SIGKILL; both connections see their socket close; messages sent but not
  confirmed are "in doubt" (they may or may not come back; they are not republished);
- the broker starts again on the same data dir (its AMQP port may change: the ports file says which).
After the last cycle a final lifetime drains the queue, and the ledger is judged:
- lost: a confirmed sequence number that was never delivered, in any lifetime. Failure.
- duplicate: a sequence number delivered again. Allowed only if every earlier delivery was in a lifetime that
  ended with a kill (its ack may not have been recorded); two deliveries in one lifetime are a failure.
- corrupt: a body, delivery mode or message-id that is not exactly what was published for that sequence number,
  or a sequence number never published. Failure.
- a publisher or consumer connection that closed while its broker was still running, a nack, a channel or
  connection close from the broker: failures too, since they would hide or excuse the rest.

The clients speak raw AMQP over a socket (support/amqp_raw.py) rather than pika: a window of outstanding confirms
keeps the store busy, acks can be batched exactly as wanted, and a killed broker is plain EOF on a socket."""

from __future__ import annotations

import array
import dataclasses
import hashlib
import random
import socket
import struct
import threading
import time
from typing import Callable

from support.amqp_raw import (
    BASIC_PUBLISH, CHANNEL_CLOSE, CONNECTION_BLOCKED, CONNECTION_CLOSE, CONNECTION_CLOSE_OK, CONNECTION_UNBLOCKED,
    FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, REPLY_SUCCESS, PeerClosed, RawClient, ReadTimeout, close_args,
    content_header_payload, encode_bits, frame, method_frame, publish_args, shortstr,
)
from support.amqp_raw_broker import declare_queue, send_consume
from support.warren_process import WarrenProcess

QUEUE = "kill9-loop"
WINDOW = 1000  # unconfirmed messages a publisher keeps in flight
BATCH = 50  # publishes per write
PREFETCH = 200
MIN_RUN, MAX_RUN = 0.2, 1.5  # seconds between a start and the kill
CONSUMER_RATE = (1000.0, 5000.0)  # messages a second, per cycle; the publisher is faster
MAX_BACKLOG = 20_000  # confirmed but not yet delivered: the publisher waits above this (bounds disk and drain)
RESTART_TIMEOUT = 30.0  # recovery of a large store on a loaded machine
JOIN_TIMEOUT = 15.0  # a client thread must notice the kill (its socket closes) within this
SEND_TIMEOUT = 30.0  # a write may wait this long while the broker holds a publisher back
POLL = 0.001  # a read that only takes what has arrived (RawClient reads nothing with a timeout of 0)
DRAIN_IDLE = 1.0  # the queue is drained when it is empty and nothing arrived for this long
DRAIN_TIMEOUT = 60.0

BASIC_QOS, BASIC_QOS_OK = (60, 10), (60, 11)
BASIC_CONSUME_OK = (60, 21)
BASIC_DELIVER = (60, 60)
BASIC_ACK = (60, 80)
BASIC_NACK = (60, 120)
CONFIRM_SELECT, CONFIRM_SELECT_OK = (85, 10), (85, 11)

# Content header property flags (0-9-1 basic class, highest bit first) and what we send.
_PROPERTY_ORDER = ["content_type", "content_encoding", "headers", "delivery_mode", "priority", "correlation_id",
                   "reply_to", "expiration", "message_id", "timestamp", "type", "user_id", "app_id", "cluster_id"]
_FLAG = {name: 1 << (15 - i) for i, name in enumerate(_PROPERTY_ORDER)}


# --- messages ---------------------------------------------------------------------------------------------------


def body_for(seq: int) -> bytes:
    """The body published for `seq`: its number, then a filler derived from it, 16..2015 bytes long, so that a
    body cut short, shifted or mixed with another's does not pass."""
    head = b"seq=%010d;" % seq
    size = 16 + (seq * 7919) % 2000
    pattern = hashlib.sha256(head).digest()
    return head + (pattern * (size // len(pattern) + 1))[:size]


def seq_of(body: bytes) -> int | None:
    """The sequence number `body` was published with, or None unless it is exactly body_for(that number)."""
    if len(body) < 15 or not body.startswith(b"seq=") or body[14:15] != b";":
        return None
    try:
        seq = int(body[4:14])
    except ValueError:
        return None
    return seq if body == body_for(seq) else None


def _persistent_header(seq: int, body_size: int) -> bytes:
    flags = _FLAG["delivery_mode"] | _FLAG["message_id"]
    return content_header_payload(60, body_size, flags, b"\x02" + shortstr(str(seq)))


def decode_properties(flags: int, data: bytes) -> dict:
    """The basic properties of a content header (only their raw values; tables are skipped, not decoded)."""
    out, pos = {}, 0
    for name in _PROPERTY_ORDER:
        if not flags & _FLAG[name]:
            continue
        if name in ("delivery_mode", "priority"):
            out[name], pos = data[pos], pos + 1
        elif name == "timestamp":
            out[name], pos = struct.unpack_from(">Q", data, pos)[0], pos + 8
        elif name == "headers":
            n = struct.unpack_from(">I", data, pos)[0]
            out[name], pos = data[pos + 4:pos + 4 + n], pos + 4 + n
        else:
            n = data[pos]
            out[name], pos = data[pos + 1:pos + 1 + n].decode("utf-8", "replace"), pos + 1 + n
    return out


# --- the ledger -------------------------------------------------------------------------------------------------


# Per sequence number, in Ledger.state:
CONFIRMED, NACKED, IN_DOUBT, DELIVERED = 1, 2, 4, 8


class Ledger:
    """Everything the clients saw, across lifetimes, written by the client threads under `lock`. Sequence numbers
    are dense from 1, so their state is a byte each (a 100-cycle run publishes millions): `state[seq]` holds the
    flags above, `first[seq]` the lifetime of the first delivery; later deliveries, rare, go to `again`."""

    def __init__(self):
        self.lock = threading.Lock()
        self.state = bytearray(1)  # index 0 unused
        self.first = array.array("I", [0])
        self.first_redelivered: set[int] = set()  # redelivered flag of a first delivery (rare)
        self.again: dict[int, list[tuple[int, bool]]] = {}  # seq -> [(lifetime, redelivered)] after the first
        self.confirmed = self.nacked = self.in_doubt = self.delivered_distinct = self.deliveries = 0
        self.waiting = 0  # confirmed and never delivered, now
        self.waiting_at_kills = 0  # `waiting` summed over the kills: what the store had to keep
        self.corrupt: list[str] = []
        self.errors: list[str] = []
        self.killed_lifetimes: set[int] = set()

    @property
    def next_seq(self) -> int:
        return len(self.state)

    def allocate(self, n: int) -> range:
        """The next n sequence numbers, counted as sent (a write cut short by the kill may still have arrived)."""
        with self.lock:
            first = len(self.state)
            self.state.extend(bytes(n))
            self.first.extend([0] * n)
            return range(first, first + n)

    def settle(self, seqs, acked: bool) -> None:
        with self.lock:
            for seq in seqs:
                if acked:
                    self.state[seq] |= CONFIRMED
                    self.confirmed += 1
                    if not self.state[seq] & DELIVERED:
                        self.waiting += 1
                else:
                    self.state[seq] |= NACKED
                    self.nacked += 1

    def doubt(self, seqs) -> None:
        with self.lock:
            for seq in seqs:
                self.state[seq] |= IN_DOUBT
                self.in_doubt += 1

    def delivered(self, seq: int, lifetime: int, redelivered: bool) -> None:
        with self.lock:
            self.deliveries += 1
            if self.state[seq] & DELIVERED:
                self.again.setdefault(seq, []).append((lifetime, redelivered))
                return
            self.state[seq] |= DELIVERED
            self.first[seq] = lifetime
            if redelivered:
                self.first_redelivered.add(seq)
            self.delivered_distinct += 1
            if self.state[seq] & CONFIRMED:
                self.waiting -= 1

    def was_sent(self, seq: int) -> bool:
        return 0 < seq < len(self.state)

    def error(self, text: str) -> None:
        with self.lock:
            self.errors.append(text)


@dataclasses.dataclass
class Summary:
    cycles: int
    published: int
    confirmed: int
    nacked: int
    in_doubt: int
    in_doubt_delivered: int
    delivered: int  # distinct sequence numbers
    deliveries: int
    duplicates: int  # deliveries after the first that the rules allow (every earlier one was before a kill)
    duplicates_not_redelivered: int  # of those, not marked redelivered (reported, not judged)
    waiting_at_kills: int
    lost: list[int]
    bad_duplicates: list[str]
    corrupt: list[str]
    errors: list[str]

    def failures(self) -> list[str]:
        out = []
        if self.lost:
            out.append(f"{len(self.lost)} confirmed messages lost, e.g. seq {self.lost[:20]}")
        if self.bad_duplicates:
            out.append(f"{len(self.bad_duplicates)} duplicates without a kill in between: {self.bad_duplicates[:10]}")
        if self.corrupt:
            out.append(f"{len(self.corrupt)} corrupt or unknown deliveries: {self.corrupt[:10]}")
        if self.nacked:
            out.append(f"{self.nacked} publishes nacked")
        if self.cycles and not self.waiting_at_kills:
            out.append("no confirmed message was waiting in the queue at any kill: the loop proved nothing")
        out += self.errors
        return out

    def line(self) -> str:
        return (f"cycles {self.cycles}: published {self.published}, confirmed {self.confirmed} (waiting in the "
                f"queue at the kills: {self.waiting_at_kills}, summed), in doubt {self.in_doubt} "
                f"({self.in_doubt_delivered} delivered), delivered {self.delivered} distinct in {self.deliveries} "
                f"deliveries, duplicates after a kill {self.duplicates} ({self.duplicates_not_redelivered} not "
                f"marked redelivered), lost {len(self.lost)}, bad duplicates {len(self.bad_duplicates)}, corrupt "
                f"{len(self.corrupt)}, nacked {self.nacked}, errors {len(self.errors)}")


def judge(ledger: Ledger, cycles: int) -> Summary:
    """The verdict on everything recorded (a pass over every sequence number: call it once, at the end)."""
    with ledger.lock:
        lost, in_doubt_delivered = [], 0
        for seq, st in enumerate(ledger.state):
            if st & CONFIRMED and not st & DELIVERED:
                lost.append(seq)
            if st & IN_DOUBT and st & DELIVERED:
                in_doubt_delivered += 1
        bad, duplicates, not_redelivered = [], 0, 0
        for seq, later in ledger.again.items():
            ds = [(ledger.first[seq], seq in ledger.first_redelivered), *later]
            for i in range(1, len(ds)):
                lifetime, redelivered = ds[i]
                if all(e < lifetime and e in ledger.killed_lifetimes for e, _ in ds[:i]):
                    duplicates += 1
                    not_redelivered += not redelivered
                else:
                    bad.append(f"seq {seq} delivered in lifetimes {[e for e, _ in ds]}")
                    break
        return Summary(cycles=cycles, published=ledger.next_seq - 1, confirmed=ledger.confirmed,
                       nacked=ledger.nacked, in_doubt=ledger.in_doubt, in_doubt_delivered=in_doubt_delivered,
                       delivered=ledger.delivered_distinct, deliveries=ledger.deliveries, duplicates=duplicates,
                       duplicates_not_redelivered=not_redelivered, waiting_at_kills=ledger.waiting_at_kills,
                       lost=lost, bad_duplicates=bad, corrupt=list(ledger.corrupt), errors=list(ledger.errors))


# --- clients ----------------------------------------------------------------------------------------------------


class _Client(threading.Thread):
    """A client thread of one lifetime. `lost_at` is when its connection went (monotonic), or None if it stopped
    because it was asked to."""

    def __init__(self, name: str, port: int, lifetime: int, ledger: Ledger):
        super().__init__(name=f"{name}-{lifetime}", daemon=True)
        self.port = port
        self.lifetime = lifetime
        self.ledger = ledger
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        self.lost_at: float | None = None
        self.client = RawClient(port, timeout=10.0)

    def run(self) -> None:
        try:
            self.client.handshake(heartbeat=0)
            self.client.open_channel(1)
            self.setup()
            self.ready.set()
            while not self.stop_event.is_set():
                self.step()
                self.client.frames_seen.clear()
            self.finish()
        except (PeerClosed, ConnectionError, BrokenPipeError):
            self.lost_at = time.monotonic()
            self.connection_lost()
        except socket.timeout:
            self.lost_at = time.monotonic()
            self.ledger.error(f"{self.name}: a write to the broker blocked for {SEND_TIMEOUT} s")
            self.connection_lost()
        except BaseException as e:  # noqa: BLE001 - whatever it is, the judge must hear of it
            self.lost_at = time.monotonic()
            self.ledger.error(f"{self.name}: {type(e).__name__}: {e}")
            self.connection_lost()
        finally:
            self.ready.set()
            self.client.close()

    def send(self, data: bytes) -> None:
        # RawClient's reads leave the socket timeout at whatever remained of their own; a write needs its own.
        assert self.client.sock is not None
        self.client.sock.settimeout(SEND_TIMEOUT)
        self.client.send_raw(data)

    def read_frame(self, timeout: float):
        """The next frame, or None after `timeout`; a channel or connection close from the broker is an error.
        connection.blocked/unblocked pass as nothing: a blocked publisher's window simply stays full."""
        try:
            f = self.client.read_frame(timeout)
        except ReadTimeout:
            return None
        if f.method in (CHANNEL_CLOSE, CONNECTION_CLOSE):
            raise AssertionError(f"broker sent {f.describe()}")
        if f.method in (CONNECTION_BLOCKED, CONNECTION_UNBLOCKED):
            return None
        return f

    def setup(self) -> None: ...
    def step(self) -> None: ...
    def finish(self) -> None: ...
    def connection_lost(self) -> None: ...


class Publisher(_Client):
    def __init__(self, port: int, lifetime: int, ledger: Ledger):
        super().__init__("publisher", port, lifetime, ledger)
        self.next_tag = 1
        self.outstanding: dict[int, int] = {}  # delivery tag -> seq, in tag order
        self.published = 0
        self.confirmed = 0

    def setup(self) -> None:
        self.client.send_method(1, CONFIRM_SELECT, encode_bits(False))
        self.client.expect_method(1, CONFIRM_SELECT_OK)
        declare_queue(self.client, 1, QUEUE, durable=True)

    def step(self) -> None:
        room = min(BATCH, WINDOW - len(self.outstanding))
        if self.ledger.waiting + len(self.outstanding) >= MAX_BACKLOG:
            room = 0  # the queue is long enough; wait for the consumer (or the kill)
        if room > 0:
            data = bytearray()
            seqs = self.ledger.allocate(room)
            for seq in seqs:
                body = body_for(seq)
                data += method_frame(1, BASIC_PUBLISH, publish_args("", QUEUE))
                data += frame(FRAME_HEADER, 1, _persistent_header(seq, len(body)))
                data += frame(FRAME_BODY, 1, body)
                self.outstanding[self.next_tag] = seq
                self.next_tag += 1
            self.published += room
            self.send(bytes(data))
        # Read whatever confirms are there; wait for them only when the window is full.
        f = self.read_frame(POLL if room > 0 else 1.0)
        while f is not None:
            self.on_frame(f)
            f = self.read_frame(POLL)

    def on_frame(self, f) -> None:
        if f.type == FRAME_HEARTBEAT:
            return
        if f.method not in (BASIC_ACK, BASIC_NACK):
            raise AssertionError(f"publisher got {f.describe()}")
        tag, bits = struct.unpack_from(">QB", f.payload, 4)
        tags = [t for t in self.outstanding if t <= tag] if bits & 1 else [tag]
        if any(t not in self.outstanding for t in tags):
            raise AssertionError(f"confirm for unknown delivery tag {tag} (multiple={bool(bits & 1)})")
        self.ledger.settle([self.outstanding.pop(t) for t in tags], acked=f.method == BASIC_ACK)
        self.confirmed += len(tags)

    def connection_lost(self) -> None:
        self.ledger.doubt(self.outstanding.values())
        self.outstanding.clear()


class Consumer(_Client):
    """Acks about half the deliveries one by one and the rest in multiple=true batches of 2-50, and whatever is
    pending whenever nothing arrives for 50 ms. Consumes at most `rate` messages a second (None: no limit), from
    `delay` seconds after it connected."""

    def __init__(self, port: int, lifetime: int, ledger: Ledger, rng: random.Random, rate: float | None = None,
                 delay: float = 0.0):
        super().__init__("consumer", port, lifetime, ledger)
        self.rng = rng
        self.rate = rate
        self.delay = delay
        self.started = 0.0
        self.pending_tag = 0  # highest delivery tag not acked yet (0: none)
        self.pending = 0
        self.batch = 0
        self.delivered = 0
        self.last_delivery = time.monotonic()

    def setup(self) -> None:
        self.client.send_method(1, BASIC_QOS, struct.pack(">IH", 0, PREFETCH) + encode_bits(False))
        self.client.expect_method(1, BASIC_QOS_OK)
        declare_queue(self.client, 1, QUEUE, durable=True)
        if self.stop_event.wait(self.delay):
            return
        send_consume(self.client, 1, QUEUE, f"kill9-consumer-{self.lifetime}")
        self.started = time.monotonic()

    def step(self) -> None:
        if self.rate is not None and self.delivered >= self.rate * (time.monotonic() - self.started):
            self.flush_acks()
            time.sleep(0.005)  # ahead of its pace: the broker holds deliveries beyond the prefetch
            return
        f = self.read_frame(0.05)
        if f is None:
            self.flush_acks()
            return
        if f.type == FRAME_HEARTBEAT or f.method == BASIC_CONSUME_OK:
            return
        if f.method != BASIC_DELIVER:
            raise AssertionError(f"consumer got {f.describe()}")
        self.on_deliver(f.payload[4:])

    def on_deliver(self, args: bytes) -> None:
        n = args[0]
        tag, bits = struct.unpack_from(">QB", args, 1 + n)
        redelivered = bool(bits & 1)
        header = self.client.read_frame(10.0)
        if header.type != FRAME_HEADER:
            raise AssertionError(f"expected a content header after basic.deliver, got {header.describe()}")
        _class, _weight, size, flags = struct.unpack_from(">HHQH", header.payload)
        props = decode_properties(flags, header.payload[14:])
        body = bytearray()
        while len(body) < size:
            part = self.client.read_frame(10.0)
            if part.type != FRAME_BODY:
                raise AssertionError(f"expected a content body, got {part.describe()}")
            body += part.payload
        self.record(bytes(body), props, redelivered)
        self.last_delivery = time.monotonic()
        self.delivered += 1
        if self.batch == 0:
            self.batch = 1 if self.rng.random() < 0.5 else self.rng.randint(2, 50)
        self.pending_tag, self.pending = tag, self.pending + 1
        if self.pending >= self.batch:
            self.flush_acks()

    def record(self, body: bytes, props: dict, redelivered: bool) -> None:
        seq = seq_of(body)
        problem = None
        if seq is None:
            problem = f"body {body[:40]!r}... ({len(body)} bytes) is no published message"
        elif props.get("delivery_mode") != 2 or props.get("message_id") != str(seq):
            problem = f"seq {seq}: properties {props}"
        if seq is not None and not self.ledger.was_sent(seq):
            problem = f"seq {seq} was never published"
        if problem:
            with self.ledger.lock:
                self.ledger.corrupt.append(f"lifetime {self.lifetime}: {problem}")
            return
        self.ledger.delivered(seq, self.lifetime, redelivered)

    def flush_acks(self) -> None:
        if not self.pending:
            return
        multiple = self.pending > 1
        self.send(method_frame(1, BASIC_ACK, struct.pack(">Q", self.pending_tag) + encode_bits(multiple)))
        self.pending, self.batch = 0, 0

    def finish(self) -> None:
        self.flush_acks()
        close_politely(self.client)


# --- the loop ---------------------------------------------------------------------------------------------------


def close_politely(client: RawClient) -> None:
    """connection.close, wait for close-ok, close the socket (without RawClient.close_connection's check that the
    server stays silent for a moment, which only costs time here)."""
    client.send_method(0, CONNECTION_CLOSE, close_args(REPLY_SUCCESS, "bye"))
    client.expect_method(0, CONNECTION_CLOSE_OK, timeout=10.0)
    client.close()


def _queue_ready_count(port: int) -> int:
    with RawClient(port, timeout=10.0) as c:
        c.handshake(heartbeat=0)
        c.open_channel(1)
        count = declare_queue(c, 1, QUEUE, passive=True)["message_count"]
        close_politely(c)
        return count


def run(proc: WarrenProcess, cycles: int, rng: random.Random,
        report: Callable[[str], None] = print) -> Summary:
    """`cycles` kill -9 cycles on `proc` (started, on its data dir), then a drain; returns the judged summary.
    Stops early, with the reason among the errors, if a cycle goes wrong in a way that makes the rest pointless."""
    ledger = Ledger()
    for cycle in range(1, cycles + 1):
        lifetime, port = proc.lifetimes, proc.amqp_port
        in_doubt_before = ledger.in_doubt
        run_for = rng.uniform(MIN_RUN, MAX_RUN)
        consumer = Consumer(port, lifetime, ledger, rng, rate=rng.uniform(*CONSUMER_RATE),
                            delay=rng.choice([0.0, rng.uniform(0.0, run_for)]))
        publisher = Publisher(port, lifetime, ledger)
        consumer.start()
        publisher.start()
        time.sleep(run_for)
        for c in (consumer, publisher):
            if c.lost_at is not None:
                ledger.error(f"cycle {cycle}: the {c.name} connection closed before the kill (broker alive: "
                             f"{proc.alive()})")
        proc.kill9()
        ledger.killed_lifetimes.add(lifetime)
        for c in (consumer, publisher):
            c.join(JOIN_TIMEOUT)
            if c.is_alive():
                ledger.error(f"cycle {cycle}: {c.name} did not notice the kill within {JOIN_TIMEOUT} s")
        with ledger.lock:
            waiting = ledger.waiting
            ledger.waiting_at_kills += waiting
        report(f"cycle {cycle}/{cycles}: port {port}, killed after {run_for:.2f} s: published "
               f"+{publisher.published}, confirmed +{publisher.confirmed}, delivered +{consumer.delivered} "
               f"({ledger.deliveries - ledger.delivered_distinct} repeats so far), in doubt "
               f"+{ledger.in_doubt - in_doubt_before}; confirmed and not yet delivered at the kill {waiting}")
        if ledger.errors:
            return judge(ledger, cycle)
        try:
            proc.start(timeout=RESTART_TIMEOUT)
        except AssertionError as e:
            ledger.error(f"cycle {cycle}: the broker did not start again after the kill: {e}")
            return judge(ledger, cycle)

    # The last lifetime drains the queue with one consumer and no publisher.
    lifetime, port = proc.lifetimes, proc.amqp_port
    consumer = Consumer(port, lifetime, ledger, rng)
    consumer.start()
    consumer.ready.wait(JOIN_TIMEOUT)
    deadline = time.monotonic() + DRAIN_TIMEOUT
    ready = None  # last passive count, taken only once the consumer has been idle for DRAIN_IDLE
    while time.monotonic() < deadline and consumer.is_alive():
        time.sleep(0.2)
        if time.monotonic() - consumer.last_delivery < DRAIN_IDLE:
            continue
        ready = _queue_ready_count(port)
        if ready == 0:
            break
    consumer.stop_event.set()
    consumer.join(JOIN_TIMEOUT)
    if consumer.lost_at is not None:
        ledger.error("drain: the consumer connection closed while the broker was running")
    elif ready != 0:
        ledger.error(f"drain: not empty after {DRAIN_TIMEOUT} s (last ready count: {ready}, deliveries still "
                     f"arriving: {ready is None})")
    summary = judge(ledger, cycles)
    report(f"drain: delivered +{consumer.delivered}")
    report(summary.line())
    return summary
