"""Process lifecycle: health endpoint, command line, config file, clean shutdown on signals, tune values."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pika

from support.amqp_raw import CONNECTION_CLOSE, CONNECTION_CLOSE_OK, REPLY_SUCCESS, RawClient, close_args
from support.warren_process import WarrenProcess, warren_bin


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (for the config test, which must name one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthz(warren):
    with urllib.request.urlopen(f"http://127.0.0.1:{warren.http_port}/healthz", timeout=5) as r:
        assert r.status == 200
        assert r.read().strip() == b"ok"


def test_ports_file_names_every_listener(warren):
    # AMQP, the management HTTP API, the web gateway and the Prometheus metrics, each on its own port.
    ports = json.loads(warren.ports_file.read_text())
    assert set(ports) == {"amqp", "http", "web", "prometheus"}, ports
    assert all(isinstance(p, int) and 0 < p < 65536 for p in ports.values()), ports
    assert len(set(ports.values())) == 4, ports
    for p in ports.values():
        with socket.create_connection(("127.0.0.1", p), timeout=5):
            pass


def test_help_lists_flags():
    r = subprocess.run([warren_bin(), "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    for flag in ["--amqp-port", "--http-port", "--web-port", "--prometheus-port", "--data-dir", "--workers",
                 "--config"]:
        assert flag in r.stdout, f"{flag} missing from --help:\n{r.stdout}"


def test_unknown_flag_exits_nonzero(tmp_path):
    r = subprocess.run([warren_bin(), "--no-such-flag", "--data-dir", str(tmp_path)], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode != 0


def test_a_new_data_dir_is_private_and_an_existing_one_keeps_its_mode(tmp_path):
    # Persistent messages and password hashes live there: a directory warren creates is 0700.
    fresh = tmp_path / "parent" / "data"
    with WarrenProcess(["--data-dir", str(fresh)]):
        assert (fresh.stat().st_mode & 0o777) == 0o700
        assert ((fresh / "warren.lock").stat().st_mode & 0o777) == 0o600
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o750)
    existing.chmod(0o750)
    with WarrenProcess(["--data-dir", str(existing)]):
        assert (existing.stat().st_mode & 0o777) == 0o750


def _write_config(path, amqp_port, data_dir):
    path.write_text(
        f'amqp_port = {amqp_port}\n'
        'http_port = 0\n'
        'web_port = 0\n'
        'prometheus_port = 0\n'
        f'data_dir = {json.dumps(str(data_dir))}\n'
        'workers = 1\n'
        'bind = "127.0.0.1"\n')


def test_config_file_is_honoured(tmp_path):
    port = free_port()
    config = tmp_path / "warren.toml"
    _write_config(config, port, tmp_path / "data-from-config")
    omit = ("--amqp-port", "--http-port", "--web-port", "--prometheus-port", "--data-dir", "--workers", "--bind")
    with WarrenProcess(["--config", str(config)], omit=omit) as w:
        assert w.amqp_port == port
        with RawClient(w.amqp_port) as c:
            c.handshake()
            c.close_connection()
    assert (tmp_path / "data-from-config").is_dir(), "data_dir from the config file was not used"


def test_flag_overrides_config_file(tmp_path):
    config_port, flag_port = free_port(), free_port()
    config = tmp_path / "warren.toml"
    _write_config(config, config_port, tmp_path / "data-from-config")
    with WarrenProcess(["--config", str(config), "--amqp-port", str(flag_port)],
                       omit=("--http-port", "--web-port", "--prometheus-port", "--workers", "--bind")) as w:
        assert w.amqp_port == flag_port
        with RawClient(w.amqp_port) as c:
            c.handshake()
            c.close_connection()


def test_sigterm_with_open_connection_exits_zero():
    with WarrenProcess() as w:
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", w.amqp_port, connection_attempts=1))
        conn.channel()
        assert w.stop(signum=signal.SIGTERM) == 0  # stop() fails unless the exit code is 0 within 5 s


def test_sigterm_with_a_connection_after_close_ok_exits_promptly():
    # After close-ok the broker waits for the client to close its socket (up to 5 s); shutting down does not.
    with WarrenProcess() as w:
        with RawClient(w.amqp_port) as c:
            c.handshake()
            c.send_method(0, CONNECTION_CLOSE, close_args(REPLY_SUCCESS, "bye"))
            c.expect_method(0, CONNECTION_CLOSE_OK)
            start = time.monotonic()
            assert w.stop(signum=signal.SIGTERM) == 0
            assert time.monotonic() - start < 2.5
            c.wait_closed(timeout=1, allow_frames=False)


def test_sigint_exits_zero():
    with WarrenProcess() as w:
        assert w.stop(signum=signal.SIGINT) == 0


def test_tune_defaults(warren):
    with RawClient(warren.amqp_port) as c:
        hs = c.handshake()
        assert hs.tune == {"channel_max": 2047, "frame_max": 131072, "heartbeat": 60}
        assert (hs.start["version_major"], hs.start["version_minor"]) == (0, 9)
        assert set(hs.start["mechanisms"].split()) >= {b"PLAIN", b"AMQPLAIN"}
        c.close_connection()


def test_tune_follows_flags(warren_factory):
    w = warren_factory("--heartbeat", "7", "--frame-max", "8192", "--channel-max", "10")
    with RawClient(w.amqp_port) as c:
        hs = c.handshake()
        assert hs.tune == {"channel_max": 10, "frame_max": 8192, "heartbeat": 7}
        c.close_connection()


def test_default_user_flags(warren_factory):
    w = warren_factory("--default-user", "alice", "--default-pass", "s3cret")
    with RawClient(w.amqp_port) as c:
        c.handshake("alice", "s3cret")
        c.close_connection()
    with RawClient(w.amqp_port) as c:
        c.login("guest", "guest")
        c.expect_connection_close(403)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def test_busy_wait_serves_clients_and_sleeps_when_idle(warren_factory):
    """--busy-wait-us: the workers poll for a while after their last work instead of sleeping at once. Messages
    go through as usual (queues on both workers, confirms), and once the clients stop the broker sleeps again:
    it does not poll forever."""
    w = warren_factory("--busy-wait-us", "2000")
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", w.amqp_port))
    ch = conn.channel()
    ch.confirm_delivery()
    queues = [f"bw{i}" for i in range(8)]  # by their names' hash, on both workers
    for q in queues:
        ch.queue_declare(q)
        for i in range(50):
            ch.basic_publish("", q, f"{q}-{i}".encode())
    for q in queues:
        got = []
        while True:
            method, _, body = ch.basic_get(q, auto_ack=True)
            if method is None:
                break
            got.append(body.decode())
        assert got == [f"{q}-{i}" for i in range(50)]
    conn.close()
    time.sleep(0.5)
    before = _cpu_seconds(w.pid)
    time.sleep(2.0)
    used = _cpu_seconds(w.pid) - before
    # Idle, each worker still wakes for its 250 ms tick and polls 2 ms after it: about 0.04 s of CPU in 2 s.
    # A loop that never slept would use about 4 s (two workers).
    assert used < 0.8, f"idle broker used {used:.2f} s of CPU in 2 s"


def test_busy_wait_out_of_range_is_refused(tmp_path):
    r = subprocess.run([warren_bin(), "--busy-wait-us", "100001", "--data-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert "--busy-wait-us: from 0 to 100000 microseconds" in r.stderr + r.stdout
