#!/usr/bin/python3
"""Memory per idle AMQP connection: start warren, open N connections (full handshake, guest, one channel each),
leave them idle, and report the server's RSS growth per connection. Loopback only; bounded in count and time.

    /usr/bin/python3 bench/conn_memory.py [--connections 10000] [--workers 2] [--heartbeat 60] [--tls [--tls12]]

--tls connects to the AMQPS port instead, with a certificate made for the run by the openssl command (TLS 1.3,
the client's default suite).

WARREN_BIN (default build/warren) picks the binary. The last line printed is a row for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support import amqp_raw as amqp  # noqa: E402
from support.warren_process import WarrenProcess  # noqa: E402

MAX_OPEN_FILES = 19_000       # the per-process budget of this workplace
PORTS_PER_SOURCE = 5_000      # spread over 127.0.0.x: repeated runs stay clear of TIME_WAIT port exhaustion
CONCURRENT_HANDSHAKES = int(os.environ.get("CONN_MEMORY_CONCURRENCY", "256"))
TIME_LIMIT = 300.0            # the whole run stops by itself after this


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def raise_nofile(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, MAX_OPEN_FILES) if hard != resource.RLIM_INFINITY else MAX_OPEN_FILES
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if needed > soft:
        sys.exit(f"need {needed} open files, limit is {soft}: use fewer --connections")
    return soft


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    header = await reader.readexactly(7)
    frame_type, channel, size = struct.unpack(">BHI", header)
    rest = await reader.readexactly(size + 1)
    if rest[-1] != amqp.FRAME_END:
        raise RuntimeError("bad frame end from server")
    return frame_type, channel, rest[:-1]


async def expect(reader: asyncio.StreamReader, channel: int, method: tuple[int, int]) -> dict:
    while True:
        frame_type, ch, payload = await read_frame(reader)
        if frame_type == amqp.FRAME_HEARTBEAT:
            continue
        got = struct.unpack(">HH", payload[:4]) if frame_type == amqp.FRAME_METHOD else None
        if (ch, got) != (channel, method):
            desc = amqp.Frame(frame_type, ch, payload).describe()
            raise RuntimeError(f"expected {amqp.METHOD_NAMES[method]}, got {desc}")
        return amqp.decode_method_args(method, payload[4:])


def make_certificate(directory: str) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (P-256, as a small server would use)."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


async def open_one(port: int, source: str, heartbeat: int, sem: asyncio.Semaphore,
                   tls: ssl.SSLContext | None = None):
    async with sem:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0), ssl=tls)
        writer.write(amqp.PROTOCOL_HEADER)
        await expect(reader, 0, amqp.CONNECTION_START)
        writer.write(amqp.method_frame(0, amqp.CONNECTION_START_OK, amqp.start_ok_args(
            amqp.DEFAULT_CLIENT_PROPERTIES, "PLAIN", amqp.plain_response("guest", "guest"))))
        tune = await expect(reader, 0, amqp.CONNECTION_TUNE)
        writer.write(amqp.method_frame(0, amqp.CONNECTION_TUNE_OK,
                                       amqp.tune_ok_args(tune["channel_max"], tune["frame_max"], heartbeat))
                     + amqp.method_frame(0, amqp.CONNECTION_OPEN, amqp.open_args("/")))
        await expect(reader, 0, amqp.CONNECTION_OPEN_OK)
        writer.write(amqp.method_frame(1, amqp.CHANNEL_OPEN, amqp.channel_open_args()))
        await expect(reader, 1, amqp.CHANNEL_OPEN_OK)
        return reader, writer


async def run(args) -> int:
    n = args.connections
    sources = [f"127.0.0.{i + 1}" for i in range(max(1, math.ceil(n / PORTS_PER_SOURCE)))]
    raise_nofile(n + 256)

    extra, tls, port_key = [], None, "amqp"
    if args.tls:
        cert_dir = tempfile.mkdtemp(prefix="warren-conn-memory-")
        cert, key = make_certificate(cert_dir)
        extra = ["--tls-cert", cert, "--tls-key", key, "--amqps-port", "0", "--https-port", "0",
                 "--web-tls-port", "0"]
        tls = ssl.create_default_context(cafile=cert)
        if args.tls12:
            tls.maximum_version = ssl.TLSVersion.TLSv1_2
        port_key = "amqps"
    warren = WarrenProcess(extra, workers=args.workers)
    warren.start()
    try:
        await asyncio.sleep(0.5)
        before = rss_kib(warren.pid)
        sem = asyncio.Semaphore(CONCURRENT_HANDSHAKES)
        t0 = time.monotonic()
        port = warren.ports[port_key]
        conns = await asyncio.gather(*(open_one(port, sources[i % len(sources)], args.heartbeat, sem, tls)
                                       for i in range(n)))
        handshake_s = time.monotonic() - t0
        await asyncio.sleep(2.0)
        warren.assert_alive()
        after = rss_kib(warren.pid)
        for _, writer in conns:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for _, w in conns), return_exceptions=True)
    except BaseException:
        warren.kill()
        print(warren.log_tail(), file=sys.stderr)
        raise
    rc = warren.stop(check=False)
    warren.cleanup()

    per_conn = (after - before) / n
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip() or "?"
    except OSError:
        commit = "?"
    kind = ("TLS 1.2" if args.tls12 else "TLS") if args.tls else "plain"
    print(f"connections:     {n} {kind} (one channel each, heartbeat {args.heartbeat}, sources {len(sources)})")
    print(f"workers:         {args.workers}")
    print(f"handshakes:      {handshake_s:.2f} s ({n / handshake_s:.0f}/s)")
    print(f"RSS before:      {before / 1024:.1f} MiB")
    print(f"RSS after:       {after / 1024:.1f} MiB")
    print(f"per connection:  {per_conn:.2f} KiB")
    print(f"warren exit:     {rc}")
    print(f"| conn_memory | {commit} | {n} idle {kind} connections, 1 channel each, {args.workers} workers | "
          f"RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB | {per_conn:.2f} KiB/connection | "
          f"handshakes {handshake_s:.1f} s |")
    return 0 if rc == 0 else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--heartbeat", type=int, default=60, help="heartbeat to negotiate (0 disables)")
    p.add_argument("--tls", action="store_true", help="connect to the AMQPS port (a certificate is made for the run)")
    p.add_argument("--tls12", action="store_true", help="with --tls: TLS 1.2 instead of the client's default 1.3")
    args = p.parse_args()
    if not 1 <= args.connections <= MAX_OPEN_FILES - 500:
        p.error(f"--connections must be between 1 and {MAX_OPEN_FILES - 500}")
    if "WARREN_BIN" not in os.environ and not (REPO / "build" / "warren").exists():
        p.error("build/warren not found: build it or set WARREN_BIN")
    return asyncio.run(asyncio.wait_for(run(args), TIME_LIMIT))


if __name__ == "__main__":
    sys.exit(main())
