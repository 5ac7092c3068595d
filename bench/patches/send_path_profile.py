#!/usr/bin/python3
"""The send phase of bench/inbox_scale.py alone (20 000 sends/s to 100 000 users away, 256 connections x 1
request), on a broker built with send_path_profile.patch; prints the client's figures, the CPU each of the
broker's threads used, and the broker's per-stage times (microseconds):

  a_to_hub        the request parsed on its connection's worker -> running on the hub's worker
  b_publish       the publish on the hub's worker (the event's record appended to the store's batch)
  c_wait_sync     -> the store's group commit that holds it is synced (writer thread)
  d_back_to_conn  -> the answer's task running on the connection's worker
  e_total_server  a to d and the answer written
  s_fdatasync     per batch of the store writer: the fdatasync; s_write_and_sync: write and sync

    git apply bench/patches/send_path_profile.patch && cmake --build build --target warren
    WARREN_BIN=build/warren [WARREN_SLICE_US=100] /usr/bin/python3 bench/patches/send_path_profile.py
    git apply -R bench/patches/send_path_profile.patch

WARREN_SLICE_US asks the kernel (Linux 6.12 and later, EEVDF) for that time slice on the workers and the store
writer (sched_setattr), an experiment docs/benchmarks.md reports.
"""
import json, os, subprocess, sys, time, glob
from pathlib import Path
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from support.warren_process import WarrenProcess
MSGGEN = str(REPO / "build" / "warren-msggen")
extra = sys.argv[1:]
proc = WarrenProcess(["--jwt-secret", "inbox-bench-secret-0123456789abcdef"] + extra, workers=2)
try:
    proc.start()
    def cpu():
        d = {}
        for t in glob.glob(f"/proc/{proc.pid}/task/*"):
            try:
                st = open(t + "/stat").read().rsplit(")", 1)[1].split()
                name = open(t + "/comm").read().strip()
                d[name] = d.get(name, 0) + int(st[11]) + int(st[12])
            except OSError:
                pass
        return d
    c0 = cpu()
    out = subprocess.run([MSGGEN, "--json", "-p", str(proc.web_port), "-n", "100000", "--user-prefix", "away-",
                          "-r", "20000", "-z", "10", "-c", "256", "--pipeline", "1"], capture_output=True, text=True)
    s = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")][-1]
    c1 = cpu()
    print("cpu ticks (1/100 s) per thread over the run:", {k: c1[k] - c0.get(k, 0) for k in c1 if c1[k] - c0.get(k, 0)})
    print("client:", s["rate"], s["response_us"], "load", os.getloadavg())
    pid = proc.pid
    proc.stop()
    time.sleep(0.5)
    p = f"/tmp/warren-prof-{pid}.txt"
    if os.path.exists(p):
        print(open(p).read())
finally:
    proc.kill()
    proc.cleanup()
