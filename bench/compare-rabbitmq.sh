#!/usr/bin/env bash
# Side-by-side throughput and latency of Warren and RabbitMQ (Debian's rabbitmq-server) driven by
# the same warren-perf scenarios, plus warren-perf against amqp-sink to show the tool's own ceiling,
# and the same comparison driven by rmq-perf (bench/rmq_perf.cpp, on rabbitmq-c: a client that is
# not Warren's own), with each broker's CPU time per delivered message and its busiest threads.
# Everything runs on 127.0.0.1 on free high ports with temporary data dirs, and is stopped on exit.
#
# Usage: bench/compare-rabbitmq.sh [--scenarios a,b] [--duration S] [--repeat N] [--out FILE]
#                                  [--keep] [--smoke]
#   --scenarios   warren-perf scenarios (default: throughput,fanout100,latency20k; "none": skip)
#   --rmq-rows    rmq-perf rows (default: ack50,autoack,persistent,latency250k,queues8; "none": skip)
#   --duration    seconds per run (default 15); --repeat N runs each N times and reports medians
#   --out FILE    also write the Markdown table to FILE
#   --keep        keep the temporary directory (broker logs, per-run JSON)
#   --smoke       each scenario for 2 s against Warren only (and 2 s against amqp-sink); fails if a
#                 run fails or moves no messages. No RabbitMQ needed.
# Binaries come from $BUILD_DIR (default: build/): warren, warren-perf, amqp-sink. The table names
# the commit: git HEAD (+dirty if src/ has local changes), or $WARREN_COMMIT if set.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_DIR:-$ROOT/build}
PERF=$BUILD/warren-perf
SINK=$BUILD/amqp-sink
WARREN=$BUILD/warren
RABBIT_SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server

scenarios=throughput,fanout100,latency20k
rmq_rows=ack50,autoack,persistent,latency250k,queues8
duration=15
repeat=1
smoke=0
keep=0
out=""

die() { echo "compare-rabbitmq: $*" >&2; exit 2; }
log() { echo "== $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --scenarios) scenarios=$2; shift 2 ;;
    --rmq-rows) rmq_rows=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --smoke) smoke=1; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
if [ "$smoke" = 1 ]; then duration=2; repeat=1; fi
[[ "$duration" =~ ^[0-9]+$ && "$duration" -ge 1 ]] || die "--duration must be a whole number of seconds"
[[ "$repeat" =~ ^[0-9]+$ && "$repeat" -ge 1 ]] || die "--repeat must be >= 1"
RMQ_PERF=$BUILD/rmq-perf
for b in "$PERF" "$SINK" "$WARREN" "$RMQ_PERF"; do
  [ -x "$b" ] || die "$b not found: cmake --preset release && cmake --build build -j2"
done
[ "$scenarios" = none ] && scenarios=""
[ "$rmq_rows" = none ] && rmq_rows=""
IFS=, read -r -a scenario_list <<<"$scenarios"
IFS=, read -r -a rmq_row_list <<<"$rmq_rows"

TMP=$(mktemp -d /tmp/warren-compare.XXXXXX)
mkdir -p "$TMP/results"
pids=()
epmd_port=""
warren_pid=""
rabbit_pid=""

cleanup() {
  local rc=$?
  set +e
  # TERM first (RabbitMQ's start script turns it into a clean stop), then KILL what is left.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  # The Erlang VM started an epmd on our private port; it outlives the node.
  if [ -n "$epmd_port" ]; then ERL_EPMD_PORT=$epmd_port epmd -kill >/dev/null 2>&1; fi
  if [ "$keep" = 1 ]; then echo "compare-rabbitmq: kept $TMP" >&2; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_ports() {  # prints N free loopback ports
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Waits until something on 127.0.0.1:$1 answers the AMQP protocol header with a method frame.
wait_amqp() {
  local port=$1 what=$2 pid=$3 deadline=$((SECONDS + 90))
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$pid" 2>/dev/null || die "$what exited during start-up (logs in $TMP; use --keep)"
    if python3 - "$port" <<'EOF' 2>/dev/null; then return 0; fi
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
s.sendall(b"AMQP\x00\x00\x09\x01")
sys.exit(0 if s.recv(1) == b"\x01" else 1)
EOF
    sleep 0.5
  done
  keep=1
  die "$what did not accept AMQP on port $port within 90 s (logs kept in $TMP)"
}

start_warren() {
  local port=$1
  mkdir -p "$TMP/warren"
  "$WARREN" --amqp-port "$port" --http-port 0 --web-port 0 --prometheus-port 0 --data-dir "$TMP/warren/data" \
    --bind 127.0.0.1 --ports-file "$TMP/warren/ports.json" --log-level warn \
    >"$TMP/warren/stdout.log" 2>"$TMP/warren/stderr.log" &
  pids+=($!)
  warren_pid=$!
  wait_amqp "$port" warren $!
}

start_sink() {  # start_sink PORT NAME [--deliver]
  local port=$1 name=$2
  shift 2
  "$SINK" --port "$port" "$@" >"$TMP/$name.log" 2>&1 &
  pids+=($!)
  wait_amqp "$port" "$name" $!
}

# The package may have started a system node (it would own 5672 and compete for CPU): stop it.
stop_system_rabbitmq() {
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet rabbitmq-server 2>/dev/null; then
    log "stopping and disabling the rabbitmq-server system service"
    systemctl stop rabbitmq-server || true
    systemctl disable rabbitmq-server >/dev/null 2>&1 || true
  fi
  local sys_pids
  sys_pids=$(pgrep -u rabbitmq beam.smp || true)
  if [ -n "$sys_pids" ]; then
    log "stopping the system RabbitMQ node (pids $sys_pids)"
    timeout 60 rabbitmqctl stop >/dev/null 2>&1 || true
    sys_pids=$(pgrep -u rabbitmq beam.smp || true)
    [ -z "$sys_pids" ] || kill -TERM $sys_pids 2>/dev/null || true
  fi
}

install_rabbitmq() {
  if [ ! -x "$RABBIT_SERVER" ]; then
    [ "$(id -u)" = 0 ] || die "rabbitmq-server is not installed and installing it needs root"
    log "installing Debian's rabbitmq-server"
    # policy-rc.d exit 101 tells invoke-rc.d not to start the service during installation.
    local made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
      chmod +x /usr/sbin/policy-rc.d
      made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rabbitmq-server \
      >"$TMP/apt.log" 2>&1 ||
      { apt-get update -qq >>"$TMP/apt.log" 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rabbitmq-server \
          >>"$TMP/apt.log" 2>&1; } || { keep=1; die "apt-get install failed, see $TMP/apt.log"; }
    [ "$made_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d
  fi
  stop_system_rabbitmq
}

# A private RabbitMQ node in the foreground: own node name, ports, epmd, data, logs and cookie; no
# plugins (no management); guest may log in (loopback only anyway, stated for clarity).
start_rabbitmq() {
  local port=$1 dist=$2 epmd=$3 dir=$TMP/rabbitmq
  mkdir -p "$dir/mnesia" "$dir/log" "$dir/home"
  cat >"$dir/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$port
loopback_users = none
disk_free_limit.absolute = 50MB
log.console = false
log.file.level = warning
EOF
  echo '[].' >"$dir/enabled_plugins"
  epmd_port=$epmd
  (
    cd "$dir"
    export HOME=$dir/home \
      RABBITMQ_CONF_ENV_FILE=/dev/null \
      RABBITMQ_NODENAME=warren-compare@localhost \
      RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
      RABBITMQ_NODE_PORT=$port \
      RABBITMQ_DIST_PORT=$dist \
      RABBITMQ_MNESIA_BASE=$dir/mnesia \
      RABBITMQ_LOG_BASE=$dir/log \
      RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf \
      RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins \
      RABBITMQ_PID_FILE=$dir/rabbitmq.pid \
      ERL_EPMD_PORT=$epmd \
      ERL_EPMD_ADDRESS=127.0.0.1
    exec "$RABBIT_SERVER"
  ) >"$dir/stdout.log" 2>"$dir/stderr.log" &
  pids+=($!)
  rabbit_pid=$!
  wait_amqp "$port" rabbitmq $!
}

# Waits (at most 60 s) until the process tree under pid $1 uses under 5% of a core: a broker may
# still be dropping the previous run's backlog (RabbitMQ after fanout100 takes seconds), which
# would be charged to the next run.
wait_idle() {
  python3 - "$1" <<'EOF'
import os, sys, time
root = int(sys.argv[1])
tick = os.sysconf("SC_CLK_TCK")
def tree_cpu():
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                f = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
                procs[int(d)] = (int(f[1]), int(f[11]) + int(f[12]))  # ppid, utime + stime
            except (OSError, IndexError, ValueError):
                pass
    mine, grew = {root}, True
    while grew:
        grew = False
        for pid, (ppid, _) in procs.items():
            if ppid in mine and pid not in mine:
                mine.add(pid)
                grew = True
    return sum(procs[p][1] for p in mine if p in procs)
deadline = time.monotonic() + 60
prev = tree_cpu()
while time.monotonic() < deadline:
    time.sleep(1)
    cur = tree_cpu()
    if (cur - prev) / tick < 0.05:
        sys.exit(0)
    prev = cur
print("compare-rabbitmq: broker still busy after 60 s; measuring anyway", file=sys.stderr)
EOF
}

# run_perf NAME PORT SCENARIO REPEAT: one warren-perf run, JSON summary to results/.
run_perf() {
  local name=$1 port=$2 scenario=$3 r=$4
  local base="$TMP/results/$name-$scenario-$r"
  log "$name: $scenario (${duration} s, run $r)"
  if ! timeout $((duration + 90)) "$PERF" --port "$port" --scenario "$scenario" -z "$duration" \
    --json >"$base.json" 2>"$base.log"; then
    echo "compare-rabbitmq: warren-perf failed against $name ($scenario):" >&2
    tail -5 "$base.log" >&2
    rm -f "$base.json"  # a failed run is reported as n/a, not averaged in
    return 1
  fi
}

# The rmq-perf arguments of each row (the rows of the performance goals in docs/benchmarks.md).
rmq_args() {
  case "$1" in
    ack50) echo "-x 1 -y 1 -s 16 -q 200 --ack-every 50" ;;
    autoack) echo "-x 1 -y 1 -s 16 --ack-every 0" ;;
    persistent) echo "-x 1 -y 1 -s 1024 -q 200 --ack-every 50 --persistent -c 100" ;;
    latency250k) echo "-x 1 -y 1 -s 16 -q 200 --ack-every 50 -r 250000" ;;
    queues8) echo "-x 8 -y 8 --queues 8 -s 16 -q 200 --ack-every 50" ;;
    *) die "unknown rmq-perf row $1 (ack50, autoack, persistent, latency250k, queues8)" ;;
  esac
}
for row in "${rmq_row_list[@]}"; do rmq_args "$row" >/dev/null; done

# The process whose CPU a broker's work shows in: warren itself; for RabbitMQ the Erlang VM
# (beam.smp), a descendant of the start script.
broker_cpu_pid() {
  local pid=$1
  for _ in 1 2 3 4; do
    if [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = beam.smp ] || [ "$pid" = "$warren_pid" ]; then
      echo "$pid"
      return
    fi
    local child
    child=$(pgrep -P "$pid" | head -1)
    [ -n "$child" ] || break
    pid=$child
  done
  echo "$1"
}

# run_rmq NAME PORT ROW REPEAT BROKER_PID: one rmq-perf run, JSON summary to results/.
run_rmq() {
  local name=$1 port=$2 row=$3 r=$4 pid=$5
  local base="$TMP/results/$name-rmq-$row-$r"
  log "$name: rmq-perf $row (${duration} s, run $r)"
  # shellcheck disable=SC2046
  if ! timeout $((duration + 90)) "$RMQ_PERF" --port "$port" $(rmq_args "$row") -z "$duration" \
    --queue-prefix "rmq-perf-$row" --broker-pid "$pid" >"$base.json" 2>"$base.log"; then
    echo "compare-rabbitmq: rmq-perf failed against $name ($row):" >&2
    tail -5 "$base.log" >&2
    rm -f "$base.json"
    return 1
  fi
}

# The commit the Warren binary was built from, read before the runs (others may commit meanwhile):
# HEAD, marked dirty when src/ has local changes, unless WARREN_COMMIT says otherwise (e.g. for a
# binary built elsewhere and picked with BUILD_DIR).
commit=${WARREN_COMMIT:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}
if [ -z "${WARREN_COMMIT:-}" ] && [ -n "$(git -C "$ROOT" status --porcelain -- src 2>/dev/null)" ]; then
  commit="$commit+dirty"
fi

read -r warren_port rabbit_port rabbit_dist epmd sink_port deliver_port <<<"$(free_ports 6)"

if [ "$smoke" = 1 ]; then
  start_warren "$warren_port"
  start_sink "$sink_port" sink
  status=0
  for s in "${scenario_list[@]}"; do
    run_perf warren "$warren_port" "$s" 1 || { status=1; continue; }
    python3 - "$TMP/results/warren-$s-1.json" <<'EOF' || status=1
import json, sys
j = json.load(open(sys.argv[1]))
ok = j["sent"] > 0 and j["received"] > 0 and j["errors"] == 0
print(f'{"ok  " if ok else "FAIL"} warren {j["scenario"]}: sent {j["sent"]}, received {j["received"]}, '
      f'p99 {j["latency_us"]["p99"]:.0f} us')
sys.exit(0 if ok else 1)
EOF
  done
  for row in "${rmq_row_list[@]}"; do
    run_rmq warren "$warren_port" "$row" 1 "$warren_pid" || { status=1; continue; }
    python3 - "$TMP/results/warren-rmq-$row-1.json" "$row" <<'EOF' || status=1
import json, sys
j = json.load(open(sys.argv[1]))
ok = j["published"] > 0 and j["consumed"] > 0
print(f'{"ok  " if ok else "FAIL"} warren rmq-perf {sys.argv[2]}: published {j["published"]}, '
      f'consumed {j["consumed"]}, {j.get("broker_cpu_us_per_msg") or 0:.2f} us CPU/msg')
sys.exit(0 if ok else 1)
EOF
  done
  run_perf sink "$sink_port" throughput 1 || status=1
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(("ok  " if j["sent"]>0 else "FAIL")+" amqp-sink throughput: sent %d" % j["sent"]); sys.exit(0 if j["sent"]>0 else 1)' \
    "$TMP/results/sink-throughput-1.json" || status=1
  exit $status
fi

install_rabbitmq
rabbit_version=$(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo unknown)
log "starting RabbitMQ $rabbit_version on 127.0.0.1:$rabbit_port"
start_rabbitmq "$rabbit_port" "$rabbit_dist" "$epmd"
log "starting Warren on 127.0.0.1:$warren_port"
start_warren "$warren_port"
start_sink "$sink_port" sink
start_sink "$deliver_port" sink-deliver --deliver

# Interleaved (RabbitMQ, then Warren, per scenario and repeat) so that background load on a shared
# machine spreads over both; the idle broker stays up but uses next to no CPU.
for r in $(seq 1 "$repeat"); do
  for s in "${scenario_list[@]}"; do
    wait_idle "$rabbit_pid"
    run_perf rabbitmq "$rabbit_port" "$s" "$r" || true
    wait_idle "$warren_pid"
    run_perf warren "$warren_port" "$s" "$r" || true
  done
  # The tool's own ceiling: publishing into a sink that discards, and end to end through a sink
  # that hands each message straight to the consumer.
  rabbit_cpu_pid=$(broker_cpu_pid "$rabbit_pid")
  for row in "${rmq_row_list[@]}"; do
    wait_idle "$rabbit_pid"
    run_rmq rabbitmq "$rabbit_port" "$row" "$r" "$rabbit_cpu_pid" || true
    wait_idle "$warren_pid"
    run_rmq warren "$warren_port" "$row" "$r" "$warren_pid" || true
  done
  run_perf sink "$sink_port" throughput "$r" || true
  run_perf sink-deliver "$deliver_port" throughput "$r" || true
  run_perf sink-deliver "$deliver_port" latency20k "$r" || true
done

python3 - "$TMP/results" "$repeat" "$duration" "$rabbit_version" "$commit" "$out" "$rmq_rows" \
  "${scenario_list[@]}" <<'EOF'
import json, statistics, sys, os, datetime
results, repeat, duration, rversion, commit, out, rmq_rows = sys.argv[1:8]
scenarios = sys.argv[8:]
rmq_rows = [r for r in rmq_rows.split(",") if r]
repeat = int(repeat)

def load(name, s):
    runs = []
    for r in range(1, repeat + 1):
        p = os.path.join(results, f"{name}-{s}-{r}.json")
        if os.path.exists(p):
            runs.append(json.load(open(p)))
    return runs

def med(runs, key):
    vals = []
    for j in runs:
        v = j
        for k in key.split("."):
            v = v[k]
        vals.append(v)
    return statistics.median(vals) if vals else None

# (label, key, unit, higher_is_better)
rate_rows = [("sent msg/s", "sent_rate"), ("received msg/s", "received_rate")]
lat_rows = [("latency p50 us", "latency_us.p50"), ("latency p95 us", "latency_us.p95"),
            ("latency p99 us", "latency_us.p99"), ("latency max us", "latency_us.max")]
metrics = {
    "throughput": rate_rows + [("latency p99 us", "latency_us.p99")],
    "fanout100": rate_rows + [("latency p99 us", "latency_us.p99")],
    "latency20k": [("received msg/s", "received_rate")] + lat_rows,
    "persistent-confirms": [("sent msg/s", "sent_rate"),
                            ("confirmed msg/s", "confirmed_rate"),
                            ("received msg/s", "received_rate"),
                            ("latency p99 us", "latency_us.p99")],
}

def fmt(v):
    if v is None:
        return "-"
    return f"{v:,.0f}"

lines = []
lines.append(f"warren-perf, {duration} s per run, median of {repeat} run(s) per cell; a rate is the "
             "run's total over its duration (a flow-controlled publisher sends in bursts, which "
             "makes a median of per-second rates misleading); received counts every delivery "
             "(fanout100: over all 100 queues)")
lines.append(f"RabbitMQ {rversion} (Debian), Warren {commit}, {os.cpu_count()} cores, "
             f"{datetime.date.today().isoformat()}")
lines.append("")
lines.append("| scenario | metric | RabbitMQ | Warren | Warren/RabbitMQ |")
lines.append("| --- | --- | ---: | ---: | ---: |")
for s in scenarios:
    rr, wr = load("rabbitmq", s), load("warren", s)
    for label, key in metrics.get(s, rate_rows + lat_rows):
        a, b = med(rr, key), med(wr, key)
        ratio = f"{b / a:.2f}x" if a and b is not None else "n/a"
        lines.append(f"| {s} | {label} | {fmt(a)} | {fmt(b)} | {ratio} |")
ceiling = [("amqp-sink (discards)", "sink", "throughput"),
           ("amqp-sink --deliver", "sink-deliver", "throughput"),
           ("amqp-sink --deliver", "sink-deliver", "latency20k")]
if any(load(name, s) for _, name, s in ceiling):
    lines.append("")
    lines.append("Load generator ceiling: the same tool against amqp-sink, which answers the setup "
                 "and either discards messages or hands each one straight to the consumer "
                 "(no queue, no prefetch):")
    lines.append("")
    lines.append("| target | scenario | sent msg/s | received msg/s | latency p50 us | latency p99 us |")
    lines.append("| --- | --- | ---: | ---: | ---: | ---: |")
    for label, name, s in ceiling:
        runs = load(name, s)
        if not runs:
            continue
        recv = med(runs, "received_rate") if name != "sink" else None
        p50 = med(runs, "latency_us.p50") if name != "sink" else None
        p99 = med(runs, "latency_us.p99") if name != "sink" else None
        lines.append(f"| {label} | {s} | {fmt(med(runs, 'sent_rate'))} | {fmt(recv)} | "
                     f"{fmt(p50)} | {fmt(p99)} |")
if rmq_rows:
    lines.append("")
    lines.append(f"rmq-perf (rabbitmq-c), same brokers, {duration} s per run after 2 s of warm-up, median of "
                 f"{repeat} run(s); CPU: the broker process's user + system time over the measured window "
                 "divided by the messages consumed in it; threads: the broker's busiest threads, share of a "
                 "core")
    lines.append("")
    lines.append("| row | metric | RabbitMQ | Warren | Warren/RabbitMQ |")
    lines.append("| --- | --- | ---: | ---: | ---: |")
    rows_metrics = [("consumed msg/s", "consume_rate"), ("latency p50 us", "latency_us.p50"),
                    ("latency p99 us", "latency_us.p99"), ("broker CPU us/msg", "broker_cpu_us_per_msg")]
    for row in rmq_rows:
        rr, wr = load("rabbitmq", "rmq-" + row), load("warren", "rmq-" + row)
        for label, key in rows_metrics:
            top = key.split(".")[0]
            a = med([j for j in rr if j.get(top) is not None], key)
            b = med([j for j in wr if j.get(top) is not None], key)
            ratio = f"{b / a:.2f}x" if a and b is not None else "n/a"
            f2 = (lambda v: "-" if v is None else f"{v:.2f}") if "CPU" in label else fmt
            lines.append(f"| {row} | {label} | {f2(a)} | {f2(b)} | {ratio} |")
        for name, runs in (("RabbitMQ", rr), ("Warren", wr)):
            if runs and runs[-1].get("broker_thread_cores"):
                top = sorted(runs[-1]["broker_thread_cores"].items(), key=lambda kv: -kv[1])[:4]
                busy = ", ".join(f"{t.split('/')[0]} {c:.2f}" for t, c in top)
                lines.append(f"| {row} | {name} threads (last run) | | | {busy} |")
text = "\n".join(lines)
print(text)
if out:
    open(out, "w").write(text + "\n")
EOF
