"""TTL, dead-lettering, queue expiry, priorities, single active consumer, consumer priorities,
transactions, and the recent-history and consistent-hash exchanges, driven with pika."""

import collections
import time

import pika
import pytest


@pytest.fixture
def conn(warren):
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", warren.amqp_port))
    yield c
    if c.is_open:
        c.close()


def count(ch, q):
    return ch.queue_declare(q, passive=True).method.message_count


def wait_for(pred, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_queue_message_ttl_expires_messages(conn):
    ch = conn.channel()
    ch.queue_declare("ttl", arguments={"x-message-ttl": 100})
    ch.basic_publish("", "ttl", b"soon gone")
    assert wait_for(lambda: count(ch, "ttl") == 0)


def test_per_message_expiration_is_honoured(conn):
    ch = conn.channel()
    ch.queue_declare("exp")
    ch.basic_publish("", "exp", b"short", pika.BasicProperties(expiration="100"))
    ch.basic_publish("", "exp", b"long", pika.BasicProperties(expiration="60000"))
    assert wait_for(lambda: count(ch, "exp") == 1)
    assert ch.basic_get("exp", auto_ack=True)[2] == b"long"


def test_invalid_expiration_is_refused_with_406(conn):
    ch = conn.channel()
    ch.queue_declare("bad-exp")
    ch.basic_publish("", "bad-exp", b"x", pika.BasicProperties(expiration="soon"))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("bad-exp", passive=True)
    assert e.value.reply_code == 406


def dlx_pair(ch, name, **args):
    ch.queue_declare(name + "-dead")
    arguments = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": name + "-dead"}
    arguments.update(args)
    ch.queue_declare(name, arguments=arguments)


def test_rejected_message_is_dead_lettered_with_x_death(conn):
    ch = conn.channel()
    dlx_pair(ch, "rej")
    ch.basic_publish("", "rej", b"bad")
    method, _, _ = ch.basic_get("rej")
    ch.basic_reject(method.delivery_tag, requeue=False)
    assert wait_for(lambda: count(ch, "rej-dead") == 1)
    _, props, body = ch.basic_get("rej-dead", auto_ack=True)
    assert body == b"bad"
    death = props.headers["x-death"][0]
    assert death["reason"] == "rejected"
    assert death["queue"] == "rej"
    assert death["count"] == 1
    assert death["exchange"] == ""
    assert death["routing-keys"] == ["rej"]
    assert props.headers["x-first-death-reason"] == "rejected"
    assert props.headers["x-first-death-queue"] == "rej"


def test_expired_message_is_dead_lettered(conn):
    ch = conn.channel()
    dlx_pair(ch, "old", **{"x-message-ttl": 50})
    ch.basic_publish("", "old", b"late", pika.BasicProperties(expiration="10000"))
    assert wait_for(lambda: count(ch, "old-dead") == 1)
    _, props, body = ch.basic_get("old-dead", auto_ack=True)
    assert body == b"late"
    death = props.headers["x-death"][0]
    assert death["reason"] == "expired"
    assert death["original-expiration"] == "10000"
    assert props.expiration is None


def test_overflowing_message_is_dead_lettered_as_maxlen(conn):
    ch = conn.channel()
    dlx_pair(ch, "full", **{"x-max-length": 1})
    ch.basic_publish("", "full", b"first")
    ch.basic_publish("", "full", b"second")
    assert wait_for(lambda: count(ch, "full-dead") == 1)
    assert ch.basic_get("full", auto_ack=True)[2] == b"second"
    _, props, body = ch.basic_get("full-dead", auto_ack=True)
    assert body == b"first"
    assert props.headers["x-death"][0]["reason"] == "maxlen"


def test_reject_publish_dlx_nacks_and_dead_letters(conn):
    ch = conn.channel()
    dlx_pair(ch, "rp", **{"x-max-length": 1, "x-overflow": "reject-publish-dlx"})
    ch.confirm_delivery()
    ch.basic_publish("", "rp", b"kept")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", "rp", b"refused")
    assert count(ch, "rp") == 1
    assert ch.basic_get("rp-dead", auto_ack=True)[2] == b"refused"


def test_dead_letter_cycle_is_dropped(conn):
    # A queue that dead-letters expired messages to itself: RabbitMQ drops them on the cycle.
    ch = conn.channel()
    ch.queue_declare("loop", arguments={"x-message-ttl": 50, "x-dead-letter-exchange": "",
                                        "x-dead-letter-routing-key": "loop"})
    ch.basic_publish("", "loop", b"round and round")
    assert wait_for(lambda: count(ch, "loop") == 0)
    time.sleep(0.3)
    assert count(ch, "loop") == 0


def test_unused_queue_expires(conn):
    ch = conn.channel()
    ch.queue_declare("brief", arguments={"x-expires": 200})
    time.sleep(0.6)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("brief", passive=True)
    assert e.value.reply_code == 404


def test_priority_queue_delivers_highest_first(conn):
    ch = conn.channel()
    ch.queue_declare("prio", arguments={"x-max-priority": 10})
    for p in [1, 5, 9, 0, 5, 20]:
        ch.basic_publish("", "prio", str(p).encode(), pika.BasicProperties(priority=p))
    got = [ch.basic_get("prio", auto_ack=True)[2] for _ in range(6)]
    # 20 is capped at the queue's maximum (10); equal priorities keep their order.
    assert got == [b"20", b"9", b"5", b"5", b"1", b"0"]


def test_single_active_consumer(conn):
    ch = conn.channel()
    ch.queue_declare("sac", arguments={"x-single-active-consumer": True})
    seen = collections.Counter()
    tags = [ch.basic_consume("sac", lambda c, m, p, b, i=i: (seen.update([i]),
                                                             c.basic_ack(m.delivery_tag)))
            for i in range(2)]
    for i in range(10):
        ch.basic_publish("", "sac", b"x")
    assert wait_for(lambda: (conn.process_data_events(0.05), sum(seen.values()))[1] == 10)
    assert seen == {0: 10}
    ch.basic_cancel(tags[0])
    for i in range(5):
        ch.basic_publish("", "sac", b"y")
    assert wait_for(lambda: (conn.process_data_events(0.05), seen[1])[1] == 5)


def test_consumer_priority_prefers_the_higher(conn):
    ch = conn.channel()
    ch.queue_declare("cprio")
    seen = collections.Counter()
    ch.basic_consume("cprio", lambda c, m, p, b: (seen.update(["low"]), c.basic_ack(m.delivery_tag)))
    ch.basic_consume("cprio", lambda c, m, p, b: (seen.update(["high"]), c.basic_ack(m.delivery_tag)),
                     arguments={"x-priority": 10})
    for i in range(20):
        ch.basic_publish("", "cprio", b"x")
    assert wait_for(lambda: (conn.process_data_events(0.05), sum(seen.values()))[1] == 20)
    assert seen["high"] == 20


def test_transaction_commit_and_rollback(conn):
    ch = conn.channel()
    ch.queue_declare("txq")
    ch.tx_select()
    ch.basic_publish("", "txq", b"rolled back")
    ch.tx_rollback()
    assert count(ch, "txq") == 0
    ch.basic_publish("", "txq", b"committed")
    assert count(ch, "txq") == 0  # not before the commit
    ch.tx_commit()
    assert count(ch, "txq") == 1
    method, _, body = ch.basic_get("txq")
    assert body == b"committed"
    ch.basic_ack(method.delivery_tag)
    ch.tx_rollback()  # the ack is undone
    ch.basic_recover(requeue=True)
    assert wait_for(lambda: count(ch, "txq") == 1)


def test_commit_without_select_is_406(conn):
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.tx_commit()
    assert e.value.reply_code == 406


def test_recent_history_exchange_replays_the_last_messages_to_a_new_queue(conn):
    ch = conn.channel()
    ch.exchange_declare("chat", "x-recent-history")
    for i in range(25):
        ch.basic_publish("chat", "", f"m{i}".encode())
    ch.basic_publish("chat", "", b"secret", pika.BasicProperties(headers={"x-recent-history-no-store": True}))
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "chat")
    assert wait_for(lambda: count(ch, q) == 20)
    got = [ch.basic_get(q, auto_ack=True)[2] for _ in range(20)]
    assert got == [f"m{i}".encode() for i in range(5, 25)]
    ch.basic_publish("chat", "", b"live")
    assert wait_for(lambda: count(ch, q) == 1)


def test_recent_history_length_argument(conn):
    ch = conn.channel()
    ch.exchange_declare("short", "x-recent-history", arguments={"x-recent-history-length": 3})
    for i in range(5):
        ch.basic_publish("short", "", str(i).encode())
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "short")
    assert wait_for(lambda: count(ch, q) == 3)


def test_consistent_hash_spreads_by_weight_and_is_stable(conn):
    ch = conn.channel()
    ch.exchange_declare("hash", "x-consistent-hash")
    for name, weight in [("h1", "1"), ("h2", "1"), ("h3", "2")]:
        ch.queue_declare(name)
        ch.queue_bind(name, "hash", weight)
    n = 4000
    for i in range(n):
        ch.basic_publish("hash", f"key-{i}", b"")
    assert wait_for(lambda: sum(count(ch, q) for q in ["h1", "h2", "h3"]) == n)
    shares = {q: count(ch, q) / n for q in ["h1", "h2", "h3"]}
    assert abs(shares["h1"] - 0.25) < 0.05, shares
    assert abs(shares["h2"] - 0.25) < 0.05, shares
    assert abs(shares["h3"] - 0.50) < 0.05, shares
    for q in ["h1", "h2", "h3"]:
        ch.queue_purge(q)
    for _ in range(10):
        ch.basic_publish("hash", "same-key", b"")
    assert wait_for(lambda: sum(count(ch, q) for q in ["h1", "h2", "h3"]) == 10)
    assert sorted(count(ch, q) for q in ["h1", "h2", "h3"]) == [0, 0, 10]


def test_consistent_hash_refuses_a_non_numeric_weight(conn):
    ch = conn.channel()
    ch.exchange_declare("hash2", "x-consistent-hash")
    ch.queue_declare("hq")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_bind("hq", "hash2", "heavy")
    assert e.value.reply_code == 406


def test_other_queue_types_are_refused(conn):
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("qq", durable=True, arguments={"x-queue-type": "quorum"})
    assert e.value.reply_code == 406


def test_consumer_that_stops_reading_leaves_messages_in_the_queue(warren):
    # A no-ack consumer whose client stops reading must not make the broker push the whole queue
    # into its connection: deliveries in transit are bounded, the rest stays ready in the queue,
    # and once the backlog passes its threshold the publisher is held back (its socket is not
    # read) when it runs more than vhost::flow_slack messages ahead of the deliveries.
    import struct
    import threading
    from support.amqp_raw import RawClient, encode_bits, shortstr, encode_table

    params = pika.ConnectionParameters("127.0.0.1", warren.amqp_port)
    stalled = RawClient(warren.amqp_port)
    stalled.handshake()
    stalled.open_channel(1)
    observer = pika.BlockingConnection(params)
    obs = observer.channel()
    obs.queue_declare("stall")
    consume_args = struct.pack(">H", 0) + shortstr("stall") + shortstr("t") + \
        encode_bits(False, True, False, False) + encode_table({})
    stalled.send_method(1, (60, 20), consume_args)  # basic.consume no_ack=true, then never read
    total = 60000
    published = [0]

    def publish():
        c = pika.BlockingConnection(params)
        ch = c.channel()
        for _ in range(total):
            ch.basic_publish("", "stall", b"x" * 1024)
            published[0] += 1

    threading.Thread(target=publish, daemon=True).start()
    assert wait_for(lambda: count(obs, "stall") > 3000, timeout=10)
    time.sleep(1.0)
    ready = count(obs, "stall")
    # Held back near the backlog threshold (4000 + flow_slack), far from all 60 000 published.
    assert ready < 20000, ready
    assert published[0] < total, "the publisher was never held back"
    observer.close()
    stalled.close()


def test_vhosts_are_isolated(warren_factory):
    w = warren_factory("--vhosts", "dev,staging")
    def connect(vhost):
        return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", w.amqp_port,
                                                                 virtual_host=vhost))
    dev, staging = connect("dev"), connect("staging")
    d, s = dev.channel(), staging.channel()
    d.queue_declare("only-in-dev")
    d.basic_publish("", "only-in-dev", b"dev message")
    d.basic_publish("amq.fanout", "", b"predeclared in every vhost")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        s.queue_declare("only-in-dev", passive=True)
    assert e.value.reply_code == 404
    s = staging.channel()
    s.queue_declare("only-in-dev")  # the same name is a different queue here
    assert s.queue_declare("only-in-dev", passive=True).method.message_count == 0
    assert d.queue_declare("only-in-dev", passive=True).method.message_count == 1
    dev.close()
    staging.close()
