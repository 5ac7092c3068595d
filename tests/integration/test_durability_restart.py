"""Durability across a clean restart: SIGTERM, then the same binary on the same --data-dir, driven with pika.

The rules, as RabbitMQ applies them:
- Durable exchanges and durable queues come back with their type, flags and arguments; so do the bindings between
  durable objects (queue and exchange-to-exchange, on amq.* too). Non-durable exchanges and queues are gone, and so
  is every exclusive queue, durable or not; a binding goes with either of its ends.
- In a durable queue, persistent messages (delivery_mode 2) come back in their order, with their properties,
  exchange and routing key; transient ones (delivery_mode 1 or none) do not. A non-durable queue comes back with
  nothing, persistent messages included.
- Every recovered message is marked redelivered. For a message delivered (and not acked) before the restart that is
  RabbitMQ's rule too; for one never delivered it is ours and stricter: RabbitMQ 3.10.8 (Debian's, checked) says
  redelivered=false after a clean restart, because its queue index records deliveries. A broker that does not record
  them cannot know, and must say true (the spec's "may have been delivered before").
- What was settled before the restart stays settled: an acked or rejected (requeue=false) message does not come
  back, one delivered but not acked does; a purged queue stays empty, a deleted queue or exchange stays deleted, an
  unbound binding stays unbound. A message fanned out to two durable queues is two copies: acking one leaves the
  other.

Only what a client can see is checked: queue.declare (passive, and redeclarations that must be refused 406 when an
argument differs), basic.get, consumers and routing. An ack is followed by a synchronous method on its channel
before the restart, so the broker has processed it when SIGTERM arrives (acks have no reply of their own).

Every test restarts its own broker (WarrenProcess.restart: exit 0 on SIGTERM is checked, then a start on the same
data dir, possibly on a new AMQP port). Before the broker keeps anything on disk, the tests of what survives fail
and the tests of what is gone pass."""

import contextlib

import pika
import pika.exceptions
import pytest

PERSISTENT = pika.BasicProperties(delivery_mode=2)
TRANSIENT = pika.BasicProperties(delivery_mode=1)


# --- helpers ----------------------------------------------------------------------------------------------------


def connect(w):
    # One attempt and a short socket timeout: a broker that is down fails the test at once.
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", w.amqp_port, connection_attempts=1, socket_timeout=5, blocked_connection_timeout=30))


@contextlib.contextmanager
def channel(w, confirm=True):
    """A channel on a connection of its own, in confirm mode unless told: basic_publish returns once the broker
    has taken the message (for a persistent message in a durable queue, once it is safe)."""
    conn = connect(w)
    try:
        ch = conn.channel()
        if confirm:
            ch.confirm_delivery()
        yield ch
    finally:
        if conn.is_open:
            conn.close()


def passive_queue(w, name):
    """(message_count, consumer_count) of queue `name`, or None if it does not exist (404)."""
    with channel(w, confirm=False) as ch:
        try:
            ok = ch.queue_declare(name, passive=True).method
        except pika.exceptions.ChannelClosedByBroker as e:
            assert e.reply_code == 404, f"passive declare of queue {name!r}: {e.reply_code} {e.reply_text}"
            return None
        return ok.message_count, ok.consumer_count


def queue_exists(w, name):
    with channel(w, confirm=False) as ch:
        try:
            ch.queue_declare(name, passive=True)
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code == 405:
                return True  # another connection's exclusive queue
            assert e.reply_code == 404, f"passive declare of queue {name!r}: {e.reply_code} {e.reply_text}"
            return False
        return True


def message_count(w, name):
    got = passive_queue(w, name)
    assert got is not None, f"queue {name!r} does not exist"
    return got[0]


def exchange_exists(w, name):
    with channel(w, confirm=False) as ch:
        try:
            ch.exchange_declare(name, passive=True)
        except pika.exceptions.ChannelClosedByBroker as e:
            assert e.reply_code == 404, f"passive declare of exchange {name!r}: {e.reply_code} {e.reply_text}"
            return False
        return True


def refused(w, code, fn_name, *args, **kwargs):
    """Calls ch.<fn_name>(...) on a fresh channel and returns the reply text of the channel.close with `code`."""
    with channel(w, confirm=False) as ch:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
            getattr(ch, fn_name)(*args, **kwargs)
        assert e.value.reply_code == code, f"expected {code}, got {e.value.reply_code} {e.value.reply_text!r}"
        return e.value.reply_text


def get_all(w, name):
    """Every ready message of `name` by basic.get with ack: a list of (get-ok method, properties, body)."""
    out = []
    with channel(w, confirm=False) as ch:
        while True:
            method, props, body = ch.basic_get(name, auto_ack=True)
            if method is None:
                return out
            out.append((method, props, body))


def get_bodies(w, name):
    return [body for _, _, body in get_all(w, name)]


def publish(ch, exchange, routing_key, bodies, props=PERSISTENT, mandatory=True):
    for body in bodies:
        ch.basic_publish(exchange, routing_key, body, props, mandatory=mandatory)


def bodies(n, prefix="m"):
    return [f"{prefix}{i}".encode() for i in range(1, n + 1)]


# --- exchanges --------------------------------------------------------------------------------------------------


def test_durable_exchanges_survive_with_type_and_flags(warren):
    declared = [("d.direct", "direct", False), ("d.fanout", "fanout", False), ("d.topic", "topic", False),
                ("d.headers", "headers", False), ("d.internal", "topic", True)]
    with channel(warren) as ch:
        for name, kind, internal in declared:
            ch.exchange_declare(name, kind, durable=True, internal=internal)
    warren.restart()

    for name, kind, internal in declared:
        assert exchange_exists(warren, name), f"durable exchange {name!r} did not survive the restart"
        # An equivalent declaration is accepted; one that differs in type, durability or internal is refused,
        # which shows what was kept.
        with channel(warren, confirm=False) as ch:
            ch.exchange_declare(name, kind, durable=True, internal=internal)
        other = "fanout" if kind != "fanout" else "direct"
        assert "'type'" in refused(warren, 406, "exchange_declare", name, other, durable=True, internal=internal)
        assert "'durable'" in refused(warren, 406, "exchange_declare", name, kind, durable=False,
                                      internal=internal)
        assert "'internal'" in refused(warren, 406, "exchange_declare", name, kind, durable=True,
                                       internal=not internal)


def test_exchange_arguments_survive(warren):
    with channel(warren) as ch:
        ch.exchange_declare("ae", "fanout", durable=True)
        ch.queue_declare("unrouted", durable=True)
        ch.queue_bind("unrouted", "ae")
        ch.exchange_declare("with-ae", "direct", durable=True, arguments={"alternate-exchange": "ae"})
    warren.restart()

    assert exchange_exists(warren, "with-ae"), "durable exchange did not survive the restart"
    assert "'alternate-exchange'" in refused(warren, 406, "exchange_declare", "with-ae", "direct", durable=True,
                                             arguments={"alternate-exchange": "elsewhere"})
    with channel(warren) as ch:
        ch.basic_publish("with-ae", "no binding", b"to the alternate", PERSISTENT, mandatory=True)
    assert get_bodies(warren, "unrouted") == [b"to the alternate"]


def test_nondurable_exchange_is_gone(warren):
    with channel(warren) as ch:
        ch.exchange_declare("transient-x", "direct", durable=False)
    warren.restart()
    assert not exchange_exists(warren, "transient-x")


def test_deleted_durable_exchange_stays_deleted(warren):
    with channel(warren) as ch:
        ch.exchange_declare("short-lived", "topic", durable=True)
        ch.exchange_delete("short-lived")
    warren.restart()
    assert not exchange_exists(warren, "short-lived")


# --- queues -----------------------------------------------------------------------------------------------------

QUEUE_ARGS = {"x-max-length": 3, "x-message-ttl": 3_600_000, "x-dead-letter-exchange": "dlx",
              "x-dead-letter-routing-key": "dead", "x-single-active-consumer": True}


def test_durable_queue_survives_with_flags_and_arguments(warren):
    with channel(warren) as ch:
        ch.queue_declare("with-args", durable=True, arguments=QUEUE_ARGS)
        ch.queue_declare("auto-delete-durable", durable=True, auto_delete=True)
    warren.restart()

    assert queue_exists(warren, "with-args"), "durable queue did not survive the restart"
    with channel(warren, confirm=False) as ch:
        ok = ch.queue_declare("with-args", durable=True, arguments=QUEUE_ARGS).method
        assert (ok.message_count, ok.consumer_count) == (0, 0)
    # Arguments are compared one by one: a missing one or another value is refused, naming it.
    assert "'x-max-length'" in refused(warren, 406, "queue_declare", "with-args", durable=True,
                                       arguments={**QUEUE_ARGS, "x-max-length": 4})
    assert "'durable'" in refused(warren, 406, "queue_declare", "with-args", durable=False, arguments=QUEUE_ARGS)
    # And they are in force, not only remembered: x-max-length 3 drops the head.
    with channel(warren) as ch:
        publish(ch, "", "with-args", bodies(5))
    assert get_bodies(warren, "with-args") == [b"m3", b"m4", b"m5"]

    # RabbitMQ keeps a durable auto-delete queue that never had a consumer.
    assert queue_exists(warren, "auto-delete-durable")
    assert "'auto_delete'" in refused(warren, 406, "queue_declare", "auto-delete-durable", durable=True,
                                      auto_delete=False)


def test_nondurable_queue_is_gone_with_its_persistent_messages(warren):
    with channel(warren) as ch:
        ch.queue_declare("transient-q", durable=False)
        publish(ch, "", "transient-q", bodies(3))
    warren.restart()
    assert not queue_exists(warren, "transient-q")


def test_exclusive_queues_are_gone(warren):
    owner = connect(warren)
    ch = owner.channel()
    ch.confirm_delivery()
    ch.queue_declare("exclusive-durable", durable=True, exclusive=True)
    ch.queue_declare("exclusive-transient", durable=False, exclusive=True)
    publish(ch, "", "exclusive-durable", bodies(2))
    warren.restart()  # with the owner still connected: the broker closes it on the way down
    assert not queue_exists(warren, "exclusive-durable")
    assert not queue_exists(warren, "exclusive-transient")


def test_deleted_durable_queue_stays_deleted_and_a_new_one_starts_empty(warren):
    with channel(warren) as ch:
        ch.queue_declare("deleted", durable=True)
        publish(ch, "", "deleted", bodies(3))
        ch.queue_delete("deleted")
        # Deleted and declared again under the same name: the old messages must not come back in it.
        ch.queue_declare("reborn", durable=True)
        publish(ch, "", "reborn", bodies(3, "old"))
        ch.queue_delete("reborn")
        ch.queue_declare("reborn", durable=True)
        publish(ch, "", "reborn", [b"new"])
    warren.restart()
    assert not queue_exists(warren, "deleted")
    assert queue_exists(warren, "reborn"), "durable queue did not survive the restart"
    assert get_bodies(warren, "reborn") == [b"new"]


# --- bindings ---------------------------------------------------------------------------------------------------


def test_bindings_between_durable_objects_survive(warren):
    with channel(warren) as ch:
        ch.exchange_declare("b.direct", "direct", durable=True)
        ch.exchange_declare("b.topic", "topic", durable=True)
        ch.exchange_declare("b.headers", "headers", durable=True)
        ch.exchange_declare("b.fanout", "fanout", durable=True)
        ch.exchange_declare("b.source", "topic", durable=True)
        for q in ("q.direct", "q.topic", "q.headers", "q.fanout", "q.amq"):
            ch.queue_declare(q, durable=True)
        ch.queue_bind("q.direct", "b.direct", "k1")
        ch.queue_bind("q.topic", "b.topic", "a.*.c")
        ch.queue_bind("q.headers", "b.headers", arguments={"x-match": "all", "h": "v"})
        ch.queue_bind("q.fanout", "b.fanout")
        ch.queue_bind("q.amq", "amq.direct", "k-amq")
        ch.exchange_bind("b.fanout", "b.source", "e2e.#")  # destination, source, key
    warren.restart()

    for x in ("b.direct", "b.topic", "b.headers", "b.fanout", "b.source"):
        assert exchange_exists(warren, x), f"durable exchange {x!r} did not survive the restart"
    # mandatory + confirms: an unroutable publish raises UnroutableError, so a lost binding fails here.
    with channel(warren) as ch:
        ch.basic_publish("b.direct", "k1", b"direct", PERSISTENT, mandatory=True)
        ch.basic_publish("b.topic", "a.b.c", b"topic", PERSISTENT, mandatory=True)
        ch.basic_publish("b.headers", "", b"headers", pika.BasicProperties(delivery_mode=2, headers={"h": "v"}),
                         mandatory=True)
        ch.basic_publish("b.fanout", "anything", b"fanout", PERSISTENT, mandatory=True)
        ch.basic_publish("amq.direct", "k-amq", b"amq", PERSISTENT, mandatory=True)
        ch.basic_publish("b.source", "e2e.x", b"via e2e", PERSISTENT, mandatory=True)
    assert get_bodies(warren, "q.direct") == [b"direct"]
    assert get_bodies(warren, "q.topic") == [b"topic"]
    assert get_bodies(warren, "q.headers") == [b"headers"]
    assert get_bodies(warren, "q.fanout") == [b"fanout", b"via e2e"]
    assert get_bodies(warren, "q.amq") == [b"amq"]
    # Only the bindings that were declared: other keys stay unroutable.
    with channel(warren) as ch:
        with pytest.raises(pika.exceptions.UnroutableError):
            ch.basic_publish("b.direct", "k2", b"nowhere", PERSISTENT, mandatory=True)


def test_bindings_to_transient_objects_are_gone(warren):
    with channel(warren) as ch:
        ch.exchange_declare("durable-x", "direct", durable=True)
        ch.exchange_declare("transient-x", "fanout", durable=False)
        ch.queue_declare("durable-q", durable=True)
        ch.queue_declare("transient-q", durable=False)
        ch.queue_bind("transient-q", "durable-x", "to-transient")
        ch.queue_bind("durable-q", "durable-x", "to-durable")
        ch.queue_bind("durable-q", "transient-x")
    warren.restart()

    assert exchange_exists(warren, "durable-x"), "durable exchange did not survive the restart"
    assert not exchange_exists(warren, "transient-x")
    with channel(warren) as ch:
        with pytest.raises(pika.exceptions.UnroutableError):
            ch.basic_publish("durable-x", "to-transient", b"nowhere", PERSISTENT, mandatory=True)
        ch.basic_publish("durable-x", "to-durable", b"routed", PERSISTENT, mandatory=True)
    assert get_bodies(warren, "durable-q") == [b"routed"]


def test_unbound_binding_stays_unbound(warren):
    with channel(warren) as ch:
        ch.exchange_declare("ub", "direct", durable=True)
        ch.queue_declare("ub-q", durable=True)
        ch.queue_bind("ub-q", "ub", "kept")
        ch.queue_bind("ub-q", "ub", "removed")
        ch.queue_unbind("ub-q", "ub", "removed")
    warren.restart()

    assert exchange_exists(warren, "ub"), "durable exchange did not survive the restart"
    with channel(warren) as ch:
        ch.basic_publish("ub", "kept", b"kept", PERSISTENT, mandatory=True)
        with pytest.raises(pika.exceptions.UnroutableError):
            ch.basic_publish("ub", "removed", b"nowhere", PERSISTENT, mandatory=True)
    assert get_bodies(warren, "ub-q") == [b"kept"]


# --- messages ---------------------------------------------------------------------------------------------------


def test_persistent_messages_come_back_in_order_and_transient_ones_do_not(warren):
    expected = []
    with channel(warren) as ch:
        ch.queue_declare("mixed", durable=True)
        for i in range(1, 31):
            # persistent, delivery_mode 1, no delivery_mode at all: in turn
            kind = ("p", "t", "n")[i % 3]
            props = {"p": PERSISTENT, "t": TRANSIENT, "n": pika.BasicProperties()}[kind]
            body = f"{kind}{i}".encode()
            ch.basic_publish("", "mixed", body, props, mandatory=True)
            if kind == "p":
                expected.append(body)
    assert message_count(warren, "mixed") == 30
    warren.restart()

    assert queue_exists(warren, "mixed"), "durable queue did not survive the restart"
    assert message_count(warren, "mixed") == len(expected)
    assert get_bodies(warren, "mixed") == expected


def test_recovered_messages_keep_properties_exchange_routing_key_and_body(warren):
    headers = {"text": "hello", "number": 42, "negative": -7, "flag": True, "nested": {"inner": "x"},
               "list": [1, "two"]}
    props = pika.BasicProperties(
        content_type="application/octet-stream", content_encoding="identity", headers=headers, delivery_mode=2,
        priority=3, correlation_id="corr-1", reply_to="replies", message_id="id-1", timestamp=1_700_000_000,
        type="kind", user_id="guest", app_id="durability-test")
    binary = bytes(range(256)) * 4
    large = bytes((i * 31 + 7) % 251 for i in range(300_000))  # above frame_max: several body frames
    with channel(warren) as ch:
        ch.exchange_declare("props-x", "direct", durable=True)
        ch.queue_declare("props-q", durable=True)
        ch.queue_bind("props-q", "props-x", "the-key")
        ch.basic_publish("props-x", "the-key", binary, props, mandatory=True)
        ch.basic_publish("props-x", "the-key", b"", PERSISTENT, mandatory=True)
        ch.basic_publish("props-x", "the-key", large, PERSISTENT, mandatory=True)
    warren.restart()

    assert queue_exists(warren, "props-q"), "durable queue did not survive the restart"
    got = get_all(warren, "props-q")
    assert [len(b) for _, _, b in got] == [len(binary), 0, len(large)]
    (m1, p1, b1), (m2, _, b2), (m3, _, b3) = got
    assert b1 == binary and b2 == b"" and b3 == large
    for m in (m1, m2, m3):
        assert (m.exchange, m.routing_key) == ("props-x", "the-key")
    for attr in ("content_type", "content_encoding", "headers", "delivery_mode", "priority", "correlation_id",
                 "reply_to", "message_id", "timestamp", "type", "user_id", "app_id"):
        assert getattr(p1, attr) == getattr(props, attr), f"property {attr} changed across the restart"


def test_recovered_messages_are_marked_redelivered(warren):
    with channel(warren) as ch:
        ch.queue_declare("redelivered", durable=True)
        publish(ch, "", "redelivered", bodies(3))
    warren.restart()

    assert queue_exists(warren, "redelivered"), "durable queue did not survive the restart"
    with channel(warren) as ch:
        ch.basic_publish("", "redelivered", b"after", PERSISTENT, mandatory=True)
    got = get_all(warren, "redelivered")
    assert [b for _, _, b in got] == [b"m1", b"m2", b"m3", b"after"]
    # Never delivered before the restart, yet marked: our rule, stricter than RabbitMQ's (see the module docstring).
    assert [m.redelivered for m, _, _ in got] == [True, True, True, False]


def test_acked_and_rejected_messages_stay_gone_and_unacked_ones_come_back(warren):
    with channel(warren) as ch:
        ch.queue_declare("acks", durable=True)
        publish(ch, "", "acks", bodies(10))

    conn = connect(warren)
    ch = conn.channel()
    tags = {}
    for i in range(1, 7):
        method, _, body = ch.basic_get("acks", auto_ack=False)
        assert body == f"m{i}".encode()
        tags[i] = method.delivery_tag
    ch.basic_ack(tags[2])
    ch.basic_ack(tags[4], multiple=True)  # m1, m3, m4
    ch.basic_reject(tags[5], requeue=False)  # dropped, as an ack (no dead-letter exchange)
    # m6 stays unacked. A synchronous round trip on the same channel: the acks are processed before it.
    assert ch.queue_declare("acks", passive=True).method.message_count == 4
    warren.restart()  # m6 still unacked, its connection open: the broker closes it on the way down

    assert queue_exists(warren, "acks"), "durable queue did not survive the restart"
    assert message_count(warren, "acks") == 5
    # Back through a consumer this time, in the original order.
    seen = []
    conn = connect(warren)
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=10)
        ch.basic_consume("acks", lambda c, m, p, b: seen.append((m, b)), auto_ack=False)
        deadline = 10.0
        while len(seen) < 5 and deadline > 0:
            conn.process_data_events(time_limit=0.05)
            deadline -= 0.05
        conn.process_data_events(time_limit=0.2)  # and nothing more
        assert [b for _, b in seen] == [b"m6", b"m7", b"m8", b"m9", b"m10"]
        assert seen[0][0].redelivered, "m6 was delivered before the restart but is not marked redelivered"
        ch.basic_ack(seen[-1][0].delivery_tag, multiple=True)
        assert ch.queue_declare("acks", passive=True).method.message_count == 0
    finally:
        conn.close()


def test_fanned_out_message_is_kept_per_queue(warren):
    with channel(warren) as ch:
        ch.exchange_declare("fan", "fanout", durable=True)
        for q in ("fan-a", "fan-b"):
            ch.queue_declare(q, durable=True)
            ch.queue_bind(q, "fan")
        ch.basic_publish("fan", "", b"both", PERSISTENT, mandatory=True)
    warren.restart()

    assert queue_exists(warren, "fan-a") and queue_exists(warren, "fan-b"), "durable queues did not survive"
    assert (message_count(warren, "fan-a"), message_count(warren, "fan-b")) == (1, 1)
    with channel(warren, confirm=False) as ch:
        method, _, body = ch.basic_get("fan-a", auto_ack=False)
        assert body == b"both"
        ch.basic_ack(method.delivery_tag)
        assert ch.queue_declare("fan-a", passive=True).method.message_count == 0  # ack processed
    warren.restart()

    assert message_count(warren, "fan-a") == 0, "the copy acked in fan-a came back"
    assert get_bodies(warren, "fan-b") == [b"both"]


def test_purged_queue_stays_empty(warren):
    with channel(warren) as ch:
        ch.queue_declare("purged", durable=True)
        publish(ch, "", "purged", bodies(5))
        assert ch.queue_purge("purged").method.message_count == 5
        ch.basic_publish("", "purged", b"after the purge", PERSISTENT, mandatory=True)
    warren.restart()

    assert queue_exists(warren, "purged"), "durable queue did not survive the restart"
    assert get_bodies(warren, "purged") == [b"after the purge"]
