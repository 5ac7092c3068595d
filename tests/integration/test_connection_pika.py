"""Connections and channels through a real client, pika (Debian's python3-pika, BlockingConnection)."""

import base64
import json
import socket
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pika
import pika.exceptions
import pytest


def params(warren, **kwargs):
    kwargs.setdefault("connection_attempts", 1)
    kwargs.setdefault("socket_timeout", 5)
    kwargs.setdefault("blocked_connection_timeout", 10)
    return pika.ConnectionParameters(host="127.0.0.1", port=warren.amqp_port, **kwargs)


def connect(warren, **kwargs):
    return pika.BlockingConnection(params(warren, **kwargs))


def test_connect_and_close(warren):
    conn = connect(warren)
    assert conn.is_open
    conn.close()
    assert conn.is_closed


def test_open_close_and_reopen_channels(warren):
    conn = connect(warren)
    try:
        channels = [conn.channel() for _ in range(5)]
        numbers = [ch.channel_number for ch in channels]
        assert len(set(numbers)) == 5
        for ch in channels[1:3]:
            ch.close()
            assert ch.is_closed
        reopened = [conn.channel(channel_number=n) for n in numbers[1:3]]
        for ch in [channels[0], *channels[3:], *reopened]:
            assert ch.is_open
            ch.confirm_delivery()  # a synchronous round trip on each channel
            ch.basic_publish("", "no-such-queue", b"x")
    finally:
        conn.close()


def test_heartbeats_keep_an_idle_connection(warren):
    conn = connect(warren, heartbeat=1)
    try:
        assert conn._impl.params.heartbeat == 1
        end = time.monotonic() + 4
        while time.monotonic() < end:
            conn.process_data_events(time_limit=0.5)
        assert conn.is_open
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("", "no-such-queue", b"still here")
    finally:
        if conn.is_open:
            conn.close()


def test_server_properties(warren):
    conn = connect(warren)
    try:
        props = conn._impl.server_properties
        assert props["product"] == "Warren"
        assert props.get("version"), props
        assert props.get("platform"), props
        caps = props["capabilities"]
        for cap in ["publisher_confirms", "exchange_exchange_bindings", "basic.nack", "consumer_cancel_notify",
                    "connection.blocked", "authentication_failure_close", "per_consumer_qos", "consumer_priorities"]:
            assert caps.get(cap) is True, f"capability {cap}: {caps.get(cap)!r}"
    finally:
        conn.close()


def test_wrong_password_is_refused_with_403(warren):
    creds = pika.PlainCredentials("guest", "nope")
    with pytest.raises((pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError)) as e:
        connect(warren, credentials=creds)
    assert "403" in str(e.value), repr(e.value)


def test_unknown_vhost_is_refused_with_530(warren):
    with pytest.raises(pika.exceptions.AMQPConnectionError) as e:
        connect(warren, virtual_host="no-such-vhost")
    assert "530" in str(e.value), repr(e.value)


def test_unroutable_publish_is_dropped_silently(warren):
    conn = connect(warren)
    try:
        ch = conn.channel()
        ch.basic_publish("", "no-such-queue", b"dropped")
        conn.channel().close()  # a round trip: a channel.close for ch would have arrived by now
        assert ch.is_open
        ch.confirm_delivery()
        ch.basic_publish("", "no-such-queue", b"dropped, and confirmed")  # raises on nack or return
        assert ch.is_open
    finally:
        conn.close()


def test_mandatory_unroutable_publish_is_returned_312(warren):
    conn = connect(warren)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        with pytest.raises(pika.exceptions.UnroutableError) as e:
            ch.basic_publish("", "no-such-queue", b"back to me", mandatory=True)
        returned = e.value.messages
        assert len(returned) == 1
        assert returned[0].method.reply_code == 312
        assert returned[0].method.routing_key == "no-such-queue"
        assert returned[0].body == b"back to me"
        assert ch.is_open
    finally:
        conn.close()


def test_publish_to_missing_exchange_closes_channel_404(warren):
    conn = connect(warren)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
            ch.basic_publish("no-such-exchange", "k", b"x")
        assert e.value.reply_code == 404
        assert ch.is_closed
        assert conn.is_open
        ch2 = conn.channel()
        ch2.confirm_delivery()
        ch2.basic_publish("", "no-such-queue", b"connection survived")
    finally:
        conn.close()


def test_fifty_concurrent_connections(warren):
    n = 50
    barrier = threading.Barrier(n, timeout=30)

    def one(i):
        conn = connect(warren)
        try:
            ch = conn.channel()
            barrier.wait()  # all n connections are open at the same time
            ch.confirm_delivery()
            ch.basic_publish("", f"q{i}", f"hello {i}".encode())
            return conn.is_open and ch.is_open
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(one, range(n)))
    assert results == [True] * n


# --- listening addresses ----------------------------------------------------------------------------------------


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")


def _round_trip(host, port):
    """A pika connection over `host`: declare, publish, get."""
    conn = pika.BlockingConnection(pika.ConnectionParameters(host=host, port=port, connection_attempts=1,
                                                             socket_timeout=5))
    try:
        ch = conn.channel()
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.basic_publish("", q, b"over " + host.encode())
        _, _, body = ch.basic_get(q, auto_ack=True)
        assert body == b"over " + host.encode()
    finally:
        conn.close()


def _refused(host, port) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.settimeout(2)
        return s.connect_ex((host, port)) != 0


def _http_get(host, port, path, auth=False):
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}{path}"
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status, r.read()


@needs_ipv6
def test_default_bind_listens_on_ipv4_and_ipv6(warren_factory):
    # As RabbitMQ: without --bind every listener takes IPv4 and IPv6 clients (one dual-stack socket per port).
    w = warren_factory(omit=("--bind",))
    for host in ("::1", "127.0.0.1"):
        _round_trip(host, w.amqp_port)
        assert _http_get(host, w.http_port, "/healthz")[0] == 200
        assert _http_get(host, w.prometheus_port, "/metrics")[0] == 200
        assert not _refused(host, w.web_port)
    # Addresses read as what the client used: an IPv4 client is 127.0.0.1, not ::ffff:127.0.0.1.
    conns = [pika.BlockingConnection(pika.ConnectionParameters(host=h, port=w.amqp_port, connection_attempts=1))
             for h in ("::1", "127.0.0.1")]
    try:
        listed = []
        for _ in range(50):
            listed = json.loads(_http_get("127.0.0.1", w.http_port, "/api/connections", auth=True)[1])
            if len(listed) == 2:
                break
            time.sleep(0.1)
        peers = sorted((c["peer_host"], c["host"]) for c in listed)
        assert peers == [("127.0.0.1", "127.0.0.1"), ("::1", "::1")]
        names = sorted(c["name"] for c in listed)
        assert names[0].startswith("127.0.0.1:") and names[0].endswith(f" -> 127.0.0.1:{w.amqp_port}")
        assert names[1].startswith("[::1]:") and names[1].endswith(f" -> [::1]:{w.amqp_port}")
    finally:
        for c in conns:
            c.close()
    overview = json.loads(_http_get("::1", w.http_port, "/api/overview", auth=True)[1])
    assert {(x["protocol"], x["ip_address"]) for x in overview["listeners"]} == {
        ("amqp", "::"), ("http", "::"), ("web", "::"), ("prometheus", "::")}
    log = w.stderr_path.read_text() + w.stdout_path.read_text()
    assert f"AMQP on [::]:{w.amqp_port}" in log and "(IPv6 and IPv4)" in log


@needs_ipv6
def test_explicit_bind_binds_just_that_address(warren_factory):
    v4 = warren_factory("--bind", "127.0.0.1")
    _round_trip("127.0.0.1", v4.amqp_port)
    assert _refused("::1", v4.amqp_port) and _refused("::1", v4.http_port)
    v6 = warren_factory("--bind", "::1")
    _round_trip("::1", v6.amqp_port)
    assert _refused("127.0.0.1", v6.amqp_port) and _refused("127.0.0.1", v6.http_port)
