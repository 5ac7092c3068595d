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


# --- routing on the publisher's worker (each worker's copy of the routing table) ---

def worker_of_connection(warren, conn):
    port = conn._impl._transport._sock.getsockname()[1]
    deadline = time.time() + 5
    while time.time() < deadline:
        for c in api(warren, "connections"):
            if c["peer_port"] == port:
                return c["warren_worker"]
        time.sleep(0.05)
    pytest.fail("connection not listed")


def one_connection_per_worker(warren):
    """Opens connections until one runs on each worker (the kernel spreads them); returns [on 0, on 1]."""
    found, spare = {}, []
    for _ in range(40):
        conn = connect(warren)
        w = worker_of_connection(warren, conn)
        if w in found:
            spare.append(conn)
        else:
            found[w] = conn
        if len(found) == 2:
            break
    for c in spare:
        c.close()
    if len(found) < 2:
        pytest.fail("40 connections all landed on one worker")
    return [found[0], found[1]]


def drain(ch, queue):
    bodies = []
    while True:
        m = ch.basic_get(queue, auto_ack=True)
        if m[0] is None:
            return bodies
        bodies.append(m[2])


def test_a_binding_is_seen_by_the_next_publish_on_every_worker(warren):
    conns = one_connection_per_worker(warren)
    setup = conns[0].channel()
    names, where = spread_names(warren, setup, prefix="b")
    pair = [next(n for n in names if where[n] == w) for w in (0, 1)]
    setup.exchange_declare("bx", "direct")
    chans = [c.channel() for c in conns]
    for ch in chans:
        ch.confirm_delivery()
    sent = {n: 0 for n in pair}
    # Bound on one worker's connection, published on the same channel or the other worker's
    # right after bind-ok: mandatory with confirms, so a miss is an UnroutableError.
    for round_ in range(10):
        for binder in range(2):
            for publisher in range(2):
                for n in pair:
                    key = f"{n}.{round_}.{binder}.{publisher}"
                    chans[binder].queue_bind(n, "bx", key)
                    chans[publisher].basic_publish("bx", key, key.encode(), mandatory=True)
                    sent[n] += 1
                    chans[binder].queue_unbind(n, "bx", key)
                    # Unbound: the next publish, from either worker, finds no route.
                    with pytest.raises(pika.exceptions.UnroutableError):
                        chans[publisher].basic_publish("bx", key, b"after unbind", mandatory=True)
    for n in pair:
        assert len(drain(setup, n)) == sent[n]
    for c in conns:
        c.close()


def test_exchange_to_exchange_alternate_exchange_and_returns_from_each_worker(warren):
    conns = one_connection_per_worker(warren)
    setup = conns[0].channel()
    names, where = spread_names(warren, setup, prefix="e")
    pair = [next(n for n in names if where[n] == w) for w in (0, 1)]
    setup.exchange_declare("e-ae", "fanout")
    setup.exchange_declare("e-inner", "direct", arguments={"alternate-exchange": "e-ae"})
    setup.exchange_declare("e-outer", "topic")
    setup.exchange_declare("e-empty", "direct")
    setup.queue_bind(pair[0], "e-ae")
    setup.queue_bind(pair[1], "e-inner", "hit")
    setup.exchange_bind("e-inner", "e-outer", "#")
    for i, conn in enumerate(conns):
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("e-outer", "hit", f"hit{i}".encode(), mandatory=True)
        ch.basic_publish("e-outer", "miss", f"miss{i}".encode(), mandatory=True)
        with pytest.raises(pika.exceptions.UnroutableError) as e:
            ch.basic_publish("e-empty", "nobody", f"ret{i}".encode(), mandatory=True)
        assert e.value.messages[0].body == f"ret{i}".encode()
        assert e.value.messages[0].method.reply_code == 312
    assert drain(setup, pair[1]) == [b"hit0", b"hit1"]
    assert drain(setup, pair[0]) == [b"miss0", b"miss1"]
    # Counted by the exchange whichever worker routed them.
    x = api(warren, "exchanges/%2f/e-outer")
    assert x["message_stats"]["publish_in"] == 4
    for c in conns:
        c.close()


def test_one_channel_keeps_its_order_over_stateful_and_plain_exchanges(warren):
    conns = one_connection_per_worker(warren)
    setup = conns[0].channel()
    names, where = spread_names(warren, setup, prefix="m")
    pair = [next(n for n in names if where[n] == w) for w in (0, 1)]
    setup.exchange_declare("m-hist", "x-recent-history")
    setup.exchange_declare("m-plain", "direct")
    for n in pair:
        setup.queue_bind(n, "m-hist")
        setup.queue_bind(n, "m-plain", "k")
    for conn in conns:
        ch = conn.channel()
        for i in range(300):
            # Stateful (through the home), plain (routed here), the default exchange, in turns.
            ex = ("m-hist", "m-plain", "")[i % 3]
            if ex:
                ch.basic_publish(ex, "k", str(i).encode())
            else:
                for n in pair:
                    ch.basic_publish("", n, str(i).encode())
        ch.close()
        for n in pair:
            deadline = time.time() + 5
            while setup.queue_declare(n, passive=True).method.message_count < 300 and time.time() < deadline:
                time.sleep(0.02)
            assert [int(b) for b in drain(setup, n)] == list(range(300))
    for c in conns:
        c.close()


def spread_under_fanout(warren, prefix):
    """One connection per worker, queues `<prefix><i>` spread over the workers (spread_names), and a fanout exchange
    `<prefix>-x` bound to each; returns the connections, a channel on the first, and the queues' names."""
    conns = one_connection_per_worker(warren)
    setup = conns[0].channel()
    names, _ = spread_names(warren, setup, prefix=prefix)
    setup.exchange_declare(f"{prefix}-x", "fanout")
    for n in names:
        setup.queue_bind(n, f"{prefix}-x")
    return conns, setup, names


def test_an_exchange_deleted_while_a_worker_publishes_to_it(warren):
    conns, setup, names = spread_under_fanout(warren, "d")
    pub = conns[1].channel()
    pub.confirm_delivery()  # each publish is routed before the next one is sent
    for i in range(200):
        pub.basic_publish("d-x", "", b"before")
    setup.exchange_delete("d-x")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        deadline = time.time() + 10
        while time.time() < deadline:
            pub.basic_publish("d-x", "", b"after")
            conns[1].process_data_events(0.01)
    assert e.value.reply_code == 404
    # The connection and the queues carry on; what was routed before is there.
    ch = conns[1].channel()
    assert sum(len(drain(ch, n)) for n in names) == 200 * len(names)
    for c in conns:
        c.close()


def test_confirms_and_flow_of_publishes_routed_on_each_worker(warren):
    conns, setup, names = spread_under_fanout(warren, "c")
    for conn in conns:
        confirmed = conn.channel()
        confirmed.confirm_delivery()
        for i in range(100):
            confirmed.basic_publish("c-x", "", b"confirmed", pika.BasicProperties(delivery_mode=2))
        # Without confirms, far past the hand-overs' bound (256 outstanding): held back, not lost.
        flood = conn.channel()
        for i in range(3000):
            flood.basic_publish("c-x", "", b"flood")
        flood.close()
    for n in names:
        deadline = time.time() + 10
        while setup.queue_declare(n, passive=True).method.message_count < 6200 and time.time() < deadline:
            time.sleep(0.05)
        assert setup.queue_declare(n, passive=True).method.message_count == 6200
    for c in conns:
        c.close()
