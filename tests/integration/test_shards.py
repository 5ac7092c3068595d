"""A vhost's queues spread over the workers (--queue-placement hash, the default), driven with pika as a client
would: one channel using queues on both workers sees one sequence of delivery tags, acks (single and multiple)
settle on the right worker, confirms wait for every worker, a global prefetch holds over the workers, a get after
a publish on the same channel finds it, dead letters and exclusive queues cross workers, and it all survives a
restart. The management API says where each queue runs ("warren_worker")."""

import json
import time
import urllib.request

import pika
import pytest


def api(warren, path):
    req = urllib.request.Request(f"http://127.0.0.1:{warren.http_port}/api/{path}")
    req.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def connect(warren):
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", warren.amqp_port))


def workers_of(warren, names):
    return {q["name"]: q["warren_worker"] for q in api(warren, "queues/%2f") if q["name"] in names}


def spread_names(warren, ch, count=8, prefix="s"):
    """Declares queues until both workers hold some; returns (names, {name: worker})."""
    names = []
    for i in range(64):
        n = f"{prefix}{i}"
        ch.queue_declare(n, durable=True)
        names.append(n)
        if len(names) >= count:
            w = workers_of(warren, names)
            if len(set(w.values())) == 2:
                return names, w
    pytest.fail("64 queues all landed on one worker")


def test_queues_are_spread_and_one_channel_sees_one_tag_sequence(warren):
    conn = connect(warren)
    ch = conn.channel()
    ch.confirm_delivery()
    names, where = spread_names(warren, ch)
    assert set(where.values()) == {0, 1}
    for i in range(50):
        for n in names:
            ch.basic_publish("", n, f"{n}:{i}".encode(), pika.BasicProperties(delivery_mode=2))
    for n in names:
        assert ch.queue_declare(n, passive=True).method.message_count == 50
    listed = {q["name"]: q["messages"] for q in api(warren, "queues/%2f") if q["name"] in names}
    assert listed == {n: 50 for n in names}

    c2 = conn.channel()
    c2.basic_qos(prefetch_count=100)
    tags, bodies = [], []

    def on_message(c, m, props, body):
        tags.append(m.delivery_tag)
        bodies.append(body)
        if len(tags) % 7 == 0:
            c.basic_ack(m.delivery_tag, multiple=True)

    for n in names:
        c2.basic_consume(n, on_message)
    deadline = time.time() + 20
    while len(tags) < 50 * len(names) and time.time() < deadline:
        conn.process_data_events(0.05)
    assert tags == list(range(1, 50 * len(names) + 1)), "tags are one sequence from 1 with no gap"
    assert sorted(bodies) == sorted(f"{n}:{i}".encode() for n in names for i in range(50))
    # Each queue's messages in publish order.
    for n in names:
        mine = [int(b.split(b":")[1]) for b in bodies if b.split(b":")[0] == n.encode()]
        assert mine == list(range(50))
    c2.basic_ack(tags[-1], multiple=True)
    conn.process_data_events(0.3)
    for n in names:
        r = ch.queue_declare(n, passive=True).method
        assert (r.message_count, r.consumer_count) == (0, 1)
    q = api(warren, f"queues/%2f/{names[0]}")
    assert q["messages_unacknowledged"] == 0 and q["consumers"] == 1
    conn.close()


def test_acks_nacks_and_unknown_tags_across_workers(warren):
    conn = connect(warren)
    ch = conn.channel()
    names, where = spread_names(warren, ch, prefix="a")
    a = next(n for n in names if where[n] == 0)
    b = next(n for n in names if where[n] == 1)
    for n in (a, b, a, b):
        ch.basic_publish("", n, n.encode())
    got = [ch.basic_get(n) for n in (a, b, a, b)]
    tags = [m.delivery_tag for m, _, _ in got]
    assert tags == [1, 2, 3, 4]
    ch.basic_nack(2, requeue=True)  # b's first goes back
    ch.basic_ack(3)
    ch.basic_ack(4, multiple=True)  # 1 and 4 (2 was nacked, 3 acked)
    conn.process_data_events(0.3)
    assert ch.queue_declare(a, passive=True).method.message_count == 0
    assert ch.queue_declare(b, passive=True).method.message_count == 1
    m, _, body = ch.basic_get(b, auto_ack=False)
    assert m.redelivered and body == b.encode()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.basic_ack(m.delivery_tag + 10)
        ch.basic_get(a)  # waits for the channel's fate
    assert e.value.reply_code == 406 and "unknown delivery tag" in e.value.reply_text
    conn.close()
    # The unacknowledged message went back to its queue when the channel closed.
    with connect(warren) as conn2:
        assert conn2.channel().queue_declare(b, passive=True).method.message_count == 1


def test_confirms_and_restart_keep_every_worker_s_messages(warren):
    conn = connect(warren)
    ch = conn.channel()
    ch.confirm_delivery()
    names, _ = spread_names(warren, ch, prefix="d")
    ch.exchange_declare("fan", "fanout", durable=True)
    for n in names:
        ch.queue_bind(n, "fan")
    for i in range(30):
        ch.basic_publish("fan", "", str(i).encode(), pika.BasicProperties(delivery_mode=2))  # confirmed
    conn.close()
    warren.restart()
    with connect(warren) as conn:
        ch = conn.channel()
        for n in names:
            assert ch.queue_declare(n, passive=True).method.message_count == 30
        got = []
        while (r := ch.basic_get(names[-1], auto_ack=True))[0]:
            got.append(int(r[2]))
        assert got == list(range(30))
    assert set(workers_of(warren, names).values()) == {0, 1}, "a restart puts queues back on their workers"


def test_global_prefetch_holds_over_workers(warren):
    conn = connect(warren)
    ch = conn.channel()
    names, where = spread_names(warren, ch, prefix="g")
    a = next(n for n in names if where[n] == 0)
    b = next(n for n in names if where[n] == 1)
    for n in (a, b):
        for i in range(5):
            ch.basic_publish("", n, b"x")
    c2 = conn.channel()
    c2.basic_qos(prefetch_count=4, global_qos=True)
    got = []
    c2.basic_consume(a, lambda c, m, p, body: got.append(m.delivery_tag))
    c2.basic_consume(b, lambda c, m, p, body: got.append(m.delivery_tag))
    deadline = time.time() + 1.0
    while time.time() < deadline:
        conn.process_data_events(0.05)
    assert len(got) == 4
    c2.basic_ack(got[0])
    deadline = time.time() + 1.0
    while time.time() < deadline:
        conn.process_data_events(0.05)
    assert len(got) == 5
    conn.close()


def test_a_get_after_a_publish_on_the_same_channel_finds_it(warren):
    with connect(warren) as conn:
        ch = conn.channel()
        names, where = spread_names(warren, ch, prefix="o")
        away = [n for n in names if where[n] != 0]
        ch.exchange_declare("direct-o", "direct")
        for n in away:
            ch.queue_bind(n, "direct-o", n)
        for round_ in range(20):
            for n in away:
                # Through the home (a named exchange) and straight to the queue's worker, alternately.
                ch.basic_publish("direct-o" if round_ % 2 else "", n, str(round_).encode())
                m = ch.basic_get(n, auto_ack=True)
                assert m[0] is not None and m[2] == str(round_).encode()


def test_dead_letters_and_exclusive_queues_cross_workers(warren):
    conn = connect(warren)
    ch = conn.channel()
    names, where = spread_names(warren, ch, count=12, prefix="x")
    on0 = [n for n in names if where[n] == 0]
    on1 = [n for n in names if where[n] == 1]
    if len(on0) < 2 or len(on1) < 2:
        pytest.skip("fewer than two queues on a worker")
    # An expiring message dead-letters to a queue on the other worker, both ways.
    pairs = ((on0[0], on1[1]), (on1[0], on0[1]))
    for src, dst in pairs:
        ch.queue_delete(src)
        ch.queue_declare(src, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dst,
                                         "x-message-ttl": 50})
        ch.basic_publish("", src, f"from {src}".encode())
    time.sleep(0.5)
    for src, dst in pairs:
        m = ch.basic_get(dst, auto_ack=True)
        assert m[2] == f"from {src}".encode()
        assert m[1].headers["x-death"][0]["queue"] == src
    # Exclusive queues of a connection on both workers go with it.
    own = connect(warren)
    och = own.channel()
    mine = []
    for i in range(16):
        och.queue_declare(f"excl{i}", exclusive=True)
        mine.append(f"excl{i}")
    assert set(workers_of(warren, mine).values()) == {0, 1}
    own.close()
    deadline = time.time() + 5
    while workers_of(warren, mine) and time.time() < deadline:
        time.sleep(0.05)
    assert workers_of(warren, mine) == {}
    assert not [q for q in api(warren, "queues/%2f") if q["name"].startswith("excl")]
    conn.close()


def test_home_placement_keeps_every_queue_on_the_vhost_s_worker(warren_factory):
    w = warren_factory("--queue-placement", "home")
    with connect(w) as conn:
        ch = conn.channel()
        names = [f"h{i}" for i in range(16)]
        for n in names:
            ch.queue_declare(n)
    assert set(workers_of(w, names).values()) == {0}


def test_recover_redelivers_on_every_worker_and_the_new_tags_ack(warren):
    # One queue on each worker, so that one of them runs on the channel's own worker (redelivered inline).
    conn = connect(warren)
    ch = conn.channel()
    names, where = spread_names(warren, ch, prefix="r")
    pair = [next(n for n in names if where[n] == w) for w in (0, 1)]
    for n in pair:
        for i in range(3):
            ch.basic_publish("", n, f"{n}:{i}".encode())
    c2 = conn.channel()
    got = []
    for n in pair:
        c2.basic_consume(n, lambda c, m, p, body: got.append((m.delivery_tag, m.redelivered, body)))
    deadline = time.time() + 5
    while len(got) < 6 and time.time() < deadline:
        conn.process_data_events(0.05)
    c2.basic_recover(requeue=True)
    deadline = time.time() + 5
    while len(got) < 12 and time.time() < deadline:
        conn.process_data_events(0.05)
    assert len(got) == 12
    assert [t for t, _, _ in got] == list(range(1, 13))
    assert all(r for _, r, _ in got[6:])
    c2.basic_ack(got[-1][0], multiple=True)
    conn.process_data_events(0.3)
    c2.close()
    for n in pair:
        assert ch.queue_declare(n, passive=True).method.message_count == 0
    conn.close()
