"""warren-perf's backlog options against the real broker: --pmessages (each producer stops after N; with no
consumers the run then ends by itself) and --keep-queues (no purge before, no delete after), which let one run
fill a queue and another drain it (bench/backlog.py). The default (purge first, delete at the end) is checked to
be unchanged."""

import json
import os
import subprocess
from pathlib import Path

import pika
import pika.exceptions
import pytest

from support.warren_process import warren_bin

PERF = Path(os.environ.get("WARREN_PERF_BIN", Path(warren_bin()).parent / "warren-perf"))
QUEUE = "perf-q-0"


def perf(warren, *args, timeout=60):
    """Runs warren-perf with --json against `warren`; returns its summary."""
    if not PERF.exists():
        pytest.skip(f"{PERF} not built")
    p = subprocess.run([str(PERF), "--port", str(warren.amqp_port), "--json", *args], capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def depth(warren, queue=QUEUE):
    """The queue's message count, or None if it does not exist."""
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", warren.amqp_port, socket_timeout=5))
    try:
        return conn.channel().queue_declare(queue, passive=True).method.message_count
    except pika.exceptions.ChannelClosedByBroker as e:
        assert e.reply_code == 404
        return None
    finally:
        if conn.is_open:
            conn.close()


def test_pmessages_ends_a_producer_only_run_and_keep_queues_leaves_the_backlog(warren):
    s = perf(warren, "-x", "1", "-y", "0", "-s", "100", "--pmessages", "2500", "--keep-queues", "-z", "30")
    assert s["sent"] == 2500
    assert s["duration_s"] < 20  # ended by the count, not by -z
    assert depth(warren) == 2500
    # With confirms the run ends once all of them are confirmed: the queue then holds them all.
    s = perf(warren, "-x", "1", "-y", "0", "-s", "100", "-C", "1000", "--confirm", "100", "--keep-queues",
             "-z", "30")
    assert s["sent"] == s["confirmed"] == 1000
    assert depth(warren) == 3500


def test_pmessages_with_a_rate(warren):
    s = perf(warren, "-x", "1", "-y", "0", "-s", "16", "-r", "4000", "-C", "1000", "--keep-queues", "-z", "30")
    assert s["sent"] == 1000
    assert 0.2 < s["duration_s"] < 10


def test_consumer_only_run_drains_a_kept_queue_and_leaves_it(warren):
    perf(warren, "-x", "1", "-y", "0", "-s", "100", "-C", "3000", "--confirm", "100", "--keep-queues")
    s = perf(warren, "-x", "0", "-y", "1", "-q", "200", "--multi-ack-every", "50", "--keep-queues", "-z", "2")
    assert s["received"] == 3000
    assert depth(warren) == 0  # still declared, empty


def test_default_run_purges_first_and_deletes_at_the_end(warren):
    perf(warren, "-x", "1", "-y", "0", "-s", "100", "-C", "500", "--confirm", "100", "--keep-queues")
    s = perf(warren, "-x", "0", "-y", "1", "-q", "200", "-z", "1")
    assert s["received"] == 0
    assert depth(warren) is None
