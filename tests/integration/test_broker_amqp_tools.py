"""Queues through Debian's amqp-tools (rabbitmq-c's command-line clients): amqp-declare-queue, amqp-publish,
amqp-get, amqp-consume and amqp-delete-queue."""

import re
import shutil
import subprocess

import pytest

TOOLS = ["amqp-declare-queue", "amqp-publish", "amqp-get", "amqp-consume", "amqp-delete-queue"]


@pytest.fixture(autouse=True)
def _need_amqp_tools():
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: apt-get install -y amqp-tools")


def tool(warren, name, *args, timeout=20):
    return subprocess.run([shutil.which(name), "--server", "127.0.0.1", "--port", str(warren.amqp_port), *args],
                          capture_output=True, text=True, timeout=timeout)


def ok(result):
    assert result.returncode == 0, f"{result.args[0]} exited {result.returncode}: {result.stderr}"
    return result.stdout


def publish(warren, queue, *messages):
    for m in messages:
        ok(tool(warren, "amqp-publish", "-r", queue, "-b", m))


def test_declare_queue_prints_its_name(warren):
    assert ok(tool(warren, "amqp-declare-queue", "-q", "tools-q")) == "tools-q\n"
    assert ok(tool(warren, "amqp-declare-queue", "-q", "tools-q")) == "tools-q\n"  # redeclare: same queue
    assert re.fullmatch(r"amq\.gen-[A-Za-z0-9_-]{22}\n", ok(tool(warren, "amqp-declare-queue", "-q", "")))


def test_declare_durable_then_non_durable_fails_406(warren):
    assert ok(tool(warren, "amqp-declare-queue", "-d", "-q", "durable-q")) == "durable-q\n"
    r = tool(warren, "amqp-declare-queue", "-q", "durable-q")
    assert r.returncode != 0
    assert re.search(r"406|PRECONDITION_FAILED", r.stderr), r.stderr


def test_publish_then_get(warren):
    ok(tool(warren, "amqp-declare-queue", "-q", "tools-q"))
    publish(warren, "tools-q", "hello", "world")
    assert ok(tool(warren, "amqp-get", "-q", "tools-q")) == "hello"
    assert ok(tool(warren, "amqp-get", "-q", "tools-q")) == "world"
    r = tool(warren, "amqp-get", "-q", "tools-q")  # empty now
    assert r.returncode != 0 and r.stdout == "", (r.returncode, r.stdout, r.stderr)


def test_get_from_missing_queue_fails_404(warren):
    r = tool(warren, "amqp-get", "-q", "no-such-queue")
    assert r.returncode != 0
    assert re.search(r"404|NOT_FOUND", r.stderr), r.stderr


def test_consume_count_stops_after_two_messages(warren):
    ok(tool(warren, "amqp-declare-queue", "-q", "tools-q"))
    publish(warren, "tools-q", "one", "two", "three")
    assert ok(tool(warren, "amqp-consume", "-q", "tools-q", "-c", "2", "cat")) == "onetwo"
    assert ok(tool(warren, "amqp-get", "-q", "tools-q")) == "three"  # the third was not taken (nor lost)


def test_consume_receives_messages_published_after_it_started(warren):
    ok(tool(warren, "amqp-declare-queue", "-q", "tools-q"))
    consumer = subprocess.Popen([shutil.which("amqp-consume"), "--server", "127.0.0.1", "--port",
                                 str(warren.amqp_port), "-q", "tools-q", "-c", "2", "cat"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        publish(warren, "tools-q", "first", "second")
        out, err = consumer.communicate(timeout=10)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
    assert consumer.returncode == 0, err
    assert out == "firstsecond"


def test_delete_queue(warren):
    ok(tool(warren, "amqp-declare-queue", "-q", "tools-q"))
    publish(warren, "tools-q", "a", "b", "c")
    r = tool(warren, "amqp-delete-queue", "-q", "tools-q", "--if-empty")
    assert r.returncode != 0
    assert re.search(r"406|PRECONDITION_FAILED", r.stderr), r.stderr
    assert ok(tool(warren, "amqp-delete-queue", "-q", "tools-q")) == "3\n"  # prints the messages deleted
    r = tool(warren, "amqp-get", "-q", "tools-q")
    assert r.returncode != 0
    assert re.search(r"404|NOT_FOUND", r.stderr), r.stderr
