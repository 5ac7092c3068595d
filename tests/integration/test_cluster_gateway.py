"""The web gateway across the nodes of a cluster (docs/cluster.md, "The web gateway across nodes"): users are spread
over the running nodes by a shard map of 256 slots in etcd; a send on any node (HTTP or AMQP) is handed to the
user's owner, which keeps the inbox; a browser on any node gets the owner's inbox (same numbers on every node),
resumes on another node without loss, and gets a reset when the owner goes. A real etcd and 2-3 real Warren nodes,
driven by browsers' transports (WebSocket, SSE), the HTTP API and pika."""

import base64
import json
import signal
import threading
import time
import urllib.request

import pika
import pytest

from support.web_gateway import Gateway, gateway_args
from test_cluster import TTL, api, etcd, running, wait_for  # noqa: F401 (fixtures)

SLOTS = 256


def fnv1a(name: str) -> int:
    """The slot hash (web/shard_map.hpp), computed independently here."""
    h = 2166136261
    for c in name.encode():
        h ^= c
        h = (h * 16777619) & 0xFFFFFFFF
    return h


def shard_map(etcd_endpoint: str, cluster: str = "c1"):
    """The map as etcd has it: (slots, version), or (None, 0)."""
    key = base64.b64encode(f"/warren/{cluster}/gateway/shards".encode()).decode()
    req = urllib.request.Request(f"{etcd_endpoint}/v3/kv/range", data=json.dumps({"key": key}).encode(),
                                 method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        kvs = json.loads(r.read()).get("kvs", [])
    if not kvs:
        return None, 0
    return json.loads(base64.b64decode(kvs[0]["value"]))["slots"], int(kvs[0]["version"])


def owner(slots, name):
    return slots[fnv1a(name) % SLOTS]


def user_owned_by(slots, node, prefix):
    for i in range(10000):
        if owner(slots, f"{prefix}{i}") == node:
            return f"{prefix}{i}"
    raise AssertionError(f"no user for node {node}")


def slot_counts(node):
    return {n["name"]: n.get("warren_gateway_slots") for n in api(node, "/api/nodes") if n["running"]}


@pytest.fixture
def nodes(etcd, warren_factory):
    """nodes(name) starts a node of cluster "c1" with a gateway, returning its Gateway."""

    def make(name, workers=1):
        proc = warren_factory(*gateway_args("--node-name", name, "--cluster-name", "c1", "--etcd-endpoints",
                                            etcd.endpoint, "--etcd-lease-ttl", str(TTL)), workers=workers)
        return Gateway(proc)

    return make


def balanced(etcd_endpoint, names):
    slots, _ = shard_map(etcd_endpoint)
    if not slots or set(slots) != set(names):
        return None
    counts = [slots.count(n) for n in names]
    return slots if max(counts) - min(counts) <= 1 else None


def amqp(gw):
    return pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=gw.proc.amqp_port,
                                                             connection_attempts=1, socket_timeout=5))


def test_shard_map_balanced_moves_few_and_is_shown(etcd, nodes):
    a, b = nodes("a"), nodes("b")
    wait_for(lambda: running(b.proc) == {"a": True, "b": True}, 5)
    two = wait_for(lambda: balanced(etcd.endpoint, ["a", "b"]), 5)
    # Every node shows the same map in /api/nodes.
    wait_for(lambda: slot_counts(a.proc) == {"a": 128, "b": 128} == slot_counts(b.proc), 5)
    c = nodes("c")
    three = wait_for(lambda: balanced(etcd.endpoint, ["a", "b", "c"]), 5)
    moved = sum(1 for i in range(SLOTS) if two[i] != three[i])
    assert moved == three.count("c") in (85, 86), moved  # only the slots c took moved
    wait_for(lambda: slot_counts(c.proc) == slot_counts(a.proc) and len(slot_counts(a.proc)) == 3, 5)
    # c stops: only its slots move, back to a and b.
    c.proc.stop()
    back = wait_for(lambda: balanced(etcd.endpoint, ["a", "b"]), 5)
    assert all(back[i] == three[i] for i in range(SLOTS) if three[i] != "c")
    _, version = shard_map(etcd.endpoint)
    time.sleep(0.5)
    assert shard_map(etcd.endpoint)[1] == version  # settled: nobody rewrites a balanced map


def two_balanced_nodes(etcd, nodes):
    """Nodes a and b running, the shard map balanced between them and seen by b; returns a, b and the map's
    slots."""
    a, b = nodes("a"), nodes("b")
    wait_for(lambda: running(b.proc) == {"a": True, "b": True}, 5)
    slots = wait_for(lambda: balanced(etcd.endpoint, ["a", "b"]), 5)
    wait_for(lambda: slot_counts(b.proc) == {"a": 128, "b": 128}, 5)
    return a, b, slots


def test_sends_on_another_node_reach_the_owner_once_in_order(etcd, nodes):
    a, b, slots = two_balanced_nodes(etcd, nodes)
    user = user_owned_by(slots, "a", "alice")
    ws = a.ws(user, since=0, attached=False)
    conn = amqp(b)
    ch = conn.channel()
    ch.confirm_delivery()
    n = 20
    for i in range(n):
        if i % 2 == 0:
            assert b.send(user, {"i": i}) is True  # HTTP on b: answered once a stored it
        else:
            ch.basic_publish("warren.users", user, json.dumps({"i": i}).encode(),
                             pika.BasicProperties(delivery_mode=2, content_type="application/json"))
    got = [ws.recv_json(5) for _ in range(n)]
    assert [e["data"]["i"] for e in got] == list(range(n)), got
    assert [e["seq"] - got[0]["seq"] for e in got] == list(range(n))
    with pytest.raises(Exception):
        ws.recv_json(0.5)  # once each
    # The inbox is a's: its API answers the same on either node, and a read position set on b is a's.
    page = a.ok("GET", f"/api/inbox/{user}")
    assert [e["data"]["i"] for e in page["events"]] == list(range(n))
    assert b.ok("GET", f"/api/inbox/{user}") == page
    assert b.ok("PUT", f"/api/inbox/{user}/read", {"seq": got[4]["seq"]}) == {"read_seq": got[4]["seq"],
                                                                               "unread": n - 5}
    assert a.ok("GET", f"/api/inbox/{user}?limit=1")["read_seq"] == got[4]["seq"]
    r = ws.request({"op": "read", "seq": got[9]["seq"]})
    assert r["type"] == "ok" and r["unread"] == n - 10, r
    assert b.api("PUT", "/api/inbox/nobody-here/read", {"seq": 1}).status == 404  # answered by its owner
    assert b.api("DELETE", f"/api/inbox/{user}").status == 204
    assert a.ok("GET", f"/api/inbox/{user}")["events"] == []
    conn.close()


def test_browsers_on_any_node_share_the_owners_inbox_and_resume_elsewhere(etcd, nodes):
    a, b, c = nodes("a"), nodes("b"), nodes("c")
    wait_for(lambda: running(c.proc) == {"a": True, "b": True, "c": True}, 5)
    slots = wait_for(lambda: balanced(etcd.endpoint, ["a", "b", "c"]), 5)
    wait_for(lambda: len(slot_counts(c.proc)) == 3 and slot_counts(b.proc) == slot_counts(c.proc), 5)
    user = user_owned_by(slots, "a", "bob")
    # Two tabs on c (one interest at a), one on a, one SSE on b.
    tabs = [c.ws(user, since=0, attached=False), c.ws(user, since=0, attached=False),
            a.ws(user, since=0, attached=False)]
    sse = b.sse(user, last_event_id=0, attached=False)
    assert sse.status == 200
    # One interest per node at the owner, however many tabs; presence counts the tabs, asked on any node.
    wait_for(lambda: a.presence(user)["connections"] == 4, 5)
    assert b.presence(user) == c.presence(user) == {"online": True, "connections": 4}
    for i in range(5):
        assert b.send(user, {"i": i}) is True
    seen = [[t.recv_json(5) for _ in range(5)] for t in tabs]
    seen.append([sse.next_event(5).json() for _ in range(5)])
    for s in seen:
        assert [e["data"]["i"] for e in s] == list(range(5)), s
        assert [e["seq"] for e in s] == [e["seq"] for e in seen[0]]  # one inbox: the owner's numbers
    last = seen[0][2]["seq"]
    tabs[1].close_socket()
    wait_for(lambda: c.presence(user)["connections"] == 3, 5)
    for t in tabs:
        t.close_socket()
    sse.close()
    # Sends while away, then a reconnect on another node from where the tab was.
    for i in range(5, 8):
        assert c.send(user, {"i": i}) is True
    again = b.ws(user, since=last, attached=False)
    resumed = [again.recv_json(5) for _ in range(5)]
    assert [e["data"]["i"] for e in resumed] == [3, 4, 5, 6, 7], resumed
    # A live event after the replay, to a tab on a non-owner node.
    a.send(user, {"i": 8})
    assert again.recv_json(5)["data"] == {"i": 8}
    again.close_socket()
    wait_for(lambda: a.presence(user)["connections"] == 0, 5)  # the interests went with the tabs


def test_owner_away_resets_tabs_and_sends_refused_until_the_map_moves(etcd, nodes):
    a, b, slots = two_balanced_nodes(etcd, nodes)
    user = user_owned_by(slots, "a", "carol")
    tab = b.ws(user, since=0, attached=False)
    assert b.send(user, "before") is True
    first = tab.recv_json(5)
    assert first["data"] == "before"
    a.proc.stop(signum=signal.SIGKILL, check=False)
    killed = time.monotonic()
    # Until a's lease lapses and the map moves, a send for a's user is not stored anywhere: 503, never a false 200.
    r = b.api("POST", "/api/send", {"user": user, "data": "during"})
    assert r.status == 503 and "did not store" in r.json()["reason"], r
    # The map moves to b; the tab gets a reset (the inbox that numbered its events is gone), then what follows.
    reset = tab.recv_json(3 * TTL + 5)
    moved_after = time.monotonic() - killed
    assert reset["type"] == "reset" and reset["data"]["after"] == first["seq"], reset
    assert balanced(etcd.endpoint, ["b"])
    assert b.send(user, "after") is True
    assert tab.recv_json(5)["data"] == "after"
    print(f"reset {moved_after:.2f} s after the owner was killed (lease TTL {TTL} s)")


def test_rooms_live_on_their_owner_with_members_on_any_node(etcd, nodes):
    a, b, c = nodes("a"), nodes("b"), nodes("c")
    wait_for(lambda: running(c.proc) == {"a": True, "b": True, "c": True}, 5)
    slots = wait_for(lambda: balanced(etcd.endpoint, ["a", "b", "c"]), 5)
    wait_for(lambda: len(slot_counts(c.proc)) == 3 and slot_counts(b.proc) == slot_counts(c.proc)
             == slot_counts(a.proc), 5)
    room = user_owned_by(slots, "a", "lobby")  # the room's owner is a
    dan, eve, fay = (user_owned_by(slots, "b", "dan"), user_owned_by(slots, "c", "eve"),
                     user_owned_by(slots, "b", "fay"))
    # dan (owned by b) joins from a tab on c; eve (owned by c) from a tab on a, over HTTP.
    t_dan = c.ws(dan, since=0, attached=False)
    assert t_dan.request({"op": "join", "room": room})["type"] == "ok"
    t_eve = a.ws(eve, since=0, attached=False)
    assert a.api("POST", f"/api/rooms/{room}/join", b"", bearer=a.token(eve)).status == 200
    assert t_dan.request({"op": "join", "room": room}).get("already") is True  # known at the room's node
    # A publish on b (backend HTTP) and one on c (AMQP): every member gets both, in order.
    assert b.ok("POST", f"/api/rooms/{room}/publish", {"data": "one", "from": "ci"}) == {"routed": True}
    conn = amqp(c)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("warren.rooms", room, b'"two"', pika.BasicProperties(delivery_mode=2, headers={"from": "ops"}))
    conn.close()
    for tab in (t_dan, t_eve):
        got = [tab.recv_json(5) for _ in range(2)]
        assert [(e["type"], e["room"], e["data"]) for e in got] == [("message", room, "one"),
                                                                       ("message", room, "two")], got
    # The members list, asked on any node, is the room's node's.
    r = t_dan.request({"op": "members", "room": room})
    assert r["type"] == "ok" and sorted(m["user"] for m in r["members"]) == sorted([dan, eve]), r
    doc = b.ok("GET", f"/api/rooms/{room}/members")
    assert sorted(m["user"] for m in doc["members"]) == sorted([dan, eve]), doc
    # A late joiner on b gets the room's history first.
    t_fay = b.ws(fay, since=0, attached=False)
    assert t_fay.request({"op": "join", "room": room})["type"] == "ok"
    hist = [t_fay.recv_json(5) for _ in range(2)]
    assert [(e["type"], e["data"]) for e in hist] == [("history", "one"), ("history", "two")], hist
    # Leaving from c is seen at the room's node; errors come from there too.
    assert t_dan.request({"op": "leave", "room": room})["type"] == "ok"
    r = t_dan.request({"op": "leave", "room": room})
    assert r["type"] == "error" and r["code"] == 404, r
    r = t_dan.request({"op": "members", "room": room})
    assert r["type"] == "error" and r["code"] == 403, r  # no longer a member
    nowhere = user_owned_by(slots, "b", "nowhere")
    assert c.api("GET", f"/api/rooms/{nowhere}/members").status == 404
    doc = c.ok("GET", f"/api/rooms/{room}/members")
    assert sorted(m["user"] for m in doc["members"]) == sorted([eve, fay]), doc
    for t in (t_dan, t_eve, t_fay):
        t.close_socket()


def test_follows_kept_at_the_followees_owner_and_feeds_reach_followers_on_every_node(etcd, nodes):
    a, b, c = nodes("a"), nodes("b"), nodes("c")
    wait_for(lambda: running(c.proc) == {"a": True, "b": True, "c": True}, 5)
    slots = wait_for(lambda: balanced(etcd.endpoint, ["a", "b", "c"]), 5)
    wait_for(lambda: len(slot_counts(c.proc)) == 3 and slot_counts(b.proc) == slot_counts(c.proc)
             == slot_counts(a.proc), 5)
    ben = user_owned_by(slots, "a", "ben")
    ann, cat, dee = (user_owned_by(slots, "b", "ann"), user_owned_by(slots, "c", "cat"),
                     user_owned_by(slots, "a", "dee"))
    # Follows written on any node land at ben's owner.
    assert c.api("PUT", f"/api/follows/{ann}/{ben}").status == 201
    assert b.api("PUT", f"/api/follows/{cat}/{ben}").status == 201
    assert a.api("PUT", f"/api/follows/{dee}/{ben}").status == 201
    assert b.api("PUT", f"/api/follows/{ann}/{ben}").status == 204  # known already, asked on another node
    assert b.api("DELETE", f"/api/follows/{ann}/nobody-{ben}").status in (404,)
    for gw in (a, b, c):
        assert sorted(gw.ok("GET", f"/api/followers/{ben}")["followers"]) == sorted([ann, cat, dee])
    # Whom ann follows, asked on any node: the edges kept at every followee's owner.
    bo, cy = user_owned_by(slots, "b", "bo"), user_owned_by(slots, "c", "cy")
    assert a.api("PUT", f"/api/follows/{ann}/{bo}").status == 201
    assert a.api("PUT", f"/api/follows/{ann}/{cy}").status == 201
    for gw in (a, b, c):
        assert gw.ok("GET", f"/api/follows/{ann}") == {"user": ann, "follows": sorted([ben, bo, cy])}
    assert b.ok("GET", f"/api/follows/{dee}") == {"user": dee, "follows": [ben]}
    tabs = {ann: c.ws(ann, since=0, attached=False), cat: b.ws(cat, since=0, attached=False),
            dee: a.ws(dee, since=0, attached=False)}
    # A post on c (HTTP) and one on b (AMQP): every follower gets both, wherever its tab is.
    assert c.ok("POST", f"/api/feed/{ben}", {"data": {"n": 1}}) == {"delivered": 3}
    conn = amqp(b)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("warren.feed", ben, b'{"n": 2}', pika.BasicProperties(delivery_mode=2))
    conn.close()
    for user, tab in tabs.items():
        got = [tab.recv_json(5) for _ in range(2)]
        assert [(e["feed"], e["from"], e["data"]) for e in got] == [(ben, ben, {"n": 1}), (ben, ben, {"n": 2})], got
    assert b.api("DELETE", f"/api/follows/{cat}/{ben}").status == 204
    assert sorted(c.ok("GET", f"/api/followers/{ben}")["followers"]) == sorted([ann, dee])
    assert a.ok("POST", f"/api/feed/{ben}", {"data": 3}) == {"delivered": 2}
    # A bulk import on any node: each edge kept at its followee's owner, as PUT keeps it.
    text = {"Content-Type": "text/plain"}
    assert b.ok("POST", "/api/follows", f"# imported\n{cat} {ben}\n{cat} {bo}\n{cat} {cy}\n{ann} {bo}\n",
                headers=text) == {"added": 3, "existing": 1}
    for gw in (a, b, c):
        assert sorted(gw.ok("GET", f"/api/followers/{ben}")["followers"]) == sorted([ann, cat, dee])
        assert gw.ok("GET", f"/api/follows/{cat}") == {"user": cat, "follows": sorted([ben, bo, cy])}
    assert c.api("POST", "/api/follows", f"{cat}\n", headers=text).status == 400
    for t in tabs.values():
        t.close_socket()


def test_tabs_follow_their_users_without_a_reset_when_a_joining_node_takes_their_slots(etcd, nodes):
    a, b = nodes("a"), nodes("b")
    wait_for(lambda: running(b.proc) == {"a": True, "b": True}, 5)
    two = wait_for(lambda: balanced(etcd.endpoint, ["a", "b"]), 5)
    wait_for(lambda: slot_counts(b.proc) == {"a": 128, "b": 128} == slot_counts(a.proc), 5)
    # Tabs on a (the owner) and on b for a's users; a joining node takes about a third of a's slots.
    users = []
    for i in range(12):
        users.append(user_owned_by(two, "a", f"gus{i}-"))
    tabs = {u: (a.ws(u, since=0, attached=False), b.ws(u, since=0, attached=False)) for u in users}
    for u in users:
        assert b.send(u, "before") is True
    firsts = {u: [t.recv_json(5) for t in tabs[u]] for u in users}
    for u in users:
        assert [e["data"] for e in firsts[u]] == ["before", "before"] and firsts[u][0]["seq"] == firsts[u][1]["seq"]
    c = nodes("c")
    three = wait_for(lambda: balanced(etcd.endpoint, ["a", "b", "c"]), 5)
    wait_for(lambda: slot_counts(a.proc) == slot_counts(b.proc) == slot_counts(c.proc), 5)
    moved = [u for u in users if owner(three, u) == "c"]
    assert moved, "no user moved (12 users, each with a third of a chance)"
    # The inboxes moved with their slots (a was up): the tabs on the old owner and elsewhere go on without a reset,
    # in the same numbering.
    for u in users:
        assert a.send(u, "after") is True
        got = [t.recv_json(5) for t in tabs[u]]
        assert [e["data"] for e in got] == ["after", "after"], (u, got)
        assert got[0]["seq"] == got[1]["seq"] == firsts[u][0]["seq"] + 1, (u, got)
    for pair in tabs.values():
        for t in pair:
            t.close_socket()


def test_operations_asked_of_an_owner_that_is_gone_answer_503(etcd, nodes):
    a, b, slots = two_balanced_nodes(etcd, nodes)
    room, user = user_owned_by(slots, "a", "hall"), user_owned_by(slots, "a", "hal")
    assert b.ok("POST", f"/api/rooms/{room}/publish", {"data": 1}) == {"routed": True}
    assert b.ok("GET", f"/api/follows/{user}") == {"user": user, "follows": []}
    a.proc.stop(signum=signal.SIGKILL, check=False)
    # Asked before the map moves: nobody answers for a; after 5 s the asking node says so. Whom a user follows is
    # asked of every node: one that does not answer makes it a 503, never a list missing its part.
    follows = {}
    th = threading.Thread(target=lambda: follows.update(r=b.api("GET", f"/api/follows/{user}", timeout=15)))
    th.start()
    t0 = time.monotonic()
    r = b.api("GET", f"/api/rooms/{room}/members", timeout=15)
    assert r.status == 503 and "did not answer" in r.json()["reason"], r
    assert 4 <= time.monotonic() - t0 < 10
    th.join()
    assert follows["r"].status == 503 and "node 'a'" in follows["r"].json()["reason"], follows
    # Once the map moved, b owns them: answered at once (a fresh room: no such room).
    wait_for(lambda: balanced(etcd.endpoint, ["b"]), 3 * TTL + 5)
    assert b.api("GET", f"/api/rooms/{room}/members").status == 404
    assert b.ok("GET", f"/api/presence/{user}") == {"online": False, "connections": 0}


def drain_until(tab, data, timeout=5):
    """The tab's events up to and including the first whose data is `data`."""
    got = []
    deadline = time.monotonic() + timeout
    while True:
        e = tab.recv_json(max(0.1, deadline - time.monotonic()))
        got.append(e)
        if e.get("data") == data:
            return got


def test_inboxes_and_rooms_move_with_their_slots_while_the_old_owner_is_up(etcd, nodes):
    a, b, two = two_balanced_nodes(etcd, nodes)
    wait_for(lambda: slot_counts(a.proc) == {"a": 128, "b": 128}, 5)
    # Users of both nodes, each with a tab on its owner and one on the other node.
    users = [user_owned_by(two, n, f"hal{i}-{n}-") for i in range(8) for n in ("a", "b")]
    other = {"a": b, "b": a}
    gw = {"a": a, "b": b}
    tabs = {u: (gw[owner(two, u)].ws(u, since=0, attached=False), other[owner(two, u)].ws(u, since=0, attached=False))
            for u in users}
    for i in range(3):
        for u in users:
            assert b.send(u, f"before{i}") is True
    firsts = {}
    for u in users:
        for t in tabs[u]:
            got = [t.recv_json(5) for _ in range(3)]
            assert [e["data"] for e in got] == ["before0", "before1", "before2"], got
            firsts[u] = got[0]["seq"]
    reader = users[0]
    assert a.ok("PUT", f"/api/inbox/{reader}/read", {"seq": firsts[reader] + 1})["read_seq"] == firsts[reader] + 1
    # Rooms of both nodes with members and history.
    rooms = [user_owned_by(two, n, f"den{i}-{n}-") for i in range(3) for n in ("a", "b")]
    for r in rooms:
        for u in users[:2]:
            assert a.api("POST", f"/api/rooms/{r}/join", b"", bearer=a.token(u)).status == 200
        assert b.ok("POST", f"/api/rooms/{r}/publish", {"data": f"hist-{r}"}) == {"routed": True}
    for u in users[:2]:
        for t in tabs[u]:
            drain_until(t, f"hist-{rooms[-1]}")
    # Followers of every user (kept at each followee's owner).
    fan = user_owned_by(two, "a", "fan")
    for u in users:
        assert b.api("PUT", f"/api/follows/{fan}/{u}").status == 201
    # Sends keep coming (HTTP on a and b, in turn) while c joins and takes a third of the slots.
    acked = {u: [] for u in users}
    stop = threading.Event()
    errors = []
    latencies = []

    def sender():
        i = 0
        while not stop.is_set():
            for u in users:
                t0 = time.monotonic()
                r = (a, b)[i % 2].api("POST", "/api/send", {"user": u, "data": f"during{i}"})
                latencies.append(time.monotonic() - t0)
                if r.status == 200 and r.json()["routed"]:
                    acked[u].append(f"during{i}")
                else:
                    errors.append(r)
            i += 1

    th = threading.Thread(target=sender)
    th.start()
    try:
        time.sleep(0.3)
        c = nodes("c")
        three = wait_for(lambda: balanced(etcd.endpoint, ["a", "b", "c"]), 5)
        wait_for(lambda: slot_counts(a.proc) == slot_counts(b.proc) == slot_counts(c.proc), 5)
        time.sleep(0.5)
    finally:
        stop.set()
        th.join()
    assert not errors, errors  # no send refused during the hand-over
    moved = [u for u in users if owner(three, u) == "c"]
    assert moved, "no user moved (16 users, each with a third of a chance)"
    for u in users:
        assert b.send(u, "after") is True
    for u in users:
        want = ["before0", "before1", "before2"] + acked[u] + ["after"]
        for t in tabs[u]:
            got = drain_until(t, "after")
            assert "reset" not in [e["type"] for e in got], (u, u in moved, got)
            assert [e["data"] for e in got if e["type"] == "message" and e["room"] is None] == want[3:], (u, got)
        # The inbox, asked on any node: every event since the first, one numbering, in order, once.
        for g in (a, b, c):
            page = g.ok("GET", f"/api/inbox/{u}?limit=1000")
            assert [e["data"] for e in page["events"] if e["room"] is None] == want, (u, g.proc, page)
            seqs = [e["seq"] for e in page["events"]]
            assert seqs == list(range(firsts[u], firsts[u] + len(seqs))), (u, seqs)
        # A browser resuming on the new owner (or any node) from its `since`: what followed, no reset.
        again = c.ws(u, since=firsts[u] + 2, attached=False)
        got = drain_until(again, "after")
        assert [e["data"] for e in got if e["type"] == "message" and e["room"] is None] == want[3:], (u, got)
        assert got[0]["seq"] == firsts[u] + 3, got[0]
        again.close_socket()
    assert c.ok("GET", f"/api/inbox/{reader}?limit=1")["read_seq"] == firsts[reader] + 1
    # Rooms that moved keep their members and history at their new owner.
    for r in rooms:
        doc = c.ok("GET", f"/api/rooms/{r}/members")
        assert sorted(m["user"] for m in doc["members"]) == sorted(users[:2]), (r, owner(three, r), doc)
        late = user_owned_by(three, "c", f"late-{r}-")
        t = c.ws(late, since=0, attached=False)
        assert t.request({"op": "join", "room": r})["type"] == "ok"
        h = t.recv_json(5)
        assert (h["type"], h["data"]) == ("history", f"hist-{r}"), (r, h)
        t.close_socket()
    # The followers moved with their followees: feeds reach them, asked on any node.
    for u in users:
        for g in (a, b, c):
            assert g.ok("GET", f"/api/followers/{u}")["followers"] == [fan], (u, owner(three, u))
        assert c.ok("POST", f"/api/feed/{u}", {"data": "post"}) == {"delivered": 1}, (u, owner(three, u))
    assert c.ok("GET", f"/api/follows/{fan}")["follows"] == sorted(users)
    latencies.sort()
    print(f"{len(moved)} of {len(users)} users moved; {sum(len(v) for v in acked.values())} sends during the join, "
          f"answered in {1000 * latencies[len(latencies) // 2]:.1f} ms (median), "
          f"{1000 * latencies[int(len(latencies) * 0.99)]:.1f} ms (p99), {1000 * latencies[-1]:.1f} ms (max)")
    for pair in tabs.values():
        for t in pair:
            t.close_socket()


def test_a_returning_node_never_serves_its_stale_inboxes(etcd, nodes):
    a, b, two = two_balanced_nodes(etcd, nodes)
    user = user_owned_by(two, "a", "ivy")
    tab = b.ws(user, since=0, attached=False)
    for i in range(3):
        assert b.send(user, f"old{i}") is True
    old = [tab.recv_json(5) for _ in range(3)]
    a.proc.stop(signum=signal.SIGKILL, check=False)
    assert tab.recv_json(3 * TTL + 5)["type"] == "reset"
    assert b.send(user, "while-a-was-down") is True
    assert tab.recv_json(5)["data"] == "while-a-was-down"
    tab.close_socket()
    # a comes back with its inboxes on disk, then b stops: every slot goes to a, from a node that is not running.
    a.proc.start()
    wait_for(lambda: balanced(etcd.endpoint, ["a", "b"]), 3 * TTL + 5)
    b.proc.stop(signum=signal.SIGKILL, check=False)
    wait_for(lambda: balanced(etcd.endpoint, ["a"]), 3 * TTL + 5)
    wait_for(lambda: slot_counts(a.proc) == {"a": 256}, 5)
    # A browser resuming from a's old numbering gets a reset, never old history as if nothing followed.
    again = a.ws(user, since=old[1]["seq"], attached=False)
    first = again.recv_json(5)
    assert first["type"] == "reset", first
    assert a.send(user, "now") is True
    assert again.recv_json(5)["data"] == "now"
    page = a.ok("GET", f"/api/inbox/{user}")
    assert [e["data"] for e in page["events"]] == ["now"], page
    again.close_socket()


def three_balanced_nodes(etcd, nodes):
    a, b, c = nodes("a"), nodes("b"), nodes("c")
    wait_for(lambda: running(c.proc) == {"a": True, "b": True, "c": True}, 5)
    slots = wait_for(lambda: balanced(etcd.endpoint, ["a", "b", "c"]), 5)
    wait_for(lambda: len(slot_counts(c.proc)) == 3 and slot_counts(b.proc) == slot_counts(c.proc)
             == slot_counts(a.proc), 5)
    return a, b, c, slots


def test_room_and_feed_events_handed_to_other_owners_are_awaited(etcd, nodes):
    a, b, c, slots = three_balanced_nodes(etcd, nodes)
    room, ben = user_owned_by(slots, "a", "forum"), user_owned_by(slots, "a", "benny")
    on_b, on_c = user_owned_by(slots, "b", "mia"), user_owned_by(slots, "c", "noa")
    for u in (on_b, on_c):
        assert b.api("POST", f"/api/rooms/{room}/join", b"", bearer=b.token(u)).status == 200
        assert b.api("PUT", f"/api/follows/{u}/{ben}").status == 201
    # All owners up: answered once every member's owner stored its copy.
    assert b.ok("POST", f"/api/rooms/{room}/publish", {"data": 1}) == {"routed": True}
    assert b.ok("POST", f"/api/feed/{ben}", {"data": 1}) == {"delivered": 2}
    assert [e["data"] for e in c.ok("GET", f"/api/inbox/{on_c}")["events"]] == [1, 1]
    c.proc.stop(signum=signal.SIGKILL, check=False)
    # c (a member's and a follower's owner) is gone and its slots have not moved yet: the room's node stored the
    # message, but not every member got it; the answer says so instead of a 200.
    r = b.api("POST", f"/api/rooms/{room}/publish", {"data": 2})
    assert r.status == 503 and "did not store" in r.json()["reason"], r
    r = b.api("POST", f"/api/feed/{ben}", {"data": 2})
    assert r.status == 503 and "did not store" in r.json()["reason"], r
    conn = amqp(b)
    ch = conn.channel()
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("warren.rooms", room, b'3', pika.BasicProperties(delivery_mode=2))
    conn.close()
    # Once c's slots moved, every owner is up again: 200.
    wait_for(lambda: balanced(etcd.endpoint, ["a", "b"]), 3 * TTL + 5)
    wait_for(lambda: len(slot_counts(a.proc)) == 2 and slot_counts(a.proc) == slot_counts(b.proc), 5)
    assert b.ok("POST", f"/api/rooms/{room}/publish", {"data": 4}) == {"routed": True}


def test_room_members_join_again_at_the_new_owner_when_the_rooms_owner_dies(etcd, nodes):
    a, b, c, slots = three_balanced_nodes(etcd, nodes)
    room = user_owned_by(slots, "a", "agora")
    dan, eve = user_owned_by(slots, "b", "dana"), user_owned_by(slots, "c", "evan")
    t_dan, t_eve = c.ws(dan, since=0, attached=False), b.ws(eve, since=0, attached=False)
    assert t_dan.request({"op": "join", "room": room})["type"] == "ok"
    assert b.api("POST", f"/api/rooms/{room}/join", b"", bearer=b.token(eve)).status == 200
    doc = b.ok("GET", f"/api/rooms/{room}/members")
    assert sorted(m["user"] for m in doc["members"]) == sorted([dan, eve])
    a.proc.stop(signum=signal.SIGKILL, check=False)
    wait_for(lambda: balanced(etcd.endpoint, ["b", "c"]), 3 * TTL + 5)
    new_owner = owner(shard_map(etcd.endpoint)[0], room)

    def members(gw):
        r = gw.api("GET", f"/api/rooms/{room}/members")
        return sorted(m["user"] for m in r.json()["members"]) if r.status == 200 else None

    # The nodes holding the members' connections joined them again at the room's new owner.
    wait_for(lambda: members(b) == members(c) == sorted([dan, eve]), 5)
    assert b.ok("POST", f"/api/rooms/{room}/publish", {"data": "after"}) == {"routed": True}
    for t in (t_dan, t_eve):
        e = t.recv_json(5)
        while e["type"] != "message":
            e = t.recv_json(5)
        assert (e["room"], e["data"]) == (room, "after"), e
    print(f"room {room} now at {new_owner}")
    t_dan.close_socket()
    t_eve.close_socket()
