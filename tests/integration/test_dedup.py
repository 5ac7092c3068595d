"""Message deduplication (docs/compatibility.md, "Message deduplication"), driven with pika and the management
API: the plugin's x-message-deduplication exchange type, LavinMQ's x-message-deduplication argument on an exchange
and on a queue, the window in time and in entries, publisher confirms and basic.return for dropped duplicates,
refused arguments, the type in the management API, and a restart (the cache is in memory only)."""

import base64
import json
import time
import urllib.error
import urllib.request

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


def props(dedup_id=None, **headers):
    if dedup_id is not None:
        headers["x-deduplication-header"] = dedup_id
    return pika.BasicProperties(headers=headers or None)


def drain(ch, q):
    bodies = []
    while True:
        m = ch.basic_get(q, auto_ack=True)
        if m[0] is None:
            return bodies
        bodies.append(m[2])


def api(warren, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{warren.http_port}{path}", data=data, method=method)
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    return status, json.loads(raw) if raw else None


def test_exchange_type_drops_duplicates_confirms_them_and_does_not_return_them(conn):
    ch = conn.channel()
    ch.exchange_declare("dd", "x-message-deduplication", arguments={"x-cache-size": 100})
    for q in ("a", "b"):
        ch.queue_declare(q)
        ch.queue_bind(q, "dd", "ignored")  # routes as fanout
    ch.confirm_delivery()
    returned = []
    ch.add_on_return_callback(lambda *a: returned.append(a))
    # Every publish is confirmed (pika raises on a nack or, with mandatory, on a return).
    ch.basic_publish("dd", "k1", b"first", props("id-1"), mandatory=True)
    ch.basic_publish("dd", "k2", b"again", props("id-1"), mandatory=True)
    ch.basic_publish("dd", "k3", b"other", props("id-2"), mandatory=True)
    ch.basic_publish("dd", "k4", b"no header", props(), mandatory=True)
    ch.basic_publish("dd", "k5", b"no header again", props(), mandatory=True)
    assert returned == []
    for q in ("a", "b"):
        assert drain(ch, q) == [b"first", b"other", b"no header", b"no header again"]


def test_two_paths_into_one_dedup_exchange_deliver_once(conn):
    # Two links (as two federation links would) republish the same messages into one exchange.
    ch = conn.channel()
    ch.exchange_declare("site", "x-message-deduplication", arguments={"x-cache-size": 1000})
    for link in ("link-1", "link-2"):
        ch.exchange_declare(link, "topic")
        ch.exchange_bind("site", link, "#")
    ch.queue_declare("q")
    ch.queue_bind("q", "site")
    ch.confirm_delivery()
    for i in range(20):
        ch.basic_publish("link-1", "a.b", f"m{i}".encode(), props(f"id-{i}"))
    for i in range(10, 30):  # overlaps 10..19
        ch.basic_publish("link-2", "a.b", f"m{i}".encode(), props(f"id-{i}"))
    assert drain(ch, "q") == [f"m{i}".encode() for i in range(30)]


def test_exchange_argument_dedups_a_direct_exchange_with_its_own_header(conn):
    ch = conn.channel()
    ch.exchange_declare("dx", "direct", arguments={"x-message-deduplication": True, "x-deduplication-header": "msg-id"})
    ch.queue_declare("q")
    ch.queue_bind("q", "dx", "k")
    ch.basic_publish("dx", "k", b"1", props(**{"msg-id": 7}))
    ch.basic_publish("dx", "k", b"2", props(**{"msg-id": 7}))  # same id: dropped
    ch.basic_publish("dx", "k", b"3", props("7"))  # the default header is not this exchange's
    ch.basic_publish("dx", "k", b"4", props("7"))
    assert drain(ch, "q") == [b"1", b"3", b"4"]


def test_queue_argument_drops_what_the_queue_has_seen(conn):
    ch = conn.channel()
    ch.queue_declare("dq", arguments={"x-message-deduplication": True})
    ch.queue_declare("plain")
    ch.exchange_declare("f", "fanout")
    ch.queue_bind("dq", "f")
    ch.queue_bind("plain", "f")
    ch.confirm_delivery()
    for body in (b"a", b"b"):
        ch.basic_publish("f", "", body, props("same"), mandatory=True)
    ch.basic_publish("", "dq", b"c", props("same"), mandatory=True)  # direct to the queue: still a duplicate
    assert drain(ch, "dq") == [b"a"]
    assert drain(ch, "plain") == [b"a", b"b"]
    # Consumed and acked: the window still holds the id (a window, not "while in the queue").
    ch.basic_publish("", "dq", b"d", props("same"))
    assert count(ch, "dq") == 0


def test_window_expires_after_x_cache_ttl_and_a_message_header_overrides_it(conn):
    ch = conn.channel()
    ch.exchange_declare("dt", "x-message-deduplication", arguments={"x-cache-size": 10, "x-cache-ttl": 300})
    ch.queue_declare("q")
    ch.queue_bind("q", "dt")
    ch.basic_publish("dt", "", b"1", props("a"))
    ch.basic_publish("dt", "", b"2", props("a"))  # within 300 ms: dropped
    ch.basic_publish("dt", "", b"3", props("b", **{"x-cache-ttl": 60000}))  # remembered for a minute
    time.sleep(0.45)
    ch.basic_publish("dt", "", b"4", props("a"))  # the window passed
    ch.basic_publish("dt", "", b"5", props("b"))  # still within its own
    assert drain(ch, "q") == [b"1", b"3", b"4"]


def test_cache_size_evicts_the_oldest_id(conn):
    ch = conn.channel()
    ch.queue_declare("q", arguments={"x-message-deduplication": True, "x-cache-size": 2})
    for i in ("a", "b", "c"):  # a is evicted by c
        ch.basic_publish("", "q", i.encode(), props(i))
    ch.basic_publish("", "q", b"b again", props("b"))  # dropped: still remembered
    ch.basic_publish("", "q", b"a again", props("a"))  # evicted, so delivered (and evicts b)
    ch.basic_publish("", "q", b"b third", props("b"))
    assert drain(ch, "q") == [b"a", b"b", b"c", b"a again", b"b third"]


def test_message_id_fallback(conn):
    ch = conn.channel()
    ch.queue_declare("q", arguments={"x-message-deduplication": True, "x-deduplication-property": "message_id"})
    ch.basic_publish("", "q", b"1", pika.BasicProperties(message_id="m-1"))
    ch.basic_publish("", "q", b"2", pika.BasicProperties(message_id="m-1"))
    ch.basic_publish("", "q", b"3", pika.BasicProperties(message_id="m-2"))
    ch.basic_publish("", "q", b"4", pika.BasicProperties(message_id="m-1", headers={"x-deduplication-header": "h"}))
    assert drain(ch, "q") == [b"1", b"3", b"4"]


@pytest.mark.parametrize(
    "kind,arguments,text",
    [
        ("exchange", {}, "Missing or invalid argument, 'x-cache-size' must be an integer greater than 0"),
        ("exchange", {"x-cache-size": 0}, "Missing or invalid argument, 'x-cache-size' must be an integer greater than 0"),
        ("exchange", {"x-cache-size": "ten"}, "Missing or invalid argument, 'x-cache-size' must be an integer greater than 0"),
        ("exchange", {"x-cache-size": 5, "x-cache-ttl": -1}, "Invalid argument, 'x-cache-ttl' must be an integer greater than 0"),
        ("exchange", {"x-cache-size": 5, "x-cache-persistence": "tape"},
         "Invalid argument, 'x-cache-persistence' must be either 'disk' or 'memory'"),
        ("exchange", {"x-cache-size": 5, "x-cache-persistence": "disk"},
         "Invalid argument, 'x-cache-persistence' 'disk' is not supported: Warren keeps the deduplication cache in memory"),
        ("queue", {"x-message-deduplication": "yes"}, "Invalid argument, 'x-message-deduplication' must be a boolean"),
        ("queue", {"x-message-deduplication": True, "x-cache-size": -4},
         "Missing or invalid argument, 'x-cache-size' must be an integer greater than 0"),
        ("queue", {"x-message-deduplication": True, "x-deduplication-header": ""},
         "Invalid argument, 'x-deduplication-header' must be a non-empty string"),
        ("queue", {"x-message-deduplication": True, "x-deduplication-property": "correlation_id"},
         "Invalid argument, 'x-deduplication-property' must be 'message_id'"),
    ],
)
def test_bad_arguments_are_refused_with_406(conn, kind, arguments, text):
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        if kind == "exchange":
            ch.exchange_declare("bad", "x-message-deduplication", arguments=arguments)
        else:
            ch.queue_declare("bad", arguments=arguments)
    assert e.value.reply_code == 406
    assert e.value.reply_text == "PRECONDITION_FAILED - " + text


def test_management_lists_the_type_and_declares_it(warren):
    status, overview = api(warren, "GET", "/api/overview")
    assert status == 200
    assert "x-message-deduplication" in [t["name"] for t in overview["exchange_types"]]
    status, body = api(warren, "PUT", "/api/exchanges/%2F/dd", {"type": "x-message-deduplication", "arguments": {}})
    assert status == 400 and "'x-cache-size'" in body["reason"], body
    status, _ = api(warren, "PUT", "/api/exchanges/%2F/dd",
                    {"type": "x-message-deduplication", "arguments": {"x-cache-size": 10}})
    assert status in (201, 204)
    status, x = api(warren, "GET", "/api/exchanges/%2F/dd")
    assert status == 200 and x["type"] == "x-message-deduplication"
    assert x["deduplication"] == {"ids": 0, "capacity": 10, "dropped": 0, "memory": 0}
    # The window's figures: ids remembered, duplicates dropped (Warren's own field).
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", warren.amqp_port))
    ch = c.channel()
    ch.queue_declare("dq", arguments={"x-message-deduplication": True, "x-cache-size": 50})
    for i in ("a", "b", "a", "a"):
        ch.basic_publish("dd", "", b"", props(i))
        ch.basic_publish("", "dq", b"", props(i))
    ch.queue_declare("dq", passive=True)  # a round trip: the publishes were handled
    c.close()
    status, x = api(warren, "GET", "/api/exchanges/%2F/dd")
    assert x["deduplication"]["ids"] == 2 and x["deduplication"]["dropped"] == 2, x
    assert x["deduplication"]["memory"] > 0
    status, q = api(warren, "GET", "/api/queues/%2F/dq")
    assert status == 200
    assert (q["deduplication"]["ids"], q["deduplication"]["capacity"], q["deduplication"]["dropped"]) == (2, 50, 2), q
    status, plain = api(warren, "GET", "/api/exchanges/%2F/amq.direct")
    assert "deduplication" not in plain


def test_a_restart_keeps_the_exchange_but_not_its_cache(warren):
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", warren.amqp_port))
    ch = c.channel()
    ch.exchange_declare("dd", "x-message-deduplication", durable=True, arguments={"x-cache-size": 10})
    ch.queue_declare("q", durable=True)
    ch.queue_bind("q", "dd")
    ch.confirm_delivery()
    ch.basic_publish("dd", "", b"before", props("id"))
    ch.basic_publish("dd", "", b"dup", props("id"))
    c.close()
    warren.restart()
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", warren.amqp_port))
    ch = c.channel()
    ch.confirm_delivery()
    ch.basic_publish("dd", "", b"after", props("id"))  # the cache started empty
    ch.basic_publish("dd", "", b"dup", props("id"))  # and works again
    assert count(ch, "q") == 1  # "before" was transient: gone with the restart
    assert drain(ch, "q") == [b"after"]
    c.close()
