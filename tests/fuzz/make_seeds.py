#!/usr/bin/env python3
"""Writes the hand-made seeds of the fuzz targets into tests/fuzz/seeds/<target>/ (real examples:
a valid handshake, a definitions file, a config file, frames, ...). Files of the same name are
overwritten; others (findings, seeds from other sources) are left alone. Run it after a format
change, then check the seeds still reach what they were meant to (scripts/fuzz <target> 10)."""
import base64, hashlib, hmac, json, os, struct, zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")


def put(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data)


# --- AMQP: method and content-header payloads, cut from the handshake seed -----------------------
def frames(stream):
    i = 0
    while i + 7 <= len(stream):
        t, ch, size = struct.unpack(">BHI", stream[i:i + 7])
        yield t, stream[i + 7:i + 7 + size]
        i += 8 + size


def shortstr(s):
    return bytes([len(s)]) + s


def longstr(s):
    return struct.pack(">I", len(s)) + s


def table(items):
    body = b"".join(shortstr(k) + v for k, v in items)
    return struct.pack(">I", len(body)) + body


handshake = open(os.path.join(ROOT, "amqp_frames", "handshake"), "rb").read()[1:]
n = 0
for t, payload in frames(handshake):
    if t == 1:
        put("amqp_methods", f"handshake-{n}", payload)
        n += 1
    elif t == 2:
        put("amqp_properties", "handshake-header", payload)
args = table([(b"x-max-length", b"I" + struct.pack(">i", 10)),
              (b"x-dead-letter-exchange", b"S" + longstr(b"dlx")),
              (b"x-queue-type", b"S" + longstr(b"classic"))])
put("amqp_methods", "queue-declare",
    struct.pack(">HHH", 50, 10, 0) + shortstr(b"orders") + bytes([0b00010]) + args)
put("amqp_methods", "basic-publish",
    struct.pack(">HHH", 60, 40, 0) + shortstr(b"amq.topic") + shortstr(b"a.b.c") + bytes([3]))
put("amqp_methods", "basic-consume",
    struct.pack(">HHH", 60, 20, 0) + shortstr(b"orders") + shortstr(b"ctag") + bytes([2]) +
    table([(b"x-priority", b"I" + struct.pack(">i", 5))]))
put("amqp_methods", "exchange-declare",
    struct.pack(">HHH", 40, 10, 0) + shortstr(b"ex") + shortstr(b"headers") + bytes([2]) +
    table([(b"alternate-exchange", b"S" + longstr(b"ae"))]))
# Every basic property present (flags 0xfffc), headers with nested values.
props = (shortstr(b"application/json") + shortstr(b"gzip") +
         table([(b"x-death", b"A" + struct.pack(">I", 5) + b"t\x01" + b"b\x07"),
                (b"n", b"l" + struct.pack(">q", -5)), (b"f", b"d" + struct.pack(">d", 1.5)),
                (b"t", b"F" + table([(b"k", b"S" + longstr(b"v"))])),
                (b"ts", b"T" + struct.pack(">Q", 1700000000)),
                (b"dec", b"D\x02" + struct.pack(">i", 12345))]) +
         bytes([2, 9]) + shortstr(b"corr") + shortstr(b"reply") + shortstr(b"60000") +
         shortstr(b"mid") + struct.pack(">Q", 1700000000) + shortstr(b"type") +
         shortstr(b"guest") + shortstr(b"app") + shortstr(b"cluster"))
put("amqp_properties", "all-properties", struct.pack(">HHQH", 60, 0, 5, 0xfffc) + props)
put("amqp_properties", "continuation",
    struct.pack(">HHQHH", 60, 0, 0, 0x8001, 0x0000) + shortstr(b"text/plain"))

# --- SASL ------------------------------------------------------------------------------------
put("sasl", "plain", b"\x00\x00guest\x00guest")
put("sasl", "plain-authzid", b"\x00guest\x00guest\x00secret")
put("sasl", "amqplain", b"\x01" + shortstr(b"LOGIN") + b"S" + longstr(b"guest") +
    shortstr(b"PASSWORD") + b"S" + longstr(b"guest"))
put("sasl", "amqplain-short", b"\x01" + shortstr(b"LOGIN") + b"s" + shortstr(b"guest") +
    shortstr(b"PASSWORD") + b"x" + longstr(b"pw"))


# --- WebSocket ---------------------------------------------------------------------------------
def deflate_raw(data):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4] if out.endswith(b"\x00\x00\xff\xff") else out


put("ws_deflate", "hello", bytes([3]) + deflate_raw(b'{"op":"publish","room":"lobby","data":"hi"}'))
put("ws_deflate", "repeated", bytes([4]) + deflate_raw(b"abcabcabc" * 300))
put("ws_deflate", "final-block", bytes([3]) + zlib.compress(b"final", 9)[2:-4] + b"\x00")
put("ws_deflate", "bomb", bytes([2]) + deflate_raw(b"\x00" * 100000))

upgrade = ("GET /ws?token=T HTTP/1.1\r\nHost: localhost:8080\r\nUpgrade: websocket\r\n"
           "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\nOrigin: http://localhost\r\n"
           "Sec-WebSocket-Protocol: chat, warren.v1\r\n"
           "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, "
           "permessage-deflate; server_max_window_bits=\"15\"; client_no_context_takeover\r\n\r\n")
put("ws_handshake", "chrome", b"\x00" + upgrade.encode())
put("ws_handshake", "old-version", b"\x00" + upgrade.replace("Version: 13", "Version: 8").encode())
put("ws_handshake", "structured",
    b"\x41GET\nHost: x\nupgrade: WebSocket\nconnection: upgrade\n"
    b"sec-websocket-key: AQIDBAUGBwgJCgsMDQ4PEA==\nsec-websocket-version: 13\n"
    b"Sec-WebSocket-Extensions: x-webkit-deflate-frame, permessage-deflate; "
    b"server_no_context_takeover; client_max_window_bits=10\n")

# --- UTF-8, base64 -----------------------------------------------------------------------------
put("utf8", "mixed", b"\x07" + "plain, é, €, 𝄞, 中文".encode())
put("utf8", "edges", b"\x01" + b"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xf0\x90\x80\x80\xf4\x8f\xbf\xbf")
put("utf8", "invalid", b"\x02" + b"ok\xed\xa0\x80\xc0\xaf\xf5\x80\x80\x80\xe0\x80")
put("utf8", "truncated", b"\x03abc\xf0\x9f\x98")
put("base64", "key", "dGhlIHNhbXBsZSBub25jZQ==")
put("base64", "url", "eyJhbGciOiJIUzI1NiJ9")
put("base64", "one-pad", "YWI=")
put("base64", "bad-bits", "YR==")


# --- JWT ---------------------------------------------------------------------------------------
def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def hs256(header, claims, secret=b"fuzz-secret"):
    inp = b64u(json.dumps(header).encode()) + b"." + b64u(json.dumps(claims).encode())
    return inp + b"." + b64u(hmac.new(secret, inp, hashlib.sha256).digest())


claims = {"sub": "alice", "rooms": ["lobby", "dev"], "publish": ["dev"], "exp": 1800000000,
          "nbf": 1600000000, "iss": "warren-iss", "aud": ["x", "warren-aud"]}
put("jwt", "valid-token", b"\x00" + hs256({"alg": "HS256", "typ": "JWT"}, claims))
put("jwt", "alg-none", b"\x00" + b64u(b'{"alg":"none"}') + b"." + b64u(b'{"sub":"a"}') + b".")
put("jwt", "signed-claims", b"\x01" + b'{"alg":"HS256","typ":"JWT"}\x00' + json.dumps(claims).encode())
put("jwt", "signed-all-checks", bytes([1 | (15 << 2)]) + b'{"alg":"HS256"}\x00' +
    json.dumps(claims).encode())
put("jwt", "expired", bytes([1 | (4 << 2)]) + b'{"alg":"HS256"}\x00{"sub":"b","exp":1.5e9}')
put("jwt", "rs256", b"\x02" + b'{"alg":"RS256","kid":"k"}\x00{"sub":"carol","rooms":"x"}')

# --- Query strings -----------------------------------------------------------------------------
put("query", "page", "/api/queues?page=2&page_size=5&name=ord&sort=messages&sort_reverse=true"
    "&columns=name,vhost,message_stats.publish")
put("query", "regex", "/api/queues/%2F?page=1&page_size=100&name=%5Eo.%2A%24&use_regex=true"
    "&sort=message_stats.ack")
put("query", "ranges", "?lengths_age=60&lengths_incr=5&msg_rates_age=600&msg_rates_incr=5"
    "&data_rates_age=60&data_rates_incr=10&disable_stats=true&enable_queue_totals=true")
put("query", "gateway", "/poll?token=a.b.c&since=1764000000000041&timeout=0&callback=cb"
    "&since=2&x=%E2%82%AC+y")
put("query", "columns-nested", "/api/x?columns=consumer_details.tag,flag&sort=flag")
put("query", "prometheus", "/metrics/detailed?family=queue_coarse_metrics&family=queue_metrics"
    "&vhost=%2F&vhost=b&queue=%5Eord")
put("query", "prometheus-per-object", "/metrics/per-object")

# --- Definitions -------------------------------------------------------------------------------
salt = b"\x01\x02\x03\x04"
pw_hash = base64.b64encode(salt + hashlib.sha256(salt + b"secret").digest()).decode()
defs = {
    "rabbit_version": "3.10.8", "rabbitmq_version": "3.10.8",
    "users": [{"name": "alice", "password_hash": pw_hash,
               "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"],
               "limits": {}},
              {"name": "bob", "password": "plain", "tags": "management,monitoring"}],
    "vhosts": [{"name": "/"}, {"name": "other"}],
    "permissions": [{"user": "alice", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
                    {"user": "bob", "vhost": "/", "configure": "^$", "write": "bob.*",
                     "read": ".*"}],
    "topic_permissions": [], "parameters": [], "global_parameters": [], "policies": [],
    "queues": [{"name": "orders", "vhost": "/", "durable": True, "auto_delete": False,
                "arguments": {"x-max-length": 1000, "x-message-ttl": 60000,
                              "x-dead-letter-exchange": "dlx", "x-queue-type": "classic"}},
               {"name": "prio", "vhost": "/", "durable": True, "auto_delete": False,
                "arguments": {"x-max-priority": 10, "x-overflow": "reject-publish"}},
               {"name": "temp", "vhost": "/", "durable": False, "auto_delete": True,
                "arguments": {}}],
    "exchanges": [{"name": "events", "vhost": "/", "type": "topic", "durable": True,
                   "auto_delete": False, "internal": False,
                   "arguments": {"alternate-exchange": "ae"}},
                  {"name": "ae", "vhost": "/", "type": "fanout", "durable": True,
                   "auto_delete": False, "internal": False, "arguments": {}},
                  {"name": "dlx", "vhost": "/", "type": "headers", "durable": True,
                   "auto_delete": False, "internal": True, "arguments": []}],
    "bindings": [{"source": "events", "vhost": "/", "destination": "orders",
                  "destination_type": "queue", "routing_key": "order.*", "arguments": {}},
                 {"source": "dlx", "vhost": "/", "destination": "prio",
                  "destination_type": "queue", "routing_key": "",
                  "arguments": {"x-match": "any", "a": 1, "b": [1, "x", None, {"c": 2.5}]}},
                 {"source": "events", "vhost": "/", "destination": "ae",
                  "destination_type": "exchange", "routing_key": "#", "arguments": {}}],
}
put("definitions", "full", b"\x00" + json.dumps(defs, indent=1).encode())
per_vhost = {k: v for k, v in defs.items() if k in ("queues", "exchanges", "bindings")}
put("definitions", "per-vhost", b"\x01" + json.dumps(per_vhost).encode())
put("definitions", "users-file", b"\x00" + json.dumps({"users": defs["users"],
                                                       "permissions": defs["permissions"]}).encode())
limits = {
    "users": [{"name": "u", "password_hash": "", "tags": [],
               "limits": {"max-connections": 2, "max-channels": -1}}],
    "vhosts": [{"name": "/"}],
    "parameters": [{"vhost": "/", "component": "vhost-limits", "name": "limits",
                    "value": {"max-connections": 0, "max-queues": 1}},
                   {"vhost": "/", "component": "federation-upstream", "name": "up", "value": {}}],
    "queues": [{"name": "a", "vhost": "/", "durable": True, "auto_delete": False, "arguments": {}}],
}
put("definitions", "limits", b"\x00" + json.dumps(limits).encode())

# --- Config ------------------------------------------------------------------------------------
put("config", "full.toml", """# Warren's configuration
bind = "127.0.0.1"
amqp_port = 5672
http_port = 15672
web_port = 8080
prometheus_port = 0
data_dir = "/var/lib/warren"
ctl_socket = ""
workers = 2
log_level = "info"
heartbeat = 30
frame_max = 131072
channel_max = 2047
handshake_timeout = 10.5
max_message_size = 134217728
loopback_networks = "127.0.0.0/8,::1/128"
default_user = "guest"
default_pass = "guest"
vhosts = "a,b"
vm_memory_high_watermark = 0.4
vm_memory_high_watermark_absolute = "512MiB"
vm_memory_high_watermark_paging_ratio = 0.5
disk_free_limit = "50MB"
jwt_secret = "s3cret"
inbox_linger = 300
anonymous_rooms = "lobby,news"
web_publish_rate = 20.0
web_dev_tokens = false
""")
put("config", "sizes.toml", 'disk_free_limit = 1000000\nvm_memory_high_watermark = "0.6"\n'
    'vm_memory_high_watermark_absolute = 2.5e9\n')
put("config", "bad-type.toml", 'amqp_port = "5672"\n[section]\nkey = 1\n')
put("config", "unknown.toml", 'workers = 0\nnot_a_key = true\nport = 70000\n')

# --- The management API over HTTP ---------------------------------------------------------------
AUTH = "Authorization: Basic YWRtaW46YWRtaW4=\r\n"


def req(method, target, body=None, headers="", auth=AUTH):
    h = f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n{auth}{headers}"
    if body is not None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        h += f"Content-Type: application/json\r\nContent-Length: {len(body.encode())}\r\n"
    return h + "\r\n" + (body or "")


mgmt = [
    req("GET", "/api/overview"),
    req("PUT", "/api/queues/%2F/orders", {"durable": True, "arguments": {"x-max-length": 10}}),
    req("PUT", "/api/exchanges/%2F/events", {"type": "topic", "durable": True}),
    req("POST", "/api/bindings/%2F/e/events/q/orders", {"routing_key": "o.*", "arguments": {}}),
    req("POST", "/api/exchanges/%2F/events/publish",
        {"properties": {"delivery_mode": 2, "headers": {"a": 1}}, "routing_key": "o.1",
         "payload": "aGk=", "payload_encoding": "base64"}),
    req("POST", "/api/queues/%2F/orders/get",
        {"count": 2, "ackmode": "ack_requeue_false", "encoding": "auto", "truncate": 50000}),
    req("GET", "/api/queues?page=1&page_size=10&name=ord&columns=name,messages&sort=name"),
    req("GET", "/api/bindings/%2F/e/events/q/orders"),
    req("DELETE", "/api/queues/%2F/orders/contents"),
    req("GET", "/api/definitions"),
]
put("http_mgmt", "session", b"\x00" + "".join(mgmt).encode())
put("http_mgmt", "local-socket", b"\x03" + "".join([
    req("GET", "/api/whoami", auth=""), req("PUT", "/api/vhosts/v2", "", auth=""),
    req("PUT", "/api/users/carol", {"password": "x", "tags": "management"}, auth=""),
    req("PUT", "/api/permissions/v2/carol", {"configure": ".*", "write": ".*", "read": ".*"},
        auth=""),
    req("GET", "/api/users", auth=""), req("DELETE", "/api/vhosts/v2", auth=""),
    req("GET", "/healthz", auth="", headers="Connection: close\r\n")]).encode())
put("http_mgmt", "definitions-upload", b"\x02" + req(
    "POST", "/api/definitions", json.dumps(defs), headers="Expect: 100-continue\r\n").encode())
chunked_body = json.dumps({"durable": False})
put("http_mgmt", "chunked", b"\x05" + (
    "PUT /api/queues/%2F/c HTTP/1.1\r\nHost: x\r\n" + AUTH + "Transfer-Encoding: chunked\r\n\r\n"
    f"{len(chunked_body):x}\r\n{chunked_body}\r\n0\r\n\r\n" + req("HEAD", "/api/queues/%2F/c") +
    req("GET", "/api/nodes") + req("GET", "/api/exchanges/%2F/amq.direct", auth="")).encode())
put("http_mgmt", "unauthenticated-upload", b"\x04" + req(
    "POST", "/api/definitions", "x" * 100, auth="Authorization: Basic Z3Vlc3Q6bm8=\r\n").encode())
put("http_mgmt", "bad-request", b"\x06GET /api/overview HTTP/1.1\r\nHost x\r\n\r\n")


# --- The web gateway ---------------------------------------------------------------------------
def ws_frame(opcode, payload, fin=True, mask=b"\x11\x22\x33\x44"):
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n < 65536:
        head = bytes([b0, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, 0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


token = hs256({"alg": "HS256", "typ": "JWT"},
              {"sub": "alice", "rooms": ["lobby", "dev"], "publish": ["dev"]}).decode()
ws_up = ("GET /ws?token=" + token + " HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n").encode()
put("http_gateway", "websocket", b"\x00" + ws_up +
    ws_frame(1, '{"op":"join","room":"dev","id":1}') +
    ws_frame(1, '{"op":"publish","room":"dev","data":{"text":"hi"},"id":"x"}') +
    ws_frame(1, '{"op":"members","room":"dev"}') + ws_frame(9, "ping") +
    ws_frame(1, '{"op":"pub', fin=False) + ws_frame(0, 'lish","room":"lobby","data":1}') +
    ws_frame(1, '{"op":"leave","room":"dev"}') + ws_frame(1, "not json") +
    ws_frame(8, struct.pack(">H", 1000) + b"bye"))
ws_deflated = ws_up.replace(b"Version: 13\r\n",
                            b"Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n")
put("http_gateway", "websocket-deflate", b"\x09" + ws_deflated +
    bytes([0xc1]) + ws_frame(1, deflate_raw(b'{"op":"join","room":"lobby"}'))[1:] +
    ws_frame(1, '{"op":"ping"}'))
put("http_gateway", "anonymous-ws", b"\x11" + ws_up.replace(("token=" + token).encode(), b"x=1") +
    ws_frame(1, '{"op":"join","room":"lobby"}') + ws_frame(1, '{"op":"publish","room":"lobby"}'))
put("http_gateway", "backend", b"\x02" + "".join([
    req("POST", "/api/send", {"user": "alice", "data": {"n": 1}, "from": "bot"}),
    req("POST", "/api/rooms/dev/publish", {"data": "hello"}),
    req("PUT", "/api/follows/alice/bob"),
    req("POST", "/api/follows", "alice carol\n# comment\n\nbob alice\n",
        headers="Content-Type: text/plain\r\n"),
    req("GET", "/api/follows/alice"), req("GET", "/api/followers/alice"),
    req("POST", "/api/feed/alice", {"data": [1, 2]}), req("GET", "/api/presence/alice"),
    req("GET", "/api/rooms/dev/members"), req("DELETE", "/api/follows/alice/bob"),
    req("POST", "/api/dev-token", {"user": "dave"}, auth="")]).encode())
bearer = f"Authorization: Bearer {token}\r\n"
put("http_gateway", "browser-http", b"\x03" + "".join([
    req("POST", "/api/rooms/dev/join", "", auth=bearer),
    req("POST", "/api/rooms/dev/publish", {"data": {"t": "x"}}, auth=bearer),
    req("GET", "/api/rooms/dev/members", auth=bearer),
    req("POST", "/api/rooms/dev/leave", "", auth=bearer),
    req("GET", f"/poll?token={token}&since=0&timeout=0&callback=cb", auth="")]).encode())
put("http_gateway", "sse", b"\x04" + req("GET", f"/sse?token={token}&since=0", auth="",
                                         headers="Last-Event-ID: 5\r\n").encode())
put("http_gateway", "stream", b"\x05" + req("GET", f"/stream?token={token}", auth="").encode())
put("http_gateway", "static", b"\x06" + "".join([
    req("GET", "/", auth=""), req("GET", "/warren.js", auth="", headers="If-None-Match: x\r\n"),
    req("OPTIONS", "/api/send", auth=""), req("GET", "/nope", auth=""),
    req("GET", "/ws", auth="")]).encode())

# --- The store's recovery: edits (see fuzz_store_recovery.cpp) ---------------------------------
put("store_recovery", "intact", b"")
put("store_recovery", "flip", bytes([0, 1, 0, 40, 3]))
put("store_recovery", "truncate", bytes([2, 2, 1, 0]))
put("store_recovery", "swap", bytes([3, 1, 0, 20, 31, 0, 90]))
put("store_recovery", "reseal", bytes([6, 1, 0, 30, 4]) + b"\xff\xff\xff\xff")
put("store_recovery", "definitions", bytes([1, 0, 0, 12, 3]) + b"\x09\x09\x09")
put("store_recovery", "several", bytes([0, 3, 0, 100, 1, 4, 4, 0, 50, 2, 0xab, 0xcd, 5, 6, 0]))
