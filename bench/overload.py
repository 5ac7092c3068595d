#!/usr/bin/python3
"""Overload: publishers far faster than the consumers for a while, then the load stops. Checks the
broker-model issue's rule that under overload memory stays bounded (publishers are slowed by
backpressure) and latency recovers when the load stops. Starts build/warren on free ports with a
temporary data dir and drives it with build/warren-perf:

  1. latency before: the `latency20k` scenario (20 000 msg/s, 16 B, one producer, one consumer);
  2. overload, each for --seconds, the broker's VmRSS sampled every second:
     - `flood`: --producers unlimited producers into one queue with one consumer (prefetch 200,
       ack every 50): the queue fills faster than it drains;
     - `fanout100`: one unlimited producer into a fanout exchange bound to 100 queues, a consumer on
       each: 100 deliveries for every publish;
  3. latency after: `latency20k` again, at once.

    /usr/bin/python3 bench/overload.py [--seconds 30] [--producers 4] [--repeat 3] [--out result.json]

It exits 1 if a warren-perf run failed, if the consumers had a second with no delivery, or (with
--max-rss-mib) if RSS went above the bound; CTest runs it briefly that way (integration.overload_smoke).

It prints RSS before, the largest during each overload phase and its growth over the phase's second
half (bounded: about flat), the consumers' received rate per second (never stalled: the lowest
second), and p50/p99 latency before and after. Every step is bounded in time. BUILD_DIR (default
build/) picks the binaries.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from backlog import PERF, WARREN, Broker, Sampler, loadavg, log, run_perf


def phase_rss(sampler: Sampler, phase: str) -> dict:
    rss = [s["rss_kib"] for s in sampler.of(phase) if s["rss_kib"] is not None]
    if not rss:
        return {}
    half = rss[len(rss) // 2:]
    return {"max_mib": round(max(rss) / 1024, 1), "second_half_growth_mib": round((half[-1] - half[0]) / 1024, 1),
            "samples_mib": [round(r / 1024, 1) for r in rss]}


def latency(r: dict) -> dict:
    lat = r.get("latency_us") or {}
    return {k: lat.get(k) for k in ("p50", "p95", "p99", "max")}


def one_run(args, tmp: Path, i: int) -> dict:
    broker = Broker(tmp)
    broker.start(timeout=30)
    sampler = Sampler(broker)
    sampler.start()
    res: dict = {"load_before": loadavg()}
    try:
        time.sleep(1.5)
        res["rss_idle_mib"] = round((sampler.of("start")[-1]["rss_kib"] or 0) / 1024, 1)
        sampler.set_phase("latency-before", watch=False)
        res["latency_before"] = latency(run_perf(f"latency-before-{i}", ["--scenario", "latency20k", "-z",
                                                                         str(args.latency_seconds)],
                                                 broker.port, tmp, args.latency_seconds + 60))
        for name, perf_args in (("flood", ["--scenario", "throughput", "-x", str(args.producers)]),
                                ("fanout100", ["--scenario", "fanout100"])):
            sampler.set_phase(name, watch=False)
            r = run_perf(f"{name}-{i}", [*perf_args, "-z", str(args.seconds)], broker.port, tmp, args.seconds + 60)
            recv = r["per_second_received"][1:-1] or r["per_second_received"]
            res[name] = {"command": r["command"], "sent_rate": r.get("sent_rate"),
                         "received_rate": r.get("received_rate"), "lowest_received_second": min(recv, default=0),
                         "exit_code": r["exit_code"], **phase_rss(sampler, name)}
            log(f"{name}: sent {r.get('sent_rate', 0):.0f} msg/s, received {r.get('received_rate', 0):.0f} msg/s, "
                f"lowest second "
                f"{res[name]['lowest_received_second']}, RSS max {res[name].get('max_mib')} MiB, growth over the "
                f"second half {res[name].get('second_half_growth_mib')} MiB")
        sampler.set_phase("latency-after", watch=False)
        res["latency_after"] = latency(run_perf(f"latency-after-{i}", ["--scenario", "latency20k", "-z",
                                                                       str(args.latency_seconds)],
                                                broker.port, tmp, args.latency_seconds + 60))
        res["rss_after_mib"] = round((sampler.of("latency-after")[-1]["rss_kib"] or 0) / 1024, 1)
        log(f"latency p99 before {res['latency_before']['p99']} us, after {res['latency_after']['p99']} us; "
            f"RSS idle {res['rss_idle_mib']} MiB, after {res['rss_after_mib']} MiB")
    finally:
        sampler.stopping.set()
        broker.stop()
    res["load_after"] = loadavg()
    return res


def med(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 1) if values else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=30, help="each overload phase")
    p.add_argument("--latency-seconds", type=int, default=10)
    p.add_argument("--producers", type=int, default=4, help="unlimited producers in the flood phase")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--out", type=Path, help="write every figure as JSON")
    p.add_argument("--max-rss-mib", type=float, help="exit 1 if the broker's RSS went above this (a check, for the smoke test)")
    args = p.parse_args()
    for binary in (WARREN, PERF):
        if not binary.exists():
            p.error(f"{binary} not found: build it first")
    runs = []
    for i in range(args.repeat):
        tmp = Path(tempfile.mkdtemp(prefix="overload-"))
        try:
            log(f"run {i + 1} of {args.repeat} (load {loadavg()})")
            runs.append(one_run(args, tmp, i))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)}, "runs": runs}, indent=1))

    print(f"=== medians over {len(runs)} run(s)")
    print(f"  RSS idle {med([r['rss_idle_mib'] for r in runs])} MiB, after the overload "
          f"{med([r['rss_after_mib'] for r in runs])} MiB")
    for name in ("flood", "fanout100"):
        print(f"  {name:9}: sent {med([r[name]['sent_rate'] for r in runs])} msg/s, received "
              f"{med([r[name]['received_rate'] for r in runs])} msg/s (lowest second "
              f"{med([r[name]['lowest_received_second'] for r in runs])}), RSS max "
              f"{med([r[name].get('max_mib') for r in runs])} MiB, growth over the second half "
              f"{med([r[name].get('second_half_growth_mib') for r in runs])} MiB")
    for k in ("p50", "p99", "max"):
        print(f"  latency20k {k}: before {med([r['latency_before'][k] for r in runs])} us, after "
              f"{med([r['latency_after'][k] for r in runs])} us")
    failures = []
    for r in runs:
        for n in ("flood", "fanout100"):
            if r[n]["exit_code"] != 0:
                failures.append(f"{n}: warren-perf exited {r[n]['exit_code']}")
            if r[n]["lowest_received_second"] <= 0:
                failures.append(f"{n}: a second with no delivery (consumers starved)")
            if args.max_rss_mib and (r[n].get("max_mib") or 0) > args.max_rss_mib:
                failures.append(f"{n}: RSS {r[n].get('max_mib')} MiB above {args.max_rss_mib}")
    for f in failures:
        print(f"FAIL {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
