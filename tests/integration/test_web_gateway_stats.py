"""The web gateway's statistics, GET /api/warren/gateway on the management port (docs/web-api.md, "Watching the
gateway"), black-box on the real binary: open connections per transport and online users as real browser clients
come and go, events delivered (live and replayed) with their latency, replays and resets counted on resume, slow
readers cut off, a real delivery rate from the 5 s samples, and who may read it.

Each test gets its own warren (2 workers), so counts start at zero."""

import threading
import time

import pytest

from support.web_gateway import Gateway, basic_auth, gateway_args, wait_for
from support.ws_client import http_request

ZERO_CONNECTIONS = {"websocket": 0, "sse": 0, "stream": 0, "longpoll": 0}


@pytest.fixture
def gw(warren_factory, request):
    marker = request.node.get_closest_marker("gateway_args")
    return Gateway(warren_factory(*gateway_args(*(marker.args if marker else ()))))


def stats_response(gw: Gateway, query: str = "", auth: tuple[str, str] | None = ("guest", "guest")):
    headers = {} if auth is None else {"Authorization": basic_auth(*auth)}
    return http_request(gw.proc.http_port, "GET", "/api/warren/gateway" + query, None, headers)


def stats(gw: Gateway, query: str = "") -> dict:
    r = stats_response(gw, query)
    assert r.status == 200, r
    assert r.headers.get("Content-Type", "").startswith("application/json"), r
    return r.json()


def wait_stats(gw: Gateway, what: str, predicate, timeout: float = 5.0) -> dict:
    """The statistics once `predicate(stats)` holds (counts change on other workers a moment later)."""
    last = {}

    def check():
        last["s"] = stats(gw)
        return predicate(last["s"])

    try:
        wait_for(check, timeout, what)
    except AssertionError as e:
        raise AssertionError(f"{e}; last answer: {last.get('s')}") from None
    return last["s"]


def import_users(gw: Gateway, users: list[dict]) -> None:
    perms = [{"user": u["name"], "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"} for u in users]
    r = http_request(gw.proc.http_port, "POST", "/api/definitions", {"users": users, "permissions": perms},
                     {"Authorization": basic_auth("guest", "guest")})
    assert r.status == 204, r


def test_a_fresh_gateway_reports_zeros_in_the_documented_shape(gw):
    s = stats(gw)
    assert s["connections"] == ZERO_CONNECTIONS, s
    for k in ("online_users", "inboxes", "held_events", "rooms", "events_delivered", "replays", "resets",
              "slow_readers_cut"):
        assert s[k] == 0, (k, s)
    assert s["events_delivered_details"] == {"rate": 0.0}, s
    assert s["delivery_latency"] == {"count": 0, "sum_seconds": 0.0, "p50_ms": 0.0, "p99_ms": 0.0}, s


def test_connections_per_transport_and_online_users(gw):
    ws = gw.ws("alice")
    sse = gw.sse("bob")
    stream = gw.stream("carol")
    second_ws = gw.ws("alice")  # a second connection of the same user: one more WebSocket, not one more user
    polled = {}

    def poll():
        polled["r"] = gw.poll("dave", 0, timeout=20)

    t = threading.Thread(target=poll)
    t.start()
    try:
        # Connections are counted on their workers, users in the hub: the two may differ for a moment.
        s = wait_stats(gw, "the long-poll to be counted",
                       lambda s: s["connections"]["longpoll"] == 1 and s["online_users"] == 4)
        assert s["connections"] == {"websocket": 2, "sse": 1, "stream": 1, "longpoll": 1}, s
        assert s["inboxes"] == 4, s
        # An answered long-poll no longer waits, and its user is offline until the next poll.
        assert gw.send("dave", "wake up")
        t.join(10)
        assert [e["data"] for e in polled["r"].json()] == ["wake up"], polled
        wait_stats(gw, "the answered poll to be counted off",
                   lambda s: s["connections"]["longpoll"] == 0 and s["online_users"] == 3)
    finally:
        t.join(25)
    ws.close_socket()
    s = wait_stats(gw, "a closed WebSocket to be counted off", lambda s: s["connections"]["websocket"] == 1)
    assert s["online_users"] == 3, s  # alice still has her second WebSocket
    time.sleep(0.2)
    assert stats(gw)["online_users"] == 3  # and keeps her place once the hub heard of the close
    second_ws.close_socket()
    sse.close()
    stream.close()
    s = wait_stats(gw, "every connection and user to be counted off",
                   lambda s: s["connections"] == ZERO_CONNECTIONS and s["online_users"] == 0)
    assert s["inboxes"] == 4, s  # they linger (--inbox-linger)


def test_events_delivered_counts_every_write_and_times_live_ones(gw):
    with gw.ws("alice") as ws, gw.sse("bob") as sse:
        for i in range(5):
            assert gw.send("alice", i)
        for i in range(3):
            assert gw.send("bob", i)
        assert [ws.recv_json()["data"] for _ in range(5)] == list(range(5))
        assert [sse.next_event().json()["data"] for _ in range(3)] == list(range(3))
        s = wait_stats(gw, "8 deliveries", lambda s: s["events_delivered"] == 8)
        assert s["held_events"] == 8, s
        latency = s["delivery_latency"]
        assert latency["count"] == 8, s
        assert 0 < latency["sum_seconds"] < 8 * 2.5, s
        assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= 2500, s
    # A replay is a delivery too, but not a live one: no latency for it.
    with gw.ws("alice", since=0) as ws:
        assert [ws.recv_json()["data"] for _ in range(5)] == list(range(5))
        s = wait_stats(gw, "5 replayed deliveries", lambda s: s["events_delivered"] == 13)
        assert s["delivery_latency"]["count"] == 8, s


@pytest.mark.gateway_args("--inbox-size", "3")
def test_replays_and_resets_are_counted_on_resume(gw):
    with gw.ws("alice") as ws:
        assert gw.send("alice", "m1")
        s1 = ws.recv_json()["seq"]
    assert gw.send("alice", "m2")  # missed while away
    # Resuming after m1: m2 is replayed.
    with gw.ws("alice", since=s1) as ws:
        assert ws.recv_json()["data"] == "m2"
    s = wait_stats(gw, "a replay", lambda s: s["replays"] == 1)
    assert s["resets"] == 0, s
    # Resuming from where the client already is: nothing missed, neither.
    with gw.ws("alice", since=s1 + 1) as ws:
        assert gw.send("alice", "m3")
        assert ws.recv_json()["data"] == "m3"
    s = stats(gw)
    assert (s["replays"], s["resets"]) == (1, 0), s
    for i in range(4, 8):
        assert gw.send("alice", f"m{i}")  # the inbox keeps m5..m7: m2..m4 are gone
    # Resuming after m1 again: a reset first, counted as a reset and not as a replay.
    with gw.ws("alice", since=s1) as ws:
        assert ws.recv_json()["type"] == "reset"
        assert [ws.recv_json()["data"] for _ in range(3)] == ["m5", "m6", "m7"]
    s = wait_stats(gw, "a reset", lambda s: s["resets"] == 1)
    assert s["replays"] == 1, s
    assert s["held_events"] == 3, s
    # A long-poll that finds events waiting is a resume as well.
    r = gw.poll("alice", s1 + 5, timeout=5)
    assert [e["data"] for e in r.json()] == ["m7"], r
    s = wait_stats(gw, "the poll's replay", lambda s: s["replays"] == 2)
    assert s["resets"] == 1, s


def test_slow_reader_is_cut_off_and_catches_up(gw):
    # A WebSocket that does not read: the kernel's buffers fill (a few MB on loopback), then the gateway's
    # 256 KB, then the connection stops taking live events and is counted (again if its catch-up backs up too).
    big = "x" * 400_000
    n = 60  # 24 MB, well past what the socket buffers take
    ws = gw.ws("slow")
    try:
        for i in range(n):
            assert gw.send("slow", {"i": i, "pad": big})
        s = wait_stats(gw, "the slow reader to be cut", lambda s: s["slow_readers_cut"] >= 1)
        assert s["connections"]["websocket"] == 1, s
        # Reading now, it gets every event in order, the rest from its inbox once its output drained.
        got = [ws.recv_json(timeout=30)["data"]["i"] for _ in range(n)]
        assert got == list(range(n)), got
        s = wait_stats(gw, "every event to be delivered", lambda s: s["events_delivered"] == n)
        assert s["replays"] >= 1, s  # the catch-up
        assert s["delivery_latency"]["count"] < n, s  # what came from the inbox was not live
    finally:
        ws.close_socket()


def test_delivery_rate_from_samples(gw):
    # Samples are taken every 5 s; a rate needs deliveries between two of them, so keep delivering until one
    # shows (at most three intervals).
    with gw.ws("alice") as ws:
        deadline = time.monotonic() + 20
        sent = 0
        while True:
            for _ in range(10):
                assert gw.send("alice", sent)
                sent += 1
            for _ in range(10):
                ws.recv_json()
            s = stats(gw, "?msg_rates_age=60&msg_rates_incr=5")
            if s["events_delivered_details"]["rate"] > 0:
                break
            assert time.monotonic() < deadline, f"no rate after {sent} deliveries: {s}"
            time.sleep(0.2)
    d = s["events_delivered_details"]
    samples = d["samples"]
    assert len(samples) >= 2, d
    # Newest first, 5 s apart, never decreasing with time, never above the count.
    times = [x["timestamp"] for x in samples]
    values = [x["sample"] for x in samples]
    assert all(a - b == 5000 for a, b in zip(times, times[1:])), times
    assert all(a >= b for a, b in zip(values, values[1:])), values
    assert values[0] <= s["events_delivered"], (values, s["events_delivered"])
    # The rate is the newest interval's: per second over 5 s.
    assert d["rate"] == pytest.approx((values[0] - values[1]) / 5.0), d
    # Without an age: the rate only.
    assert "samples" not in stats(gw)["events_delivered_details"]


def test_needs_a_monitoring_user(gw):
    import_users(gw, [{"name": "manager", "password": "pw", "tags": ["management"]},
                      {"name": "watcher", "password": "pw", "tags": ["monitoring"]}])
    for auth in (None, ("guest", "wrong"), ("nobody", "pw"), ("manager", "pw")):
        r = stats_response(gw, auth=auth)
        assert r.status == 401, (auth, r)
        assert "error" in r.json(), (auth, r)
    r = stats_response(gw, auth=("watcher", "pw"))
    assert r.status == 200 and r.json()["connections"] == ZERO_CONNECTIONS, r
    r = http_request(gw.proc.http_port, "POST", "/api/warren/gateway", b"",
                     {"Authorization": basic_auth("guest", "guest")})
    assert r.status == 405, r
