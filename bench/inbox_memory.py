#!/usr/bin/python3
"""Where the RSS of users who are away goes (docs/benchmarks.md, "Durable inboxes"): the fill of
bench/inbox_scale.py on build/warren (--workers 2, a temporary data dir), then glibc's own account
of its heap read from the running broker with gdb (malloc_info: per arena the bytes taken from the
kernel and the bytes free in them; the chunks mapped on their own), then the RSS again after
malloc_trim(0), which gives back the free pages inside the arenas.

    /usr/bin/python3 bench/inbox_memory.py [--users 1000000] [--events 10]

Needs gdb and ptrace rights over the broker (root, or kernel.yama.ptrace_scope 0). What stays
after the trim is the index (about 57 bytes a user with 11-byte ids: web::user_table's entries,
ids and index, as user_table::memory() counts them) and what the broker had before the fill.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.warren_process import WarrenProcess  # noqa: E402

MSGGEN = str(REPO / "build" / "warren-msggen")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def gdb(pid: int, *calls: str) -> None:
    args = ["gdb", "-p", str(pid), "-batch"]
    for c in calls:
        args += ["-ex", f"call {c}"]
    subprocess.run(args, capture_output=True, text=True, check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=10)
    args = ap.parse_args()
    proc = WarrenProcess(["--jwt-secret", "inbox-bench-secret-0123456789abcdef"], workers=2)
    try:
        proc.start()
        rss0 = rss_mb(proc.pid)
        subprocess.run([MSGGEN, "--json", "--via", "amqp", "--amqp-port", str(proc.amqp_port), "-n", str(args.users),
                        "-C", str(args.users * args.events), "-r", "0", "-z", "100000", "-c", "4", "--pad", "40"],
                       capture_output=True, check=True)
        time.sleep(2)
        rss1 = rss_mb(proc.pid)
        per_user = lambda mb: (mb - rss0) * 1048576 / args.users  # noqa: E731
        print(f"RSS {rss0:.1f} MB empty, {rss1:.1f} MB with {args.users} users away: {per_user(rss1):.1f} bytes a user")
        mark = proc.stdout_path.stat().st_size
        gdb(proc.pid, "(int)malloc_info(0, (void*)stdout)", "(int)fflush(0)")
        xml = proc.stdout_path.read_bytes()[mark:].decode(errors="replace")
        for n, heap in re.findall(r'<heap nr="(\d+)">(.*?)</heap>', xml, re.S):
            current = int(re.search(r'<system type="current" size="(\d+)"', heap).group(1))
            free = sum(int(s) for s in re.findall(r'<total type="(?:fast|rest)" count="\d+" size="(\d+)"', heap))
            if current > 1 << 20:
                print(f"  arena {n}: {current / 1e6:.1f} MB from the kernel, {free / 1e6:.1f} MB of it free")
        tail = xml[xml.rfind("</heap>"):]
        m = re.search(r'<total type="mmap" count="(\d+)" size="(\d+)"', tail)
        if m:
            print(f"  mapped on their own: {m.group(1)} chunks, {int(m.group(2)) / 1e6:.1f} MB")
        gdb(proc.pid, "(int)malloc_trim(0)")
        time.sleep(0.5)
        rss2 = rss_mb(proc.pid)
        print(f"after malloc_trim(0): {rss2:.1f} MB: {per_user(rss2):.1f} bytes a user")
        proc.stop()
    finally:
        proc.kill()
        proc.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
