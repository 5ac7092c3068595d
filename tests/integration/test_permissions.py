"""Permissions as RabbitMQ enforces them (configure, write and read patterns per user and vhost, topic permissions per
exchange), through pika and the management API against the real binary:

- every AMQP operation allowed and refused, the refusal a channel error 403 with RabbitMQ's exact text;
- topic permissions on publish and bind, with {username} and {vhost} expanded (and {client_id} left as written, as
  RabbitMQ does outside MQTT);
- a permission change taking effect on an open channel at its next operation;
- the management API's checks, answered with the codes RabbitMQ's management uses (401 "Access refused." for what it
  runs through rabbit_mgmt_util:direct_request, 401 with the reply text for get, 400 "403 ..." for publish);
- the topic permission routes, and topic permissions in definitions and across a restart.

One broker serves the module: each test sets the permissions it needs first, and names its own queues and exchanges."""

import base64
import json
import socket
import http.client
import urllib.error
import urllib.parse
import urllib.request

import pika
import pika.exceptions
import pytest

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.warren_process import WarrenProcess  # noqa: E402

USER, PASSWORD = "u", "pw"  # AMQP user, no management tag
MGMT = "m"  # management user for the HTTP checks


# --- the broker -------------------------------------------------------------------------------------------------


class Broker:
    def __init__(self, proc: WarrenProcess):
        self.proc = proc

    def api(self, method, path, body=None, user="guest", password="guest"):
        """(status, parsed JSON or None) of one management request."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.proc.http_port}{path}", data=data, method=method)
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        return status, json.loads(raw) if raw else None

    def ok(self, method, path, body=None):
        status, doc = self.api(method, path, body)
        assert status in (200, 201, 204), (method, path, status, doc)
        return doc

    def grant(self, user=USER, vhost="/", configure="", write="", read=""):
        """Sets the user's permissions in the vhost ("" allows only the empty name, as in RabbitMQ)."""
        self.ok("PUT", f"/api/permissions/{q(vhost)}/{user}",
                {"configure": configure, "write": write, "read": read})

    def topic(self, exchange, write, read, user=USER, vhost="/"):
        self.ok("PUT", f"/api/topic-permissions/{q(vhost)}/{user}", {"exchange": exchange, "write": write, "read": read})

    def clear_topics(self, user=USER, vhost="/"):
        self.api("DELETE", f"/api/topic-permissions/{q(vhost)}/{user}")

    def connect(self, user="guest", password="guest", vhost="/"):
        return pika.BlockingConnection(pika.ConnectionParameters(
            host="127.0.0.1", port=self.proc.amqp_port, virtual_host=vhost,
            credentials=pika.PlainCredentials(user, password), connection_attempts=1, socket_timeout=5))

    def admin(self, fn):
        """Runs fn(channel) as guest (who may do anything in "/"): the objects a test needs."""
        conn = self.connect()
        try:
            fn(conn.channel())
        finally:
            conn.close()


def q(name):
    return urllib.parse.quote(name, safe="")


@pytest.fixture(scope="module")
def broker():
    proc = WarrenProcess([])
    proc.start()
    b = Broker(proc)
    b.ok("PUT", f"/api/users/{USER}", {"password": PASSWORD, "tags": ""})
    b.ok("PUT", f"/api/users/{MGMT}", {"password": PASSWORD, "tags": "management"})
    # Access to "/" (needed to open it) with nothing allowed; each test grants what it needs.
    b.grant(USER)
    b.grant(MGMT)
    try:
        yield b
    finally:
        proc.stop()
        proc.cleanup()


@pytest.fixture
def user_conn(broker):
    conn = broker.connect(USER, PASSWORD)
    yield conn
    if conn.is_open:
        conn.close()


def refusal(fn):
    """The reply text of the channel error fn provokes; fails unless it is 403."""
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        fn()
    assert e.value.reply_code == 403, e.value
    return e.value.reply_text


def text(perm, kind, name, user=USER, vhost="/"):
    return f"ACCESS_REFUSED - {perm} access to {kind} '{name}' in vhost '{vhost}' refused for user '{user}'"


def topic_text(perm, key, exchange, user=USER, vhost="/"):
    return (f"ACCESS_REFUSED - {perm} access to topic '{key}' in exchange '{exchange}' in vhost '{vhost}' "
            f"refused for user '{user}'")


def publish(ch, exchange, key, body=b"m"):
    """Publishes on a confirm channel, so that a refusal surfaces here."""
    ch.basic_publish(exchange, key, body)


def confirm_channel(conn):
    ch = conn.channel()
    ch.confirm_delivery()
    return ch


# --- every AMQP operation, allowed and refused ------------------------------------------------------------------

# (id, permissions, setup as guest, the operation as the user, refusal or None). Each case names its own objects
# after its id, so the module's one broker never sees a name twice.
def _declare_ae(n):
    return lambda ch: ch.exchange_declare(f"{n}-x", "fanout", arguments={"alternate-exchange": f"{n}-ae"})


def _declare_dlx(n, dlx):
    return lambda ch: ch.queue_declare(f"{n}-q", arguments={"x-dead-letter-exchange": dlx})


def _setup_queue(n):
    return lambda ch: ch.queue_declare(f"{n}-q")


def _setup_exchange(n, suffix="x", kind="direct"):
    return lambda ch: ch.exchange_declare(f"{n}-{suffix}", kind)


def _setup_queue_and_exchange(n, bound=False):
    def setup(ch):
        ch.queue_declare(f"{n}-q")
        ch.exchange_declare(f"{n}-x", "direct")
        if bound:
            ch.queue_bind(f"{n}-q", f"{n}-x", "k")
    return setup


def _setup_two_exchanges(n, bound=False):
    def setup(ch):
        ch.exchange_declare(f"{n}-src", "direct")
        ch.exchange_declare(f"{n}-dst", "direct")
        if bound:
            ch.exchange_bind(f"{n}-dst", f"{n}-src", "k")
    return setup


def _consume(n):
    def op(ch):
        ch.basic_consume(f"{n}-q", lambda *a: None)
    return op


ANY = ".*"
CASES = [
    # exchange.declare: configure on the exchange
    ("xdecl-ok", dict(configure="^xdecl-ok-x$"), None, lambda ch: ch.exchange_declare("xdecl-ok-x", "direct"), None),
    ("xdecl-no", dict(write=ANY, read=ANY), None, lambda ch: ch.exchange_declare("xdecl-no-x", "direct"),
     ("configure", "exchange", "xdecl-no-x")),
    # passive: any one of the three (RabbitMQ 4.3), the refusal worded as configure's
    ("xpass-ok", dict(read="^xpass-ok-x$"), _setup_exchange("xpass-ok"),
     lambda ch: ch.exchange_declare("xpass-ok-x", passive=True), None),
    ("xpass-no", dict(), _setup_exchange("xpass-no"), lambda ch: ch.exchange_declare("xpass-no-x", passive=True),
     ("configure", "exchange", "xpass-no-x")),
    # a new exchange with an alternate exchange: read on it, write on the alternate
    ("xae-ok", dict(configure=ANY, read="^xae-ok-x$", write="^xae-ok-ae$"), None, _declare_ae("xae-ok"), None),
    ("xae-noread", dict(configure=ANY, write=ANY), None, _declare_ae("xae-noread"),
     ("read", "exchange", "xae-noread-x")),
    ("xae-nowrite", dict(configure=ANY, read=ANY, write="^nothing$"), None, _declare_ae("xae-nowrite"),
     ("write", "exchange", "xae-nowrite-ae")),
    # exchange.delete: configure
    ("xdel-ok", dict(configure="^xdel-ok-x$"), _setup_exchange("xdel-ok"), lambda ch: ch.exchange_delete("xdel-ok-x"),
     None),
    ("xdel-no", dict(write=ANY, read=ANY), _setup_exchange("xdel-no"), lambda ch: ch.exchange_delete("xdel-no-x"),
     ("configure", "exchange", "xdel-no-x")),
    # exchange.bind / unbind: write on the destination, read on the source
    ("xbind-ok", dict(write="^xbind-ok-dst$", read="^xbind-ok-src$"), _setup_two_exchanges("xbind-ok"),
     lambda ch: ch.exchange_bind("xbind-ok-dst", "xbind-ok-src", "k"), None),
    ("xbind-nowrite", dict(configure=ANY, read=ANY), _setup_two_exchanges("xbind-nowrite"),
     lambda ch: ch.exchange_bind("xbind-nowrite-dst", "xbind-nowrite-src", "k"),
     ("write", "exchange", "xbind-nowrite-dst")),
    ("xbind-noread", dict(configure=ANY, write=ANY), _setup_two_exchanges("xbind-noread"),
     lambda ch: ch.exchange_bind("xbind-noread-dst", "xbind-noread-src", "k"),
     ("read", "exchange", "xbind-noread-src")),
    ("xunbind-ok", dict(write="^xunbind-ok-dst$", read="^xunbind-ok-src$"), _setup_two_exchanges("xunbind-ok", True),
     lambda ch: ch.exchange_unbind("xunbind-ok-dst", "xunbind-ok-src", "k"), None),
    ("xunbind-nowrite", dict(read=ANY), _setup_two_exchanges("xunbind-nowrite", True),
     lambda ch: ch.exchange_unbind("xunbind-nowrite-dst", "xunbind-nowrite-src", "k"),
     ("write", "exchange", "xunbind-nowrite-dst")),
    ("xunbind-noread", dict(write=ANY), _setup_two_exchanges("xunbind-noread", True),
     lambda ch: ch.exchange_unbind("xunbind-noread-dst", "xunbind-noread-src", "k"),
     ("read", "exchange", "xunbind-noread-src")),
    # queue.declare: configure on the queue
    ("qdecl-ok", dict(configure="^qdecl-ok-"), None, lambda ch: ch.queue_declare("qdecl-ok-q"), None),
    ("qdecl-no", dict(write=ANY, read=ANY), None, lambda ch: ch.queue_declare("qdecl-no-q"),
     ("configure", "queue", "qdecl-no-q")),
    # passive: any one of the three
    ("qpass-ok", dict(write="^qpass-ok-q$"), _setup_queue("qpass-ok"),
     lambda ch: ch.queue_declare("qpass-ok-q", passive=True), None),
    ("qpass-no", dict(), _setup_queue("qpass-no"), lambda ch: ch.queue_declare("qpass-no-q", passive=True),
     ("configure", "queue", "qpass-no-q")),
    # a new queue with a dead-letter exchange: read on it, write on the exchange ("" as amq.default)
    ("qdlx-ok", dict(configure=ANY, read="^qdlx-ok-q$", write="^amq\\.default$"), None, _declare_dlx("qdlx-ok", ""),
     None),
    ("qdlx-noread", dict(configure=ANY, write=ANY), None, _declare_dlx("qdlx-noread", "dlx"),
     ("read", "queue", "qdlx-noread-q")),
    ("qdlx-nowrite", dict(configure=ANY, read=ANY, write="^dlx$"), None, _declare_dlx("qdlx-nowrite", ""),
     ("write", "exchange", "amq.default")),
    # ... but redeclaring an existing one needs configure alone
    ("qdlx-existing", dict(configure=ANY), _declare_dlx("qdlx-existing", "dlx"), _declare_dlx("qdlx-existing", "dlx"),
     None),
    # queue.delete: configure
    ("qdel-ok", dict(configure="^qdel-ok-"), _setup_queue("qdel-ok"), lambda ch: ch.queue_delete("qdel-ok-q"), None),
    ("qdel-no", dict(write=ANY, read=ANY), _setup_queue("qdel-no"), lambda ch: ch.queue_delete("qdel-no-q"),
     ("configure", "queue", "qdel-no-q")),
    # queue.purge: read
    ("qpurge-ok", dict(read="^qpurge-ok-"), _setup_queue("qpurge-ok"), lambda ch: ch.queue_purge("qpurge-ok-q"), None),
    ("qpurge-no", dict(configure=ANY, write=ANY), _setup_queue("qpurge-no"), lambda ch: ch.queue_purge("qpurge-no-q"),
     ("read", "queue", "qpurge-no-q")),
    # queue.bind / unbind: write on the queue, read on the exchange
    ("qbind-ok", dict(write="^qbind-ok-q$", read="^qbind-ok-x$"), _setup_queue_and_exchange("qbind-ok"),
     lambda ch: ch.queue_bind("qbind-ok-q", "qbind-ok-x", "k"), None),
    ("qbind-nowrite", dict(configure=ANY, read=ANY), _setup_queue_and_exchange("qbind-nowrite"),
     lambda ch: ch.queue_bind("qbind-nowrite-q", "qbind-nowrite-x", "k"), ("write", "queue", "qbind-nowrite-q")),
    ("qbind-noread", dict(configure=ANY, write=ANY), _setup_queue_and_exchange("qbind-noread"),
     lambda ch: ch.queue_bind("qbind-noread-q", "qbind-noread-x", "k"), ("read", "exchange", "qbind-noread-x")),
    ("qunbind-ok", dict(write="^qunbind-ok-q$", read="^qunbind-ok-x$"), _setup_queue_and_exchange("qunbind-ok", True),
     lambda ch: ch.queue_unbind("qunbind-ok-q", "qunbind-ok-x", "k"), None),
    ("qunbind-nowrite", dict(read=ANY), _setup_queue_and_exchange("qunbind-nowrite", True),
     lambda ch: ch.queue_unbind("qunbind-nowrite-q", "qunbind-nowrite-x", "k"),
     ("write", "queue", "qunbind-nowrite-q")),
    ("qunbind-noread", dict(write=ANY), _setup_queue_and_exchange("qunbind-noread", True),
     lambda ch: ch.queue_unbind("qunbind-noread-q", "qunbind-noread-x", "k"),
     ("read", "exchange", "qunbind-noread-x")),
    # basic.consume and basic.get: read on the queue
    ("consume-ok", dict(read="^consume-ok-q$"), _setup_queue("consume-ok"), _consume("consume-ok"), None),
    ("consume-no", dict(configure=ANY, write=ANY), _setup_queue("consume-no"), _consume("consume-no"),
     ("read", "queue", "consume-no-q")),
    ("get-ok", dict(read="^get-ok-q$"), _setup_queue("get-ok"), lambda ch: ch.basic_get("get-ok-q"), None),
    ("get-no", dict(configure=ANY, write=ANY), _setup_queue("get-no"), lambda ch: ch.basic_get("get-no-q"),
     ("read", "queue", "get-no-q")),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_operation(broker, user_conn, case):
    _, perms, setup, op, refused = case
    if setup:
        broker.admin(setup)
    broker.grant(**perms)
    ch = user_conn.channel()
    if refused is None:
        op(ch)
        assert ch.is_open
    else:
        assert refusal(lambda: op(ch)) == text(*refused)


def test_server_named_queue_is_checked_under_its_generated_name(broker, user_conn):
    broker.grant(configure="^amq\\.gen-")
    ok = user_conn.channel().queue_declare("", exclusive=True)
    assert ok.method.queue.startswith("amq.gen-")
    broker.grant(configure="^mine-", write=ANY, read=ANY)
    reply = refusal(lambda: user_conn.channel().queue_declare("", exclusive=True))
    prefix, suffix = "ACCESS_REFUSED - configure access to queue 'amq.gen-", f"' in vhost '/' refused for user '{USER}'"
    assert reply.startswith(prefix) and reply.endswith(suffix), reply
    assert len(reply) == len(prefix) + 22 + len(suffix), reply  # RabbitMQ's 22 random characters


def test_publish_checks_write_on_the_exchange_and_the_default_as_amq_default(broker, user_conn):
    broker.admin(lambda ch: (ch.exchange_declare("pub-x", "fanout"), ch.queue_declare("pub-q"),
                             ch.queue_bind("pub-q", "pub-x")))
    broker.grant(write="^(pub-x|amq\\.default)$")
    ch = confirm_channel(user_conn)
    publish(ch, "pub-x", "")
    publish(ch, "", "pub-q")
    broker.grant(write="^pub-x$")
    assert refusal(lambda: publish(confirm_channel(user_conn), "", "pub-q")) == text("write", "exchange", "amq.default")
    broker.grant(write="^amq\\.default$")
    assert refusal(lambda: publish(confirm_channel(user_conn), "pub-x", "")) == text("write", "exchange", "pub-x")
    # Refused publishes never reached the queue: the two allowed ones did.
    assert broker.ok("GET", "/api/queues/%2F/pub-q")["messages"] == 2


def test_publish_in_a_transaction_is_checked(broker, user_conn):
    broker.grant(write="^nothing$")
    ch = user_conn.channel()
    ch.tx_select()
    ch.basic_publish("", "k", b"m")
    assert refusal(lambda: ch.tx_commit()) == text("write", "exchange", "amq.default")


def test_default_exchange_refusals_come_before_permissions(broker, user_conn):
    # RabbitMQ refuses the default exchange itself before looking at permissions.
    broker.grant()
    reply = refusal(lambda: user_conn.channel().exchange_declare("", "direct"))
    assert reply == "ACCESS_REFUSED - operation not permitted on the default exchange"


# --- topic permissions ------------------------------------------------------------------------------------------


def test_topic_write_on_publish_with_username_expanded(broker, user_conn):
    broker.grant(configure=ANY, write=ANY, read=ANY)
    broker.topic("amq.topic", write="^{username}\\.", read=ANY)
    try:
        ch = confirm_channel(user_conn)
        publish(ch, "amq.topic", f"{USER}.news")
        assert refusal(lambda: publish(ch, "amq.topic", "other.news")) == topic_text("write", "other.news", "amq.topic")
        # Only that exchange: another topic exchange has no topic permission, so every key passes.
        broker.admin(lambda c: c.exchange_declare("topic-free", "topic"))
        publish(confirm_channel(user_conn), "topic-free", "other.news")
    finally:
        broker.clear_topics()


def test_topic_permission_applies_only_to_topic_exchanges(broker, user_conn):
    # RabbitMQ checks routing keys only when the exchange is of type topic.
    broker.grant(configure=ANY, write=ANY, read=ANY)
    broker.admin(lambda c: c.exchange_declare("topic-direct", "direct"))
    broker.topic("topic-direct", write="^$", read="^$")
    try:
        ch = confirm_channel(user_conn)
        publish(ch, "topic-direct", "any.key")
        ch.queue_declare("topic-direct-q")
        ch.queue_bind("topic-direct-q", "topic-direct", "any.key")
    finally:
        broker.clear_topics()


def test_topic_vhost_variable_and_client_id_left_as_written(broker, user_conn):
    broker.grant(configure=ANY, write=ANY, read=ANY)
    broker.topic("amq.topic", write="^({vhost}-.*|{client_id})$", read=ANY)
    try:
        ch = confirm_channel(user_conn)
        publish(ch, "amq.topic", "/-anything")
        # AMQP 0-9-1 has no client id: RabbitMQ leaves the variable in the pattern, where its braces are literal.
        publish(ch, "amq.topic", "{client_id}")
        assert refusal(lambda: publish(ch, "amq.topic", "dev-1")) == topic_text("write", "dev-1", "amq.topic")
    finally:
        broker.clear_topics()


def test_topic_read_on_queue_bind_and_unbind(broker, user_conn):
    broker.grant(configure=ANY, write=ANY, read=ANY)
    broker.admin(lambda c: (c.queue_declare("tbind-q"), c.queue_bind("tbind-q", "amq.topic", "private.x")))
    broker.topic("amq.topic", write=ANY, read="^public\\.")
    try:
        ch = user_conn.channel()
        ch.queue_bind("tbind-q", "amq.topic", "public.x")
        assert refusal(lambda: ch.queue_bind("tbind-q", "amq.topic", "private.y")) == \
            topic_text("read", "private.y", "amq.topic")
        # Unbinding checks the key as well (RabbitMQ's binding_action_with_checks).
        assert refusal(lambda: user_conn.channel().queue_unbind("tbind-q", "amq.topic", "private.x")) == \
            topic_text("read", "private.x", "amq.topic")
    finally:
        broker.clear_topics()


def test_topic_read_on_exchange_bind(broker, user_conn):
    broker.grant(configure=ANY, write=ANY, read=ANY)
    broker.admin(lambda c: c.exchange_declare("tx-dst", "fanout"))
    broker.topic("amq.topic", write=ANY, read="^ok\\.")
    try:
        ch = user_conn.channel()
        ch.exchange_bind("tx-dst", "amq.topic", "ok.1")
        assert refusal(lambda: ch.exchange_bind("tx-dst", "amq.topic", "no.1")) == topic_text("read", "no.1",
                                                                                              "amq.topic")
    finally:
        broker.clear_topics()


# --- changes on open channels -----------------------------------------------------------------------------------


def test_revoking_write_refuses_the_next_publish_on_the_same_channel(broker, user_conn):
    broker.grant(write=ANY)
    ch = confirm_channel(user_conn)
    for _ in range(3):
        publish(ch, "", "nobody")  # remembered as allowed on this channel
    broker.grant(write="^$")
    assert refusal(lambda: publish(ch, "", "nobody")) == text("write", "exchange", "amq.default")
    # Granted again: a new channel on the same connection publishes.
    broker.grant(write=ANY)
    publish(confirm_channel(user_conn), "", "nobody")


def test_granting_read_lets_the_same_connection_consume(broker, user_conn):
    broker.admin(_setup_queue("late-read"))
    broker.grant()
    assert refusal(lambda: user_conn.channel().basic_get("late-read-q")) == text("read", "queue", "late-read-q")
    broker.grant(read="^late-read-q$")
    ch = user_conn.channel()
    assert ch.basic_get("late-read-q") == (None, None, None)
    broker.grant()
    assert refusal(lambda: ch.basic_get("late-read-q")) == text("read", "queue", "late-read-q")


def test_a_topic_permission_set_while_open_applies_to_the_next_publish(broker, user_conn):
    broker.grant(write=ANY)
    broker.clear_topics()
    ch = confirm_channel(user_conn)
    publish(ch, "amq.topic", "a.b")
    broker.topic("amq.topic", write="^z", read=ANY)
    try:
        assert refusal(lambda: publish(ch, "amq.topic", "a.b")) == topic_text("write", "a.b", "amq.topic")
    finally:
        broker.clear_topics()


def test_deleting_the_permission_refuses_everything_on_open_channels(broker, user_conn):
    broker.grant(configure=ANY, write=ANY, read=ANY)
    ch = user_conn.channel()
    ch.queue_declare("gone-q")
    broker.ok("DELETE", f"/api/permissions/%2F/{USER}")
    assert refusal(lambda: ch.queue_declare("gone-q")) == text("configure", "queue", "gone-q")
    broker.grant(configure=ANY, write=ANY, read=ANY)


# --- the management API -----------------------------------------------------------------------------------------

ACCESS_REFUSED = {"error": "not_authorised", "reason": "Access refused."}


def mgmt(broker, method, path, body=None):
    return broker.api(method, path, body, user=MGMT, password=PASSWORD)


def test_http_declare_and_delete_queue_check_configure(broker):
    broker.grant(MGMT, write=ANY, read=ANY)
    assert mgmt(broker, "PUT", "/api/queues/%2F/hq-1", {}) == (401, ACCESS_REFUSED)
    assert broker.api("GET", "/api/queues/%2F/hq-1")[0] == 404
    broker.grant(MGMT, configure="^hq-")
    assert mgmt(broker, "PUT", "/api/queues/%2F/hq-1", {})[0] == 201
    broker.grant(MGMT, write=ANY, read=ANY)
    assert mgmt(broker, "DELETE", "/api/queues/%2F/hq-1") == (401, ACCESS_REFUSED)
    assert broker.api("GET", "/api/queues/%2F/hq-1")[0] == 200  # still there
    # What does not exist is 404 first, whatever the permissions.
    assert mgmt(broker, "DELETE", "/api/queues/%2F/hq-none")[0] == 404
    broker.grant(MGMT, configure="^hq-")
    assert mgmt(broker, "DELETE", "/api/queues/%2F/hq-1")[0] == 204


def test_http_declare_queue_with_dead_letter_exchange(broker):
    body = {"arguments": {"x-dead-letter-exchange": "hq-dlx"}}
    broker.grant(MGMT, configure=ANY, read=ANY)
    assert mgmt(broker, "PUT", "/api/queues/%2F/hq-dl", body) == (401, ACCESS_REFUSED)
    broker.grant(MGMT, configure=ANY, read=ANY, write="^hq-dlx$")
    assert mgmt(broker, "PUT", "/api/queues/%2F/hq-dl", body)[0] == 201


def test_http_purge_checks_read(broker):
    broker.admin(lambda ch: (ch.queue_declare("hp-q"), ch.basic_publish("", "hp-q", b"m")))
    broker.grant(MGMT, configure=ANY, write=ANY)
    assert mgmt(broker, "DELETE", "/api/queues/%2F/hp-q/contents") == (401, ACCESS_REFUSED)
    assert broker.ok("GET", "/api/queues/%2F/hp-q")["messages"] == 1
    broker.grant(MGMT, read="^hp-q$")
    assert mgmt(broker, "DELETE", "/api/queues/%2F/hp-q/contents")[0] == 204


def test_http_get_checks_read_and_says_why(broker):
    broker.admin(lambda ch: (ch.queue_declare("hg-q"), ch.basic_publish("", "hg-q", b"m")))
    body = {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}
    broker.grant(MGMT, configure=ANY, write=ANY)
    assert mgmt(broker, "POST", "/api/queues/%2F/hg-q/get", body) == \
        (401, {"error": "not_authorised", "reason": text("read", "queue", "hg-q", user=MGMT)})
    broker.grant(MGMT, read="^hg-q$")
    status, got = mgmt(broker, "POST", "/api/queues/%2F/hg-q/get", body)
    assert status == 200 and got[0]["payload"] == "m"


def test_http_publish_checks_write_and_topics(broker):
    body = {"routing_key": "hpub", "payload": "m", "payload_encoding": "string", "properties": {}}
    broker.grant(MGMT, configure=ANY, read=ANY)
    assert mgmt(broker, "POST", "/api/exchanges/%2F/amq.default/publish", body) == \
        (400, {"error": "bad_request", "reason": "403 " + text("write", "exchange", "amq.default", user=MGMT)})
    broker.grant(MGMT, write="^amq\\.(default|topic)$")
    assert mgmt(broker, "POST", "/api/exchanges/%2F/amq.default/publish", body) == (200, {"routed": False})
    broker.topic("amq.topic", write="^m\\.", read=ANY, user=MGMT)
    try:
        body["routing_key"] = "x.y"
        assert mgmt(broker, "POST", "/api/exchanges/%2F/amq.topic/publish", body) == \
            (400, {"error": "bad_request", "reason": "403 " + topic_text("write", "x.y", "amq.topic", user=MGMT)})
        body["routing_key"] = "m.y"
        assert mgmt(broker, "POST", "/api/exchanges/%2F/amq.topic/publish", body)[0] == 200
    finally:
        broker.clear_topics(MGMT)


def test_http_exchanges_check_configure_and_the_alternate(broker):
    broker.grant(MGMT, write=ANY, read=ANY)
    assert mgmt(broker, "PUT", "/api/exchanges/%2F/hx-1", {"type": "direct"}) == (401, ACCESS_REFUSED)
    broker.grant(MGMT, configure="^hx-", write=ANY)
    ae = {"type": "fanout", "arguments": {"alternate-exchange": "hx-ae"}}
    assert mgmt(broker, "PUT", "/api/exchanges/%2F/hx-2", ae) == (401, ACCESS_REFUSED)  # no read on hx-2
    broker.grant(MGMT, configure="^hx-", write=ANY, read="^hx-2$")
    assert mgmt(broker, "PUT", "/api/exchanges/%2F/hx-2", ae)[0] == 201
    assert mgmt(broker, "PUT", "/api/exchanges/%2F/hx-1", {"type": "direct"})[0] == 201
    broker.grant(MGMT, write=ANY, read=ANY)
    assert mgmt(broker, "DELETE", "/api/exchanges/%2F/hx-1") == (401, ACCESS_REFUSED)
    broker.grant(MGMT, configure="^hx-1$")
    assert mgmt(broker, "DELETE", "/api/exchanges/%2F/hx-1")[0] == 204


def test_http_bindings_check_write_read_and_topics(broker):
    broker.admin(lambda ch: (ch.queue_declare("hb-q"), ch.exchange_declare("hb-x", "direct")))
    path = "/api/bindings/%2F/e/hb-x/q/hb-q"
    broker.grant(MGMT, configure=ANY, read=ANY)
    assert mgmt(broker, "POST", path, {"routing_key": "k"}) == (401, ACCESS_REFUSED)  # no write on the queue
    broker.grant(MGMT, configure=ANY, write=ANY)
    assert mgmt(broker, "POST", path, {"routing_key": "k"}) == (401, ACCESS_REFUSED)  # no read on the exchange
    broker.grant(MGMT, write="^hb-q$", read="^(hb-x|amq\\.topic)$")
    assert mgmt(broker, "POST", path, {"routing_key": "k"})[0] == 201
    broker.grant(MGMT, read=ANY)
    assert mgmt(broker, "DELETE", path + "/k") == (401, ACCESS_REFUSED)
    assert broker.api("GET", path + "/k")[0] == 200
    broker.grant(MGMT, write="^hb-q$", read="^(hb-x|amq\\.topic)$")
    assert mgmt(broker, "DELETE", path + "/k")[0] == 204
    broker.topic("amq.topic", write=ANY, read="^pub\\.", user=MGMT)
    try:
        topic_path = "/api/bindings/%2F/e/amq.topic/q/hb-q"
        assert mgmt(broker, "POST", topic_path, {"routing_key": "priv.x"}) == (401, ACCESS_REFUSED)
        assert mgmt(broker, "POST", topic_path, {"routing_key": "pub.x"})[0] == 201
    finally:
        broker.clear_topics(MGMT)


def test_http_administrators_are_checked_too(broker):
    # RabbitMQ's management declares through a channel as the user: the administrator tag opens every vhost to
    # the API, not the resources in it.
    broker.ok("PUT", "/api/users/boss", {"password": PASSWORD, "tags": "administrator"})
    broker.ok("PUT", "/api/vhosts/boss-v")  # guest, who creates it, gets permissions; boss has none
    assert broker.api("PUT", "/api/queues/boss-v/q", {}, user="boss", password=PASSWORD) == (401, ACCESS_REFUSED)
    assert broker.api("GET", "/api/queues/boss-v", user="boss", password=PASSWORD)[0] == 200
    broker.grant("boss", vhost="boss-v", configure=ANY)
    assert broker.api("PUT", "/api/queues/boss-v/q", {}, user="boss", password=PASSWORD)[0] == 201


def test_http_control_socket_is_not_checked(broker):
    # warrenctl's administrator is not a user of the store: like rabbitmqctl it changes objects unchecked.
    class UnixConnection(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(10)
            self.sock.connect(str(broker.proc.data_dir / "warren.sock"))

    c = UnixConnection("localhost")
    c.request("PUT", "/api/queues/%2F/ctl-q", body=b"{}", headers={"Content-Type": "application/json"})
    assert c.getresponse().status == 201
    c.close()


# --- the topic permission routes --------------------------------------------------------------------------------


def test_topic_permission_routes(broker):
    broker.clear_topics()
    base = f"/api/topic-permissions/%2F/{USER}"
    assert broker.api("GET", base)[0] == 404
    assert broker.api("PUT", base, {"exchange": "amq.topic", "write": "^a", "read": "^b"})[0] == 201
    broker.admin(lambda ch: ch.exchange_declare("routes-t", "topic"))
    assert broker.api("PUT", base, {"exchange": "routes-t", "write": ".*", "read": ""})[0] == 204
    mine = [{"user": USER, "vhost": "/", "exchange": "amq.topic", "write": "^a", "read": "^b"},
            {"user": USER, "vhost": "/", "exchange": "routes-t", "write": ".*", "read": ""}]
    assert broker.ok("GET", base) == mine
    assert [p for p in broker.ok("GET", "/api/topic-permissions") if p["user"] == USER] == mine
    assert broker.ok("GET", f"/api/users/{USER}/topic-permissions") == mine
    assert [p for p in broker.ok("GET", "/api/vhosts/%2F/topic-permissions") if p["user"] == USER] == mine
    # One exchange's, then all of the user's in the vhost.
    assert broker.api("DELETE", base + "/amq.topic")[0] == 204
    assert broker.ok("GET", base) == mine[1:]
    assert broker.api("DELETE", base)[0] == 204
    assert broker.api("GET", base)[0] == 404
    assert broker.api("DELETE", base)[0] == 404


def test_topic_permission_route_refusals(broker):
    base = f"/api/topic-permissions/%2F/{USER}"
    status, doc = broker.api("PUT", base, {"exchange": "amq.topic", "write": "(", "read": ""})
    assert status == 400 and doc["reason"].startswith("invalid regular expression '('"), doc
    assert broker.api("PUT", base, {"exchange": "amq.topic", "read": ""}) == \
        (400, {"error": "bad_request", "reason": "key_missing: write"})
    assert broker.api("PUT", "/api/topic-permissions/%2F/nobody", {"exchange": "e", "write": "", "read": ""}) == \
        (400, {"error": "bad_request", "reason": "vhost_or_user_not_found"})
    assert broker.api("GET", "/api/users/nobody/topic-permissions")[0] == 404
    assert broker.api("GET", "/api/vhosts/nowhere/topic-permissions")[0] == 404
    assert mgmt(broker, "GET", "/api/topic-permissions") == \
        (401, {"error": "not_authorised", "reason": "Not administrator user"})
    assert mgmt(broker, "PUT", base, {"exchange": "amq.topic", "write": "", "read": ""})[0] == 401
    # Permission patterns are PCRE, checked as RabbitMQ checks them.
    status, doc = broker.api("PUT", f"/api/permissions/%2F/{USER}", {"configure": "[z-a]", "write": "", "read": ""})
    assert status == 400 and doc["reason"].startswith("invalid regular expression '[z-a]'"), doc
    status, _ = broker.api("PUT", f"/api/permissions/%2F/{USER}", {"configure": "^(?!amq\\.)", "write": "", "read": ""})
    assert status in (201, 204)


# --- definitions and restarts -----------------------------------------------------------------------------------


def test_topic_permissions_in_definitions_and_across_a_restart(warren_factory):
    w = warren_factory()
    b = Broker(w)
    b.ok("POST", "/api/definitions", {
        "users": [{"name": "t", "password": PASSWORD, "tags": []}],
        "permissions": [{"user": "t", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}],
        "topic_permissions": [{"user": "t", "vhost": "/", "exchange": "amq.topic", "write": "^{username}\\.",
                               "read": ".*"}],
    })
    expected = [{"user": "t", "vhost": "/", "exchange": "amq.topic", "write": "^{username}\\.", "read": ".*"}]
    assert b.ok("GET", "/api/definitions")["topic_permissions"] == expected
    w.restart()
    assert b.ok("GET", "/api/definitions")["topic_permissions"] == expected
    conn = b.connect("t", PASSWORD)
    try:
        ch = confirm_channel(conn)
        publish(ch, "amq.topic", "t.ok")
        assert refusal(lambda: publish(ch, "amq.topic", "u.no")) == topic_text("write", "u.no", "amq.topic", user="t")
    finally:
        conn.close()
    # A bad pattern in a definitions file is refused whole.
    status, doc = b.api("POST", "/api/definitions", {"topic_permissions": [
        {"user": "t", "vhost": "/", "exchange": "x", "write": "(", "read": ""}]})
    assert status == 400 and "invalid regular expression '('" in doc["reason"], doc


def test_deleting_a_vhost_drops_its_topic_permissions(warren_factory):
    w = warren_factory()
    b = Broker(w)
    b.ok("PUT", "/api/vhosts/tv")
    b.ok("PUT", "/api/users/tu", {"password": PASSWORD, "tags": ""})
    b.ok("PUT", "/api/topic-permissions/tv/tu", {"exchange": "amq.topic", "write": "", "read": ""})
    b.ok("DELETE", "/api/vhosts/tv")
    assert b.ok("GET", "/api/users/tu/topic-permissions") == []
