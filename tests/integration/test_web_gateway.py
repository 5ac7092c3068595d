"""The web gateway against its contract (docs/web-api.md), black-box on the real binary: tokens on every
transport, delivery from the backend API and from AMQP (pika), the shared inbox with resume and resets, long-poll
and JSONP, rooms with history and presence, the follow graph and feeds (a million edges loaded in bulk), the
backend API's authentication, bad input and limits, and resource alarms.

Tests that run on every transport take the transport as a parameter and read events through one Receiver per
transport (tests/support/web_gateway.py). Each test gets its own warren; `@pytest.mark.gateway_args(...)` adds
flags. Timing bounds are generous: CI is two loaded cores."""

import json
import urllib.request
import threading
import time

import pika
import pika.exceptions
import pytest

from support.web_gateway import (
    SECRET, TRANSPORTS, Gateway, basic_auth, gateway_args, open_receiver, wait_for,
)
from support.ws_client import (
    ClosedByServer, HandshakeRefused, PeerClosed, RawHttp, ReadTimeout, WsClient, format_request, http_request,
    make_jwt, query,
)


@pytest.fixture
def gw(warren_factory, request):
    marker = request.node.get_closest_marker("gateway_args")
    return Gateway(warren_factory(*gateway_args(*(marker.args if marker else ()))))


def amqp(gw: Gateway) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=gw.proc.amqp_port, connection_attempts=1, socket_timeout=5))


def now_ms() -> int:
    return int(time.time() * 1000)


def check_event(ev: dict, type_: str, data, room=None, sender=None) -> dict:
    """The fields every event has (docs/web-api.md, Events), with these values."""
    assert isinstance(ev.get("seq"), int) and ev["seq"] > 0, ev
    assert ev.get("type") == type_, ev
    assert ev.get("room", "absent") == room, ev
    assert ev.get("from", "absent") == sender, ev
    assert ev.get("data", "absent") == data, ev
    if type_ != "reset" or "ts" in ev:  # the contract's example of a reset shows no ts
        assert isinstance(ev.get("ts"), int) and abs(ev["ts"] - now_ms()) < 60_000, ev
    return ev


def check_reply(r: dict, type_: str = "ok", **fields) -> dict:
    """A reply to a WebSocket operation: not an inbox event (seq null), with these fields."""
    assert r.get("seq", "absent") is None and r.get("type") == type_, r
    for k, v in fields.items():
        assert r.get(k, "absent") == v, (k, r)
    return r


def json_or_none(body: bytes):
    try:
        return json.loads(body)
    except (TypeError, ValueError):
        return None


def touch_inbox(gw: Gateway, user: str) -> None:
    """Creates the user's inbox with a short WebSocket visit; the inbox lingers after it."""
    with gw.ws(user) as ws:
        r = ws.request({"op": "ping"})
        assert r["type"] == "ok", r


def assert_nothing_more(ws: WsClient, quiet: float = 0.3) -> None:
    assert not ws.pending, f"unexpected events: {list(ws.pending)}"
    try:
        m = ws.recv_json(quiet)
    except ReadTimeout:
        return
    raise AssertionError(f"unexpected event {m}")


def next_is(ws: WsClient, user_gw: Gateway, user: str, what: str = "sentinel") -> None:
    """Sends the user a sentinel and checks it is the next thing the connection gets (nothing came before)."""
    assert user_gw.send(user, what)
    ev = ws.recv_json()
    assert ev["type"] == "message" and ev["data"] == what, f"expected the sentinel, got {ev}"


# --- authentication ---------------------------------------------------------------------------------------------

BAD_TOKENS = {
    "no-token": lambda: None,
    "bad-signature": lambda: make_jwt(SECRET, "alice", sign_with="not the secret"),
    "expired": lambda: make_jwt(SECRET, "alice", exp=time.time() - 120),  # past the 30 s leeway
    "not-yet-valid": lambda: make_jwt(SECRET, "alice", nbf=time.time() + 120),
    "alg-none": lambda: make_jwt(None, "alice", alg="none"),
    "alg-hs384": lambda: make_jwt(SECRET, "alice", alg="HS384"),  # an algorithm not configured
    "no-sub": lambda: make_jwt(SECRET, None),
    "empty-sub": lambda: make_jwt(SECRET, ""),
    "sub-over-200-bytes": lambda: make_jwt(SECRET, "u" * 201),
    "garbage": lambda: "not.a.token",
}


def attempt(gw: Gateway, transport: str, token: str | None):
    """(status, parsed body or raw bytes) of opening `transport` with `token` (None: no token at all)."""
    if transport == "ws":
        try:
            WsClient(gw.port, query("/ws", token=token)).connect().close_socket()
            return 101, None
        except HandshakeRefused as e:
            r = e.response
            return r.status, r.body
    if transport == "sse":
        with gw.sse(None, token=token) as s:
            return s.status, s.body_if_refused
    if transport == "stream":
        with gw.stream(None, token=token) as s:
            return s.status, s.body_if_refused
    if transport == "poll":
        r = gw.poll(None, 0, timeout=1, token=token)
        return r.status, r.body
    # an HTTP operation with the token as a bearer
    hdrs = {} if token is None else {"Authorization": f"Bearer {token}"}
    r = http_request(gw.port, "POST", "/api/rooms/lobby/join", b"", hdrs)
    return r.status, r.body


@pytest.mark.parametrize("transport", TRANSPORTS + ["http-op"])
def test_bad_tokens_are_401_on_every_transport(gw, transport):
    wrong = []
    for case, make in BAD_TOKENS.items():
        status, body = attempt(gw, transport, make())
        doc = json_or_none(body)
        if status != 401 or not isinstance(doc, dict) or doc.get("error") != "unauthorized" \
                or not doc.get("reason"):
            wrong.append(f"{case}: {status} {body!r}")
    assert not wrong, f"{transport}: expected 401 {{'error': 'unauthorized', 'reason': ...}}:\n" + "\n".join(wrong)


@pytest.mark.parametrize("transport", TRANSPORTS + ["http-op"])
def test_good_token_is_accepted_on_every_transport_within_the_leeway(gw, transport):
    for token in (gw.token("alice"), make_jwt(SECRET, "alice", exp=time.time() - 10)):
        status, body = attempt(gw, transport, token)
        assert status == (101 if transport == "ws" else 200), (status, body)


def test_without_a_jwt_secret_every_browser_connection_is_401(warren_factory):
    gw = Gateway(warren_factory())
    for transport in TRANSPORTS:
        status, body = attempt(gw, transport, gw.token("alice"))
        assert status == 401, (transport, status, body)


def test_token_rooms_and_publish_claims_are_enforced(gw):
    claims = {"rooms": ["team-*", "lobby"], "publish": ["lobby"]}
    with gw.ws("carol", **claims) as ws:
        assert ws.request({"op": "join", "room": "lobby"})["type"] == "ok"
        assert ws.request({"op": "join", "room": "team-red"})["type"] == "ok"  # a prefix pattern
        for op in ({"op": "join", "room": "kitchen"}, {"op": "join", "room": "team"},
                   {"op": "publish", "room": "team-red", "data": 1}, {"op": "publish", "room": "kitchen", "data": 1}):
            r = ws.request(op)
            assert r["type"] == "error" and r["code"] == 403 and r["op"] == op["op"], (op, r)
        assert ws.request({"op": "publish", "room": "lobby", "data": 1})["type"] == "ok"
    token = gw.token("carol", **claims)
    assert gw.api("POST", "/api/rooms/kitchen/join", b"", bearer=token).status == 403
    assert gw.api("POST", "/api/rooms/team-red/publish", {"data": 1}, bearer=token).status == 403
    r = gw.api("POST", "/api/rooms/lobby/publish", {"data": 1}, bearer=token)
    assert r.status == 200 and r.json()["ok"] is True, r


def test_missing_publish_claim_means_the_rooms_one_may_join(gw):
    with gw.ws("dave", rooms=["a*"]) as ws:
        assert ws.request({"op": "publish", "room": "abc", "data": 1})["type"] == "ok"
        assert ws.request({"op": "publish", "room": "b", "data": 1})["code"] == 403


def test_missing_rooms_claim_means_any_room_and_empty_means_none(gw):
    with gw.ws("erin") as ws:
        assert ws.request({"op": "join", "room": "anything-at-all"})["type"] == "ok"
    with gw.ws("frank", rooms=[], publish=[]) as ws:
        assert ws.request({"op": "join", "room": "lobby"})["code"] == 403
        assert ws.request({"op": "publish", "room": "lobby", "data": 1})["code"] == 403


def test_malformed_operations_get_400_and_the_id_back(gw):
    with gw.ws("alice") as ws:
        for op in ({"op": "dance", "id": 7}, {"op": "join", "id": [1]}, {"room": "x", "id": "no-op"}):
            r = ws.request(op)
            assert r["type"] == "error" and r["code"] == 400 and r["id"] == op["id"], (op, r)
        ws.send_text("{not json")
        r = ws.recv_json()
        assert r["type"] == "error" and r["code"] == 400 and r["seq"] is None, r
        assert ws.request({"op": "ping", "id": {"any": ["json", 1]}})["id"] == {"any": ["json", 1]}


@pytest.mark.gateway_args("--anonymous-rooms", "lobby,news")
def test_anonymous_connections_read_only_their_rooms(gw):
    with WsClient(gw.port, "/ws").connect() as anon:
        assert anon.request({"op": "join", "room": "lobby"})["type"] == "ok"
        assert anon.request({"op": "join", "room": "secret"})["code"] == 403
        assert anon.request({"op": "publish", "room": "lobby", "data": 1})["code"] == 403
        gw.ok("POST", "/api/rooms/lobby/publish", {"data": "hello all"})
        check_event(anon.recv_json(), "message", "hello all", room="lobby")
        members = gw.ok("GET", "/api/rooms/lobby/members")["members"]
        assert len(members) == 1 and members[0]["user"].startswith("anonymous:"), members


@pytest.mark.gateway_args("--anonymous-rooms", "lobby")
def test_anonymous_users_are_never_sent_to(gw):
    with WsClient(gw.port, "/ws").connect() as anon:
        anon.request({"op": "join", "room": "lobby"})
        user = gw.ok("GET", "/api/rooms/lobby/members")["members"][0]["user"]
        assert gw.send(user, "direct") is False


# --- delivery ---------------------------------------------------------------------------------------------------


def test_send_over_http_reaches_the_user(gw):
    with gw.ws("alice") as ws:
        assert gw.send("alice", {"n": 1}) is True
        first = check_event(ws.recv_json(), "message", {"n": 1})
        assert gw.send("alice", "plain text", sender="billing") is True
        second = check_event(ws.recv_json(), "message", "plain text", sender="billing")
        assert second["seq"] == first["seq"] + 1


def test_send_to_a_user_never_connected_is_held_for_them(gw):
    assert gw.send("nobody-home", {"n": 1}) is True
    r = gw.poll("nobody-home", 0, timeout=1)
    assert r.status == 200, r
    [ev] = r.json()
    check_event(ev, "message", {"n": 1})
    # A transient send only matters to who is connected: nobody here, so not routed.
    assert gw.ok("POST", "/api/send", {"user": "nobody-home", "data": 2, "transient": True}) == {"routed": False}


def test_amqp_publish_to_warren_users(gw):
    conn = amqp(gw)
    ch = conn.channel()
    with gw.ws("alice") as ws:
        ch.basic_publish("warren.users", "alice", b'{"k": [1, 2]}')
        check_event(ws.recv_json(), "message", {"k": [1, 2]})
        ch.basic_publish("warren.users", "alice", b"not json", pika.BasicProperties(headers={"from": "svc"}))
        check_event(ws.recv_json(), "message", "not json", sender="svc")
        ch.basic_publish("warren.users", "alice", b"7", pika.BasicProperties(user_id="guest"))
        check_event(ws.recv_json(), "message", 7, sender="guest")
    conn.close()


def test_amqp_publish_to_an_offline_user_is_held_and_a_transient_one_returned(gw):
    conn = amqp(gw)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("warren.users", "nobody-home", b"x", mandatory=True)  # confirmed, not returned
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish("warren.users", "nobody-home", b"typing", mandatory=True,
                         properties=pika.BasicProperties(headers={"x-warren-transient": True}))
    conn.close()
    [ev] = gw.poll("nobody-home", 0, timeout=1).json()
    check_event(ev, "message", "x")


def test_gateway_exchanges_exist_and_queues_may_be_bound(gw):
    conn = amqp(gw)
    ch = conn.channel()
    for name in ("warren.users", "warren.rooms", "warren.feed"):
        ch.exchange_declare(name, passive=True)
    audit = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(audit, "warren.users", "alice")
    with gw.ws("alice") as ws:
        ch.basic_publish("warren.users", "alice", b'{"audited": true}')
        check_event(ws.recv_json(), "message", {"audited": True})
    method, _props, body = None, None, None
    deadline = time.monotonic() + 5
    while method is None and time.monotonic() < deadline:
        method, _props, body = ch.basic_get(audit, auto_ack=True)
        time.sleep(0.05)
    assert method is not None, "the queue bound to warren.users got no copy"
    assert json.loads(body) == {"audited": True}
    conn.close()


def test_every_connection_of_a_user_receives(gw):
    a, b = gw.ws("alice"), gw.ws("alice")
    sse, stream = gw.sse("alice"), gw.stream("alice")
    try:
        assert gw.send("alice", {"to": "all"})
        events = [a.recv_json(), b.recv_json(), stream.next_event()]
        ev = sse.next_event()
        assert ev.id == str(ev.json()["seq"])
        events.append(ev.json())
        for e in events:
            check_event(e, "message", {"to": "all"})
        assert len({e["seq"] for e in events}) == 1, events
        polled = gw.poll("alice", events[0]["seq"] - 1, timeout=5)
        assert polled.status == 200 and polled.json() == [events[0]], polled
        wait_for(lambda: gw.presence("alice") == {"online": True, "connections": 4}, 5, "4 connections")
    finally:
        for c in (a, b):
            c.close_socket()
        sse.close()
        stream.close()


@pytest.mark.parametrize("transport", ["ws", "sse", "stream"])
def test_connection_is_attached_once_answered(gw, transport):
    # A client that was answered is connected: what is sent to its user from then on reaches it.
    missed = []
    for i in range(100):
        user = f"quick-{transport}-{i}"
        open_ = {"ws": gw.ws, "sse": gw.sse, "stream": gw.stream}[transport]
        c = open_(user, attached=False)
        try:
            if not gw.send(user, "hello"):
                missed.append(i)
        finally:
            (c.close_socket if transport == "ws" else c.close)()
    assert not missed, f"{len(missed)} of 100 sends right after the answer found no inbox"


# --- resuming, and resets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_resume_from_the_last_seq(gw, transport):
    user = f"resume-{transport}"
    touch_inbox(gw, user)
    with open_receiver(gw, transport, user) as r:
        assert gw.send(user, "m1")
        e1 = check_event(r.next_event(), "message", "m1")
    assert gw.send(user, "m2") and gw.send(user, "m3")  # held while no connection is open
    with open_receiver(gw, transport, user, since=e1["seq"]) as r:
        e2, e3 = r.next_event(), r.next_event()
        assert (e2["data"], e3["data"]) == ("m2", "m3"), (e2, e3)
        assert (e2["seq"], e3["seq"]) == (e1["seq"] + 1, e1["seq"] + 2)
        assert gw.send(user, "m4")
        e4 = r.next_event()
        assert (e4["data"], e4["seq"]) == ("m4", e1["seq"] + 3), e4


def test_sse_takes_since_as_well_as_last_event_id(gw):
    touch_inbox(gw, "alice")
    with gw.ws("alice") as ws:
        assert gw.send("alice", "m1") and gw.send("alice", "m2")
        e1, e2 = ws.recv_json(), ws.recv_json()
    with gw.sse("alice", since=e1["seq"]) as s:
        assert s.next_event().json() == e2


def test_without_since_only_live_events_and_since_0_gets_all_held(gw):
    with gw.ws("alice") as ws:
        assert gw.send("alice", "m1")
        e1 = ws.recv_json()
    assert gw.send("alice", "m2")
    with gw.ws("alice") as ws:
        next_is(ws, gw, "alice", "m3")  # m2 is not replayed
    with gw.ws("alice", since=0) as ws:
        got = [ws.recv_json() for _ in range(3)]
        assert [e["data"] for e in got] == ["m1", "m2", "m3"], got
        assert [e["seq"] for e in got] == [e1["seq"], e1["seq"] + 1, e1["seq"] + 2]
        assert_nothing_more(ws)


@pytest.mark.gateway_args("--inbox-size", "3")
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reset_when_the_inbox_dropped_events(gw, transport):
    user = f"dropped-{transport}"
    with gw.ws(user) as ws:
        assert gw.send(user, "m1")
        s1 = ws.recv_json()["seq"]
    for i in range(2, 7):
        assert gw.send(user, f"m{i}")  # the inbox keeps m4..m6
    with open_receiver(gw, transport, user, since=s1) as r:
        reset = check_event(r.next_event(), "reset", {"reason": "dropped", "after": s1, "missed_to": s1 + 2})
        assert reset["seq"] == s1 + 2, reset
        rest = [r.next_event() for _ in range(3)]
        assert [(e["data"], e["seq"]) for e in rest] == [("m4", s1 + 3), ("m5", s1 + 4), ("m6", s1 + 5)], rest
    # A client continues from the reset as from any other event: no second reset.
    with open_receiver(gw, transport, user, since=reset["seq"]) as r:
        assert r.next_event()["data"] == "m4"


@pytest.mark.gateway_args("--inbox-linger", "1", "--inbox-ttl", "1")
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reset_after_the_inbox_expired(gw, transport):
    """An inbox whose events all expired while its user was away is forgotten; the user's next connection starts
    a new numbering, and a resume from the old one gets a reset saying what followed it is gone."""
    user = f"newinbox-{transport}"
    with gw.ws(user) as ws:
        assert gw.send(user, "m1")
        s1 = ws.recv_json()["seq"]
    wait_for(lambda: gw.ok("GET", f"/api/inbox/{user}")["last_seq"] == 0, 15, "the inbox to be forgotten")
    with open_receiver(gw, transport, user, since=s1) as r:
        reset = r.next_event()
        assert reset["type"] == "reset" and reset["seq"] > s1, reset
        check_event(reset, "reset", {"reason": "dropped", "after": s1, "missed_to": reset["seq"]})
        assert gw.send(user, "m2")
        e2 = r.next_event()
        assert (e2["data"], e2["seq"]) == ("m2", reset["seq"] + 1), (reset, e2)


# --- long-poll ----------------------------------------------------------------------------------------------------


def test_poll_times_out_with_an_empty_array(gw):
    t0 = time.monotonic()
    r = gw.poll("alice", 0, timeout=1)
    elapsed = time.monotonic() - t0
    assert r.status == 200 and r.json() == [], r
    assert 0.8 <= elapsed < 8, f"a 1 s poll took {elapsed:.2f} s"
    assert r.headers.get("Content-Type", "").startswith("application/json"), r
    assert r.headers.get("Access-Control-Allow-Origin") == "*", r


def test_poll_returns_held_events_at_once(gw):
    touch_inbox(gw, "alice")
    assert gw.send("alice", "a") and gw.send("alice", "b")
    t0 = time.monotonic()
    r = gw.poll("alice", 0, timeout=20)
    assert time.monotonic() - t0 < 5
    assert [e["data"] for e in r.json()] == ["a", "b"], r
    r2 = gw.poll("alice", r.json()[0]["seq"], timeout=20)  # the next poll passes the last seq it received
    assert r2.json() == r.json()[1:]


def test_poll_waits_for_the_first_event_and_counts_as_connected(gw):
    result = {}

    def poll():
        t0 = time.monotonic()
        result["r"] = gw.poll("alice", 0, timeout=20)
        result["elapsed"] = time.monotonic() - t0

    t = threading.Thread(target=poll)
    t.start()
    try:
        wait_for(lambda: gw.presence("alice")["online"], 5, "the waiting poll to count as a connection")
        time.sleep(0.3)
        assert "r" not in result, "the poll returned before any event"
        assert gw.send("alice", {"x": 1})
    finally:
        t.join(25)
    assert result["elapsed"] < 10
    events = result["r"].json()
    assert len(events) == 1, events
    check_event(events[0], "message", {"x": 1})
    wait_for(lambda: not gw.presence("alice")["online"], 5, "the user to go offline after the poll")


def test_jsonp_callback(gw):
    touch_inbox(gw, "alice")
    assert gw.send("alice", "hi")
    for cb in ("cb", "jQuery123_456", "$.handlers.x9", "_"):
        r = gw.poll("alice", 0, timeout=5, callback=cb)
        assert r.status == 200, r
        assert r.headers.get("Content-Type", "").startswith("application/javascript"), r
        text = r.body.decode().strip()
        assert text.startswith(cb + "(") and text.endswith(");"), text
        events = json.loads(text[len(cb) + 1:-2])
        assert [e["data"] for e in events] == ["hi"]


@pytest.mark.parametrize("cb", ["alert(1)", "1abc", "a-b", "a" * 65, "x;y", "</script>"])
def test_bad_jsonp_callback_is_400(gw, cb):
    r = gw.poll("alice", 0, timeout=1, callback=cb)
    assert r.status == 400, r


# --- the other transports' framing --------------------------------------------------------------------------------


@pytest.mark.gateway_args("--web-heartbeat", "1")
def test_sse_format_and_heartbeat(gw):
    with gw.sse("alice") as s:
        assert s.status == 200
        assert s.headers.get("Content-Type", "").startswith("text/event-stream"), s.headers
        assert s.headers.get("Access-Control-Allow-Origin") == "*", s.headers
        s.wait_comment("ping", 5)
        assert s.first_lines[0] == "retry: 3000", s.first_lines
        assert gw.send("alice", {"multi": "line\nvalue"})
        ev = s.next_event()
        assert ev.event is None  # the default event name, so onmessage sees it
        check_event(ev.json(), "message", {"multi": "line\nvalue"})


@pytest.mark.gateway_args("--web-heartbeat", "1")
def test_stream_format_and_heartbeat(gw):
    with gw.stream("alice") as s:
        assert s.status == 200
        assert s.headers.get("Content-Type", "").startswith("application/x-ndjson"), s.headers
        assert s.headers.get("Access-Control-Allow-Origin") == "*", s.headers
        assert gw.send("alice", "one") and gw.send("alice", "two")
        assert [s.next_event(5)["data"] for _ in range(2)] == ["one", "two"]
        deadline = time.monotonic() + 5
        while s.heartbeats == 0 and time.monotonic() < deadline:
            try:
                s.next_event(0.5)
            except ReadTimeout:
                pass
        assert s.heartbeats > 0, "no heartbeat chunk in 5 s at --web-heartbeat 1"


# --- rooms --------------------------------------------------------------------------------------------------------


@pytest.mark.gateway_args("--room-history", "3")
def test_history_on_join_and_not_again_on_a_second_join(gw):
    for i in range(5):
        gw.ok("POST", "/api/rooms/news/publish", {"data": {"i": i}})
    with gw.ws("alice") as ws:
        check_reply(ws.request({"op": "join", "room": "news", "id": 1}), op="join", room="news", id=1)
        history = [ws.recv_json() for _ in range(3)]
        for h, i in zip(history, (2, 3, 4)):
            check_event(h, "history", {"i": i}, room="news")
        assert [h["seq"] for h in history] == list(range(history[0]["seq"], history[0]["seq"] + 3))
        assert ws.request({"op": "join", "room": "news"})["type"] == "ok"
        gw.ok("POST", "/api/rooms/news/publish", {"data": {"i": 5}})
        check_event(ws.recv_json(), "message", {"i": 5}, room="news")
        assert_nothing_more(ws)


def test_default_history_is_the_last_20(gw):
    for i in range(25):
        gw.ok("POST", "/api/rooms/news/publish", {"data": i})
    with gw.ws("alice") as ws:
        ws.request({"op": "join", "room": "news"})
        assert [ws.recv_json()["data"] for _ in range(20)] == list(range(5, 25))
        assert_nothing_more(ws)


def test_membership_belongs_to_the_user(gw):
    with gw.ws("alice") as first:
        assert first.request({"op": "join", "room": "lobby"})["type"] == "ok"
        with gw.ws("alice") as second:  # opened after the join: in the room all the same
            gw.ok("POST", "/api/rooms/lobby/publish", {"data": "to all tabs"})
            for c in (first, second):
                check_event(c.recv_json(), "message", "to all tabs", room="lobby")
    # Joined over HTTP, received over WebSocket.
    r = gw.api("POST", "/api/rooms/lobby/join", b"", bearer=gw.token("bob"))
    assert r.status == 200 and r.json()["ok"] is True, r
    with gw.ws("bob") as ws:
        gw.ok("POST", "/api/rooms/lobby/publish", {"data": "hi bob"})
        check_event(ws.recv_json(), "message", "hi bob", room="lobby")


def test_leave_stops_delivery(gw):
    with gw.ws("alice") as ws:
        ws.request({"op": "join", "room": "r"})
        gw.ok("POST", "/api/rooms/r/publish", {"data": "before"})
        check_event(ws.recv_json(), "message", "before", room="r")
        check_reply(ws.request({"op": "leave", "room": "r", "id": "l"}), op="leave", room="r", id="l")
        gw.ok("POST", "/api/rooms/r/publish", {"data": "after"})
        next_is(ws, gw, "alice")
        assert_nothing_more(ws)
        r = ws.request({"op": "leave", "room": "never-existed"})
        assert r["type"] == "error" and r["code"] == 404, r
    # Leaving over HTTP too.
    token = gw.token("bob")
    assert gw.api("POST", "/api/rooms/r/join", b"", bearer=token).status == 200
    assert gw.api("POST", "/api/rooms/r/leave", b"", bearer=token).status == 200
    with gw.ws("bob") as ws:
        gw.ok("POST", "/api/rooms/r/publish", {"data": "after bob left"})
        next_is(ws, gw, "bob")


def test_publish_from_a_browser_carries_its_user_not_a_claimed_one(gw):
    with gw.ws("alice") as alice, gw.ws("bob") as bob:
        for c in (alice, bob):
            c.request({"op": "join", "room": "chat"})
        check_reply(alice.request({"op": "publish", "room": "chat", "data": {"text": "hi"}, "id": 9}),
                    op="publish", room="chat", id=9)
        check_event(bob.recv_json(), "message", {"text": "hi"}, room="chat", sender="alice")
        # A "from" in the operation or in the body does not impersonate anyone.
        alice.request({"op": "publish", "room": "chat", "data": "forged?", "from": "mallory"})
        check_event(bob.recv_json(), "message", "forged?", room="chat", sender="alice")
        r = gw.api("POST", "/api/rooms/chat/publish", {"data": "over http", "from": "mallory"},
                   bearer=gw.token("alice"))
        assert r.status == 200 and r.json()["ok"] is True, r
        check_event(bob.recv_json(), "message", "over http", room="chat", sender="alice")


def test_publish_from_amqp_to_warren_rooms_and_from_the_backend(gw):
    conn = amqp(gw)
    with gw.ws("bob") as bob:
        bob.request({"op": "join", "room": "ops"})
        conn.channel().basic_publish("warren.rooms", "ops", b'{"alert": 1}',
                                     pika.BasicProperties(headers={"from": "monitor"}))
        check_event(bob.recv_json(), "message", {"alert": 1}, room="ops", sender="monitor")
        assert gw.ok("POST", "/api/rooms/ops/publish", {"data": "deploy", "from": "ci"}) == {"routed": True}
        check_event(bob.recv_json(), "message", "deploy", room="ops", sender="ci")
    conn.close()
    with gw.ws("carol") as carol:  # both are in the room's history
        carol.request({"op": "join", "room": "ops"})
        got = [carol.recv_json() for _ in range(2)]
        assert [(e["type"], e["data"], e["from"]) for e in got] == [
            ("history", {"alert": 1}, "monitor"), ("history", "deploy", "ci")], got


def test_members(gw):
    a1, a2, b = gw.ws("alice"), gw.ws("alice"), gw.ws("bob")
    try:
        a1.request({"op": "join", "room": "r"})
        b.request({"op": "join", "room": "r"})
        expected = [{"user": "alice", "connections": 2}, {"user": "bob", "connections": 1}]
        r = a2.request({"op": "members", "room": "r"})
        assert r["type"] == "ok" and r["room"] == "r", r
        assert sorted(r["members"], key=lambda m: m["user"]) == expected, r
        doc = gw.ok("GET", "/api/rooms/r/members")
        assert doc["room"] == "r" and sorted(doc["members"], key=lambda m: m["user"]) == expected, doc
        assert gw.api("GET", "/api/rooms/r/members", bearer=gw.token("bob")).status == 200
    finally:
        for c in (a1, a2, b):
            c.close_socket()


def test_members_of_an_unknown_room_is_404(gw):
    with gw.ws("alice") as ws:
        r = ws.request({"op": "members", "room": "nowhere"})
        assert r["type"] == "error" and r["code"] == 404, r
    assert gw.api("GET", "/api/rooms/nowhere/members").status == 404


def test_members_of_a_room_are_hidden_from_non_members(gw):
    with gw.ws("alice") as ws:
        ws.request({"op": "join", "room": "r"})
        r = gw.api("GET", "/api/rooms/r/members", bearer=gw.token("carol"))
        assert r.status == 403, r
        r = gw.ws("carol")
        try:
            assert r.request({"op": "members", "room": "r"})["code"] == 403
        finally:
            r.close_socket()


@pytest.mark.gateway_args("--room-presence-events")
def test_presence_events_in_a_room(gw):
    with gw.ws("alice") as alice:
        alice.request({"op": "join", "room": "r"})
        own = alice.recv_json()  # alice is a member when her own join is announced
        check_event(own, "presence", {"event": "join", "user": "alice"}, room="r", sender="alice")
        with gw.ws("bob") as bob:
            bob.request({"op": "join", "room": "r"})
            ev = alice.recv_json()
            check_event(ev, "presence", {"event": "join", "user": "bob"}, room="r", sender="bob")
            bob.request({"op": "leave", "room": "r"})
            ev = alice.recv_json()
            check_event(ev, "presence", {"event": "leave", "user": "bob"}, room="r", sender="bob")
        assert_nothing_more(alice)


# --- follows and feeds --------------------------------------------------------------------------------------------


def test_follow_api(gw):
    assert gw.api("PUT", "/api/follows/ann/ben").status == 201
    assert gw.api("PUT", "/api/follows/ann/ben").status == 204
    assert gw.api("PUT", "/api/follows/ann/cat").status == 201
    doc = gw.ok("GET", "/api/follows/ann")
    assert doc["user"] == "ann" and sorted(doc["follows"]) == ["ben", "cat"], doc
    assert gw.ok("GET", "/api/followers/ben") == {"user": "ben", "followers": ["ann"]}
    assert gw.api("DELETE", "/api/follows/ann/ben").status == 204
    assert gw.api("DELETE", "/api/follows/ann/ben").status == 404
    assert gw.ok("GET", "/api/follows/ann") == {"user": "ann", "follows": ["cat"]}
    assert gw.ok("GET", "/api/followers/ben") == {"user": "ben", "followers": []}


def test_ids_that_are_not_utf8_are_refused_not_fatal(gw):
    # Found by the http_gateway fuzzer: a user id percent-decoded to bytes that are not UTF-8 went into the JSON
    # answer, whose encoder threw, and the gateway's worker terminated. Every path that takes an id refuses it.
    for method, path in (("GET", "/api/followers/%95lice"), ("GET", "/api/follows/%95lice"),
                         ("PUT", "/api/follows/ann/%C0%AF"), ("GET", "/api/presence/%FF"),
                         ("GET", "/api/rooms/%95dev/members"), ("GET", "/api/inbox/%95lice")):
        r = gw.api(method, path)
        assert r.status == 400, (method, path, r.status)
    assert gw.ok("GET", "/api/followers/ben") == {"user": "ben", "followers": []}  # still serving


def test_bulk_follows_skip_comments_and_count_existing(gw):
    body = "# who follows whom\n\nann ben\nann cat\n   \nben cat\n# done\n"
    assert gw.ok("POST", "/api/follows", body, headers={"Content-Type": "text/plain"}) == {"added": 3, "existing": 0}
    assert gw.ok("POST", "/api/follows", "ann ben\ndan eve\n") == {"added": 1, "existing": 1}
    assert sorted(gw.ok("GET", "/api/followers/cat")["followers"]) == ["ann", "ben"]
    assert gw.api("POST", "/api/follows", "just-one-name\n").status == 400


def million_edges() -> bytes:
    """100 000 users following 10 others each: u<a> follows u<(a + 1 + k*9973) % 100000> for k in 0..9, all
    distinct and none a self-follow. So every user has exactly 10 followers too; u499 follows u500."""
    lines = ["# a million follow edges"]
    for k in range(10):
        step = 1 + k * 9973
        lines.extend(f"u{a} u{(a + step) % 100_000}" for a in range(100_000))
    return ("\n".join(lines) + "\n").encode()


def test_bulk_load_of_a_million_edges(gw):
    body = million_edges()
    t0 = time.monotonic()
    r = gw.api("POST", "/api/follows", body, headers={"Content-Type": "text/plain"}, timeout=120)
    elapsed = time.monotonic() - t0
    print(f"bulk load of 1 000 000 follow edges ({len(body) / 1e6:.1f} MB): {elapsed:.2f} s")
    assert r.status == 200 and r.json() == {"added": 1_000_000, "existing": 0}, r
    assert elapsed < 20, f"1 000 000 edges took {elapsed:.1f} s"
    assert len(gw.ok("GET", "/api/follows/u0")["follows"]) == 10
    assert len(gw.ok("GET", "/api/followers/u500")["followers"]) == 10
    with gw.ws("u499") as ws:
        # Every follower's inbox holds it (u499 is the one connected).
        assert gw.ok("POST", "/api/feed/u500", {"data": "posted"}) == {"delivered": 10}
        ev = check_event(ws.recv_json(), "message", "posted", sender="u500")
        assert ev["feed"] == "u500"


def test_feed_reaches_every_follower_online_or_not(gw):
    for a, b in (("ann", "ben"), ("cat", "ben"), ("ann", "dan")):
        assert gw.api("PUT", f"/api/follows/{a}/{b}").status == 201
    with gw.ws("ann") as ann, gw.ws("ann") as ann2, gw.ws("eve") as eve:  # cat is offline; eve follows nobody
        assert gw.ok("POST", "/api/feed/ben", {"data": {"post": 1}}) == {"delivered": 2}
        for c in (ann, ann2):
            ev = check_event(c.recv_json(), "message", {"post": 1}, sender="ben")
            assert ev["feed"] == "ben", ev
        conn = amqp(gw)
        conn.channel().basic_publish("warren.feed", "dan", b'{"post": 2}')
        conn.close()
        ev = check_event(ann.recv_json(), "message", {"post": 2}, sender="dan")
        assert ev["feed"] == "dan", ev
        next_is(eve, gw, "eve")
        assert gw.ok("POST", "/api/feed/nobody-follows-me", {"data": 1}) == {"delivered": 0}
    # cat was away: the post waits in its inbox.
    [ev] = gw.poll("cat", 0, timeout=1).json()
    check_event(ev, "message", {"post": 1}, sender="ben")


def test_follows_survive_a_restart(gw):
    assert gw.api("PUT", "/api/follows/ann/ben").status == 201
    assert gw.ok("POST", "/api/follows", "ann cat\ncat ben\n") == {"added": 2, "existing": 0}
    assert gw.api("DELETE", "/api/follows/ann/cat").status == 204
    gw.proc.restart()
    assert gw.ok("GET", "/api/follows/ann") == {"user": "ann", "follows": ["ben"]}
    assert sorted(gw.ok("GET", "/api/followers/ben")["followers"]) == ["ann", "cat"]
    with gw.ws("ann") as ws:
        assert gw.ok("POST", "/api/feed/ben", {"data": "after restart"}) == {"delivered": 2}
        assert ws.recv_json()["data"] == "after restart"


def test_builtin_exchanges_over_amqp_and_across_a_restart(gw):
    """warren.users from AMQP: a transient send to nobody connected is unroutable (mandatory returns it), routed to a queue bound with
    the user id, not deletable (403), and a durable binding to it survives a restart (the exchange exists before
    recovery) while the exchange itself is never exported."""
    c = amqp(gw)
    ch = c.channel()
    ch.exchange_declare("warren.users", "x-warren-inbox", passive=True)
    ch.queue_declare("audit", durable=True)
    ch.queue_bind("audit", "warren.users", "bob")
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish("warren.users", "nobody", b"x", mandatory=True,
                         properties=pika.BasicProperties(headers={"x-warren-transient": True}))
    ch.basic_publish("warren.users", "bob", b'{"n":1}', mandatory=True,
                     properties=pika.BasicProperties(delivery_mode=2))
    assert ch.queue_declare("audit", passive=True).method.message_count == 1
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.exchange_delete("warren.users")
    assert e.value.reply_code == 403, e.value
    c.close()
    http_port = gw.proc.http_port
    doc = json.loads(urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{http_port}/api/definitions",
        headers={"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="}), timeout=10).read())
    assert not [x for x in doc["exchanges"] if x["name"].startswith("warren.")], doc["exchanges"]
    assert {"source": "warren.users", "destination": "audit", "routing_key": "bob"}.items() <= next(
        b for b in doc["bindings"] if b["destination"] == "audit").items()
    gw.proc.restart()
    c = amqp(gw)
    ch = c.channel()
    ch.confirm_delivery()
    ch.basic_publish("warren.users", "bob", b'{"n":2}', mandatory=True)  # routed through the restored binding
    assert ch.queue_declare("audit", passive=True).method.message_count == 2
    c.close()


# --- presence and inbox lifetime ----------------------------------------------------------------------------------


def test_presence_counts_connections(gw):
    assert gw.presence("alice") == {"online": False, "connections": 0}
    a, b = gw.ws("alice"), gw.ws("alice")
    s = gw.sse("alice")
    try:
        wait_for(lambda: gw.presence("alice") == {"online": True, "connections": 3}, 5, "3 connections")
        a.close_socket()
        wait_for(lambda: gw.presence("alice") == {"online": True, "connections": 2}, 5, "2 connections")
    finally:
        b.close_socket()
        s.close()
    wait_for(lambda: gw.presence("alice") == {"online": False, "connections": 0}, 5, "alice offline")


@pytest.mark.gateway_args("--inbox-linger", "1", "--inbox-ttl", "3")
def test_inbox_outlives_its_linger_until_its_events_expire(gw):
    with gw.ws("alice") as ws:
        ws.request({"op": "join", "room": "lobby"})
    assert gw.send("alice", "still held") is True
    t0 = time.monotonic()
    # After the linger the user's rooms go (the live part of the inbox), the held event stays.
    wait_for(lambda: gw.api("GET", "/api/rooms/lobby/members").status == 404, 15, "the membership to go")
    page = gw.ok("GET", "/api/inbox/alice")
    assert [e["data"] for e in page["events"]] == ["still held"], page
    # After --inbox-ttl the event expires and the inbox is forgotten.
    wait_for(lambda: gw.ok("GET", "/api/inbox/alice")["last_seq"] == 0, 15, "the inbox to go")
    assert time.monotonic() - t0 >= 2, "expired long before its 3 s ttl"


# --- the backend API's authentication -----------------------------------------------------------------------------


def import_users(gw: Gateway, users: list[dict]) -> None:
    perms = [{"user": u["name"], "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"} for u in users]
    r = http_request(gw.proc.http_port, "POST", "/api/definitions", {"users": users, "permissions": perms},
                     {"Authorization": basic_auth("guest", "guest")})
    assert r.status == 204, r


BACKEND_CALLS = [
    ("POST", "/api/send", {"user": "alice", "data": 1}),
    ("POST", "/api/rooms/r/publish", {"data": 1}),
    ("PUT", "/api/follows/ann/ben", None),
    ("GET", "/api/follows/ann", None),
    ("GET", "/api/followers/ben", None),
    ("DELETE", "/api/follows/ann/ben", None),
    ("POST", "/api/follows", "ann ben\n"),
    ("POST", "/api/feed/ben", {"data": 1}),
    ("GET", "/api/presence/alice", None),
    ("GET", "/api/rooms/r/members", None),
]


def test_backend_api_needs_a_management_user(gw):
    import_users(gw, [{"name": "plain", "password": "pw", "tags": []},
                      {"name": "mon", "password": "pw", "tags": ["management"]}])
    wrong = []
    for method, path, body in BACKEND_CALLS:
        for auth, expected in ((None, 401), (("guest", "wrong"), 401), (("nobody", "pw"), 401),
                               (("plain", "pw"), 403)):
            r = gw.api(method, path, body, auth=auth)
            doc = json_or_none(r.body)
            if r.status != expected or not isinstance(doc, dict) or "error" not in doc:
                wrong.append(f"{method} {path} as {auth}: expected {expected}, got {r!r}")
        r = gw.api(method, path, body, auth=("mon", "pw"))
        if r.status not in (200, 201, 204):
            wrong.append(f"{method} {path} as a management user: {r!r}")
    assert not wrong, "\n".join(wrong)


EXCHANGE_OF_CALL = {"/api/send": "warren.users", "/api/presence": "warren.users", "/api/inbox": "warren.users",
                    "/api/rooms": "warren.rooms",
                    "/api/follows": "warren.feed", "/api/followers": "warren.feed", "/api/feed": "warren.feed"}


def exchange_of(path: str) -> str:
    return next(x for prefix, x in EXCHANGE_OF_CALL.items() if path == prefix or path.startswith(prefix + "/"))


def test_backend_api_follows_the_users_permissions(gw):
    # Tagged users whose permissions in the gateway's vhost allow only some of the three exchanges.
    users = [{"name": n, "password": "pw", "tags": ["management"]}
             for n in ("noperm", "readonly", "writeonly", "usersonly")]
    perms = [{"user": "readonly", "vhost": "/", "configure": ".*", "write": "^$", "read": ".*"},
             {"user": "writeonly", "vhost": "/", "configure": ".*", "write": ".*", "read": "^$"},
             {"user": "usersonly", "vhost": "/", "configure": "", "write": r"^warren\.users$",
              "read": r"^warren\.users$"}]
    r = http_request(gw.proc.http_port, "POST", "/api/definitions", {"users": users, "permissions": perms},
                     {"Authorization": basic_auth("guest", "guest")})
    assert r.status == 204, r
    wrong = []
    inbox_calls = [("GET", "/api/inbox/alice", None), ("PUT", "/api/inbox/alice/read", {"seq": 1}),
                   ("DELETE", "/api/inbox/alice", None)]
    for method, path, body in BACKEND_CALLS + inbox_calls:
        exchange = exchange_of(path)
        reads = method == "GET"
        for user, allowed in (("noperm", False), ("readonly", reads), ("writeonly", not reads),
                              ("usersonly", exchange == "warren.users")):
            r = gw.api(method, path, body, auth=(user, "pw"))
            doc = json_or_none(r.body)
            if allowed:
                # (a read position for a user with nothing held is 404: allowed, and answered)
                if r.status not in (200, 201, 204) and not (r.status == 404 and "inbox" in path):
                    wrong.append(f"{method} {path} as {user}: expected success, got {r!r}")
                continue
            if user == "noperm":
                text = "access to vhost '/' refused for user 'noperm'"
            else:
                kind = "read" if reads else "write"
                text = f"{kind} access to exchange '{exchange}' in vhost '/' refused for user '{user}'"
            if r.status != 403 or not isinstance(doc, dict) or doc.get("reason") != text:
                wrong.append(f"{method} {path} as {user}: expected 403 {text!r}, got {r!r}")
    assert not wrong, "\n".join(wrong)


# --- bad input and limits -----------------------------------------------------------------------------------------


@pytest.fixture
def bystander(gw):
    """A WebSocket open through a bad-input test; afterwards it must still be served."""
    ws = gw.ws("bystander")
    yield ws
    gw.proc.assert_alive()
    assert ws.request({"op": "ping"})["type"] == "ok"
    next_is(ws, gw, "bystander")
    ws.close_socket()


@pytest.mark.parametrize("garbage", [
    b"NOT HTTP AT ALL\r\n\r\n",
    b"GET /poll HTTP/1.1\r\nHost: x\r\nno colon in this line\r\n\r\n",
    b"GET /poll HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",
], ids=["words", "header-without-colon", "negative-length", "tls-hello"])
def test_malformed_http_is_400_and_closed(gw, bystander, garbage):
    with RawHttp(gw.port) as c:
        c.send(garbage)
        r = c.read_response()
        assert r.status == 400, r
        assert c.is_closed(3), "the connection stayed open after a 400"


@pytest.mark.parametrize("where", ["header", "target"])
def test_oversized_request_head_is_431(gw, bystander, where):
    target = query("/poll", token=gw.token("alice"), since=0, timeout=1)
    headers = {"X-Padding": "a" * 9000} if where == "header" else {}
    if where == "target":
        target += "&pad=" + "a" * 9000
    with RawHttp(gw.port) as c:
        c.try_send(format_request("GET", target, gw.port, headers))
        assert c.read_response().status == 431


def test_request_head_under_the_limit_is_fine(gw, bystander):
    r = http_request(gw.port, "GET", query("/poll", token=gw.token("alice"), since=0, timeout=1),
                     headers={"X-Padding": "a" * 6000})
    assert r.status == 200, r


@pytest.mark.parametrize("path,size", [("/api/send", 2 << 20), ("/api/follows", 65 << 20)])
def test_oversized_body_is_413(gw, bystander, path, size):
    with RawHttp(gw.port) as c:
        c.send(format_request("POST", path, gw.port, {"Authorization": basic_auth("guest", "guest"),
                                                      "Content-Length": str(size),
                                                      "Content-Type": "application/json"}))
        try:
            r = c.read_response(timeout=3)  # decided from the head alone
        except ReadTimeout:
            c.try_send(b" " * size)  # or after reading the body up to the limit
            r = c.read_response(timeout=10)
        assert r.status == 413, r


def test_unknown_paths_are_404(gw, bystander):
    for method, path in (("GET", "/nope"), ("GET", "/api/nope"), ("POST", "/ws2"),
                         ("GET", "/api/rooms/r/dance"), ("GET", "/warren.js/x")):
        r = gw.api(method, path)
        assert r.status == 404, (method, path, r)


def test_the_demo_page_and_the_client_are_served(gw):
    page = gw.api("GET", "/")
    assert page.status == 200, page
    assert page.headers.get("Content-Type", "").startswith("text/html"), page
    assert b"warren.js" in page.body, page
    js = gw.api("GET", "/warren.js")
    assert js.status == 200 and js.headers.get("Content-Type", "").startswith("text/javascript"), js
    assert b"Warren" in js.body


@pytest.mark.gateway_args("--web-max-connections-per-ip", "5")
def test_connections_per_ip_limit(gw):
    held = [gw.ws(f"user{i}", attached=False) for i in range(5)]  # the presence check is a connection too
    try:
        with pytest.raises(HandshakeRefused) as e:
            gw.ws("user5", attached=False)
        assert e.value.response.status == 429, e.value.response
        with RawHttp(gw.port) as c:  # any request from this address; the 429 may come before it is read
            c.try_send(format_request("GET", "/api/presence/user0", gw.port,
                                      {"Authorization": basic_auth("guest", "guest")}))
            assert c.read_response().status == 429
            assert c.is_closed(3), "the connection over the limit was not closed"
        # Another address is not affected.
        with gw.ws("other", source_address="127.0.0.2", attached=False) as other:
            assert other.request({"op": "ping"})["type"] == "ok"
        for ws in held:
            assert ws.request({"op": "ping"})["type"] == "ok"
        held.pop().close_socket()

        def sixth_gets_in():
            try:
                held.append(gw.ws("user5", attached=False))
                return True
            except HandshakeRefused:
                return False
        wait_for(sixth_gets_in, 5, "a place to free up once one connection closed")
    finally:
        for ws in held:
            ws.close_socket()


@pytest.mark.gateway_args("--web-publish-rate", "5")
def test_publish_rate_over_websocket_is_429_then_1008(gw):
    with gw.ws("alice") as ws:
        replies, closed = [], None
        deadline = time.monotonic() + 15
        n = 0
        while closed is None and time.monotonic() < deadline:
            batch = b"".join(WsClient.encode_frame(0x1, json.dumps(
                {"op": "publish", "room": "r", "data": i, "id": i}).encode()) for i in range(n, n + 20))
            n += 20
            ws.send_raw(batch)
            try:
                while True:
                    replies.append(ws.recv_json(0.05))
            except ReadTimeout:
                pass
            except ClosedByServer as e:
                closed = e.code
            except PeerClosed:
                closed = "tcp"
        oks = [r for r in replies if r.get("type") == "ok"]
        limited = [r for r in replies if r.get("type") == "error" and r.get("code") == 429]
        print(f"{n} publishes sent: {len(oks)} ok, {len(limited)} refused with 429, closed with {closed}")
        assert len(oks) >= 5, "the burst was not allowed"
        assert limited, "no 429 before the close"
        assert closed == 1008, f"a WebSocket that kept going was closed with {closed}, expected 1008"


@pytest.mark.gateway_args("--web-publish-rate", "5")
def test_publish_rate_over_http_is_429_per_connection(gw):
    token = gw.token("alice")
    statuses = []
    with RawHttp(gw.port) as c:
        for i in range(40):
            if not c.try_send(format_request("POST", "/api/rooms/r/publish", gw.port,
                                             {"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"}, json.dumps({"data": i}).encode())):
                break
            try:
                r = c.read_response()
            except PeerClosed:
                break
            statuses.append(r.status)
            if r.status == 429:
                assert r.json().get("error"), r
                break
    assert statuses.count(200) >= 5 and statuses[-1] == 429, statuses
    # Another connection has its own allowance.
    assert gw.api("POST", "/api/rooms/r/publish", {"data": "fresh"}, bearer=token).status == 200


# --- resource alarms ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alarm", [("--vm-memory-high-watermark", "0"), ("--disk-free-limit", "1000TB")],
                         ids=["memory", "disk"])
def test_publishing_over_the_gateway_is_refused_during_an_alarm(warren_factory, alarm):
    gw = Gateway(warren_factory(*gateway_args(*alarm)))
    with gw.ws("alice") as ws:
        assert ws.request({"op": "join", "room": "r"})["type"] == "ok"  # not a publish: allowed
        r = ws.request({"op": "publish", "room": "r", "data": 1})
        assert r["type"] == "error" and r["code"] == 503, r
        assert ws.request({"op": "ping"})["type"] == "ok"
    refused = [
        gw.api("POST", "/api/rooms/r/publish", {"data": 1}, bearer=gw.token("alice")),
        gw.api("POST", "/api/send", {"user": "alice", "data": 1}),
        gw.api("POST", "/api/rooms/r/publish", {"data": 1}),
        gw.api("POST", "/api/feed/ben", {"data": 1}),
    ]
    for r in refused:
        assert r.status == 503 and r.json().get("error"), r
    # Reading still works.
    assert gw.api("GET", "/api/presence/alice").status == 200
    assert gw.api("GET", "/api/rooms/r/members").status == 200
