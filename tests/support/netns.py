"""Network namespaces on a bridge, for fault tests (tests/integration/test_cluster_faults.py): each host of a test
(an etcd member, a Warren node) gets its own namespace and address, so one link between two of them can be cut
while the rest of the network works, as a cable or a firewall would.

    with Lab(["e1", "n1", "n2"]) as lab:        # namespaces wf<pid>a-e1 ..., bridge wf<pid>ab, 10.231.X.0/24
        p = lab.popen("e1", ["etcd", ...])     # runs inside e1's namespace (ip netns exec), listens on lab.ip("e1")
        lab.cut("n1", "e1")                     # n1 <-> e1 silently dropped, both ways
        lab.cut("n1", "e1", both=False)         # only what n1 sends to e1 is dropped
        lab.heal()                              # every cut gone

The test process itself stays in the host's namespace and reaches every host through the bridge's address (never
cut). Cuts are iptables DROP rules on INPUT inside the receiving namespace: silent for the sender (a DROP on OUTPUT
would fail its send with EPERM at once, which no cable does) and gone with the namespace, so the host's own
iptables are never touched. There is no `tc netem` on these machines: no delay or loss rates, only cuts.

Teardown is always complete: processes left in the namespaces are killed (SIGKILL), namespaces, veths and the bridge
deleted, on leaving the `with`, at interpreter exit, and on SIGTERM/SIGHUP. Names carry the creating process's pid,
so parallel runs never clash, and a run killed with SIGKILL (nothing can clean up then) is swept by the next run:
namespaces and links whose pid is no longer alive are removed when a Lab starts. The /24 is chosen per run among
10.231.1-250.0/24, skipping any in use on this machine, and held by binding an abstract Unix socket named after it
(no file to leave behind: the kernel frees the name when the process ends)."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import threading

SUBNET_PREFIX = "10.231"
NAME_RE = re.compile(r"^wf(\d+)")  # every namespace and link a Lab makes starts with wf<pid>

_live: set["Lab"] = set()
_live_lock = threading.Lock()
_handlers_installed = False
_labs_made = 0


class NetnsUnavailable(RuntimeError):
    """Namespaces cannot be made here (not root, no `ip` or `iptables`, no rights): the caller should skip."""


def _run(*argv: str, check: bool = True, timeout: float = 10.0) -> subprocess.CompletedProcess:
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return r


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def unavailable_reason() -> str | None:
    """Why namespaces with iptables cannot be used here, or None if they can (checked by making a scratch one)."""
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"'{tool}' not found (scripts/install-deps installs iproute2 and iptables)"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)"
    probe = f"wf{os.getpid()}-probe"
    try:
        r = _run("ip", "netns", "add", probe, check=False)
        if r.returncode != 0:
            return f"cannot create a network namespace: {r.stderr.strip()}"
        r = _run("ip", "netns", "exec", probe, "iptables", "-w", "-S", "INPUT", check=False)
        if r.returncode != 0:
            return f"iptables does not work inside a namespace: {r.stderr.strip()}"
        r = _run("ip", "link", "add", f"wf{os.getpid()}p", "type", "bridge", check=False)
        if r.returncode != 0:
            return f"cannot create a bridge: {r.stderr.strip()}"
        _run("ip", "link", "del", f"wf{os.getpid()}p", check=False)
        # With br_netfilter, bridged packets go through the host's FORWARD chain: a DROP policy there (Docker
        # sets one) would cut every link at once.
        nf = "/proc/sys/net/bridge/bridge-nf-call-iptables"
        if os.path.exists(nf) and open(nf).read().strip() == "1":
            if "-P FORWARD DROP" in _run("iptables", "-w", "-S", "FORWARD", check=False).stdout:
                return "the host's iptables drop bridged traffic (bridge-nf-call-iptables is 1, FORWARD policy DROP)"
        return None
    finally:
        _run("ip", "netns", "del", probe, check=False)


def sweep_stale() -> list[str]:
    """Removes namespaces and links that a Lab of a process no longer alive left behind (it was SIGKILLed).
    Returns what was removed."""
    removed = []
    r = _run("ip", "netns", "list", check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = NAME_RE.match(name)
        if m and not _pid_alive(int(m.group(1))):
            _kill_netns_pids(name)
            _run("ip", "netns", "del", name, check=False)
            removed.append(name)
    r = _run("ip", "-o", "link", "show", check=False)
    for line in r.stdout.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        m = NAME_RE.match(name)
        if m and not _pid_alive(int(m.group(1))):
            _run("ip", "link", "del", name, check=False)
            removed.append(name)
    return removed


def _kill_netns_pids(ns: str) -> None:
    """SIGKILLs every process still inside namespace `ns` (only namespaces a Lab made are passed here)."""
    r = _run("ip", "netns", "pids", ns, check=False)
    for tok in r.stdout.split():
        try:
            os.kill(int(tok), signal.SIGKILL)
        except (ValueError, ProcessLookupError):
            pass


def _teardown_all(*_args) -> None:
    with _live_lock:
        labs = list(_live)
    for lab in labs:
        lab.down()


def _on_signal(signum, frame) -> None:
    _teardown_all()
    # Then die of the signal as we would have.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_handlers() -> None:
    global _handlers_installed
    if _handlers_installed or threading.current_thread() is not threading.main_thread():
        return
    _handlers_installed = True
    atexit.register(_teardown_all)
    for s in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(s) in (signal.SIG_DFL, None):
            signal.signal(s, _on_signal)


class Lab:
    def __init__(self, hosts: list[str]):
        if len(set(hosts)) != len(hosts) or not all(re.fullmatch(r"[a-z0-9]{1,8}", h) for h in hosts):
            raise ValueError(f"host names: distinct, 1-8 of [a-z0-9]: {hosts}")
        if len(hosts) > 200:
            raise ValueError("at most 200 hosts")
        self.hosts = list(hosts)
        global _labs_made
        # wf<pid><letter>: the pid for the sweep, a letter per Lab of this process (interface names: 15 bytes).
        self.tag = f"wf{os.getpid()}{chr(ord('a') + _labs_made % 26)}"
        _labs_made += 1
        self.bridge = f"{self.tag}b"
        self.subnet: str | None = None  # "10.231.X"
        self._lock: socket.socket | None = None  # holds the subnet for this run
        self._cuts: set[tuple[str, str]] = set()  # (from, to): what `from` sends to `to` is dropped
        self._up = False
        self._procs: list[subprocess.Popen] = []

    # --- names and addresses ------------------------------------------------------------------------------

    def ns(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def ip(self, host: str) -> str:
        """The host's address on the bridge."""
        assert self.subnet is not None
        return f"{self.subnet}.{10 + self.hosts.index(host)}"

    @property
    def gateway(self) -> str:
        """The bridge's own address: the test process (in the host's namespace) talks from it."""
        return f"{self.subnet}.1"

    def prefix(self, host: str) -> list[str]:
        """The command prefix that runs a program inside the host's namespace (ip netns exec execs the program,
        so the pid of the Popen is the program's)."""
        return ["ip", "netns", "exec", self.ns(host)]

    def popen(self, host: str, argv: list[str], **kwargs) -> subprocess.Popen:
        p = subprocess.Popen(self.prefix(host) + list(argv), **kwargs)
        self._procs.append(p)
        return p

    def run(self, host: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return _run(*self.prefix(host), *argv, check=check)

    # --- up and down --------------------------------------------------------------------------------------

    def _pick_subnet(self) -> None:
        used = _run("ip", "-4", "-o", "addr", "show", check=False).stdout + \
            _run("ip", "-4", "route", "show", "table", "all", check=False).stdout
        start = os.getpid() % 250
        for i in range(250):
            x = (start + i) % 250 + 1
            candidate = f"{SUBNET_PREFIX}.{x}"
            if f" {candidate}." in used or f"\n{candidate}." in used or used.startswith(candidate + "."):
                continue
            lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                lock.bind(f"\0warren-netns-{candidate}")  # abstract: another run holds it, or it is ours
            except OSError:
                lock.close()
                continue
            self.subnet, self._lock = candidate, lock
            return
        raise NetnsUnavailable(f"no free /24 in {SUBNET_PREFIX}.1-250.0 on this machine")

    def up(self) -> "Lab":
        reason = unavailable_reason()
        if reason:
            raise NetnsUnavailable(reason)
        sweep_stale()
        _install_handlers()
        with _live_lock:
            _live.add(self)
        self._up = True
        try:
            self._pick_subnet()
            _run("ip", "link", "add", self.bridge, "type", "bridge")
            _run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _run("ip", "link", "set", self.bridge, "up")
            for i, host in enumerate(self.hosts):
                ns, veth = self.ns(host), f"{self.tag}v{i}"
                _run("ip", "netns", "add", ns)
                _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                _run("ip", "link", "set", veth, "master", self.bridge, "up")
                self.run(host, "ip", "addr", "add", f"{self.ip(host)}/24", "dev", "eth0")
                self.run(host, "ip", "link", "set", "eth0", "up")
                self.run(host, "ip", "link", "set", "lo", "up")
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        """Kills what runs in the namespaces and removes every namespace, veth and the bridge. Safe to repeat."""
        if not self._up:
            return
        self._up = False
        for p in self._procs:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        for host in self.hosts:
            _kill_netns_pids(self.ns(host))
            _run("ip", "netns", "del", self.ns(host), check=False)  # its veth end goes, and so the pair
        for i in range(len(self.hosts)):
            _run("ip", "link", "del", f"{self.tag}v{i}", check=False)  # in case the namespace was not made
        _run("ip", "link", "del", self.bridge, check=False)
        self._cuts.clear()
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        with _live_lock:
            _live.discard(self)

    def __enter__(self) -> "Lab":
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    # --- faults -------------------------------------------------------------------------------------------

    def _rule(self, action: str, src: str, dst: str) -> None:
        # In dst's namespace: drop what arrives from src. Silent for src, as a cut cable is.
        self.run(dst, "iptables", "-w", action, "INPUT", "-s", self.ip(src), "-j", "DROP")

    def cut(self, a: str, b: str, both: bool = True) -> None:
        """Drops what a sends to b (and, with both, what b sends to a). Connections stay open, silent."""
        pairs = [(a, b), (b, a)] if both else [(a, b)]
        for src, dst in pairs:
            if (src, dst) not in self._cuts:
                self._rule("-A", src, dst)
                self._cuts.add((src, dst))

    def isolate(self, host: str, from_hosts: list[str] | None = None) -> None:
        """Cuts `host` from every other host (or from those listed), both ways. The test process still reaches it."""
        for other in from_hosts if from_hosts is not None else self.hosts:
            if other != host:
                self.cut(host, other)

    def heal(self, a: str | None = None, b: str | None = None, both: bool = True) -> None:
        """Removes the cut between a and b (both ways unless both=False), or every cut when called bare."""
        if a is None:
            pairs = list(self._cuts)
        else:
            assert b is not None
            pairs = [(a, b), (b, a)] if both else [(a, b)]
        for src, dst in pairs:
            if (src, dst) in self._cuts:
                self._rule("-D", src, dst)
                self._cuts.discard((src, dst))

    def cuts(self) -> set[tuple[str, str]]:
        return set(self._cuts)


def lab_for_tests(hosts: list[str]):
    """A pytest fixture's body: yields a Lab of these hosts, or skips the test (saying why) where namespaces cannot
    be made here."""
    import pytest  # only the tests need it

    reason = unavailable_reason()
    if reason:
        pytest.skip(f"network namespaces unavailable here: {reason}")
    with Lab(hosts) as lab:
        yield lab

