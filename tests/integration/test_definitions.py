"""Definitions export and import over the management API (GET/POST /api/definitions), in RabbitMQ 3.10's format:
what pika declares comes out as JSON, a definitions file posted into a fresh broker can be used through pika, and
imported objects and users survive a restart on the same data directory. Authentication and error paths too, and
Debian's rabbitmqadmin export/import against Warren when it is installed."""

import base64
import decimal
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request

import pika
import pika.exceptions
import pytest

RABBITMQADMIN = "/usr/bin/rabbitmqadmin"


# --- helpers ----------------------------------------------------------------------------------------------------


def api(warren, method, path, body=None, user="guest", password="guest", headers=None):
    """(status, headers, parsed JSON or raw bytes) of one management API request."""
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{warren.http_port}{path}", data=data, method=method)
    if user is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, hdrs, raw = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, raw = e.code, e.headers, e.read()
    try:
        return status, hdrs, json.loads(raw) if raw else None
    except ValueError:
        return status, hdrs, raw


def export(warren, path="/api/definitions"):
    status, _, doc = api(warren, "GET", path)
    assert status == 200, doc
    return doc


def import_defs(warren, doc, path="/api/definitions"):
    status, _, body = api(warren, "POST", path, doc)
    assert status == 204, (status, body)


def connect(warren, user="guest", password="guest", vhost="/"):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=warren.amqp_port, virtual_host=vhost,
        credentials=pika.PlainCredentials(user, password), connection_attempts=1, socket_timeout=5))


def by_name(items, key="name"):
    return {i[key]: i for i in items}


# A definitions file in RabbitMQ 3.10's layout, as `rabbitmqctl export_definitions` writes it. The hash is
# RabbitMQ's rabbit_password_hashing_sha256 of "s3cret" with the salt 0x908dc60a.
def salted_sha256(password, salt=bytes.fromhex("908dc60a")):
    import hashlib
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


IMPORTED = {
    "rabbit_version": "3.10.8",
    "rabbitmq_version": "3.10.8",
    "product_name": "RabbitMQ",
    "product_version": "3.10.8",
    "users": [
        {"name": "ops", "password_hash": salted_sha256("s3cret"),
         "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"], "limits": {}},
        {"name": "app", "password_hash": salted_sha256("app-pw"),
         "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": [], "limits": {}},
    ],
    "vhosts": [{"name": "/"}],
    "permissions": [
        {"user": "ops", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
        {"user": "app", "vhost": "/", "configure": "", "write": ".*", "read": ".*"},
    ],
    "topic_permissions": [],
    "parameters": [],
    "global_parameters": [{"name": "internal_cluster_id", "value": "rabbitmq-cluster-id-abc"}],
    "policies": [],
    "queues": [
        {"name": "orders", "vhost": "/", "durable": True, "auto_delete": False,
         "arguments": {"x-max-length": 1000, "x-dead-letter-exchange": "dead", "x-queue-type": "classic"}},
        {"name": "dead-letters", "vhost": "/", "durable": True, "auto_delete": False, "arguments": {}},
    ],
    "exchanges": [
        {"name": "shop", "vhost": "/", "type": "topic", "durable": True, "auto_delete": False,
         "internal": False, "arguments": {}},
        {"name": "dead", "vhost": "/", "type": "fanout", "durable": True, "auto_delete": False,
         "internal": False, "arguments": {}},
        {"name": "front", "vhost": "/", "type": "direct", "durable": True, "auto_delete": False,
         "internal": False, "arguments": {"alternate-exchange": "dead"}},
    ],
    "bindings": [
        {"source": "shop", "vhost": "/", "destination": "orders", "destination_type": "queue",
         "routing_key": "order.*", "arguments": {}},
        {"source": "dead", "vhost": "/", "destination": "dead-letters", "destination_type": "queue",
         "routing_key": "", "arguments": {}},
        {"source": "front", "vhost": "/", "destination": "shop", "destination_type": "exchange",
         "routing_key": "order.new", "arguments": {}},
    ],
}


def check_imported_objects_work(warren):
    """The imported topology exists and routes: passive declares, then a publish through the e2e binding."""
    conn = connect(warren, "app", "app-pw")
    try:
        ch = conn.channel()
        for q in ("orders", "dead-letters"):
            ch.queue_declare(q, passive=True)
        for x in ("shop", "dead", "front"):
            ch.exchange_declare(x, passive=True)
        ch.confirm_delivery()
        ch.basic_publish("front", "order.new", b"through front and shop")
        ch.basic_publish("front", "unroutable", b"to the alternate exchange")
        method, _, body = ch.basic_get("orders", auto_ack=True)
        assert body == b"through front and shop", method
        method, _, body = ch.basic_get("dead-letters", auto_ack=True)
        assert body == b"to the alternate exchange", method
    finally:
        conn.close()
    # Redeclaring as a client would (pika sends small integers as 32-bit ones) is equivalent. As ops: app's
    # configure permission is "", and a declare needs configure even when the queue exists.
    conn = connect(warren, "ops", "s3cret")
    try:
        conn.channel().queue_declare("orders", durable=True,
                                     arguments={"x-max-length": 1000, "x-dead-letter-exchange": "dead",
                                                "x-queue-type": "classic"})
    finally:
        conn.close()


# --- export -----------------------------------------------------------------------------------------------------


def test_export_shows_what_pika_declared(warren):
    conn = connect(warren)
    ch = conn.channel()
    ch.exchange_declare("ex.topic", "topic", durable=True, arguments={"alternate-exchange": "ex.fan"})
    ch.exchange_declare("ex.fan", "fanout", durable=True, internal=False)
    ch.exchange_declare("ex.hdr", "headers", durable=True)
    ch.queue_declare("q.args", durable=True, arguments={
        "x-max-length": 10, "x-message-ttl": 60000, "x-dead-letter-exchange": "ex.fan",
        "x-custom-flag": True, "x-custom-ratio": decimal.Decimal("0.25"),
        "x-custom-nested": {"a": 1, "list": [1, "two", False]}})
    ch.queue_declare("q.plain", durable=True)
    ch.queue_declare("q.transient", durable=False)
    ch.queue_declare("q.exclusive", durable=True, exclusive=True)
    ch.queue_bind("q.args", "ex.topic", "a.*.c")
    ch.queue_bind("q.plain", "ex.hdr", "", arguments={"x-match": "any", "kind": "x", "level": 3})
    ch.exchange_bind("ex.fan", "ex.topic", "to.fan")
    ch.queue_bind("q.transient", "ex.topic", "t")

    doc = export(warren)
    for key in ("rabbit_version", "rabbitmq_version", "product_name", "product_version", "users", "vhosts",
                "permissions", "topic_permissions", "parameters", "global_parameters", "policies", "queues",
                "exchanges", "bindings"):
        assert key in doc, key
    assert doc["rabbitmq_version"] == "3.10.8" and doc["product_name"] == "Warren"
    assert doc["topic_permissions"] == doc["parameters"] == doc["global_parameters"] == doc["policies"] == []
    assert doc["vhosts"] == [{"name": "/"}]
    guest = by_name(doc["users"])["guest"]
    assert guest["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert guest["tags"] == ["administrator"] and guest["limits"] == {}
    assert base64.b64decode(guest["password_hash"])[4:] != b""  # salted hash, never the password
    assert {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"} in doc["permissions"]

    queues = by_name(doc["queues"])
    assert set(queues) == {"q.args", "q.plain"}  # not the transient or the exclusive one
    assert queues["q.args"] == {
        "name": "q.args", "vhost": "/", "durable": True, "auto_delete": False,
        "arguments": {"x-max-length": 10, "x-message-ttl": 60000, "x-dead-letter-exchange": "ex.fan",
                      "x-custom-flag": True, "x-custom-ratio": 0.25,  # a decimal becomes a number
                      "x-custom-nested": {"a": 1, "list": [1, "two", False]}}}
    exchanges = by_name(doc["exchanges"])
    assert set(exchanges) == {"ex.topic", "ex.fan", "ex.hdr"}  # no "" and no amq.*
    assert exchanges["ex.topic"] == {"name": "ex.topic", "vhost": "/", "type": "topic", "durable": True,
                                     "auto_delete": False, "internal": False,
                                     "arguments": {"alternate-exchange": "ex.fan"}}
    bindings = doc["bindings"]
    assert {"source": "ex.topic", "vhost": "/", "destination": "q.args", "destination_type": "queue",
            "routing_key": "a.*.c", "arguments": {}} in bindings
    assert {"source": "ex.hdr", "vhost": "/", "destination": "q.plain", "destination_type": "queue",
            "routing_key": "", "arguments": {"x-match": "any", "kind": "x", "level": 3}} in bindings
    assert {"source": "ex.topic", "vhost": "/", "destination": "ex.fan", "destination_type": "exchange",
            "routing_key": "to.fan", "arguments": {}} in bindings
    assert not [b for b in bindings if b["destination"] == "q.transient"]
    conn.close()


def test_export_of_one_vhost_has_rabbitmqs_per_vhost_layout(warren_factory):
    warren = warren_factory("--vhosts", "other")
    conn = connect(warren, vhost="other")
    ch = conn.channel()
    ch.queue_declare("only-here", durable=True)
    conn.close()
    doc = export(warren, "/api/definitions/other")
    assert set(doc) == {"rabbit_version", "parameters", "policies", "queues", "exchanges", "bindings"}
    assert doc["queues"] == [{"name": "only-here", "durable": True, "auto_delete": False, "arguments": {}}]
    assert export(warren, "/api/definitions/%2F")["queues"] == []
    everything = export(warren)
    assert [q["vhost"] for q in everything["queues"]] == ["other"]
    assert everything["vhosts"] == [{"name": "/"}, {"name": "other"}]
    status, _, body = api(warren, "GET", "/api/definitions/nope")
    assert (status, body) == (400, {"error": "bad_request", "reason": "vhost_not_found"})


def test_download_names_the_file(warren):
    status, headers, _ = api(warren, "GET", "/api/definitions?download=defs.json")
    assert status == 200
    assert headers["Content-Disposition"] == "attachment; filename=defs.json"
    assert headers["Content-Type"] == "application/json"


# --- import -----------------------------------------------------------------------------------------------------


def test_import_into_a_fresh_broker_survives_a_restart(warren_factory):
    first = warren_factory()
    import_defs(first, IMPORTED)
    check_imported_objects_work(first)
    # The imported administrator can use the API, and the default user is still there.
    status, _, _ = api(first, "GET", "/api/definitions", user="ops", password="s3cret")
    assert status == 200
    before = export(first)
    assert {"ops", "app", "guest"} <= set(by_name(before["users"]))
    first.stop()

    second = warren_factory("--data-dir", str(first.data_dir))
    check_imported_objects_work(second)
    after = export(second)
    for key in ("users", "permissions", "queues", "exchanges", "bindings"):
        canon = lambda items: sorted(json.dumps(i, sort_keys=True) for i in items)  # noqa: E731
        assert canon(after[key]) == canon(before[key]), key
    status, _, _ = api(second, "GET", "/api/definitions", user="ops", password="s3cret")
    assert status == 200


def test_imported_user_replaces_the_configured_one_across_restarts(warren_factory):
    first = warren_factory()
    import_defs(first, {"users": [{"name": "guest", "password": "rotated", "tags": ["administrator"]}]})
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect(first, "guest", "guest")
    connect(first, "guest", "rotated").close()  # kept its permissions on "/"
    first.stop()
    second = warren_factory("--data-dir", str(first.data_dir))  # --default-pass is still "guest"
    connect(second, "guest", "rotated").close()
    status, _, _ = api(second, "GET", "/api/definitions", password="guest")
    assert status == 401


def test_import_into_one_vhost_ignores_the_files_vhosts(warren_factory):
    warren = warren_factory("--vhosts", "v2")
    doc = {"queues": [{"name": "q", "vhost": "/", "durable": True, "auto_delete": False, "arguments": {}}],
           "exchanges": [{"name": "x", "type": "fanout", "durable": True}],
           "bindings": [{"source": "x", "destination": "q", "destination_type": "queue", "routing_key": ""}]}
    import_defs(warren, doc, "/api/definitions/v2")
    assert [q["name"] for q in export(warren, "/api/definitions/v2")["queues"]] == ["q"]
    assert export(warren, "/api/definitions/%2F")["queues"] == []
    conn = connect(warren, vhost="v2")
    conn.channel().queue_declare("q", passive=True)
    conn.close()


def test_existing_objects_are_left_alone(warren):
    conn = connect(warren)
    ch = conn.channel()
    ch.queue_declare("keep", durable=True, arguments={"x-max-length": 5})
    ch.confirm_delivery()
    ch.basic_publish("", "keep", b"still here")
    doc = {"queues": [{"name": "keep", "vhost": "/", "durable": True, "auto_delete": False,
                       "arguments": {"x-max-length": 99}}]}
    import_defs(warren, doc)  # RabbitMQ skips queues that exist, whatever their arguments
    assert by_name(export(warren)["queues"])["keep"]["arguments"] == {"x-max-length": 5}
    assert ch.queue_declare("keep", passive=True).method.message_count == 1
    conn.close()


# --- errors -----------------------------------------------------------------------------------------------------


def test_authentication_and_authorisation(warren):
    status, headers, body = api(warren, "GET", "/api/definitions", user=None)
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Basic realm="RabbitMQ Management"'
    status, headers, body = api(warren, "GET", "/api/definitions", password="wrong")
    assert status == 401 and body == {"error": "not_authorized", "reason": "Login failed"}
    assert headers["WWW-Authenticate"] == 'Basic realm="RabbitMQ Management"'
    status, _, body = api(warren, "GET", "/api/definitions", headers={"Authorization": "Bearer x"})
    assert status == 401

    import_defs(warren, {"users": [{"name": "viewer", "password": "pw", "tags": ["management"]}],
                         "permissions": [{"user": "viewer", "vhost": "/", "configure": ".*", "write": ".*",
                                          "read": ".*"}]})
    for method, payload in (("GET", None), ("POST", {"queues": []})):
        status, _, body = api(warren, method, "/api/definitions", payload, user="viewer", password="pw")
        assert (status, body) == (401, {"error": "not_authorised", "reason": "Not administrator user"}), method
    # /healthz stays open; unknown API paths are 404 before any authentication, as in RabbitMQ.
    with urllib.request.urlopen(f"http://127.0.0.1:{warren.http_port}/healthz", timeout=5) as r:
        assert r.read() == b"ok"
    status, _, body = api(warren, "GET", "/api/no-such-thing", user=None)
    assert (status, body) == (404, {"error": "Object Not Found", "reason": "Not Found"})
    status, headers, _ = api(warren, "DELETE", "/api/definitions")
    assert status == 405 and headers["Allow"] == "GET, POST"


def test_unauthenticated_upload_is_refused_before_its_body(warren):
    # 1 MB of body with a wrong password: the 401 is sent from the head, without buffering the body.
    status, _, body = api(warren, "POST", "/api/definitions", b" " * 1_000_000, password="wrong")
    assert status == 401, body


def test_guest_is_refused_from_a_non_loopback_address(warren_factory):
    warren = warren_factory("--loopback-networks", "10.99.0.0/16")  # 127.0.0.1 no longer counts as local
    status, _, body = api(warren, "GET", "/api/definitions")
    assert (status, body) == (401, {"error": "not_authorised", "reason": "User can only log in via localhost"})


def test_import_errors_are_400_with_a_reason(warren):
    def refused(doc, path="/api/definitions"):
        status, _, body = api(warren, "POST", path, doc)
        assert status == 400 and body["error"] == "bad_request", (status, body)
        return body["reason"]

    assert refused(b"{this is not json") == "failed_to_parse_json"
    reason = refused({"queues": [{"name": "q", "vhost": "elsewhere", "durable": True}]})
    assert reason == "vhost 'elsewhere' does not exist and the file does not declare it", reason
    assert refused({"exchanges": [{"name": "x", "vhost": "/", "type": "x-delayed-message"}]}) == \
        "command_invalid: unknown exchange type 'x-delayed-message' (exchange 'x' in vhost '/')"
    assert refused({"queues": [{"name": "q", "vhost": "/", "arguments": {"x-max-length": "ten"}}]}).startswith(
        "precondition_failed: invalid arg 'x-max-length'")
    assert refused({"bindings": [{"source": "amq.direct", "vhost": "/", "destination": "missing",
                                  "destination_type": "queue", "routing_key": "k"}]}) == \
        "not_found: no queue 'missing' in vhost '/'"
    assert "hashing algorithm 'rabbit_password_hashing_md5' is not supported" in refused(
        {"users": [{"name": "u", "password_hash": "x", "hashing_algorithm": "rabbit_password_hashing_md5"}]})
    assert "'ghost'" in refused({"permissions": [{"user": "ghost", "vhost": "/", "configure": "", "write": "",
                                                  "read": ""}]})
    # Nothing of the refused files was created (refusals before anything is applied).
    assert export(warren)["queues"] == []
    status, _, body = api(warren, "POST", "/api/definitions/nope", {"queues": []})
    assert (status, body) == (404, {"error": "not_found", "reason": "vhost_not_found"})
    # The broker is still fine.
    connect(warren).close()


def test_vhosts_created_at_run_time_work_and_survive_a_restart(warren):
    # By PUT /api/vhosts/X (what `rabbitmqadmin declare vhost` sends) and by a definitions import that
    # declares one; the acting user (guest) gets full permissions on them, as in RabbitMQ.
    status, _, _ = api(warren, "PUT", "/api/vhosts/made-by-put")
    assert status == 201
    status, _, _ = api(warren, "PUT", "/api/vhosts/made-by-put")
    assert status == 204  # already there
    import_defs(warren, {"vhosts": [{"name": "made-by-import"}],
                         "queues": [{"name": "jobs", "vhost": "made-by-import", "durable": True,
                                     "auto_delete": False, "arguments": {}}]})
    status, _, body = api(warren, "GET", "/api/vhosts")
    assert status == 200 and [v["name"] for v in body] == ["/", "made-by-import", "made-by-put"], body  # sorted by name, as RabbitMQ lists
    status, _, body = api(warren, "GET", "/api/vhosts/nope")
    assert status == 404
    status, _, _ = api(warren, "DELETE", "/api/vhosts/nope")
    assert status == 404

    def use(vhost):
        c = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", warren.amqp_port, virtual_host=vhost, connection_attempts=1, socket_timeout=5))
        ch = c.channel()
        ch.confirm_delivery()
        ch.queue_declare("jobs", durable=True)
        ch.basic_publish("", "jobs", b"persistent", properties=pika.BasicProperties(delivery_mode=2))
        n = ch.queue_declare("jobs", passive=True).method.message_count
        c.close()
        return n

    assert use("made-by-put") == 1
    assert use("made-by-import") == 1
    warren.restart()
    assert use("made-by-put") == 2  # the vhost, its queue and its persistent message came back
    assert use("made-by-import") == 2
    assert [v["name"] for v in export(warren)["vhosts"]] == ["/", "made-by-put", "made-by-import"]


def test_too_large_a_body_is_413(warren):
    status, _, _ = api(warren, "POST", "/api/definitions", b" " * 20_000_001)
    assert status == 413


# --- rabbitmqadmin ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists(RABBITMQADMIN), reason="rabbitmqadmin (Debian rabbitmq-server) not installed")
def test_rabbitmqadmin_export_then_import_into_another_broker(warren_factory, tmp_path):
    source = warren_factory()
    import_defs(source, IMPORTED)
    target = warren_factory()

    def admin(warren, *args):
        r = subprocess.run([RABBITMQADMIN, "-H", "127.0.0.1", "-P", str(warren.http_port), "-u", "guest",
                            "-p", "guest", *args], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    path = tmp_path / "defs.json"
    admin(source, "export", str(path))
    exported = json.loads(path.read_text())
    assert set(by_name(exported["queues"])) == {"orders", "dead-letters"}
    admin(target, "import", str(path))
    check_imported_objects_work(target)
    one = tmp_path / "one-vhost.json"
    admin(target, "-V", "/", "export", str(one))
    assert set(by_name(json.loads(one.read_text())["queues"])) == {"orders", "dead-letters"}
    shutil.copy(path, tmp_path / "again.json")
    admin(target, "import", str(tmp_path / "again.json"))  # importing twice is fine


def test_deleting_a_vhost_closes_its_connections_and_removes_it_for_good(warren):
    """DELETE /api/vhosts/X: its connections are closed with 320, its queues and data go, and it stays gone after
    a restart."""
    status, _, _ = api(warren, "PUT", "/api/vhosts/doomed", {})
    assert status == 201
    c = pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=warren.amqp_port, virtual_host="doomed",
        credentials=pika.PlainCredentials("guest", "guest")))
    ch = c.channel()
    ch.queue_declare("kept", durable=True)
    ch.basic_publish("", "kept", b"x", pika.BasicProperties(delivery_mode=2))
    status, _, _ = api(warren, "DELETE", "/api/vhosts/doomed")
    assert status == 204
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        for _ in range(50):
            c.process_data_events(0.1)
    assert closed.value.reply_code == 320
    assert api(warren, "GET", "/api/vhosts/doomed")[0] == 404
    assert api(warren, "GET", "/api/queues/doomed")[0] == 404
    warren.restart()
    assert api(warren, "GET", "/api/vhosts/doomed")[0] == 404
    status, _, _ = api(warren, "PUT", "/api/vhosts/doomed", {})
    assert status == 201
    assert api(warren, "GET", "/api/queues/doomed")[2] == []
