"""Warren nodes in a cluster coordinated by a real etcd (docs/cluster.md), all started by the test on free ports:
joining, every node listing every node, a dead node seen as not running after its lease's TTL, a duplicate name
refused, and fencing: a node that cannot renew its lease closes and refuses its clients, and serves again when
etcd is back. Leases are 2 s here (etcd 3.4's floor is about that), so each test takes a few seconds."""

import base64
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pika
import pytest

from support.etcd_process import EtcdProcess
from support.ws_client import WsClient, make_jwt, query
from support.warren_process import WarrenProcess

TTL = 2
REPO_ROOT = Path(__file__).resolve().parents[2]


def warrenctl_bin() -> str:
    if os.environ.get("WARRENCTL_BIN"):
        return os.environ["WARRENCTL_BIN"]
    return str(Path(os.environ.get("WARREN_BIN", str(REPO_ROOT / "build" / "warren"))).parent / "warrenctl")


@pytest.fixture
def etcd():
    e = EtcdProcess().start()
    yield e
    e.cleanup()


@pytest.fixture
def node_factory(etcd, warren_factory):
    """node_factory(name, *more_flags) starts a warren node of cluster "c1" on the test's etcd."""

    def make(name, *more, cluster="c1"):
        return warren_factory("--node-name", name, "--cluster-name", cluster, "--etcd-endpoints", etcd.endpoint,
                              "--etcd-lease-ttl", str(TTL), *more, workers=1)

    return make


def api(node, path, method="GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{node.http_port}{path}", method=method)
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def running(node):
    return {n["name"]: n["running"] for n in api(node, "/api/nodes")}


def wait_for(fn, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"not true within {timeout} s (last: {last!r})")


def connect(node):
    return pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=node.amqp_port,
                                                             connection_attempts=1, socket_timeout=5))


def refused_reason(node):
    """The connection.close text a fenced node answers connection.open with, or None if it accepts."""
    try:
        connect(node).close()
        return None
    except pika.exceptions.AMQPConnectionError as e:
        return repr(e)


def test_nodes_join_and_each_lists_all(node_factory):
    a, b, c = node_factory("a"), node_factory("b"), node_factory("c")
    for n in (a, b, c):
        wait_for(lambda n=n: running(n) == {"a": True, "b": True, "c": True}, 5)
    # One node in detail: its own statistics on itself, what it published on the others.
    me = api(a, "/api/nodes/a")
    assert me["running"] is True and me["warren_cluster_state"] == "serving"
    assert "mem_used" in me and me["type"] == "disc"
    peer = api(a, "/api/nodes/b")
    assert peer["running"] is True and peer["uptime"] >= 0
    assert {"protocol": "amqp", "port": b.amqp_port} == {k: peer["listeners"][0][k] for k in ("protocol", "port")}
    assert sorted(x["name"] for x in me["cluster_links"]) == ["b", "c"]
    with pytest.raises(urllib.error.HTTPError) as e:
        api(a, "/api/nodes/nobody")
    assert e.value.code == 404
    overview = api(b, "/api/overview")
    assert overview["cluster_name"] == "c1" and overview["node"] == "b"
    # Clients are served on every node; the cluster name is in connection.start.
    for n in (a, b, c):
        conn = connect(n)
        assert conn._impl.server_properties["cluster_name"] in ("c1", b"c1")
        conn.close()
    # Prometheus: the cluster's gauges.
    with urllib.request.urlopen(f"http://127.0.0.1:{c.prometheus_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    # (every series of a cluster's node carries rabbitmq_node: test_prometheus.py)
    assert 'warren_cluster_nodes{rabbitmq_node="c"} 3' in text
    assert 'warren_cluster_nodes_running{rabbitmq_node="c"} 3' in text
    assert 'warren_cluster_node_fenced{rabbitmq_node="c"} 0' in text
    # warrenctl cluster_status, as rabbitmqctl prints it.
    out = subprocess.run([warrenctl_bin(), "--data-dir", str(a.data_dir), "cluster_status"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "Cluster name: c1" in out.stdout
    running_block = out.stdout.split("Running Nodes")[1]
    for name in ("a", "b", "c"):
        assert f"\n{name}\n" in running_block
    out = subprocess.run([warrenctl_bin(), "--data-dir", str(a.data_dir), "cluster_status", "--formatter", "json"],
                         capture_output=True, text=True, timeout=30)
    j = json.loads(out.stdout)
    assert j["cluster_name"] == "c1" and sorted(j["running_nodes"]) == ["a", "b", "c"]


def test_dead_node_is_shown_not_running_after_its_ttl(node_factory):
    a, b, c = node_factory("a"), node_factory("b"), node_factory("c")
    wait_for(lambda: running(a) == {"a": True, "b": True, "c": True}, 5)
    # kill -9: no goodbye; its lease runs out.
    killed = time.monotonic()
    c.kill9()
    assert running(a)["c"] is True  # still within its lease
    wait_for(lambda: running(a) == {"a": True, "b": True, "c": False}, TTL + 3)
    assert time.monotonic() - killed >= TTL - 0.5
    assert api(b, "/api/nodes/c")["running"] is False
    with urllib.request.urlopen(f"http://127.0.0.1:{a.prometheus_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert 'warren_cluster_nodes{rabbitmq_node="a"} 3' in text
    assert 'warren_cluster_nodes_running{rabbitmq_node="a"} 2' in text
    # A clean stop revokes the lease: seen at once (well within the TTL), not after it.
    b.stop()
    wait_for(lambda: running(a) == {"a": True, "b": False, "c": False}, 2.0)
    # A node that comes back under its name is running again.
    c.start()
    wait_for(lambda: running(a)["c"] is True, 5)


def test_duplicate_live_name_is_refused(node_factory, etcd):
    node_factory("a")
    dup = WarrenProcess(["--node-name", "a", "--cluster-name", "c1", "--etcd-endpoints", etcd.endpoint,
                         "--etcd-lease-ttl", str(TTL)], workers=1)
    try:
        with pytest.raises(AssertionError, match="exited with 1"):
            dup.start()
        log = dup.log_tail()
        assert "node name 'a' is already in use by a live node of cluster 'c1'" in log
        assert "choose another --node-name" in log
    finally:
        dup.kill()
        dup.cleanup()
    # Another cluster on the same etcd may use the name.
    node_factory("a", cluster="c2")


def test_bad_cluster_flags_are_refused(warren_factory):
    for flags, text in ((["--node-name", "a/b"], "--node-name 'a/b'"),
                        (["--etcd-endpoints", "https://127.0.0.1:2379"], "https endpoints are not supported"),
                        (["--etcd-endpoints", "http://127.0.0.1:99999"], "is not http://host:port"),
                        (["--etcd-lease-ttl", "0", "--etcd-endpoints", "http://127.0.0.1:1"], "--etcd-lease-ttl")):
        p = WarrenProcess(flags, workers=1)
        try:
            with pytest.raises(AssertionError, match="exited with"):
                p.start()
            assert text in p.log_tail(), p.log_tail()
        finally:
            p.kill()
            p.cleanup()


def test_node_fences_without_etcd_and_serves_again_when_it_returns(node_factory, etcd):
    secret = "cluster-test-secret-0123456789abcdef"
    a, b = node_factory("a", "--jwt-secret", secret), node_factory("b")
    wait_for(lambda: running(a) == {"a": True, "b": True}, 5)
    conn = connect(a)
    ch = conn.channel()
    ch.queue_declare("q1")
    ws = WsClient(a.web_port, query("/ws", token=make_jwt(secret, "alice"))).connect()
    # A WebSocket-less gateway request works while serving.
    with urllib.request.urlopen(f"http://127.0.0.1:{a.web_port}/", timeout=5) as r:
        assert r.status == 200

    etcd.stop()
    stopped = time.monotonic()
    # The open connection is closed by the node, with the reason, before the lease could expire in etcd.
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        while time.monotonic() - stopped < TTL + 2:
            conn.process_data_events(time_limit=0.1)
    fenced_after = time.monotonic() - stopped
    assert e.value.reply_code == 320
    assert "node 'a' of cluster 'c1' is fenced" in e.value.reply_text
    assert "not renewed" in e.value.reply_text
    assert fenced_after < TTL, fenced_after
    # The browser's WebSocket is closed with 1001 (going away) and the reason.
    code, reason = ws.expect_close(1001)
    assert "is fenced" in reason
    # New connections are refused with the same reason; the gateway answers 503.
    assert "is fenced" in (refused_reason(a) or "accepted")
    with pytest.raises(urllib.error.HTTPError) as h:
        urllib.request.urlopen(f"http://127.0.0.1:{a.web_port}/", timeout=5)
    assert h.value.code == 503 and b"is fenced" in h.value.read()
    # The management API stays up and says why.
    me = api(a, "/api/nodes/a")
    assert me["running"] is False and me["warren_cluster_state"] == "fenced"
    assert "etcd unreachable" in me["warren_fenced_reason"]
    with urllib.request.urlopen(f"http://127.0.0.1:{a.prometheus_port}/metrics", timeout=5) as r:
        assert 'warren_cluster_node_fenced{rabbitmq_node="a"} 1' in r.read().decode()
    assert "fenced" in a.log_tail(80)

    etcd.start()
    wait_for(lambda: refused_reason(a) is None and refused_reason(b) is None, 10, step=0.3)
    conn = connect(a)
    conn.channel().queue_declare("q1", passive=True)  # the node's queues are still there
    conn.close()
    wait_for(lambda: running(b) == {"a": True, "b": True}, 5)
    # The mirrors read etcd again after the outage: a user created now on a reaches b.
    put_json(a, "/api/users/after", {"password": "pw", "tags": ""})
    put_json(a, "/api/permissions/%2F/after", {"configure": "", "write": "", "read": ".*"})
    wait_for(lambda: login(b, "after", "pw") is None, 5)


def test_node_started_while_etcd_is_down_waits_fenced(warren_factory, etcd):
    endpoint = etcd.endpoint
    etcd.stop()
    a = warren_factory("--node-name", "a", "--cluster-name", "c1", "--etcd-endpoints", endpoint,
                       "--etcd-lease-ttl", str(TTL), workers=1)
    assert "is fenced" in (refused_reason(a) or "accepted")
    assert api(a, "/api/nodes/a")["warren_cluster_state"] == "fenced"
    etcd.start()
    wait_for(lambda: refused_reason(a) is None, 10, step=0.3)
    assert running(a) == {"a": True}


def test_single_node_without_etcd_is_unchanged(warren):
    nodes = api(warren, "/api/nodes")
    assert len(nodes) == 1 and nodes[0]["running"] is True
    assert "warren_cluster_state" not in nodes[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{warren.prometheus_port}/metrics", timeout=5) as r:
        assert "warren_cluster_nodes" not in r.read().decode()


def put_json(node, path, body, method="PUT"):
    req = urllib.request.Request(f"http://127.0.0.1:{node.http_port}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status


def login(node, user, password):
    """None if `user` may open the default vhost on `node`, else the error."""
    try:
        pika.BlockingConnection(pika.ConnectionParameters(
            host="127.0.0.1", port=node.amqp_port, connection_attempts=1, socket_timeout=5,
            credentials=pika.PlainCredentials(user, password))).close()
        return None
    except pika.exceptions.AMQPError as e:
        return repr(e) or type(e).__name__


def test_users_and_permissions_are_the_clusters(node_factory, etcd):
    a, b = node_factory("a"), node_factory("b")
    wait_for(lambda: running(b) == {"a": True, "b": True}, 5)
    # A user created on a can log in on b; its permissions came along.
    assert put_json(a, "/api/users/bob", {"password": "s3cret", "tags": "monitoring"}) in (201, 204)
    assert login(b, "bob", "s3cret") is not None  # no permission on "/" yet: refused
    assert put_json(a, "/api/permissions/%2F/bob", {"configure": ".*", "write": ".*", "read": ".*"}) in (201, 204)
    wait_for(lambda: login(b, "bob", "s3cret") is None, 5)
    assert login(b, "bob", "wrong") is not None
    bob = api(b, "/api/users/bob")
    assert bob["tags"] in (["monitoring"], "monitoring")
    # Kept in etcd, one key per user.
    got = etcd.call("/v3/kv/range", {"key": base64.b64encode(b"/warren/c1/users/bob").decode()})
    assert json.loads(base64.b64decode(got["kvs"][0]["value"]))["permissions"]["/"]["write"] == ".*"
    # A change on b reaches a; a deletion on a reaches b.
    assert put_json(b, "/api/users/bob", {"password": "other", "tags": ""}) in (201, 204)
    wait_for(lambda: login(a, "bob", "other") is None, 5)
    assert put_json(a, "/api/users/bob", None, method="DELETE") == 204
    wait_for(lambda: login(b, "bob", "other") is not None, 5)
    with pytest.raises(urllib.error.HTTPError) as e:
        api(b, "/api/users/bob")
    assert e.value.code == 404
    # Quick successive changes on one node: the echo of an older write never undoes a newer one.
    for i in range(5):
        put_json(a, "/api/users/dave", {"password": f"pw{i}", "tags": ""})
        put_json(a, "/api/permissions/%2F/dave", {"configure": "", "write": "", "read": f"r{i}"})
    def dave_reads(n):
        return [p["read"] for p in api(n, "/api/permissions") if p["user"] == "dave"]

    assert dave_reads(a) == ["r4"]  # at once on the node that took the changes
    for n in (a, b):
        wait_for(lambda n=n: dave_reads(n) == ["r4"], 5)
        assert login(n, "dave", "pw4") is None
    time.sleep(0.3)  # no late echo of an older write undoes the last one
    for n in (a, b):
        assert dave_reads(n) == ["r4"]
    # A node that joins later takes the cluster's users.
    put_json(a, "/api/users/carol", {"password": "pw", "tags": ""})
    put_json(a, "/api/permissions/%2F/carol", {"configure": "", "write": "", "read": ".*"})
    c = node_factory("c")
    wait_for(lambda: login(c, "carol", "pw") is None, 5)


def test_vhosts_are_the_clusters(node_factory):
    a, b = node_factory("a"), node_factory("b")
    wait_for(lambda: running(b) == {"a": True, "b": True}, 5)
    assert put_json(a, "/api/vhosts/shared", {}) in (201, 204)
    # On b: the vhost, and the creator's permissions on it (a user change, replicated too).
    wait_for(lambda: "shared" in [v["name"] for v in api(b, "/api/vhosts")], 5)

    def guest_opens_shared():
        try:
            pika.BlockingConnection(pika.ConnectionParameters(
                host="127.0.0.1", port=b.amqp_port, virtual_host="shared", connection_attempts=1,
                socket_timeout=5)).close()
            return True
        except pika.exceptions.AMQPError:
            return False

    wait_for(guest_opens_shared, 5)
    # Deleted on b: gone from a.
    assert put_json(b, "/api/vhosts/shared", None, method="DELETE") == 204
    wait_for(lambda: "shared" not in [v["name"] for v in api(a, "/api/vhosts")], 5)
    # A node joining keeps its own vhosts and adds them to the cluster's.
    c = node_factory("c", "--vhosts", "own")
    wait_for(lambda: "own" in [v["name"] for v in api(a, "/api/vhosts")], 5)
