"""What a cluster operator fears, on real processes: Warren nodes and etcd members each in their own network
namespace on a bridge (tests/support/netns.py), links cut with iptables DROP (silent, as a cable pulled), processes
killed with SIGKILL or stopped with SIGSTOP. Every test stops by itself within seconds; leases are 2 s.

  a. a node cut from etcd fences within its TTL (clients closed and refused with 320, /api/nodes says fenced),
     the others serve on and list it not running; the cut healed, it serves again without a restart;
  b. a 3-member etcd that loses its leader (cut off): no node fences, and every node still sees changes; that
     loses two: every node fences; quorum back: every node serves again; a node that reaches only one member of
     three serves on;
  c. a node killed with SIGKILL is listed not running after its TTL, and rejoins when started again;
  d. an asymmetric cut (etcd's answers lost, the node's requests arriving), and a node paused (SIGSTOP) longer than
     its lease;
  e. under load (publishers with confirms, consumers, durable queues on two nodes with their clients there, and one
     on n1 with its publishers on n2 and its consumer on n3; tests/support/delivery_checker.py counts confirmed
     messages lost, unexpected, duplicated with and without the redelivered flag, out of order): kill -9 and back,
     a pause longer than the lease, a cut from etcd, a cut from everything, nodes cut from each other while etcd
     stays reachable (links and consumers' connections given up within the TTL, back on healing), etcd's leader
     killed: 0 lost, 0 unexpected, 0 unflagged duplicates, order kept, and the away node's queue served by nobody;
     and a node started with WARREN_TEST_UNSAFE_CONFIRM=1 (confirms before it writes) is caught losing confirmed
     messages, with its clients on it and on the other nodes.

The figures (time to fence after a cut, to be listed not running, to serve again after healing) are printed at the
end of each test (pytest -rP shows them; docs/cluster.md records them). Skipped where namespaces cannot be made."""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pika
import pytest

from support import amqp_raw, delivery_checker, netns
from support.etcd_process import EtcdProcess
from support.warren_process import WarrenProcess

TTL = 2
CLUSTER = "f"
ETCD_HOSTS = ["e1", "e2", "e3"]
NODE_HOSTS = ["n1", "n2", "n3"]

# pika logs every refused connection at ERROR; the tests check the refusals themselves.
logging.getLogger("pika").setLevel(logging.CRITICAL)

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd (Debian's etcd-server) not installed")


@pytest.fixture(scope="module")
def lab():
    yield from netns.lab_for_tests(ETCD_HOSTS + NODE_HOSTS)


class Cluster:
    """The etcd members and Warren nodes of one test, in the lab's namespaces; stop() ends them all."""

    def __init__(self, lab: netns.Lab):
        self.lab = lab
        self.etcd: dict[str, EtcdProcess] = {}
        self.nodes: dict[str, WarrenProcess] = {}
        self.figures: dict[str, float | str] = {}
        self.ttl = TTL
        self.env: dict[str, dict[str, str]] = {}  # more environment variables for a node, by host

    def start_etcd(self, hosts: list[str]) -> None:
        initial = ",".join(f"{h}=http://{self.lab.ip(h)}:2380" for h in hosts)
        extra = [
            # The lease checkpoint keeps a lease's remaining TTL across a change of leader (docs/cluster.md); with
            # it, Debian's etcd 3.4 needs --logger zap (its default logger crashes on the flag's warning).
            "--experimental-enable-lease-checkpoint", "--experimental-enable-lease-checkpoint-persist",
            "--logger", "zap",
            # A new leader 0.4 to 0.9 s after losing one (etcd's defaults, 100 ms and 1 s, take up to 2 s and
            # more: docs/cluster.md, "Choosing the TTL and etcd's flags").
            "--heartbeat-interval", "50", "--election-timeout", "400",
            # A member cut off and back must not depose the leader with the terms it counted alone (etcd 3.4
            # leaves pre-vote off; without it, healing the cut member below cost a second election, which
            # fenced nodes).
            "--pre-vote"]
        for h in hosts:
            self.etcd[h] = EtcdProcess(name=h, host=self.lab.ip(h), client_port=2379, peer_port=2380,
                                       initial_cluster=initial, prefix=self.lab.prefix(h), extra=extra).launch()
        for h in hosts:
            self.etcd[h].wait_healthy(15)

    def etcd_leader(self) -> str:
        """The host of the etcd member that leads now."""
        ids = {}
        leader = None
        for h, e in self.etcd.items():
            st = e.call("/v3/maintenance/status", {})
            ids[st["header"]["member_id"]] = h
            leader = st.get("leader", leader)
        return ids[leader]

    def endpoints(self, first: int = 0) -> str:
        eps = [e.endpoint for e in self.etcd.values()]
        eps = eps[first:] + eps[:first]  # each node starts on another member
        return ",".join(eps)

    def start_node(self, host: str, first_endpoint: int = 0, ttl: int = TTL) -> WarrenProcess:
        ip = self.lab.ip(host)
        node = WarrenProcess(["--node-name", host, "--cluster-name", CLUSTER, "--etcd-endpoints",
                              self.endpoints(first_endpoint), "--etcd-lease-ttl", str(ttl), "--bind", ip,
                              # guest from the test process, which reaches the node through the bridge
                              "--loopback-networks", f"127.0.0.0/8,{self.lab.gateway}/32"],
                             workers=1, prefix=self.lab.prefix(host), env=self.env.get(host))
        node.ip = ip
        self.nodes[host] = node
        node.start()
        return node

    def start_nodes(self, spread: bool = False, ttl: int = TTL) -> list[WarrenProcess]:
        self.ttl = ttl
        out = [self.start_node(h, i if spread else 0, ttl) for i, h in enumerate(NODE_HOSTS)]
        everyone = {h: True for h in NODE_HOSTS}
        for n in out:
            wait_for(lambda n=n: running(n) == everyone, 10)
        return out

    def stop(self, failed: bool) -> list[str]:
        problems = []
        self.lab.heal()
        for n in self.nodes.values():
            try:
                if n.alive():
                    n.send_signal(signal.SIGCONT)  # in case a test stopped it and failed
                n.stop()
            except AssertionError as e:
                problems.append(str(e))
        for e in self.etcd.values():
            if failed or problems:
                print(f"--- etcd {e.name} ({e.tmp}) ---\n{e.log_tail()}")
            e.cleanup()
        for n in self.nodes.values():
            if failed or problems:
                print(f"--- node kept: {n.tmp}\n{n.log_tail(60)}")
            else:
                n.cleanup()
        return problems

    def report(self, title: str) -> None:
        print(f"\n{title} (lease TTL {self.ttl} s):")
        for k, v in self.figures.items():
            print(f"  {k}: {v:.2f} s" if isinstance(v, float) else f"  {k}: {v}")


@pytest.fixture
def cluster(lab, request):
    c = Cluster(lab)
    yield c
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    problems = c.stop(failed)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


# --- helpers ------------------------------------------------------------------------------------------------------


def wait_for(fn, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except (OSError, ValueError) as e:  # a node busy fencing or rejoining
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(step)
    raise AssertionError(f"not true within {timeout} s (last: {last!r})")


def api(node, path):
    req = urllib.request.Request(f"http://{node.ip}:{node.http_port}{path}")
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    with urllib.request.urlopen(req, timeout=3) as r:
        return json.loads(r.read())


def put_json(node, path, body):
    req = urllib.request.Request(f"http://{node.ip}:{node.http_port}{path}", method="PUT",
                                 data=json.dumps(body).encode())
    req.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=3) as r:
        return r.status


def running(node):
    return {n["name"]: n["running"] for n in api(node, "/api/nodes")}


def state(node):
    me = api(node, f"/api/nodes/{node.args[node.args.index('--node-name') + 1]}")
    return me["warren_cluster_state"], me.get("warren_fenced_reason", "")


def connect(node, user="guest", password="guest"):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host=node.ip, port=node.amqp_port, connection_attempts=1, socket_timeout=3, blocked_connection_timeout=3,
        heartbeat=0, credentials=pika.PlainCredentials(user, password)))


def refusal(node, user="guest", password="guest"):
    """None if the node accepts an AMQP connection now, else why not."""
    try:
        connect(node, user, password).close()
        return None
    except pika.exceptions.AMQPError as e:
        return repr(e) or type(e).__name__


def serves(node) -> bool:
    """A full round trip on the node: declare, publish, get."""
    conn = connect(node)
    try:
        ch = conn.channel()
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.basic_publish("", q, b"ping")
        for _ in range(50):
            method, _props, body = ch.basic_get(q, auto_ack=True)
            if method:
                return body == b"ping"
            time.sleep(0.01)
        return False
    finally:
        conn.close()


def wait_closed_by_broker(conn, timeout):
    """Pumps `conn` until the broker closes it; returns the close exception."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn.process_data_events(time_limit=0.05)
        except pika.exceptions.ConnectionClosedByBroker as e:
            return e
    raise AssertionError(f"connection not closed by the broker within {timeout} s")


def still_open(conn, seconds):
    """True if `conn` stays open, its heartbeat-less socket pumped, for `seconds`."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        conn.process_data_events(time_limit=0.05)
    return conn.is_open


# --- a. a node cut from etcd --------------------------------------------------------------------------------------


def test_node_cut_from_etcd_fences_and_rejoins_when_healed(cluster, lab):
    cluster.start_etcd(["e1"])
    n1, n2, n3 = cluster.start_nodes()
    c1, c2 = connect(n1), connect(n2)
    pid = n1.pid

    lab.cut("n1", "e1")
    cut = time.monotonic()
    # n1's client is closed with 320 and the reason, before its lease can expire in etcd.
    e = wait_closed_by_broker(c1, TTL + 2)
    cluster.figures["cut -> n1 closes its clients (320)"] = fenced = time.monotonic() - cut
    assert e.reply_code == 320, e
    assert "node 'n1' of cluster 'f' is fenced" in e.reply_text and "etcd unreachable" in e.reply_text
    assert fenced < TTL, fenced
    st, why = state(n1)
    assert st == "fenced" and "etcd unreachable" in why
    assert "is fenced" in (refusal(n1) or "accepted")
    with urllib.request.urlopen(f"http://{n1.ip}:{n1.prometheus_port}/metrics", timeout=3) as r:
        assert 'warren_cluster_node_fenced{rabbitmq_node="n1"} 1' in r.read().decode()
    # The others lose n1 once its lease expires in etcd; they never stop serving.
    wait_for(lambda: running(n2) == {"n1": False, "n2": True, "n3": True}, TTL + 3)
    cluster.figures["cut -> n2 lists n1 not running"] = gone = time.monotonic() - cut
    # The point of fencing: n1 had stopped serving before etcd let its name go.
    assert fenced < gone
    wait_for(lambda: running(n3)["n1"] is False, 2)
    assert still_open(c2, 0.2) and serves(n2) and serves(n3)
    assert state(n2) == ("serving", "")
    # A change made meanwhile (a user created on n2) is not lost to n1.
    put_json(n2, "/api/users/during", {"password": "pw", "tags": ""})
    put_json(n2, "/api/permissions/%2F/during", {"configure": "", "write": "", "read": ".*"})

    lab.heal()
    healed = time.monotonic()
    wait_for(lambda: refusal(n1) is None, TTL + 5)
    cluster.figures["heal -> n1 accepts clients again"] = time.monotonic() - healed
    assert n1.alive() and n1.pid == pid  # no restart
    assert serves(n1)
    wait_for(lambda: running(n2)["n1"] is True and running(n1) == {"n1": True, "n2": True, "n3": True}, 5)
    cluster.figures["heal -> n2 lists n1 running"] = time.monotonic() - healed
    wait_for(lambda: refusal(n1, "during", "pw") is None, 5)
    cluster.figures["heal -> n1 knows the user created during the cut"] = time.monotonic() - healed
    c2.close()
    cluster.report("a node cut from etcd")


# --- b. a 3-member etcd losing members ----------------------------------------------------------------------------


def test_etcd_losing_one_member_is_harmless_losing_two_fences_every_node(cluster, lab):
    cluster.start_etcd(ETCD_HOSTS)
    # n1 talks to e1 first, n2 to e2, n3 to e3. Leases of 3 s: a node must renew its lease within TTL - TTL/3
    # (the renewal interval) - TTL/5 (the margin) of the last renewal, and losing etcd's leader leaves no renewal
    # possible until the others have elected another (0.4 to 0.9 s with these etcd flags); 2 s leases leave
    # 0.93 s, which an election sometimes takes (docs/cluster.md, "Choosing the TTL and etcd's flags").
    ttl = 3
    nodes = cluster.start_nodes(spread=True, ttl=ttl)
    n1, n2, n3 = nodes
    conns = [connect(n) for n in nodes]

    # The leading member cut off from everyone (the other members and the nodes): a majority remains, which
    # elects another leader; meanwhile no lease can be renewed.
    leader = cluster.etcd_leader()
    lab.isolate(leader)
    cut = time.monotonic()
    end = cut + 2 * ttl + 0.5
    while time.monotonic() < end:
        for n, c in zip(nodes, conns):
            assert c.is_open
            c.process_data_events(time_limit=0.02)
        assert all(state(n)[0] == "serving" for n in nodes)
    assert all(serves(n) for n in nodes)
    assert all(running(n) == {"n1": True, "n2": True, "n3": True} for n in nodes)
    # Every node still sees what changes, the one whose watches were on the cut member too.
    put_json(n2, "/api/users/during", {"password": "pw", "tags": ""})
    put_json(n2, "/api/permissions/%2F/during", {"configure": "", "write": "", "read": ".*"})
    t = time.monotonic()
    for n in nodes:
        wait_for(lambda n=n: refusal(n, "during", "pw") is None, 2 * ttl + 2)
    cluster.figures["one member cut: a user made on n2 reaches every node"] = time.monotonic() - t

    # A second member killed: no quorum. Every node fences.
    second = next(h for h in ETCD_HOSTS if h != leader)
    cluster.etcd[second].stop()
    lost = time.monotonic()
    for c in conns:
        e = wait_closed_by_broker(c, ttl + 3)
        assert e.reply_code == 320 and "is fenced" in e.reply_text, e
    cluster.figures["quorum lost -> every node has closed its clients"] = time.monotonic() - lost
    for n in nodes:
        assert state(n)[0] == "fenced"
        assert "is fenced" in (refusal(n) or "accepted")

    # Quorum back (the killed member restarted on its data): every node serves again, no restart.
    cluster.etcd[second].launch()
    back = time.monotonic()
    for n in nodes:
        wait_for(lambda n=n: refusal(n) is None, 15)
    cluster.figures["member restarted -> every node serves again"] = time.monotonic() - back
    assert all(serves(n) for n in nodes)
    for n in nodes:
        wait_for(lambda n=n: running(n) == {"n1": True, "n2": True, "n3": True}, 5)
    # The cut member comes back too, and nothing is fenced.
    lab.heal()
    cluster.etcd[leader].wait_healthy(10)
    assert all(state(n)[0] == "serving" for n in nodes)
    cluster.report("a 3-member etcd losing members")


def test_node_reaching_one_member_of_three_serves_on(cluster, lab):
    """n1 cut from two of the three members (silent, not refused): its renewals and its reads must go through the
    third, in time for 2 s leases, and it must keep seeing changes."""
    cluster.start_etcd(ETCD_HOSTS)
    n1, n2, n3 = cluster.start_nodes()  # every node tries e1 first
    c1 = connect(n1)
    lab.cut("n1", "e1")
    lab.cut("n1", "e2")
    end = time.monotonic() + 2 * TTL + 0.5
    while time.monotonic() < end:
        assert c1.is_open
        c1.process_data_events(time_limit=0.05)
        assert state(n1)[0] == "serving"
    assert serves(n1)
    put_json(n2, "/api/users/during", {"password": "pw", "tags": ""})
    put_json(n2, "/api/permissions/%2F/during", {"configure": "", "write": "", "read": ".*"})
    t = time.monotonic()
    wait_for(lambda: refusal(n1, "during", "pw") is None, 2 * TTL + 2)
    cluster.figures["cut from 2 of 3 members: a user made on n2 reaches n1"] = time.monotonic() - t
    # And the others see n1 running all along.
    assert running(n2)["n1"] is True and running(n1) == {"n1": True, "n2": True, "n3": True}
    c1.close()
    cluster.report("a node reaching one etcd member of three")


# --- c. a node killed -----------------------------------------------------------------------------------------------


def test_killed_node_is_listed_not_running_and_rejoins(cluster):
    cluster.start_etcd(["e1"])
    n1, n2, n3 = cluster.start_nodes()
    n3.kill9()
    killed = time.monotonic()
    assert running(n1)["n3"] is True  # its lease still runs
    wait_for(lambda: running(n1)["n3"] is False and running(n2)["n3"] is False, TTL + 3)
    cluster.figures["kill -9 -> others list n3 not running"] = seen = time.monotonic() - killed
    assert seen >= TTL - 0.5, seen
    assert serves(n1) and serves(n2)
    # Started again under its name, on its data: it may take the name (the old lease is gone).
    started = time.monotonic()
    n3.start()
    wait_for(lambda: refusal(n3) is None, 5)
    wait_for(lambda: running(n1) == {"n1": True, "n2": True, "n3": True}, 5)
    cluster.figures["restart -> others list n3 running"] = time.monotonic() - started
    assert serves(n3)
    # Killed and started again at once, as a supervisor does: its old lease still holds the name for up to a TTL.
    # The new process must not take it for another live node and exit: it waits, fenced, and joins when the old
    # lease expires.
    n3.kill9()
    killed = time.monotonic()
    n3.start()
    wait_for(lambda: refusal(n3) is None, TTL + 5)
    cluster.figures["kill -9 and start at once -> n3 serves"] = time.monotonic() - killed
    assert n3.alive()
    wait_for(lambda: running(n1) == {"n1": True, "n2": True, "n3": True}, 5)
    cluster.report("a node killed and started again")


# --- d. an asymmetric cut; a node paused ----------------------------------------------------------------------------


def test_asymmetric_cut_node_hears_nothing_from_etcd(cluster, lab):
    """etcd's answers to n1 are lost, n1's requests still arrive: etcd may renew the lease, but n1 cannot know it,
    so it must fence; the others must see it go, and it must rejoin when the link is whole."""
    cluster.start_etcd(["e1"])
    n1, n2, n3 = cluster.start_nodes()
    c1 = connect(n1)
    lab.cut("e1", "n1", both=False)
    cut = time.monotonic()
    e = wait_closed_by_broker(c1, TTL + 2)
    cluster.figures["one-way cut -> n1 closes its clients"] = fenced = time.monotonic() - cut
    assert e.reply_code == 320
    wait_for(lambda: running(n2)["n1"] is False, TTL + 4)
    cluster.figures["one-way cut -> n2 lists n1 not running"] = gone = time.monotonic() - cut
    assert fenced < gone
    # n1 keeps knocking (its requests arrive), yet is never listed running while it cannot hear etcd.
    end = time.monotonic() + TTL
    while time.monotonic() < end:
        assert running(n2)["n1"] is False
        assert state(n1)[0] == "fenced"
        time.sleep(0.1)
    lab.heal()
    healed = time.monotonic()
    wait_for(lambda: refusal(n1) is None, TTL + 5)
    cluster.figures["heal -> n1 accepts clients again"] = time.monotonic() - healed
    wait_for(lambda: running(n2)["n1"] is True, 5)
    cluster.report("an asymmetric cut")


def test_node_paused_longer_than_its_lease_fences_on_waking(cluster):
    cluster.start_etcd(["e1"])
    n1, n2, n3 = cluster.start_nodes()
    c1 = connect(n1)
    raw = amqp_raw.RawClient(n1.amqp_port, host=n1.ip)
    raw.handshake()
    n1.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        wait_for(lambda: running(n2)["n1"] is False, TTL + 3)
        cluster.figures["SIGSTOP -> n2 lists n1 not running"] = time.monotonic() - stopped
        time.sleep(0.5)
        # A request sent while n1 sleeps, past its lease: served on waking, or refused?
        raw.send_method(2, amqp_raw.CHANNEL_OPEN, amqp_raw.channel_open_args())
    finally:
        n1.send_signal(signal.SIGCONT)
    woke = time.monotonic()
    # On waking, n1 finds its deadline passed and closes its clients.
    e = wait_closed_by_broker(c1, 3)
    cluster.figures["SIGCONT -> n1 closes its clients"] = time.monotonic() - woke
    assert e.reply_code == 320 and "is fenced" in e.reply_text
    # The request that waited in the socket must not be served: the worker compares its lease's deadline with the
    # time it reads input, so it refuses before the cluster thread has even noticed (docs/cluster.md, "Fencing").
    first = raw.read_method(timeout=3)
    assert first.method == amqp_raw.CONNECTION_CLOSE, first.name
    code, text = first.args["reply_code"], first.args["reply_text"]
    assert code == amqp_raw.CONNECTION_FORCED and "fenced" in text, (code, text)
    cluster.figures["a request sent during the pause, on waking"] = f"refused: {code} {text}"
    raw.close()
    wait_for(lambda: refusal(n1) is None, TTL + 5)
    cluster.figures["SIGCONT -> n1 accepts clients again"] = time.monotonic() - woke
    wait_for(lambda: running(n2)["n1"] is True, 5)
    cluster.report("a node paused longer than its lease")


# --- e. under load: what the faults cost in messages ----------------------------------------------------------------
# Publishers with confirms and consumers on durable queues (tests/support/delivery_checker.py counts): load.<host>
# on its node with its clients there, and across.n1 on n1 with its publishers on n2 (routed over n2's link to n1)
# and its consumer on n3 (served by n1 over n3's connection to it). Each scenario asserts 0 confirmed messages lost,
# 0 unexpected, per-publisher order kept, and no duplicate without the redelivered flag (the checker's rule:
# at-least-once allows a repeat only of a message handed out before and not known to be acknowledged, which the
# broker flags; after a crash Warren flags every message it recovers); duplicates are reported. While a queue's node is away, no other node serves
# the queue (its consume there is refused with 404, every node names the same home). WARREN_FAULT_LOAD_SECONDS
# stretches the load phases (bench/cluster_faults.sh runs the long versions).

LOAD_SECONDS = float(os.environ.get("WARREN_FAULT_LOAD_SECONDS", "1.0"))
ACROSS = "across.n1"  # on n1; published to on n2, consumed on n3


def queue_depth(node, queue):
    conn = connect(node)
    try:
        return conn.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        conn.close()


def knows(node, queue):
    """Whether `node` has `queue` (its own, or another node's it routes to)."""
    try:
        return queue_depth(node, queue) >= 0
    except pika.exceptions.ChannelClosedByBroker:
        return False


def start_load(cluster, nodes, consume=True, settle=0.0, across=False):
    """Durable queues load.<host> on each node (clients on that node), with `across` across.n1 too, and the load on
    them after `settle` seconds; returns (load, {queue: node})."""
    n1, n2, n3 = (cluster.nodes[h] for h in NODE_HOSTS)
    where, pub_on, cons_on = {}, {}, {}
    for n in nodes:
        host = n.args[n.args.index("--node-name") + 1]
        where[f"load.{host}"] = pub_on[f"load.{host}"] = cons_on[f"load.{host}"] = n
    if across:
        where[ACROSS], pub_on[ACROSS], cons_on[ACROSS] = n1, n2, n3
    for q, n in where.items():
        conn = connect(n)
        conn.channel().queue_declare(q, durable=True)
        conn.close()
    if across:  # n2 and n3 route to it and serve its consumer only once they know where it lives
        wait_for(lambda: knows(n2, ACROSS) and knows(n3, ACROSS), 5)
    time.sleep(settle)
    load = delivery_checker.Load({q: (lambda n=n: connect(n)) for q, n in pub_on.items()}, consume=consume,
                                 consumers_on={q: (lambda n=n: connect(n)) for q, n in cons_on.items()}).start()
    for q in where:
        load.wait_confirmed(q, 50, 10)
    return load, where


def finish_load(cluster, load, where, title):
    """Stops publishing, drains every queue, records the count and returns it."""
    time.sleep(LOAD_SECONDS / 2)
    load.stop_publishing()
    load.drain(lambda q: queue_depth(where[q], q), timeout=30 + 5 * LOAD_SECONDS)
    counts = load.count()
    for q, c in counts.items():
        cluster.figures[f"{q}"] = c.line()
    cluster.report(title)
    return counts


def assert_safe(counts):
    """0 lost, 0 unexpected, order kept, and no duplicate without the redelivered flag (the checker's rule above)."""
    for q, c in counts.items():
        assert not c.lost, f"{q}: confirmed messages lost: {c.lost[:10]} ({c.line()})"
        assert not c.unexpected, f"{q}: unexpected messages: {c.unexpected[:10]}"
        assert not c.order_broken, f"{q}: order broken: {c.order_broken[:10]}"
        assert not c.unflagged, f"{q}: delivered twice without the redelivered flag: {c.unflagged[:10]}"
        assert c.confirmed > 0


def refused(load, queue):
    return sum(len(p.refused) for p in load.publishers[queue])


def served_elsewhere(node, queue, methods=("declare", "consume")):
    """None if `node` refuses both to declare `queue` (durable, whose node is away) and to consume it, each with
    RabbitMQ's 404 (home node down or inaccessible), rather than making or serving a queue of its own; else what it
    did. (While the queue's node is listed running but unreachable each waits for the connection's deadline, 5 s.)"""
    for what in methods:
        conn = connect(node)
        try:
            ch = conn.channel()
            if what == "declare":
                ch.queue_declare(queue, durable=True)
            else:
                ch.basic_consume(queue, lambda *a: None)
            return f"{what}-ok"
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code != 404 or "is down or inaccessible" not in e.reply_text:
                return f"{what}: {e!r}"
        finally:
            close_quietly(conn)
    return None


def close_quietly(conn):
    delivery_checker.close_quietly(conn)


def assert_one_home(nodes, queue, home):
    """Every node that answers names `home` as the queue's node: no node takes it over."""
    for n in nodes:
        try:
            named = {q["name"]: q.get("node") for q in api(n, "/api/queues/%2F")}
        except (OSError, ValueError):  # paused or fenced: it answers nothing
            continue
        assert named.get(queue) in (home, None), f"{queue} named on {named.get(queue)} by a node"


def assert_not_served(load, queue, seconds):
    """Nothing confirmed on `queue` and nothing delivered from it for `seconds` (its node is away)."""
    c0, d0 = load.confirmed(queue), load.consumers[queue].count()
    time.sleep(seconds)
    assert load.confirmed(queue) == c0, f"{queue}: confirmed while its node was away"
    assert load.consumers[queue].count() == d0, f"{queue}: delivered while its node was away"


def delivers_again(load, queue, timeout):
    """Waits for a delivery from `queue` after now; returns how long it took."""
    c = load.consumers[queue]
    before, started = c.count(), time.monotonic()
    wait_for(lambda: c.count() > before, timeout)
    return time.monotonic() - started


def kill9_and_back(cluster, n1, load, label, while_down=None):
    """Under load for a while, n1 killed with SIGKILL, `while_down` run, n1 started again, and the load for a while
    more once n1's queue confirms again; the times go to the report."""
    time.sleep(LOAD_SECONDS)
    n1.kill9()
    killed = time.monotonic()
    if while_down:
        while_down()
    time.sleep(LOAD_SECONDS / 2)
    n1.start()
    started = time.monotonic()
    wait_for(lambda: refusal(n1) is None, TTL + 10)
    load.wait_confirmed("load.n1", 1, 15)
    cluster.figures[f"{label}started again -> confirms on n1's queue again"] = time.monotonic() - started
    cluster.figures[f"{label}kill -9 -> started again"] = started - killed
    cluster.figures[f"{label}kill -9 -> confirms on n1's queue again (failover, restart included)"] = \
        time.monotonic() - killed
    time.sleep(LOAD_SECONDS)


def test_under_load_kill9_and_back_loses_no_confirmed_message(cluster):
    cluster.start_etcd(["e1"])
    n1, n2, n3 = cluster.start_nodes()
    load, where = start_load(cluster, [n1, n2])
    def n2_goes_on():  # n2's queue is not held up by n1's death
        cluster.figures["n1 killed: 100 confirms on n2's queue in"] = load.wait_confirmed("load.n2", 100, 10)

    kill9_and_back(cluster, n1, load, "", while_down=n2_goes_on)
    assert_safe(finish_load(cluster, load, where, "kill -9 of a node under load, and back"))


def test_under_load_across_nodes_kill9_and_back_loses_no_confirmed_message(cluster):
    """The same with the clients away from the queue: n1's queue published to on n2 (routed there, sent over n2's
    link, confirmed once n1 stored it) and consumed on n3 (served by n1 over n3's connection to it). While n1 is
    down, n2 nacks and n3 cancels the consumer, which consumes again once n1 is back."""
    cluster.start_etcd(["e1"])
    n1, n2, n3 = cluster.start_nodes()
    conn = connect(n1)
    conn.channel().queue_declare("load.n1", durable=True)
    conn.close()
    wait_for(lambda: knows(n2, "load.n1") and knows(n3, "load.n1"), 5)
    where = {"load.n1": n1}
    load = delivery_checker.Load({"load.n1": lambda: connect(n2)},
                                 consumers_on={"load.n1": lambda: connect(n3)}).start()
    load.wait_confirmed("load.n1", 50, 10)
    consumer = load.consumers["load.n1"]
    kill9_and_back(cluster, n1, load, "across nodes: ")
    started = time.monotonic()
    wait_for(lambda: consumer.count() > 0 and time.monotonic() - consumer.last_delivery < 0.05, 15)
    cluster.figures["across nodes: confirms again -> n3's consumer delivers again"] = time.monotonic() - started
    cluster.figures["across nodes: n3's consumer cancelled and back (times)"] = consumer.failures
    counts = finish_load(cluster, load, where, "kill -9 of a queue's node, clients on the two other nodes")
    assert_safe(counts)
    assert consumer.failures >= 1, "n3's consumer was never cancelled or cut while n1 was down"


@pytest.mark.parametrize("clients", ["on its node", "across nodes"])
def test_checker_catches_an_unsafe_node(cluster, clients):
    """The same kill -9 with n1 confirming before it writes (WARREN_TEST_UNSAFE_CONFIRM=1): the checker must see
    confirmed messages lost, or it proves nothing; with the clients on n1, and with them on n2 (publishers, whose
    confirms n1's link answers) and n3 (the consumer). Up to 5 kills, since a kill may by chance find nothing
    unwritten."""
    cluster.env["n1"] = {"WARREN_TEST_UNSAFE_CONFIRM": "1"}
    cluster.start_etcd(["e1"])
    n1, n2, n3 = cluster.start_nodes()
    assert "WARREN_TEST_UNSAFE_CONFIRM=1" in n1.log_tail(200)
    # No consumer until the end: a message consumed before the writer's turn is never written, so its loss would
    # not show.
    # And 0.5 s before the load: this node writes every 200 ms, and the queue's declaration must be on disk.
    across = clients == "across nodes"
    load, where = start_load(cluster, [] if across else [n1], consume=False, settle=0.5, across=across)
    q = ACROSS if across else "load.n1"
    for kills in range(1, 6):
        load.wait_confirmed(q, 300, 15)
        n1.kill9()
        n1.start()
        wait_for(lambda: refusal(n1) is None, TTL + 10)
        load.wait_confirmed(q, 1, 15)
        # A loss is certain once the queue holds fewer messages than were confirmed (what is published after the
        # confirms were read can only add to the depth).
        confirmed = load.confirmed(q)
        if confirmed > queue_depth(n1, q):
            break
    cluster.figures["kills until a loss"] = kills
    counts = finish_load(cluster, load, where, f"the checker against a node that confirms before writing, "
                                               f"clients {clients}")
    assert counts[q].lost, "the checker saw no loss from a node that confirms before it writes"


def test_under_load_pause_and_partition_lose_no_confirmed_message(cluster, lab):
    """n1 paused (SIGSTOP) longer than its lease, then cut from etcd, then from everything (etcd and the other nodes),
    each time until it fences, under load and healed; n1's queues have their clients on n1 (load.n1) and on n2 and n3 (across.n1)."""
    cluster.start_etcd(["e1"])
    n1, n2, n3 = cluster.start_nodes()
    load, where = start_load(cluster, [n1, n2], across=True)
    across = load.consumers[ACROSS]
    time.sleep(LOAD_SECONDS)
    n1.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        # n3 gives up its connection to the silent n1 (heartbeats every TTL/2) and cancels the consumer it served
        # there; n2 nacks what it had sent over its link and every publish after.
        wait_for(lambda: across.cancels >= 1, 3 * TTL + 2)
        cluster.figures["SIGSTOP -> n3 cancels the consumer of n1's queue (basic.cancel)"] = \
            time.monotonic() - stopped
        nacked = refused(load, ACROSS)
        wait_for(lambda: refused(load, ACROSS) > nacked, 3 * TTL + 2)
        cluster.figures["SIGSTOP -> n2 nacks publishes to n1's queue"] = time.monotonic() - stopped
        wait_for(lambda: running(n2)["n1"] is False, TTL + 3)
        cluster.figures["SIGSTOP -> n2 lists n1 not running (lease expired)"] = time.monotonic() - stopped
        assert served_elsewhere(n3, ACROSS) is None and served_elsewhere(n2, "load.n1") is None
        assert_one_home([n2, n3], ACROSS, "n1")
        assert_not_served(load, ACROSS, 0.3)
        cluster.figures["n1 paused: 100 confirms on n2's queue in"] = load.wait_confirmed("load.n2", 100, 10)
    finally:
        n1.send_signal(signal.SIGCONT)
    woke = time.monotonic()
    load.wait_confirmed("load.n1", 1, TTL + 15)
    cluster.figures["SIGCONT -> confirms on n1's queue again"] = time.monotonic() - woke
    load.wait_confirmed(ACROSS, 1, TTL + 15)
    # What was published to n1's queues while n1 slept past its lease waited in sockets (or in n2's link, which
    # gave it up): on waking n1 must refuse it, not store and confirm it as if it still held its lease.
    for q in ("load.n1", ACROSS):
        late = load.confirmed_sent_between(q, stopped + 0.05, woke - 0.05)
        assert not late, f"{q}: published during the pause, yet confirmed: {late[:5]}"
        cluster.figures[f"SIGCONT: {q}: published during the pause and confirmed"] = len(late)
    cluster.figures["SIGCONT -> n2's publishes to n1's queue confirmed again (link back)"] = time.monotonic() - woke
    wait_for(lambda: across.count() > 0 and time.monotonic() - across.last_delivery < 0.1, TTL + 15)
    cluster.figures["SIGCONT -> n3's consumer of n1's queue delivers again"] = time.monotonic() - woke
    time.sleep(LOAD_SECONDS)

    for kind in ("from etcd", "from everything"):
        # Cut from etcd only, n1 still reaches n2 and n3 and they reach it: fenced, it must refuse what comes over
        # their links and the consumer's connection too. Cut from everything, they find it silent.
        if kind == "from etcd":
            lab.cut("n1", "e1")
        else:
            lab.isolate("n1")
        cut = time.monotonic()
        cancels = across.cancels
        wait_for(lambda: state(n1)[0] == "fenced", TTL + 3)
        fenced = time.monotonic()
        cluster.figures[f"n1 cut {kind} -> fenced"] = fenced - cut
        # Fenced, n1 serves nobody, and nobody else serves its queues (the test process still reaches n1).
        assert "is fenced" in (refusal(n1) or "accepted")
        wait_for(lambda: across.cancels > cancels, 3 * TTL + 2)
        cluster.figures[f"n1 cut {kind} -> n3 cancels the consumer of n1's queue"] = time.monotonic() - cut
        wait_for(lambda: running(n2)["n1"] is False and running(n3)["n1"] is False, TTL + 3)
        assert served_elsewhere(n3, ACROSS) is None and served_elsewhere(n2, "load.n1") is None
        assert_one_home([n1, n2, n3], ACROSS, "n1")
        assert_not_served(load, ACROSS, 0.3)
        cluster.figures[f"n1 cut {kind}: 100 confirms on n2's queue in"] = load.wait_confirmed("load.n2", 100, 10)
        time.sleep(LOAD_SECONDS / 2)
        healing = time.monotonic()  # lab.heal() takes a while, and n1 may serve again before it returns
        lab.heal()
        healed = time.monotonic()
        load.wait_confirmed("load.n1", 1, TTL + 15)
        cluster.figures[f"n1 cut {kind}, heal -> confirms on n1's queue again"] = time.monotonic() - healed
        for q in ("load.n1", ACROSS):  # nothing published while n1 was fenced was confirmed
            late = load.confirmed_sent_between(q, fenced, healing)
            assert not late, f"{q}: published while n1 was fenced, yet confirmed: {late[:5]}"
        load.wait_confirmed(ACROSS, 1, TTL + 15)
        cluster.figures[f"n1 cut {kind}, heal -> n2's publishes to n1's queue confirmed again"] = \
            time.monotonic() - healed
        wait_for(lambda: time.monotonic() - across.last_delivery < 0.1, TTL + 15)
        cluster.figures[f"n1 cut {kind}, heal -> n3's consumer of n1's queue delivers again"] = \
            time.monotonic() - healed
        time.sleep(LOAD_SECONDS)
    assert_safe(finish_load(cluster, load, where, "a node paused, cut from etcd, cut from everything, under load"))


# One-way cuts too in the long runs (bench/cluster_faults.sh): each adds ~12 s, and both ways is the case CI keeps.
NODE_CUTS = ["both ways"] + (["n1 unheard", "n1 deaf"] if os.environ.get("WARREN_FAULT_ALL_CUTS") else [])


@pytest.mark.parametrize("how", NODE_CUTS)
def test_under_load_nodes_cut_from_each_other_but_not_from_etcd(cluster, lab, how):
    """n1 cut from n2 and n3 (both ways, or one way: n1 unheard, n1 deaf), every node still reaching etcd: nobody fences, n1 serves its own clients,
    n2 nacks publishes to n1's queue (within about the TTL: its link's heartbeats), n3 cancels the consumer it served
    from n1 (basic.cancel), and a consume there is refused (404) until the cut heals; then the links come back
    without any client restarting (the publishers' connections to n2 stay open throughout), and nothing is lost.
    Definitions still travel through etcd."""
    cluster.start_etcd(["e1"])
    n1, n2, n3 = cluster.start_nodes()
    load, where = start_load(cluster, [n1], across=True)
    across = load.consumers[ACROSS]
    time.sleep(LOAD_SECONDS)
    for other in ("n2", "n3"):
        if how == "both ways":
            lab.cut("n1", other)
        elif how == "n1 unheard":  # what n1 sends them is lost, what they send arrives
            lab.cut("n1", other, both=False)
        else:  # n1 deaf: what they send n1 is lost
            lab.cut(other, "n1", both=False)
    cut = time.monotonic()
    nacked = refused(load, ACROSS)
    wait_for(lambda: refused(load, ACROSS) > nacked, 3 * TTL + 2)
    cluster.figures["cut -> n2 nacks publishes to n1's queue (its link given up)"] = time.monotonic() - cut
    wait_for(lambda: across.cancels >= 1, 3 * TTL + 2)
    cluster.figures["cut -> n3 cancels the consumer of n1's queue (basic.cancel)"] = time.monotonic() - cut
    assert served_elsewhere(n3, ACROSS, ("consume",)) is None
    assert_one_home([n1, n2, n3], ACROSS, "n1")
    assert_not_served(load, ACROSS, 0.3)
    # n1 is not fenced (it reaches etcd) and goes on serving its own clients; everyone is listed running.
    cluster.figures["cut: 100 confirms on n1's own queue in"] = load.wait_confirmed("load.n1", 100, 10)
    assert all(state(n)[0] == "serving" for n in (n1, n2, n3))
    assert all(running(n) == {"n1": True, "n2": True, "n3": True} for n in (n1, n2, n3))
    put_json(n2, "/api/users/across", {"password": "pw", "tags": ""})
    put_json(n2, "/api/permissions/%2F/across", {"configure": "", "write": "", "read": ".*"})
    wait_for(lambda: refusal(n1, "across", "pw") is None, 5)
    time.sleep(LOAD_SECONDS / 2)
    lab.heal()
    healed = time.monotonic()
    load.wait_confirmed(ACROSS, 1, 3 * TTL + 10)
    cluster.figures["heal -> n2's publishes to n1's queue confirmed again (link reconnected)"] = \
        time.monotonic() - healed
    wait_for(lambda: time.monotonic() - across.last_delivery < 0.1, 3 * TTL + 10)
    cluster.figures["heal -> n3's consumer of n1's queue delivers again"] = time.monotonic() - healed
    time.sleep(LOAD_SECONDS)
    counts = finish_load(cluster, load, where, f"nodes cut from each other ({how}), not from etcd, under load")
    assert_safe(counts)
    assert all(p.failures == 0 for p in load.publishers[ACROSS]), "a publisher's connection to n2 was lost"
    assert counts[ACROSS].refused > 0


def test_under_load_losing_an_etcd_member_costs_nothing(cluster):
    cluster.start_etcd(ETCD_HOSTS)
    # Leases of 3 s, as in test_etcd_losing_one_member_is_harmless_losing_two_fences_every_node: an election
    # can take longer than a 2 s lease leaves.
    n1, n2, n3 = cluster.start_nodes(spread=True, ttl=3)
    load, where = start_load(cluster, [n1, n2], across=True)
    time.sleep(LOAD_SECONDS)
    leader = cluster.etcd_leader()
    cluster.etcd[leader].stop()  # SIGKILL
    lost = time.monotonic()
    # Each queue's time to 100 more confirms, measured side by side.
    targets = {q: load.confirmed(q) + 100 for q in where}
    took = {}
    while len(took) < len(targets):
        assert time.monotonic() - lost < 10, f"100 confirms not seen within 10 s on {set(targets) - set(took)}"
        for q, t in targets.items():
            if q not in took and load.confirmed(q) >= t:
                took[q] = time.monotonic() - lost
        time.sleep(0.01)
    for q, t in took.items():
        cluster.figures[f"etcd leader killed: 100 confirms on {q} in"] = t
    cluster.figures["etcd leader killed: n3's consumer of n1's queue delivers in"] = \
        delivers_again(load, ACROSS, 10)
    time.sleep(3 + LOAD_SECONDS)  # a lease renewal or two through the new leader
    assert all(state(n)[0] != "fenced" for n in (n1, n2, n3))
    assert load.consumers[ACROSS].failures == 0, "n3's consumer of n1's queue was cut"
    assert_safe(finish_load(cluster, load, where, "the etcd leader killed under load"))


# --- the harness itself -----------------------------------------------------------------------------------------


def test_checker_counts_each_kind_of_fault():
    """The count itself, on deliveries made up here: each kind of fault is counted, and only it (the unsafe node
    above shows the checker sees a loss from a real broker; this shows it sees the rest)."""
    load = delivery_checker.Load({"q": None}, publishers=1)
    p, c = load.publishers["q"][0], load.consumers["q"]
    p.attempted, p.confirmed, p.refused = set(range(1, 9)), {1, 2, 3, 4, 5, 6}, {7}
    c.deliveries = [("q.p0", 1, False), ("q.p0", 3, False), ("q.p0", 2, False),  # 2 after 3: order broken
                    ("q.p0", 3, True),  # a redelivery: a legitimate duplicate
                    ("q.p0", 4, False), ("q.p0", 4, False),  # twice unflagged: stored twice, or two servers
                    ("q.p0", 7, False),  # nacked, yet stored: allowed (a nack means "perhaps not stored")
                    ("q.p0", 9, False), ("q.p1", 1, False)]  # never published
    c.other = [b"junk"]
    n = load.count()["q"]
    assert n.lost == ["q.p0:5", "q.p0:6"]
    assert n.unexpected == ["q.p0:9", "q.p1:1", "b'junk'"]
    assert n.order_broken == ["q.p0:2 after q.p0:3"]
    assert (n.duplicates, n.unflagged) == (2, ["q.p0:4"])
    assert (n.confirmed, n.attempted, n.refused, n.delivered) == (6, 8, 1, 10)


LAB_CHILD = """
import sys, time
sys.path.insert(0, {support!r})
from support import amqp_raw, delivery_checker, netns
lab = netns.Lab(["a", "b"]).up()
sleeper = lab.popen("a", ["sleep", "60"])
lab.cut("a", "b")
print(lab.tag, sleeper.pid, flush=True)
time.sleep(60)
"""


def lab_names(tag):
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return [n for n in names if n.startswith(tag + "-")] + [ln for ln in links.split() if ln.startswith(tag)]


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_harness_leaves_nothing_behind(lab, how):
    """A run interrupted (SIGTERM) removes its namespaces, links and processes itself; one killed (SIGKILL, when
    nothing can run) leaves them to the next Lab, which sweeps them."""
    code = LAB_CHILD.format(support=str(Path(__file__).resolve().parents[1]))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        tag, sleeper = child.stdout.readline().split()
        assert lab_names(tag), "the child's lab is not up"
        child.send_signal(getattr(signal, how))
        child.wait(10)
        if how == "SIGKILL":
            assert lab_names(tag)  # nothing could clean up
            removed = netns.sweep_stale()
            assert f"{tag}-a" in removed and f"{tag}-b" in removed
        assert lab_names(tag) == []
        time.sleep(0.1)
        assert not Path(f"/proc/{sleeper}").exists() or "zombie" in Path(f"/proc/{sleeper}/status").read_text()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
