"""Consumers, basic.get and bindings on node B for queues that live on node A (docs/cluster.md, "Consumers across
nodes"): prefetch, acks, nacks, rejects, recover, redelivery when the client's channel closes, cancel, no-ack and
exclusive consumers, a multiple ack spanning a local and a remote queue; basic.get; A going down under a consumer.
One etcd and two real Warren nodes for the module (a: one worker, b: two), driven with pika and amqp-tools."""

import subprocess
import time

import pika
import pytest

from support.etcd_process import EtcdProcess
from support.warren_process import WarrenProcess
from test_cluster import TTL, api, put_json, running, wait_for


@pytest.fixture(scope="module")
def cluster():
    e = EtcdProcess().start()
    procs = []

    def node(name, workers):
        p = WarrenProcess(["--node-name", name, "--cluster-name", "c1", "--etcd-endpoints", e.endpoint,
                           "--etcd-lease-ttl", str(TTL)], workers=workers)
        procs.append(p)
        return p.start()

    a, b = node("a", 1), node("b", 2)
    wait_for(lambda: running(b) == {"a": True, "b": True}, 5)
    yield a, b
    problems = []
    for p in procs:
        try:
            p.stop()
        except Exception as x:  # noqa: BLE001 (reported below)
            problems.append(f"{x}\n{p.log_tail()}")
    for p in procs:
        if not problems:
            p.cleanup()
    e.cleanup()
    assert not problems, "\n".join(problems)


def connect(node, **kw):
    return pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=node.amqp_port,
                                                             connection_attempts=1, socket_timeout=5, **kw))


def bound_on(node, source, queue):
    return any(x["source"] == source and x["destination"] == queue for x in api(node, "/api/bindings/%2F"))


def queue_nodes(node):
    return {q["name"]: q.get("node") for q in api(node, "/api/queues/%2F")}


def declare_on_a(cluster, name, **kw):
    """Declares `name` on a and waits until b knows it lives there."""
    a, b = cluster
    c = connect(a)
    c.channel().queue_declare(name, **kw)
    c.close()
    wait_for(lambda: queue_nodes(b).get(name) == "a", 5)


def publish(node, queue, bodies, persistent=False):
    c = connect(node)
    ch = c.channel()
    ch.confirm_delivery()
    props = pika.BasicProperties(delivery_mode=2) if persistent else None
    for body in bodies:
        ch.basic_publish("", queue, body, props)
    c.close()


class Collector:
    """basic_consume's callback: what arrived, in order."""

    def __init__(self):
        self.got = []

    def __call__(self, ch, method, props, body):
        self.got.append((method, props, body))

    def wait(self, conn, n, timeout=5):
        deadline = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.05)
        return self.got


def settle(conn, secs=0.3):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        conn.process_data_events(time_limit=0.05)


def remaining(node, queue):
    """Messages left in `queue` (every one fetched with no-ack, so the queue ends empty)."""
    c = connect(node)
    ch = c.channel()
    out = []
    while True:
        m = ch.basic_get(queue, auto_ack=True)
        if m[0] is None:
            break
        out.append((m[0].redelivered, m[2]))
    c.close()
    return out


def test_consume_with_prefetch_acks_and_order(cluster):
    a, b = cluster
    declare_on_a(cluster, "c1", durable=True)
    n = 20
    publish(a, "c1", [f"m{i}".encode() for i in range(n)])
    cb = connect(b)
    ch = cb.channel()
    ch.basic_qos(prefetch_count=3)
    got = Collector()
    assert ch.basic_consume("c1", got, consumer_tag="my-tag") == "my-tag"
    got.wait(cb, 3)
    settle(cb)
    assert len(got.got) == 3  # a's prefetch, set by b for this consumer
    assert [m.consumer_tag for m, _, _ in got.got] == ["my-tag"] * 3
    assert [m.delivery_tag for m, _, _ in got.got] == [1, 2, 3]  # b's numbering
    ch.basic_ack(2, multiple=True)  # 1 and 2
    got.wait(cb, 5)
    settle(cb)
    assert len(got.got) == 5
    ch.basic_ack(3)
    ch.basic_reject(4, requeue=False)  # dropped (no dead-letter exchange)
    ch.basic_nack(5, requeue=False)
    while len(got.got) < n:  # two were rejected: n deliveries in all
        got.wait(cb, len(got.got) + 1)
        ch.basic_ack(got.got[-1][0].delivery_tag, multiple=True)
    settle(cb)
    # Every message once, in the order published, no redelivery.
    assert [body for _, _, body in got.got] == [f"m{i}".encode() for i in range(n)]
    assert not any(m.redelivered for m, _, _ in got.got)
    cb.close()
    assert remaining(a, "c1") == []


def test_unacked_redelivered_when_the_channel_or_connection_closes(cluster):
    a, b = cluster
    declare_on_a(cluster, "c2", durable=True)
    publish(a, "c2", [b"x", b"y", b"z"])
    cb = connect(b)
    ch = cb.channel()
    got = Collector()
    ch.basic_consume("c2", got)
    got.wait(cb, 3)
    ch.basic_ack(1)
    ch.close()  # y and z unacknowledged: a requeues them
    ch = cb.channel()
    got2 = Collector()
    ch.basic_consume("c2", got2)
    got2.wait(cb, 2)
    assert [(m.redelivered, body) for m, _, body in got2.got] == [(True, b"y"), (True, b"z")]
    cb.close()  # the connection this time
    assert remaining(a, "c2") == [(True, b"y"), (True, b"z")]


def test_nack_requeue_recover_and_cancel(cluster):
    a, b = cluster
    declare_on_a(cluster, "c3")
    publish(a, "c3", [b"1", b"2"])
    cb = connect(b)
    ch = cb.channel()
    got = Collector()
    ch.basic_consume("c3", got, consumer_tag="t3")
    got.wait(cb, 2)
    ch.basic_nack(1, requeue=True)  # back to the queue, delivered again, flagged
    got.wait(cb, 3)
    assert (got.got[2][0].redelivered, got.got[2][2]) == (True, b"1")
    # basic.recover: everything unacknowledged comes again, with new tags.
    ch.basic_recover(requeue=True)
    got.wait(cb, 5)
    again = sorted((m.redelivered, body) for m, _, body in got.got[3:])
    assert again == [(True, b"1"), (True, b"2")]
    assert {m.delivery_tag for m, _, _ in got.got[3:]} == {4, 5}
    ch.basic_ack(5, multiple=True)
    # Cancelled: later messages stay on a.
    ch.basic_cancel("t3")
    publish(a, "c3", [b"after"])
    settle(cb)
    assert len(got.got) == 5
    cb.close()
    assert remaining(a, "c3") == [(False, b"after")]


def test_multiple_ack_spanning_a_local_and_a_remote_queue(cluster):
    a, b = cluster
    declare_on_a(cluster, "c4a")
    cb = connect(b)
    ch = cb.channel()
    ch.queue_declare("c4b")
    got = Collector()
    ch.basic_consume("c4b", got)
    ch.basic_consume("c4a", got)
    publish(b, "c4b", [b"b1", b"b2"])
    publish(a, "c4a", [b"a1", b"a2"])
    got.wait(cb, 4)
    assert sorted(body for _, _, body in got.got) == [b"a1", b"a2", b"b1", b"b2"]
    assert sorted(m.delivery_tag for m, _, _ in got.got) == [1, 2, 3, 4]
    ch.basic_ack(4, multiple=True)  # settles on b's queue and on a's
    settle(cb, 0.2)
    ch.close()
    cb.close()
    assert remaining(a, "c4a") == [] and remaining(b, "c4b") == []


def test_no_ack_and_exclusive_consumers(cluster):
    a, b = cluster
    declare_on_a(cluster, "c5")
    publish(a, "c5", [b"p", b"q"])
    cb = connect(b)
    ch = cb.channel()
    got = Collector()
    ch.basic_consume("c5", got, auto_ack=True, exclusive=True)
    got.wait(cb, 2)
    assert [body for _, _, body in got.got] == [b"p", b"q"]
    # The exclusive consumer holds the queue: a's refusal (403) comes to b's client as b's.
    ch2 = cb.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch2.basic_consume("c5", lambda *x: None)
    assert e.value.reply_code == 403 and "exclusive" in e.value.reply_text
    ca = connect(a)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ca.channel().basic_consume("c5", lambda *x: None)
    assert e.value.reply_code == 403
    ca.close()
    cb.close()  # nothing to requeue: no-ack
    assert remaining(a, "c5") == []


def test_basic_get(cluster):
    a, b = cluster
    declare_on_a(cluster, "g1")
    cb = connect(b)
    ch = cb.channel()
    assert ch.basic_get("g1")[0] is None  # get-empty
    publish(a, "g1", [b"one", b"two", b"three"])
    m, props, body = ch.basic_get("g1")
    assert (body, m.message_count, m.delivery_tag, m.redelivered) == (b"one", 2, 1, False)
    m2, _, body2 = ch.basic_get("g1", auto_ack=True)
    assert (body2, m2.message_count) == (b"two", 1)
    ch.basic_ack(1)  # later, by b's tag
    m3, _, body3 = ch.basic_get("g1")
    assert body3 == b"three"
    ch.close()  # three unacknowledged: requeued by a
    assert remaining(a, "g1") == [(True, b"three")]
    cb.close()


def test_consume_errors(cluster):
    a, b = cluster
    cb = connect(b)
    # A queue nobody has: b's own 404.
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        cb.channel().basic_consume("nope", lambda *x: None)
    assert e.value.reply_code == 404
    cb.close()


def test_a_consumer_tag_in_use_is_refused_on_b(cluster):
    """pika refuses a duplicate tag itself: a raw client sends it (RabbitMQ: 530, a connection error)."""
    import struct

    from support.amqp_raw import RawClient, encode_bits, encode_table, shortstr
    a, b = cluster
    declare_on_a(cluster, "e2")
    c = RawClient(b.amqp_port)
    c.handshake()
    c.open_channel(1)
    consume = struct.pack(">H", 0) + shortstr("e2") + shortstr("same") + encode_bits(False, False, False, False) + \
        encode_table({})
    c.send_method(1, (60, 20), consume)
    c.expect_method(1, (60, 21))  # consume-ok, served by a
    c.send_method(1, (60, 20), consume)
    code, text, class_id, method_id = c.expect_connection_close(530)
    assert (text, class_id, method_id) == ("NOT_ALLOWED - attempt to reuse consumer tag 'same'", 60, 20)
    c.close()


def test_permissions_are_checked_on_b(cluster):
    a, b = cluster
    declare_on_a(cluster, "p1")
    put_json(b, "/api/users/reader", {"password": "pw", "tags": ""})
    put_json(b, "/api/permissions/%2F/reader", {"configure": ".*", "write": "^$", "read": "^$"})
    c = connect(b, credentials=pika.PlainCredentials("reader", "pw"))
    refused = "ACCESS_REFUSED - {} access to queue 'p1' in vhost '/' refused for user 'reader'"
    for op, perm in ((lambda ch: ch.basic_consume("p1", lambda *x: None), "read"),
                     (lambda ch: ch.basic_get("p1"), "read"),
                     (lambda ch: ch.queue_bind("p1", "amq.direct", "k"), "write")):
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
            op(c.channel())
        assert (e.value.reply_code, e.value.reply_text) == (403, refused.format(perm))
    c.close()


def test_amqp_tools_consume_and_get_on_b(cluster):
    a, b = cluster
    declare_on_a(cluster, "t1")
    publish(a, "t1", [b"hello", b"world"])
    url = f"amqp://guest:guest@127.0.0.1:{b.amqp_port}"
    got = subprocess.run(["amqp-get", "-u", url, "-q", "t1"], capture_output=True, timeout=10)
    assert got.returncode == 0 and got.stdout == b"hello"
    out = subprocess.run(["amqp-consume", "-u", url, "-q", "t1", "-c", "1", "cat"], capture_output=True,
                         timeout=10)
    assert out.returncode == 0 and out.stdout == b"world"
    assert remaining(a, "t1") == []


def test_bind_and_unbind_on_b_for_a_queue_on_a(cluster):
    a, b = cluster
    cb = connect(b)
    ch = cb.channel()
    ch.exchange_declare("bx", "direct", durable=True)
    declare_on_a(cluster, "bq")
    wait_for(lambda: "bx" in [x["name"] for x in api(a, "/api/exchanges/%2F")], 5)
    ch.queue_bind("bq", "bx", "k")
    # Routed at once on b (no wait for etcd), and on a, which bound its queue.
    ca = connect(a)
    cha = ca.channel()
    for c, body in ((ch, b"from b"), (cha, b"from a")):
        c.confirm_delivery()
        c.basic_publish("bx", "k", body, mandatory=True)
    assert [m for _, m in remaining(a, "bq")] == [b"from b", b"from a"]
    assert bound_on(a, "bx", "bq")
    wait_for(lambda: bound_on(b, "bx", "bq"), 5)  # b lists it from etcd
    ch.queue_unbind("bq", "bx", "k")
    for c in (ch, cha):
        with pytest.raises(pika.exceptions.UnroutableError):
            c.basic_publish("bx", "k", b"nowhere", mandatory=True)
    wait_for(lambda: not bound_on(b, "bx", "bq"), 5)
    # RabbitMQ's errors: a missing exchange (b's own check), the default exchange.
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        cb.channel().queue_bind("bq", "missing", "k")
    assert (e.value.reply_code, e.value.reply_text) == (404, "NOT_FOUND - no exchange 'missing' in vhost '/'")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        cb.channel().queue_bind("bq", "", "k")
    assert e.value.reply_code == 403
    # An exchange b has and a does not have yet (declared on b, a moment before etcd reached a): a's 404.
    ch = cb.channel()
    ch.exchange_declare("late", "fanout")
    try:
        ch.queue_bind("bq", "late")
        raced = False
    except pika.exceptions.ChannelClosedByBroker as x:
        raced = True
        assert x.reply_code == 404 and "late" in x.reply_text
    if not raced:  # a knew it already: bound on both
        assert bound_on(a, "late", "bq")
    ca.close()
    cb.close()


def test_queue_leader_locator(cluster):
    a, b = cluster
    # A vhost of its own, so that the counts of queues per node start at 0.
    put_json(b, "/api/vhosts/lb", {})
    put_json(b, "/api/permissions/lb/guest", {"configure": ".*", "write": ".*", "read": ".*"})
    wait_for(lambda: "lb" in [v["name"] for v in api(a, "/api/vhosts")], 5)
    wait_for(lambda: connect_vhost(a, "lb") is not None, 5)
    cb = pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=b.amqp_port, virtual_host="lb"))
    ch = cb.channel()
    balanced = {"x-queue-leader-locator": "balanced"}
    # Fewest queues among the running nodes, this node on a tie: b (0, 0), a (1, 0), b (1, 1), a (2, 1).
    for name in ("l1", "l2", "l3", "l4"):
        assert ch.queue_declare(name, durable=True, arguments=balanced).method.queue == name
    ch.queue_declare("l5", arguments={"x-queue-leader-locator": "client-local"})
    where = {q["name"]: q.get("node") for q in api(b, "/api/queues/lb")}
    assert where == {"l1": "b", "l2": "a", "l3": "b", "l4": "a", "l5": "b"}
    # Usable from b at once: a publish routed there, a consumer served from a.
    ch.confirm_delivery()
    ch.basic_publish("", "l2", b"placed", mandatory=True)
    got = Collector()
    ch.basic_consume("l2", got, auto_ack=True)
    assert [body for _, _, body in got.wait(cb, 1)] == [b"placed"]
    # Redeclared with the same arguments: an equivalent declare, answered where the queue is.
    assert ch.queue_declare("l2", durable=True, arguments=balanced).method.queue == "l2"
    # RabbitMQ's two values only.
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        cb.channel().queue_declare("l9", arguments={"x-queue-leader-locator": "random"})
    assert e.value.reply_code == 406 and "x-queue-leader-locator" in e.value.reply_text
    cb.close()


def connect_vhost(node, vhost):
    try:
        c = pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=node.amqp_port,
                                                              virtual_host=vhost, connection_attempts=1))
    except pika.exceptions.AMQPError:
        return None
    c.close()
    return True


def refusal(node, op):
    """The (code, text) op(channel) on a new connection to node closes its channel with."""
    c = connect(node)
    try:
        op(c.channel())
    except pika.exceptions.ChannelClosedByBroker as e:
        return e.reply_code, e.reply_text
    finally:
        if c.is_open:
            c.close()
    return None


def test_an_exclusive_queue_of_a_is_locked_on_b(cluster):
    a, b = cluster
    ca = connect(a)
    cha = ca.channel()
    cha.queue_declare("ex1", exclusive=True)
    # b learns of it through etcd (its record says "exclusive"); until then it is unknown there (404).
    consume = lambda ch: ch.basic_consume("ex1", lambda *x: None)  # noqa: E731
    wait_for(lambda: (refusal(b, consume) or (0,))[0] == 405, 5)
    locked = ("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'ex1' in vhost '/'. It could be "
              "originally declared on another connection or the exclusive property value does not match that of "
              "the original declaration.")
    for op in (consume, lambda ch: ch.basic_get("ex1"), lambda ch: ch.queue_bind("ex1", "amq.fanout"),
               lambda ch: ch.queue_declare("ex1", passive=True), lambda ch: ch.queue_purge("ex1"),
               lambda ch: ch.queue_delete("ex1"), lambda ch: ch.queue_declare("ex1", exclusive=True)):
        assert refusal(b, op) == (405, locked)
    # Not listed on b (it is a's connection's), but a publish on b reaches it, as in RabbitMQ.
    assert "ex1" not in queue_nodes(b)
    publish(b, "ex1", [b"to the owner"])
    assert cha.basic_get("ex1", auto_ack=True)[2] == b"to the owner"
    # Its connection gone, so is the queue, everywhere.
    ca.close()
    wait_for(lambda: (refusal(b, consume) or (0,))[0] == 404, 5)


def test_a_queue_deleted_on_a_cancels_its_consumer_on_b(cluster):
    a, b = cluster
    declare_on_a(cluster, "del1")
    cb = connect(b)
    ch = cb.channel()
    cancelled = []
    ch.add_on_cancel_callback(cancelled.append)
    ch.basic_consume("del1", lambda *x: None, consumer_tag="gone")
    ca = connect(a)
    ca.channel().queue_delete("del1")
    ca.close()
    deadline = time.monotonic() + 5
    while not cancelled and time.monotonic() < deadline:
        cb.process_data_events(time_limit=0.05)
    assert [m.method.consumer_tag for m in cancelled] == ["gone"]
    assert ch.is_open
    cb.close()


def test_an_auto_delete_queue_goes_with_its_last_consumer_on_b(cluster):
    a, b = cluster
    declare_on_a(cluster, "ad1", auto_delete=True)
    cb = connect(b)
    ch = cb.channel()
    ch.basic_consume("ad1", lambda *x: None, consumer_tag="x1")
    ch.basic_consume("ad1", lambda *x: None, consumer_tag="x2")
    ch.basic_cancel("x1")
    settle(cb, 0.2)
    assert "ad1" in queue_nodes(a)  # one consumer left
    ch.basic_cancel("x2")  # the last: a deletes it
    wait_for(lambda: "ad1" not in queue_nodes(a) and "ad1" not in queue_nodes(b), 5)
    # And when the consuming channel closes rather than cancels.
    declare_on_a(cluster, "ad2", auto_delete=True)
    ch.basic_consume("ad2", lambda *x: None)
    ch.close()
    wait_for(lambda: "ad2" not in queue_nodes(a), 5)
    cb.close()


def test_a_consumer_when_the_queues_node_goes_down_and_comes_back(cluster):
    """Last in the module: a is killed and started again."""
    a, b = cluster
    declare_on_a(cluster, "d1", durable=True)
    declare_on_a(cluster, "d2")
    publish(a, "d1", [b"k1", b"k2"], persistent=True)
    # A client that does not announce consumer_cancel_notify: told nothing, as RabbitMQ does.
    import struct

    from support.amqp_raw import RawClient, encode_bits, encode_table, shortstr
    raw = RawClient(b.amqp_port)
    raw.handshake(client_properties={"product": "raw"})
    raw.open_channel(1)
    raw.send_method(1, (60, 20), struct.pack(">H", 0) + shortstr("d2") + shortstr("quiet") +
                    encode_bits(False, True, False, False) + encode_table({}))
    raw.expect_method(1, (60, 21))
    cancelled = []
    cb = connect(b)
    ch = cb.channel()
    got = Collector()
    ch.add_on_cancel_callback(cancelled.append)
    ch.basic_consume("d1", got, consumer_tag="dt")
    got.wait(cb, 2)
    ch.basic_ack(1)
    a.kill9()
    # pika announces consumer_cancel_notify: b tells it its consumer is gone.
    deadline = time.monotonic() + 5
    while not cancelled and time.monotonic() < deadline:
        cb.process_data_events(time_limit=0.05)
    assert cancelled and cancelled[0].method.consumer_tag == "dt"
    raw.expect_silence(0.3)
    raw.close()
    ch.basic_ack(2)  # an outstanding tag of the gone consumer: harmless
    settle(cb, 0.2)
    assert ch.is_open
    down = "NOT_FOUND - home node 'a' of durable queue 'd1' in vhost '/' is down or inaccessible"
    if running(b)["a"]:  # a's lease has not expired yet: the connection to a is refused, the same 404
        for op in (lambda c: c.basic_consume("d1", lambda *x: None), lambda c: c.basic_get("d1")):
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
                op(cb.channel())
            assert (e.value.reply_code, e.value.reply_text) == (404, down)
    # Once a's lease expired: RabbitMQ's 404 for a new consumer.
    wait_for(lambda: running(b) == {"a": False, "b": True}, 3 * TTL)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        cb.channel().basic_consume("d1", lambda *x: None)
    assert (e.value.reply_code, e.value.reply_text) == (404, down)
    a.start()
    wait_for(lambda: running(b) == {"a": True, "b": True}, 10)
    # Back with its store: k2, never acknowledged, is delivered again (k1 too if a was killed before it had
    # written k1's ack: acks are not confirmed in AMQP 0-9-1).
    ch = cb.channel()
    got2 = Collector()
    ch.basic_consume("d1", got2, auto_ack=True)
    got2.wait(cb, 1)
    settle(cb, 0.2)
    assert [body for _, _, body in got2.got] in ([b"k2"], [b"k1", b"k2"])
    cb.close()
