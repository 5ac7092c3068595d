"""TLS on every listener (docs/security.md), with real clients: pika over AMQPS (a password, then a client
certificate with SASL EXTERNAL), `openssl s_client` for protocol versions, curl on the HTTPS management API and on
the gateway's SSE, websocket-client over wss://, a certificate reload on SIGHUP, and the error paths (bad files at
start-up, plain bytes on a TLS port).

The test CA, the server's certificates and the clients' are made for the module with the openssl command in a
temporary directory."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pika
import pytest

from support.web_gateway import SECRET, basic_auth, wait_for
from support.ws_client import make_jwt
from support.warren_process import warren_bin

TLS_PORTS = ["--amqps-port", "0", "--https-port", "0", "--web-tls-port", "0"]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


class Pki:
    """A CA and certificates it signed, as PEM files in `dir`."""

    def __init__(self, directory: Path):
        self.dir = directory
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Warren test CA",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
                cwd=directory)
        self.ca = str(directory / "ca.pem")

    def issue(self, name: str, cn: str, serial: int, server: bool = False, rsa: bool = False) -> tuple[str, str]:
        """Certificate and key files for `cn`; a server certificate names localhost and 127.0.0.1."""
        key_args = ["-newkey", "rsa:2048"] if rsa else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        openssl("req", "-new", *key_args, "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/O=Warren tests/CN={cn}", cwd=self.dir)
        ext = self.dir / f"{name}.ext"
        ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n" if server
                       else "extendedKeyUsage=clientAuth\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial",
                str(serial), "-days", "2", "-out", f"{name}.pem", "-extfile", ext.name, cwd=self.dir)
        return str(self.dir / f"{name}.pem"), str(self.dir / f"{name}.key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    p = Pki(tmp_path_factory.mktemp("pki"))
    p.server = p.issue("server", "localhost", 0x1001, server=True)
    p.guest = p.issue("guest", "guest", 0x2001)        # the default user: EXTERNAL logs in as guest
    p.nobody = p.issue("nobody", "nobody", 0x2002)     # no such user
    return p


def tls_args(pki: Pki, *extra: str, cert: tuple[str, str] | None = None) -> list[str]:
    c, k = cert or pki.server
    return [*TLS_PORTS, "--tls-cert", c, "--tls-key", k, "--tls-ca", pki.ca, *extra]


def client_context(pki: Pki, cert: tuple[str, str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki.ca)
    if cert:
        ctx.load_cert_chain(*cert)
    return ctx


def amqps(port: int, pki: Pki, cert=None, credentials=None) -> pika.BlockingConnection:
    params = pika.ConnectionParameters(
        "localhost", port, ssl_options=pika.SSLOptions(client_context(pki, cert), "localhost"),
        credentials=credentials or pika.PlainCredentials("guest", "guest"), connection_attempts=1,
        socket_timeout=5)
    return pika.BlockingConnection(params)


def round_trip(conn: pika.BlockingConnection, body: bytes) -> bytes:
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, body)
    for _ in range(100):
        method, _, got = ch.basic_get(q, auto_ack=True)
        if method:
            ch.close()
            return got
        time.sleep(0.02)
    raise AssertionError("message not back")


def https_json(port: int, path: str, pki: Pki, method: str = "GET", body=None):
    req = urllib.request.Request(f"https://localhost:{port}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": basic_auth("guest", "guest"),
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=client_context(pki), timeout=10) as r:
        return json.loads(r.read())


def start_message(port: int, pki: Pki, cert=None) -> bytes:
    """The payload of connection.start on a raw TLS connection (its mechanisms are in it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with client_context(pki, cert).wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"AMQP\x00\x00\x09\x01")
            data = b""
            while len(data) < 7 or len(data) < 8 + int.from_bytes(data[3:7], "big"):
                chunk = s.recv(4096)
                assert chunk, "closed before connection.start"
                data += chunk
            return data


def peer_serial(port: int, pki: Pki) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with client_context(pki).wrap_socket(raw, server_hostname="localhost") as s:
            return int(s.getpeercert()["serialNumber"], 16)


def log_text(proc) -> str:
    return proc.stderr_path.read_text(errors="replace") + proc.stdout_path.read_text(errors="replace")


# --- listeners and the ports file ------------------------------------------------------------------------------


def test_tls_ports_are_in_the_ports_file_only_with_a_certificate(warren_factory, pki):
    plain = warren_factory()
    assert not {"amqps", "https", "web_tls"} & plain.ports.keys()
    w = warren_factory(*tls_args(pki))
    for key in ("amqps", "https", "web_tls"):
        assert isinstance(w.ports.get(key), int) and 0 < w.ports[key] < 65536, w.ports
    listeners = {l["protocol"]: l["port"] for l in https_json(w.ports["https"], "/api/overview", pki)["listeners"]}
    assert listeners["amqp/ssl"] == w.ports["amqps"]
    assert listeners["https"] == w.ports["https"]


# --- AMQPS ------------------------------------------------------------------------------------------------------


def test_pika_over_amqps_with_a_password(warren_factory, pki):
    w = warren_factory(*tls_args(pki))
    conn = amqps(w.ports["amqps"], pki)
    assert round_trip(conn, b"over tls") == b"over tls"
    assert round_trip(conn, os.urandom(1_000_000)) is not None  # many records, both ways
    conn.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "amqps"])
def test_fanned_out_bodies_reach_every_consumer_whole_and_in_order(warren_factory, pki, tls):
    # Bodies from 16 KiB on go to each consumer by reference to the one shared message (gather writes on a plain
    # socket, one SSL_write per piece under TLS), split into body frames whose headers sit between slices of it;
    # smaller ones are copied. Interleaved, to three consumers on connections of their own, one with a small
    # frame_max (a 1 MB body in 256 frames: more pieces than one write takes): every consumer gets every body
    # byte for byte, in publish order.
    w = warren_factory(*tls_args(pki))

    def connect(frame_max=131072):
        if tls:
            params = pika.ConnectionParameters(
                "localhost", w.ports["amqps"], frame_max=frame_max,
                ssl_options=pika.SSLOptions(client_context(pki), "localhost"))
        else:
            params = pika.ConnectionParameters("127.0.0.1", w.amqp_port, frame_max=frame_max)
        return pika.BlockingConnection(params)

    bodies = [os.urandom(1_000_000), b"small", os.urandom(20_000), b"", os.urandom(16 * 1024),
              b"x" * 100, os.urandom(16 * 1024 - 1), os.urandom(300_000), b"last"]
    pub_conn = connect()
    pub = pub_conn.channel()
    pub.exchange_declare("fan-big", "fanout", auto_delete=True)
    consumers = []
    for i, frame_max in enumerate([131072, 4096, 131072]):
        c = connect(frame_max)
        ch = c.channel()
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(q, "fan-big")
        got: list[bytes] = []
        ch.basic_consume(q, lambda _ch, _m, _p, body, got=got: got.append(body), auto_ack=True)
        consumers.append((c, got))
    pub.confirm_delivery()
    for b in bodies:
        pub.basic_publish("fan-big", "", b)
    deadline = time.time() + 20
    while time.time() < deadline and any(len(got) < len(bodies) for _, got in consumers):
        for c, _ in consumers:
            c.process_data_events(time_limit=0.05)
    for i, (c, got) in enumerate(consumers):
        assert len(got) == len(bodies), (i, len(got))
        for k, (a, b) in enumerate(zip(got, bodies)):
            assert a == b, (i, k, len(a), len(b))
        c.close()
    pub_conn.close()


def test_external_logs_in_as_the_certificates_cn_and_connections_show_tls(warren_factory, pki):
    w = warren_factory(*tls_args(pki, "--tls-verify", "peer"))
    assert b"EXTERNAL" in start_message(w.ports["amqps"], pki, cert=pki.guest)
    conn = amqps(w.ports["amqps"], pki, cert=pki.guest, credentials=pika.credentials.ExternalCredentials())
    plain = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", w.amqp_port))
    assert round_trip(conn, b"x") == b"x"
    conns = wait_for(lambda: (lambda c: c if len(c) == 2 else None)(
        https_json(w.ports["https"], "/api/connections", pki)), 10, "two connections listed")
    tls = next(c for c in conns if c["ssl"])
    other = next(c for c in conns if not c["ssl"])
    assert tls["user"] == "guest" and tls["auth_mechanism"] == "EXTERNAL"
    assert tls["ssl_protocol"] == "tlsv1.3"
    assert tls["ssl_key_exchange"] == "any"  # TLS 1.3 suites do not name it
    assert tls["ssl_cipher"] in ("aes_256_gcm", "aes_128_gcm", "chacha20_poly1305")
    assert tls["ssl_hash"] == "aead"
    assert tls["peer_cert_subject"] == "CN=guest,O=Warren tests"
    assert tls["peer_cert_issuer"] == "CN=Warren test CA"
    assert " - " in tls["peer_cert_validity"] and tls["peer_cert_validity"].endswith("Z")
    assert tls["port"] == w.ports["amqps"]
    for key in ("ssl_protocol", "ssl_key_exchange", "ssl_cipher", "ssl_hash", "peer_cert_subject",
                "peer_cert_issuer", "peer_cert_validity"):
        assert other[key] is None, key
    conn.close()
    plain.close()


def test_tls12_connection_names_its_key_exchange(warren_factory, pki):
    w = warren_factory(*tls_args(pki))
    ctx = client_context(pki)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    params = pika.ConnectionParameters("localhost", w.ports["amqps"], ssl_options=pika.SSLOptions(ctx, "localhost"),
                                       credentials=pika.PlainCredentials("guest", "guest"))
    conn = pika.BlockingConnection(params)
    c = wait_for(lambda: https_json(w.ports["https"], "/api/connections", pki), 10, "the connection listed")[0]
    assert c["ssl_protocol"] == "tlsv1.2"
    assert c["ssl_key_exchange"] == "ecdhe_ecdsa"  # the server's key is P-256
    assert c["ssl_hash"] == "aead"
    assert c["peer_cert_subject"] is None  # no client certificate asked for
    conn.close()


def test_external_is_offered_only_with_a_verified_client_certificate(warren_factory, pki):
    w = warren_factory(*tls_args(pki, "--tls-verify", "peer"))
    assert b"EXTERNAL" not in start_message(w.ports["amqps"], pki)  # TLS, no certificate
    with pytest.raises(pika.exceptions.AMQPError):
        amqps(w.ports["amqps"], pki, credentials=pika.credentials.ExternalCredentials())
    with pytest.raises(pika.exceptions.AMQPError):  # plain AMQP never offers it
        pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", w.amqp_port, credentials=pika.credentials.ExternalCredentials(), connection_attempts=1))
    # Without --tls-verify peer no certificate is asked for, so none is verified.
    w2 = warren_factory(*tls_args(pki))
    assert b"EXTERNAL" not in start_message(w2.ports["amqps"], pki, cert=pki.guest)
    # A password still works beside a certificate.
    conn = amqps(w.ports["amqps"], pki, cert=pki.guest)
    assert round_trip(conn, b"p") == b"p"
    conn.close()


def test_external_for_an_unknown_user_is_refused(warren_factory, pki):
    w = warren_factory(*tls_args(pki, "--tls-verify", "peer"))
    with pytest.raises(pika.exceptions.AMQPError):
        amqps(w.ports["amqps"], pki, cert=pki.nobody, credentials=pika.credentials.ExternalCredentials())
    wait_for(lambda: "user 'nobody' - invalid credentials" in log_text(w), 5, "the refusal logged")


def test_fail_if_no_peer_cert_refuses_clients_without_one(warren_factory, pki):
    w = warren_factory(*tls_args(pki, "--tls-verify", "peer", "--tls-fail-if-no-peer-cert"))
    with pytest.raises((pika.exceptions.AMQPError, ssl.SSLError, OSError)):
        amqps(w.ports["amqps"], pki)
    conn = amqps(w.ports["amqps"], pki, cert=pki.guest, credentials=pika.credentials.ExternalCredentials())
    assert round_trip(conn, b"ok") == b"ok"
    conn.close()


def test_warren_perf_over_amqps(warren_factory, pki):
    # The load generator speaks AMQPS too (amqps:// URI, the broker's name checked against the test CA).
    perf = Path(os.environ.get("WARREN_PERF_BIN", Path(warren_bin()).parent / "warren-perf"))
    if not perf.exists():
        pytest.skip(f"{perf} not built")
    w = warren_factory(*tls_args(pki))
    r = subprocess.run([str(perf), "--uri", f"amqps://guest:guest@localhost:{w.ports['amqps']}/", "--tls-ca",
                        pki.ca, "--scenario", "throughput", "-z", "1", "--json"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["received"] > 0, summary
    # A CA that did not sign the broker's certificate: the handshake fails.
    r = subprocess.run([str(perf), "--uri", f"amqps://localhost:{w.ports['amqps']}/", "--tls-ca", pki.guest[0],
                        "-z", "1"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "certificate verify failed" in r.stderr, r.stderr


# --- protocol versions ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version, accepted", [("-tls1", False), ("-tls1_1", False), ("-tls1_2", True),
                                               ("-tls1_3", True)])
def test_s_client_protocol_versions(warren_factory, pki, version, accepted):
    w = warren_factory(*tls_args(pki))
    # SECLEVEL=0 lets the client offer the old versions; the server must refuse them itself.
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{w.ports['amqps']}", version,
                        "-cipher", "DEFAULT@SECLEVEL=0", "-CAfile", pki.ca, "-servername", "localhost"],
                       input=b"", capture_output=True, timeout=20)
    out = (r.stdout + r.stderr).decode(errors="replace")
    if accepted:
        assert r.returncode == 0, out
        assert "Verify return code: 0 (ok)" in out
        assert "Cipher is (NONE)" not in out
        assert ("TLSv1.3" if version == "-tls1_3" else "TLSv1.2") in out
    else:
        assert r.returncode != 0, out
        assert "alert protocol version" in out or "Cipher is (NONE)" in out, out
    w.assert_alive()


# --- HTTPS and the gateway --------------------------------------------------------------------------------------


def test_curl_on_the_https_management_api(warren_factory, pki):
    w = warren_factory(*tls_args(pki))
    r = subprocess.run(["curl", "-sS", "--fail", "--cacert", pki.ca, "-u", "guest:guest",
                        f"https://localhost:{w.ports['https']}/api/overview"], capture_output=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["product_name"] == "Warren"
    # Keep-alive with several requests on one TLS connection.
    urls = [f"https://localhost:{w.ports['https']}/api/whoami"] * 3
    r = subprocess.run(["curl", "-sS", "--fail", "--cacert", pki.ca, "-u", "guest:guest", *urls],
                       capture_output=True, timeout=20)
    assert r.returncode == 0 and r.stdout.count(b'"name":"guest"') == 3, r


def test_curl_sse_over_https_gets_a_sent_message(warren_factory, pki):
    w = warren_factory(*tls_args(pki, "--jwt-secret", SECRET))
    port = w.ports["web_tls"]
    token = make_jwt(SECRET, "alice")
    curl = subprocess.Popen(["curl", "-sSN", "--cacert", pki.ca, "--max-time", "20",
                             f"https://localhost:{port}/sse?token={token}"], stdout=subprocess.PIPE)
    try:
        wait_for(lambda: https_json(port, "/api/presence/alice", pki)["online"], 10, "alice's SSE attached")
        assert https_json(port, "/api/send", pki, "POST", {"user": "alice", "data": {"hello": "tls"}})["routed"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = curl.stdout.readline()
            assert line, "the SSE stream ended"
            if line.startswith(b"data:") and b'"hello":"tls"' in line:
                break
        else:
            raise AssertionError("no event")
    finally:
        curl.terminate()
        curl.wait(5)


def test_websocket_over_wss(warren_factory, pki):
    import websocket  # python3-websocket (scripts/install-deps)

    w = warren_factory(*tls_args(pki, "--jwt-secret", SECRET))
    port = w.ports["web_tls"]
    ws = websocket.create_connection(f"wss://localhost:{port}/ws?token={make_jwt(SECRET, 'bob')}",
                                     sslopt={"ca_certs": pki.ca}, timeout=10)
    try:
        wait_for(lambda: https_json(port, "/api/presence/bob", pki)["online"], 10, "bob's WebSocket attached")
        big = "y" * 200_000  # several TLS records in one WebSocket message
        assert https_json(port, "/api/send", pki, "POST", {"user": "bob", "data": big})["routed"]
        event = json.loads(ws.recv())
        assert event["data"] == big
        ws.send(json.dumps({"op": "join", "room": "lobby", "id": 7}))
        reply = json.loads(ws.recv())
        assert reply.get("id") == 7, reply
    finally:
        ws.close()


def test_gateway_refusal_before_the_handshake_still_goes_out_over_tls(warren_factory, pki):
    # Over the per-address limit the gateway queues its 429 as soon as the connection is accepted, before the TLS
    # handshake: it must go out once the handshake is done, then the connection closes with close_notify.
    w = warren_factory(*tls_args(pki, "--jwt-secret", SECRET, "--web-max-connections-per-ip", "1"))
    port = w.ports["web_tls"]
    first = client_context(pki).wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                            server_hostname="localhost")
    try:
        # The first one's handshake is done, so the gateway has counted it (on accept).
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client_context(pki).wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(4096)  # an SSLEOFError here would mean no close_notify
                    if not chunk:
                        break
                    data += chunk
        assert data.startswith(b"HTTP/1.1 429"), data[:200]
    finally:
        first.close()


# --- reload -----------------------------------------------------------------------------------------------------


def test_sighup_reloads_the_certificate_for_new_handshakes_only(warren_factory, pki, tmp_path):
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    cert.write_bytes(Path(pki.server[0]).read_bytes())
    key.write_bytes(Path(pki.server[1]).read_bytes())
    w = warren_factory(*tls_args(pki, cert=(str(cert), str(key))))
    old = amqps(w.ports["amqps"], pki)
    assert peer_serial(w.ports["https"], pki) == 0x1001
    renewed = pki.issue("renewed", "localhost", 0x1002, server=True, rsa=True)
    cert.write_bytes(Path(renewed[0]).read_bytes())
    key.write_bytes(Path(renewed[1]).read_bytes())
    w.send_signal(signal.SIGHUP)
    wait_for(lambda: "TLS certificate reloaded" in log_text(w), 10, "the reload logged")
    for port in (w.ports["amqps"], w.ports["https"], w.ports["web_tls"]):
        assert peer_serial(port, pki) == 0x1002
    assert round_trip(old, b"still here") == b"still here"  # the old session goes on
    fresh = amqps(w.ports["amqps"], pki)
    assert round_trip(fresh, b"new") == b"new"
    # A broken file: the reload fails, the current certificate stays, nothing else changes.
    key.write_text("not a key\n")
    w.send_signal(signal.SIGHUP)
    wait_for(lambda: "TLS certificate not reloaded" in log_text(w), 10, "the failed reload logged")
    assert peer_serial(w.ports["amqps"], pki) == 0x1002
    assert round_trip(old, b"again") == b"again"
    old.close()
    fresh.close()


# --- errors -----------------------------------------------------------------------------------------------------


def start_error(tmp_path: Path, *args: str) -> str:
    r = subprocess.run([warren_bin(), "--data-dir", str(tmp_path / "data"), "--amqp-port", "0", "--http-port", "0",
                        "--web-port", "0", "--prometheus-port", "0", "--bind", "127.0.0.1", *TLS_PORTS, *args],
                       capture_output=True, timeout=20)
    assert r.returncode == 1, r
    return (r.stdout + r.stderr).decode(errors="replace")


def test_missing_certificate_is_a_clear_startup_error(pki, tmp_path):
    out = start_error(tmp_path, "--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", pki.server[1])
    assert f"--tls-cert {tmp_path / 'nope.pem'}: cannot read: No such file or directory" in out, out


def test_certificate_that_is_not_pem_is_a_clear_startup_error(pki, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    out = start_error(tmp_path, "--tls-cert", str(junk), "--tls-key", pki.server[1])
    assert f"--tls-cert {junk}: not a PEM certificate" in out, out


def test_key_not_matching_the_certificate_is_a_clear_startup_error(pki, tmp_path):
    out = start_error(tmp_path, "--tls-cert", pki.server[0], "--tls-key", pki.guest[1])
    assert f"--tls-key {pki.guest[1]}: does not match the certificate in {pki.server[0]}" in out, out


def test_inconsistent_tls_flags_are_startup_errors(pki, tmp_path):
    out = start_error(tmp_path, "--tls-cert", pki.server[0], "--tls-key", pki.server[1], "--tls-verify", "peer")
    assert "--tls-verify peer needs --tls-ca" in out, out
    out = start_error(tmp_path, "--tls-ca", pki.ca)
    assert "need --tls-cert and --tls-key" in out, out
    r = subprocess.run([warren_bin(), "--tls-verify", "sometimes"], capture_output=True, timeout=20)
    assert r.returncode != 0 and b"none or peer" in r.stdout + r.stderr


def test_tls_settings_from_toml(warren_factory, pki, tmp_path):
    conf = tmp_path / "warren.toml"
    conf.write_text(f'tls_cert = "{pki.server[0]}"\ntls_key = "{pki.server[1]}"\ntls_ca = "{pki.ca}"\n'
                    f'tls_verify = "peer"\namqps_port = 0\nhttps_port = 0\nweb_tls_port = 0\n')
    w = warren_factory("--config", str(conf))
    conn = amqps(w.ports["amqps"], pki, cert=pki.guest, credentials=pika.credentials.ExternalCredentials())
    assert round_trip(conn, b"toml") == b"toml"
    conn.close()


@pytest.mark.parametrize("greeting", [b"AMQP\x00\x00\x09\x01", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01"])
def test_plain_bytes_on_a_tls_port_close_the_connection(warren_factory, pki, greeting):
    w = warren_factory(*tls_args(pki))
    for port in (w.ports["amqps"], w.ports["https"], w.ports["web_tls"]):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(greeting)
            if greeting == b"\x16\x03\x01":
                s.shutdown(socket.SHUT_WR)  # a truncated ClientHello, then nothing
            while True:
                try:
                    if not s.recv(4096):
                        break
                except ConnectionResetError:
                    break
    w.assert_alive()
    conn = amqps(w.ports["amqps"], pki)
    assert round_trip(conn, b"fine") == b"fine"
    conn.close()
