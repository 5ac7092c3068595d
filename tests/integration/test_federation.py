"""Runtime parameters, policies, dynamic shovels and federated exchanges, against the real binary and Debian's
RabbitMQ 3.10 with its rabbitmq_federation and rabbitmq_shovel plugins (one node for the whole module, started by
tests/support/reference_rabbitmq.sh on free ports in a temp dir and stopped at the end):

- /api/parameters and /api/policies: RabbitMQ's shapes, status codes and validation texts, 401 below policymaker,
  rabbitmqadmin's declare/list/delete, kept across a restart, in definitions export and import;
- shovels: a backlog moved Warren -> Warren (src-delete-after queue-length: the shovel ends and its parameter goes),
  Warren -> RabbitMQ and RabbitMQ -> Warren with ack-mode on-confirm; a shovel that cannot connect says why;
- federation: Warren downstream of RabbitMQ (bindings follow local ones, x-received-from as RabbitMQ writes it),
  RabbitMQ downstream of Warren (Warren answers the plugin's x-federation-upstream exchange), a ring
  Warren -> RabbitMQ -> Warren -> back where every message reaches each queue once and none circulates, and a
  downstream Warren killed with SIGKILL mid-flow under ack-mode on-confirm losing nothing RabbitMQ published; an
  upstream Warren killed with SIGKILL while the link moves a confirmed backlog, losing none of it;
  Warren-to-Warren links reconnecting after the upstream restarts, and links reporting why they are down;
- federated queues both ways: Warren pulls from RabbitMQ's queue only while it has consumers, and RabbitMQ's plugin
  pulls from Warren's (Warren advertises consumer_priorities, which the plugin requires)."""

import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pika
import pika.exceptions
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.rabbitmqadmin import find_rabbitmqadmin, run_rabbitmqadmin  # noqa: E402

REF = Path(__file__).resolve().parents[1] / "support" / "reference_rabbitmq.sh"
RABBIT = "/usr/lib/rabbitmq/bin/rabbitmq-server"
PLUGINS = "rabbitmq_management,rabbitmq_federation,rabbitmq_shovel,rabbitmq_federation_management," \
          "rabbitmq_shovel_management"


def q(name):
    return urllib.parse.quote(name, safe="")


def api(port, method, path, body=None, user="guest", password="guest"):
    """(status, parsed JSON or None) of an HTTP API call."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/{path}", data=data, method=method)
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read()
            return r.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        text = e.read()
        return e.code, json.loads(text) if text else None


def ok(port, method, path, body=None):
    status, out = api(port, method, path, body)
    assert status in (200, 201, 204), (method, path, status, out)
    return out


def wait_until(fn, timeout=20.0, what="condition", show=None):
    """fn()'s first true value within the timeout; `show()` says what was there instead."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}; {show() if show else ''}")


def channel(port):
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, heartbeat=0))
    return conn, conn.channel()


def count(port, queue):
    """Ready messages in the queue; -1 while it does not exist (a shovel or link declares it)."""
    conn, ch = channel(port)
    try:
        return ch.queue_declare(queue, passive=True).method.message_count
    except pika.exceptions.ChannelClosedByBroker as e:
        if e.reply_code == 404:
            return -1
        raise
    finally:
        if conn.is_open:
            conn.close()


def publish(port, exchange, key, n, start=0, props=None):
    conn, ch = channel(port)
    ch.confirm_delivery()
    for i in range(start, start + n):
        ch.basic_publish(exchange, key, str(i).encode(),
                         props or pika.BasicProperties(delivery_mode=2, message_id=str(i)))
    conn.close()


def drain(port, queue, idle=1.5):
    """Every message in the queue (acked), as (properties, body)."""
    conn, ch = channel(port)
    out = []
    for method, props, body in ch.consume(queue, inactivity_timeout=idle):
        if method is None:
            break
        out.append((props, body))
        ch.basic_ack(method.delivery_tag)
    conn.close()
    return out


def uri(port, vhost="/"):
    return f"amqp://guest:guest@127.0.0.1:{port}/{q(vhost)}"


@pytest.fixture(scope="module")
def rabbit():
    """Debian's RabbitMQ with the federation and shovel plugins: (amqp_port, http_port)."""
    if not os.path.exists(RABBIT):
        pytest.skip("Debian's rabbitmq-server is not installed")
    d = tempfile.mkdtemp(prefix="warren-fed-rabbit-")
    os.chmod(d, 0o755)
    env = dict(os.environ, WARREN_REF_PLUGINS=PLUGINS, WARREN_REF_CLUSTER_NAME="rabbit-site")
    out = subprocess.run([str(REF), "start", d], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    amqp_port, http_port = (int(x) for x in out.stdout.strip().split(","))
    yield amqp_port, http_port
    subprocess.run([str(REF), "stop", d], env=env, capture_output=True, timeout=60)
    subprocess.run(["rm", "-rf", d])


# --- parameters and policies ------------------------------------------------------------------------------------


def test_parameters_and_policies_as_rabbitmq_has_them(warren_factory):
    w = warren_factory("--cluster-name", "site-a")
    h = w.http_port
    up = {"uri": "amqp://elsewhere:5672", "max-hops": 2, "ack-mode": "on-publish"}
    assert api(h, "PUT", "parameters/federation-upstream/%2f/up1", {"value": up})[0] == 201
    assert api(h, "PUT", "parameters/federation-upstream/%2f/up1", {"value": up})[0] == 204
    assert api(h, "GET", "parameters/federation-upstream/%2f/up1") == \
        (200, {"vhost": "/", "component": "federation-upstream", "name": "up1", "value": up})
    # RabbitMQ's validation texts.
    bad = [({"uri": "amqp://h", "prefetch-count": "many"}, "prefetch-count should be a number, actually was <<\"many\">>"),
           ({"prefetch-count": 5}, "Key \"uri\" not found in up2"),
           ({"uri": "http://h"}, "\"http://h\" not a valid URI: {unexpected_uri_scheme,\"http\"}"),
           ({"uri": "amqp://h", "ack-mode": "whenever"},
            "ack-mode should be one of [<<\"no-ack\">>,<<\"on-publish\">>,<<\"on-confirm\">>], actually was "
            "<<\"whenever\">>")]
    for value, text in bad:
        assert api(h, "PUT", "parameters/federation-upstream/%2f/up2", {"value": value}) == \
            (400, {"error": "bad_request", "reason": f"Validation failed\n\n{text}\n"})
    assert api(h, "PUT", "parameters/shovel/%2f/s", {"value": {"src-uri": "amqp://", "dest-uri": "amqp://"}}) == \
        (400, {"error": "bad_request", "reason": "Validation failed\n\nMust specify 'src-exchange' or 'src-queue'\n"})
    assert api(h, "PUT", "parameters/no-such-component/%2f/x", {"value": {}})[1]["reason"] == \
        "Validation failed\n\ncomponent <<\"no-such-component\">> not found\n"
    assert api(h, "PUT", "parameters/federation-upstream/nowhere/x", {"value": up})[0] == 404
    assert api(h, "PUT", "parameters/federation-upstream/%2f/x", {"val": up})[0] == 400
    assert api(h, "GET", "parameters/federation-upstream/%2f/up2")[0] == 404
    ok(h, "PUT", "parameters/federation-upstream-set/%2f/set1", {"value": [{"upstream": "up1", "max-hops": 3}]})

    pol = {"pattern": "^fed\\.", "definition": {"federation-upstream-set": "set1"}, "priority": 1,
           "apply-to": "exchanges"}
    assert api(h, "PUT", "policies/%2f/p1", pol)[0] == 201
    assert api(h, "GET", "policies/%2f/p1")[1] == {"vhost": "/", "name": "p1", "pattern": "^fed\\.",
                                                   "apply-to": "exchanges",
                                                   "definition": {"federation-upstream-set": "set1"}, "priority": 1}
    for body, text in [({"pattern": "x", "definition": {"max-length": 1}},
                        "[{<<\"max-length\">>,1}] are not recognised policy settings"),
                       ({"pattern": "x", "definition": {"federation-upstream": "a", "federation-upstream-set": "b"}},
                        "cannot specify federation-upstream, federation-upstream-set or federation-upstream-pattern "
                        "together"),
                       ({"pattern": "x", "definition": {"federation-upstream": "a"}, "apply-to": "everything"},
                        "apply-to 'everything' unrecognised; should be 'queues', 'exchanges' or 'all'"),
                       ({"definition": {"federation-upstream": "a"}}, "Key \"pattern\" not found in p2")]:
        assert api(h, "PUT", "policies/%2f/p2", body) == \
            (400, {"error": "bad_request", "reason": f"Validation failed\n\n{text}\n"})
    assert [p["name"] for p in api(h, "GET", "policies")[1]] == ["p1"]
    assert [p["name"] for p in api(h, "GET", "policies/%2f")[1]] == ["p1"]
    assert sorted(p["name"] for p in api(h, "GET", "parameters")[1]) == ["set1", "up1"]
    assert [p["name"] for p in api(h, "GET", "parameters/federation-upstream")[1]] == ["up1"]
    assert [p["name"] for p in api(h, "GET", "parameters/federation-upstream/%2f")[1]] == ["up1"]

    # Below policymaker: refused.
    ok(h, "PUT", "users/mon", {"password": "pw", "tags": "management"})
    ok(h, "PUT", "permissions/%2f/mon", {"configure": ".*", "write": ".*", "read": ".*"})
    assert api(h, "GET", "policies", user="mon", password="pw")[0] == 401
    assert api(h, "PUT", "policies/%2f/p3", pol, user="mon", password="pw")[0] == 401

    # Definitions carry them; a fresh broker imports them.
    exported = ok(h, "GET", "definitions")
    assert {p["name"] for p in exported["parameters"]} == {"up1", "set1"}
    assert [p["name"] for p in exported["policies"]] == ["p1"]
    # Kept across a restart.
    w.restart()
    h = w.http_port
    assert api(h, "GET", "parameters/federation-upstream/%2f/up1")[1]["value"] == up
    assert api(h, "GET", "policies/%2f/p1")[0] == 200
    assert api(h, "DELETE", "policies/%2f/p1")[0] == 204
    assert api(h, "DELETE", "policies/%2f/p1")[0] == 404
    assert api(h, "DELETE", "parameters/federation-upstream/%2f/up1")[0] == 204

    other = warren_factory()
    ok(other.http_port, "POST", "definitions", exported)
    assert api(other.http_port, "GET", "parameters/federation-upstream/%2f/up1")[1]["value"] == up
    assert api(other.http_port, "GET", "policies/%2f/p1")[1]["priority"] == 1


@pytest.mark.skipif(find_rabbitmqadmin() is None, reason="rabbitmqadmin not found")
def test_rabbitmqadmin_declares_parameters_and_policies(warren):
    h = warren.http_port
    run_rabbitmqadmin(h, "declare", "parameter", "component=federation-upstream", "name=up",
                      'value={"uri": "amqp://somewhere", "expires": 3600000}').check()
    run_rabbitmqadmin(h, "declare", "policy", "name=fed", "pattern=^x", "apply-to=exchanges",
                      'definition={"federation-upstream": "up"}', "priority=3").check()
    listed = run_rabbitmqadmin(h, "-f", "raw_json", "list", "parameters").check()
    assert json.loads(listed.stdout)[0]["value"] == {"uri": "amqp://somewhere", "expires": 3600000}
    pols = json.loads(run_rabbitmqadmin(h, "-f", "raw_json", "list", "policies").check().stdout)
    assert pols[0]["definition"] == {"federation-upstream": "up"} and pols[0]["priority"] == 3
    refused = run_rabbitmqadmin(h, "declare", "parameter", "component=federation-upstream", "name=bad",
                                'value={"uri": 5}')
    assert refused.returncode != 0 and "uri should be list, actually was 5" in refused.stderr  # RabbitMQ's text too
    run_rabbitmqadmin(h, "delete", "policy", "name=fed").check()
    run_rabbitmqadmin(h, "delete", "parameter", "component=federation-upstream", "name=up").check()
    assert api(h, "GET", "parameters")[1] == [] and api(h, "GET", "policies")[1] == []


# --- shovels ----------------------------------------------------------------------------------------------------


def shovels(h):
    return api(h, "GET", "shovels")[1]


def test_shovel_moves_a_backlog_within_warren_and_ends_after_queue_length(warren):
    h, a = warren.http_port, warren.amqp_port
    conn, ch = channel(a)
    ch.queue_declare("src", durable=True)
    conn.close()
    publish(a, "", "src", 300)
    ok(h, "PUT", "parameters/shovel/%2f/move", {"value": {
        "src-uri": uri(a), "src-queue": "src", "dest-uri": uri(a), "dest-queue": "dst",
        "src-delete-after": "queue-length", "ack-mode": "on-confirm", "add-forward-headers": True}})
    wait_until(lambda: api(h, "GET", "parameters/shovel/%2f/move")[0] == 404, what="the shovel to end")
    assert count(a, "src") == 0
    got = drain(a, "dst")
    assert sorted(int(b) for _, b in got) == list(range(300))
    assert got[0][0].headers["x-shovelled"][0]["shovel-name"] == "move"
    assert shovels(h) == []
    # A later message stays where it is: the shovel is gone.
    publish(a, "", "src", 1)
    time.sleep(0.5)
    assert count(a, "src") == 1


def test_shovel_that_cannot_connect_says_why(warren):
    h = warren.http_port
    ok(h, "PUT", "parameters/shovel/%2f/nowhere", {"value": {
        "src-uri": "amqp://guest:guest@127.0.0.1:1", "src-queue": "a", "dest-uri": uri(warren.amqp_port),
        "dest-queue": "b", "reconnect-delay": 1}})
    s = wait_until(lambda: [x for x in shovels(h) if x["state"] == "terminated"], what="a terminated shovel")[0]
    assert s["name"] == "nowhere" and "Connection refused" in s["reason"]
    assert s["src_uri"] == "amqp://127.0.0.1:1"  # no credentials shown


def test_shovels_between_warren_and_rabbitmq_both_ways(warren, rabbit):
    ra, rh = rabbit
    h, a = warren.http_port, warren.amqp_port
    n = 2000
    conn, ch = channel(a)
    ch.queue_declare("to-rabbit", durable=True)
    conn.close()
    publish(a, "", "to-rabbit", n)
    t0 = time.time()
    ok(h, "PUT", "parameters/shovel/%2f/w2r", {"value": {
        "src-uri": uri(a), "src-queue": "to-rabbit", "dest-uri": uri(ra), "dest-queue": "from-warren",
        "ack-mode": "on-confirm", "src-prefetch-count": 500}})
    wait_until(lambda: count(ra, "from-warren") == n, timeout=60, what="the backlog in RabbitMQ")
    elapsed = time.time() - t0
    print(f"shovel Warren -> RabbitMQ: {n} messages of ~4 bytes in {elapsed:.2f} s ({n / elapsed:.0f} msg/s, "
          f"connection set-up included)")
    assert count(a, "to-rabbit") == 0
    assert any(s["name"] == "w2r" and s["state"] == "running" for s in shovels(h))
    # And back: RabbitMQ's queue into another Warren queue. The binding comes first: a shovel publishing to an
    # exchange with nothing bound loses the messages as unroutable, on RabbitMQ as here.
    conn, ch = channel(a)
    ch.queue_declare("back", durable=True)
    ch.queue_bind("back", "amq.direct", "back")
    conn.close()
    ok(h, "PUT", "parameters/shovel/%2f/r2w", {"value": {
        "src-uri": uri(ra), "src-queue": "from-warren", "dest-uri": uri(a), "dest-exchange": "amq.direct",
        "dest-exchange-key": "back", "ack-mode": "on-publish"}})
    wait_until(lambda: count(a, "back") == n, timeout=60, what="the backlog back in Warren")
    assert sorted(int(b) for _, b in drain(a, "back")) == list(range(n))


# --- federation -------------------------------------------------------------------------------------------------


def links(h):
    return api(h, "GET", "federation-links")[1]


def federate(h, vhost, upstream_uri, pattern, name="up", **extra):
    ok(h, "PUT", f"parameters/federation-upstream/{q(vhost)}/{name}",
       {"value": {"uri": upstream_uri, "reconnect-delay": 1, **extra}})
    ok(h, "PUT", f"policies/{q(vhost)}/fed-{name}",
       {"pattern": pattern, "apply-to": "exchanges", "definition": {"federation-upstream-set": "all"}})


def upstream_bindings(rh, exchange):
    return [(b["routing_key"], b["destination"]) for b in api(rh, "GET", "bindings/%2f")[1]
            if b["source"] == exchange]


def test_warren_downstream_of_rabbitmq(warren_factory, rabbit):
    ra, rh = rabbit
    w = warren_factory("--cluster-name", "warren-down")
    h, a = w.http_port, w.amqp_port
    conn, ch = channel(a)
    ch.exchange_declare("down.x", "topic", durable=True)
    ch.queue_declare("down-q", durable=True)
    ch.queue_bind("down-q", "down.x", "a.#")
    conn.close()
    federate(h, "/", uri(ra), "^down\\.", **{"prefetch-count": 100})
    link = wait_until(lambda: [l for l in links(h) if l["status"] == "running"], what="a running link")[0]
    assert link["exchange"] == "down.x" and link["upstream"] == "up" and link["uri"] == f"amqp://127.0.0.1:{ra}/%2F"
    assert link["id"] == "federation: down.x -> warren-down"
    # As RabbitMQ's plugin: the internal exchange and queue on the upstream, bound as Warren's exchange is.
    wait_until(lambda: ("a.#", "federation: down.x -> warren-down A") in upstream_bindings(rh, "down.x"),
               what="the binding upstream")
    internal = api(rh, "GET", "exchanges/%2f/" + q("federation: down.x -> warren-down A"))[1]
    assert internal["type"] == "x-federation-upstream" and internal["internal"]
    assert internal["arguments"]["x-downstream-name"] == "warren-down"
    publish(ra, "down.x", "a.b", 10)
    publish(ra, "down.x", "z.b", 5)  # not bound downstream: never sent
    got = wait_until(lambda: count(a, "down-q") == 10 and drain(a, "down-q"), what="10 federated messages")
    assert sorted(int(b) for _, b in got) == list(range(10))
    hop = got[0][0].headers["x-received-from"][0]
    assert hop == {"uri": f"amqp://127.0.0.1:{ra}/%2F", "exchange": "down.x", "redelivered": False,
                   "cluster-name": "rabbit-site", "vhost": "/"}
    # A new local binding appears upstream; one removed disappears.
    conn, ch = channel(a)
    ch.queue_bind("down-q", "down.x", "new.key")
    ch.queue_unbind("down-q", "down.x", "a.#")
    conn.close()
    wait_until(lambda: [k for k, _ in upstream_bindings(rh, "down.x")] == ["new.key"], what="bindings to follow")
    publish(ra, "down.x", "new.key", 3, start=100)
    wait_until(lambda: count(a, "down-q") == 3, what="messages on the new binding")
    # Prometheus counters.
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{w.prometheus_port}/metrics", timeout=5).read().decode()
    assert "warren_federation_messages_forwarded_total 13" in metrics
    assert "warren_federation_links_running 1" in metrics
    # The policy removed: the link goes.
    ok(h, "DELETE", "policies/%2f/fed-up")
    wait_until(lambda: links(h) == [], what="the link to go")
    # ...and its queue and exchange upstream with it (resource-cleanup-mode default).
    wait_until(lambda: api(rh, "GET", "queues/%2f/" + q("federation: down.x -> warren-down"))[0] == 404,
               what="the upstream queue to go")
    assert api(rh, "GET", "exchanges/%2f/" + q("federation: down.x -> warren-down A"))[0] == 404


def test_rabbitmq_downstream_of_warren(warren_factory, rabbit):
    ra, rh = rabbit
    w = warren_factory("--cluster-name", "warren-up")
    a = w.amqp_port
    conn, ch = channel(ra)
    ch.exchange_declare("up.x", "direct", durable=True)
    ch.queue_declare("rabbit-q", durable=True)
    ch.queue_bind("rabbit-q", "up.x", "k")
    conn.close()
    conn, ch = channel(a)
    ch.exchange_declare("up.x", "direct", durable=True)
    conn.close()
    # RabbitMQ's own plugin, configured through its own API, with Warren as the upstream.
    federate(rh, "/", uri(a), "^up\\.", name="warren")
    wait_until(lambda: [l for l in api(rh, "GET", "federation-links")[1] if l["status"] == "running"],
               timeout=30, what="RabbitMQ's link to Warren")
    # What the plugin declared on Warren: its x-federation-upstream exchange, bound from up.x with the key.
    wx = wait_until(lambda: [x for x in api(w.http_port, "GET", "exchanges/%2f")[1]
                             if x["type"] == "x-federation-upstream"], what="the plugin's exchange on Warren")[0]
    # RabbitMQ alternates the suffix (A, B) across its restarts of the link.
    assert wx["name"] in ("federation: up.x -> rabbit-site A", "federation: up.x -> rabbit-site B")
    assert wx["arguments"]["x-downstream-name"] == "rabbit-site" and wx["internal"]
    wait_until(lambda: any(b["source"] == "up.x" and b["routing_key"] == "k"
                           for b in api(w.http_port, "GET", "bindings/%2f")[1]), what="the binding on Warren")
    publish(a, "up.x", "k", 20)
    publish(a, "up.x", "other", 5)
    got = wait_until(lambda: count(ra, "rabbit-q") == 20 and drain(ra, "rabbit-q"), what="20 messages in RabbitMQ")
    assert sorted(int(b) for _, b in got) == list(range(20))
    assert got[0][0].headers["x-received-from"][0]["cluster-name"] == "warren-up"
    ok(rh, "DELETE", "policies/%2f/fed-warren")
    ok(rh, "DELETE", "parameters/federation-upstream/%2f/warren")


def test_ring_warren_rabbitmq_warren_delivers_once_and_stops(warren_factory, rabbit):
    ra, rh = rabbit
    w1 = warren_factory("--cluster-name", "ring-w1")
    w2 = warren_factory("--cluster-name", "ring-w2")
    nodes = {"w1": w1.amqp_port, "rabbit": ra, "w2": w2.amqp_port}
    for port in nodes.values():
        conn, ch = channel(port)
        ch.exchange_declare("ring.x", "fanout", durable=True)
        ch.queue_declare("ring-q", durable=True)
        ch.queue_bind("ring-q", "ring.x", "")
        conn.close()
    # Messages flow w1 -> rabbit -> w2 -> w1: each node is downstream of the one before. max-hops is generous, so
    # what stops a message is the ring itself: a node does not take back what has passed it.
    federate(rh, "/", uri(w1.amqp_port), "^ring\\.", name="from-w1", **{"max-hops": 10})
    federate(w2.http_port, "/", uri(ra), "^ring\\.", name="from-rabbit", **{"max-hops": 10})
    federate(w1.http_port, "/", uri(w2.amqp_port), "^ring\\.", name="from-w2", **{"max-hops": 10})
    wait_until(lambda: [l for l in api(rh, "GET", "federation-links")[1] if l["status"] == "running"]
               and [l for l in links(w1.http_port) if l["status"] == "running"]
               and [l for l in links(w2.http_port) if l["status"] == "running"], timeout=30, what="three links")
    time.sleep(1.5)  # the bindings' propagation
    for i, port in enumerate(nodes.values()):
        publish(port, "ring.x", "", 10, start=100 * i)
    want = sorted(100 * i + j for i in range(3) for j in range(10))
    for name, port in nodes.items():
        wait_until(lambda: count(port, "ring-q") >= 30, what=f"30 messages at {name}")
    time.sleep(2)  # anything still circulating would arrive now
    for name, port in nodes.items():
        got = drain(port, "ring-q")
        assert sorted(int(b) for _, b in got) == want, name


def test_killed_downstream_loses_nothing_confirmed_upstream(warren_factory, rabbit):
    ra, rh = rabbit
    w = warren_factory("--cluster-name", "kill-down")
    conn, ch = channel(w.amqp_port)
    ch.exchange_declare("kill.x", "direct", durable=True)
    ch.queue_declare("kill-q", durable=True)
    ch.queue_bind("kill-q", "kill.x", "k")
    conn.close()
    conn, ch = channel(ra)
    ch.exchange_declare("kill.x", "direct", durable=True)
    conn.close()
    federate(w.http_port, "/", uri(ra), "^kill\\.", **{"ack-mode": "on-confirm", "prefetch-count": 50})
    wait_until(lambda: ("k", "federation: kill.x -> kill-down A") in upstream_bindings(rh, "kill.x"),
               what="the link bound upstream")
    n = 3000
    conn, ch = channel(ra)
    ch.confirm_delivery()
    for i in range(n):
        ch.basic_publish("kill.x", "k", str(i).encode(), pika.BasicProperties(delivery_mode=2))
        if i == n // 3:
            wait_until(lambda: count(w.amqp_port, "kill-q") > 0, what="the flow to start")
            w.kill9()
    conn.close()
    w.restart()
    wait_until(lambda: count(w.amqp_port, "kill-q") >= n, timeout=60, what="every message after the restart")
    got = {int(b) for _, b in drain(w.amqp_port, "kill-q")}
    assert got == set(range(n))  # at least once: a redelivered one may come twice, none is missing


def test_link_to_an_unreachable_upstream_says_why(warren):
    h = warren.http_port
    conn, ch = channel(warren.amqp_port)
    ch.exchange_declare("lost.x", "fanout", durable=True)
    conn.close()
    federate(h, "/", "amqp://guest:guest@127.0.0.1:1", "^lost\\.")
    link = wait_until(lambda: [l for l in links(h) if l["status"] == "error"], what="a link in error")[0]
    assert link["exchange"] == "lost.x" and "Connection refused" in link["error"]
    assert link["uri"] == "amqp://127.0.0.1:1"


def test_warren_to_warren_link_survives_an_upstream_restart(warren_factory):
    import socket
    with socket.socket() as s:  # a fixed port, so that the restarted upstream is where the link looks
        s.bind(("127.0.0.1", 0))
        up_port = s.getsockname()[1]
    up = warren_factory("--cluster-name", "ww-up", f"--amqp-port={up_port}")
    down = warren_factory("--cluster-name", "ww-down")
    for port in (up.amqp_port, down.amqp_port):
        conn, ch = channel(port)
        ch.exchange_declare("ww.x", "direct", durable=True)
        conn.close()
    conn, ch = channel(down.amqp_port)
    ch.queue_declare("ww-q", durable=True)
    ch.queue_bind("ww-q", "ww.x", "k")
    conn.close()
    federate(down.http_port, "/", uri(up.amqp_port), "^ww\\.", **{"max-hops": 2})
    wait_until(lambda: any(b["source"] == "ww.x" and b["routing_key"] == "k"
                           for b in api(up.http_port, "GET", "bindings/%2f")[1]), what="the binding upstream")
    publish(up.amqp_port, "ww.x", "k", 5)
    wait_until(lambda: count(down.amqp_port, "ww-q") == 5, what="5 messages downstream")
    up.restart()
    assert up.amqp_port == up_port
    wait_until(lambda: [l for l in links(down.http_port) if l["status"] == "error"], what="the link to notice")
    wait_until(lambda: [l for l in links(down.http_port) if l["status"] == "running"], what="the link back")
    wait_until(lambda: any(b["source"] == "ww.x" and b["routing_key"] == "k"
                           for b in api(up.http_port, "GET", "bindings/%2f")[1]), what="the binding again")
    publish(up.amqp_port, "ww.x", "k", 5, start=5)
    # At least once: a message stored downstream whose ack the restart cut off comes again.
    wait_until(lambda: count(down.amqp_port, "ww-q") >= 10, what="10 messages downstream")
    got = drain(down.amqp_port, "ww-q")
    assert {int(b) for _, b in got} == set(range(10)) and len(got) <= 15  # at most the first 5 twice
    assert got[0][0].headers["x-received-from"][0]["cluster-name"] == "ww-up"


def test_killed_upstream_loses_nothing_it_confirmed(warren_factory):
    """kill -9 of the upstream Warren while the link (on-confirm) is moving a backlog of messages it confirmed to
    their publisher: after its restart every one of them reaches the downstream queue (at least once)."""
    import socket
    with socket.socket() as s:  # a fixed port, so that the restarted upstream is where the link looks
        s.bind(("127.0.0.1", 0))
        up_port = s.getsockname()[1]
    up = warren_factory("--cluster-name", "kup-up", f"--amqp-port={up_port}")
    down = warren_factory("--cluster-name", "kup-down")
    for port in (up.amqp_port, down.amqp_port):
        conn, ch = channel(port)
        ch.exchange_declare("kup.x", "direct", durable=True)
        conn.close()
    conn, ch = channel(down.amqp_port)
    ch.queue_declare("kup-q", durable=True)
    ch.queue_bind("kup-q", "kup.x", "k")
    conn.close()
    # One message in flight at a time, each acked upstream only after the downstream confirmed it: the backlog
    # takes seconds to move, so the kill lands in the middle of it.
    federate(down.http_port, "/", uri(up.amqp_port), "^kup\\.", **{"ack-mode": "on-confirm", "prefetch-count": 1})
    wait_until(lambda: any(b["source"] == "kup.x" and b["routing_key"] == "k"
                           for b in api(up.http_port, "GET", "bindings/%2f")[1]), what="the binding upstream")
    # The backlog builds upstream (in the link's durable queue there) while the downstream is away.
    down.stop()
    n = 3000
    publish(up.amqp_port, "kup.x", "k", n)  # each publish returns once the upstream confirmed it
    down.start()
    moved = wait_until(lambda: max(count(down.amqp_port, "kup-q"), 0), timeout=30, what="the flow to start")
    up.kill9()
    at_kill = count(down.amqp_port, "kup-q")
    assert at_kill < n, f"the backlog had all moved ({at_kill}) before the kill: the test proves nothing"
    up.start()
    assert up.amqp_port == up_port
    wait_until(lambda: count(down.amqp_port, "kup-q") >= n, timeout=90,
               what=f"the {n} confirmed messages downstream (moved {moved} before the kill, {at_kill} at it)")
    got = [int(b) for _, b in drain(down.amqp_port, "kup-q")]
    assert set(got) == set(range(n)), f"lost {len(set(range(n)) - set(got))} confirmed messages"
    assert len(got) - n <= 2  # at most the message in flight at the kill comes twice


def test_federated_queue_pulls_only_while_it_has_consumers(warren_factory, rabbit):
    ra, rh = rabbit
    w = warren_factory("--cluster-name", "fq-down")
    for port in (ra, w.amqp_port):
        conn, ch = channel(port)
        ch.queue_declare("jobs", durable=True)
        conn.close()
    publish(ra, "", "jobs", 40)
    ok(w.http_port, "PUT", "parameters/federation-upstream/%2f/up",
       {"value": {"uri": uri(ra), "reconnect-delay": 1, "prefetch-count": 10}})
    ok(w.http_port, "PUT", "policies/%2f/fq",
       {"pattern": "^jobs$", "apply-to": "queues", "definition": {"federation-upstream": "up"}})
    link = wait_until(lambda: [l for l in links(w.http_port) if l["status"] == "running"], what="a queue link",
                      show=lambda: links(w.http_port))[0]
    assert link["type"] == "queue" and link["queue"] == "jobs"
    time.sleep(1)
    assert count(ra, "jobs") == 40 and count(w.amqp_port, "jobs") == 0  # no consumer here: nothing moves
    conn, ch = channel(w.amqp_port)
    got = []
    for method, props, body in ch.consume("jobs", inactivity_timeout=5):
        if method is None:
            break
        got.append((props, body))
        ch.basic_ack(method.delivery_tag)
        if len(got) == 40:
            break
    conn.close()
    assert sorted(int(b) for _, b in got) == list(range(40))
    hop = got[0][0].headers["x-received-from"][0]
    assert hop["queue"] == "jobs" and hop["visit-count"] == 1 and hop["cluster-name"] == "rabbit-site"
    assert got[0][0].headers["x-original-routing-key"] == "jobs"
    assert count(ra, "jobs") == 0


def test_link_whose_upstream_exchange_differs_reports_the_upstream_error(warren_factory):
    up = warren_factory("--cluster-name", "mm-up")
    down = warren_factory("--cluster-name", "mm-down")
    for port, kind in ((up.amqp_port, "fanout"), (down.amqp_port, "direct")):
        conn, ch = channel(port)
        ch.exchange_declare("mm.x", kind, durable=True)
        conn.close()
    federate(down.http_port, "/", uri(up.amqp_port, "/"), "^mm\\.")
    link = wait_until(lambda: [l for l in links(down.http_port) if l["status"] == "error"], what="a link in error")[0]
    assert "406" in link["error"] and "PRECONDITION_FAILED" in link["error"], link
    # Fixed upstream: the link recovers by itself.
    conn, ch = channel(up.amqp_port)
    ch.exchange_delete("mm.x")
    conn.close()
    wait_until(lambda: [l for l in links(down.http_port) if l["status"] == "running"], timeout=30,
               what="the link to recover")


def test_rabbitmq_federates_a_queue_from_warren(warren_factory, rabbit):
    ra, rh = rabbit
    w = warren_factory("--cluster-name", "fq-up")
    for port in (w.amqp_port, ra):
        conn, ch = channel(port)
        ch.queue_declare("tasks", durable=True)
        conn.close()
    publish(w.amqp_port, "", "tasks", 25)
    ok(rh, "PUT", "parameters/federation-upstream/%2f/warren-q", {"value": {"uri": uri(w.amqp_port), "reconnect-delay": 1}})
    ok(rh, "PUT", "policies/%2f/fq-warren",
       {"pattern": "^tasks$", "apply-to": "queues", "definition": {"federation-upstream": "warren-q"}})
    try:
        wait_until(lambda: [l for l in api(rh, "GET", "federation-links")[1]
                            if l.get("queue") == "tasks" and l["status"] == "running"], timeout=30,
                   what="RabbitMQ's queue link to Warren", show=lambda: api(rh, "GET", "federation-links")[1])
        got = wait_until(lambda: drain(ra, "tasks", idle=1) or None, timeout=30, what="messages at RabbitMQ")
        while len(got) < 25:
            more = drain(ra, "tasks", idle=2)
            assert more, f"only {len(got)} of 25 arrived"
            got += more
        assert sorted(int(b) for _, b in got) == list(range(25))
        assert count(w.amqp_port, "tasks") == 0
    finally:
        api(rh, "DELETE", "policies/%2f/fq-warren")
        api(rh, "DELETE", "parameters/federation-upstream/%2f/warren-q")
