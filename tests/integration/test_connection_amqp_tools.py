"""Connections through Debian's amqp-tools (rabbitmq-c's command-line clients): amqp-publish."""

import re
import shutil
import subprocess

import pytest

AMQP_PUBLISH = shutil.which("amqp-publish") or "/usr/bin/amqp-publish"


@pytest.fixture(autouse=True)
def _need_amqp_tools():
    if not shutil.which("amqp-publish"):
        pytest.fail("amqp-publish not found: apt-get install -y amqp-tools")


def publish(*args):
    return subprocess.run([AMQP_PUBLISH, *args], capture_output=True, text=True, timeout=20)


def test_publish_with_server_and_port(warren):
    r = publish("--server", "127.0.0.1", "--port", str(warren.amqp_port), "-r", "somekey", "-b", "hello")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("path", ["", "/%2f"], ids=["no-path", "encoded-slash"])
def test_publish_with_url(warren, path):
    r = publish("--url", f"amqp://guest:guest@127.0.0.1:{warren.amqp_port}{path}", "-r", "somekey", "-b", "hello")
    assert r.returncode == 0, r.stderr


def test_url_with_trailing_slash_means_empty_vhost(warren):
    # AMQP URI rules: "amqp://host:port/" names vhost "" (not "/"), which does not exist; RabbitMQ refuses it too.
    r = publish("--url", f"amqp://guest:guest@127.0.0.1:{warren.amqp_port}/", "-r", "somekey", "-b", "hello")
    assert r.returncode != 0
    assert re.search(r"530|NOT_ALLOWED", r.stderr), r.stderr


def test_wrong_password_fails_with_login_error(warren):
    r = publish("--server", "127.0.0.1", "--port", str(warren.amqp_port), "--username", "guest",
                "--password", "nope", "-r", "somekey", "-b", "hello")
    assert r.returncode != 0
    assert re.search(r"ACCESS_REFUSED|403|logging in|login", r.stderr, re.I), r.stderr


def test_missing_exchange_fails_with_not_found(warren):
    r = publish("--server", "127.0.0.1", "--port", str(warren.amqp_port), "-e", "no-such-exchange",
                "-r", "somekey", "-b", "hello")
    assert r.returncode != 0
    assert re.search(r"NOT_FOUND|404", r.stderr), r.stderr
