#!/usr/bin/env bash
# A/B of broker CPU per message between warren binaries, interleaved on the same machine: each run
# starts a fresh warren on a temporary data dir and drives it with rmq-perf (a rabbitmq-c client),
# reading the broker's CPU time over the measured window. Prints every run with where its producer,
# queue and consumer ran (their workers, from the management API: "P0 Q1 C0" is two crossings),
# then the medians per binary, and per binary and number of worker crossings (with 2 workers the
# kernel spreads connections by their ports, so each run lands on one of these at random).
#
# Usage: bench/ab_cpu.sh [--runs N] [--workers W] [--seconds S] BINARY... [-- rmq-perf args]
#   e.g. bench/ab_cpu.sh --workers 1 /tmp/warren-old build/warren -- -s 16 -q 200 --ack-every 50
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RMQ_PERF=${RMQ_PERF:-$ROOT/build/rmq-perf}
runs=3 workers=2 seconds=8
bins=() extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) bins+=("$1"); shift ;;
  esac
done
[ ${#bins[@]} -ge 1 ] || { echo "ab_cpu: name at least one warren binary" >&2; exit 2; }
[ -x "$RMQ_PERF" ] || { echo "ab_cpu: $RMQ_PERF not found (cmake --build build)" >&2; exit 2; }
results=$(mktemp)
trap 'rm -f "$results"' EXIT
one_run() {  # one_run BINARY: prints "consumed_per_s cpu_us_per_msg placement"
  local dir pid port http out placement
  dir=$(mktemp -d)
  "$1" --data-dir "$dir/data" --amqp-port 0 --http-port 0 --web-port 0 --prometheus-port 0 \
    --bind 127.0.0.1 --ports-file "$dir/ports" --log-level warn --workers "$workers" &
  pid=$!
  for _ in $(seq 100); do [ -s "$dir/ports" ] && break; sleep 0.1; done
  port=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["amqp"])' "$dir/ports")
  http=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$dir/ports")
  out=$(mktemp)
  "$RMQ_PERF" --port "$port" -z "$seconds" --warmup 2 --broker-pid "$pid" "${extra[@]}" >"$out" &
  local rp=$!
  sleep 1.5
  # A producer's connection receives more than it sends; a consumer's the other way round.
  placement=$(python3 - "$http" <<'PY'
import base64, json, sys, urllib.request
def get(path):
    r = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}{path}")
    r.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    return json.load(urllib.request.urlopen(r, timeout=10))
try:
    conns = get("/api/connections")
    queues = get("/api/queues")
    ps = sorted(c["warren_worker"] for c in conns if c.get("recv_oct", 0) > c.get("send_oct", 0))
    cs = sorted(c["warren_worker"] for c in conns if c.get("recv_oct", 0) <= c.get("send_oct", 0))
    qs = sorted(q["warren_worker"] for q in queues)
    print("P" + ",".join(map(str, ps)), "Q" + ",".join(map(str, qs)), "C" + ",".join(map(str, cs)), sep="-")
except Exception:
    print("?")
PY
)
  wait "$rp"
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(round(j["consume_rate"]), j["broker_cpu_us_per_msg"], sys.argv[2])' "$out" "$placement"
  rm -f "$out"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
for r in $(seq 1 "$runs"); do
  for b in "${bins[@]}"; do
    line=$(one_run "$b")
    echo "$b run $r: $line"
    echo "$b $line" >>"$results"
  done
done
python3 - "$results" <<'PY'
import statistics, sys
by, by_crossings = {}, {}
def crossings(placement):
    # One producer, queue and consumer (P0-Q1-C0): how many of the hops publisher -> queue ->
    # consumer change worker. Other shapes: not counted.
    parts = placement.split("-")
    if len(parts) != 3 or any("," in p or len(p) < 2 for p in parts):
        return None
    p, q, c = (x[1:] for x in parts)
    return (p != q) + (q != c)
for line in open(sys.argv[1]):
    b, rate, cpu, placement = line.split()
    by.setdefault(b, []).append((float(rate), float(cpu)))
    n = crossings(placement)
    if n is not None:
        by_crossings.setdefault((b, n), []).append((float(rate), float(cpu)))
print("| binary | runs | consumed msg/s (median) | broker CPU us/msg (median) |")
print("| --- | ---: | ---: | ---: |")
for b, v in by.items():
    print(f"| {b} | {len(v)} | {statistics.median(r for r, _ in v):,.0f} | {statistics.median(c for _, c in v):.3f} |")
if by_crossings:
    print()
    print("| binary | worker crossings | runs | consumed msg/s (median) | broker CPU us/msg (median) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for (b, n), v in sorted(by_crossings.items()):
        print(f"| {b} | {n} | {len(v)} | {statistics.median(r for r, _ in v):,.0f} | {statistics.median(c for _, c in v):.3f} |")
PY
