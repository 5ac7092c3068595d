"""Prometheus metrics as RabbitMQ's rabbitmq_prometheus serves them (--prometheus-port).

With pika traffic behind it (queues, confirmed and unroutable publishes, consumers with and without acks, gets,
redeliveries), each endpoint's output passes Debian's `promtool check metrics` with no problem reported. Then a real
Prometheus server (Debian's `prometheus`, on a free port, in a temp dir) scrapes warren every second, and every query
of RabbitMQ's "RabbitMQ-Overview" Grafana dashboard (deps/rabbitmq_prometheus/docker/grafana/dashboards/ in
rabbitmq-server; its template variables filled in as Grafana would) returns at least one series through Prometheus's
HTTP API, for the aggregated and the per-object endpoint alike. Also: rabbitmq_identity_info's labels, the exact `le`
strings of rabbitmq_message_size_bytes, the web gateway's families when the node reports them, and refusals."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pika
import pytest

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")

# Not a skip: a missing tool must not turn this test green (scripts/install-deps installs Debian's prometheus).
assert PROMTOOL and PROMETHEUS, "promtool/prometheus not found: run scripts/install-deps"

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SIZE_LE = ["100.0", "1000.0", "10000.0", "100000.0", "1e+06", "1e+07", "5e+07", "1e+08", "+Inf"]
DETAILED_FAMILIES = ["connection_churn_metrics", "node_coarse_metrics", "node_metrics", "auth_attempt_metrics",
                     "queue_coarse_metrics", "queue_consumer_count", "queue_metrics", "queue_delivery_metrics",
                     "channel_metrics", "channel_exchange_metrics", "channel_queue_metrics",
                     "connection_coarse_metrics", "connection_metrics", "exchange_metrics", "vhost_status",
                     "exchange_names", "exchange_bindings"]

# --- the RabbitMQ-Overview dashboard ------------------------------------------------------------------------------
# Its panels' expressions (rabbitmq-server's main branch, 2026, plus two panels of its 3.11 to 4.x versions), with its
# template variables: $rabbitmq_cluster, $namespace, $endpoint, $__rate_interval and $__range. Every panel joins its
# metric to rabbitmq_identity_info like this:
IDENTITY = ('rabbitmq_identity_info{rabbitmq_cluster="$rabbitmq_cluster", namespace="$namespace", '
            'rabbitmq_endpoint="$endpoint"}')
J1 = f"* on(instance, job) group_left(rabbitmq_cluster) {IDENTITY}"
J2 = f"* on(instance, job) group_left(rabbitmq_cluster, rabbitmq_node) {IDENTITY}"


def _rate_by_node(metric: str) -> str:
    return f"sum(rate({metric}[$__rate_interval]) {J2}) by(rabbitmq_node)"


def _size_share(upper: str, lower: str | None) -> str:
    def inc(le):
        return f'sum(increase(rabbitmq_message_size_bytes_bucket{{le="{le}"}}[$__range]) {J2})'
    top = inc(upper) if lower is None else f"({inc(upper)} - {inc(lower)})"
    return f"{top} / {inc('+Inf')}"


DASHBOARD = {
    "Ready messages": f"sum(rabbitmq_queue_messages_ready {J1})",
    "Outgoing messages / s": f"sum(irate(rabbitmq_global_messages_delivered_total[$__rate_interval]) {J1})",
    "Publishers": f"sum(rabbitmq_global_publishers {J1})",
    "Connections": f"sum(rabbitmq_connections {J1})",
    "Queues": f"sum(rabbitmq_queues {J1})",
    "Unacknowledged messages": f"sum(rabbitmq_queue_messages_unacked {J1})",
    "Incoming messages / s": f"sum(irate(rabbitmq_global_messages_received_total[$__rate_interval]) {J1})",
    "Consumers": f"sum(rabbitmq_global_consumers {J1})",
    "Channels": f"sum(rabbitmq_channels {J1})",
    "Nodes": ('count(rabbitmq_identity_info{namespace="$namespace",rabbitmq_cluster="$rabbitmq_cluster",'
              'rabbitmq_endpoint="$endpoint"})'),
    "Nodes table": ("rabbitmq_erlang_uptime_seconds *on(instance,job) group_left(rabbitmq_version, erlang_version) "
                    f"rabbitmq_build_info {J2}"),
    "Memory available before publishers blocked": (f"(rabbitmq_resident_memory_limit_bytes {J2}) - "
                                                   f"(rabbitmq_process_resident_memory_bytes {J2})"),
    "Disk space available before publishers blocked": (
        f"(rabbitmq_disk_space_available_bytes - rabbitmq_disk_space_available_limit_bytes) {J2}"),
    "File descriptors available": f"(rabbitmq_process_max_fds - rabbitmq_process_open_fds) {J2}",
    "Messages ready to be delivered to consumers": f"sum(rabbitmq_queue_messages_ready {J2}) by(rabbitmq_node)",
    "Messages pending consumer acknowledgement": f"sum(rabbitmq_queue_messages_unacked {J2}) by(rabbitmq_node)",
    "Messages published / s": _rate_by_node("rabbitmq_global_messages_received_total"),
    "Avg Size": (f"sum (increase(rabbitmq_message_size_bytes_sum[$__range]) {J2}) / "
                 f"sum (increase(rabbitmq_message_size_bytes_count[$__range]) {J2})"),
    **{f"Message Size Distribution le={le}": _size_share(le, lower)
       for le, lower in zip(SIZE_LE, [None] + SIZE_LE[:-1])},
    "Messages routed to queues / s": _rate_by_node("rabbitmq_global_messages_routed_total"),
    "Messages confirmed to publishers / s": _rate_by_node("rabbitmq_global_messages_confirmed_total"),
    "Unroutable messages dropped / s": _rate_by_node("rabbitmq_global_messages_unroutable_dropped_total"),
    "Unroutable messages returned / s": _rate_by_node("rabbitmq_global_messages_unroutable_returned_total"),
    "Messages unconfirmed to publishers / s": (
        f"sum(rate(rabbitmq_global_messages_received_confirm_total[$__rate_interval]) {J2} - "
        f"rate(rabbitmq_global_messages_confirmed_total[$__rate_interval]) {J2}) by(rabbitmq_node)"),
    "Messages delivered / s": (
        f"sum((rate(rabbitmq_global_messages_delivered_consume_auto_ack_total[$__rate_interval]) {J2}) + "
        f"(rate(rabbitmq_global_messages_delivered_consume_manual_ack_total[$__rate_interval]) {J2})) "
        "by(rabbitmq_node)"),
    "Messages redelivered / s": _rate_by_node("rabbitmq_global_messages_redelivered_total"),
    "Messages delivered with manual ack / s": _rate_by_node(
        "rabbitmq_global_messages_delivered_consume_manual_ack_total"),
    "Messages delivered auto ack / s": _rate_by_node("rabbitmq_global_messages_delivered_consume_auto_ack_total"),
    "Messages acknowledged / s": _rate_by_node("rabbitmq_global_messages_acknowledged_total"),
    "Polling operations with auto ack / s": _rate_by_node("rabbitmq_global_messages_delivered_get_auto_ack_total"),
    "Polling operations that yield no result / s": _rate_by_node("rabbitmq_global_messages_get_empty_total"),
    "Polling operations with manual ack / s": _rate_by_node(
        "rabbitmq_global_messages_delivered_get_manual_ack_total"),
    "Total queues": f"rabbitmq_queues {J2}",
    "Queues declared / s": _rate_by_node("rabbitmq_queues_declared_total"),
    "Queues created / s": _rate_by_node("rabbitmq_queues_created_total"),
    "Queues deleted / s": _rate_by_node("rabbitmq_queues_deleted_total"),
    "Total channels": f"rabbitmq_channels {J2}",
    "Channels opened / s": _rate_by_node("rabbitmq_channels_opened_total"),
    "Channels closed / s": _rate_by_node("rabbitmq_channels_closed_total"),
    "Total connections": f"rabbitmq_connections {J2}",
    "Connections opened / s": _rate_by_node("rabbitmq_connections_opened_total"),
    "Connections closed / s": _rate_by_node("rabbitmq_connections_closed_total"),
    # Panels of the same dashboard in RabbitMQ 3.11 to 4.x that later changed.
    "TCP sockets available (3.11 to 4.x)": (
        f"(rabbitmq_process_max_tcp_sockets - rabbitmq_process_open_tcp_sockets) {J2}"),
    "Publishers (3.11, 3.12)": f"sum(rabbitmq_channels {J1}) - sum(rabbitmq_channel_consumers {J1})",
}


# --- helpers ------------------------------------------------------------------------------------------------------


def get(port: int, path: str, method: str = "GET", headers: dict | None = None):
    """(status, headers, body text) of a request to warren's Prometheus port (a gzip body is unpacked)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
            if r.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            return r.status, r.headers, body.decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def promtool_check(text: str) -> None:
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), (
        f"promtool check metrics: exit {r.returncode}\n{r.stdout}\n{r.stderr}")


def families(text: str) -> dict[str, str]:
    """family name -> TYPE."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_traffic(amqp_port: int) -> tuple[pika.BlockingConnection, dict]:
    """Queues, publishes of several sizes (confirmed, returned, dropped), consumers with and without acks, gets and a
    redelivery. Returns the connection, left open (its consumers and channels are gauges to see), and what was done."""
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", amqp_port, connection_attempts=3))
    ch = conn.channel()
    ch.confirm_delivery()
    for q in ("prom.work", "prom.auto", "prom.get", "prom.idle"):
        ch.queue_declare(q)
    sizes = [10, 50, 500, 5000, 50_000, 200_000, 2_000_000]
    published = 0
    for size in sizes:
        ch.basic_publish("", "prom.work", b"x" * size)
        published += 1
    for i in range(20):
        ch.basic_publish("", "prom.auto", f"auto {i}".encode())
        ch.basic_publish("", "prom.get", f"get {i}".encode())
        published += 2
    try:
        ch.basic_publish("amq.direct", "nowhere", b"returned", mandatory=True)
    except pika.exceptions.UnroutableError:
        pass
    published += 1
    ch.basic_publish("amq.direct", "nowhere", b"dropped")
    published += 1
    # basic.get: manual ack, auto ack, and one on an empty queue.
    method, _, _ = ch.basic_get("prom.get")
    ch.basic_ack(method.delivery_tag)
    ch.basic_get("prom.get", auto_ack=True)
    ch.basic_get("prom.idle")
    # A redelivery: rejected with requeue, then taken again.
    method, _, _ = ch.basic_get("prom.get")
    ch.basic_reject(method.delivery_tag, requeue=True)
    method, _, _ = ch.basic_get("prom.get")
    assert method.redelivered
    ch.basic_ack(method.delivery_tag)

    consumer = conn.channel()
    consumer.basic_qos(prefetch_count=3)
    got = []
    consumer.basic_consume("prom.work", lambda c, m, p, b: got.append(m.delivery_tag))  # manual ack
    consumer.basic_consume("prom.auto", lambda c, m, p, b: None, auto_ack=True)

    def wait_for_deliveries(n):
        deadline = time.monotonic() + 10
        while len(got) < n and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.1)
        assert len(got) == n

    wait_for_deliveries(3)  # the prefetch
    consumer.basic_ack(got[0])
    wait_for_deliveries(4)  # one more in its place: 3 unacknowledged
    return conn, {"published": published, "queues": 4}


class PrometheusServer:
    """Debian's Prometheus on a free port with a temp config scraping warren's three endpoints every second, on one
    node or on several (a cluster's nodes are scraped one by one, as RabbitMQ's are)."""

    def __init__(self, target_port: int | list[int]):
        ports = target_port if isinstance(target_port, list) else [target_port]
        targets = ", ".join(f'"127.0.0.1:{p}"' for p in ports)
        self.dir = Path(tempfile.mkdtemp(prefix="warren-prometheus-"))
        self.port = free_port()
        detailed = "".join(f"\n        - {f}" for f in DETAILED_FAMILIES)
        (self.dir / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: warren-aggregated
    metrics_path: /metrics
    static_configs: [{{targets: [{targets}]}}]
  - job_name: warren-per-object
    metrics_path: /metrics/per-object
    static_configs: [{{targets: [{targets}]}}]
  - job_name: warren-detailed
    metrics_path: /metrics/detailed
    params:
      family:{detailed}
    static_configs: [{{targets: [{targets}]}}]
""")
        self.log = open(self.dir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={self.dir / 'prometheus.yml'}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, f"prometheus exited with {self.proc.returncode}\n{self.log_text()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            assert time.monotonic() < deadline, f"prometheus not ready in 30 s\n{self.log_text()}"
            time.sleep(0.2)

    def log_text(self) -> str:
        self.log.flush()
        return (self.dir / "prometheus.log").read_text(errors="replace")[-4000:]

    def api(self, path: str, **params) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params, doseq=True)}"
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list:
        return self.api("query", query=expr)["result"]

    def wait_for(self, expr: str, what: str, timeout: float = 30.0) -> list:
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result:
                return result
            assert time.monotonic() < deadline, f"no series for {what}: {expr}\n{self.log_text()}"
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def prometheus_of(request):
    started = []

    def make(port: int | list[int]) -> PrometheusServer:
        p = PrometheusServer(port)
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()


# --- the tests ----------------------------------------------------------------------------------------------------


def test_every_endpoint_passes_promtool(warren):
    conn, _ = make_traffic(warren.amqp_port)
    try:
        status, headers, text = get(warren.prometheus_port, "/metrics")
        assert status == 200
        assert headers["Content-Type"] == CONTENT_TYPE
        promtool_check(text)
        fams = families(text)
        assert fams["rabbitmq_global_messages_received_total"] == "counter"
        assert fams["rabbitmq_message_size_bytes"] == "histogram"
        assert fams["rabbitmq_identity_info"] == "untyped"
        # Aggregated: no object labels.
        assert 'queue="' not in text and 'channel="' not in text
        # Compressed for a scraper that takes gzip (Prometheus does).
        status, headers, unpacked = get(warren.prometheus_port, "/metrics", headers={"Accept-Encoding": "gzip"})
        assert status == 200 and headers["Content-Encoding"] == "gzip"
        promtool_check(unpacked)
        assert families(unpacked) == families(text)

        status, _, per_object = get(warren.prometheus_port, "/metrics/per-object")
        assert status == 200
        promtool_check(per_object)
        assert 'rabbitmq_queue_messages_ready{vhost="/",queue="prom.work"}' in per_object
        assert re.search(r'^rabbitmq_queue_consumers\{vhost="/",queue="prom.auto"\} 1$', per_object, re.M)
        assert re.search(r'^rabbitmq_queue_messages_unacked\{vhost="/",queue="prom.work"\} 3$', per_object, re.M)
        assert 'rabbitmq_queue_info{vhost="/",queue="prom.idle",queue_type="rabbit_classic_queue"' in per_object

        query = "&".join(f"family={f}" for f in DETAILED_FAMILIES + ["ra_metrics", "no_such_family"])
        status, _, detailed = get(warren.prometheus_port, f"/metrics/detailed?{query}")
        assert status == 200
        promtool_check(detailed)
        names = set(families(detailed))
        assert "rabbitmq_detailed_queue_messages_ready" in names
        assert "rabbitmq_cluster_vhost_status" in names
        assert all(n.startswith(("rabbitmq_detailed_", "rabbitmq_cluster_")) or
                   n in ("rabbitmq_build_info", "rabbitmq_identity_info") for n in names), names

        # The vhost and queue filters of /detailed.
        _, _, filtered = get(warren.prometheus_port,
                             "/metrics/detailed?family=queue_coarse_metrics&vhost=%2F&queue=%5Eprom%5C.(work%7Cget)%24")
        promtool_check(filtered)
        queues = set(re.findall(r'^rabbitmq_detailed_queue_messages\{vhost="/",queue="([^"]+)"\}', filtered, re.M))
        assert queues == {"prom.work", "prom.get"}, filtered
        _, _, elsewhere = get(warren.prometheus_port, "/metrics/detailed?family=queue_coarse_metrics&vhost=nope")
        assert "rabbitmq_detailed_queue_messages{" not in elsewhere
    finally:
        conn.close()


def test_message_size_buckets_and_identity(warren):
    conn, _ = make_traffic(warren.amqp_port)
    conn.close()
    _, _, text = get(warren.prometheus_port, "/metrics")
    les = re.findall(r'^rabbitmq_message_size_bytes_bucket\{protocol="amqp091",le="([^"]+)"\} (\d+)$', text, re.M)
    assert [le for le, _ in les] == SIZE_LE
    counts = [int(n) for _, n in les]
    assert counts == sorted(counts) and counts[-1] >= 49, les
    # 7 sizes to prom.work: 10, 50 <= 100; 500; 5000; 50 000; 200 000 <= 1e6; 2 000 000 <= 1e7.
    by_le = dict(les)
    assert int(by_le["1e+07"]) - int(by_le["1e+06"]) >= 1
    assert int(by_le["1e+06"]) - int(by_le["100000.0"]) >= 1

    overview = json.loads(urllib.request.urlopen(
        urllib.request.Request(f"http://127.0.0.1:{warren.http_port}/api/overview",
                               headers={"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="}), timeout=10).read())
    for path, endpoint in (("/metrics", "aggregated"), ("/metrics/per-object", "per-object"),
                           ("/metrics/detailed", "detailed")):
        _, _, t = get(warren.prometheus_port, path)
        ident = re.findall(r"^rabbitmq_identity_info\{(.*)\} 1$", t, re.M)
        assert len(ident) == 1, t
        labels = dict(re.findall(r'(\w+)="([^"]*)"', ident[0]))
        assert labels == {"rabbitmq_node": overview["node"], "rabbitmq_cluster": overview["cluster_name"],
                          "rabbitmq_endpoint": endpoint}
        assert re.search(r'^rabbitmq_build_info\{.*product_name="Warren".*\} 1$', t, re.M), t


def test_refusals_and_empty_detailed(warren):
    port = warren.prometheus_port
    status, _, body = get(port, "/nope")
    assert status == 404
    status, _, body = get(port, "/metrics/memory-breakdown")
    assert (status, body) == (404, "Unknown Registry")
    status, headers, _ = get(port, "/metrics", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    status, _, body = get(port, "/metrics/detailed?family=queue_metrics&queue=(")
    assert status == 400
    # /detailed without a family: valid, and nothing but the node's identity.
    status, headers, body = get(port, "/metrics/detailed")
    assert status == 200 and headers["Content-Type"] == CONTENT_TYPE
    promtool_check(body)
    assert set(families(body)) == {"rabbitmq_build_info", "rabbitmq_identity_info"}
    status, headers, body = get(port, "/metrics", method="HEAD")
    assert status == 200 and body == "" and int(headers["Content-Length"]) > 1000


def test_gateway_families(warren):
    _, _, text = get(warren.prometheus_port, "/metrics")
    fams = families(text)
    for name, kind in [("warren_gateway_connections", "gauge"), ("warren_gateway_online_users", "gauge"),
                       ("warren_gateway_inboxes", "gauge"), ("warren_gateway_held_events", "gauge"),
                       ("warren_gateway_rooms", "gauge"), ("warren_gateway_events_delivered_total", "counter"),
                       ("warren_gateway_replays_total", "counter"), ("warren_gateway_resets_total", "counter"),
                       ("warren_gateway_slow_readers_cut_total", "counter"),
                       ("warren_gateway_delivery_latency_seconds", "histogram")]:
        assert fams.get(name) == kind, name
    transports = re.findall(r'^warren_gateway_connections\{transport="(\w+)"\}', text, re.M)
    assert transports == ["websocket", "sse", "stream", "longpoll"]
    assert re.search(r'^warren_gateway_delivery_latency_seconds_bucket\{le="\+Inf"\} \d+$', text, re.M)


def test_prometheus_answers_every_dashboard_query(warren, prometheus_of):
    conn, done = make_traffic(warren.amqp_port)
    try:
        prom = prometheus_of(warren.prometheus_port)
        # Every job up, scraped a few times (irate and increase need two samples or more).
        for job in ("warren-aggregated", "warren-per-object", "warren-detailed"):
            prom.wait_for(f'count_over_time(up{{job="{job}"}}[1m]) >= 3 and up{{job="{job}"}} == 1', job)
        # More traffic between scrapes, so rates move.
        ch = conn.channel()
        for i in range(10):
            ch.basic_publish("", "prom.get", f"late {i}".encode())
        ch.close()
        published = done["published"] + 10
        prom.wait_for(f'rabbitmq_global_messages_received_total{{job="warren-aggregated"}} == {published}',
                      "the publishes counted")
        time.sleep(2.5)

        # The dashboard's template variables, as Grafana would fill them.
        assert prom.api("label/namespace/values") == []  # outside Kubernetes: no namespace; "" matches none
        clusters = prom.api("series", **{"match[]": 'rabbitmq_identity_info{namespace=""}'})
        cluster = {s["rabbitmq_cluster"] for s in clusters}
        assert len(cluster) == 1, clusters
        cluster = cluster.pop()
        endpoints = {s["rabbitmq_endpoint"] for s in prom.api(
            "series", **{"match[]": f'rabbitmq_identity_info{{namespace="", rabbitmq_cluster="{cluster}", '
                                    'rabbitmq_endpoint!="memory-breakdown"}'})}
        assert endpoints == {"aggregated", "per-object", "detailed"}

        empty = []
        for endpoint in ("aggregated", "per-object"):
            for title, expr in DASHBOARD.items():
                q = (expr.replace("$rabbitmq_cluster", cluster).replace("$namespace", "")
                     .replace("$endpoint", endpoint).replace("$__rate_interval", "30s")
                     .replace("$__range", "1m"))
                if not prom.query(q):
                    empty.append(f"{endpoint}: {title}: {q}")
        assert not empty, "dashboard queries without a series:\n" + "\n".join(empty)

        # Values Prometheus holds are the broker's.
        def value(expr):
            r = prom.query(expr)
            assert len(r) == 1, (expr, r)
            return float(r[0]["value"][1])

        agg = '{job="warren-aggregated"}'
        assert value(f"rabbitmq_queues{agg}") == done["queues"]
        assert value(f"rabbitmq_connections{agg}") == 1
        assert value(f"rabbitmq_channels{agg}") == 2
        assert value(f"rabbitmq_global_consumers{agg}") == 2
        assert value(f"rabbitmq_global_publishers{agg}") >= 1
        assert value(f"rabbitmq_global_messages_unroutable_returned_total{agg}") == 1
        assert value(f"rabbitmq_global_messages_unroutable_dropped_total{agg}") == 1
        assert value(f"rabbitmq_global_messages_get_empty_total{agg}") == 1
        assert value(f"rabbitmq_global_messages_redelivered_total{agg}") >= 1
        # Every publish of the confirming channel is confirmed, unroutable ones too (as RabbitMQ does).
        assert value(f"rabbitmq_global_messages_received_confirm_total{agg}") == done["published"]
        assert value(f"rabbitmq_global_messages_confirmed_total{agg}") == done["published"]
        assert value(f'rabbitmq_queue_messages_unacked{{job="warren-per-object",queue="prom.work"}}') == 3
        assert value(f"sum(rabbitmq_queue_messages_ready{{job=\"warren-per-object\"}})") == \
            value(f"rabbitmq_queue_messages_ready{agg}")
        les = {s["metric"]["le"] for s in prom.query(f"rabbitmq_message_size_bytes_bucket{agg}")}
        assert les == set(SIZE_LE)
        assert prom.query('rabbitmq_detailed_queue_messages_ready{job="warren-detailed",queue="prom.work"}')
        assert prom.query('rabbitmq_cluster_exchange_name{job="warren-detailed",exchange="amq.topic"}')
    finally:
        conn.close()


def test_cluster_nodes_label_every_series_and_dashboards_still_join(warren_factory, prometheus_of):
    """Two nodes of a cluster (a real etcd): every series of every endpoint carries rabbitmq_node (the node's name),
    each scrape passes promtool, and Prometheus scraping both nodes sums per node directly and through the dashboard's
    join with rabbitmq_identity_info (group_left over a label the series already has)."""
    from support.etcd_process import EtcdProcess

    etcd = EtcdProcess().start()
    try:
        nodes = [warren_factory("--node-name", name, "--cluster-name", "promc", "--etcd-endpoints", etcd.endpoint,
                                "--etcd-lease-ttl", "2", workers=1) for name in ("p1", "p2")]
        for i, node in enumerate(nodes):
            conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", node.amqp_port))
            ch = conn.channel()
            ch.queue_declare(f"prom.node{i}")
            for _ in range(i + 2):
                ch.basic_publish("", f"prom.node{i}", b"x")
            conn.close()
        for node, name in zip(nodes, ("p1", "p2")):
            for path in ("/metrics", "/metrics/per-object",
                         "/metrics/detailed?family=queue_coarse_metrics&family=exchange_names"):
                status, _, body = get(node.prometheus_port, path)
                assert status == 200
                text = body
                promtool_check(text)
                samples = [line for line in text.splitlines() if line and not line.startswith("#")]
                assert len(samples) > 5, text
                unlabelled = [line for line in samples if f'rabbitmq_node="{name}"' not in line]
                assert not unlabelled, f"{path} on {name}: series without rabbitmq_node: {unlabelled[:5]}"

        prom = prometheus_of([n.prometheus_port for n in nodes])
        ready = 'sum by(rabbitmq_node) (rabbitmq_queue_messages_ready{job="warren-per-object"})'
        prom.wait_for(f"count({ready}) == 2", "both nodes scraped")
        got = {s["metric"]["rabbitmq_node"]: float(s["value"][1]) for s in prom.query(ready)}
        assert got == {"p1": 2.0, "p2": 3.0}
        joined = prom.query(f'sum(rabbitmq_queue_messages_ready{{job="warren-per-object"}} {J2}) by(rabbitmq_node)'
                            .replace("$rabbitmq_cluster", "promc").replace("$namespace", "").replace("$endpoint", "per-object"))
        assert {s["metric"]["rabbitmq_node"]: float(s["value"][1]) for s in joined} == got
    finally:
        etcd.cleanup()
