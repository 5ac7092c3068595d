"""Exchanges, bindings and queue records kept in etcd (docs/cluster.md, "Exchanges, bindings and queue records"):
a declare, bind, unbind or delete on one node appears on the others and routes there; every node lists every
queue with its node and refuses to declare or use another node's queue; a node joining adds what it has (the
union) and adopts etcd's version of what conflicts; an export on any node covers the cluster. A real etcd and
real Warren nodes, driven with pika and the management API."""

import base64
import json
import time
import urllib.error

import pika
import pytest

from test_cluster import api, etcd, node_factory, put_json, running, wait_for  # noqa: F401 (fixtures)


def etcd_keys(etcd, prefix):
    p = prefix.encode()
    end = p[:-1] + bytes([p[-1] + 1])
    got = etcd.call("/v3/kv/range", {"key": base64.b64encode(p).decode(),
                                     "range_end": base64.b64encode(end).decode()})
    return {base64.b64decode(kv["key"]).decode()[len(prefix):]: json.loads(base64.b64decode(kv["value"]))
            for kv in got.get("kvs", [])}


def channel(node):
    conn = pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=node.amqp_port,
                                                             connection_attempts=1, socket_timeout=5))
    return conn, conn.channel()


def exchanges(node):
    return {x["name"]: x for x in api(node, "/api/exchanges/%2F")}


def queues(node):
    return {q["name"]: q for q in api(node, "/api/queues/%2F")}


def two_nodes(node_factory, *more):
    a, b = node_factory("a", *more), node_factory("b", *more)
    wait_for(lambda: running(b) == {"a": True, "b": True}, 5)
    return a, b


def test_exchanges_and_bindings_are_the_clusters(node_factory, etcd):
    a, b = two_nodes(node_factory)
    ca, cha = channel(a)
    cha.exchange_declare("logs", "fanout", durable=True)
    cha.exchange_declare("front", "direct", durable=False)  # transient: cluster-wide too, as in RabbitMQ
    cha.exchange_bind(destination="logs", source="front", routing_key="k")
    wait_for(lambda: "logs" in exchanges(b) and "front" in exchanges(b), 5)
    assert exchanges(b)["logs"]["type"] == "fanout" and exchanges(b)["logs"]["durable"] is True
    assert exchanges(b)["front"]["durable"] is False
    wait_for(lambda: any(x["source"] == "front" and x["destination"] == "logs"
                         for x in api(b, "/api/bindings/%2F")), 5)
    # A publish on b to the exchange declared on a routes through b's copy (front -> logs) to b's queue.
    cb, chb = channel(b)
    chb.queue_declare("on_b")
    chb.queue_bind("on_b", "logs")
    chb.basic_publish("front", "k", b"hello")
    wait_for(lambda: chb.basic_get("on_b", auto_ack=True)[2] == b"hello", 5)
    # In etcd: one key per exchange and binding, percent-encoded; never the built-in ones.
    # (written after the local change: b's binding (pika binds with the queue's name as the key) may reach
    # etcd a moment after the client's answer)
    keys = wait_for(lambda: (k := etcd_keys(etcd, "/warren/c1/definitions/%2F/"))
                    and "bindings/logs/queue/on_b/on_b/%7B%7D" in k and k, 5)
    assert keys["exchanges/logs"]["type"] == "fanout"
    assert "bindings/front/exchange/logs/k/%7B%7D" in keys
    assert "bindings/logs/queue/on_b/on_b/%7B%7D" in keys
    assert keys["queues/on_b"]["node"] == "b"
    assert not [k for k in keys if k.startswith("exchanges/amq.") or k.startswith("exchanges/warren.")]
    # Unbind and delete on a: gone on b, and from etcd with the bindings that went with them.
    cha.exchange_unbind(destination="logs", source="front", routing_key="k")
    wait_for(lambda: not any(x["source"] == "front" for x in api(b, "/api/bindings/%2F")), 5)
    chb.basic_publish("front", "k", b"lost")
    cha.exchange_delete("logs")
    wait_for(lambda: "logs" not in exchanges(b), 5)
    assert chb.basic_get("on_b", auto_ack=True)[2] is None  # unbound before the publish
    keys = etcd_keys(etcd, "/warren/c1/definitions/%2F/")
    assert "exchanges/logs" not in keys and not [k for k in keys if k.startswith("bindings/logs/")]
    assert not [x for x in api(b, "/api/bindings/%2F") if x["source"] == "logs"]
    # Quick successive changes on one node: the echo of an older write never undoes a newer one.
    for i in range(5):
        cha.exchange_declare("flip", "topic")
        cha.exchange_delete("flip")
    cha.exchange_declare("flip", "headers")
    assert exchanges(a)["flip"]["type"] == "headers"  # at once on the declaring node
    wait_for(lambda: exchanges(b).get("flip", {}).get("type") == "headers", 5)
    time.sleep(0.3)
    assert exchanges(a)["flip"]["type"] == "headers" and exchanges(b)["flip"]["type"] == "headers"
    # An auto-delete exchange goes with its last binding in the cluster, not with the last one a node sees: b
    # sees only the bindings to its own queues.
    cha.exchange_declare("fleeting", "fanout", durable=True, auto_delete=True)
    cha.queue_declare("on_a", durable=True)
    cha.queue_bind("on_a", "fleeting", "")
    wait_for(lambda: "fleeting" in exchanges(b), 5)
    # (b knows of a's binding once its export lists it: until then b, as any node, would delete the exchange)
    wait_for(lambda: any(x["source"] == "fleeting" and x["destination"] == "on_a"
                         for x in api(b, "/api/definitions")["bindings"]), 5)
    # b lists a's bindings to a's queues too, as every RabbitMQ node lists every binding.
    assert any(x["source"] == "fleeting" and x["destination"] == "on_a" for x in api(b, "/api/bindings/%2F"))
    chb.queue_bind("on_b", "fleeting", "")
    chb.queue_unbind("on_b", "fleeting", "")  # b's last binding of it: b drops its copy, and takes it back
    wait_for(lambda: "fleeting" in exchanges(b), 5)
    time.sleep(0.3)
    assert "fleeting" in exchanges(a) and "fleeting" in exchanges(b)
    cha.queue_unbind("on_a", "fleeting", "")  # the cluster's last binding: gone everywhere
    wait_for(lambda: "fleeting" not in exchanges(b), 5)
    assert "fleeting" not in exchanges(a)
    ca.close()
    cb.close()


def test_definitions_of_other_vhosts(node_factory, etcd):
    a, b = two_nodes(node_factory)
    assert put_json(a, "/api/vhosts/v%2F2", {}) in (201, 204)
    wait_for(lambda: "v/2" in [v["name"] for v in api(b, "/api/vhosts")], 5)
    assert put_json(a, "/api/exchanges/v%2F2/x%2Fy", {"type": "topic", "durable": True}) in (201, 204)
    assert put_json(a, "/api/queues/v%2F2/q", {"durable": True}) in (201, 204)
    wait_for(lambda: [x["type"] for x in api(b, "/api/exchanges/v%2F2") if x["name"] == "x/y"] == ["topic"], 5)
    wait_for(lambda: [q["node"] for q in api(b, "/api/queues/v%2F2")] == ["a"], 5)
    assert "exchanges/x%2Fy" in etcd_keys(etcd, "/warren/c1/definitions/v%2F2/")
    # The vhost deleted: its definitions go from etcd too.
    assert put_json(b, "/api/vhosts/v%2F2", None, method="DELETE") == 204
    wait_for(lambda: not etcd_keys(etcd, "/warren/c1/definitions/v%2F2/"), 5)
    wait_for(lambda: "v/2" not in [v["name"] for v in api(a, "/api/vhosts")], 5)


def test_queues_are_listed_everywhere_and_refused_off_their_node(node_factory, etcd):
    a, b = two_nodes(node_factory)
    ca, cha = channel(a)
    cha.queue_declare("orders", durable=True, arguments={"x-max-length": 10})
    cha.queue_declare("scratch", auto_delete=False)
    cha.queue_declare("mine", exclusive=True)  # lives and dies with its connection: recorded as exclusive
    wait_for(lambda: "orders" in queues(b) and "scratch" in queues(b), 5)
    q = queues(b)["orders"]
    assert q["node"] == "a" and q["durable"] is True and q["arguments"] == {"x-max-length": 10}
    assert queues(a)["orders"]["node"] == "a"
    assert "mine" not in queues(b)  # listed on its connection's node only
    wait_for(lambda: "mine" in etcd_keys(etcd, "/warren/c1/definitions/%2F/queues/"), 5)
    mine = etcd_keys(etcd, "/warren/c1/definitions/%2F/queues/")["mine"]
    assert mine["exclusive"] is True and mine["node"] == "a"
    assert "exclusive" not in etcd_keys(etcd, "/warren/c1/definitions/%2F/queues/")["orders"]
    assert api(b, "/api/queues/%2F/orders")["node"] == "a"
    assert [(x["source"], x["routing_key"]) for x in api(b, "/api/queues/%2F/orders/bindings")] == [("", "orders")]
    # On b, a's queue is declared (even passively), consumed, fetched and bound through a (test_cluster_queues.py,
    # test_cluster_consume.py); the management API of b does not declare it.
    cb = pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=b.amqp_port))
    assert cb.channel().queue_declare("orders", durable=True, arguments={"x-max-length": 10}).method.queue == "orders"
    assert cb.channel().queue_declare("orders", passive=True).method.message_count == 0
    assert cb.channel().basic_get("orders")[0] is None
    with pytest.raises(urllib.error.HTTPError) as e:
        put_json(b, "/api/queues/%2F/orders", {"durable": True})
    assert e.value.code == 400 and "lives on node 'a'" in json.loads(e.value.read())["reason"]
    # The queue works on its own node; deleted there, its name is free on b.
    cha.basic_publish("", "orders", b"x")
    assert cha.basic_get("orders", auto_ack=True)[2] == b"x"
    cha.queue_delete("orders")
    wait_for(lambda: "orders" not in queues(b), 5)
    cb.channel().queue_declare("orders")
    wait_for(lambda: queues(a).get("orders", {}).get("node") == "b", 5)
    # A restarted node drops the records of its transient queues, which did not survive it.
    ca.close()
    a.restart()
    wait_for(lambda: "scratch" not in queues(b), 5)
    assert "scratch" not in etcd_keys(etcd, "/warren/c1/definitions/%2F/queues/")
    cb.close()


def test_joining_adds_its_own_adopts_etcds_and_export_covers_the_cluster(node_factory, warren_factory, etcd):
    a = node_factory("a")
    ca, cha = channel(a)
    cha.exchange_declare("shared", "fanout", durable=True)
    cha.queue_declare("qa", durable=True)
    cha.queue_bind("qa", "shared", "")
    # c starts alone (no etcd), with a "shared" of another type and definitions of its own.
    c = warren_factory("--node-name", "c", workers=1)
    cc, chc = channel(c)
    chc.exchange_declare("shared", "direct", durable=True)
    chc.exchange_declare("only_c", "topic", durable=True)
    chc.queue_declare("qc", durable=True)
    chc.queue_bind("qc", "only_c", "a.#")
    cc.close()
    c.stop()
    c.args += ["--cluster-name", "c1", "--etcd-endpoints", etcd.endpoint, "--etcd-lease-ttl", "2"]
    c.start()
    # The union: what c had and etcd lacked is the cluster's now.
    wait_for(lambda: "only_c" in exchanges(a), 5)
    wait_for(lambda: queues(a).get("qc", {}).get("node") == "c", 5)
    # The conflict: etcd's "shared" (a's, first) replaces c's, and c says so in its log.
    wait_for(lambda: exchanges(c).get("shared", {}).get("type") == "fanout", 5)
    assert exchanges(a)["shared"]["type"] == "fanout"
    assert "differs from etcd's" in c.stderr_path.read_text() + c.stdout_path.read_text()
    # An export on either node covers the cluster: exchanges, queues with their node, bindings.
    for n in (a, c):
        d = api(n, "/api/definitions")
        xs = {x["name"]: x["type"] for x in d["exchanges"]}
        assert xs["shared"] == "fanout" and xs["only_c"] == "topic"
        qs = {q["name"]: q["node"] for q in d["queues"]}
        assert qs == {"qa": "a", "qc": "c"}
        bs = {(x["source"], x["destination"], x["routing_key"]) for x in d["bindings"]}
        assert {("shared", "qa", ""), ("only_c", "qc", "a.#")} <= bs
    # The cluster's export imports on any node: other nodes' queues and their bindings are theirs, left alone.
    assert put_json(a, "/api/definitions", api(c, "/api/definitions"), method="POST") in (200, 201, 204)
    assert queues(a)["qc"]["node"] == "c" and queues(c)["qa"]["node"] == "a"
    ca.close()


def test_quick_changes_leave_nothing_behind_in_etcd(node_factory, etcd):
    a, b = two_nodes(node_factory)
    ca, cha = channel(a)
    # Each round's bindings may still be on their way to etcd when their exchange and queue go: they go too.
    for i in range(5):
        cha.exchange_declare("brief", "direct")
        cha.queue_declare("brief_q", durable=True)
        cha.queue_bind("brief_q", "brief", "k")
        cha.exchange_bind(destination="brief", source="amq.direct", routing_key="k")
        cha.queue_delete("brief_q")
        cha.exchange_delete("brief")
    wait_for(lambda: etcd_keys(etcd, "/warren/c1/definitions/%2F/") == {}, 5)
    time.sleep(0.3)
    assert etcd_keys(etcd, "/warren/c1/definitions/%2F/") == {}
    assert "brief" not in exchanges(b) and "brief_q" not in queues(b)
    assert not [x for x in api(b, "/api/bindings/%2F") if "brief" in (x["source"], x["destination"])]
    ca.close()


def test_conflicting_declares_settle_on_etcds_version(node_factory, etcd):
    """Two nodes declare one name differently while etcd is away (each node answers its client at once); when
    etcd is back, each writes what etcd lacks, create-if-absent: the first write wins, the other node adopts it."""
    a, b = two_nodes(node_factory)
    ca, cha = channel(a)
    cb, chb = channel(b)
    etcd.stop()
    cha.exchange_declare("clash", "fanout")
    chb.exchange_declare("clash", "direct")
    assert exchanges(a)["clash"]["type"] == "fanout" and exchanges(b)["clash"]["type"] == "direct"
    etcd.start()

    def settled():
        kept = etcd_keys(etcd, "/warren/c1/definitions/%2F/exchanges/").get("clash")
        ta, tb = exchanges(a).get("clash", {}).get("type"), exchanges(b).get("clash", {}).get("type")
        return kept and ta == tb == kept["type"] and kept["type"]

    winner = wait_for(settled, 10)
    loser = b if winner == "fanout" else a
    assert "differs from etcd's" in loser.stderr_path.read_text() + loser.stdout_path.read_text()
    time.sleep(0.3)
    assert settled() == winner


def test_a_queue_declared_on_two_nodes_is_recorded_for_the_first(node_factory, etcd):
    """The same for a queue: the first record in etcd names its node; the other node keeps its own queue (it may
    hold messages), unrecorded, and says so."""
    a, b = two_nodes(node_factory)
    ca, cha = channel(a)
    cb, chb = channel(b)
    etcd.stop()
    cha.queue_declare("twice", durable=True)
    chb.queue_declare("twice", durable=True)
    etcd.start()
    owner = wait_for(lambda: etcd_keys(etcd, "/warren/c1/definitions/%2F/queues/").get("twice", {}).get("node"), 10)
    loser = b if owner == "a" else a
    wait_for(lambda: "exists here and on node" in loser.stderr_path.read_text() + loser.stdout_path.read_text(), 5)
    # Each node has its own queue; the owner's record is the cluster's.
    assert queues(a if owner == "a" else b)["twice"]["node"] == owner
    loser_name = "b" if owner == "a" else "a"
    # The loser lists both: its own queue, and the owner's record.
    assert sorted(q["node"] for q in api(loser, "/api/queues/%2F") if q["name"] == "twice") == sorted([loser_name, owner])
