"""Raw clients for the web gateway's black-box tests: a WebSocket client over a plain socket, HS256 tokens, and
readers for Server-Sent Events, chunked streaming and plain HTTP.

The WebSocket client is written from RFC 6455 and RFC 7692 with the standard library only, independent of the
gateway's codec (so the two cross-check each other), and it sends whatever a test asks for: unmasked frames,
reserved bits and opcodes, lengths in a longer form than needed, fragments in any order, bad close frames. It
is what the Autobahn TestSuite would do, which cannot run here. It checks what the server sends: a masked or
malformed server frame raises ProtocolViolation, which fails the test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import struct
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


class ProtocolViolation(AssertionError):
    """The server sent bytes that break HTTP or RFC 6455."""


class PeerClosed(Exception):
    """The server closed the TCP connection (EOF or reset)."""


class ReadTimeout(AssertionError):
    """Nothing (or not enough) arrived from the server in time."""


class ClosedByServer(AssertionError):
    """A WebSocket close frame arrived where a message was expected."""

    def __init__(self, code: int | None, reason: str):
        super().__init__(f"server closed the WebSocket with {code} {reason!r}")
        self.code = code
        self.reason = reason


# --- tokens -----------------------------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(secret: str | bytes | None, sub: str | None, *, exp: float | None = None, ttl: float | None = 3600,
             nbf: float | None = None, rooms: list[str] | None = None, publish: list[str] | None = None,
             alg: str = "HS256", extra: dict[str, Any] | None = None, sign_with: str | bytes | None = None) -> str:
    """A compact JWS. HS256 is signed with `sign_with` if given (a wrong key), else `secret`; alg "none" gets an
    empty signature. exp defaults to now + ttl (ttl None: no exp); sub None leaves the claim out."""
    now = time.time()
    claims: dict[str, Any] = {"iat": int(now)}
    if sub is not None:
        claims["sub"] = sub
    if exp is not None:
        claims["exp"] = int(exp)
    elif ttl is not None:
        claims["exp"] = int(now + ttl)
    if nbf is not None:
        claims["nbf"] = int(nbf)
    if rooms is not None:
        claims["rooms"] = rooms
    if publish is not None:
        claims["publish"] = publish
    claims.update(extra or {})
    header = {"alg": alg, "typ": "JWT"}
    signing_input = b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + \
        b64url(json.dumps(claims, separators=(",", ":")).encode())
    if alg == "none":
        return signing_input + "."
    key = sign_with if sign_with is not None else secret
    assert key is not None, "an HS256 token needs a key"
    key = key.encode() if isinstance(key, str) else key
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


# --- HTTP over a raw socket -------------------------------------------------------------------------------------


class Headers:
    """Response headers in order, looked up without regard to case; repeated headers are joined with ', '."""

    def __init__(self, items: list[tuple[str, str]]):
        self.items = items

    def get(self, name: str, default: str | None = None) -> str | None:
        values = [v for k, v in self.items if k.lower() == name.lower()]
        return ", ".join(values) if values else default

    def __getitem__(self, name: str) -> str:
        v = self.get(name)
        if v is None:
            raise KeyError(name)
        return v

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def __repr__(self) -> str:
        return repr(self.items)


@dataclass
class HttpResponse:
    status: int
    reason: str
    headers: Headers
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"HTTP {self.status} {self.reason} {self.headers!r} {self.body[:300]!r}"


_INCOMPLETE = object()


class RawHttp:
    """One TCP connection with a read buffer: send bytes, read a response head, a body (Content-Length, chunked,
    or up to EOF), chunks one by one, or wait for the server to close."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0, source_address: str | None = None):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source_address, 0) if source_address else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    @property
    def closed(self) -> bool:
        """Closed by us, or seen closed by the server."""
        return self.eof or self.sock.fileno() == -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def try_send(self, data: bytes) -> bool:
        """Send, but a server that already closed (it may answer and close before reading all of a request) is
        not an error here: the test reads the answer next."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _fill(self, deadline: float) -> None:
        if self.eof:
            raise PeerClosed("the server closed the connection")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ReadTimeout(f"timed out with {len(self.buf)} bytes buffered: {bytes(self.buf[:200])!r}")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise ReadTimeout(f"timed out with {len(self.buf)} bytes buffered: {bytes(self.buf[:200])!r}") from None
        except ConnectionResetError:
            self.eof = True
            raise PeerClosed("the server reset the connection") from None
        if not data:
            self.eof = True
            raise PeerClosed("the server closed the connection")
        self.buf += data

    def read_exact(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            self._fill(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_until(self, delim: bytes, deadline: float, limit: int = 1 << 20) -> bytes:
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                out = bytes(self.buf[:i + len(delim)])
                del self.buf[:i + len(delim)]
                return out
            if len(self.buf) > limit:
                raise ProtocolViolation(f"no {delim!r} in {limit} bytes")
            self._fill(deadline)

    def read_head(self, timeout: float = 5.0) -> tuple[int, str, Headers]:
        head = self.read_until(b"\r\n\r\n", time.monotonic() + timeout, limit=65536)
        lines = head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolViolation(f"bad status line {lines[0]!r}")
        items = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise ProtocolViolation(f"bad header line {line!r}")
            items.append((name, value.strip()))
        return int(parts[1]), parts[2] if len(parts) > 2 else "", Headers(items)

    def read_chunk(self, timeout: float = 5.0) -> bytes | None:
        """The next chunk of a chunked body, or None for the last (empty) chunk. A time-out consumes nothing."""
        deadline = time.monotonic() + timeout
        while True:
            got = self._parse_chunk()
            if got is not _INCOMPLETE:
                return got
            self._fill(deadline)

    def _parse_chunk(self):
        buf = self.buf
        i = buf.find(b"\r\n")
        if i < 0:
            if len(buf) > 1024:
                raise ProtocolViolation(f"no chunk size line in {bytes(buf[:64])!r}...")
            return _INCOMPLETE
        try:
            size = int(bytes(buf[:i]).split(b";")[0].strip(), 16)
        except ValueError:
            raise ProtocolViolation(f"bad chunk size line {bytes(buf[:i])!r}") from None
        if size == 0:  # the last chunk, trailer fields, an empty line
            j = i + 2
            while True:
                k = buf.find(b"\r\n", j)
                if k < 0:
                    return _INCOMPLETE
                if k == j:
                    del buf[:k + 2]
                    return None
                j = k + 2
        end = i + 2 + size
        if len(buf) < end + 2:
            return _INCOMPLETE
        if buf[end:end + 2] != b"\r\n":
            raise ProtocolViolation("chunk not followed by CRLF")
        data = bytes(buf[i + 2:end])
        del buf[:end + 2]
        return data

    def read_body(self, status: int, headers: Headers, timeout: float = 5.0, head_request: bool = False) -> bytes:
        if head_request or status in (101, 204, 304) or 100 <= status < 200:
            return b""
        deadline = time.monotonic() + timeout
        if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
            out = bytearray()
            while True:
                chunk = self.read_chunk(max(0.0, deadline - time.monotonic()))
                if chunk is None:
                    return bytes(out)
                out += chunk
        length = headers.get("Content-Length")
        if length is not None:
            return self.read_exact(int(length), deadline)
        out = bytearray()
        try:
            while True:
                self._fill(deadline)
        except PeerClosed:
            pass
        out += self.buf
        self.buf.clear()
        return bytes(out)

    def read_response(self, timeout: float = 5.0) -> HttpResponse:
        status, reason, headers = self.read_head(timeout)
        return HttpResponse(status, reason, headers, self.read_body(status, headers, timeout))

    def wait_closed(self, timeout: float = 5.0) -> bytes:
        """Reads (and returns) whatever comes until the server closes; ReadTimeout if it does not."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except PeerClosed:
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def is_closed(self, wait: float = 0.2) -> bool:
        try:
            self.wait_closed(wait)
            return True
        except ReadTimeout:
            return False


def format_request(method: str, target: str, port: int, headers: dict[str, str] | list[tuple[str, str]] | None = None,
                   body: bytes | None = None, host: str | None = None) -> bytes:
    items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in items}
    lines = [f"{method} {target} HTTP/1.1"]
    if "host" not in names and host != "":
        lines.append(f"Host: {host or f'127.0.0.1:{port}'}")
    lines += [f"{k}: {v}" for k, v in items]
    if body is not None and "content-length" not in names:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def http_request(port: int, method: str, target: str, body: bytes | str | Any = None,
                 headers: dict[str, str] | None = None, timeout: float = 10.0,
                 source_address: str | None = None) -> HttpResponse:
    """One request on a fresh connection. A body that is not bytes or str is sent as JSON."""
    hdrs = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        hdrs.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode()
    with RawHttp(port, timeout=timeout, source_address=source_address) as c:
        c.send(format_request(method, target, port, hdrs, body))
        status, reason, h = c.read_head(timeout)
        return HttpResponse(status, reason, h, c.read_body(status, h, timeout, head_request=method == "HEAD"))


def query(path: str, **params: Any) -> str:
    """path?k=v&... leaving out parameters that are None."""
    items = {k: v for k, v in params.items() if v is not None}
    return path + ("?" + urlencode(items) if items else "")


# --- Server-Sent Events and chunked streaming -------------------------------------------------------------------


@dataclass
class SseEvent:
    id: str | None
    data: str
    event: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class _SsePartial:
    id: str | None = None
    data: list[str] = field(default_factory=list)
    event: str | None = None


class SseClient:
    """GET an event stream and parse it (the WHATWG event-stream format): events, `retry:` and comment lines."""

    def __init__(self, port: int, target: str, headers: dict[str, str] | None = None, timeout: float = 5.0,
                 source_address: str | None = None):
        self.http = RawHttp(port, timeout=timeout, source_address=source_address)
        self.http.send(format_request("GET", target, port, {"Accept": "text/event-stream", **(headers or {})}))
        self.status, self.reason, self.headers = self.http.read_head(timeout)
        self.chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        self.text = bytearray()  # decoded body not yet parsed into lines
        self.comments: list[str] = []
        self.retry: list[int] = []
        self.first_lines: list[str] = []  # the first few lines exactly as sent
        self.body_if_refused = b""
        self._partial = _SsePartial()  # the event being read
        self._ready: deque[SseEvent] = deque()
        if self.status != 200:
            self.body_if_refused = self.http.read_body(self.status, self.headers, timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _more(self, deadline: float) -> None:
        if self.chunked:
            chunk = self.http.read_chunk(max(0.0, deadline - time.monotonic()))
            if chunk is None:
                raise PeerClosed("the event stream ended")
            self.text += chunk
        else:  # close-delimited: whatever came with the head first
            if not self.http.buf:
                self.http._fill(deadline)
            self.text += self.http.buf
            self.http.buf.clear()

    def _line(self, deadline: float) -> str:
        while True:
            i = self.text.find(b"\n")
            if i >= 0:
                line = bytes(self.text[:i]).rstrip(b"\r").decode("utf-8")
                del self.text[:i + 1]
                if len(self.first_lines) < 8:
                    self.first_lines.append(line)
                return line
            self._more(deadline)

    def next_event(self, timeout: float = 5.0) -> SseEvent:
        """The next event (comments and retry lines are recorded on the way). The fields of an event read before
        a time-out are kept for the next call."""
        deadline = time.monotonic() + timeout
        while not self._ready:
            self._take_line(self._line(deadline))
        return self._ready.popleft()

    def wait_comment(self, text: str, timeout: float) -> None:
        """Reads until a comment line `: text` (events read meanwhile are kept for next_event)."""
        deadline = time.monotonic() + timeout
        while text not in self.comments:
            self._take_line(self._line(deadline))

    def _take_line(self, line: str) -> None:
        ev = self._partial
        if line == "":
            if ev.data:
                self._ready.append(SseEvent(ev.id, "\n".join(ev.data), ev.event))
                self._partial = _SsePartial(ev.id)  # the last event id carries over
            return
        if line.startswith(":"):
            self.comments.append(line[1:].strip())
            return
        key, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if key == "id":
            ev.id = value
        elif key == "data":
            ev.data.append(value)
        elif key == "event":
            ev.event = value
        elif key == "retry":
            self.retry.append(int(value))
        else:
            raise ProtocolViolation(f"unknown event-stream field {line!r}")


class ChunkStream:
    """GET a chunked response and read it chunk by chunk (the gateway's /stream: one chunk per event)."""

    def __init__(self, port: int, target: str, headers: dict[str, str] | None = None, timeout: float = 5.0):
        self.http = RawHttp(port, timeout=timeout)
        self.http.send(format_request("GET", target, port, headers))
        self.status, self.reason, self.headers = self.http.read_head(timeout)
        self.body_if_refused = b""
        if self.status != 200:
            self.body_if_refused = self.http.read_body(self.status, self.headers, timeout)
        elif "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
            raise ProtocolViolation(f"/stream answered without chunked encoding: {self.headers!r}")
        self.heartbeats = 0

    def close(self) -> None:
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def next_chunk(self, timeout: float = 5.0) -> bytes:
        chunk = self.http.read_chunk(timeout)
        if chunk is None:
            raise PeerClosed("the stream ended")
        return chunk

    def next_event(self, timeout: float = 5.0) -> Any:
        """The next event, each checked to be exactly one JSON document and a newline; heartbeat chunks are
        counted and skipped."""
        deadline = time.monotonic() + timeout
        while True:
            chunk = self.next_chunk(max(0.0, deadline - time.monotonic()))
            if chunk == b"\n":
                self.heartbeats += 1
                continue
            if not chunk.endswith(b"\n") or b"\n" in chunk[:-1]:
                raise ProtocolViolation(f"a stream chunk is not one JSON line: {chunk[:200]!r}")
            return json.loads(chunk)


# --- WebSocket --------------------------------------------------------------------------------------------------


@dataclass
class WsFrame:
    fin: bool
    rsv: int  # the three bits RSV1..3 as 0b100, 0b010, 0b001
    opcode: int
    payload: bytes

    def close_code(self) -> tuple[int | None, str]:
        assert self.opcode == OP_CLOSE
        if len(self.payload) == 0:
            return None, ""
        if len(self.payload) == 1:
            raise ProtocolViolation("the server sent a close frame with a 1-byte payload")
        return struct.unpack(">H", self.payload[:2])[0], self.payload[2:].decode("utf-8")


class HandshakeRefused(AssertionError):
    def __init__(self, response: HttpResponse):
        super().__init__(f"WebSocket upgrade refused: {response!r}")
        self.response = response


def deflate_message(data: bytes) -> bytes:
    """A message compressed as RFC 7692 7.2.1 says: raw deflate, sync flush, the final 00 00 ff ff removed."""
    c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate_message(data: bytes) -> bytes:
    d = zlib.decompressobj(-15)  # no context takeover: every message starts afresh
    return d.decompress(data + b"\x00\x00\xff\xff") + d.flush()


class WsClient:
    """A WebSocket client. connect() does the opening handshake (HandshakeRefused carries a non-101 answer);
    send_frame() sends any frame; recv_frame() reads one; recv_message() assembles messages, answering pings;
    recv_json()/request() speak the gateway's JSON operations."""

    def __init__(self, port: int, target: str = "/ws", *, timeout: float = 5.0, extensions: str | None = None,
                 headers: list[tuple[str, str]] | None = None, source_address: str | None = None,
                 key: str | None = None):
        self.port = port
        self.target = target
        self.timeout = timeout
        self.extensions = extensions
        self.extra_headers = headers or []
        self.source_address = source_address
        self.key = key or base64.b64encode(os.urandom(16)).decode()
        self.http: RawHttp | None = None
        self.response: HttpResponse | None = None
        self.deflate = False
        self.pongs: list[bytes] = []
        self.pending: deque[Any] = deque()  # JSON messages read while looking for something else
        self.compressed_received = 0
        self._next_id = 0
        # The message being received, kept across read time-outs.
        self._msg_opcode: int | None = None
        self._msg_parts: list[bytes] = []
        self._msg_compressed = False

    # --- opening handshake ---

    def connect(self) -> "WsClient":
        self.http = RawHttp(self.port, timeout=self.timeout, source_address=self.source_address)
        headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", self.key),
                   ("Sec-WebSocket-Version", "13")]
        if self.extensions:
            headers.append(("Sec-WebSocket-Extensions", self.extensions))
        self.http.try_send(format_request("GET", self.target, self.port, headers + self.extra_headers))
        status, reason, h = self.http.read_head(self.timeout)
        if status != 101:
            body = b""
            try:
                body = self.http.read_body(status, h, self.timeout)
            except (PeerClosed, ReadTimeout):
                pass
            self.response = HttpResponse(status, reason, h, body)
            self.http.close()
            raise HandshakeRefused(self.response)
        self.response = HttpResponse(status, reason, h)
        expected = base64.b64encode(hashlib.sha1(self.key.encode() + WS_GUID).digest()).decode()
        if h.get("Sec-WebSocket-Accept") != expected:
            raise ProtocolViolation(f"Sec-WebSocket-Accept {h.get('Sec-WebSocket-Accept')!r}, expected {expected!r}")
        if "websocket" not in (h.get("Upgrade") or "").lower() or \
                "upgrade" not in (h.get("Connection") or "").lower():
            raise ProtocolViolation(f"101 without Upgrade/Connection headers: {h!r}")
        ext = h.get("Sec-WebSocket-Extensions")
        if ext:
            if not self.extensions or "permessage-deflate" not in self.extensions:
                raise ProtocolViolation(f"server chose an extension nobody offered: {ext!r}")
            self.deflate = ext.split(";")[0].strip() == "permessage-deflate"
        return self

    def close_socket(self) -> None:
        if self.http:
            self.http.close()

    def __enter__(self):
        return self.connect() if self.http is None else self

    def __exit__(self, *exc):
        self.close_socket()

    # --- sending ---

    def send_raw(self, data: bytes) -> bool:
        assert self.http
        return self.http.try_send(data)

    @staticmethod
    def encode_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True,
                     mask_key: bytes | None = None, length_bytes: int = 0) -> bytes:
        """A client frame. rsv: 0b100 is RSV1. length_bytes forces the 7-bit (1), 16-bit (2) or 64-bit (8) length
        form; 0 picks the shortest."""
        n = len(payload)
        b0 = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0xF)
        m = 0x80 if mask else 0
        if length_bytes == 0:
            length_bytes = 1 if n < 126 else 2 if n < 65536 else 8
        if length_bytes == 1:
            assert n < 126
            head = struct.pack(">BB", b0, m | n)
        elif length_bytes == 2:
            head = struct.pack(">BBH", b0, m | 126, n)
        else:
            head = struct.pack(">BBQ", b0, m | 127, n)
        if not mask:
            return head + payload
        key = mask_key if mask_key is not None else os.urandom(4)
        return head + key + mask_bytes(payload, key)

    def send_frame(self, opcode: int, payload: bytes | str = b"", **kw) -> bool:
        if isinstance(payload, str):
            payload = payload.encode()
        return self.send_raw(self.encode_frame(opcode, payload, **kw))

    def send_text(self, text: str | bytes, compress: bool = False) -> bool:
        data = text.encode() if isinstance(text, str) else text
        if compress:
            assert self.deflate, "permessage-deflate was not negotiated"
            return self.send_frame(OP_TEXT, deflate_message(data), rsv=0b100)
        return self.send_frame(OP_TEXT, data)

    def send_fragments(self, opcode: int, parts: list[bytes | str]) -> bool:
        """A message in len(parts) frames: the first with `opcode`, the rest continuations, FIN on the last."""
        ok = True
        for i, part in enumerate(parts):
            ok = self.send_frame(opcode if i == 0 else OP_CONT, part, fin=i == len(parts) - 1) and ok
        return ok

    def send_close(self, code: int | None = 1000, reason: bytes | str = b"") -> bool:
        if isinstance(reason, str):
            reason = reason.encode()
        payload = b"" if code is None else struct.pack(">H", code) + reason
        return self.send_frame(OP_CLOSE, payload)

    # --- receiving ---

    def recv_frame(self, timeout: float | None = None) -> WsFrame:
        """The next frame; a time-out consumes nothing, so a later call picks up where this one stopped."""
        assert self.http
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            frame = self._parse_frame()
            if frame is not None:
                return frame
            self.http._fill(deadline)

    def _parse_frame(self) -> WsFrame | None:
        assert self.http
        buf = self.http.buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        if b1 & 0x80:
            raise ProtocolViolation("the server masked a frame")
        n, pos = b1 & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                return None
            (n,), pos = struct.unpack_from(">H", buf, 2), 4
            if n < 126:
                raise ProtocolViolation(f"16-bit length form for {n} bytes")
        elif n == 127:
            if len(buf) < 10:
                return None
            (n,), pos = struct.unpack_from(">Q", buf, 2), 10
            if n < 65536 or n >> 63:
                raise ProtocolViolation(f"64-bit length form for {n} bytes")
        opcode, rsv = b0 & 0xF, (b0 >> 4) & 7
        if opcode >= 0x8:
            if not b0 & 0x80 or n > 125:
                raise ProtocolViolation(f"bad control frame from the server: opcode {opcode:#x}, {n} bytes")
            if rsv:
                raise ProtocolViolation("the server set RSV bits on a control frame")
        elif opcode not in (OP_CONT, OP_TEXT, OP_BINARY):
            raise ProtocolViolation(f"the server sent reserved opcode {opcode:#x}")
        if rsv & 0b011 or (rsv & 0b100 and not self.deflate):
            raise ProtocolViolation(f"the server set RSV bits {rsv:#05b}")
        if len(buf) < pos + n:
            return None
        frame = WsFrame(bool(b0 & 0x80), rsv, opcode, bytes(buf[pos:pos + n]))
        del buf[:pos + n]
        return frame

    def recv_message(self, timeout: float | None = None, answer_pings: bool = True) -> tuple[int, bytes]:
        """(opcode, payload) of the next whole message, inflated. A close frame comes back as (OP_CLOSE, payload).
        Pings are answered (when asked) and pongs recorded on the way. The fragments of a message survive a
        time-out."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if f.opcode == OP_PING:
                if answer_pings:
                    self.send_frame(OP_PONG, f.payload)
                continue
            if f.opcode == OP_PONG:
                self.pongs.append(f.payload)
                continue
            if f.opcode == OP_CLOSE:
                return OP_CLOSE, f.payload
            if f.opcode == OP_CONT:
                if self._msg_opcode is None:
                    raise ProtocolViolation("the server sent a continuation with no message started")
                if f.rsv:
                    raise ProtocolViolation("RSV1 on a continuation frame")
            else:
                if self._msg_opcode is not None:
                    raise ProtocolViolation("the server started a message inside another")
                self._msg_opcode, self._msg_compressed = f.opcode, bool(f.rsv & 0b100)
            self._msg_parts.append(f.payload)
            if f.fin:
                opcode, data = self._msg_opcode, b"".join(self._msg_parts)
                compressed = self._msg_compressed
                self._msg_opcode, self._msg_parts, self._msg_compressed = None, [], False
                if compressed:
                    self.compressed_received += 1
                    data = inflate_message(data)
                if opcode == OP_TEXT:
                    try:
                        data.decode("utf-8")
                    except UnicodeDecodeError:
                        raise ProtocolViolation("the server sent a text message that is not UTF-8") from None
                return opcode, data

    def recv_json(self, timeout: float | None = None) -> Any:
        """The next JSON message (one queued by request() first). ClosedByServer on a close frame."""
        if self.pending:
            return self.pending.popleft()
        opcode, data = self.recv_message(timeout)
        if opcode == OP_CLOSE:
            code, reason = WsFrame(True, 0, OP_CLOSE, data).close_code()
            self._answer_close(code)
            raise ClosedByServer(code, reason)
        if opcode != OP_TEXT:
            raise ProtocolViolation(f"the gateway sent a non-text message (opcode {opcode})")
        return json.loads(data)

    def request(self, msg: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Sends an operation with a fresh id (unless it has one) and returns the reply with that id; events read
        meanwhile are kept for recv_json()."""
        if "id" not in msg:
            self._next_id += 1
            msg = {**msg, "id": f"r{self._next_id}"}
        self.send_text(json.dumps(msg))
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        skipped = []
        try:
            while True:
                opcode, data = self.recv_message(max(0.0, deadline - time.monotonic()))
                if opcode == OP_CLOSE:
                    code, reason = WsFrame(True, 0, OP_CLOSE, data).close_code()
                    self._answer_close(code)
                    raise ClosedByServer(code, reason)
                m = json.loads(data)
                if isinstance(m, dict) and m.get("seq") is None and m.get("type") in ("ok", "error") \
                        and m.get("id") == msg["id"]:
                    return m
                skipped.append(m)
        finally:
            self.pending.extend(skipped)

    def _answer_close(self, code: int | None) -> None:
        try:
            self.send_close(code if code is not None else None)
        except OSError:
            pass

    def expect_close(self, code: int | None, timeout: float | None = None,
                     reply: bool = True) -> tuple[int | None, str]:
        """Reads until the server's close frame (messages before it are dropped), checks its code (None: an
        empty close), answers it, and checks that the server then closes the TCP connection."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            except PeerClosed:
                raise AssertionError(f"the TCP connection closed without a close frame (expected {code})") from None
            if f.opcode == OP_CLOSE:
                break
        got, reason = f.close_code()
        assert got == code, f"close code {got} ({reason!r}), expected {code}"
        if reply:
            self._answer_close(got)
        assert self.http
        try:
            self.http.wait_closed(max(0.5, deadline - time.monotonic()))
        except ReadTimeout:
            raise AssertionError(f"the server did not close the TCP connection after close {code}") from None
        return got, reason


def mask_bytes(data: bytes, key: bytes) -> bytes:
    """XOR with the repeated 4-byte key (RFC 6455 5.3), as one big-integer operation: fast for 64 KiB."""
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")
