"""Debian's rabbitmqadmin (the Python v1 client, 3.10.8) against the management API: every command the management
API must serve (list, show, declare, delete, purge, publish, get, close, export, import), its output formats, its
authentication errors, and counts that follow pika traffic. The expected outputs are RabbitMQ 3.10's, checked by
running this file against a real RabbitMQ:

    ports=$(tests/support/reference_rabbitmq.sh start /tmp/rmq)      # "amqp_port,http_port"
    WARREN_MGMT_EXTERNAL=$ports python3 -m pytest -q tests/integration/test_mgmt_rabbitmqadmin.py
    tests/support/reference_rabbitmq.sh stop /tmp/rmq

Against an external broker the tests share it: every name a test creates carries a unique token and is deleted
afterwards, and listings are checked only for those names. RabbitMQ's statistics (message counts, connections,
channels, consumers) lag by its collection interval, so such checks poll for a few seconds."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pika
import pika.exceptions
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.rabbitmqadmin import (find_rabbitmqadmin, parse_table, parse_tsv, run_rabbitmqadmin,  # noqa: E402
                                   table_header)

EXTERNAL = os.environ.get("WARREN_MGMT_EXTERNAL")  # "amqp_port,http_port" of a broker already running

pytestmark = pytest.mark.skipif(find_rabbitmqadmin() is None,
                                reason="rabbitmqadmin not found (scripts/install-deps unpacks it)")

SETTLE = 10.0  # seconds to wait for statistics to show a change


# --- the broker under test ---------------------------------------------------------------------------------------


class Broker:
    """Ports of the broker under test, a unique token for names, and rabbitmqadmin bound to its HTTP port."""

    def __init__(self, amqp_port: int, http_port: int):
        self.amqp_port = amqp_port
        self.http_port = http_port
        self.token = secrets.token_hex(3)

    def name(self, base: str) -> str:
        return f"{base}-{self.token}"

    def admin(self, *args, **kw):
        return run_rabbitmqadmin(self.http_port, *args, **kw)

    def ok(self, *args, **kw):
        return self.admin(*args, **kw).check()

    def tsv(self, *args, **kw) -> list[dict[str, str]]:
        return parse_tsv(self.ok("-f", "tsv", *args, **kw).stdout)

    def raw(self, *args, **kw):
        return json.loads(self.ok("-f", "raw_json", *args, **kw).stdout)

    def mine(self, rows: list[dict[str, str]], key: str = "name") -> list[dict[str, str]]:
        return [r for r in rows if self.token in r.get(key, "")]

    def api(self, method: str, path: str, body=None, user="guest", password="guest"):
        """(status, parsed JSON or None) of one request, for setup and cleanup only."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}/api{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode())
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
        if body is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            return e.code, None

    def connect(self, vhost="/", user="guest", password="guest", name=None) -> pika.BlockingConnection:
        props = {"connection_name": name} if name else None
        return pika.BlockingConnection(pika.ConnectionParameters(
            host="127.0.0.1", port=self.amqp_port, virtual_host=vhost, client_properties=props,
            credentials=pika.PlainCredentials(user, password), connection_attempts=1, socket_timeout=5))

    def cleanup(self) -> None:
        """Deletes what this test created on a shared broker: everything whose name carries the token."""
        q = urllib.parse.quote
        for kind in ("queues", "exchanges"):
            _, items = self.api("GET", f"/{kind}")
            for i in items or []:
                if self.token in i["name"] or self.token in i["vhost"]:
                    self.api("DELETE", f"/{kind}/{q(i['vhost'], '')}/{q(i['name'], '')}")
        for kind in ("vhosts", "users"):
            _, items = self.api("GET", f"/{kind}")
            for i in items or []:
                if self.token in i["name"]:
                    self.api("DELETE", f"/{kind}/{q(i['name'], '')}")


@pytest.fixture
def broker(request):
    if EXTERNAL:
        amqp, http = (int(p) for p in EXTERNAL.split(","))
        b = Broker(amqp, http)
        yield b
        b.cleanup()
    else:
        w = request.getfixturevalue("warren")
        yield Broker(w.amqp_port, w.http_port)


def eventually(check, timeout=SETTLE, interval=0.2):
    """Polls check() until it returns a truthy value (returned) or raises nothing; the last failure after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
            failure = AssertionError(f"still false after {timeout} s: {check}")
        except AssertionError as e:
            failure = e
        if time.monotonic() > deadline:
            raise failure
        time.sleep(interval)


def queue_row(b: Broker, name: str, *cols: str, vhost: str = "/") -> dict[str, str] | None:
    """The `list queues name cols...` row of one queue (all vhosts listed, filtered here), or None."""
    for r in b.tsv("list", "queues", "vhost", "name", *cols):
        if r["name"] == name and r["vhost"] == vhost:
            return r
    return None


def connection_named(b: Broker, connection_name: str) -> str | None:
    """The name ("peer -> broker address") of the connection whose client set this connection_name, or None."""
    rows = [r for r in b.tsv("list", "connections", "name", "client_properties.connection_name")
            if r["client_properties.connection_name"] == connection_name]
    assert len(rows) <= 1, rows
    return rows[0]["name"] if rows else None


def salted_sha256(password: str, salt: bytes = bytes.fromhex("908dc60a")) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt || sha256(salt || password))."""
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def admin_error(result) -> str:
    assert result.returncode == 1, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    return result.stderr


# --- list and show -----------------------------------------------------------------------------------------------


def test_list_default_columns(broker):
    """Each list prints a table with rabbitmqadmin's default columns (the ones it asks for with ?columns=)."""
    b = broker
    q = b.name("lq")
    b.ok("declare", "queue", f"name={q}", "durable=false")
    expected_headers = {
        "queues": ["name", "messages"],
        "exchanges": ["name", "type"],
        "bindings": ["source", "destination", "routing_key"],
        "vhosts": ["name", "messages"],
        "nodes": ["name", "type", "mem_used"],
    }
    for kind, header in expected_headers.items():
        out = b.ok("list", kind).stdout
        assert table_header(out) == header, (kind, out)
    assert q in [r["name"] for r in parse_table(b.ok("list", "queues").stdout)]
    exchanges = {r["name"]: r["type"] for r in parse_table(b.ok("list", "exchanges").stdout)}
    for name, kind in [("", "direct"), ("amq.direct", "direct"), ("amq.fanout", "fanout"), ("amq.topic", "topic"),
                       ("amq.headers", "headers"), ("amq.match", "headers")]:
        assert exchanges.get(name) == kind, exchanges
    # The default exchange's implicit binding to each queue is listed, with source "".
    bindings = parse_table(b.ok("list", "bindings").stdout)
    assert {"source": "", "destination": q, "routing_key": q} in bindings
    assert "/" in [r["name"] for r in parse_table(b.ok("list", "vhosts").stdout)]
    def one_node():
        nodes = b.tsv("list", "nodes")
        assert len(nodes) == 1 and nodes[0]["name"] and nodes[0]["type"] == "disc", nodes
        assert nodes[0]["mem_used"].isdigit() and int(nodes[0]["mem_used"]) > 0, nodes  # RabbitMQ: once sampled
        return True

    eventually(one_node)


def test_list_users_and_permissions_print_every_field(broker):
    """`list users` and `list permissions` send no columns: every top-level scalar (tags joined) is printed, in
    rabbitmqadmin's order (vhost, name first, then alphabetical)."""
    b = broker
    users = parse_table(b.ok("list", "users").stdout)
    guest = [u for u in users if u["name"] == "guest"]
    assert guest and guest[0]["tags"] == "administrator", users
    assert guest[0]["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert len(base64.b64decode(guest[0]["password_hash"])) == 36  # 4 bytes of salt, 32 of SHA-256
    assert table_header(b.ok("list", "users").stdout)[0] == "name"
    perms = parse_table(b.ok("list", "permissions").stdout)
    assert {"vhost": "/", "user": "guest", "configure": ".*", "write": ".*", "read": ".*"} in perms
    assert table_header(b.ok("list", "permissions").stdout) == ["vhost", "configure", "read", "user", "write"]


def test_list_parameters_and_policies_empty(broker):
    for kind in ("parameters", "policies"):
        r = broker.ok("list", kind)
        assert r.stdout.strip() == "No items", r.describe()


def test_list_connections_channels_consumers(broker):
    b = broker
    q, cname = b.name("cq"), b.name("conn")
    conn = b.connect(name=cname)
    try:
        ch = conn.channel()
        ch.queue_declare(q, auto_delete=True)
        ch.basic_qos(prefetch_count=7)
        tag = b.name("ctag")
        ch.basic_consume(q, lambda *a: None, consumer_tag=tag)
        conn.process_data_events(0.1)

        conn_name = eventually(lambda: connection_named(b, cname))
        rows = [r for r in parse_table(b.ok("list", "connections").stdout) if r["name"] == conn_name]
        assert len(rows) == 1, rows
        assert table_header(b.ok("list", "connections").stdout) == ["name", "user", "channels"]
        assert conn_name.endswith(f" -> 127.0.0.1:{b.amqp_port}"), conn_name
        assert rows[0]["user"] == "guest"
        eventually(lambda: [r for r in parse_table(b.ok("list", "connections").stdout)
                            if r["name"] == conn_name and r["channels"] == "1"])
        channels = eventually(lambda: [r for r in parse_table(b.ok("list", "channels").stdout)
                                       if r["name"] == f"{conn_name} (1)"])
        assert channels[0]["user"] == "guest"
        assert table_header(b.ok("list", "channels").stdout) == ["name", "user"]
        consumers = eventually(lambda: [r for r in b.tsv("list", "consumers") if r.get("consumer_tag") == tag])
        c = consumers[0]
        assert c["ack_required"] == "True" and c["exclusive"] == "False" and c["prefetch_count"] == "7", c
        assert c["active"] == "True"
    finally:
        conn.close()


def test_a_publishing_channel_shows_its_publish_rate(broker):
    b = broker
    q, cname = b.name("rq"), b.name("rconn")
    conn = b.connect(name=cname)
    try:
        ch = conn.channel()
        ch.queue_declare(q, auto_delete=True)
        conn_name = eventually(lambda: connection_named(b, cname))

        def rate():
            for _ in range(200):  # keep publishing while the rate is sampled
                ch.basic_publish("", q, b"r")
            conn.process_data_events(0.1)
            rows = [r for r in b.tsv("list", "channels", "name", "message_stats.publish_details.rate")
                    if r["name"] == f"{conn_name} (1)"]
            return rows and float(rows[0]["message_stats.publish_details.rate"] or 0) > 0

        eventually(rate, timeout=SETTLE + 10)
    finally:
        conn.close()


def test_show_overview(broker):
    b = broker
    out = b.ok("show", "overview").stdout
    assert table_header(out) == ["rabbitmq_version", "cluster_name", "queue_totals.messages",
                                 "object_totals.queues"]
    q = b.name("oq")
    b.ok("declare", "queue", f"name={q}", "durable=false")
    row = eventually(lambda: [r for r in b.tsv("show", "overview")
                              if r["object_totals.queues"] not in ("", "0")])[0]
    assert row["rabbitmq_version"].count(".") >= 2, row
    assert row["cluster_name"], row
    # A column of one's choice, dotted into a nested object.
    row = b.tsv("show", "overview", "object_totals.exchanges", "listeners")[0]
    assert int(row["object_totals.exchanges"]) >= 7, row


# --- declare and delete ------------------------------------------------------------------------------------------


def test_declare_and_delete_queue(broker):
    b = broker
    q1, q2 = b.name("dq1"), b.name("dq2")
    r = b.ok("declare", "queue", f"name={q1}")
    assert r.stdout.strip() == "queue declared"
    b.ok("declare", "queue", f"name={q1}")  # again, the same: still fine
    b.ok("declare", "queue", f"name={q2}", "durable=false", "auto_delete=true",
         'arguments={"x-max-length": 10, "x-queue-mode": "lazy"}')
    rows = {r["name"]: r for r in b.mine(b.tsv("list", "queues", "name", "durable", "auto_delete", "exclusive"))}
    assert rows[q1] == {"name": q1, "durable": "True", "auto_delete": "False", "exclusive": "False"}
    assert rows[q2] == {"name": q2, "durable": "False", "auto_delete": "True", "exclusive": "False"}
    # Objects print as empty cells in a table; raw_json shows them.
    raw = {i["name"]: i for i in b.raw("list", "queues", "name", "arguments", "type", "vhost")}
    assert raw[q2]["arguments"] == {"x-max-length": 10, "x-queue-mode": "lazy"}
    assert raw[q2]["type"] == "classic" and raw[q2]["vhost"] == "/"
    assert set(raw[q1]) == {"name", "arguments", "type", "vhost"}  # ?columns= keeps only those
    # Redeclaring with other properties is a 400 whose reason rabbitmqadmin prints.
    err = admin_error(b.admin("declare", "queue", f"name={q2}", "durable=true"))
    assert f"inequivalent arg 'durable' for queue '{q2}' in vhost '/'" in err, err
    r = b.ok("delete", "queue", f"name={q1}")
    assert r.stdout.strip() == "queue deleted"
    b.ok("delete", "queue", f"name={q2}")
    assert b.mine(b.tsv("list", "queues")) == []
    err = admin_error(b.admin("delete", "queue", f"name={q1}"))
    assert "Not found" in err, err


def test_declare_and_delete_exchange(broker):
    b = broker
    x1, x2 = b.name("dx1"), b.name("dx2")
    assert b.ok("declare", "exchange", f"name={x1}", "type=topic").stdout.strip() == "exchange declared"
    b.ok("declare", "exchange", f"name={x2}", "type=headers", "durable=false", "auto_delete=true", "internal=true",
         'arguments={"alternate-exchange": "amq.fanout"}')
    rows = {r["name"]: r for r in b.mine(b.tsv("list", "exchanges", "name", "type", "durable", "auto_delete",
                                               "internal"))}
    assert rows[x1] == {"name": x1, "type": "topic", "durable": "True", "auto_delete": "False", "internal": "False"}
    assert rows[x2] == {"name": x2, "type": "headers", "durable": "False", "auto_delete": "True", "internal": "True"}
    raw = {i["name"]: i for i in b.raw("list", "exchanges", "name", "arguments")}
    assert raw[x2]["arguments"] == {"alternate-exchange": "amq.fanout"}
    assert "Not found" not in b.ok("delete", "exchange", f"name={x1}").stdout
    b.ok("delete", "exchange", f"name={x2}")
    assert b.mine(b.tsv("list", "exchanges")) == []
    assert "Not found" in admin_error(b.admin("delete", "exchange", f"name={x1}"))
    # An unknown type is a 400 whose reason rabbitmqadmin prints.
    err = admin_error(b.admin("declare", "exchange", f"name={x1}", "type=nonsense"))
    assert "unknown exchange type 'nonsense'" in err, err


def test_declare_and_delete_bindings(broker):
    b = broker
    x, x2, q = b.name("bx"), b.name("bx2"), b.name("bq")
    b.ok("declare", "exchange", f"name={x}", "type=topic", "durable=false")
    b.ok("declare", "exchange", f"name={x2}", "type=fanout", "durable=false")
    b.ok("declare", "queue", f"name={q}", "durable=false")
    assert b.ok("declare", "binding", f"source={x}", f"destination={q}",
                "routing_key=a.b").stdout.strip() == "binding declared"
    b.ok("declare", "binding", f"source={x}", f"destination={q}")  # empty routing key
    b.ok("declare", "binding", f"source={x}", f"destination={x2}", "destination_type=exchange",
         "routing_key=k y", 'arguments={"x-a": 1}')
    cols = ("source", "destination", "destination_type", "routing_key", "properties_key")
    rows = [r for r in b.tsv("list", "bindings", *cols) if r["source"] == x]
    by_key = {r["routing_key"]: r for r in rows}
    assert len(rows) == 3, rows
    assert by_key["a.b"] == {"source": x, "destination": q, "destination_type": "queue", "routing_key": "a.b",
                             "properties_key": "a.b"}
    assert by_key[""]["properties_key"] == "~"
    assert by_key["k y"]["destination"] == x2 and by_key["k y"]["destination_type"] == "exchange"
    # With arguments the key is "<quote_plus(key)>~<hash>": opaque, read from the listing and sent back.
    assert by_key["k y"]["properties_key"].startswith("k+y~"), by_key
    raw = [i for i in b.raw("list", "bindings") if i["source"] == x and i["routing_key"] == "k y"]
    assert raw[0]["arguments"] == {"x-a": 1} and raw[0]["vhost"] == "/"
    # Routing goes through them.
    assert b.ok("publish", f"exchange={x}", "routing_key=a.b", "payload=p").stdout.strip() == "Message published"
    # Delete each by its properties_key (rabbitmqadmin's default is "~").
    r = b.ok("delete", "binding", f"source={x}", "destination_type=queue", f"destination={q}",
             "properties_key=a.b")
    assert r.stdout.strip() == "binding deleted"
    b.ok("delete", "binding", f"source={x}", "destination_type=queue", f"destination={q}")
    b.ok("delete", "binding", f"source={x}", "destination_type=exchange", f"destination={x2}",
         f"properties_key={by_key['k y']['properties_key']}")
    assert [r for r in b.tsv("list", "bindings", *cols) if r["source"] == x] == []
    assert "Not found" in admin_error(b.admin("delete", "binding", f"source={x}", "destination_type=queue",
                                              f"destination={q}", "properties_key=a.b"))


def test_declare_and_delete_vhost(broker):
    b = broker
    v = b.name("vh")
    assert b.ok("declare", "vhost", f"name={v}").stdout.strip() == "vhost declared"
    b.ok("declare", "vhost", f"name={v}")
    assert v in [r["name"] for r in b.tsv("list", "vhosts")]
    # A fresh vhost has no permissions: guest is given them explicitly, then can use it over AMQP.
    b.ok("declare", "permission", f"vhost={v}", "user=guest", "configure=.*", "write=.*", "read=.*")
    b.connect(vhost=v).close()
    assert b.ok("delete", "vhost", f"name={v}").stdout.strip() == "vhost deleted"
    assert v not in [r["name"] for r in b.tsv("list", "vhosts")]
    assert "Not found" in admin_error(b.admin("delete", "vhost", f"name={v}"))


def test_declare_and_delete_users(broker):
    b = broker
    u1, u2 = b.name("alice"), b.name("bob")
    assert b.ok("declare", "user", f"name={u1}", "password=s3cret",
                "tags=administrator,monitoring").stdout.strip() == "user declared"
    b.ok("declare", "user", f"name={u2}", f"password_hash={salted_sha256('hunter2')}",
         "hashing_algorithm=rabbit_password_hashing_sha256", "tags=")
    users = {u["name"]: u for u in b.tsv("list", "users")}
    assert sorted(users[u1]["tags"].split()) == ["administrator", "monitoring"], users[u1]
    assert users[u2]["tags"] == ""
    assert users[u2]["password_hash"] == salted_sha256("hunter2")
    raw = {u["name"]: u for u in b.raw("list", "users")}
    assert sorted(raw[u1]["tags"]) == ["administrator", "monitoring"]  # a list, whatever was sent
    assert raw[u2]["tags"] == []
    for user, password in ((u1, "s3cret"), (u2, "hunter2")):
        b.ok("declare", "permission", "vhost=/", f"user={user}", "configure=.*", "write=.*", "read=.*")
        b.connect(user=user, password=password).close()
    # The new administrator can use the API itself.
    assert b.admin("list", "vhosts", user=u1, password="s3cret").check()
    assert b.ok("delete", "user", f"name={u2}").stdout.strip() == "user deleted"
    assert u2 not in [u["name"] for u in b.tsv("list", "users")]
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        b.connect(user=u2, password="hunter2")
    assert "Not found" in admin_error(b.admin("delete", "user", f"name={u2}"))


def test_declare_and_delete_permission(broker):
    b = broker
    u = b.name("perm")
    b.ok("declare", "user", f"name={u}", "password=pw", "tags=")
    r = b.ok("declare", "permission", "vhost=/", f"user={u}", "configure=^cfg", "write=^w", "read=.*")
    assert r.stdout.strip() == "permission declared"
    perms = [p for p in b.tsv("list", "permissions") if p["user"] == u]
    assert perms == [{"vhost": "/", "configure": "^cfg", "read": ".*", "user": u, "write": "^w"}]
    assert b.ok("delete", "permission", "vhost=/", f"user={u}").stdout.strip() == "permission deleted"
    assert [p for p in b.tsv("list", "permissions") if p["user"] == u] == []
    assert "Not found" in admin_error(b.admin("delete", "permission", "vhost=/", f"user={u}"))


# --- messages: purge, publish, get -------------------------------------------------------------------------------


def test_purge_queue(broker):
    b = broker
    q = b.name("pq")
    b.ok("declare", "queue", f"name={q}", "durable=false")
    for i in range(3):
        b.ok("publish", f"routing_key={q}", f"payload=m{i}")
    eventually(lambda: queue_row(b, q, "messages")["messages"] == "3")
    assert b.ok("purge", "queue", f"name={q}").stdout.strip() == "queue purged"
    assert b.ok("get", f"queue={q}").stdout.strip() == "No items"
    eventually(lambda: queue_row(b, q, "messages")["messages"] == "0")
    assert "Not found" in admin_error(b.admin("purge", "queue", f"name={b.name('missing')}"))


def test_publish_routed_and_unrouted(broker):
    b = broker
    q, x = b.name("pubq"), b.name("pubx")
    b.ok("declare", "queue", f"name={q}", "durable=false")
    assert b.ok("publish", f"routing_key={q}", "payload=hello").stdout.strip() == "Message published"
    assert b.ok("publish", "exchange=amq.default", f"routing_key={b.name('nowhere')}",
                "payload=x").stdout.strip() == "Message published but NOT routed"
    b.ok("declare", "exchange", f"name={x}", "type=direct", "durable=false")
    assert b.ok("publish", f"exchange={x}", "routing_key=rk",
                "payload=x").stdout.strip() == "Message published but NOT routed"
    b.ok("declare", "binding", f"source={x}", f"destination={q}", "routing_key=rk")
    assert b.ok("publish", f"exchange={x}", "routing_key=rk", "payload=via-x",
                'properties={"content_type": "text/plain", "headers": {"h": "v"}, "delivery_mode": 2, '
                '"message_id": "id-1", "priority": 3}').stdout.strip() == "Message published"
    # Without payload=, rabbitmqadmin reads stdin (as UTF-8 text: other bytes crash rabbitmqadmin itself) and
    # sends it base64-encoded.
    b.ok("publish", f"routing_key={q}", stdin="from stdin: é\n".encode())
    # A payload that is not UTF-8 comes from pika.
    conn = b.connect()
    conn.channel().basic_publish("", q, b"\xff\x00binary")
    conn.close()
    msgs = b.raw("get", f"queue={q}", "count=10", "ackmode=ack_requeue_false")
    assert [m["payload"] for m in msgs[:3]] == ["hello", "via-x", "from stdin: é\n"], msgs
    assert msgs[2]["payload_encoding"] == "string" and msgs[2]["payload_bytes"] == len("from stdin: é\n".encode())
    first, second, _, third = msgs
    assert first["exchange"] == "" and first["routing_key"] == q and first["payload_encoding"] == "string"
    assert second["exchange"] == x and second["routing_key"] == "rk"
    props = second["properties"]
    assert props["content_type"] == "text/plain" and props["headers"] == {"h": "v"}
    assert props["delivery_mode"] == 2 and props["message_id"] == "id-1" and props["priority"] == 3
    # Not UTF-8: with encoding auto it comes back base64.
    assert third["payload_encoding"] == "base64"
    assert base64.b64decode(third["payload"]) == b"\xff\x00binary"
    assert third["payload_bytes"] == 8
    # A missing exchange is not a 404 but a 400 whose reason is the AMQP error RabbitMQ's internal channel got.
    err = admin_error(b.admin("publish", f"exchange={b.name('nox')}", "routing_key=k", "payload=x"))
    assert f"404 NOT_FOUND - no exchange '{b.name('nox')}' in vhost '/'" in err, err


def test_get_counts_and_ackmodes(broker):
    b = broker
    q = b.name("gq")
    b.ok("declare", "queue", f"name={q}", "durable=false")
    for i in range(4):
        b.ok("publish", f"routing_key={q}", f"payload=m{i}")

    def payloads(ackmode, count=10):
        return [(r["payload"], r["redelivered"], r["message_count"])
                for r in b.tsv("get", f"queue={q}", f"count={count}", f"ackmode={ackmode}")]

    # The default ackmode, ack_requeue_true, puts the message back (redelivered next time).
    rows = parse_table(b.ok("get", f"queue={q}").stdout)
    assert len(rows) == 1 and rows[0]["payload"] == "m0" and rows[0]["redelivered"] == "False", rows
    assert rows[0]["message_count"] == "3" and rows[0]["payload_bytes"] == "2"
    assert rows[0]["exchange"] == "" and rows[0]["routing_key"] == q and rows[0]["payload_encoding"] == "string"
    assert payloads("ack_requeue_true", count=2) == [("m0", "True", "3"), ("m1", "False", "2")]
    assert payloads("reject_requeue_true", count=1) == [("m0", "True", "3")]
    # The requeued messages go back to the head, in order.
    assert payloads("ack_requeue_false", count=1) == [("m0", "True", "3")]
    assert payloads("reject_requeue_false", count=1) == [("m1", "True", "2")]
    assert payloads("ack_requeue_true") == [("m2", "False", "1"), ("m3", "False", "0")]
    # Other formats of the same answer.
    long = b.ok("-f", "long", "get", f"queue={q}", "count=1").stdout
    assert "payload: m2" in long and "redelivered: True" in long, long
    raw = b.raw("get", f"queue={q}", "count=2", "encoding=base64")
    assert [(m["payload"], m["payload_encoding"]) for m in raw] == [
        (base64.b64encode(b"m2").decode(), "base64"), (base64.b64encode(b"m3").decode(), "base64")]
    assert set(raw[0]) >= {"payload_bytes", "redelivered", "exchange", "routing_key", "message_count", "properties",
                           "payload", "payload_encoding"}
    pretty = json.loads(b.ok("-f", "pretty_json", "get", f"queue={q}", "count=1").stdout)
    assert pretty[0]["payload"] == "m2"
    kvp = b.ok("-f", "kvp", "get", f"queue={q}", "count=1").stdout
    assert 'payload="m2"' in kvp, kvp
    assert payloads("ack_requeue_false") == [("m2", "True", "1"), ("m3", "True", "0")]
    assert b.ok("get", f"queue={q}").stdout.strip() == "No items"
    assert "Not found" in admin_error(b.admin("get", f"queue={b.name('nq')}"))


# --- connections -------------------------------------------------------------------------------------------------


def test_close_connection(broker):
    b = broker
    cname = b.name("closeme")
    conn = b.connect(name=cname)
    try:
        ch = conn.channel()
        name = eventually(lambda: connection_named(b, cname))
        r = b.ok("close", "connection", f"name={name}")
        assert r.stdout.strip() == "connection closed"
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
            for _ in range(50):
                conn.process_data_events(0.1)
                ch.queue_declare(b.name("after-close"), durable=False, auto_delete=True)
        assert info.value.reply_code == 320, info.value
        assert "CONNECTION_FORCED" in info.value.reply_text
        eventually(lambda: connection_named(b, cname) is None)
        assert "Not found" in admin_error(b.admin("close", "connection", f"name={name}"))
    finally:
        if conn.is_open:
            conn.close()


# --- definitions -------------------------------------------------------------------------------------------------


def test_export_and_import(broker, tmp_path):
    b = broker
    v = b.name("defs")
    x, q = b.name("ex"), b.name("eq")
    b.ok("declare", "vhost", f"name={v}")
    b.ok("declare", "permission", f"vhost={v}", "user=guest", "configure=.*", "write=.*", "read=.*")
    b.ok("declare", "exchange", f"name={x}", "type=topic", vhost=v)
    b.ok("declare", "queue", f"name={q}", 'arguments={"x-max-length": 5}', vhost=v)
    b.ok("declare", "binding", f"source={x}", f"destination={q}", "routing_key=r.#", vhost=v)

    whole = tmp_path / "all.json"
    out = b.ok("export", str(whole)).stdout
    assert out.startswith("Exported definitions for 127.0.0.1 to "), out
    doc = json.loads(whole.read_text())
    for key in ("rabbit_version", "users", "vhosts", "permissions", "queues", "exchanges", "bindings"):
        assert key in doc, key
    exported = [i for i in doc["queues"] if i["name"] == q][0]
    assert (exported["vhost"], exported["durable"], exported["auto_delete"], exported["arguments"]) == (
        v, True, False, {"x-max-length": 5}), exported
    assert [e for e in doc["exchanges"] if e["name"] == x][0]["type"] == "topic"
    assert [bd for bd in doc["bindings"] if bd["source"] == x][0]["routing_key"] == "r.#"

    one = tmp_path / "vhost.json"
    b.ok("export", str(one), vhost=v)
    vdoc = json.loads(one.read_text())
    assert [i["name"] for i in vdoc["queues"]] == [q]
    assert "vhost" not in vdoc["queues"][0]
    assert "users" not in vdoc

    # Delete what was exported, then import it back: per vhost, then the whole document.
    b.ok("delete", "queue", f"name={q}", vhost=v)
    b.ok("delete", "exchange", f"name={x}", vhost=v)
    out = b.ok("import", str(one), vhost=v).stdout
    assert out.startswith("Uploaded definitions from "), out
    assert [r["name"] for r in b.tsv("list", "queues", vhost=v)] == [q]
    assert [r for r in b.tsv("list", "bindings", "source", "routing_key", vhost=v) if r["source"] == x] == [
        {"source": x, "routing_key": "r.#"}]

    b.ok("delete", "vhost", f"name={v}")
    b.ok("import", str(whole))
    assert v in [r["name"] for r in b.tsv("list", "vhosts")]
    assert [r["name"] for r in b.tsv("list", "queues", vhost=v)] == [q]
    assert [r["name"] for r in b.tsv("list", "exchanges", vhost=v) if r["name"] == x] == [x]


# --- vhosts with a space -----------------------------------------------------------------------------------------


def test_vhost_with_a_space(broker):
    """-V applies to declare, publish and get (path segments quoted with %20) and to list, export and import
    (quote_plus: a space becomes '+'). RabbitMQ takes '+' in a path literally, so those three answer 404/400 for
    such a vhost; Warren takes a '+' for a space when no vhost has the name as written (compatibility.md), so
    they work."""
    b = broker
    v = f"my vhost {b.token}"
    b.ok("declare", "vhost", f"name={v}")
    b.ok("declare", "permission", f"vhost={v}", "user=guest", "configure=.*", "write=.*", "read=.*")
    q = b.name("sq")
    b.ok("declare", "queue", f"name={q}", "durable=false", vhost=v)
    assert b.ok("publish", f"routing_key={q}", "payload=spaced", vhost=v).stdout.strip() == "Message published"
    rows = b.tsv("get", f"queue={q}", "ackmode=ack_requeue_false", vhost=v)
    assert [r["payload"] for r in rows] == ["spaced"]
    assert {"vhost": v, "name": q} in b.tsv("list", "queues", "vhost", "name")
    assert v in [r["name"] for r in b.tsv("list", "vhosts")]
    if EXTERNAL:
        err = admin_error(b.admin("list", "queues", vhost=v))
        assert "Not found: /api/queues/my+vhost+" in err, err
    else:
        assert [r["name"] for r in b.tsv("list", "queues", vhost=v)] == [q]
    b.ok("delete", "queue", f"name={q}", vhost=v)
    b.ok("delete", "vhost", f"name={v}")


# --- the seed's control flow -------------------------------------------------------------------------------------


def test_seed_004_control_flow(broker):
    """declare exchange, declare queue, declare binding, publish three messages: list queues shows 3."""
    b = broker
    x, q = b.name("orders"), b.name("orders-eu")
    b.ok("declare", "exchange", f"name={x}", "type=topic")
    b.ok("declare", "queue", f"name={q}", "durable=true")
    b.ok("declare", "binding", f"source={x}", f"destination={q}", "routing_key=orders.eu.*")
    for i in range(3):
        assert b.ok("publish", f"exchange={x}", f"routing_key=orders.eu.{i}",
                    f"payload=order {i}").stdout.strip() == "Message published"

    def three():
        rows = [r for r in parse_table(b.ok("list", "queues").stdout) if r["name"] == q]
        assert rows == [{"name": q, "messages": "3"}], rows
        return True

    eventually(three)


# --- authentication ----------------------------------------------------------------------------------------------


def test_access_refused(broker):
    """401 for a wrong password, an unknown user, a user with no management tag, and a management (non-administrator)
    user on an administrator's resource: rabbitmqadmin prints "*** Access refused: <path>" and exits 1."""
    b = broker
    plain, mgmt = b.name("plain"), b.name("mgmt")
    b.ok("declare", "user", f"name={plain}", "password=pw", "tags=")
    b.ok("declare", "user", f"name={mgmt}", "password=pw", "tags=management")
    for user, password, args in [("guest", "wrong", ("list", "queues")),
                                 (b.name("nobody"), "pw", ("list", "queues")),
                                 (plain, "pw", ("list", "queues")),
                                 (plain, "pw", ("show", "overview")),
                                 (mgmt, "pw", ("list", "users")),
                                 (mgmt, "pw", ("list", "permissions")),
                                 (mgmt, "pw", ("declare", "vhost", f"name={b.name('nope')}")),
                                 (mgmt, "pw", ("declare", "user", f"name={b.name('nope')}", "password=x", "tags="))]:
        r = b.admin(*args, user=user, password=password)
        assert r.returncode == 1 and "*** Access refused: /api/" in r.stderr, r.describe()
        assert "Traceback" not in r.stderr, r.describe()
    # A management user may list what its vhosts hold (here none: it has no permissions).
    r = b.admin("list", "queues", user=mgmt, password="pw").check()
    assert r.stdout.strip() == "No items", r.describe()
    assert b.ok("list", "vhosts", user=mgmt, password="pw")


# --- output formats ----------------------------------------------------------------------------------------------

LISTS = ["queues", "exchanges", "bindings", "connections", "channels", "consumers", "users", "vhosts",
         "permissions", "nodes", "parameters", "policies"]


def test_every_format_of_every_list(broker):
    """No list prints a traceback in any format: rabbitmqadmin crashes on a JSON null in a field it prints."""
    b = broker
    q = b.name("fq")
    conn = b.connect()
    try:
        ch = conn.channel()
        ch.queue_declare(q, auto_delete=True)
        ch.basic_publish("", q, b"x")
        ch.basic_consume(q, lambda *a: None)
        conn.process_data_events(0.1)
        eventually(lambda: b.tsv("list", "consumers"))
        for kind in LISTS:
            for fmt in ("table", "tsv", "long", "kvp", "bash", "raw_json", "pretty_json"):
                b.ok("-f", fmt, "list", kind)
            items = b.raw("list", kind)
            assert isinstance(items, list), (kind, items)
            # Lists without default columns print every top-level field: no null may be among them. (Others may
            # hold nulls: RabbitMQ's queues have policy, exclusive_consumer_tag, head_message_timestamp... null.)
            if kind in ("consumers", "users", "permissions", "parameters", "policies"):
                for item in items:
                    nulls = [k for k, v in item.items() if v is None]
                    assert not nulls, (kind, nulls, item)
            # All columns (depth 1 with no defaults) are what rabbitmqadmin prints for users and consumers.
            b.ok("-f", "long", "-d", "2", "list", kind)
        b.ok("-f", "long", "show", "overview")
        b.ok("-f", "tsv", "list", "queues", "name", "messages", "message_stats.publish", "nonexistent",
             "--sort=messages", "--sort-reverse")
    finally:
        conn.close()


def test_sort_options(broker):
    """--sort and --sort-reverse become ?sort=&sort_reverse=true; the server sorts."""
    b = broker
    names = [b.name(f"s{i}") for i in (2, 0, 1)]
    for n in names:
        b.ok("declare", "queue", f"name={n}", "durable=false")
    asc = [r["name"] for r in b.mine(b.tsv("list", "queues", "name", "--sort=name"))]
    desc = [r["name"] for r in b.mine(b.tsv("list", "queues", "name", "--sort=name", "--sort-reverse"))]
    assert asc == sorted(names) and desc == sorted(names, reverse=True), (asc, desc)


# --- pika traffic shows up ---------------------------------------------------------------------------------------


def test_pika_traffic_in_queue_counts(broker):
    """Five messages published with pika, a consumer with prefetch 2 holding two unacked: 5, 3 ready, 2 unacked,
    1 consumer; after the acks and the consumer's cancel, 3, 3, 0, 0."""
    b = broker
    q = b.name("traffic")
    conn = b.connect()
    try:
        ch = conn.channel()
        ch.queue_declare(q, durable=False)
        for i in range(5):
            ch.basic_publish("", q, f"m{i}".encode())
        ch.basic_qos(prefetch_count=2)
        held = []
        tag = ch.basic_consume(q, lambda c, m, p, body: held.append(m.delivery_tag))
        deadline = time.monotonic() + 5
        while len(held) < 2 and time.monotonic() < deadline:
            conn.process_data_events(0.1)
        assert len(held) == 2

        cols = ("messages", "messages_ready", "messages_unacknowledged", "consumers")

        def counts(expected):
            def check():
                conn.process_data_events(0)
                row = queue_row(b, q, *cols)
                assert row is not None and tuple(row[c] for c in cols) == expected, row
                return True
            return check

        eventually(counts(("5", "3", "2", "1")))
        rows = parse_table(b.ok("list", "queues", "name", *cols).stdout)
        assert {"name": q, "messages": "5", "messages_ready": "3", "messages_unacknowledged": "2",
                "consumers": "1"} in rows
        ch.basic_cancel(tag)
        for t in held:
            ch.basic_ack(t)
        eventually(counts(("3", "3", "0", "0")))
    finally:
        conn.close()


def test_vhost_limits(broker):
    vhost = broker.name("lim")
    broker.ok("declare", "vhost", f"name={vhost}")
    broker.ok("declare", "vhost_limit", f"vhost={vhost}", "name=max-connections", "value=10")
    broker.ok("declare", "vhost_limit", f"vhost={vhost}", "name=max-queues", "value=-1")
    mine = [r for r in broker.raw("list", "vhost_limits") if r["vhost"] == vhost]
    assert mine == [{"vhost": vhost, "value": {"max-connections": 10, "max-queues": -1}}]
    rows = [r for r in broker.tsv("list", "vhost_limits") if r["vhost"] == vhost]
    assert len(rows) == 1 and json.loads(rows[0]["value"]) == {"max-connections": 10, "max-queues": -1}, rows
    r = broker.admin("declare", "vhost_limit", f"vhost={vhost}", "name=max-foo", "value=1")
    assert r.returncode != 0 and "Unrecognised terms" in r.stdout + r.stderr, r
    broker.ok("delete", "vhost_limit", f"vhost={vhost}", "name=max-connections")
    broker.ok("delete", "vhost_limit", f"vhost={vhost}", "name=max-queues")
    assert [r for r in broker.raw("list", "vhost_limits") if r["vhost"] == vhost] == []
    broker.ok("delete", "vhost", f"name={vhost}")
