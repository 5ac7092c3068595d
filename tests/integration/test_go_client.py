"""The Go client, github.com/rabbitmq/amqp091-go, against Warren: the client's own integration suite (its
integration_test.go and connection_test.go, build tag `integration`), and a close loop of ours (go/closeloop).

Both build offline from Debian's packages (scripts/install-deps installs golang-go and
golang-github-rabbitmq-amqp091-go-dev): the sources under /usr/share/gocode are copied into a temporary GOPATH and
built in GOPATH mode (GO111MODULE=off), so go.uber.org/goleak, the suite's one dependency, comes from
/usr/share/gocode too and no module is fetched.

Every test that passes against RabbitMQ must pass against Warren, except those in SKIPPED (docs/compatibility.md,
"The Go client's suite"). The suite gates three tests on the server's `product` being "RabbitMQ" (and leaks their
connection otherwise, which its goroutine-leak check then fails); the copy is patched to accept "Warren" as well, so
they run here too. To see what passes against RabbitMQ, run this file against one (every test, SKIPPED included):

    port=$(tests/support/reference_rabbitmq.sh start /tmp/rmq | cut -d, -f1)
    WARREN_GO_EXTERNAL=$port python3 -m pytest -q -rP tests/integration/test_go_client.py
    tests/support/reference_rabbitmq.sh stop /tmp/rmq"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

GOCODE = Path("/usr/share/gocode/src")
CLIENT = "github.com/rabbitmq/amqp091-go"
HERE = Path(__file__).resolve().parent
EXTERNAL = os.environ.get("WARREN_GO_EXTERNAL")  # AMQP port of a broker already running (guest/guest)

# Tests of the client's suite that check a RabbitMQ behaviour Warren changes on purpose: name -> why.
SKIPPED = {
    "TestIntegrationConsumeFlow":
        "expects channel.flow(active=false) to be refused with 540; Warren honours it",
}


@pytest.fixture(scope="module")
def gopath():
    """A temporary GOPATH holding a copy of the client (patched as above) and go/closeloop."""
    if shutil.which("go") is None:
        pytest.fail("go not found: run scripts/install-deps (golang-go)", pytrace=False)
    src = GOCODE / CLIENT
    if not (src / "integration_test.go").is_file():
        pytest.fail(f"{src} not found: run scripts/install-deps (golang-github-rabbitmq-amqp091-go-dev)",
                    pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="warren-go-"))
    dest = root / "src" / CLIENT
    shutil.copytree(src, dest)
    test_file = dest / "integration_test.go"
    text, n = re.subn(r'(Properties\["product"\].*&& )(\S+) == "RabbitMQ"', r'\1(\2 == "RabbitMQ" || \2 == "Warren")',
                      test_file.read_text())
    assert n == 2, f"expected 2 product checks in {test_file}, patched {n}: has the client's suite changed?"
    test_file.write_text(text)
    shutil.copytree(HERE / "go" / "closeloop", root / "src" / "warren" / "closeloop")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def go_env(gopath: Path, amqp_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "GOPATH": f"{gopath}:{GOCODE.parent}",
        "GO111MODULE": "off",
        "GOPROXY": "off",
        "GOFLAGS": "",
        "GOCACHE": str(gopath / "cache"),
        "CGO_ENABLED": "0",
        "AMQP_URL": amqp_url,
    })
    return env


def build(gopath: Path, package: str, tags: str = "") -> Path:
    """Compiles the tests of `package` into one binary (run directly, so that its names can be listed first)."""
    binary = gopath / (package.replace("/", "_") + ".test")
    cmd = ["go", "test", "-c", "-o", str(binary)] + (["-tags", tags] if tags else []) + [package]
    r = subprocess.run(cmd, env=go_env(gopath, ""), cwd=gopath, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}"
    return binary


def run_tests(binary: Path, gopath: Path, url: str, names: list[str], timeout: float) -> tuple[int, str]:
    # Go 1.19 (Debian 12) has no -test.skip: the tests to run are named in a -test.run pattern instead.
    pattern = "^(" + "|".join(re.escape(n) for n in names) + ")$"
    r = subprocess.run([str(binary), "-test.v", "-test.count=1", f"-test.timeout={int(timeout)}s",
                        f"-test.run={pattern}"],
                       env=go_env(gopath, url), cwd=binary.parent, capture_output=True, text=True,
                       timeout=timeout + 30)
    return r.returncode, r.stdout + r.stderr


def results(output: str) -> dict[str, str]:
    """name -> PASS, FAIL or SKIP, from -test.v output (subtests included, indented)."""
    return {m.group(2): m.group(1) for m in re.finditer(r"^\s*--- (PASS|FAIL|SKIP): (\S+)", output, re.M)}


@pytest.fixture
def amqp_port(request) -> int:
    if EXTERNAL:
        return int(EXTERNAL)
    # Warren's default listening address, every IPv4 and IPv6 address, so that both can be tried.
    return request.getfixturevalue("warren_factory")(omit=("--bind",)).amqp_port


def amqp_url(port: int, host: str = "127.0.0.1") -> str:
    return f"amqp://guest:guest@{'[' + host + ']' if ':' in host else host}:{port}/"


def test_amqp091_go_suite(gopath, amqp_port):
    binary = build(gopath, CLIENT, tags="integration")
    listed = subprocess.run([str(binary), "-test.list", ".*"], env=go_env(gopath, ""), cwd=binary.parent,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    names = [n for n in listed.stdout.split() if n.startswith(("Test", "Example"))]
    assert len(names) > 100, f"only {len(names)} tests listed:\n{listed.stdout}"
    missing = set(SKIPPED) - set(names)
    assert not missing, f"skipped tests no longer in the suite: {missing}"
    skipped = {} if EXTERNAL else SKIPPED
    to_run = [n for n in names if n not in skipped]
    rc, output = run_tests(binary, gopath, amqp_url(amqp_port), to_run, timeout=150)
    got = results(output)
    failed = sorted(n for n, r in got.items() if r == "FAIL")
    not_run = sorted(set(to_run) - set(got))
    print(f"amqp091-go suite: {sum(r == 'PASS' for r in got.values())} passed, {len(failed)} failed, "
          f"{sum(r == 'SKIP' for r in got.values())} skipped by the suite, {len(skipped)} skipped here "
          f"({', '.join(skipped) or 'none'})")
    # The leak check (goleak) runs after the tests and fails the binary without failing a test.
    assert rc == 0 and not failed and not not_run, (
        f"exit {rc}; failed: {failed}; not run: {not_run}\n{output[-20000:]}")


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_client_close_is_never_an_error(gopath, amqp_port, host):
    if host == "::1" and EXTERNAL:
        pytest.skip("an external broker may listen on IPv4 only")
    binary = build(gopath, "warren/closeloop")
    rc, output = run_tests(binary, gopath, amqp_url(amqp_port, host),
                           ["TestDialNotifyCloseClose", "TestCloseWithConsumer"], timeout=100)
    print(output[-3000:])
    assert rc == 0, output[-20000:]
    assert results(output) == {"TestDialNotifyCloseClose": "PASS", "TestCloseWithConsumer": "PASS"}, output
