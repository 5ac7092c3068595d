"""A raw AMQP 0-9-1 client over a plain socket, for black-box tests that must send what no real client sends.

Written from the 0-9-1 spec with struct, independent of Warren's codec (so the two cross-check each other).
It encodes and decodes only the handful of methods the integration tests need, and checks only what a test
asks it to: a malformed frame from the server raises ProtocolViolation, which fails the test.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"

FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_END = 0xCE
FRAME_MIN_SIZE = 4096

# Reply codes (spec constants).
REPLY_SUCCESS = 200
CONTENT_TOO_LARGE = 311
NO_ROUTE = 312
CONNECTION_FORCED = 320
INVALID_PATH = 402
ACCESS_REFUSED = 403
NOT_FOUND = 404
PRECONDITION_FAILED = 406
FRAME_ERROR = 501
SYNTAX_ERROR = 502
COMMAND_INVALID = 503
CHANNEL_ERROR = 504
UNEXPECTED_FRAME = 505
RESOURCE_ERROR = 506
NOT_ALLOWED = 530
NOT_IMPLEMENTED = 540
INTERNAL_ERROR = 541

# (class id, method id) of the methods the tests use.
CONNECTION_START = (10, 10)
CONNECTION_START_OK = (10, 11)
CONNECTION_SECURE = (10, 20)
CONNECTION_SECURE_OK = (10, 21)
CONNECTION_TUNE = (10, 30)
CONNECTION_TUNE_OK = (10, 31)
CONNECTION_OPEN = (10, 40)
CONNECTION_OPEN_OK = (10, 41)
CONNECTION_CLOSE = (10, 50)
CONNECTION_CLOSE_OK = (10, 51)
CONNECTION_BLOCKED = (10, 60)
CONNECTION_UNBLOCKED = (10, 61)
CONNECTION_UPDATE_SECRET = (10, 70)
CONNECTION_UPDATE_SECRET_OK = (10, 71)
CHANNEL_OPEN = (20, 10)
CHANNEL_OPEN_OK = (20, 11)
CHANNEL_FLOW = (20, 20)
CHANNEL_FLOW_OK = (20, 21)
CHANNEL_CLOSE = (20, 40)
CHANNEL_CLOSE_OK = (20, 41)
BASIC_PUBLISH = (60, 40)
BASIC_RETURN = (60, 50)

METHOD_NAMES = {
    CONNECTION_START: "connection.start",
    CONNECTION_START_OK: "connection.start-ok",
    CONNECTION_SECURE: "connection.secure",
    CONNECTION_SECURE_OK: "connection.secure-ok",
    CONNECTION_TUNE: "connection.tune",
    CONNECTION_TUNE_OK: "connection.tune-ok",
    CONNECTION_OPEN: "connection.open",
    CONNECTION_OPEN_OK: "connection.open-ok",
    CONNECTION_CLOSE: "connection.close",
    CONNECTION_CLOSE_OK: "connection.close-ok",
    CONNECTION_BLOCKED: "connection.blocked",
    CONNECTION_UNBLOCKED: "connection.unblocked",
    CONNECTION_UPDATE_SECRET: "connection.update-secret",
    CONNECTION_UPDATE_SECRET_OK: "connection.update-secret-ok",
    CHANNEL_OPEN: "channel.open",
    CHANNEL_OPEN_OK: "channel.open-ok",
    CHANNEL_FLOW: "channel.flow",
    CHANNEL_FLOW_OK: "channel.flow-ok",
    CHANNEL_CLOSE: "channel.close",
    CHANNEL_CLOSE_OK: "channel.close-ok",
    BASIC_PUBLISH: "basic.publish",
    BASIC_RETURN: "basic.return",
}


class ProtocolViolation(AssertionError):
    """The server sent bytes that are not valid AMQP 0-9-1 framing."""


class PeerClosed(Exception):
    """The server closed the socket (EOF or reset)."""


class ReadTimeout(AssertionError):
    """Nothing (or not enough) arrived from the server in time."""


# ---------------------------------------------------------------------------------------------------------------
# Encoding


@dataclass(frozen=True)
class Typed:
    """A field value with an explicit type tag, for tags Python types do not pick (f, b, s, T, ...)."""

    tag: str
    value: Any


def shortstr(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    if len(data) > 255:
        raise ValueError("shortstr longer than 255 bytes")
    return struct.pack(">B", len(data)) + data


def longstr(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return struct.pack(">I", len(data)) + data


def encode_field_value(value: Any) -> bytes:
    if isinstance(value, Typed):
        tag, v = value.tag, value.value
        simple = {"b": ">b", "B": ">B", "s": ">h", "u": ">H", "I": ">i", "i": ">I", "l": ">q", "L": ">Q",
                  "f": ">f", "d": ">d", "T": ">Q"}
        if tag in simple:
            return tag.encode() + struct.pack(simple[tag], v)
        if tag == "t":
            return b"t" + struct.pack(">B", 1 if v else 0)
        if tag == "S":
            return b"S" + longstr(v)
        if tag == "x":
            return b"x" + longstr(v)
        if tag == "F":
            return b"F" + encode_table(v)
        if tag == "V":
            return b"V"
        raise ValueError(f"unsupported explicit tag {tag!r}")
    if isinstance(value, bool):
        return b"t" + struct.pack(">B", 1 if value else 0)
    if isinstance(value, int):
        if -(2**31) <= value < 2**31:
            return b"I" + struct.pack(">i", value)
        return b"l" + struct.pack(">q", value)
    if isinstance(value, float):
        return b"d" + struct.pack(">d", value)
    if isinstance(value, str):
        return b"S" + longstr(value)
    if isinstance(value, (bytes, bytearray)):
        return b"x" + longstr(bytes(value))
    if isinstance(value, dict):
        return b"F" + encode_table(value)
    if isinstance(value, (list, tuple)):
        items = b"".join(encode_field_value(v) for v in value)
        return b"A" + struct.pack(">I", len(items)) + items
    if value is None:
        return b"V"
    raise TypeError(f"cannot encode {type(value).__name__} as a field value")


def encode_table_entries(table: dict[str, Any]) -> bytes:
    """The entries of a field table without the leading 4-byte length (as AMQPLAIN wants)."""
    return b"".join(shortstr(k) + encode_field_value(v) for k, v in table.items())


def encode_table(table: dict[str, Any]) -> bytes:
    entries = encode_table_entries(table)
    return struct.pack(">I", len(entries)) + entries


def encode_bits(*bits: bool) -> bytes:
    value = 0
    for i, bit in enumerate(bits):
        if bit:
            value |= 1 << i
    return struct.pack(">B", value)


def frame(frame_type: int, channel: int, payload: bytes, frame_end: int = FRAME_END) -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + bytes([frame_end])


def method_payload(class_id: int, method_id: int, args: bytes = b"") -> bytes:
    return struct.pack(">HH", class_id, method_id) + args


def method_frame(channel: int, method: tuple[int, int], args: bytes = b"") -> bytes:
    return frame(FRAME_METHOD, channel, method_payload(method[0], method[1], args))


def heartbeat_frame(channel: int = 0) -> bytes:
    return frame(FRAME_HEARTBEAT, channel, b"")


def content_header_payload(class_id: int, body_size: int, property_flags: int = 0, properties: bytes = b"") -> bytes:
    return struct.pack(">HHQH", class_id, 0, body_size, property_flags) + properties


# Argument encoders for the client-side methods.


def start_ok_args(client_properties: dict[str, Any] | bytes, mechanism: str, response: bytes,
                  locale: str = "en_US") -> bytes:
    props = client_properties if isinstance(client_properties, bytes) else encode_table(client_properties)
    return props + shortstr(mechanism) + longstr(response) + shortstr(locale)


def tune_ok_args(channel_max: int, frame_max: int, heartbeat: int) -> bytes:
    return struct.pack(">HIH", channel_max, frame_max, heartbeat)


def open_args(vhost: str) -> bytes:
    return shortstr(vhost) + shortstr("") + encode_bits(False)


def close_args(reply_code: int, reply_text: str, class_id: int = 0, method_id: int = 0) -> bytes:
    return struct.pack(">H", reply_code) + shortstr(reply_text) + struct.pack(">HH", class_id, method_id)


def channel_open_args() -> bytes:
    return shortstr("")


def flow_args(active: bool) -> bytes:
    return encode_bits(active)


def update_secret_args(new_secret: bytes | str, reason: str) -> bytes:
    return longstr(new_secret) + shortstr(reason)


def publish_args(exchange: str, routing_key: str, mandatory: bool = False, immediate: bool = False) -> bytes:
    return struct.pack(">H", 0) + shortstr(exchange) + shortstr(routing_key) + encode_bits(mandatory, immediate)


def plain_response(user: str, password: str) -> bytes:
    return b"\x00" + user.encode() + b"\x00" + password.encode()


def amqplain_response(user: str, password: str) -> bytes:
    return encode_table_entries({"LOGIN": user, "PASSWORD": password})


DEFAULT_CLIENT_PROPERTIES: dict[str, Any] = {
    "product": "warren-tests-raw",
    "platform": "Python",
    "capabilities": {"authentication_failure_close": True, "basic.nack": True,
                     "consumer_cancel_notify": True, "publisher_confirms": True},
}


# ---------------------------------------------------------------------------------------------------------------
# Decoding


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ProtocolViolation(f"truncated: need {n} bytes at {self.pos} of {len(self.data)}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str):
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size))

    def octet(self) -> int:
        return self.unpack(">B")[0]

    def short(self) -> int:
        return self.unpack(">H")[0]

    def long(self) -> int:
        return self.unpack(">I")[0]

    def shortstr(self) -> str:
        return self.take(self.octet()).decode("utf-8", "replace")

    def longstr(self) -> bytes:
        return self.take(self.long())

    def table(self) -> dict[str, Any]:
        size = self.long()
        return decode_table_entries(self.take(size))

    def at_end(self) -> bool:
        return self.pos == len(self.data)


def decode_table_entries(data: bytes) -> dict[str, Any]:
    r = _Reader(data)
    out: dict[str, Any] = {}
    while not r.at_end():
        key = r.shortstr()
        out[key] = _decode_field_value(r)
    return out


def decode_table(data: bytes) -> dict[str, Any]:
    """A field table including its 4-byte length prefix."""
    r = _Reader(data)
    table = r.table()
    if not r.at_end():
        raise ProtocolViolation("bytes after field table")
    return table


def _decode_field_value(r: _Reader) -> Any:
    tag = chr(r.octet())
    simple = {"b": ">b", "B": ">B", "s": ">h", "u": ">H", "I": ">i", "i": ">I", "l": ">q", "L": ">Q",
              "f": ">f", "d": ">d", "T": ">Q"}
    if tag in simple:
        return r.unpack(simple[tag])[0]
    if tag == "t":
        return r.octet() != 0
    if tag == "D":
        scale, value = r.unpack(">Bi")
        return (scale, value)
    if tag == "S":
        raw = r.longstr()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw
    if tag == "x":
        return r.longstr()
    if tag == "F":
        return r.table()
    if tag == "A":
        size = r.long()
        sub = _Reader(r.take(size))
        items = []
        while not sub.at_end():
            items.append(_decode_field_value(sub))
        return items
    if tag == "V":
        return None
    raise ProtocolViolation(f"unknown field type tag {tag!r}")


def decode_method_args(method: tuple[int, int], data: bytes) -> dict[str, Any]:
    """Decode the arguments of the server-sent methods the tests look at; others come back as {'raw': bytes}."""
    r = _Reader(data)
    if method == CONNECTION_START:
        out = {"version_major": r.octet(), "version_minor": r.octet(), "server_properties": r.table(),
               "mechanisms": r.longstr(), "locales": r.longstr()}
    elif method == CONNECTION_SECURE:
        out = {"challenge": r.longstr()}
    elif method == CONNECTION_TUNE:
        channel_max, frame_max, heartbeat = r.unpack(">HIH")
        out = {"channel_max": channel_max, "frame_max": frame_max, "heartbeat": heartbeat}
    elif method == CONNECTION_OPEN_OK:
        out = {"known_hosts": r.shortstr()}
    elif method in (CONNECTION_CLOSE, CHANNEL_CLOSE):
        out = {"reply_code": r.short(), "reply_text": r.shortstr(), "class_id": r.short(), "method_id": r.short()}
    elif method == CONNECTION_BLOCKED:
        out = {"reason": r.shortstr()}
    elif method == CHANNEL_OPEN_OK:
        out = {"channel_id": r.longstr()}
    elif method in (CHANNEL_FLOW, CHANNEL_FLOW_OK):
        out = {"active": bool(r.octet() & 1)}
    elif method == BASIC_RETURN:
        out = {"reply_code": r.short(), "reply_text": r.shortstr(), "exchange": r.shortstr(),
               "routing_key": r.shortstr()}
    elif method in (CONNECTION_CLOSE_OK, CHANNEL_CLOSE_OK, CONNECTION_UNBLOCKED, CONNECTION_UPDATE_SECRET_OK):
        out = {}
    else:
        return {"raw": data}
    if not r.at_end():
        raise ProtocolViolation(f"{METHOD_NAMES.get(method, method)}: {len(data) - r.pos} bytes after arguments")
    return out


@dataclass
class Frame:
    type: int
    channel: int
    payload: bytes

    @property
    def method(self) -> tuple[int, int] | None:
        if self.type != FRAME_METHOD or len(self.payload) < 4:
            return None
        return struct.unpack(">HH", self.payload[:4])

    def describe(self) -> str:
        if self.type == FRAME_METHOD and self.method is not None:
            name = METHOD_NAMES.get(self.method, f"method {self.method}")
            extra = ""
            if self.method in (CONNECTION_CLOSE, CHANNEL_CLOSE):
                args = decode_method_args(self.method, self.payload[4:])
                extra = f" {args['reply_code']} {args['reply_text']!r}"
            return f"{name} on channel {self.channel}{extra}"
        kind = {FRAME_HEADER: "content header", FRAME_BODY: "content body", FRAME_HEARTBEAT: "heartbeat"}
        return f"{kind.get(self.type, f'frame type {self.type}')} on channel {self.channel} ({len(self.payload)} bytes)"


@dataclass
class Method:
    channel: int
    method: tuple[int, int]
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return METHOD_NAMES.get(self.method, str(self.method))


@dataclass
class Handshake:
    start: dict[str, Any]
    tune: dict[str, Any]
    channel_max: int
    frame_max: int
    heartbeat: int


# ---------------------------------------------------------------------------------------------------------------
# The client


class RawClient:
    """One TCP connection to the broker. Connects on first use (or explicitly, to pick a source address)."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._buf = bytearray()
        self._eof = False
        self.frames_seen: list[Frame] = []

    # --- socket -------------------------------------------------------------------------------------------

    def connect(self, source_address: str | None = None) -> "RawClient":
        if self.sock is not None:
            raise RuntimeError("already connected")
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if source_address is not None:
            sock.bind((source_address, 0))
        sock.settimeout(self.timeout)
        sock.connect((self.host, self.port))
        self.sock = sock
        return self

    def _ensure(self) -> socket.socket:
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self._ensure().sendall(data)

    def _fill(self, need: int, deadline: float) -> None:
        sock = self._ensure()
        while len(self._buf) < need:
            if self._eof:
                raise PeerClosed(f"server closed the socket ({len(self._buf)} unread bytes)")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ReadTimeout(f"timed out waiting for {need} bytes (have {len(self._buf)})")
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                raise ReadTimeout(f"timed out waiting for {need} bytes (have {len(self._buf)})") from None
            except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
                self._eof = True
                continue
            if not chunk:
                self._eof = True
                continue
            self._buf += chunk

    def read_bytes(self, n: int, timeout: float | None = None) -> bytes:
        self._fill(n, time.monotonic() + (self.timeout if timeout is None else timeout))
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def read_until_closed(self, timeout: float | None = None) -> bytes:
        """Everything the server still sends until it closes the socket; ReadTimeout if it does not."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        try:
            self._fill(1 << 62, deadline)
        except PeerClosed:
            pass
        out = bytes(self._buf)
        self._buf.clear()
        return out

    # --- frames -------------------------------------------------------------------------------------------

    def send_frame(self, frame_type: int, channel: int, payload: bytes, frame_end: int = FRAME_END) -> None:
        self.send_raw(frame(frame_type, channel, payload, frame_end))

    def send_method(self, channel: int, method: tuple[int, int], args: bytes = b"") -> None:
        self.send_raw(method_frame(channel, method, args))

    def send_heartbeat(self, channel: int = 0) -> None:
        self.send_raw(heartbeat_frame(channel))

    def send_protocol_header(self, header: bytes = PROTOCOL_HEADER) -> None:
        self.send_raw(header)

    def read_frame(self, timeout: float | None = None) -> Frame:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        self._fill(7, deadline)
        frame_type, channel, size = struct.unpack(">BHI", self._buf[:7])
        if frame_type not in (FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT):
            raise ProtocolViolation(f"server sent frame type {frame_type}: {bytes(self._buf[:16])!r}")
        self._fill(7 + size + 1, deadline)
        payload = bytes(self._buf[7:7 + size])
        end = self._buf[7 + size]
        del self._buf[:7 + size + 1]
        if end != FRAME_END:
            raise ProtocolViolation(f"server frame-end octet {end:#x}")
        if frame_type == FRAME_HEARTBEAT and (channel != 0 or payload):
            raise ProtocolViolation(f"server heartbeat on channel {channel} with {len(payload)} bytes")
        f = Frame(frame_type, channel, payload)
        self.frames_seen.append(f)
        return f

    def read_method(self, timeout: float | None = None, skip_heartbeats: bool = True) -> Method:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            f = self.read_frame(max(0.0, deadline - time.monotonic()))
            if f.type == FRAME_HEARTBEAT and skip_heartbeats:
                continue
            if f.method is None:
                raise AssertionError(f"expected a method frame, got {f.describe()}")
            return Method(f.channel, f.method, decode_method_args(f.method, f.payload[4:]))

    def expect_method(self, channel: int, method: tuple[int, int], timeout: float | None = None) -> dict[str, Any]:
        m = self.read_method(timeout)
        if m.channel != channel or m.method != method:
            detail = ""
            if m.method in (CONNECTION_CLOSE, CHANNEL_CLOSE):
                detail = f" ({m.args['reply_code']} {m.args['reply_text']!r})"
            raise AssertionError(f"expected {METHOD_NAMES.get(method, method)} on channel {channel}, "
                                 f"got {m.name} on channel {m.channel}{detail}")
        return m.args

    def wait_closed(self, timeout: float | None = None, allow_frames: bool = True) -> list[Frame]:
        """Read until the server closes the socket; returns the frames it sent first. ReadTimeout if it stays open."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        frames: list[Frame] = []
        while True:
            try:
                f = self.read_frame(max(0.0, deadline - time.monotonic()))
            except PeerClosed:
                break
            if not allow_frames and f.type != FRAME_HEARTBEAT:
                raise AssertionError(f"expected the socket to close, got {f.describe()}")
            frames.append(f)
        return frames

    def closed_within(self, timeout: float) -> bool:
        try:
            self.wait_closed(timeout)
            return True
        except ReadTimeout:
            return False

    # --- connection class ---------------------------------------------------------------------------------

    def read_start(self) -> dict[str, Any]:
        return self.expect_method(0, CONNECTION_START)

    def send_start_ok(self, mechanism: str = "PLAIN", response: bytes | None = None,
                      client_properties: dict[str, Any] | bytes | None = None, locale: str = "en_US") -> None:
        if response is None:
            response = plain_response("guest", "guest")
        props = DEFAULT_CLIENT_PROPERTIES if client_properties is None else client_properties
        self.send_method(0, CONNECTION_START_OK, start_ok_args(props, mechanism, response, locale))

    def read_tune(self) -> dict[str, Any]:
        return self.expect_method(0, CONNECTION_TUNE)

    def send_tune_ok(self, channel_max: int, frame_max: int, heartbeat: int) -> None:
        self.send_method(0, CONNECTION_TUNE_OK, tune_ok_args(channel_max, frame_max, heartbeat))

    def send_open(self, vhost: str = "/") -> None:
        self.send_method(0, CONNECTION_OPEN, open_args(vhost))

    def login(self, user: str = "guest", password: str = "guest", mechanism: str = "PLAIN",
              client_properties: dict[str, Any] | bytes | None = None,
              source_address: str | None = None) -> dict[str, Any]:
        """Protocol header, connection.start, start-ok. Returns connection.start's arguments."""
        if self.sock is None:
            self.connect(source_address)
        self.send_protocol_header()
        start = self.read_start()
        if mechanism == "PLAIN":
            response = plain_response(user, password)
        elif mechanism == "AMQPLAIN":
            response = amqplain_response(user, password)
        else:
            response = plain_response(user, password)
        self.send_start_ok(mechanism, response, client_properties)
        return start

    def handshake(self, user: str = "guest", password: str = "guest", vhost: str = "/", heartbeat: int = 0,
                  frame_max: int = 0, channel_max: int = 0, source_address: str | None = None,
                  mechanism: str = "PLAIN", client_properties: dict[str, Any] | None = None) -> Handshake:
        """The full opening handshake up to connection.open-ok.

        frame_max/channel_max 0 take the server's tune values; heartbeat is sent as given (0 disables)."""
        start = self.login(user, password, mechanism, client_properties, source_address)
        tune = self.read_tune()
        cm = channel_max or tune["channel_max"]
        fm = frame_max or tune["frame_max"]
        self.send_tune_ok(cm, fm, heartbeat)
        self.send_open(vhost)
        self.expect_method(0, CONNECTION_OPEN_OK)
        return Handshake(start, tune, cm, fm, heartbeat)

    def expect_connection_close(self, code: int | None = None,
                                timeout: float | None = None) -> tuple[int, str, int, int]:
        """Expect connection.close (with `code`), answer close-ok, and check the server then closes the socket."""
        args = self.expect_method(0, CONNECTION_CLOSE, timeout)
        got = (args["reply_code"], args["reply_text"], args["class_id"], args["method_id"])
        if code is not None and got[0] != code:
            raise AssertionError(f"expected connection.close {code}, got {got[0]} {got[1]!r}")
        try:
            self.send_method(0, CONNECTION_CLOSE_OK)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it closed without waiting for close-ok; the socket is closed either way
        self.wait_closed(timeout, allow_frames=False)
        return got

    def close_connection(self, timeout: float | None = None, stays_open: float = 0.05) -> None:
        """Client-initiated close: connection.close, expect close-ok, then check that the server sends nothing more
        and leaves the socket open for `stays_open` seconds (as RabbitMQ, it lets the client close first), and close
        it."""
        self.send_method(0, CONNECTION_CLOSE, close_args(REPLY_SUCCESS, "bye"))
        self.expect_method(0, CONNECTION_CLOSE_OK, timeout)
        self.expect_silence(stays_open)
        self.close()

    def expect_silence(self, seconds: float) -> None:
        """The server sends nothing and keeps the socket open for `seconds`."""
        try:
            f = self.read_frame(seconds)
        except ReadTimeout:
            return
        except PeerClosed:
            raise AssertionError("the server closed the socket") from None
        raise AssertionError(f"expected nothing from the server, got {f.describe()}")

    # --- channel class ------------------------------------------------------------------------------------

    def open_channel(self, channel: int) -> None:
        self.send_method(channel, CHANNEL_OPEN, channel_open_args())
        self.expect_method(channel, CHANNEL_OPEN_OK)

    def close_channel(self, channel: int) -> None:
        self.send_method(channel, CHANNEL_CLOSE, close_args(REPLY_SUCCESS, "bye"))
        self.expect_method(channel, CHANNEL_CLOSE_OK)

    def expect_channel_close(self, channel: int, code: int | None = None, send_close_ok: bool = True,
                             timeout: float | None = None) -> tuple[int, str, int, int]:
        args = self.expect_method(channel, CHANNEL_CLOSE, timeout)
        got = (args["reply_code"], args["reply_text"], args["class_id"], args["method_id"])
        if code is not None and got[0] != code:
            raise AssertionError(f"expected channel.close {code}, got {got[0]} {got[1]!r}")
        if send_close_ok:
            self.send_method(channel, CHANNEL_CLOSE_OK)
        return got

    def flow(self, channel: int, active: bool) -> bool:
        self.send_method(channel, CHANNEL_FLOW, flow_args(active))
        return self.expect_method(channel, CHANNEL_FLOW_OK)["active"]

    # --- basic --------------------------------------------------------------------------------------------

    def publish(self, channel: int, exchange: str, routing_key: str, body: bytes, mandatory: bool = False) -> None:
        """basic.publish + content header + one body frame (body must fit one frame), in one write."""
        data = method_frame(channel, BASIC_PUBLISH, publish_args(exchange, routing_key, mandatory))
        data += frame(FRAME_HEADER, channel, content_header_payload(60, len(body)))
        if body:
            data += frame(FRAME_BODY, channel, body)
        self.send_raw(data)


def connect_and_handshake(port: int, host: str = "127.0.0.1", **kwargs) -> RawClient:
    client = RawClient(port, host)
    try:
        client.handshake(**kwargs)
    except BaseException:
        client.close()
        raise
    return client


def iter_frames(data: bytes) -> Iterable[Frame]:
    """Split a byte string into frames (used by tests that read raw bytes)."""
    r = _Reader(data)
    while not r.at_end():
        frame_type, channel, size = r.unpack(">BHI")
        payload = r.take(size)
        if r.octet() != FRAME_END:
            raise ProtocolViolation("bad frame end")
        yield Frame(frame_type, channel, payload)
