"""Connections and channels through a real client, pika (Debian's python3-pika, BlockingConnection)."""

import threading
import time
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
                    "connection.blocked", "authentication_failure_close", "per_consumer_qos"]:
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
