"""Durable inboxes (docs/web-api.md, "Inboxes"; docs/storage.md, "Inbox records"), black-box on the real binary:
sends to users who are away are held and delivered on connect or resume over every transport, limited by count
and age (per send too), transient sends are not held, everything held survives a restart and a kill -9 with its
numbering, room history too; the backend's inbox API (read, read position, erase) with its errors and
authentication, and the browser's own read position."""

import json
import time
import urllib.request

import pika
import pytest

from support.web_gateway import TRANSPORTS, Gateway, basic_auth, gateway_args, open_receiver, wait_for
from support.ws_client import make_jwt


@pytest.fixture
def gw(warren_factory, request):
    marker = request.node.get_closest_marker("gateway_args")
    return Gateway(warren_factory(*gateway_args(*(marker.args if marker else ()))))


def amqp(gw: Gateway) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=gw.proc.amqp_port, connection_attempts=1, socket_timeout=5))


def read_all(gw: Gateway, transport: str, user: str, since: int, n: int) -> list[dict]:
    with open_receiver(gw, transport, user, since=since) as r:
        return [r.next_event() for _ in range(n)]


def inbox(gw: Gateway, user: str, **params) -> dict:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return gw.ok("GET", f"/api/inbox/{user}" + (f"?{query}" if query else ""))


# --- held for users who are away ------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_offline_sends_arrive_on_the_first_connection_from_zero(gw, transport):
    user = f"hank-{transport}"
    for i in range(3):
        assert gw.send(user, {"n": i}) is True
    events = read_all(gw, transport, user, 0, 3)
    assert [e["data"] for e in events] == [{"n": 0}, {"n": 1}, {"n": 2}], events
    assert [e["seq"] - events[0]["seq"] for e in events] == [0, 1, 2], events


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_resume_gets_everything_sent_while_away(gw, transport):
    user = f"ida-{transport}"
    gw.send(user, "before")
    [first] = read_all(gw, transport, user, 0, 1)
    for i in range(5):
        gw.send(user, f"away {i}")
    missed = read_all(gw, transport, user, first["seq"], 5)
    assert [e["data"] for e in missed] == [f"away {i}" for i in range(5)], missed
    assert missed[0]["seq"] == first["seq"] + 1 and missed[0]["type"] == "message", missed


def test_offline_sends_over_amqp_with_confirms_and_feeds_are_held(gw):
    conn = amqp(gw)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("warren.users", "jay", b'{"via":"amqp"}', mandatory=True,
                     properties=pika.BasicProperties(delivery_mode=2))
    conn.close()
    assert gw.api("PUT", "/api/follows/jay/star").status == 201
    assert gw.ok("POST", "/api/feed/star", {"data": "posted"}) == {"delivered": 1}
    page = inbox(gw, "jay")
    assert [e["data"] for e in page["events"]] == [{"via": "amqp"}, "posted"], page
    assert page["events"][1]["feed"] == "star", page


@pytest.mark.gateway_args("--inbox-size", "3")
def test_the_count_limit_keeps_the_newest(gw):
    for i in range(5):
        gw.send("kai", i)
    page = inbox(gw, "kai")
    assert [e["data"] for e in page["events"]] == [2, 3, 4], page
    events = read_all(gw, "ws", "kai", page["first_seq"] - 2, 4)
    assert events[0]["type"] == "reset" and events[0]["data"]["reason"] == "dropped", events
    assert [e["data"] for e in events[1:]] == [2, 3, 4], events


def test_a_send_with_a_short_ttl_expires_on_its_own(gw):
    assert gw.ok("POST", "/api/send", {"user": "lou", "data": "brief", "ttl": 0.5}) == {"routed": True}
    gw.send("lou", "lasting")
    assert [e["data"] for e in inbox(gw, "lou")["events"]] == ["brief", "lasting"]
    time.sleep(0.8)
    assert [e["data"] for e in inbox(gw, "lou")["events"]] == ["lasting"]
    [ev] = gw.poll("lou", 0, timeout=1).json()
    assert ev["data"] == "lasting", ev
    # Over AMQP the message's expiration (ms) is the ttl.
    conn = amqp(gw)
    conn.channel().basic_publish("warren.users", "lou", b'"amqp brief"',
                                 properties=pika.BasicProperties(expiration="300"))
    conn.close()
    wait_for(lambda: len(inbox(gw, "lou")["events"]) == 2, 5, "the AMQP send to be held")
    time.sleep(0.6)
    assert [e["data"] for e in inbox(gw, "lou")["events"]] == ["lasting"]


@pytest.mark.gateway_args("--inbox-ttl", "1", "--inbox-linger", "1")
def test_users_who_never_return_cost_nothing_once_their_events_expired(gw):
    for u in range(20):
        gw.send(f"gone{u}", "hello")
    def figures():  # the management port's gateway statistics
        req = urllib.request.Request(f"http://127.0.0.1:{gw.proc.http_port}/api/warren/gateway",
                                     headers={"Authorization": basic_auth("guest", "guest")})
        return json.loads(urllib.request.urlopen(req, timeout=5).read())

    assert figures()["inboxes"] >= 20
    wait_for(lambda: figures()["inboxes"] == 0, 15, "the expired inboxes to be forgotten")
    assert figures()["held_events"] == 0


def test_transient_sends_reach_only_connected_users_and_are_not_held(gw):
    assert gw.ok("POST", "/api/send", {"user": "max", "data": "typing", "transient": True}) == {"routed": False}
    gw.send("max", "held")
    with gw.ws("max", since=0) as ws:
        assert ws.recv_json()["data"] == "held"
        assert gw.ok("POST", "/api/send", {"user": "max", "data": "typing", "transient": True}) == {"routed": True}
        ev = ws.recv_json()
        assert ev["data"] == "typing" and ev["transient"] is True, ev
    assert [e["data"] for e in inbox(gw, "max")["events"]] == ["held"]


@pytest.mark.parametrize("body, reason", [
    ({"user": "x", "data": 1, "ttl": -1}, "ttl"),
    ({"user": "x", "data": 1, "ttl": "soon"}, "ttl"),
    ({"user": "x", "data": 1, "transient": "yes"}, "transient"),
])
def test_malformed_send_options_are_refused(gw, body, reason):
    r = gw.api("POST", "/api/send", body)
    assert r.status == 400 and reason in r.json()["reason"], r


# --- durable ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_restart_keeps_inboxes_and_the_numbering_without_a_reset(gw, transport):
    user = f"ned-{transport}"
    gw.send(user, "one")
    [first] = read_all(gw, transport, user, 0, 1)
    gw.send(user, "two")
    gw.proc.restart()
    gw.send(user, "three")
    events = read_all(gw, transport, user, first["seq"], 2)
    assert [(e["type"], e["data"], e["seq"]) for e in events] == [
        ("message", "two", first["seq"] + 1), ("message", "three", first["seq"] + 2)], events


def test_a_kill9_keeps_every_answered_send_and_room_history(gw):
    for i in range(50):
        assert gw.send("ola", i) is True
    gw.ok("POST", "/api/rooms/lobby/publish", {"data": "kept"})
    gw.proc.kill9()
    gw.proc.start()
    page = inbox(gw, "ola", limit=1000)
    assert [e["data"] for e in page["events"]] == list(range(50)), page
    with gw.ws("pia") as ws:
        ws.request({"op": "join", "room": "lobby"})
        got = [ws.recv_json() for _ in range(1)]
    assert got[0]["type"] == "history" and got[0]["data"] == "kept", got


# --- the backend's inbox API ------------------------------------------------------------------------------------


def test_inbox_pages_read_position_and_unread_count(gw):
    for i in range(5):
        gw.send("quin", i)
    page = inbox(gw, "quin", limit=2)
    assert [e["data"] for e in page["events"]] == [0, 1] and page["more"] is True, page
    assert page["unread"] == 5 and page["read_seq"] == 0, page
    nxt = inbox(gw, "quin", since=page["events"][-1]["seq"], limit=10)
    assert [e["data"] for e in nxt["events"]] == [2, 3, 4] and nxt["more"] is False, nxt
    r = gw.ok("PUT", "/api/inbox/quin/read", {"seq": page["events"][-1]["seq"]})
    assert r == {"read_seq": page["events"][-1]["seq"], "unread": 3}, r
    # The browser sets it through its own connection too: over the WebSocket, or over HTTP with its token.
    with gw.ws("quin") as ws:
        r = ws.request({"op": "read", "seq": nxt["events"][0]["seq"], "id": 7})
        assert r["type"] == "ok" and r["unread"] == 2 and r["id"] == 7, r
        r = ws.request({"op": "read"})
        assert r["type"] == "error" and r["code"] == 400, r
    tok = make_jwt(gw.secret, "quin")
    assert gw.ok("PUT", "/api/inbox/read", {"seq": nxt["events"][-1]["seq"]}, bearer=tok) == {
        "read_seq": nxt["events"][-1]["seq"], "unread": 0}
    mine = gw.ok("GET", "/api/inbox?limit=1", bearer=tok)
    assert mine["user"] == "quin" and mine["unread"] == 0 and len(mine["events"]) == 1, mine
    # Kept across a restart.
    gw.proc.restart()
    assert inbox(gw, "quin")["read_seq"] == nxt["events"][-1]["seq"]


def test_a_read_position_far_before_everything_held_is_kept_as_just_before_the_first(gw):
    """The index keeps the read position as a 32-bit distance back from the next seq (docs/web-api.md,
    "Inboxes"); seqs start at the time in microseconds, so 1 is far before anything held, and 0 clears it."""
    for i in range(3):
        gw.send("ray", i)
    page = inbox(gw, "ray")
    assert gw.ok("PUT", "/api/inbox/ray/read", {"seq": 1}) == {"read_seq": page["first_seq"] - 1, "unread": 3}
    gw.proc.restart()
    assert inbox(gw, "ray")["read_seq"] == page["first_seq"] - 1
    assert gw.ok("PUT", "/api/inbox/ray/read", {"seq": 0}) == {"read_seq": 0, "unread": 3}
    assert gw.ok("PUT", "/api/inbox/ray/read", {"seq": page["last_seq"] + 100}) == {
        "read_seq": page["last_seq"], "unread": 0}


def test_an_unknown_user_has_an_empty_inbox_but_no_read_position(gw):
    assert inbox(gw, "nobody") == {"user": "nobody", "first_seq": 0, "last_seq": 0, "read_seq": 0, "unread": 0,
                                   "events": [], "more": False}
    r = gw.api("PUT", "/api/inbox/nobody/read", {"seq": 1})
    assert r.status == 404 and r.json()["error"] == "not_found", r


def test_delete_erases_a_users_inbox_for_good(gw):
    gw.send("rex", "private")
    assert gw.api("DELETE", "/api/inbox/rex").status == 204
    assert inbox(gw, "rex")["events"] == []
    assert gw.api("DELETE", "/api/inbox/rex").status == 204  # nothing left: the same answer
    gw.proc.restart()
    assert inbox(gw, "rex")["events"] == []
    with gw.ws("rex", since=0) as ws:
        gw.send("rex", "new")
        assert ws.recv_json()["data"] == "new"


@pytest.mark.parametrize("method, path, body, status", [
    ("GET", "/api/inbox/u?since=x", None, 400),
    ("GET", "/api/inbox/u?limit=0", None, 400),
    ("GET", "/api/inbox/u?limit=1001", None, 400),
    ("PUT", "/api/inbox/u/read", {"seq": -1}, 400),
    ("PUT", "/api/inbox/u/read", "not json", 400),
    ("POST", "/api/inbox/u", None, 405),
    ("GET", "/api/inbox/u/read", None, 405),
    ("GET", "/api/inbox/u/other", None, 404),
])
def test_inbox_api_errors(gw, method, path, body, status):
    r = gw.api(method, path, body)
    assert r.status == status and "error" in r.json(), r


@pytest.mark.parametrize("method, path", [("GET", "/api/inbox/u"), ("DELETE", "/api/inbox/u"),
                                          ("PUT", "/api/inbox/u/read")])
def test_inbox_api_needs_backend_credentials(gw, method, path):
    assert gw.api(method, path, {"seq": 1}, auth=None).status == 401
    assert gw.api(method, path, {"seq": 1}, auth=("guest", "wrong")).status == 401


def test_a_browser_reads_only_its_own_inbox(gw):
    r = gw.api("GET", "/api/inbox", bearer="not-a-token")
    assert r.status == 401, r
    gw.send("sue", "for sue")
    gw.send("tom", "for tom")
    mine = gw.ok("GET", "/api/inbox", bearer=make_jwt(gw.secret, "sue"))
    assert [e["data"] for e in mine["events"]] == ["for sue"], mine
    r = gw.api("DELETE", "/api/inbox", bearer=make_jwt(gw.secret, "sue"))
    assert r.status == 405, r
