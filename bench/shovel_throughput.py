#!/usr/bin/env python3
"""Dynamic shovel throughput: a backlog of N persistent messages moved by Warren's shovel (ack-mode on-confirm)
Warren -> RabbitMQ, then RabbitMQ -> Warren. Starts build/warren (tests/support/warren_process.py) and Debian's
RabbitMQ (tests/support/reference_rabbitmq.sh) in temp dirs and stops them. The time is from the PUT of the shovel to
the last message counted at the destination (polled every 50 ms), connection set-up included.

  /usr/bin/python3 bench/shovel_throughput.py --messages 50000 --size 100"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pika
import pika.exceptions

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from support.warren_process import WarrenProcess  # noqa: E402
from test_federation import api, count, uri  # noqa: E402


def fill(port, queue, n, size):
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    ch = conn.channel()
    ch.queue_declare(queue, durable=True)
    ch.confirm_delivery()
    body = b"x" * size
    for _ in range(n):
        ch.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
    conn.close()


def move(h, name, src, sq, dst, dq, n, prefetch):
    t0 = time.time()
    status, _ = api(h, "PUT", f"parameters/shovel/%2f/{name}", {"value": {
        "src-uri": src, "src-queue": sq, "dest-uri": dst, "dest-queue": dq, "ack-mode": "on-confirm",
        "src-prefetch-count": prefetch}})
    assert status == 201, status
    while True:
        try:
            if count(int(dst.rsplit(":", 1)[1].split("/")[0]), dq) >= n:
                return time.time() - t0
        except pika.exceptions.ChannelClosedByBroker:  # the shovel has not declared it yet
            pass
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=50000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--prefetch", type=int, default=1000)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="warren-bench-rabbit-")
    os.chmod(d, 0o755)
    ref = str(ROOT / "tests" / "support" / "reference_rabbitmq.sh")
    env = dict(os.environ, WARREN_REF_PLUGINS="rabbitmq_management,rabbitmq_shovel")
    out = subprocess.run([ref, "start", d], env=env, capture_output=True, text=True, check=True)
    ra = int(out.stdout.strip().split(",")[0])
    w = WarrenProcess([])
    w.start()
    try:
        fill(w.amqp_port, "w-src", a.messages, a.size)
        t = move(w.http_port, "w2r", uri(w.amqp_port), "w-src", uri(ra), "r-dst", a.messages, a.prefetch)
        print(f"Warren -> RabbitMQ: {a.messages} x {a.size} B in {t:.2f} s = {a.messages / t:.0f} msg/s")
        api(w.http_port, "DELETE", "parameters/shovel/%2f/w2r")
        t = move(w.http_port, "r2w", uri(ra), "r-dst", uri(w.amqp_port), "w-dst", a.messages, a.prefetch)
        print(f"RabbitMQ -> Warren: {a.messages} x {a.size} B in {t:.2f} s = {a.messages / t:.0f} msg/s")
    finally:
        w.stop(check=False)
        w.cleanup()
        subprocess.run([ref, "stop", d], env=env, capture_output=True)
        subprocess.run(["rm", "-rf", d])


if __name__ == "__main__":
    main()
