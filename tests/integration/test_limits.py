"""Limits as RabbitMQ names them, against the real binary:

- vhost limits (max-connections, max-queues) and user limits (max-connections, max-channels), each under, at and
  over the limit, 0 (none allowed) and negative (no limit), refused with RabbitMQ's codes and exact texts (the
  connection refusals read from the raw connection.close, class and method included);
- the node's --max-connections (and its TOML key), over AMQP and AMQPS;
- changes at run time: a limit lowered below the count keeps what is open and refuses what comes next;
- the HTTP API (/api/vhost-limits, /api/user-limits): RabbitMQ's JSON shapes, its 400 texts, 404 for unknown vhosts
  and users, 401 for users without the administrator tag;
- definitions: vhost limits as "parameters" of component vhost-limits, user limits in users[].limits, exported,
  imported into a fresh broker and kept across a restart."""

import base64
import contextlib
import json
import re
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pika
import pika.exceptions
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.amqp_raw import NOT_ALLOWED, RawClient, channel_open_args  # noqa: E402
from support.warren_process import WarrenProcess  # noqa: E402

CONNECTION_OPEN = (10, 40)
CHANNEL_OPEN = (20, 10)


def q(name):
    return urllib.parse.quote(name, safe="")


def api(proc, method, path, body=None, user="guest", password="guest", raw=None):
    """(status, parsed JSON or None) of one management request."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(f"http://127.0.0.1:{proc.http_port}{path}", data=data, method=method)
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, text = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    return status, json.loads(text) if text else None


def ok(proc, method, path, body=None):
    status, doc = api(proc, method, path, body)
    assert status in (200, 201, 204), (method, path, status, doc)
    return doc


def connect(proc, user="guest", password="guest", vhost="/"):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=proc.amqp_port, virtual_host=vhost,
        credentials=pika.PlainCredentials(user, password), connection_attempts=1, socket_timeout=5))


def open_refusal(port, user="guest", password="guest", vhost="/"):
    """The connection.close that answers connection.open: (code, text, class_id, method_id)."""
    with contextlib.closing(RawClient(port).connect()) as c:
        c.login(user, password)
        tune = c.read_tune()
        c.send_tune_ok(tune["channel_max"], tune["frame_max"], 0)
        c.send_open(vhost)
        return c.expect_connection_close(NOT_ALLOWED)


def refused_open(proc, text, **kw):
    code, got, class_id, method_id = open_refusal(proc.amqp_port, **kw)
    assert (code, got, (class_id, method_id)) == (530, text, CONNECTION_OPEN)


@pytest.fixture(scope="module")
def broker():
    proc = WarrenProcess([])
    proc.start()
    ok(proc, "PUT", "/api/users/lu", {"password": "pw", "tags": ""})
    ok(proc, "PUT", "/api/users/mg", {"password": "pw", "tags": "management"})
    try:
        yield proc
    finally:
        proc.stop()
        proc.cleanup()


def vhost_with_user(proc, vhost, user="guest"):
    ok(proc, "PUT", f"/api/vhosts/{q(vhost)}")
    ok(proc, "PUT", f"/api/permissions/{q(vhost)}/{user}", {"configure": ".*", "write": ".*", "read": ".*"})


# --- vhost max-connections --------------------------------------------------------------------------------------


def test_vhost_max_connections_under_at_over(broker):
    vhost_with_user(broker, "vc")
    ok(broker, "PUT", "/api/vhost-limits/vc/max-connections", {"value": 2})
    a = connect(broker, vhost="vc")
    b = connect(broker, vhost="vc")  # at the limit
    refused_open(broker, "NOT_ALLOWED - access to vhost 'vc' refused for user 'guest': connection limit (2) is reached",
                 vhost="vc")
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        connect(broker, vhost="vc")
    # Other vhosts are not affected.
    connect(broker).close()
    a.close()
    c = connect(broker, vhost="vc")  # a place came free
    b.close()
    c.close()


def test_vhost_max_connections_zero_and_negative(broker):
    vhost_with_user(broker, "vz")
    ok(broker, "PUT", "/api/vhost-limits/vz/max-connections", {"value": 0})
    refused_open(broker, "NOT_ALLOWED - access to vhost 'vz' refused for user 'guest': connection limit (0) is reached",
                 vhost="vz")
    ok(broker, "PUT", "/api/vhost-limits/vz/max-connections", {"value": -1})
    conns = [connect(broker, vhost="vz") for _ in range(5)]
    for c in conns:
        c.close()
    assert ok(broker, "GET", "/api/vhost-limits/vz") == [{"vhost": "vz", "value": {"max-connections": -1}}]


def test_vhost_limit_lowered_keeps_open_connections(broker):
    vhost_with_user(broker, "vl")
    conns = [connect(broker, vhost="vl") for _ in range(3)]
    ok(broker, "PUT", "/api/vhost-limits/vl/max-connections", {"value": 1})
    for c in conns:  # still usable
        c.channel().queue_declare("", exclusive=True)
    refused_open(broker, "NOT_ALLOWED - access to vhost 'vl' refused for user 'guest': connection limit (1) is reached",
                 vhost="vl")
    for c in conns[:2]:
        c.close()
    refused_open(broker, "NOT_ALLOWED - access to vhost 'vl' refused for user 'guest': connection limit (1) is reached",
                 vhost="vl")
    conns[2].close()
    connect(broker, vhost="vl").close()
    ok(broker, "DELETE", "/api/vhost-limits/vl/max-connections")
    more = [connect(broker, vhost="vl") for _ in range(3)]
    for c in more:
        c.close()


def test_refused_connection_does_not_count(broker):
    vhost_with_user(broker, "vr")
    ok(broker, "PUT", "/api/vhost-limits/vr/max-connections", {"value": 1})
    for _ in range(3):
        c = connect(broker, vhost="vr")
        refused_open(broker, "NOT_ALLOWED - access to vhost 'vr' refused for user 'guest': connection limit (1) is "
                             "reached", vhost="vr")
        c.close()


def test_vhost_connection_limit_checked_before_permission(broker):
    # As in RabbitMQ's rabbit_reader: the limits, then the vhost permission.
    vhost_with_user(broker, "vp")
    ok(broker, "PUT", "/api/vhost-limits/vp/max-connections", {"value": 0})
    refused_open(broker, "NOT_ALLOWED - access to vhost 'vp' refused for user 'lu': connection limit (0) is reached",
                 user="lu", password="pw", vhost="vp")
    ok(broker, "DELETE", "/api/vhost-limits/vp/max-connections")
    refused_open(broker, "NOT_ALLOWED - access to vhost 'vp' refused for user 'lu'", user="lu", password="pw",
                 vhost="vp")


# --- vhost max-queues -------------------------------------------------------------------------------------------


def queue_refusal(fn):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        fn()
    assert e.value.reply_code == 406, e.value
    return e.value.reply_text


def test_vhost_max_queues(broker):
    vhost_with_user(broker, "vq")
    ok(broker, "PUT", "/api/vhost-limits/vq/max-queues", {"value": 3})
    conn = connect(broker, vhost="vq")
    ch = conn.channel()
    ch.queue_declare("q1")
    ch.queue_declare("q2", durable=True)
    ch.queue_declare("excl", exclusive=True)  # exclusive queues count: 3, at the limit
    ch.queue_declare("q1")  # redeclaring an existing queue at the limit is fine
    ch.queue_declare("q2", passive=True)
    text = queue_refusal(lambda: ch.queue_declare("q4"))
    assert text == "PRECONDITION_FAILED - cannot declare queue 'q4': queue limit in vhost 'vq' (3) is reached"
    ch = conn.channel()
    text = queue_refusal(lambda: ch.queue_declare("", exclusive=True))  # server-named ones count too
    assert re.fullmatch(r"PRECONDITION_FAILED - cannot declare queue 'amq\.gen-[A-Za-z0-9_-]+': queue limit in vhost "
                        r"'vq' \(3\) is reached", text), text
    ch = conn.channel()
    text = queue_refusal(lambda: ch.queue_declare("ad", auto_delete=True))
    assert "'ad'" in text
    # Over HTTP too (RabbitMQ's management declares through a channel): 400 with the reply.
    status, doc = api(broker, "PUT", "/api/queues/vq/q5", {"durable": True})
    assert status == 400 and "queue limit in vhost 'vq' (3) is reached" in doc["reason"], (status, doc)
    ch = conn.channel()
    ch.queue_delete("q1")
    ch.queue_declare("q5")  # a place came free
    # Lowering below the count deletes nothing.
    ok(broker, "PUT", "/api/vhost-limits/vq/max-queues", {"value": 1})
    ch.queue_declare("q2", passive=True)
    assert queue_refusal(lambda: ch.queue_declare("q6")).endswith("queue limit in vhost 'vq' (1) is reached")
    ch = conn.channel()
    ok(broker, "PUT", "/api/vhost-limits/vq/max-queues", {"value": 0})
    assert queue_refusal(lambda: ch.queue_declare("q7")).endswith("queue limit in vhost 'vq' (0) is reached")
    ch = conn.channel()
    ok(broker, "PUT", "/api/vhost-limits/vq/max-queues", {"value": -5})
    ch.queue_declare("q8")
    conn.close()


# --- user limits ------------------------------------------------------------------------------------------------


def test_user_max_connections(broker):
    vhost_with_user(broker, "uc", user="lu")
    ok(broker, "PUT", "/api/permissions/%2F/lu", {"configure": ".*", "write": ".*", "read": ".*"})
    ok(broker, "PUT", "/api/user-limits/lu/max-connections", {"value": 2})
    a = connect(broker, "lu", "pw", "uc")
    b = connect(broker, "lu", "pw", "/")  # counted across vhosts: at the limit
    text = "NOT_ALLOWED - connection refused for user 'lu': user connection limit (2) is reached"
    refused_open(broker, text, user="lu", password="pw", vhost="uc")
    refused_open(broker, text, user="lu", password="pw")
    connect(broker).close()  # another user is not affected
    a.close()
    connect(broker, "lu", "pw").close()
    ok(broker, "PUT", "/api/user-limits/lu/max-connections", {"value": 0})
    refused_open(broker, "NOT_ALLOWED - connection refused for user 'lu': user connection limit (0) is reached",
                 user="lu", password="pw")
    b.close()
    ok(broker, "PUT", "/api/user-limits/lu/max-connections", {"value": -1})
    conns = [connect(broker, "lu", "pw") for _ in range(4)]
    for c in conns:
        c.close()
    ok(broker, "DELETE", "/api/user-limits/lu/max-connections")


def test_user_max_channels(broker):
    ok(broker, "PUT", "/api/users/lc", {"password": "pw", "tags": ""})
    ok(broker, "PUT", "/api/permissions/%2F/lc", {"configure": ".*", "write": ".*", "read": ".*"})
    ok(broker, "PUT", "/api/user-limits/lc/max-channels", {"value": 3})
    a = connect(broker, "lc", "pw")
    b = connect(broker, "lc", "pw")
    a1, a2 = a.channel(), a.channel()
    b1 = b.channel()  # counted over the user's connections: 3, at the limit
    a1.queue_declare("", exclusive=True)
    # Over: RabbitMQ closes the connection with 530 and no method.
    with contextlib.closing(RawClient(broker.amqp_port).connect()) as c:
        c.handshake("lc", "pw")
        c.send_method(1, CHANNEL_OPEN, channel_open_args())
        code, text, class_id, method_id = c.expect_connection_close(NOT_ALLOWED)
        assert (code, text, class_id, method_id) == (
            530, "NOT_ALLOWED - number of channels opened for user 'lc' has reached the maximum allowed user limit "
                 "of 3", 0, 0)
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        a.channel()
    assert e.value.reply_code == 530
    assert "maximum allowed user limit of 3" in e.value.reply_text
    assert not a2.is_open
    # a's channels went with it: two places are free.
    b2 = b.channel()
    b3 = b.channel()
    b2.close()
    b4 = b.channel()
    for ch in (b1, b3, b4):
        ch.queue_declare("", exclusive=True)
    ok(broker, "PUT", "/api/user-limits/lc/max-channels", {"value": 0})
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        connect(broker, "lc", "pw").channel()
    assert e.value.reply_text.endswith("maximum allowed user limit of 0")
    b1.queue_declare("", exclusive=True)  # open channels keep working
    b.close()
    ok(broker, "DELETE", "/api/user-limits/lc/max-channels")
    c = connect(broker, "lc", "pw")
    for _ in range(5):
        c.channel()
    c.close()


def test_deleting_a_user_lifts_its_limits(broker):
    ok(broker, "PUT", "/api/users/ld", {"password": "pw", "tags": ""})
    ok(broker, "PUT", "/api/permissions/%2F/ld", {"configure": ".*", "write": ".*", "read": ".*"})
    ok(broker, "PUT", "/api/user-limits/ld/max-connections", {"value": 0})
    refused_open(broker, "NOT_ALLOWED - connection refused for user 'ld': user connection limit (0) is reached",
                 user="ld", password="pw")
    ok(broker, "DELETE", "/api/users/ld")
    ok(broker, "PUT", "/api/users/ld", {"password": "pw", "tags": ""})
    ok(broker, "PUT", "/api/permissions/%2F/ld", {"configure": ".*", "write": ".*", "read": ".*"})
    assert ok(broker, "GET", "/api/user-limits/ld") == []
    connect(broker, "ld", "pw").close()


# --- the HTTP API -----------------------------------------------------------------------------------------------


def test_vhost_limits_api_shapes(broker):
    vhost_with_user(broker, "va")
    ok(broker, "PUT", "/api/vhost-limits/va/max-connections", {"value": 10})
    ok(broker, "PUT", "/api/vhost-limits/va/max-queues", {"value": 20})
    assert ok(broker, "GET", "/api/vhost-limits/va") == [
        {"vhost": "va", "value": {"max-connections": 10, "max-queues": 20}}]
    listed = ok(broker, "GET", "/api/vhost-limits")
    assert {"vhost": "va", "value": {"max-connections": 10, "max-queues": 20}} in listed
    assert all(set(item) == {"vhost", "value"} for item in listed)
    ok(broker, "DELETE", "/api/vhost-limits/va/max-queues")
    assert ok(broker, "GET", "/api/vhost-limits/va") == [{"vhost": "va", "value": {"max-connections": 10}}]
    ok(broker, "DELETE", "/api/vhost-limits/va/max-connections")
    assert ok(broker, "GET", "/api/vhost-limits/va") == []
    ok(broker, "DELETE", "/api/vhost-limits/va/max-connections")  # clearing what is not set: 204 too
    # /api/vhosts does not show limits (RabbitMQ's does not either).
    assert "limits" not in ok(broker, "GET", "/api/vhosts/va")


def test_vhost_limits_api_errors(broker):
    vhost_with_user(broker, "ve")
    cases = [
        ({"value": "ten"}, "Validation failed\n\nmax-connections should be a number, actually was <<\"ten\">>\n"),
        ({"value": 1.5}, "Validation failed\n\nmax-connections should be a number, actually was 1.5\n"),
        ({"value": None}, "Validation failed\n\nmax-connections should be a number, actually was null\n"),
        ({"value": True}, "Validation failed\n\nmax-connections should be a number, actually was true\n"),
        ({}, "[{key_missing,value}]"),
        ({"valeu": 3}, "[{key_missing,value}]"),
    ]
    for body, reason in cases:
        assert api(broker, "PUT", "/api/vhost-limits/ve/max-connections", body) == (
            400, {"error": "bad_request", "reason": reason}), body
    assert api(broker, "PUT", "/api/vhost-limits/ve/max-foo", {"value": 5}) == (
        400, {"error": "bad_request",
              "reason": "Validation failed\n\nUnrecognised terms [{<<\"max-foo\">>,5}] in limits\n"})
    assert api(broker, "PUT", "/api/vhost-limits/ve/max-queues", raw=b"not json") == (
        400, {"error": "bad_request", "reason": "not_json"})
    assert ok(broker, "GET", "/api/vhost-limits/ve") == []  # nothing was set
    assert api(broker, "PUT", "/api/vhost-limits/nope/max-queues", {"value": 1}) == (
        404, {"error": "not_found", "reason": "vhost_not_found"})
    assert api(broker, "DELETE", "/api/vhost-limits/nope/max-queues")[0] == 404
    assert api(broker, "GET", "/api/vhost-limits/nope")[0] == 404
    # Only administrators change limits (RabbitMQ answers 401, not 403).
    for method, body in (("PUT", {"value": 1}), ("DELETE", None)):
        status, doc = api(broker, method, "/api/vhost-limits/ve/max-queues", body, user="mg", password="pw")
        assert status == 401 and doc["error"] == "not_authorised", (status, doc)
    assert api(broker, "GET", "/api/vhost-limits", user="nobody", password="x")[0] == 401


def test_vhost_limits_visible_to_management_users(broker):
    vhost_with_user(broker, "vs1")
    vhost_with_user(broker, "vs2")
    ok(broker, "PUT", "/api/permissions/vs1/mg", {"configure": "", "write": "", "read": ""})
    ok(broker, "PUT", "/api/vhost-limits/vs1/max-queues", {"value": 7})
    ok(broker, "PUT", "/api/vhost-limits/vs2/max-queues", {"value": 8})
    status, listed = api(broker, "GET", "/api/vhost-limits", user="mg", password="pw")
    assert status == 200
    assert {"vhost": "vs1", "value": {"max-queues": 7}} in listed
    assert all(item["vhost"] != "vs2" for item in listed)
    assert api(broker, "GET", "/api/vhost-limits/vs1", user="mg", password="pw") == (
        200, [{"vhost": "vs1", "value": {"max-queues": 7}}])
    assert api(broker, "GET", "/api/vhost-limits/vs2", user="mg", password="pw")[0] == 401
    status, _ = api(broker, "GET", "/api/vhost-limits", user="lu", password="pw")  # no management tag
    assert status == 401


def test_user_limits_api(broker):
    ok(broker, "PUT", "/api/users/la", {"password": "pw", "tags": ""})
    assert ok(broker, "GET", "/api/user-limits/la") == []
    ok(broker, "PUT", "/api/user-limits/la/max-connections", {"value": 5})
    ok(broker, "PUT", "/api/user-limits/la/max-channels", {"value": 50})
    assert ok(broker, "GET", "/api/user-limits/la") == [
        {"user": "la", "value": {"max-channels": 50, "max-connections": 5}}]
    assert {"user": "la", "value": {"max-channels": 50, "max-connections": 5}} in ok(broker, "GET", "/api/user-limits")
    assert ok(broker, "GET", "/api/users/la")["limits"] == {"max-channels": 50, "max-connections": 5}
    # PUT /api/users keeps the limits unless it names them.
    ok(broker, "PUT", "/api/users/la", {"password": "pw2", "tags": "management"})
    assert ok(broker, "GET", "/api/users/la")["limits"] == {"max-channels": 50, "max-connections": 5}
    ok(broker, "DELETE", "/api/user-limits/la/max-channels")
    assert ok(broker, "GET", "/api/user-limits/la") == [{"user": "la", "value": {"max-connections": 5}}]
    # ... and sets them when it does, checked as RabbitMQ's put_user checks them.
    ok(broker, "PUT", "/api/users/la", {"password": "pw", "tags": "", "limits": {"max-connections": 3}})
    assert ok(broker, "GET", "/api/user-limits/la") == [{"user": "la", "value": {"max-connections": 3}}]
    assert api(broker, "PUT", "/api/users/la", {"password": "pw", "tags": "", "limits": {"max-connections": "3"}}) == (
        400, {"error": "bad_request", "reason": "max-connections should be a number, actually was <<\"3\">>"})
    ok(broker, "PUT", "/api/user-limits/la/max-channels", {"value": 1})
    ok(broker, "DELETE", "/api/user-limits/la/all")
    assert ok(broker, "GET", "/api/user-limits/la") == []

    assert api(broker, "PUT", "/api/user-limits/la/max-channels", {"value": "x"}) == (
        400, {"error": "bad_request", "reason": "max-channels should be a number, actually was <<\"x\">>"})
    assert api(broker, "PUT", "/api/user-limits/la/max-queues", {"value": 1}) == (
        400, {"error": "bad_request", "reason": "Unrecognised terms [{<<\"max-queues\">>,1}] in user-limits"})
    assert api(broker, "PUT", "/api/user-limits/la/max-channels", {}) == (
        400, {"error": "bad_request", "reason": "[{key_missing,value}]"})
    assert api(broker, "PUT", "/api/user-limits/nobody/max-channels", {"value": 1}) == (
        404, {"error": "not_found", "reason": "user_not_found"})
    assert api(broker, "DELETE", "/api/user-limits/nobody/max-channels")[0] == 404
    assert api(broker, "GET", "/api/user-limits/nobody")[0] == 404
    # Administrators only, reading included (RabbitMQ 3.13).
    for method, path, body in (("GET", "/api/user-limits", None), ("GET", "/api/user-limits/mg", None),
                               ("PUT", "/api/user-limits/mg/max-channels", {"value": 1}),
                               ("DELETE", "/api/user-limits/mg/max-channels", None)):
        status, doc = api(broker, method, path, body, user="mg", password="pw")
        assert status == 401 and doc["error"] == "not_authorised", (method, path, status, doc)


# --- definitions and restarts -----------------------------------------------------------------------------------


def test_definitions_round_trip_and_restart(warren_factory):
    a = warren_factory()
    ok(a, "PUT", "/api/vhosts/dv")
    ok(a, "PUT", "/api/vhost-limits/dv/max-connections", {"value": 4})
    ok(a, "PUT", "/api/vhost-limits/dv/max-queues", {"value": 9})
    ok(a, "PUT", "/api/vhost-limits/%2F/max-queues", {"value": -1})
    ok(a, "PUT", "/api/users/du", {"password": "pw", "tags": ""})
    ok(a, "PUT", "/api/user-limits/du/max-channels", {"value": 6})
    defs = ok(a, "GET", "/api/definitions")
    assert {"vhost": "dv", "component": "vhost-limits", "name": "limits",
            "value": {"max-connections": 4, "max-queues": 9}} in defs["parameters"]
    assert {"vhost": "/", "component": "vhost-limits", "name": "limits",
            "value": {"max-queues": -1}} in defs["parameters"]
    users = {u["name"]: u for u in defs["users"]}
    assert users["du"]["limits"] == {"max-channels": 6}
    assert users["guest"]["limits"] == {}
    per_vhost = ok(a, "GET", "/api/definitions/dv")
    assert per_vhost["parameters"] == [{"component": "vhost-limits", "name": "limits",
                                        "value": {"max-connections": 4, "max-queues": 9}}]

    b = warren_factory()
    ok(b, "POST", "/api/definitions", defs)
    assert ok(b, "GET", "/api/vhost-limits/dv") == [
        {"vhost": "dv", "value": {"max-connections": 4, "max-queues": 9}}]
    assert ok(b, "GET", "/api/user-limits/du") == [{"user": "du", "value": {"max-channels": 6}}]
    again = ok(b, "GET", "/api/definitions")
    assert sorted(map(json.dumps, again["parameters"])) == sorted(map(json.dumps, defs["parameters"]))
    # Enforced after an import and after a restart.
    b.restart()
    assert ok(b, "GET", "/api/vhost-limits/dv") == [
        {"vhost": "dv", "value": {"max-connections": 4, "max-queues": 9}}]
    assert ok(b, "GET", "/api/user-limits/du") == [{"user": "du", "value": {"max-channels": 6}}]
    ok(b, "PUT", "/api/vhost-limits/dv/max-connections", {"value": 0})
    b.restart()
    refused_open(b, "NOT_ALLOWED - access to vhost 'dv' refused for user 'guest': connection limit (0) is reached",
                 vhost="dv")
    # A deleted vhost takes its limits with it.
    ok(b, "DELETE", "/api/vhosts/dv")
    ok(b, "PUT", "/api/vhosts/dv")
    assert ok(b, "GET", "/api/vhost-limits/dv") == []
    b.restart()
    assert ok(b, "GET", "/api/vhost-limits/dv") == []


def test_definitions_import_checks_limits(warren_factory):
    w = warren_factory()
    bad = {"vhosts": [{"name": "x"}],
           "parameters": [{"vhost": "x", "component": "vhost-limits", "name": "limits",
                           "value": {"max-connections": "many"}}]}
    status, doc = api(w, "POST", "/api/definitions", bad)
    assert status == 400 and "max-connections should be a number, actually was <<\"many\">>" in doc["reason"], doc
    bad = {"users": [{"name": "z", "password": "pw", "tags": [], "limits": {"max-queues": 1}}]}
    status, doc = api(w, "POST", "/api/definitions", bad)
    assert status == 400 and "Unrecognised terms [{<<\"max-queues\">>,1}] in user-limits" in doc["reason"], doc
    # A max-queues in the file applies to the file's own queues (parameters are imported first).
    defs = {"vhosts": [{"name": "iq"}],
            "parameters": [{"vhost": "iq", "component": "vhost-limits", "name": "limits",
                            "value": {"max-queues": 1}}],
            "queues": [{"name": "a", "vhost": "iq", "durable": True, "auto_delete": False, "arguments": {}},
                       {"name": "b", "vhost": "iq", "durable": True, "auto_delete": False, "arguments": {}}]}
    status, doc = api(w, "POST", "/api/definitions", defs)
    assert status == 400 and "cannot declare queue 'b': queue limit in vhost 'iq' (1) is reached" in doc["reason"]
    # New queues are counted against the limit the vhost had before the import, as RabbitMQ's validate_limits.
    ok(w, "PUT", "/api/vhost-limits/iq/max-queues", {"value": 2})
    assert [q["name"] for q in ok(w, "GET", "/api/queues/iq")] == ["a"]  # b was refused
    two_more = {"queues": [{"name": n, "vhost": "iq", "durable": True, "auto_delete": False, "arguments": {}}
                           for n in ("a", "c", "d")]}  # a exists: two new ones, over a limit of 2 with 1 there
    status, doc = api(w, "POST", "/api/definitions", two_more)
    assert (status, doc["reason"]) == (400, 'Adding 2 queue(s) to virtual host "iq" would exceed the limit of 2 '
                                            'queue(s).\n\nThis virtual host currently has 1 queue(s) defined.\n\n'
                                            'Import aborted!'), doc
    assert [q["name"] for q in ok(w, "GET", "/api/queues/iq")] == ["a"]  # nothing declared
    ok(w, "PUT", "/api/vhost-limits/iq/max-queues", {"value": 0})
    status, doc = api(w, "POST", "/api/definitions", two_more)
    assert (status, doc["reason"]) == (400, 'Adding 2 queue(s) to virtual host "iq" would exceed the limit of 0 '
                                            'queue(s).\n\nThis virtual host currently has 0 queue(s) defined.\n\n'
                                            'Import aborted!'), doc
    ok(w, "POST", "/api/definitions", {"queues": two_more["queues"][:1]})  # only existing ones: fine at any limit
    ok(w, "PUT", "/api/vhost-limits/iq/max-queues", {"value": 3})
    ok(w, "POST", "/api/definitions", two_more)
    assert sorted(q["name"] for q in ok(w, "GET", "/api/queues/iq")) == ["a", "c", "d"]
    # Other parameters are still ignored, not refused.
    ok(w, "POST", "/api/definitions", {"parameters": [{"vhost": "/", "component": "federation-upstream",
                                                       "name": "up", "value": {"uri": "amqp://"}}]})


# --- the node's --max-connections -------------------------------------------------------------------------------


def test_node_max_connections(warren_factory):
    w = warren_factory("--max-connections", "2")
    a = connect(w)
    b = connect(w)
    text = "NOT_ALLOWED - connection refused: node connection limit (2) is reached"
    refused_open(w, text)
    ok(w, "PUT", "/api/vhosts/other")
    refused_open(w, text, vhost="other")  # whatever the vhost
    refused_open(w, text, vhost="no-such-vhost")  # checked first, as in RabbitMQ
    # The management API is not an AMQP connection.
    assert ok(w, "GET", "/api/overview")
    a.close()
    c = connect(w)
    b.close()
    c.close()


def test_node_max_connections_zero_and_toml(warren_factory, tmp_path):
    w = warren_factory("--max-connections", "0")
    refused_open(w, "NOT_ALLOWED - connection refused: node connection limit (0) is reached")
    conf = tmp_path / "w.toml"
    conf.write_text("max_connections = 1\n")
    t = warren_factory("--config", str(conf))
    a = connect(t)
    refused_open(t, "NOT_ALLOWED - connection refused: node connection limit (1) is reached")
    a.close()
    conf.write_text('max_connections = "infinity"\n')
    u = warren_factory("--config", str(conf))
    conns = [connect(u) for _ in range(4)]
    for c in conns:
        c.close()


@pytest.mark.parametrize("value", ["-1", "ten", "1.5", ""])
def test_node_max_connections_bad_values_stop_the_start(value, tmp_path):
    from support.warren_process import warren_bin
    r = subprocess.run([warren_bin(), "--max-connections", value, "--data-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert "max-connections" in r.stderr + r.stdout


def test_node_max_connections_counts_amqps(warren_factory, tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    w = warren_factory("--max-connections", "1", "--tls-cert", str(cert), "--tls-key", str(key), "--amqps-port", "0")
    ports = w.ports
    ctx = ssl.create_default_context(cafile=str(cert))
    params = pika.ConnectionParameters("127.0.0.1", ports["amqps"], ssl_options=pika.SSLOptions(ctx, "127.0.0.1"),
                                       credentials=pika.PlainCredentials("guest", "guest"), connection_attempts=1)
    tls_conn = pika.BlockingConnection(params)
    # The plain listener shares the count.
    refused_open(w, "NOT_ALLOWED - connection refused: node connection limit (1) is reached")
    tls_conn.close()
    a = connect(w)
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(params)
    a.close()


def test_limits_hold_under_concurrent_opens_across_workers(warren_factory):
    # Connections land on both workers (SO_REUSEPORT); the counts are shared atomics, so of many racing
    # connection.opens exactly the limit's worth get in, and of the user's racing channel.opens too.
    import threading
    w = warren_factory("--max-connections", "30", workers=2)
    vhost_with_user(w, "race")
    ok(w, "PUT", "/api/vhost-limits/race/max-connections", {"value": 12})
    barrier = threading.Barrier(24)
    opened, refused, lock = [], [], threading.Lock()

    def attempt():
        barrier.wait()
        try:
            c = connect(w, vhost="race")
            with lock:
                opened.append(c)
        except pika.exceptions.AMQPConnectionError as e:
            with lock:
                refused.append(e)

    threads = [threading.Thread(target=attempt) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (len(opened), len(refused)) == (12, 12)
    for c in opened:
        c.close()
    connect(w, vhost="race").close()  # every place came back

    ok(w, "PUT", "/api/user-limits/guest/max-channels", {"value": 10})
    conns = [connect(w) for _ in range(4)]
    results = []

    def channels(conn):
        try:
            for _ in range(5):
                conn.channel()
                results.append("ok")
        except pika.exceptions.ConnectionClosedByBroker as e:
            results.append((e.reply_code, e.reply_text))

    # pika's connections are not thread-safe; each thread uses its own. A refused connection is closed and its
    # channels freed, so others may open more afterwards: what must hold is the count at any time.
    threads = [threading.Thread(target=channels, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    refusal = (530, "NOT_ALLOWED - number of channels opened for user 'guest' has reached the maximum allowed user "
                    "limit of 10")
    assert results.count("ok") >= 10 and all(r in ("ok", refusal) for r in results), results
    assert len(ok(w, "GET", "/api/channels")) <= 10
    for c in conns:
        if c.is_open:
            c.close()
    # Every place came back: a new connection opens exactly ten.
    c = connect(w)
    for _ in range(10):
        c.channel()
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        c.channel()
    assert (e.value.reply_code, e.value.reply_text) == refusal
