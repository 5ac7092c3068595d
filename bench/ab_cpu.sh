#!/usr/bin/env bash
# A/B of broker CPU per message between warren binaries, interleaved on the same machine: each run
# starts a fresh warren on a temporary data dir and drives it with rmq-perf (a rabbitmq-c client),
# reading the broker's CPU time over the measured window. Prints every run, then the medians.
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
one_run() {  # one_run BINARY: prints "consumed_per_s cpu_us_per_msg"
  local dir pid port
  dir=$(mktemp -d)
  "$1" --data-dir "$dir/data" --amqp-port 0 --http-port 0 --web-port 0 --prometheus-port 0 \
    --bind 127.0.0.1 --ports-file "$dir/ports" --log-level warn --workers "$workers" &
  pid=$!
  for _ in $(seq 100); do [ -s "$dir/ports" ] && break; sleep 0.1; done
  port=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["amqp"])' "$dir/ports")
  "$RMQ_PERF" --port "$port" -z "$seconds" --warmup 2 --broker-pid "$pid" "${extra[@]}" |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print(round(j["consume_rate"]), j["broker_cpu_us_per_msg"])'
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
by = {}
for line in open(sys.argv[1]):
    b, rate, cpu = line.split()
    by.setdefault(b, []).append((float(rate), float(cpu)))
print("| binary | consumed msg/s (median) | broker CPU us/msg (median) |")
print("| --- | ---: | ---: |")
for b, v in by.items():
    print(f"| {b} | {statistics.median(r for r, _ in v):,.0f} | {statistics.median(c for _, c in v):.3f} |")
PY
