"""Bad and unusual input over a raw socket: each case gets the reply code the spec (and RabbitMQ) gives, and the
broker keeps serving other connections afterwards (checked after every test by `broker_still_serves`)."""

import random
import struct
import time
import urllib.error
import urllib.request

import pytest

from support.amqp_raw import (
    ACCESS_REFUSED, BASIC_PUBLISH, CHANNEL_CLOSE, CHANNEL_CLOSE_OK, CHANNEL_ERROR, CHANNEL_FLOW, CHANNEL_FLOW_OK,
    CHANNEL_OPEN, COMMAND_INVALID, REPLY_SUCCESS, close_args,
    CONNECTION_CLOSE, CONNECTION_CLOSE_OK, CONNECTION_OPEN_OK, CONNECTION_TUNE, CONNECTION_UPDATE_SECRET,
    CONNECTION_UPDATE_SECRET_OK, FRAME_BODY, FRAME_ERROR, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD,
    NOT_ALLOWED, NOT_FOUND, NOT_IMPLEMENTED, PROTOCOL_HEADER, SYNTAX_ERROR, UNEXPECTED_FRAME, PeerClosed,
    ProtocolViolation, RawClient, ReadTimeout, channel_open_args, content_header_payload,
    flow_args, frame, longstr, method_payload, plain_response, publish_args, shortstr, update_secret_args,
)
from support.amqp_raw_broker import declare_queue


@pytest.fixture(autouse=True)
def broker_still_serves(warren_factory):
    """After each test: every broker the test started is still running and completes a fresh handshake."""
    yield
    for proc in warren_factory.started:
        if proc.stopped:
            continue
        proc.assert_alive()
        with RawClient(proc.amqp_port) as c:
            c.handshake()
            c.open_channel(1)
            c.close_connection()


@pytest.fixture
def conn(warren):
    """A raw client past connection.open-ok (guest, heartbeat 0, the server's frame_max/channel_max)."""
    with RawClient(warren.amqp_port) as c:
        c.handshake()
        yield c


# --- a. protocol header -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("header", [
    b"AMQP\x00\x00\x09\x00",
    b"GET / HTTP/1.1\r\n\r\n",
    b"AMQP\x01\x01\x00\x09",
    b"AMQP\x00\x00\x08\x00",
], ids=["0-9-0", "http", "0-8-legacy", "0-8-0"])
def test_wrong_protocol_header_gets_our_header_and_close(warren, header):
    with RawClient(warren.amqp_port) as c:
        c.send_raw(header)
        assert c.read_until_closed(timeout=3) == PROTOCOL_HEADER


# --- b-d. framing -----------------------------------------------------------------------------------------------

def test_wrong_frame_end_octet_is_frame_error(conn):
    conn.send_frame(FRAME_METHOD, 1, method_payload(*CHANNEL_OPEN, channel_open_args()), frame_end=0x00)
    conn.expect_connection_close(FRAME_ERROR)


def test_frame_above_frame_max_is_frame_error_without_waiting_for_payload(conn):
    # Only the 7-byte header announcing 1 MiB: the server must decide on the size alone.
    conn.send_raw(struct.pack(">BHI", FRAME_METHOD, 0, 1 << 20))
    conn.expect_connection_close(FRAME_ERROR, timeout=3)


def test_unknown_frame_type_is_frame_error(conn):
    conn.send_frame(5, 0, b"x")
    conn.expect_connection_close(FRAME_ERROR)


# --- e. unknown methods -----------------------------------------------------------------------------------------

def test_unknown_class_is_not_implemented(conn):
    conn.open_channel(1)
    conn.send_frame(FRAME_METHOD, 1, method_payload(999, 10))
    conn.expect_connection_close(NOT_IMPLEMENTED)


def test_unknown_connection_method_is_not_implemented(conn):
    conn.send_frame(FRAME_METHOD, 0, method_payload(10, 99))
    conn.expect_connection_close(NOT_IMPLEMENTED)


# --- f. malformed arguments -------------------------------------------------------------------------------------

# RabbitMQ answers undecodable arguments with 501 FRAME_ERROR "cannot decode ...", not 502.

def test_truncated_method_arguments_are_frame_error(conn):
    # channel.open whose reserved shortstr claims 10 bytes, none of which follow.
    conn.send_frame(FRAME_METHOD, 1, method_payload(*CHANNEL_OPEN, b"\x0a"))
    code, text, _, _ = conn.expect_connection_close(FRAME_ERROR)
    assert "cannot decode" in text


def test_truncated_arguments_on_open_channel_are_frame_error(conn):
    # channel.flow on an open channel with its one octet of arguments missing.
    conn.open_channel(1)
    conn.send_frame(FRAME_METHOD, 1, method_payload(*CHANNEL_FLOW))
    code, text, _, _ = conn.expect_connection_close(FRAME_ERROR)
    assert "cannot decode" in text


def test_unknown_field_type_in_client_properties_is_frame_error(warren):
    entries = shortstr("product") + b"S" + longstr("raw") + shortstr("weird") + b"Z" + b"\x00\x00\x00\x00"
    props = struct.pack(">I", len(entries)) + entries
    with RawClient(warren.amqp_port) as c:
        c.send_protocol_header()
        c.read_start()
        c.send_start_ok("PLAIN", plain_response("guest", "guest"), client_properties=props)
        c.expect_connection_close(FRAME_ERROR)


# --- g. content frames out of order -----------------------------------------------------------------------------

def test_content_header_without_publish_is_unexpected_frame(conn):
    conn.open_channel(1)
    conn.send_frame(FRAME_HEADER, 1, content_header_payload(60, 5))
    conn.expect_connection_close(UNEXPECTED_FRAME)


def test_body_without_header_is_unexpected_frame(conn):
    conn.open_channel(1)
    conn.send_frame(FRAME_BODY, 1, b"hello")
    conn.expect_connection_close(UNEXPECTED_FRAME)


def test_method_between_publish_and_header_is_unexpected_frame(conn):
    conn.open_channel(1)
    conn.send_method(1, BASIC_PUBLISH, publish_args("", "some-queue"))
    conn.send_method(1, CHANNEL_FLOW, flow_args(True))
    conn.expect_connection_close(UNEXPECTED_FRAME)


# --- h. channel state -------------------------------------------------------------------------------------------

def test_method_on_unopened_channel_is_channel_error(conn):
    conn.send_method(5, CHANNEL_FLOW, flow_args(True))
    conn.expect_connection_close(CHANNEL_ERROR)


def test_channel_open_twice_is_channel_error(conn):
    conn.open_channel(1)
    conn.send_method(1, CHANNEL_OPEN, channel_open_args())
    conn.expect_connection_close(CHANNEL_ERROR)


# --- i. wrong channel for the frame -----------------------------------------------------------------------------

def test_heartbeat_on_nonzero_channel_is_unexpected_frame(conn):
    # RabbitMQ: 505 UNEXPECTED_FRAME.
    conn.open_channel(1)
    conn.send_frame(FRAME_HEARTBEAT, 1, b"")
    conn.expect_connection_close(UNEXPECTED_FRAME)


def test_channel_open_on_channel_zero_is_channel_error(conn):
    # RabbitMQ: 504 "unexpected method in connection state running".
    conn.send_method(0, CHANNEL_OPEN, channel_open_args())
    code, text, _, _ = conn.expect_connection_close(CHANNEL_ERROR)
    assert "unexpected method in connection state running" in text


def test_server_only_method_on_a_channel_is_command_invalid(conn):
    # basic.get-empty (60, 72) is sent only by servers.
    conn.open_channel(1)
    conn.send_frame(FRAME_METHOD, 1, method_payload(60, 72, b"\x00"))
    conn.expect_connection_close(COMMAND_INVALID)


# --- j. channel_max ---------------------------------------------------------------------------------------------

def test_channel_above_negotiated_channel_max_is_not_allowed(warren):
    with RawClient(warren.amqp_port) as c:
        c.handshake(channel_max=10)
        c.open_channel(10)  # the limit itself is allowed
        c.send_method(11, CHANNEL_OPEN, channel_open_args())
        c.expect_connection_close(NOT_ALLOWED)


# --- k. tune-ok out of bounds -----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["frame_max_below_minimum", "frame_max_above_server", "channel_max_above_server"])
def test_tune_ok_out_of_bounds_is_not_allowed(warren, case):
    with RawClient(warren.amqp_port) as c:
        c.login()
        tune = c.read_tune()
        assert tune["frame_max"] > 0 and 0 < tune["channel_max"] < 0xFFFF, tune
        channel_max, frame_max = tune["channel_max"], tune["frame_max"]
        if case == "frame_max_below_minimum":
            frame_max = 1000
        elif case == "frame_max_above_server":
            frame_max += 1
        else:
            channel_max += 1
        c.send_tune_ok(channel_max, frame_max, 0)
        c.send_open("/")
        c.expect_connection_close(NOT_ALLOWED)


# --- l. vhost and authentication --------------------------------------------------------------------------------

def test_unknown_vhost_is_not_allowed(warren):
    with RawClient(warren.amqp_port) as c:
        c.login()
        tune = c.read_tune()
        c.send_tune_ok(tune["channel_max"], tune["frame_max"], 0)
        c.send_open("nope")
        c.expect_connection_close(NOT_ALLOWED)


@pytest.mark.parametrize("user,password", [("guest", "nope"), ("nobody", "guest")])
def test_failed_login_with_auth_failure_close_gets_access_refused(warren, user, password):
    with RawClient(warren.amqp_port) as c:
        c.login(user, password)  # default client properties carry authentication_failure_close=true
        c.expect_connection_close(ACCESS_REFUSED)


def test_failed_login_without_auth_failure_close_just_closes(warren):
    props = {"product": "old-client", "capabilities": {}}
    with RawClient(warren.amqp_port) as c:
        c.login("guest", "nope", client_properties=props)
        frames = c.wait_closed(timeout=3)
        assert [f.describe() for f in frames if f.type != FRAME_HEARTBEAT] == []


def test_unknown_mechanism_never_opens(warren):
    with RawClient(warren.amqp_port) as c:
        c.send_protocol_header()
        start = c.read_start()
        assert b"FOO" not in start["mechanisms"].split()
        c.send_start_ok("FOO", plain_response("guest", "guest"))
        deadline = time.monotonic() + 3
        while True:
            try:
                f = c.read_frame(timeout=max(0.0, deadline - time.monotonic()))
            except PeerClosed:
                break
            if f.type == FRAME_HEARTBEAT:
                continue
            assert f.method not in (CONNECTION_TUNE, CONNECTION_OPEN_OK), f"accepted mechanism FOO: {f.describe()}"
            assert f.method == CONNECTION_CLOSE, f.describe()
            c.send_method(0, CONNECTION_CLOSE_OK)


def test_amqplain_login_works(warren):
    with RawClient(warren.amqp_port) as c:
        hs = c.handshake(mechanism="AMQPLAIN")
        assert b"AMQPLAIN" in hs.start["mechanisms"].split()
        c.open_channel(1)
        c.close_connection()


def test_amqplain_wrong_password_gets_access_refused(warren):
    with RawClient(warren.amqp_port) as c:
        c.login("guest", "nope", mechanism="AMQPLAIN")
        c.expect_connection_close(ACCESS_REFUSED)


# --- m. guest only from loopback --------------------------------------------------------------------------------

def test_guest_refused_from_non_loopback_address(warren_factory):
    w = warren_factory("--loopback-networks", "127.0.0.1/32")
    with RawClient(w.amqp_port) as c:
        c.login(source_address="127.0.0.2")
        _, text, _, _ = c.expect_connection_close(ACCESS_REFUSED)
        assert "loopback" in text.lower() or "localhost" in text.lower(), text
    with RawClient(w.amqp_port) as c:
        c.handshake(source_address="127.0.0.1")
        c.open_channel(1)
        c.close_connection()


def test_guest_allowed_from_any_127_address_by_default(warren):
    with RawClient(warren.amqp_port) as c:
        c.handshake(source_address="127.0.0.2")
        c.open_channel(1)
        c.close_connection()


# --- n. handshake timeout ---------------------------------------------------------------------------------------

def test_silent_socket_dropped_after_handshake_timeout(warren_factory):
    w = warren_factory("--handshake-timeout", "1")
    with RawClient(w.amqp_port) as c:
        c.connect()
        t0 = time.monotonic()
        c.read_until_closed(timeout=6)  # generous: CI machines are loaded (sanitizers, -j2)
        assert time.monotonic() - t0 >= 0.5, "dropped long before the 1 s handshake timeout"


def test_header_only_client_dropped_after_handshake_timeout(warren_factory):
    w = warren_factory("--handshake-timeout", "1")
    with RawClient(w.amqp_port) as c:
        c.send_protocol_header()
        c.read_start()
        t0 = time.monotonic()
        c.wait_closed(timeout=6)
        assert time.monotonic() - t0 >= 0.5, "dropped long before the 1 s handshake timeout"


# --- o. heartbeats ----------------------------------------------------------------------------------------------

def test_silent_client_dropped_after_missed_heartbeats(warren):
    with RawClient(warren.amqp_port) as c:
        c.handshake(heartbeat=1)
        t0 = time.monotonic()
        c.wait_closed(timeout=7)  # we never send a heartbeat; 2 intervals + tick + a loaded CI
        assert time.monotonic() - t0 >= 1.0, "dropped before a single heartbeat interval had passed"


def test_server_sends_heartbeats_and_keeps_a_beating_client(warren):
    with RawClient(warren.amqp_port) as c:
        c.handshake(heartbeat=1)
        received = 0
        end = time.monotonic() + 3.5
        while time.monotonic() < end:
            c.send_heartbeat()
            try:
                f = c.read_frame(timeout=0.4)
            except ReadTimeout:
                continue
            assert f.type == FRAME_HEARTBEAT and f.channel == 0, f.describe()
            received += 1
        assert received >= 2, f"server sent {received} heartbeats in 3.5 s at heartbeat=1"
        c.open_channel(1)
        c.close_connection()


# --- p. server-initiated channel close --------------------------------------------------------------------------

def test_frames_ignored_until_channel_close_ok_then_channel_reusable(conn):
    conn.open_channel(1)
    conn.publish(1, "no-such-exchange", "k", b"hello")
    _, _, class_id, method_id = conn.expect_channel_close(1, NOT_FOUND, send_close_ok=False)
    assert (class_id, method_id) == BASIC_PUBLISH
    # Until our close-ok, the server must drop whatever else arrives on the channel.
    conn.send_method(1, CHANNEL_FLOW, flow_args(True))
    conn.publish(1, "", "some-queue", b"more")
    conn.send_method(1, CHANNEL_CLOSE_OK)
    conn.open_channel(1)  # fails if anything (flow-ok, an error) came before open-ok
    assert conn.flow(1, True) is True
    conn.close_channel(1)
    conn.close_connection()


# --- q. client-initiated close ----------------------------------------------------------------------------------

def test_client_connection_close_gets_close_ok_and_socket_closes(conn):
    conn.close_connection()


def test_client_close_leaves_the_socket_to_the_client(warren):
    # As RabbitMQ: after close-ok the server neither sends nor half-closes; it discards what still arrives and closes
    # when the client does. (Warren used to send its FIN right after close-ok, which the Go client amqp091-go reads
    # as an error when it races its own close: Exception (501) "EOF".)
    with RawClient(warren.amqp_port) as c:
        c.handshake()
        c.open_channel(1)
        c.send_method(0, CONNECTION_CLOSE, close_args(REPLY_SUCCESS, "bye"))
        c.expect_method(0, CONNECTION_CLOSE_OK)
        c.expect_silence(0.5)
        c.send_method(1, BASIC_PUBLISH, publish_args("", "q"))  # late input is dropped, no error for it
        c.send_raw(b"not a frame at all")
        c.expect_silence(0.5)


def test_crossing_close_gets_close_ok_and_the_client_closes_first(conn):
    # The broker's connection.close (504) crosses the client's own close: the client's gets close-ok and, as after
    # any client close, the server leaves the socket to the client.
    conn.send_method(5, CHANNEL_FLOW, flow_args(True))
    conn.send_method(0, CONNECTION_CLOSE, close_args(REPLY_SUCCESS, "bye"))
    conn.expect_method(0, CONNECTION_CLOSE)
    conn.expect_method(0, CONNECTION_CLOSE_OK)
    conn.expect_silence(0.5)


def test_client_close_server_closes_after_the_deadline(conn):
    # A client that never closes its socket after close-ok is closed by the server after 5 s (RabbitMQ: the
    # heartbeat timeout, at most 30 s).
    conn.send_method(0, CONNECTION_CLOSE, close_args(REPLY_SUCCESS, "bye"))
    conn.expect_method(0, CONNECTION_CLOSE_OK)
    start = time.monotonic()
    conn.wait_closed(timeout=10, allow_frames=False)
    assert 4.5 <= time.monotonic() - start < 9


def test_client_close_frees_exclusive_queues_with_close_ok(warren):
    # As RabbitMQ, a connection's exclusive queues go with its close-ok, not when its socket closes: a new
    # connection may declare the same exclusive queue at once.
    with RawClient(warren.amqp_port) as a, RawClient(warren.amqp_port) as b:
        a.handshake()
        a.open_channel(1)
        declare_queue(a, 1, "mine", exclusive=True)
        a.send_method(0, CONNECTION_CLOSE, close_args(REPLY_SUCCESS, "bye"))
        a.expect_method(0, CONNECTION_CLOSE_OK)
        b.handshake()
        b.open_channel(1)
        assert declare_queue(b, 1, "mine", exclusive=True)["queue"] == "mine"  # not 405 RESOURCE_LOCKED
        a.expect_silence(0.05)  # a's socket is still open
        b.close_connection()


def test_client_channel_close_gets_close_ok(conn):
    conn.open_channel(1)
    conn.close_channel(1)
    conn.open_channel(1)  # the number is free again
    conn.close_connection()


# --- r. channel.flow --------------------------------------------------------------------------------------------

def test_channel_flow_echoes_active(conn):
    conn.open_channel(1)
    assert conn.flow(1, False) is False
    assert conn.flow(1, True) is True
    conn.close_connection()


def test_connection_close_while_a_channel_awaits_the_broker(warren):
    # Regression: a connection.close that arrived while a channel still waited for a broker reply
    # (here channel.flow, sent without waiting for flow-ok) never got its close-ok.
    for _ in range(100):
        with RawClient(warren.amqp_port) as c:
            c.handshake()
            c.open_channel(1)
            c.send_method(1, CHANNEL_FLOW, flow_args(False))
            c.send_method(0, CONNECTION_CLOSE, close_args(REPLY_SUCCESS, "bye"))
            c.expect_method(1, CHANNEL_FLOW_OK)
            c.expect_method(0, CONNECTION_CLOSE_OK)


def test_connection_close_while_a_channel_fails_on_a_broker_reply(warren):
    # Regression: connection.close while a publish to a missing exchange was on its way to the vhost: the reply
    # closed the channel (404) and the connection's close-ok never came (the Go client's
    # TestIntegrationGetNextPublishSeqNo hung in Close).
    for _ in range(20):
        with RawClient(warren.amqp_port) as c:
            c.handshake()
            c.open_channel(1)
            c.publish(1, "no-such-exchange", "k", b"x")
            c.send_method(0, CONNECTION_CLOSE, close_args(REPLY_SUCCESS, "bye"))
            m = c.read_method()
            if m.method == CHANNEL_CLOSE:
                assert m.args["reply_code"] == NOT_FOUND
                m = c.read_method()
            assert m.method == CONNECTION_CLOSE_OK, m.name


# --- s. update-secret -------------------------------------------------------------------------------------------

def test_update_secret_gets_update_secret_ok(conn):
    conn.send_method(0, CONNECTION_UPDATE_SECRET, update_secret_args(b"guest", "rotation"))
    conn.expect_method(0, CONNECTION_UPDATE_SECRET_OK)
    conn.open_channel(1)
    conn.close_connection()


# --- t. garbage -------------------------------------------------------------------------------------------------

KNOWN_METHODS = [(10, 11), (10, 31), (10, 40), (10, 50), (10, 51), (10, 70), (20, 10), (20, 20), (20, 21),
                 (20, 40), (20, 41), (60, 40), (40, 10), (50, 10), (60, 20), (85, 10)]


def _garbage(rng: random.Random, i: int) -> bytes:
    kind = i % 3
    if kind == 0:  # raw noise
        return rng.randbytes(rng.randint(1, 2048))
    if kind == 1:  # well-framed frames with random type, channel, payload
        return b"".join(frame(rng.choice([1, 2, 3, 8]), rng.choice([0, 1, 2]), rng.randbytes(rng.randint(0, 64)))
                        for _ in range(rng.randint(1, 4)))
    # known methods with random arguments
    return b"".join(frame(FRAME_METHOD, rng.choice([0, 1]),
                          method_payload(*rng.choice(KNOWN_METHODS), rng.randbytes(rng.randint(0, 48))))
                    for _ in range(rng.randint(1, 4)))


def test_garbage_after_handshake_never_crashes(warren):
    rng = random.Random(0x5EED)
    for i in range(50):
        data = _garbage(rng, i)
        with RawClient(warren.amqp_port, timeout=5) as c:
            c.handshake()
            c.open_channel(1)
            try:
                c.send_raw(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            while True:
                try:
                    f = c.read_frame(timeout=0.5)
                except (PeerClosed, ReadTimeout):
                    break  # closed, or waiting for more input: both fine
                except ProtocolViolation as e:
                    raise AssertionError(f"payload {i}: server sent malformed frames: {e}") from None
                if f.method == CONNECTION_CLOSE:
                    try:
                        c.send_method(0, CONNECTION_CLOSE_OK)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
        if not warren.alive():
            pytest.fail(f"warren died on garbage payload {i}: {data[:64]!r}...\n{warren.log_tail()}")
    with RawClient(warren.amqp_port) as c:
        c.handshake()
        c.open_channel(1)
        c.close_connection()


# --- names that are not UTF-8 -----------------------------------------------------------------------------------

def _exchange_declare_args(name: bytes, kind: str) -> bytes:
    return struct.pack(">H", 0) + shortstr(name) + shortstr(kind) + bytes([0]) + struct.pack(">I", 0)


@pytest.mark.parametrize("name", [b"orders-\xff", b"\xe2\x82", b"\xc0\xaf", b"\xed\xa0\x80"])
def test_names_that_are_not_utf8_are_refused_at_declare(conn, warren, name):
    """Such a name could not be shown by the management API, exported or written to a cluster's etcd as it is:
    RabbitMQ takes it and then fails to list it; Warren refuses it when the queue or exchange would be created
    (docs/compatibility.md)."""
    conn.open_channel(1)
    conn.send_method(1, (50, 10), struct.pack(">H", 0) + shortstr(name) + bytes([0]) + struct.pack(">I", 0))
    code, text, class_id, method_id = conn.expect_channel_close(1, 406)
    assert text == "PRECONDITION_FAILED - queue name is not valid UTF-8"
    assert (class_id, method_id) == (50, 10)
    conn.open_channel(1)
    conn.send_method(1, (40, 10), _exchange_declare_args(name, "fanout"))
    code, text, class_id, method_id = conn.expect_channel_close(1, 406)
    assert text == "PRECONDITION_FAILED - exchange name is not valid UTF-8"
    # The same over the management API, the name percent-encoded in the path.
    quoted = "".join(f"%{b:02X}" for b in name)
    for kind, body in (("queues", b"{}"), ("exchanges", b'{"type":"fanout"}')):
        req = urllib.request.Request(f"http://127.0.0.1:{warren.http_port}/api/{kind}/%2F/{quoted}", data=body,
                                     method="PUT", headers={"Content-Type": "application/json",
                                                            "Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 400, kind
        assert b"not valid UTF-8" in err.value.read(), kind
    # Well-formed names of any script are fine.
    conn.open_channel(1)
    assert declare_queue(conn, 1, "commandes-été-€")["queue"] == "commandes-été-€"
    conn.send_method(1, (40, 10), _exchange_declare_args("事件".encode(), "topic"))
    conn.expect_method(1, (40, 11))
