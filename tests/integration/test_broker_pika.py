"""The broker model through a real client, pika (Debian's python3-pika, BlockingConnection): exchanges, queues,
bindings, consumers, acks and publisher confirms, checked against RabbitMQ 3.10's behaviour and reply codes.

Most channels are in confirm mode, so that a publish has reached its queues when basic_publish returns and the
tests need no sleeps. Where a test must show that nothing (more) arrives, it waits QUIET seconds."""

import contextlib
import os
import re
import threading
import time

import pika
import pika.exceptions
import pytest

from support.amqp_raw import NOT_ALLOWED, connect_and_handshake
from support.amqp_raw_broker import consume as raw_consume
from support.amqp_raw_broker import declare_queue as raw_declare_queue
from support.amqp_raw_broker import send_consume as raw_send_consume

QUIET = 0.3  # how long "nothing more arrives" is watched for



# --- helpers ----------------------------------------------------------------------------------------------------


def params(warren, **kwargs):
    kwargs.setdefault("connection_attempts", 1)
    kwargs.setdefault("socket_timeout", 5)
    kwargs.setdefault("blocked_connection_timeout", 10)
    return pika.ConnectionParameters(host="127.0.0.1", port=warren.amqp_port, **kwargs)


def connect(warren, **kwargs):
    return pika.BlockingConnection(params(warren, **kwargs))


@pytest.fixture
def connections(warren):
    """connections() opens another BlockingConnection to the test's warren; all are closed after the test."""
    opened = []

    def make(**kwargs):
        c = connect(warren, **kwargs)
        opened.append(c)
        return c

    yield make
    for c in opened:
        if c.is_open:
            c.close()


@pytest.fixture
def conn(connections):
    return connections()


@pytest.fixture
def ch(conn):
    """A channel in confirm mode: basic_publish returns once the message is routed (and raises on a nack)."""
    c = conn.channel()
    c.confirm_delivery()
    return c


def new_channel(conn, confirm=True):
    c = conn.channel()
    if confirm:
        c.confirm_delivery()
    return c


def declare(ch, name="", **kwargs):
    return ch.queue_declare(name, **kwargs).method.queue


def publish_all(ch, exchange, routing_key, bodies, **kwargs):
    for body in bodies:
        ch.basic_publish(exchange, routing_key, body, **kwargs)


def drain(ch, queue):
    """Every ready message of `queue`, taken with basic.get and no ack."""
    out = []
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append(body)


def get(ch, queue, auto_ack=False):
    method, props, body = ch.basic_get(queue, auto_ack=auto_ack)
    assert method is not None, f"queue {queue!r} is empty"
    return method, body


def bodies(n, prefix="m"):
    return [f"{prefix}{i}".encode() for i in range(1, n + 1)]


def ready_count(conn, queue):
    """The queue's ready message count from a passive declare on a throwaway channel."""
    c = conn.channel()
    try:
        return c.queue_declare(queue, passive=True).method.message_count
    finally:
        c.close()


def queue_exists(conn, queue):
    c = conn.channel()
    try:
        c.queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as e:
        if e.reply_code == 405:
            return True  # another connection's exclusive queue
        assert e.reply_code == 404, f"passive declare of {queue!r}: {e.reply_code} {e.reply_text}"
        return False
    c.close()
    return True


def exchange_exists(conn, exchange):
    c = conn.channel()
    try:
        c.exchange_declare(exchange, passive=True)
    except pika.exceptions.ChannelClosedByBroker as e:
        assert e.reply_code == 404, f"passive declare of {exchange!r}: {e.reply_code} {e.reply_text}"
        return False
    c.close()
    return True


def wait_until(predicate, timeout=3.0, step=0.02):
    """For effects RabbitMQ also applies asynchronously (deleting a queue after its owner or consumer left)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)


@contextlib.contextmanager
def stopped_cleanly(warren):
    """For tests of connection errors: stop warren inside the test, so that a crash fails the test itself (and an
    xfail mark covers it) rather than the fixture's teardown."""
    try:
        yield
    finally:
        warren.stop()


def channel_error(code, fn, *args, **kwargs):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        fn(*args, **kwargs)
    assert e.value.reply_code == code, f"expected {code}, got {e.value.reply_code} {e.value.reply_text!r}"
    return e.value


def connection_error(code, fn, *args, **kwargs):
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        fn(*args, **kwargs)
    assert e.value.reply_code == code, f"expected {code}, got {e.value.reply_code} {e.value.reply_text!r}"
    return e.value


class Deliveries:
    """An on_message_callback that records (method, properties, body), optionally acking each."""

    def __init__(self, ack=False):
        self.ack = ack
        self.items = []

    def __call__(self, channel, method, properties, body):
        self.items.append((method, properties, body))
        if self.ack:
            channel.basic_ack(method.delivery_tag)

    @property
    def bodies(self):
        return [b for _, _, b in self.items]

    def __len__(self):
        return len(self.items)


def pump(conn, predicate, timeout=5.0):
    """Process conn's events until predicate() holds; returns whether it did."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        conn.process_data_events(time_limit=0.02)
    return True


def settle(conn, seconds=QUIET):
    """Process conn's events for a while, to see that nothing more arrives."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.02)


# --- queues -----------------------------------------------------------------------------------------------------


def test_default_exchange_routes_by_queue_name(ch):
    declare(ch, "q1")
    declare(ch, "q2")
    ch.basic_publish("", "q1", b"one")
    ch.basic_publish("", "q2", b"two")
    ch.basic_publish("", "q1", b"three")
    ch.basic_publish("", "no-such-queue", b"dropped")
    assert drain(ch, "q1") == [b"one", b"three"]
    assert drain(ch, "q2") == [b"two"]


def test_server_named_queue(connections, ch):
    first = ch.queue_declare("", exclusive=True).method
    second = ch.queue_declare("", exclusive=True).method
    for m in (first, second):
        assert re.fullmatch(r"amq\.gen-[A-Za-z0-9_-]{22}", m.queue), m.queue
        assert (m.message_count, m.consumer_count) == (0, 0)
    assert first.queue != second.queue
    ch.basic_publish("", first.queue, b"to the server-named queue")
    assert drain(ch, first.queue) == [b"to the server-named queue"]
    other = connections().channel()
    channel_error(405, other.queue_declare, first.queue, passive=True)  # exclusive to its connection


def test_passive_declare_of_missing_queue_closes_channel_404(conn, ch):
    e = channel_error(404, ch.queue_declare, "no-such-queue", passive=True)
    assert "no-such-queue" in e.reply_text
    assert ch.is_closed
    assert conn.is_open
    assert declare(new_channel(conn), "now-it-exists") == "now-it-exists"


def test_passive_declare_reports_counts(conn, ch):
    declare(ch, "q")
    publish_all(ch, "", "q", bodies(3))
    other = new_channel(conn)
    got = Deliveries()
    other.basic_consume("q", got, auto_ack=False)
    assert pump(conn, lambda: len(got) == 3)
    m = ch.queue_declare("q", passive=True).method  # unacked messages are not counted, the consumer is
    assert (m.message_count, m.consumer_count) == (0, 1)


@pytest.mark.parametrize("first, second, code", [
    ({"durable": False}, {"durable": True}, 406),
    ({"durable": True}, {"durable": False}, 406),
    ({"auto_delete": False}, {"auto_delete": True}, 406),
    ({"arguments": {"x-max-length": 10}}, {"arguments": {"x-max-length": 20}}, 406),
    ({"arguments": {"x-max-length": 10}}, {}, 406),
    # RabbitMQ checks exclusive ownership first (rabbit_amqqueue:assert_equivalence, check_exclusive_access strict):
    # a mismatch either way is 405 RESOURCE_LOCKED, not 406.
    pytest.param({"exclusive": False}, {"exclusive": True}, 405),
    pytest.param({"exclusive": True}, {"exclusive": False}, 405),
], ids=["durable", "not-durable", "auto_delete", "args-differ", "args-missing", "to-exclusive", "from-exclusive"])
def test_redeclare_with_different_properties_is_refused(conn, ch, first, second, code):
    declare(ch, "q", **first)
    declare(ch, "q", **first)  # the same declaration again is fine
    channel_error(code, ch.queue_declare, "q", **second)
    assert conn.is_open
    m = new_channel(conn).queue_declare("q", **first).method  # unchanged
    assert m.queue == "q"


def test_reserved_amq_prefix_is_refused_403(conn, ch):
    e = channel_error(403, ch.queue_declare, "amq.my-queue")
    assert "amq." in e.reply_text
    e = channel_error(403, new_channel(conn).exchange_declare, "amq.my-exchange", "direct")
    assert "amq." in e.reply_text
    assert conn.is_open


def test_predeclared_exchanges_can_be_redeclared_and_checked(ch):
    # The amq. name check applies only when an exchange would be created (rabbit_channel:check_name).
    for name, kind in [("amq.direct", "direct"), ("amq.fanout", "fanout"), ("amq.topic", "topic"),
                       ("amq.headers", "headers"), ("amq.match", "headers")]:
        ch.exchange_declare(name, passive=True)
        ch.exchange_declare(name, kind, durable=True)


def test_exclusive_queue_is_locked_to_its_connection(connections):
    owner = new_channel(connections())
    declare(owner, "mine", exclusive=True)
    owner.basic_publish("", "mine", b"x")
    other = connections()
    attempts = {
        "declare": lambda c: c.queue_declare("mine", exclusive=True),
        "passive declare": lambda c: c.queue_declare("mine", passive=True),
        "consume": lambda c: c.basic_consume("mine", Deliveries()),
        "get": lambda c: c.basic_get("mine"),
        "purge": lambda c: c.queue_purge("mine"),
        "delete": lambda c: c.queue_delete("mine"),
        "bind": lambda c: c.queue_bind("mine", "amq.fanout"),
    }
    for what, attempt in attempts.items():
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
            attempt(other.channel())
        assert e.value.reply_code == 405, f"{what}: {e.value.reply_code} {e.value.reply_text!r}"
    assert drain(owner, "mine") == [b"x"]


def test_exclusive_queue_is_deleted_when_its_connection_closes(connections):
    first = connections()
    ch = new_channel(first)
    declare(ch, "mine", exclusive=True)
    ch.basic_publish("", "mine", b"x")
    first.close()
    second = connections()
    assert wait_until(lambda: not queue_exists(second, "mine")), "exclusive queue outlived its connection"
    declare(second.channel(), "mine")  # the name is free again


# --- exchanges --------------------------------------------------------------------------------------------------


def test_direct_exchange(ch):
    ch.exchange_declare("d", "direct")
    declare(ch, "qa")
    declare(ch, "qb")
    ch.queue_bind("qa", "d", "a")
    ch.queue_bind("qb", "d", "b")
    for key, body in [("a", b"a1"), ("b", b"b1"), ("c", b"c1"), ("a", b"a2"), ("A", b"A1")]:
        ch.basic_publish("d", key, body)
    assert drain(ch, "qa") == [b"a1", b"a2"]
    assert drain(ch, "qb") == [b"b1"]


def test_fanout_exchange_copies_to_every_queue_once(ch):
    ch.exchange_declare("f", "fanout")
    names = ["f1", "f2", "f3"]
    for q in names:
        declare(ch, q)
        ch.queue_bind(q, "f", "ignored")
    ch.queue_bind("f1", "f", "another key")  # a second binding to the same queue: still one copy
    ch.basic_publish("f", "anything", b"one")
    ch.basic_publish("f", "", b"two")
    for q in names:
        assert drain(ch, q) == [b"one", b"two"], q


def test_topic_exchange_patterns(ch):
    ch.exchange_declare("t", "topic")
    bindings = {
        "orange": ["*.orange.*"],
        "rabbit-or-lazy": ["*.*.rabbit", "lazy.#"],
        "everything": ["#"],
        "a-to-b": ["a.#.b"],
        "exact": ["quick.brown.fox"],
    }
    for q, patterns in bindings.items():
        declare(ch, q)
        for p in patterns:
            ch.queue_bind(q, "t", p)
    keys = ["quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox", "lazy.brown.fox", "lazy",
            "quick.orange.male.rabbit", "orange", "a.b", "a.x.y.b", "a.b.c", "x.a.b", "", "quick.brown.fox",
            "lazy.pink.rabbit"]
    for k in keys:
        ch.basic_publish("t", k, k.encode())
    expected = {
        "orange": ["quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox"],
        "rabbit-or-lazy": ["quick.orange.rabbit", "lazy.orange.elephant", "lazy.brown.fox", "lazy",
                           "lazy.pink.rabbit"],  # matched by both patterns, delivered once
        "everything": keys,
        "a-to-b": ["a.b", "a.x.y.b"],
        "exact": ["quick.brown.fox"],
    }
    for q, want in expected.items():
        assert drain(ch, q) == [k.encode() for k in want], q


def test_headers_exchange_all_and_any(ch):
    ch.exchange_declare("h", "headers")
    declare(ch, "all")
    declare(ch, "any")
    declare(ch, "default")
    ch.queue_bind("all", "h", arguments={"x-match": "all", "color": "red", "size": "big"})
    ch.queue_bind("any", "h", arguments={"x-match": "any", "color": "red", "size": "big"})
    ch.queue_bind("default", "h", arguments={"color": "red", "size": "big"})  # x-match defaults to all
    cases = [
        ("both", {"color": "red", "size": "big"}),
        ("both-and-more", {"color": "red", "size": "big", "extra": "1"}),
        ("color-only", {"color": "red"}),
        ("size-wrong", {"color": "red", "size": "small"}),
        ("other", {"shape": "round"}),
        ("none", None),
    ]
    for body, headers in cases:
        props = pika.BasicProperties(headers=headers) if headers is not None else None
        ch.basic_publish("h", "routing keys do not matter", body.encode(), properties=props)
    assert drain(ch, "all") == [b"both", b"both-and-more"]
    assert drain(ch, "default") == [b"both", b"both-and-more"]
    assert drain(ch, "any") == [b"both", b"both-and-more", b"color-only", b"size-wrong"]


def test_exchange_to_exchange_binding(ch):
    ch.exchange_declare("upstream", "direct")
    ch.exchange_declare("downstream", "fanout")
    ch.exchange_bind(destination="downstream", source="upstream", routing_key="k")
    declare(ch, "q")
    ch.queue_bind("q", "downstream")
    ch.basic_publish("upstream", "k", b"carried")
    ch.basic_publish("upstream", "other", b"not carried")
    assert drain(ch, "q") == [b"carried"]
    ch.exchange_unbind(destination="downstream", source="upstream", routing_key="k")
    ch.basic_publish("upstream", "k", b"unbound")
    assert drain(ch, "q") == []


def test_alternate_exchange_receives_unroutable_messages(ch):
    ch.exchange_declare("ae", "fanout")
    declare(ch, "unrouted")
    ch.queue_bind("unrouted", "ae")
    ch.exchange_declare("main", "direct", arguments={"alternate-exchange": "ae"})
    declare(ch, "routed")
    ch.queue_bind("routed", "main", "known")
    ch.basic_publish("main", "known", b"routed")
    ch.basic_publish("main", "unknown", b"to the alternate")
    # Routed through the alternate exchange counts as routed: a mandatory publish is not returned.
    ch.basic_publish("main", "unknown too", b"mandatory, to the alternate", mandatory=True)
    assert drain(ch, "routed") == [b"routed"]
    assert drain(ch, "unrouted") == [b"to the alternate", b"mandatory, to the alternate"]


def test_internal_exchange_refuses_direct_publish_403(conn, ch):
    ch.exchange_declare("inner", "fanout", internal=True)
    ch.exchange_declare("front", "fanout")
    ch.exchange_bind(destination="inner", source="front")
    declare(ch, "q")
    ch.queue_bind("q", "inner")
    ch.basic_publish("front", "", b"via a binding")  # an internal exchange is a fine destination
    assert drain(ch, "q") == [b"via a binding"]
    e = channel_error(403, ch.basic_publish, "inner", "", b"direct")
    assert "inner" in e.reply_text
    assert conn.is_open
    assert ready_count(conn, "q") == 0


def test_unknown_exchange_type_closes_connection_503(warren, conn, ch):
    with stopped_cleanly(warren):
        e = connection_error(503, ch.exchange_declare, "x", "no-such-type")
        assert "no-such-type" in e.reply_text
        assert conn.is_closed


def test_exchange_redeclare_with_other_type_406(conn, ch):
    ch.exchange_declare("x", "direct")
    ch.exchange_declare("x", "direct")
    e = channel_error(406, ch.exchange_declare, "x", "fanout")
    assert "type" in e.reply_text
    new_channel(conn).exchange_declare("x", "direct")  # unchanged


def test_exchange_delete_if_unused_with_bindings_406(conn, ch):
    ch.exchange_declare("x", "fanout")
    declare(ch, "q")
    ch.queue_bind("q", "x")
    channel_error(406, ch.exchange_delete, "x", if_unused=True)
    assert exchange_exists(conn, "x")
    ch = new_channel(conn)
    ch.queue_unbind("q", "x")
    ch.exchange_delete("x", if_unused=True)
    assert not exchange_exists(conn, "x")


@pytest.mark.parametrize("what", ["queue", "queue-source", "exchange-destination", "exchange-source"])
def test_binding_with_a_missing_end_is_404(conn, ch, what):
    declare(ch, "q")
    ch.exchange_declare("x", "direct")
    bind = {
        "queue": lambda: ch.queue_bind("no-such-queue", "x", "k"),
        "queue-source": lambda: ch.queue_bind("q", "no-such-exchange", "k"),
        "exchange-destination": lambda: ch.exchange_bind(destination="no-such-exchange", source="x"),
        "exchange-source": lambda: ch.exchange_bind(destination="x", source="no-such-exchange"),
    }[what]
    e = channel_error(404, bind)
    assert "no-such-" in e.reply_text
    assert conn.is_open


def test_binding_to_the_default_exchange_is_refused_403(ch):
    declare(ch, "q")
    channel_error(403, ch.queue_bind, "q", "", "q")


def test_auto_delete_exchange_vanishes_with_its_last_binding(conn, ch):
    ch.exchange_declare("ad", "fanout", auto_delete=True)
    assert exchange_exists(conn, "ad")  # no binding yet: it stays
    declare(ch, "q1")
    declare(ch, "q2")
    ch.queue_bind("q1", "ad")
    ch.queue_bind("q2", "ad")
    ch.queue_unbind("q1", "ad")
    assert exchange_exists(conn, "ad")
    ch.queue_unbind("q2", "ad")
    assert not exchange_exists(conn, "ad")


def test_auto_delete_exchange_vanishes_when_its_last_queue_is_deleted(conn, ch):
    ch.exchange_declare("ad", "fanout", auto_delete=True)
    declare(ch, "q")
    ch.queue_bind("q", "ad")
    ch.queue_delete("q")
    assert not exchange_exists(conn, "ad")


# --- purge and delete -------------------------------------------------------------------------------------------


def test_queue_purge_returns_the_count(conn, ch):
    declare(ch, "q")
    publish_all(ch, "", "q", bodies(8))
    get(ch, "q")  # one unacked: purge leaves it alone
    assert ch.queue_purge("q").method.message_count == 7
    assert ch.queue_purge("q").method.message_count == 0
    assert ready_count(conn, "q") == 0
    ch.close()  # the unacked one comes back
    assert ready_count(conn, "q") == 1


def test_queue_delete_returns_the_count(conn, ch):
    declare(ch, "q")
    publish_all(ch, "", "q", bodies(4))
    assert ch.queue_delete("q").method.message_count == 4
    assert not queue_exists(conn, "q")
    assert new_channel(conn).queue_delete("q").method.message_count == 0  # deleting a missing queue is fine


def test_queue_delete_if_empty_on_non_empty_queue_406(conn, ch):
    declare(ch, "q")
    ch.basic_publish("", "q", b"x")
    channel_error(406, ch.queue_delete, "q", if_empty=True)
    assert ready_count(conn, "q") == 1


def test_queue_delete_if_unused_with_consumer_406(conn, ch):
    declare(ch, "q")
    new_channel(conn).basic_consume("q", Deliveries())
    channel_error(406, ch.queue_delete, "q", if_unused=True)
    assert queue_exists(conn, "q")


def test_deleting_a_queue_cancels_its_consumer(connections, ch):
    declare(ch, "q")
    consumer_conn = connections()
    cch = consumer_conn.channel()
    cancels = []
    cch.add_on_cancel_callback(lambda frame: cancels.append(frame.method))
    tag = cch.basic_consume("q", Deliveries())
    ch.queue_delete("q")
    assert pump(consumer_conn, lambda: cancels), "no basic.cancel from the broker"
    assert [m.consumer_tag for m in cancels] == [tag]
    assert cch.is_open
    assert cch.consumer_tags == []


# --- consumers --------------------------------------------------------------------------------------------------


def test_round_robin_across_two_consumers(conn, ch):
    declare(ch, "q")
    a, b = Deliveries(ack=True), Deliveries(ack=True)
    new_channel(conn).basic_consume("q", a)
    new_channel(conn).basic_consume("q", b)
    sent = bodies(10)
    publish_all(ch, "", "q", sent)
    assert pump(conn, lambda: len(a) + len(b) == 10)
    assert {tuple(a.bodies), tuple(b.bodies)} == {tuple(sent[0::2]), tuple(sent[1::2])}


def test_prefetch_count_limits_unacked_deliveries(conn, ch):
    declare(ch, "q")
    publish_all(ch, "", "q", bodies(10))
    cch = new_channel(conn)
    cch.basic_qos(prefetch_count=3)
    got = Deliveries()
    cch.basic_consume("q", got)
    assert pump(conn, lambda: len(got) >= 3)
    settle(conn)
    assert got.bodies == bodies(3)
    cch.basic_ack(got.items[0][0].delivery_tag)
    assert pump(conn, lambda: len(got) >= 4)
    settle(conn)
    assert got.bodies == bodies(4)
    cch.basic_ack(got.items[3][0].delivery_tag, multiple=True)  # acks 2..4: three more may come
    assert pump(conn, lambda: len(got) >= 7)
    settle(conn)
    assert got.bodies == bodies(7)


def test_global_qos_limits_across_the_channels_consumers(conn, ch):
    for q in ("q1", "q2"):
        declare(ch, q)
        publish_all(ch, "", q, bodies(10, q))
    cch = new_channel(conn)
    cch.basic_qos(prefetch_count=3, global_qos=True)
    got = Deliveries()
    cch.basic_consume("q1", got)
    cch.basic_consume("q2", got)
    assert pump(conn, lambda: len(got) >= 3)
    settle(conn)
    assert len(got) == 3, got.bodies
    cch.basic_ack(got.items[0][0].delivery_tag)
    assert pump(conn, lambda: len(got) >= 4)
    settle(conn)
    assert len(got) == 4, got.bodies


# With two workers, queues are placed by a hash of their names (FNV-1a, docs/architecture.md): q1 and q3 are on the
# same worker, q1 and q2 on different ones. With one worker the vhost has no shards at all.
@pytest.mark.parametrize("workers,other", [(1, "q2"), (2, "q3"), (2, "q2")],
                         ids=["one-worker", "same-worker", "other-worker"])
def test_global_qos_room_made_by_one_queue_goes_to_the_channels_other_queues(warren_factory, workers, other):
    """The channel's limit is shared, so room made by acking the last messages of one queue must wake its consumers
    of the others, on the same worker as on another: q1's three are acked, q1 is then empty, the other queue
    waits (it waited until its next publish when both were on one worker)."""
    conn = connect(warren_factory(workers=workers))
    try:
        ch = new_channel(conn)
        for q in ("q1", other):
            declare(ch, q)
        publish_all(ch, "", "q1", bodies(3, "q1"))
        publish_all(ch, "", other, bodies(5, other))
        cch = new_channel(conn)
        cch.basic_qos(prefetch_count=3, global_qos=True)
        got = Deliveries()
        cch.basic_consume("q1", got)
        assert pump(conn, lambda: len(got) >= 3)
        cch.basic_consume(other, got)
        settle(conn)
        assert got.bodies == bodies(3, "q1"), got.bodies  # the limit is reached: the other queue waits
        cch.basic_ack(got.items[2][0].delivery_tag, multiple=True)
        assert pump(conn, lambda: len(got) >= 6), got.bodies
        settle(conn)
        assert got.bodies == bodies(3, "q1") + bodies(3, other), got.bodies
    finally:
        conn.close()


def test_ack_multiple_acks_everything_up_to_the_tag(conn, ch):
    declare(ch, "q")
    publish_all(ch, "", "q", bodies(5))
    tags = [get(ch, "q")[0].delivery_tag for _ in range(5)]
    assert tags == [1, 2, 3, 4, 5]
    ch.basic_ack(3, multiple=True)
    ch.close()  # 4 and 5 were not acked: they come back
    ch = new_channel(conn)
    again = [get(ch, "q", auto_ack=True) for _ in range(2)]
    assert [body for _, body in again] == [b"m4", b"m5"]
    assert all(m.redelivered for m, _ in again)
    assert drain(ch, "q") == []


def test_nack_multiple_requeue_keeps_the_original_order(ch):
    declare(ch, "q")
    publish_all(ch, "", "q", bodies(5))
    first = [get(ch, "q") for _ in range(5)]
    assert [m.redelivered for m, _ in first] == [False] * 5
    ch.basic_nack(first[-1][0].delivery_tag, multiple=True, requeue=True)
    second = [get(ch, "q", auto_ack=True) for _ in range(5)]
    assert [body for _, body in second] == bodies(5)
    assert [m.redelivered for m, _ in second] == [True] * 5
    assert drain(ch, "q") == []


def test_nack_multiple_requeue_goes_before_messages_still_queued(ch):
    declare(ch, "q")
    publish_all(ch, "", "q", bodies(6))
    taken = [get(ch, "q") for _ in range(4)]
    ch.basic_nack(taken[2][0].delivery_tag, multiple=True, requeue=True)  # 1..3 back; 4 stays unacked
    again = [get(ch, "q", auto_ack=True) for _ in range(5)]
    assert [body for _, body in again] == [b"m1", b"m2", b"m3", b"m5", b"m6"]
    assert [m.redelivered for m, _ in again] == [True, True, True, False, False]
    ch.basic_ack(taken[3][0].delivery_tag)
    assert drain(ch, "q") == []


def test_single_requeue_goes_back_to_the_original_position(ch):
    declare(ch, "q")
    publish_all(ch, "", "q", bodies(5))
    m1, _ = get(ch, "q")
    m2, _ = get(ch, "q")
    ch.basic_nack(m2.delivery_tag, requeue=True)  # out of order on purpose
    ch.basic_reject(m1.delivery_tag, requeue=True)
    again = [get(ch, "q", auto_ack=True) for _ in range(5)]
    assert [body for _, body in again] == bodies(5)
    assert [m.redelivered for m, _ in again] == [True, True, False, False, False]


def test_reject_without_requeue_drops_the_message(conn, ch):
    declare(ch, "q")
    publish_all(ch, "", "q", [b"bad", b"good"])
    m, body = get(ch, "q")
    assert body == b"bad"
    ch.basic_reject(m.delivery_tag, requeue=False)
    m, body = get(ch, "q")
    ch.basic_nack(m.delivery_tag, requeue=False)
    ch.close()
    assert ready_count(conn, "q") == 0


def test_closing_a_channel_requeues_unacked_to_another_consumer(connections, ch):
    declare(ch, "q")
    publish_all(ch, "", "q", bodies(3))
    first_conn, second_conn = connections(), connections()
    first_ch = first_conn.channel()
    first = Deliveries()
    first_ch.basic_consume("q", first)
    assert pump(first_conn, lambda: len(first) == 3)
    second = Deliveries(ack=True)
    second_conn.channel().basic_consume("q", second)
    settle(second_conn)
    assert len(second) == 0
    first_ch.close()
    assert pump(second_conn, lambda: len(second) == 3)
    assert second.bodies == bodies(3)
    assert all(m.redelivered for m, _, _ in second.items)
    assert [m.redelivered for m, _, _ in first.items] == [False] * 3


def test_basic_recover_requeues_unacked(conn, ch):
    declare(ch, "q")
    publish_all(ch, "", "q", bodies(3))
    cch = new_channel(conn)
    got = Deliveries()
    cch.basic_consume("q", got)
    assert pump(conn, lambda: len(got) == 3)
    cch.basic_recover(requeue=True)
    assert pump(conn, lambda: len(got) == 6)
    settle(conn)
    assert got.bodies == bodies(3) * 2
    assert [m.redelivered for m, _, _ in got.items] == [False] * 3 + [True] * 3
    cch.basic_ack(got.items[-1][0].delivery_tag, multiple=True)
    cch.close()
    assert ready_count(conn, "q") == 0


def test_basic_recover_without_requeue_540(conn, ch):
    # As RabbitMQ: redelivery to the original consumer (requeue=false) is not implemented, a connection error.
    e = connection_error(540, ch.basic_recover, requeue=False)
    assert "requeue=false" in e.reply_text


def test_unknown_delivery_tag_406(conn, ch):
    declare(ch, "q")
    ch.basic_ack(99)
    e = channel_error(406, ch.queue_declare, "q", passive=True)
    assert "99" in e.reply_text
    assert conn.is_open


def test_double_ack_406(conn, ch):
    declare(ch, "q")
    ch.basic_publish("", "q", b"x")
    m, _ = get(ch, "q")
    ch.basic_ack(m.delivery_tag)
    ch.basic_ack(m.delivery_tag)
    channel_error(406, ch.queue_declare, "q", passive=True)
    assert ready_count(conn, "q") == 0  # the first ack counted


def test_reusing_a_consumer_tag_on_a_channel_530(warren):
    # pika refuses to send a duplicate tag (DuplicateConsumerTag), so this one speaks raw frames.
    client = connect_and_handshake(warren.amqp_port)
    with stopped_cleanly(warren), contextlib.closing(client):
        client.open_channel(1)
        raw_declare_queue(client, 1, "q")
        assert raw_consume(client, 1, "q", "tag") == "tag"
        raw_send_consume(client, 1, "q", "tag")
        code, text, class_id, method_id = client.expect_connection_close(NOT_ALLOWED)
        assert "tag" in text
        assert (class_id, method_id) == (60, 20)


def test_exclusive_consumer_blocks_other_consumers_403(conn, ch):
    declare(ch, "q")
    ex_ch = new_channel(conn)
    ex_ch.basic_consume("q", Deliveries(), exclusive=True)
    e = channel_error(403, new_channel(conn).basic_consume, "q", Deliveries())
    assert "exclusive" in e.reply_text
    declare(ch, "q2")
    new_channel(conn).basic_consume("q2", Deliveries())
    channel_error(403, new_channel(conn).basic_consume, "q2", Deliveries(), exclusive=True)  # not alone any more


def test_no_ack_consumer_gets_everything(conn, ch):
    declare(ch, "q")
    publish_all(ch, "", "q", bodies(50))
    cch = new_channel(conn)
    cch.basic_qos(prefetch_count=5)  # prefetch does not apply to no-ack consumers
    got = Deliveries()
    cch.basic_consume("q", got, auto_ack=True)
    assert pump(conn, lambda: len(got) == 50)
    assert got.bodies == bodies(50)
    cch.close()  # nothing to requeue
    assert ready_count(conn, "q") == 0


def test_get_on_empty_queue_returns_none(ch):
    declare(ch, "q")
    assert ch.basic_get("q") == (None, None, None)


def test_get_message_count_is_the_number_left(ch):
    declare(ch, "q")
    publish_all(ch, "", "q", bodies(3))
    counts = [get(ch, "q", auto_ack=True)[0].message_count for _ in range(3)]
    assert counts == [2, 1, 0]


def test_auto_delete_queue_goes_when_its_consumer_cancels(conn, ch):
    declare(ch, "q", auto_delete=True)
    ch.basic_publish("", "q", b"x")
    assert queue_exists(conn, "q")  # no consumer yet: it stays
    cch = new_channel(conn)
    tag = cch.basic_consume("q", Deliveries(ack=True))
    assert queue_exists(conn, "q")
    cch.basic_cancel(tag)
    assert wait_until(lambda: not queue_exists(conn, "q")), "auto-delete queue outlived its last consumer"


def test_an_auto_delete_queue_is_gone_when_its_consumers_close_returns(warren, conn):
    """Closing the channel or the connection of an auto-delete queue's only consumer deletes the queue before the
    close returns (as RabbitMQ, whose channel waits for its queues): declared again at once, as a client that
    reconnects does, it is a new queue that takes a consumer, never the old one about to go (then a 404)."""
    for i in range(20):
        for how in ("channel", "connection"):
            q = f"ad-{how}-{i}"
            c = connect(warren)
            cch = c.channel()
            cch.queue_declare(q, auto_delete=True)
            cch.basic_consume(q, Deliveries())
            cch.close() if how == "channel" else c.close()
            assert not queue_exists(conn, q), f"{q} outlived its consumer's {how} close"
            again = conn.channel()
            again.queue_declare(q, auto_delete=True)
            again.basic_consume(q, Deliveries())
            again.close()
            if c.is_open:
                c.close()


# --- publisher confirms -----------------------------------------------------------------------------------------


def test_thousand_confirmed_publishes(conn, ch):
    declare(ch, "q")
    for i in range(1000):
        ch.basic_publish("", "q", str(i).encode())  # raises NackError on a nack
    assert ready_count(conn, "q") == 1000


def test_mandatory_unroutable_is_returned_312_and_confirmed(ch):
    ch.exchange_declare("d", "direct")
    declare(ch, "q")
    ch.queue_bind("q", "d", "known")
    ch.basic_publish("d", "known", b"routed", mandatory=True)
    with pytest.raises(pika.exceptions.UnroutableError) as e:  # raised only once the ack came
        ch.basic_publish("d", "unknown", b"back to me", mandatory=True)
    [returned] = e.value.messages
    assert returned.method.reply_code == 312
    assert (returned.method.exchange, returned.method.routing_key, returned.body) == ("d", "unknown", b"back to me")
    assert ch.is_open
    assert drain(ch, "q") == [b"routed"]


def test_max_length_reject_publish_nacks_the_overflow(conn, ch):
    declare(ch, "q", arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    ch.basic_publish("", "q", b"1")
    ch.basic_publish("", "q", b"2")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", "q", b"3")
    assert ch.is_open
    assert drain(ch, "q") == [b"1", b"2"]
    ch.basic_publish("", "q", b"4")  # room again
    assert drain(ch, "q") == [b"4"]


def test_max_length_drop_head_keeps_the_newest(ch):
    declare(ch, "q", arguments={"x-max-length": 3})  # drop-head is the default overflow
    declare(ch, "q2", arguments={"x-max-length": 3, "x-overflow": "drop-head"})
    for q in ("q", "q2"):
        publish_all(ch, "", q, bodies(10))
        assert drain(ch, q) == [b"m8", b"m9", b"m10"], q


# --- channel.flow -----------------------------------------------------------------------------------------------


def test_channel_flow_pauses_and_resumes_deliveries(conn, ch):
    # Warren honours active=false where RabbitMQ answers 540 (docs/compatibility.md, "Other differences").
    declare(ch, "q")
    cch = new_channel(conn, confirm=False)
    got = Deliveries(ack=True)
    cch.basic_consume("q", got)
    ch.basic_publish("", "q", b"before")
    assert pump(conn, lambda: len(got) == 1)
    assert cch.flow(False) is False
    publish_all(ch, "", "q", bodies(3))
    settle(conn)
    assert got.bodies == [b"before"]
    assert ready_count(conn, "q") == 3
    assert cch.flow(True) is True
    assert pump(conn, lambda: len(got) == 4)
    assert got.bodies == [b"before", *bodies(3)]


# --- across workers, large messages -----------------------------------------------------------------------------


def _worker_threads(warren, conns):
    """The worker thread id each connection's open was logged on (warren --log-level debug), by local port."""
    log = warren.stderr_path.read_text(errors="replace")
    out = []
    for c in conns:
        port = c._impl._transport._sock.getsockname()[1]
        m = re.search(rf"\[t(\d+)\] 127\.0\.0\.1:{port}: user 'guest' opened vhost", log)
        out.append(m.group(1) if m else None)
    return out


def test_publisher_and_consumers_on_other_workers_keep_order(warren_factory):
    warren = warren_factory("--log-level", "debug", workers=2)
    conns = [connect(warren) for _ in range(4)]
    try:
        # SO_REUSEPORT spreads connections by hash; open more until the publisher has a peer on another worker.
        threads = _worker_threads(warren, conns)
        while None not in threads and len(set(threads)) < 2 and len(conns) < 16:
            conns.append(connect(warren))
            threads = _worker_threads(warren, conns)
        print("worker thread per connection:", threads)
        if None not in threads:
            assert len(set(threads)) == 2, f"16 connections all on one worker: {threads}"
        publisher_conn = conns[0]
        others = [c for c, t in zip(conns[1:], threads[1:]) if t is not None and t != threads[0]]
        consumer_conns = others[:1] + [c for c in conns[1:] if c not in others[:1]][:2]
        pch = publisher_conn.channel()  # no confirms: 1000 publishes pipelined
        pch.exchange_declare("fan", "fanout")
        results, errors, ready = {}, [], threading.Barrier(len(consumer_conns) + 1, timeout=10)
        for i, c in enumerate(consumer_conns):
            cch = c.channel()
            declare(cch, f"q{i}")
            cch.queue_bind(f"q{i}", "fan")
            cch.basic_qos(prefetch_count=100)
            results[i] = Deliveries(ack=True)
            cch.basic_consume(f"q{i}", results[i])

        def run(c, got):
            try:
                ready.wait()
                if not pump(c, lambda: len(got) >= 1000, timeout=20):
                    errors.append(f"only {len(got)} of 1000 arrived")
            except Exception as e:  # noqa: BLE001 - reported by the main thread
                errors.append(repr(e))

        workers = [threading.Thread(target=run, args=(c, results[i])) for i, c in enumerate(consumer_conns)]
        for t in workers:
            t.start()
        ready.wait()
        for n in range(1000):
            pch.basic_publish("fan", "", str(n).encode())
        for t in workers:
            t.join(30)
        assert not errors, errors
        want = [str(n).encode() for n in range(1000)]
        for i, got in results.items():
            assert got.bodies == want, f"consumer {i}: order or content differs"
    finally:
        for c in conns:
            if c.is_open:
                c.close()


def test_one_mebibyte_message_round_trips(conn, ch):
    body = os.urandom(1 << 20)
    declare(ch, "q")
    ch.basic_publish("", "q", body, properties=pika.BasicProperties(content_type="application/octet-stream"))
    ch.basic_publish("", "q", body[::-1])
    m, got = get(ch, "q", auto_ack=True)
    assert len(got) == len(body) and got == body
    cch = new_channel(conn)
    received = Deliveries(ack=True)
    cch.basic_consume("q", received)
    assert pump(conn, lambda: len(received) == 1)
    assert received.bodies[0] == body[::-1]
