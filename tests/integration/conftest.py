"""Fixtures for the integration tests: each test gets its own warren process on port 0."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.warren_process import WarrenProcess  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "gateway_args(*flags): more warren flags for a web test's gateway fixture")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def warren_factory(request):
    """warren_factory(*extra_args, omit=(), workers=2) starts a warren and returns its WarrenProcess.

    Every process started is stopped after the test with SIGTERM, and the test fails unless it exits 0 within
    5 s. When the test failed, the temp dir (data, logs) is kept and the log tail printed."""
    started: list[WarrenProcess] = []

    def make(*extra_args, omit=(), workers=2):
        proc = WarrenProcess(list(extra_args), omit=tuple(omit), workers=workers)
        started.append(proc)
        proc.start()
        return proc

    make.started = started
    yield make

    problems = []
    for proc in started:
        try:
            proc.stop()
        except AssertionError as e:
            problems.append(str(e))
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for proc in started:
        if failed or problems:
            print(f"warren temp dir kept: {proc.tmp}\n{proc.log_tail()}")
        else:
            proc.cleanup()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def warren(warren_factory):
    """A warren with default flags (2 workers, guest/guest, every port 0)."""
    return warren_factory()
