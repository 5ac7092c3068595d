"""Nodes on several machines (docs/cluster.md, "Nodes on several machines"): a node bound to every address reaches
another at the address that one advertises (--advertise-address), published with its lease. Each node and the etcd
member run in a network namespace of their own on a bridge (tests/support/netns.py), as separate machines would:
127.0.0.1 in one namespace is not the other node. Real etcd, real Warren nodes, pika."""

import base64
import json
import shutil
import threading
import time
import urllib.request

import pika
import pytest

from support import netns
from support.etcd_process import EtcdProcess
from support.warren_process import WarrenError, WarrenProcess

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd (Debian's etcd-server) not installed")


@pytest.fixture(scope="module")
def lab():
    yield from netns.lab_for_tests(["e1", "n1", "n2"])


@pytest.fixture
def start(lab):
    """start(host, advertise=True) starts a node of cluster "adv" in the host's namespace, bound to every address;
    with advertise, --advertise-address is the namespace's address. An etcd member is started in e1 first."""
    etcd = EtcdProcess(name="e1", host=lab.ip("e1"), client_port=2379, peer_port=2380,
                       initial_cluster=f"e1=http://{lab.ip('e1')}:2380", prefix=lab.prefix("e1")).launch()
    etcd.wait_healthy(15)
    nodes = []

    def make(host, advertise=True):
        args = ["--node-name", host, "--cluster-name", "adv", "--etcd-endpoints", etcd.endpoint,
                "--etcd-lease-ttl", "3", "--bind", "0.0.0.0",
                # guest from the test process, which reaches the node through the bridge
                "--loopback-networks", f"127.0.0.0/8,{lab.gateway}/32"]
        if advertise:
            args += ["--advertise-address", lab.ip(host)]
        node = WarrenProcess(args, workers=1, prefix=lab.prefix(host))
        node.ip = lab.ip(host)
        nodes.append(node)
        return node.start()

    yield make
    for n in nodes:
        n.stop(check=False)
        n.cleanup()
    etcd.cleanup()


def api(node, path):
    req = urllib.request.Request(f"http://{node.ip}:{node.http_port}{path}")
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    with urllib.request.urlopen(req, timeout=3) as r:
        return json.loads(r.read())


def wait_for(fn, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return
        time.sleep(step)
    raise AssertionError(f"not reached in {timeout} s")


def connect(node):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host=node.ip, port=node.amqp_port, connection_attempts=1, socket_timeout=3, blocked_connection_timeout=3))


def both_running(a, b):
    return lambda: {n["name"]: n["running"] for n in api(b, "/api/nodes")} == {"n1": True, "n2": True}


def test_nodes_bound_to_every_address_reach_each_other_at_their_advertised_addresses(start):
    n1, n2 = start("n1"), start("n2")
    wait_for(both_running(n1, n2), 10)
    ch1 = connect(n1).channel()
    ch1.queue_declare("adv-q")
    wait_for(lambda: any(q["name"] == "adv-q" for q in api(n2, "/api/queues/%2F")), 5)
    # A publish on n2 to n1's queue goes over the link n2 opens to n1's advertised address, and is confirmed once
    # n1 stored it.
    ch2 = connect(n2).channel()
    ch2.confirm_delivery()
    for i in range(20):
        ch2.basic_publish("", "adv-q", f"m{i}".encode(), mandatory=True)
    got = []
    deadline = time.monotonic() + 5
    while len(got) < 20 and time.monotonic() < deadline:
        m = ch1.basic_get("adv-q", auto_ack=True)
        if m[0] is None:
            time.sleep(0.02)
        else:
            got.append(m[2].decode())
    assert got == [f"m{i}" for i in range(20)]
    # A consumer on n2 of n1's queue is served by n1 over a connection to the same address.
    ch1.basic_publish("", "adv-q", b"for n2's consumer")
    m = None
    deadline = time.monotonic() + 5
    while m is None and time.monotonic() < deadline:
        m = ch2.basic_get("adv-q", auto_ack=True)[2]
        if m is None:
            time.sleep(0.02)
    assert m == b"for n2's consumer"
    # What the nodes published: the advertised address, and no warning about the loopback.
    assert "--advertise-address" not in n1.log_tail(200)


def test_a_node_bound_to_every_address_without_an_advertised_address_warns_and_is_not_reached(start):
    n1 = start("n1", advertise=False)
    n2 = start("n2")
    wait_for(both_running(n1, n2), 10)
    assert "without --advertise-address" in n1.log_tail(200)
    connect(n1).channel().queue_declare("adv-unreached")
    wait_for(lambda: any(q["name"] == "adv-unreached" for q in api(n2, "/api/queues/%2F")), 5)
    # n2 looks for n1 on 127.0.0.1, its own loopback: the publish is never confirmed (a nack, or no answer).
    ch2 = connect(n2).channel()
    ch2.confirm_delivery()
    outcome = {}

    def publish():
        try:
            ch2.basic_publish("", "adv-unreached", b"x", mandatory=True)
            outcome["r"] = "ack"
        except pika.exceptions.NackError:
            outcome["r"] = "nack"
        except Exception as e:  # the connection closed at teardown while waiting
            outcome["r"] = f"error {e!r}"

    t = threading.Thread(target=publish, daemon=True)
    t.start()
    t.join(8)
    assert outcome.get("r") != "ack"


def test_advertise_address_needs_a_cluster_and_a_host():
    for args, text in ((["--advertise-address", "10.0.0.7"], "only in a cluster"),
                       (["--etcd-endpoints", "http://127.0.0.1:1", "--advertise-address", "http://x"],
                        "a host name or an IP address")):
        p = WarrenProcess(args)
        with pytest.raises(WarrenError, match="exited with 2"):
            p.start(timeout=5)
        assert text in p.log_tail(20)
        p.cleanup()
