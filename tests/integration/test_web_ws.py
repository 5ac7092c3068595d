"""WebSocket conformance of the web gateway's /ws, case groups after the Autobahn TestSuite's (which cannot run
here), with our own raw client (tests/support/ws_client.py): framing, pings, reserved bits and opcodes,
fragmentation, UTF-8, the closing handshake, limits, the opening handshake and permessage-deflate.

The gateway is not an echo server: a text message is a JSON operation, so the tests send {"op": "ping"} (padded
with JSON whitespace to the length a case needs) and read the reply. Each test gets its own warren, and a
bystander connection opened before the test must still be served after it (autouse `bystander`): a bad
connection affects nobody else."""

import json
import struct
import threading
import time

import pytest

from support.web_gateway import Gateway, gateway_args
from support.ws_client import (
    OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, ClosedByServer, HandshakeRefused, RawHttp, WsClient,
    deflate_message, format_request, query,
)

DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"


@pytest.fixture
def gw(warren_factory, request):
    marker = request.node.get_closest_marker("gateway_args")
    return Gateway(warren_factory(*gateway_args(*(marker.args if marker else ()))))


@pytest.fixture(autouse=True)
def bystander(gw):
    """A connection opened before the test; afterwards it and a fresh one are still served."""
    ws = gw.ws("bystander")
    ping_op(ws, "before")
    yield ws
    if gw.proc.stopped:
        return
    gw.proc.assert_alive()
    ping_op(ws, "after")
    with gw.ws("newcomer") as fresh:
        ping_op(fresh, "fresh")
    ws.close_socket()


@pytest.fixture
def ws(gw):
    with gw.ws("alice") as c:
        yield c


def ping_op(ws: WsClient, ident: str = "p") -> dict:
    r = ws.request({"op": "ping", "id": ident})
    assert r["type"] == "ok" and r.get("op") == "ping", r
    return r


def padded_ping(n: int, ident: str) -> bytes:
    """A ping operation of exactly n bytes (JSON whitespace before the closing brace)."""
    head = '{"op":"ping","id":"%s"' % ident
    assert n >= len(head) + 1
    return (head + " " * (n - len(head) - 1) + "}").encode()


def expect_error_reply(ws: WsClient, code: int) -> dict:
    m = ws.recv_json()
    assert m.get("seq", "absent") is None and m.get("type") == "error" and m.get("code") == code, m
    return m


# --- 1. framing -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 65535, 65536])
def test_text_message_lengths(ws, n):
    # 0 and 1 byte cannot be an operation: a 400 reply, and the connection goes on. 65536 is --ws-max-message's
    # default, allowed. The lengths cross the 7-bit, 16-bit and 64-bit header forms.
    if n < 30:
        ws.send_frame(OP_TEXT, b" " * n)
        expect_error_reply(ws, 400)
    else:
        ws.send_frame(OP_TEXT, padded_ping(n, f"len{n}"))
        r = ws.recv_json()
        assert r["type"] == "ok" and r["id"] == f"len{n}", r
    ping_op(ws)


def test_text_message_in_the_longer_header_forms(ws):
    # 65536 bytes needs the 64-bit length; 200 the 16-bit one.
    for n in (200, 65536):
        ws.send_frame(OP_TEXT, padded_ping(n, f"f{n}"))
        assert ws.recv_json()["id"] == f"f{n}"


@pytest.mark.parametrize("n", [0, 125, 126, 65535, 65536])
def test_binary_message_does_not_break_the_protocol(ws, n):
    # Operations are text; the contract does not say what a binary message gets. Allowed: an error reply (or
    # none) with the connection going on, or a close with 1003 (unsupported data). Not allowed: 1002, or a
    # connection dropped without a close.
    ws.send_frame(OP_BINARY, b"\x00\xff" * (n // 2) + b"\x01" * (n % 2))
    try:
        ping_op(ws, "after-binary")
    except ClosedByServer as e:
        assert e.code == 1003, f"binary message of {n} bytes closed the connection with {e.code}"
        return
    for m in ws.pending:
        assert m.get("type") == "error" and m.get("seq", "absent") is None, m


@pytest.mark.parametrize("size", [10, 1000, 100_000])
def test_server_frames_in_every_length_form(gw, ws, size):
    # An event larger than 65535 bytes comes in a 64-bit length frame, etc.; the client checks each form is the
    # shortest and the content is intact.
    data = "x" * size
    assert gw.send("alice", data)
    ev = ws.recv_json()
    assert ev["type"] == "message" and ev["data"] == data


def test_many_small_messages_in_one_write(ws):
    # 200 operations in one TCP write: the server splits them and answers each, in order.
    ws.send_raw(b"".join(WsClient.encode_frame(OP_TEXT, json.dumps({"op": "ping", "id": i}).encode())
                         for i in range(200)))
    ids = [ws.recv_json()["id"] for _ in range(200)]
    assert ids == list(range(200))


def test_frame_delivered_one_byte_at_a_time(ws):
    frame = WsClient.encode_frame(OP_TEXT, b'{"op":"ping","id":"slow"}')
    for i in range(len(frame)):
        ws.send_raw(frame[i:i + 1])
        time.sleep(0.002)
    assert ws.recv_json()["id"] == "slow"


def test_unmasked_client_frame_is_1002(ws):
    ws.send_frame(OP_TEXT, b'{"op":"ping"}', mask=False)
    ws.expect_close(1002)


@pytest.mark.parametrize("payload,form", [(b'{"op":"ping"}', 2), (b'{"op":"ping"}', 8), (padded_ping(300, "x"), 8)],
                         ids=["16-bit-for-13", "64-bit-for-13", "64-bit-for-300"])
def test_length_not_in_its_shortest_form_is_1002(ws, payload, form):
    ws.send_frame(OP_TEXT, payload, length_bytes=form)
    ws.expect_close(1002)


def test_64_bit_length_with_the_top_bit_set_is_1002(ws):
    ws.send_raw(struct.pack(">BBQ", 0x81, 0x80 | 127, 1 << 63) + b"\x00\x00\x00\x00")
    ws.expect_close(1002)


# --- 2. pings and pongs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"hello", bytes(range(125)), "κόσμε".encode()],
                         ids=["empty", "text", "125-bytes", "utf8"])
def test_ping_gets_pong_with_the_same_payload(ws, payload):
    ws.send_frame(OP_PING, payload)
    f = ws.recv_frame()
    assert (f.opcode, f.payload, f.fin) == (OP_PONG, payload, True)


def test_ten_pings_get_ten_pongs_in_order(ws):
    for i in range(10):
        ws.send_frame(OP_PING, f"ping {i}")
    got = [ws.recv_frame() for _ in range(10)]
    assert [(f.opcode, f.payload) for f in got] == [(OP_PONG, f"ping {i}".encode()) for i in range(10)]


def test_ping_over_125_bytes_is_1002(ws):
    ws.send_frame(OP_PING, b"x" * 126)
    ws.expect_close(1002)


def test_unsolicited_pong_is_ignored(ws):
    ws.send_frame(OP_PONG, b"unasked")
    ws.send_frame(OP_PONG, b"")
    ping_op(ws)


def test_fragmented_ping_is_1002(ws):
    ws.send_frame(OP_PING, b"abc", fin=False)
    ws.send_frame(OP_CONT, b"def")
    ws.expect_close(1002)


# --- 3. reserved bits -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rsv", [0b100, 0b010, 0b001, 0b011, 0b111])
def test_reserved_bits_without_an_extension_are_1002(ws, rsv):
    ws.send_frame(OP_TEXT, b'{"op":"ping"}', rsv=rsv)
    ws.expect_close(1002)


def test_reserved_bits_on_a_ping_are_1002(ws):
    ws.send_frame(OP_PING, b"x", rsv=0b010)
    ws.expect_close(1002)


def test_reserved_bits_after_a_good_message_are_1002(ws):
    # The good operation is answered first (the reply may come before the close), then the close.
    ws.send_frame(OP_TEXT, b'{"op":"ping","id":"good"}')
    ws.send_frame(OP_TEXT, b'{"op":"ping"}', rsv=0b001)
    ws.expect_close(1002)


# --- 4. reserved opcodes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcode_is_1002(ws, opcode):
    ws.send_frame(opcode, b"" if opcode >= 8 else b"abc")
    ws.expect_close(1002)


# --- 5. fragmentation -----------------------------------------------------------------------------------------


def test_fragmented_text_message(ws):
    msg = b'{"op":"ping","id":"frag"}'
    ws.send_fragments(OP_TEXT, [msg[:5], msg[5:12], msg[12:]])
    assert ws.recv_json()["id"] == "frag"


def test_text_message_one_byte_per_fragment_with_empty_fragments(ws):
    msg = b'{"op":"ping","id":"bytes"}'
    parts = [b""] + [msg[i:i + 1] for i in range(len(msg))] + [b""]
    ws.send_fragments(OP_TEXT, parts)
    assert ws.recv_json()["id"] == "bytes"


def test_control_frames_between_fragments_are_answered_at_once(ws):
    msg = b'{"op":"ping","id":"inter"}'
    ws.send_frame(OP_TEXT, msg[:8], fin=False)
    ws.send_frame(OP_PING, b"between")
    f = ws.recv_frame()  # before the message is complete
    assert (f.opcode, f.payload) == (OP_PONG, b"between")
    ws.send_frame(OP_PONG, b"unasked")
    ws.send_frame(OP_CONT, msg[8:16], fin=False)
    ws.send_frame(OP_PING, b"again")
    ws.send_frame(OP_CONT, msg[16:], fin=True)
    f = ws.recv_frame()
    assert (f.opcode, f.payload) == (OP_PONG, b"again")
    assert ws.recv_json()["id"] == "inter"


def test_continuation_without_a_started_message_is_1002(ws):
    ws.send_frame(OP_CONT, b'{"op":"ping"}')
    ws.expect_close(1002)


def test_continuation_after_a_finished_message_is_1002(ws):
    ws.send_frame(OP_TEXT, b'{"op":"ping","id":"done"}')
    ws.send_frame(OP_CONT, b" ")
    ws.expect_close(1002)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_new_message_inside_a_fragmented_one_is_1002(ws, opcode):
    ws.send_frame(OP_TEXT, b'{"op":', fin=False)
    ws.send_frame(opcode, b'"ping"}')
    ws.expect_close(1002)


# --- 6. UTF-8 -------------------------------------------------------------------------------------------------

# Whole text messages, each invalid UTF-8 somewhere after a valid start.
BAD_UTF8 = {
    "lone-continuation": b'{"op":"ping","id":"\x80"}',
    "overlong-slash": b'{"op":"ping","id":"\xc0\xaf"}',
    "overlong-3-byte": b'{"op":"ping","id":"\xe0\x80\xaf"}',
    "surrogate": b'{"op":"ping","id":"\xed\xa0\x80"}',
    "above-10ffff": b'{"op":"ping","id":"\xf4\x90\x80\x80"}',
    "invalid-byte-ff": b'{"op":"ping","id":"\xff"}',
    "truncated-at-end": b'{"op":"ping"} \xce',
    "autobahn-6.3.1": b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
}


@pytest.mark.parametrize("message", BAD_UTF8.values(), ids=BAD_UTF8.keys())
def test_invalid_utf8_in_a_text_message_is_1007(ws, message):
    ws.send_frame(OP_TEXT, message)
    ws.expect_close(1007)


def test_valid_utf8_split_inside_characters_across_fragments(ws):
    ident = "κόσμε-€-𝄞"
    msg = json.dumps({"op": "ping", "id": ident}, ensure_ascii=False).encode()
    cuts = [msg.index("ό".encode()) + 1, msg.index("€".encode()) + 2, msg.index("𝄞".encode()) + 1,
            msg.index("𝄞".encode()) + 3]
    parts = [msg[a:b] for a, b in zip([0] + cuts, cuts + [len(msg)])]
    ws.send_fragments(OP_TEXT, parts)
    assert ws.recv_json()["id"] == ident


def test_invalid_utf8_across_fragments_is_1007(ws):
    # The first fragment ends in the first byte of a 2-byte sequence; the next does not continue it.
    ws.send_frame(OP_TEXT, b'{"op":"ping","id":"\xce', fin=False)
    ws.send_frame(OP_CONT, b'A"}')
    ws.expect_close(1007)


def test_text_ending_inside_a_character_across_fragments_is_1007(ws):
    ws.send_frame(OP_TEXT, b'{"op":"ping"} ', fin=False)
    ws.send_frame(OP_CONT, b"\xf0\x9d")  # the first half of a 4-byte character, then the end of the message
    ws.expect_close(1007)


def test_invalid_utf8_fails_before_the_frame_is_complete(ws):
    # Autobahn 6.4: a frame announcing 200 bytes of which only the first 20, holding a bad byte, are sent.
    payload = b'{"op":"ping","id":"\xff' + b" " * 180
    frame = WsClient.encode_frame(OP_TEXT, payload)
    ws.send_raw(frame[:2 + 2 + 4 + 20])  # header (16-bit length), mask key, 20 payload bytes
    ws.expect_close(1007, timeout=3)


# --- 7. closing -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999])
def test_close_code_is_echoed(ws, code):
    ws.send_close(code, "bye")
    ws.expect_close(code, reply=False)


def test_empty_close_gets_an_empty_close(ws):
    ws.send_close(None)
    ws.expect_close(None, reply=False)


def test_close_with_the_longest_reason(ws):
    ws.send_close(1000, "é" * 61 + "x")  # 123 bytes of UTF-8
    ws.expect_close(1000, reply=False)


def test_close_after_a_fragment_is_still_a_close(ws):
    ws.send_frame(OP_TEXT, b'{"op":', fin=False)
    ws.send_close(1000)
    ws.expect_close(1000, reply=False)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
def test_invalid_close_code_is_1002(ws, code):
    ws.send_close(code)
    ws.expect_close(1002, reply=False)


def test_close_with_a_1_byte_payload_is_1002(ws):
    ws.send_frame(OP_CLOSE, b"\x03")
    ws.expect_close(1002, reply=False)


def test_close_reason_not_utf8_is_1007(ws):
    ws.send_frame(OP_CLOSE, struct.pack(">H", 1000) + b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80")
    ws.expect_close(1007, reply=False)


def test_close_payload_over_125_bytes_is_1002(ws):
    ws.send_frame(OP_CLOSE, struct.pack(">H", 1000) + b"x" * 124)
    ws.expect_close(1002, reply=False)


def test_nothing_is_answered_after_the_close(ws):
    # A ping operation and a ping frame right behind our close: the server echoes the close and nothing else.
    ws.send_raw(WsClient.encode_frame(OP_CLOSE, struct.pack(">H", 1000))
                + WsClient.encode_frame(OP_TEXT, b'{"op":"ping","id":"late"}')
                + WsClient.encode_frame(OP_PING, b"late"))
    f = ws.recv_frame()
    assert f.opcode == OP_CLOSE and f.close_code()[0] == 1000, f
    assert ws.http.wait_closed(5) == b"", "frames after the close echo"


def test_shutdown_closes_with_1001(gw, ws, bystander):
    stopper = threading.Thread(target=gw.proc.stop)  # SIGTERM, and a check that warren exits 0
    stopper.start()
    try:
        ws.expect_close(1001, timeout=5)
        bystander.expect_close(1001, timeout=5)
    finally:
        stopper.join(10)
    assert gw.proc.proc.returncode == 0


# --- 8. limits ------------------------------------------------------------------------------------------------


def test_message_over_the_default_max_is_1009(ws):
    ws.send_frame(OP_TEXT, padded_ping(65537, "big"))
    ws.expect_close(1009)


def test_fragments_summing_over_the_max_are_1009(ws):
    msg = padded_ping(65537, "big")
    ws.send_fragments(OP_TEXT, [msg[:40000], msg[40000:]])
    ws.expect_close(1009)


@pytest.mark.gateway_args("--ws-max-message", "1000")
def test_configured_max_message(gw, ws):
    ws.send_frame(OP_TEXT, padded_ping(1000, "at-limit"))
    assert ws.recv_json()["id"] == "at-limit"
    ws.send_fragments(OP_TEXT, [padded_ping(1001, "over")[:500], padded_ping(1001, "over")[500:]])
    ws.expect_close(1009)


def test_message_too_big_announced_in_the_header_alone(ws):
    # Only the header of a 1 GiB frame: the server decides on the length, without waiting for the payload.
    ws.send_raw(struct.pack(">BBQ", 0x81, 0x80 | 127, 1 << 30) + b"\x01\x02\x03\x04")
    ws.expect_close(1009, timeout=3)


# --- 9. opening handshake -------------------------------------------------------------------------------------


def upgrade_headers(version: str | None = "13", key: str | None = "dGhlIHNhbXBsZSBub25jZQ==") -> list:
    h = [("Upgrade", "websocket"), ("Connection", "Upgrade")]
    if key is not None:
        h.append(("Sec-WebSocket-Key", key))
    if version is not None:
        h.append(("Sec-WebSocket-Version", version))
    return h


def raw_upgrade(gw, headers):
    with RawHttp(gw.port) as c:
        c.send(format_request("GET", query("/ws", token=gw.token("alice")), gw.port, headers))
        return c.read_response()


def test_handshake_accept_key_for_the_rfc_example(gw):
    r = raw_upgrade(gw, upgrade_headers())
    assert r.status == 101, r
    assert r.headers["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 section 1.3


def test_handshake_without_key_is_400(gw):
    r = raw_upgrade(gw, upgrade_headers(key=None))
    assert r.status == 400, r


def test_handshake_with_a_key_that_is_not_16_bytes_is_400(gw):
    r = raw_upgrade(gw, upgrade_headers(key="c2hvcnQ="))
    assert r.status == 400, r


def test_handshake_without_version_is_400(gw):
    r = raw_upgrade(gw, upgrade_headers(version=None))
    assert r.status == 400, r


@pytest.mark.parametrize("version", ["8", "12", "14"])
def test_handshake_with_another_version_is_426_naming_13(gw, version):
    r = raw_upgrade(gw, upgrade_headers(version=version))
    assert r.status == 426, r
    assert r.headers.get("Sec-WebSocket-Version") == "13", r


def test_handshake_without_upgrade_header_is_not_an_upgrade(gw):
    r = raw_upgrade(gw, [h for h in upgrade_headers() if h[0] != "Upgrade"])
    assert r.status == 400, r


def test_permessage_deflate_is_agreed_without_context_takeover(gw):
    with gw.ws("alice", extensions=DEFLATE_OFFER) as c:
        ext = c.response.headers.get("Sec-WebSocket-Extensions")
        assert ext is not None, "permessage-deflate offer declined"
        params = [p.strip() for p in ext.split(";")]
        assert params[0] == "permessage-deflate"
        assert "server_no_context_takeover" in params and "client_no_context_takeover" in params, ext
        assert c.deflate


def test_plain_permessage_deflate_offer_gets_both_no_context_takeover_params(gw):
    with gw.ws("alice", extensions="permessage-deflate") as c:
        params = [p.strip() for p in c.response.headers["Sec-WebSocket-Extensions"].split(";")]
        assert {"server_no_context_takeover", "client_no_context_takeover"} <= set(params), params


def test_unknown_extension_is_not_agreed(gw):
    with WsClient(gw.port, query("/ws", token=gw.token("alice")), extensions="x-webkit-deflate-frame") as c:
        assert c.response.headers.get("Sec-WebSocket-Extensions") is None
        ping_op(c)


def test_compressed_messages_both_ways(gw):
    with gw.ws("alice", extensions=DEFLATE_OFFER) as c:
        # Each compressed message stands alone (no context takeover): the same text twice, compressed alike.
        for i in range(3):
            c.send_text(json.dumps({"op": "ping", "id": f"z{i}", "pad": "abc" * 100}), compress=True)
            assert c.recv_json()["id"] == f"z{i}"
        # A compressed message in fragments: RSV1 on the first frame only.
        payload = deflate_message(json.dumps({"op": "ping", "id": "zf", "pad": "q" * 500}).encode())
        c.send_frame(OP_TEXT, payload[:10], fin=False, rsv=0b100)
        c.send_frame(OP_CONT, payload[10:])
        assert c.recv_json()["id"] == "zf"
        # An uncompressed message on the same connection.
        ping_op(c, "plain")
        # A large, compressible event from the server: inflated by the client if it came compressed.
        big = "all work and no play " * 2000
        assert gw.send("alice", big)
        assert c.recv_json()["data"] == big
        print(f"server messages that came compressed: {c.compressed_received}")


def test_rsv1_on_a_continuation_is_1002(gw):
    with gw.ws("alice", extensions=DEFLATE_OFFER) as c:
        payload = deflate_message(b'{"op":"ping"}')
        c.send_frame(OP_TEXT, payload[:4], fin=False, rsv=0b100)
        c.send_frame(OP_CONT, payload[4:], rsv=0b100)
        c.expect_close(1002)


def test_rsv1_on_a_ping_is_1002_even_with_deflate(gw):
    with gw.ws("alice", extensions=DEFLATE_OFFER) as c:
        c.send_frame(OP_PING, b"x", rsv=0b100)
        c.expect_close(1002)


def test_compressed_data_that_does_not_inflate_is_1007(gw):
    with gw.ws("alice", extensions=DEFLATE_OFFER) as c:
        c.send_frame(OP_TEXT, b"\xff\xff\xff\xff garbage", rsv=0b100)
        c.expect_close(1007)


def test_compressed_message_inflating_over_the_max_is_1009(gw):
    # 1 MB of spaces compresses to about 1 KB: the limit applies to the inflated size.
    with gw.ws("alice", extensions=DEFLATE_OFFER) as c:
        payload = deflate_message(b'{"op":"ping"' + b" " * 1_000_000 + b"}")
        assert len(payload) < 65536
        c.send_frame(OP_TEXT, payload, rsv=0b100)
        c.expect_close(1009)


def test_refused_upgrade_is_an_http_answer(gw):
    # The client sees a plain HTTP answer and a closed connection, not a 101 (here: no token).
    with pytest.raises(HandshakeRefused) as e:
        WsClient(gw.port, "/ws").connect()
    assert e.value.response.status == 401
