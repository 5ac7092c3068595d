"""warrenctl against the real broker, over the control socket (<data-dir>/warren.sock, no credentials) and over
--url with basic auth: every command, with golden output where it is deterministic.

Every command's management API route is served, so every test checks strictly: a missing route fails."""

import http.client
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

import pika
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def warrenctl_bin() -> str:
    if os.environ.get("WARRENCTL_BIN"):
        return os.environ["WARRENCTL_BIN"]
    warren = os.environ.get("WARREN_BIN", str(REPO_ROOT / "build" / "warren"))
    return str(Path(warren).parent / "warrenctl")


# --- helpers ----------------------------------------------------------------------------------------------------


class Result:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def __repr__(self):
        return f"rc={self.rc}\n--- stdout ---\n{self.out}--- stderr ---\n{self.err}"


class Ctl:
    """Runs warrenctl against one warren, over `transport` ("socket" or "url")."""

    def __init__(self, warren, transport: str):
        self.warren = warren
        self.transport = transport

    def target_args(self, user="guest", password="guest"):
        if self.transport == "socket":
            return ["--data-dir", str(self.warren.data_dir)]
        return ["--url", f"http://127.0.0.1:{self.warren.http_port}", "-u", user, "--password", password]

    def run(self, *args, stdin: str | None = None, user="guest", password="guest") -> Result:
        proc = subprocess.run([warrenctl_bin(), *self.target_args(user, password), *args], input=stdin,
                              capture_output=True, text=True, timeout=30)
        return Result(proc)

    def ok(self, *args, **kwargs) -> str:
        """stdout of a command that must succeed."""
        r = self.run(*args, **kwargs)
        assert r.rc == 0, r
        assert r.err == "", r
        return r.out


def table(out: str, banner_lines: int):
    """(banner lines, header, sorted rows) of a listing."""
    lines = out.splitlines()
    return lines[:banner_lines], lines[banner_lines], sorted(lines[banner_lines + 1:])


def unix_http(path: str, method: str, target: str, body: bytes | None = None, headers=None):
    class UnixConnection(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(10)
            self.sock.connect(path)

    c = UnixConnection("localhost")
    c.request(method, target, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def wait_for(fn, timeout=5.0):
    """fn() until it returns something truthy (stats may trail the last operation by a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def amqp(warren, **kwargs):
    return pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=warren.amqp_port, **kwargs))


@pytest.fixture(params=["socket", "url"])
def ctl(request, warren):
    return Ctl(warren, request.param)


# --- the control socket ----------------------------------------------------------------------------------------


def test_socket_exists_owner_only(warren):
    st = os.lstat(warren.data_dir / "warren.sock")
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600


def test_socket_needs_no_credentials_and_tcp_still_does(warren):
    status, body = unix_http(str(warren.data_dir / "warren.sock"), "GET", "/api/vhosts")
    assert status == 200, body
    assert [v["name"] for v in json.loads(body)] == ["/"]
    # Credentials sent anyway are ignored on the socket, even wrong ones.
    status, _ = unix_http(str(warren.data_dir / "warren.sock"), "GET", "/api/vhosts",
                          headers={"Authorization": "Basic Z3Vlc3Q6d3Jvbmc="})
    assert status == 200
    conn = http.client.HTTPConnection("127.0.0.1", warren.http_port, timeout=10)
    conn.request("GET", "/api/vhosts")
    assert conn.getresponse().status == 401


def test_socket_removed_at_stop(warren):
    sock = warren.data_dir / "warren.sock"
    assert sock.exists()
    warren.stop()
    assert not sock.exists()


def test_stale_socket_is_replaced(warren_factory, tmp_path):
    w = warren_factory()
    data_dir = w.data_dir
    w.kill9()  # a crash leaves the socket file behind
    assert (data_dir / "warren.sock").exists()
    w.start()
    assert Ctl(w, "socket").ok("-q", "list_vhosts") == "name\n/\n"


def test_ctl_socket_option(warren_factory, tmp_path):
    path = tmp_path / "ctl.sock"
    w = warren_factory("--ctl-socket", str(path))
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert not (w.data_dir / "warren.sock").exists()
    r = subprocess.run([warrenctl_bin(), "--socket", str(path), "-q", "list_vhosts"], capture_output=True,
                       text=True, timeout=30)
    assert (r.returncode, r.stdout) == (0, "name\n/\n"), r.stderr
    none = warren_factory("--ctl-socket", "")
    assert not (none.data_dir / "warren.sock").exists()


# --- errors ----------------------------------------------------------------------------------------------------


def test_not_running(warren_factory, tmp_path):
    w = warren_factory()
    http_port = w.http_port
    w.stop()
    r = Ctl(w, "socket").run("list_vhosts")
    assert r.rc == 69, r
    assert r.out == ""
    assert r.err == (f"Error:\nthe broker is not running: cannot connect to {w.data_dir}/warren.sock "
                     "(No such file or directory)\n")
    r = subprocess.run([warrenctl_bin(), "--url", f"http://127.0.0.1:{http_port}", "list_vhosts"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 69, r
    assert r.stderr == (f"Error:\nthe broker is not running: cannot connect to http://127.0.0.1:{http_port} "
                        "(Connection refused)\n")
    # A socket file nobody listens on (a crashed broker's) says the same.
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()
    r = subprocess.run([warrenctl_bin(), "--socket", str(stale), "list_vhosts"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 69
    assert r.stderr.startswith("Error:\nthe broker is not running")


def test_url_wrong_password_is_refused(warren):
    r = Ctl(warren, "url").run("list_vhosts", password="wrong")
    assert r.rc == 77, r
    assert r.err == "Error:\nAccess refused: Login failed\n"


def test_usage_errors(warren):
    r = Ctl(warren, "socket").run("no_such_command")
    assert r.rc == 64
    assert r.err.startswith("Error:\nunknown command 'no_such_command'")
    r = Ctl(warren, "socket").run("add_user", "only-a-name")
    assert r.rc == 64
    assert "Usage: warrenctl add_user <username> <password>" in r.err


# --- what the API serves today ---------------------------------------------------------------------------------


def test_list_vhosts_golden(ctl):
    assert ctl.ok("list_vhosts") == "Listing vhosts ...\nname\n/\n"
    assert ctl.ok("-q", "list_vhosts") == "name\n/\n"
    assert ctl.ok("-s", "list_vhosts") == "/\n"
    assert ctl.ok("--no-table-headers", "list_vhosts") == "Listing vhosts ...\n/\n"
    assert ctl.ok("--formatter", "json", "list_vhosts") == '[\n{"name":"/"}\n]\n'
    assert ctl.ok("list_vhosts", "-q") == "name\n/\n"  # options after the command too


def test_add_vhost(ctl):
    assert ctl.ok("add_vhost", "v2") == 'Adding vhost "v2" ...\n'
    assert ctl.ok("add_vhost", "with space/and slash") == 'Adding vhost "with space/and slash" ...\n'
    assert ctl.ok("-q", "add_vhost", "v3") == ""
    assert table(ctl.ok("list_vhosts"), 1) == (["Listing vhosts ..."], "name",
                                               ["/", "v2", "v3", "with space/and slash"])


def test_export_definitions(ctl, tmp_path):
    doc = json.loads(ctl.ok("export_definitions", "-"))
    assert doc["product_name"] == "Warren"
    assert [v["name"] for v in doc["vhosts"]] == ["/"]
    assert [u["name"] for u in doc["users"]] == ["guest"]
    path = tmp_path / "defs.json"
    assert ctl.ok("export_definitions", str(path)) == f'Exporting definitions in JSON to a file at "{path}" ...\n'
    assert json.loads(path.read_text()) == doc


def test_import_definitions(ctl, tmp_path):
    doc = {"vhosts": [{"name": "/"}],
           "queues": [{"name": "imported", "vhost": "/", "durable": True, "auto_delete": False, "arguments": {}}],
           "exchanges": [{"name": "ix", "vhost": "/", "type": "fanout", "durable": True, "auto_delete": False,
                          "internal": False, "arguments": {}}],
           "bindings": [{"source": "ix", "vhost": "/", "destination": "imported", "destination_type": "queue",
                         "routing_key": "", "arguments": {}}]}
    path = tmp_path / "in.json"
    path.write_text(json.dumps(doc))
    assert ctl.ok("import_definitions", str(path)) == f'Importing definitions in JSON from a file at "{path}" ...\n'
    out = json.loads(ctl.ok("export_definitions", "-"))
    assert [q["name"] for q in out["queues"]] == ["imported"]
    assert [e["name"] for e in out["exchanges"]] == ["ix"]
    doc["queues"][0]["name"] = "from-stdin"
    doc["bindings"] = []
    assert ctl.ok("import_definitions", "-", stdin=json.dumps(doc)) == \
        "Importing definitions in JSON from standard input ...\n"
    out = json.loads(ctl.ok("export_definitions", "-"))
    assert sorted(q["name"] for q in out["queues"]) == ["from-stdin", "imported"]
    r = ctl.run("import_definitions", "-", stdin="{not json")
    assert r.rc == 65, r
    assert r.err.startswith("Error:\n")


# --- commands that change the broker --------------------------------------------------------------------------


@pytest.fixture
def model(warren):
    """q1 (3 messages) bound to topic exchange logs with a.#, q2 (2 messages), one consumer on q1 holding one of
    its messages unacknowledged: the objects the listings show. Yields the pika connection."""
    conn = amqp(warren, client_properties={"connection_name": "ctl-test"})
    ch = conn.channel()
    ch.exchange_declare("logs", "topic", durable=True)
    ch.queue_declare("q1", durable=True)
    ch.queue_declare("q2", durable=True, arguments={"x-max-length": 10})
    ch.queue_bind("q1", "logs", "a.#")
    for i in range(3):
        ch.basic_publish("", "q1", f"m{i}".encode())
    for i in range(2):
        ch.basic_publish("", "q2", f"n{i}".encode())
    consumer = conn.channel()
    consumer.basic_qos(prefetch_count=1)
    consumer.basic_consume("q1", lambda *a: None, consumer_tag="ctag-1")
    conn.process_data_events(time_limit=0.3)
    yield conn
    if conn.is_open:
        conn.close()


def test_list_queues(ctl, model):
    out = wait_for(lambda: (lambda o: o if "q1\t3\n" in o else None)(ctl.ok("list_queues")))
    assert table(out, 2) == (["Timeout: 60.0 seconds ...", "Listing queues for vhost / ..."], "name\tmessages",
                             ["q1\t3", "q2\t2"]), out
    out = ctl.ok("-q", "list_queues", "name", "durable", "auto_delete", "arguments", "consumers",
                 "messages_unacknowledged")
    assert table(out, 0)[1:] == ("name\tdurable\tauto_delete\targuments\tconsumers\tmessages_unacknowledged",
                                 ["q1\ttrue\tfalse\t[]\t1\t1", 'q2\ttrue\tfalse\t[{"x-max-length",10}]\t0\t0'])
    assert sorted(ctl.ok("-s", "list_queues").splitlines()) == ["q1\t3", "q2\t2"]
    rows = json.loads(ctl.ok("--formatter", "json", "list_queues", "name", "messages", "durable"))
    assert sorted(rows, key=lambda r: r["name"]) == [{"name": "q1", "messages": 3, "durable": True},
                                                     {"name": "q2", "messages": 2, "durable": True}]


def test_list_exchanges(ctl, model):
    banner, header, rows = table(ctl.ok("list_exchanges"), 1)
    assert (banner, header) == (["Listing exchanges for vhost / ..."], "name\ttype")
    for row in ["\tdirect", "amq.direct\tdirect", "amq.fanout\tfanout", "amq.topic\ttopic", "amq.headers\theaders",
                "amq.match\theaders", "logs\ttopic"]:
        assert row in rows, rows


def test_list_bindings(ctl, model):
    banner, header, rows = table(ctl.ok("list_bindings"), 1)
    assert banner == ["Listing bindings for vhost /..."]
    assert header == "source_name\tsource_kind\tdestination_name\tdestination_kind\trouting_key\targuments"
    assert rows == sorted(["\texchange\tq1\tqueue\tq1\t[]", "\texchange\tq2\tqueue\tq2\t[]",
                           "logs\texchange\tq1\tqueue\ta.#\t[]"]), rows


def test_list_connections_and_close_connection(ctl, model, warren):
    banner, header, rows = table(ctl.ok("list_connections"), 1)
    assert (banner, header) == (["Listing connections ..."], "user\tpeer_host\tpeer_port\tstate")
    assert len(rows) == 1 and re.fullmatch(r"guest\t127\.0\.0\.1\t\d+\trunning", rows[0]), rows
    name = ctl.ok("-s", "list_connections", "name").strip()
    assert re.fullmatch(rf"127\.0\.0\.1:\d+ -> 127\.0\.0\.1:{warren.amqp_port}", name), name
    assert ctl.ok("close_connection", name, "go away") == f"Closing connection {name}, reason: go away...\n"
    assert wait_for(lambda: ctl.ok("-s", "list_connections") == "") is True
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        model.process_data_events(time_limit=1)
    assert e.value.reply_code == 320 and "go away" in e.value.reply_text


def test_list_channels(ctl, model, warren):
    banner, header, rows = table(ctl.ok("list_channels"), 1)
    assert (banner, header) == (["Listing channels ..."], "name\tuser\tconsumer_count\tmessages_unacknowledged")
    port = warren.amqp_port
    assert len(rows) == 2, rows
    assert re.fullmatch(rf"127\.0\.0\.1:\d+ -> 127\.0\.0\.1:{port} \(1\)\tguest\t0\t0", rows[0]), rows
    assert re.fullmatch(rf"127\.0\.0\.1:\d+ -> 127\.0\.0\.1:{port} \(2\)\tguest\t1\t1", rows[1]), rows


def test_list_consumers(ctl, model, warren):
    banner, header, rows = table(ctl.ok("list_consumers"), 1)
    assert banner == ["Listing consumers in vhost / ..."]
    assert header == "queue_name\tchannel_pid\tconsumer_tag\tack_required\tprefetch_count\tactive\targuments"
    assert len(rows) == 1
    assert re.fullmatch(rf"q1\t127\.0\.0\.1:\d+ -> 127\.0\.0\.1:{warren.amqp_port} \(2\)\tctag-1\ttrue\t1\ttrue\t\[\]",
                        rows[0]), rows


def test_purge_queue(ctl, model):
    assert ctl.ok("purge_queue", "q2") == "Purging queue 'q2' in vhost '/' ...\n"
    assert "q2\t0" in ctl.ok("-s", "list_queues").splitlines()


def test_delete_queue(ctl, model):
    r = ctl.run("delete_queue", "q2", "--if-empty")
    assert r.rc == 65 and r.err.startswith("Error:\n"), r
    r = ctl.run("delete_queue", "q1", "--if-unused")
    assert r.rc == 65 and r.err.startswith("Error:\n"), r
    assert ctl.ok("delete_queue", "q2") == \
        "Deleting queue 'q2' on vhost '/' ...\nQueue was successfully deleted with 2 messages\n"
    assert sorted(ctl.ok("-s", "list_queues").splitlines()) == ["q1\t3"]
    r = ctl.run("delete_queue", "q2")
    assert r.rc == 65 and r.err == "Error:\nNot Found\n", r


def test_users(ctl, warren):
    assert table(ctl.ok("list_users"), 1) == (["Listing users ..."], "user\ttags", ["guest\t[administrator]"])
    assert ctl.ok("add_user", "bob", "s3cret") == 'Adding user "bob" ...\n'
    r = ctl.run("add_user", "bob", "other")
    assert (r.rc, r.err) == (65, 'Error:\nUser "bob" already exists\n'), r
    assert table(ctl.ok("-q", "list_users"), 0)[2] == ["bob\t[]", "guest\t[administrator]"]
    assert ctl.ok("set_user_tags", "bob", "administrator", "monitoring") == \
        'Setting tags for user "bob" to [administrator, monitoring] ...\n'
    assert "bob\t[administrator, monitoring]" in ctl.ok("-s", "list_users").splitlines()
    # The password survived the tags (set_user_tags sends the hash back): bob can use the API.
    bob = Ctl(warren, "url")
    assert bob.ok("-q", "list_vhosts", user="bob", password="s3cret") == "name\n/\n"
    assert ctl.ok("change_password", "bob", "n3w") == 'Changing password for user "bob" ...\n'
    assert bob.run("list_vhosts", user="bob", password="s3cret").rc == 77
    assert bob.ok("-q", "list_vhosts", user="bob", password="n3w") == "name\n/\n"  # tags kept
    assert ctl.ok("delete_user", "bob") == 'Deleting user "bob" ...\n'
    assert ctl.ok("-s", "list_users") == "guest\t[administrator]\n"


def test_permissions(ctl):
    ctl.ok("-q", "add_user", "carol", "pw")
    ctl.ok("-q", "add_vhost", "v2")
    assert ctl.ok("set_permissions", "carol", "^carol-", "^carol-", ".*") == \
        'Setting permissions for user "carol" in vhost "/" ...\n'
    assert ctl.ok("set_permissions", "-p", "v2", "carol", "", "", "^logs$") == \
        'Setting permissions for user "carol" in vhost "v2" ...\n'
    assert table(ctl.ok("list_permissions"), 1) == (['Listing permissions for vhost "/" ...'],
                                                    "user\tconfigure\twrite\tread",
                                                    ["carol\t^carol-\t^carol-\t.*", "guest\t.*\t.*\t.*"])
    # guest has permissions on v2 too when it created v2 (over --url), as RabbitMQ gives a vhost's creator.
    banner, header, rows = table(ctl.ok("-p", "v2", "list_permissions"), 1)
    assert (banner, header) == (['Listing permissions for vhost "v2" ...'], "user\tconfigure\twrite\tread")
    assert "carol\t\t\t^logs$" in rows, rows


def test_delete_vhost(ctl):
    ctl.ok("-q", "add_vhost", "gone")
    assert ctl.ok("delete_vhost", "gone") == 'Deleting vhost "gone" ...\n'
    assert ctl.ok("-s", "list_vhosts") == "/\n"


def test_status(ctl, warren):
    out = ctl.ok("status")
    assert re.match(r"Status of node \S+ \.\.\.\nRuntime\n\n", out), out
    for section in ["\nAlarms\n\n(none)\n", "\nMemory\n\n", "\nFile Descriptors\n\n", "\nListeners\n\n"]:
        assert section in out, out
    assert re.search(rf"^Interface: \S+, port: {warren.amqp_port}, protocol: amqp, purpose: AMQP 0-9-1$", out,
                     re.M), out
    assert re.search(rf"^Interface: \S+, port: {warren.http_port}, protocol: http, purpose: HTTP API$", out,
                     re.M), out
    assert re.search(rf"^Interface: \S+, port: {warren.prometheus_port}, protocol: prometheus, "
                     r"purpose: Prometheus exporter API over HTTP$", out, re.M), out
    assert re.search(r"^Total memory used: \d+\.\d{4} gb$", out, re.M), out
    assert not ctl.ok("-q", "status").startswith("Status of node")
    doc = json.loads(ctl.ok("--formatter", "json", "status"))
    assert doc["alarms"] == [] and doc["mem_used"] > 0 and doc["fd_used"] > 0


def test_set_vm_memory_high_watermark(ctl, warren):
    out = ctl.ok("set_vm_memory_high_watermark", "0.5")
    assert re.fullmatch(r"Setting memory threshold on \S+ to 0\.5 \.\.\.\n", out), out
    out = ctl.ok("set_vm_memory_high_watermark", "absolute", "200MiB")
    assert re.fullmatch(r"Setting memory threshold on \S+ to 200MiB bytes \.\.\.\n", out), out
    status, body = unix_http(str(warren.data_dir / "warren.sock"), "GET", "/api/nodes")
    assert status == 200, body
    assert json.loads(body)[0]["mem_limit"] == 200 * 1024 * 1024
    assert "memory high watermark changed to 200.0 MiB" in warren.stderr_path.read_text()
    r = ctl.run("set_vm_memory_high_watermark", "1.5")
    assert r.rc == 64, r
    r = ctl.run("set_vm_memory_high_watermark", "absolute", "lots")
    assert r.rc != 0 and "absolute" in r.err, r


def test_vhost_limits(ctl):
    ctl.ok("add_vhost", "lim")
    out = ctl.ok("-p", "lim", "set_vhost_limits", '{"max-connections": 10, "max-queues": 20}')
    assert out == 'Setting vhost limits to "{"max-connections": 10, "max-queues": 20}" for vhost "lim" ...\n'
    assert ctl.ok("-p", "lim", "list_vhost_limits") == (
        'Listing limits for vhost "lim" ...\n{"max-connections":10,"max-queues":20}\n')
    # The definition replaces the vhost's limits, as rabbitmqctl's does.
    ctl.ok("-p", "lim", "set_vhost_limits", '{"max-queues": 5}')
    assert ctl.ok("-q", "-p", "lim", "list_vhost_limits") == '{"max-queues":5}\n'
    out = ctl.ok("list_vhost_limits", "--global")
    assert out.splitlines()[:2] == ["Listing limits for all vhosts ...", "vhost\tlimits"], out
    assert 'lim\t{"max-queues":5}' in out.splitlines()
    assert json.loads(ctl.ok("--formatter", "json", "list_vhost_limits", "--global")) == [
        {"vhost": "lim", "limits": '{"max-queues":5}'}]
    assert ctl.ok("-p", "lim", "clear_vhost_limits") == 'Clearing vhost "lim" limits ...\n'
    assert ctl.ok("-p", "lim", "list_vhost_limits") == 'Listing limits for vhost "lim" ...\n'
    r = ctl.run("-p", "lim", "set_vhost_limits", '{"max-connections": "x"}')
    assert r.rc == 65 and 'max-connections should be a number, actually was <<"x">>' in r.err, r
    r = ctl.run("-p", "lim", "set_vhost_limits", "not json")
    assert r.rc == 65 and "Could not parse JSON document" in r.err, r


def test_user_limits(ctl):
    ctl.ok("add_user", "bob", "pw")
    out = ctl.ok("set_user_limits", "bob", '{"max-connections": 2, "max-channels": 8}')
    assert out == 'Setting user limits to "{"max-connections": 2, "max-channels": 8}" for user "bob" ...\n'
    assert ctl.ok("list_user_limits", "--user", "bob") == (
        'Listing limits for user "bob" ...\n{"max-channels":8,"max-connections":2}\n')
    assert ctl.ok("clear_user_limits", "bob", "max-channels") == 'Clearing "max-channels" limit for user "bob" ...\n'
    assert ctl.ok("-q", "list_user_limits", "--user", "bob") == '{"max-connections":2}\n'
    out = ctl.ok("-s", "list_user_limits", "--global")
    assert out == 'bob\t{"max-connections":2}\n', out
    assert ctl.ok("clear_user_limits", "bob", "all") == 'Clearing all limits for user "bob" ...\n'
    assert ctl.ok("-q", "list_user_limits", "--user", "bob") == ""
    assert ctl.ok("-q", "list_user_limits") == ""  # guest by default, who has none
    r = ctl.run("set_user_limits", "bob", '{"max-queues": 1}')
    assert r.rc == 65 and 'Unrecognised terms [{<<"max-queues">>,1}] in user-limits' in r.err, r
    r = ctl.run("list_user_limits", "--user", "nobody")
    assert r.rc == 65, r
