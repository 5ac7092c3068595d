"""The web gateway as the tests see it (docs/web-api.md): a running warren's web port with its JWT secret, clients
for each transport logged in as a user, the backend API with basic auth, and one event reader per transport so a
test body can run against all four."""

from __future__ import annotations

import base64
import json
import time
from typing import Any, Callable

from support.warren_process import WarrenProcess
from support.ws_client import (
    ChunkStream, HttpResponse, SseClient, WsClient, http_request, make_jwt, query,
)

SECRET = "warren-test-secret-0123456789abcdef"


def gateway_args(*extra: str) -> list[str]:
    """Flags for a warren whose gateway accepts tokens signed with SECRET, plus `extra`."""
    return ["--jwt-secret", SECRET, *extra]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Gateway:
    """One warren's gateway. The web port is read from the process each time, so a restart is followed."""

    def __init__(self, proc: WarrenProcess, secret: str = SECRET):
        self.proc = proc
        self.secret = secret
        self._opened: dict[str, list[Any]] = {}  # browser connections per user, for _track

    @property
    def port(self) -> int:
        return self.proc.web_port

    def token(self, sub: str, **claims: Any) -> str:
        return make_jwt(self.secret, sub, **claims)

    # --- browser transports ---
    #
    # The gateway attaches a connection to its user's inbox before it answers the upgrade (or the head of an SSE
    # or stream response); test_web_gateway.py::test_connection_is_attached_once_answered checks that. With
    # `attached` the helpers also wait until the presence API counts exactly the connections of the user these
    # helpers opened and that are still open (a connection closed just before may not be counted off yet).

    def _expected_connections(self, sub: str) -> int:
        alive = [c for c in self._opened.get(sub, []) if not c.http.closed]
        self._opened[sub] = alive
        return len(alive)

    def _track(self, sub: str | None, client: Any, attached: bool) -> None:
        if not sub:
            return
        self._opened.setdefault(sub, []).append(client)
        if attached:
            expected = self._expected_connections(sub)
            wait_for(lambda: self.presence(sub)["connections"] == expected, 5,
                     f"{sub}'s connections to be counted ({expected})")

    def ws(self, sub: str | None, since: int | None = None, token: str | None = None,
           extensions: str | None = None, source_address: str | None = None, attached: bool = True,
           **claims: Any) -> WsClient:
        """A connected WebSocket as `sub` (sub None and no token: no token at all)."""
        if token is None and sub is not None:
            token = self.token(sub, **claims)
        ws = WsClient(self.port, query("/ws", token=token, since=since), extensions=extensions,
                      source_address=source_address).connect()
        self._track(sub, ws, attached)
        return ws

    def sse(self, sub: str | None, since: int | None = None, last_event_id: int | str | None = None,
            token: str | None = None, attached: bool = True, **claims: Any) -> SseClient:
        if token is None and sub is not None:
            token = self.token(sub, **claims)
        headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
        s = SseClient(self.port, query("/sse", token=token, since=since), headers)
        if s.status == 200:
            self._track(sub, s, attached)
        return s

    def stream(self, sub: str | None, since: int | None = None, token: str | None = None, attached: bool = True,
               **claims: Any) -> ChunkStream:
        if token is None and sub is not None:
            token = self.token(sub, **claims)
        s = ChunkStream(self.port, query("/stream", token=token, since=since))
        if s.status == 200:
            self._track(sub, s, attached)
        return s

    def poll(self, sub: str | None, since: int | str | None, timeout: float | None = None,
             callback: str | None = None, token: str | None = None, **claims: Any) -> HttpResponse:
        if token is None and sub is not None:
            token = self.token(sub, **claims)
        wait = (timeout if timeout is not None else 25) + 10
        return http_request(self.port, "GET", query("/poll", token=token, since=since, timeout=timeout,
                                                    callback=callback), timeout=wait)

    # --- HTTP API ---

    def api(self, method: str, path: str, body: Any = None, auth: tuple[str, str] | None = ("guest", "guest"),
            bearer: str | None = None, headers: dict[str, str] | None = None, timeout: float = 10.0,
            source_address: str | None = None) -> HttpResponse:
        """A request to the web port: basic auth as `auth` (None: none), or a bearer token instead."""
        hdrs = dict(headers or {})
        if bearer is not None:
            hdrs["Authorization"] = f"Bearer {bearer}"
        elif auth is not None:
            hdrs["Authorization"] = basic_auth(*auth)
        return http_request(self.port, method, path, body, hdrs, timeout=timeout, source_address=source_address)

    def ok(self, method: str, path: str, body: Any = None, status: int = 200, **kw: Any) -> Any:
        """api() that must answer `status`; returns the parsed JSON body (None if empty)."""
        r = self.api(method, path, body, **kw)
        assert r.status == status, f"{method} {path}: {r!r}"
        return r.json() if r.body else None

    def send(self, user: str, data: Any, sender: str | None = None) -> bool:
        """POST /api/send; returns `routed`."""
        body = {"user": user, "data": data}
        if sender is not None:
            body["from"] = sender
        return self.ok("POST", "/api/send", body)["routed"]

    def presence(self, user: str) -> dict[str, Any]:
        return self.ok("GET", f"/api/presence/{user}")


# --- one event reader per transport -------------------------------------------------------------------------------

TRANSPORTS = ["ws", "sse", "poll", "stream"]


class Receiver:
    """Events of one user over one transport: next_event() returns the next event object."""

    transport = ""

    def next_event(self, timeout: float = 5.0) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class WsReceiver(Receiver):
    transport = "ws"

    def __init__(self, gw: Gateway, sub: str, since: int | None):
        self.ws = gw.ws(sub, since=since)

    def next_event(self, timeout: float = 5.0) -> dict[str, Any]:
        return self.ws.recv_json(timeout)

    def close(self) -> None:
        self.ws.close_socket()


class SseReceiver(Receiver):
    """since goes as Last-Event-ID, as EventSource sends it on a reconnect."""

    transport = "sse"

    def __init__(self, gw: Gateway, sub: str, since: int | None):
        self.sse = gw.sse(sub, last_event_id=since)
        assert self.sse.status == 200, (self.sse.status, self.sse.body_if_refused)

    def next_event(self, timeout: float = 5.0) -> dict[str, Any]:
        ev = self.sse.next_event(timeout)
        data = ev.json()
        assert ev.id == str(data["seq"]), f"SSE id {ev.id!r} is not the event's seq: {data}"
        return data

    def close(self) -> None:
        self.sse.close()


class StreamReceiver(Receiver):
    transport = "stream"

    def __init__(self, gw: Gateway, sub: str, since: int | None):
        self.stream = gw.stream(sub, since=since)
        assert self.stream.status == 200, (self.stream.status, self.stream.body_if_refused)

    def next_event(self, timeout: float = 5.0) -> dict[str, Any]:
        return self.stream.next_event(timeout)

    def close(self) -> None:
        self.stream.close()


class PollReceiver(Receiver):
    """Long-polls from `since` (0 when None: a poll must say where it is), each poll passing the last seq it
    received, as the contract tells a client to. The user is connected only while a poll waits."""

    transport = "poll"

    def __init__(self, gw: Gateway, sub: str, since: int | None):
        self.gw, self.sub = gw, sub
        self.since = 0 if since is None else since
        self.token = gw.token(sub)
        self.buffer: list[dict[str, Any]] = []

    def next_event(self, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no event by long-poll within {timeout} s")
            r = self.gw.poll(None, self.since, timeout=max(1, int(remaining)), token=self.token)
            assert r.status == 200, r
            events = r.json()
            assert isinstance(events, list), r
            if events:
                self.since = events[-1]["seq"]
                self.buffer.extend(events)
        return self.buffer.pop(0)


def open_receiver(gw: Gateway, transport: str, sub: str, since: int | None = None) -> Receiver:
    return {"ws": WsReceiver, "sse": SseReceiver, "poll": PollReceiver, "stream": StreamReceiver}[transport](
        gw, sub, since)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
