#!/usr/bin/env bash
# Starts or stops a private RabbitMQ node (Debian's rabbitmq-server, a reference only, not a dependency) with the
# management plugin, for running the management tests against the real thing:
#   tests/support/reference_rabbitmq.sh start DIR   # prints "AMQP_PORT,HTTP_PORT" once the node answers
#   WARREN_MGMT_EXTERNAL=$(...) python3 -m pytest tests/integration/test_mgmt_rabbitmqadmin.py
#   tests/support/reference_rabbitmq.sh stop DIR
# WARREN_REF_PLUGINS (an Erlang list's items, default rabbitmq_management) and WARREN_REF_CLUSTER_NAME choose the
# plugins and the cluster_name (the federation tests use rabbitmq_federation and rabbitmq_shovel).
# Ports are chosen free at start; the node's name, data and logs are all under DIR. Runs as the rabbitmq user
# when started as root, like Debian's wrapper.
set -euo pipefail
cmd=${1:?start|stop}
dir=$(realpath -m "${2:?directory}")
node="warrenref$(printf '%s' "$dir" | cksum | cut -d' ' -f1)@localhost"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
run_as() {
  if [[ $(id -u) -eq 0 ]] && id rabbitmq >/dev/null 2>&1; then
    runuser -u rabbitmq -- env "$@"
  else
    env "$@"
  fi
}
envs() {
  echo RABBITMQ_NODENAME="$node" RABBITMQ_BASE="$dir" RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" RABBITMQ_MNESIA_BASE="$dir/mnesia" \
    RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_PID_FILE="$dir/pid" RABBITMQ_PLUGINS_EXPAND_DIR="$dir/plugins-expand" \
    RABBITMQ_DIST_PORT="$(cat "$dir/dist_port")"
}
case "$cmd" in
  start)
    mkdir -p "$dir/log" "$dir/mnesia"
    amqp=$(free_port); http=$(free_port); dist=$(free_port)
    echo "$dist" >"$dir/dist_port"
    cat >"$dir/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$amqp
management.tcp.port = $http
management.tcp.ip = 127.0.0.1
# Stats every 500 ms rather than 5 s, so that the tests' counts settle quickly.
collect_statistics_interval = 500
CONF
    if [[ -n ${WARREN_REF_CLUSTER_NAME:-} ]]; then echo "cluster_name = $WARREN_REF_CLUSTER_NAME" >>"$dir/rabbitmq.conf"; fi
    echo "[${WARREN_REF_PLUGINS:-rabbitmq_management}]." >"$dir/enabled_plugins"
    [[ $(id -u) -eq 0 ]] && id rabbitmq >/dev/null 2>&1 && chown -R rabbitmq: "$dir"
    # shellcheck disable=SC2046
    run_as $(envs) /usr/lib/rabbitmq/bin/rabbitmq-server >"$dir/log/stdout.log" 2>&1 &
    for _ in $(seq 120); do
      if curl -sf -u guest:guest "http://127.0.0.1:$http/api/overview" >/dev/null; then
        echo "$amqp,$http"
        exit 0
      fi
      sleep 1
    done
    echo "RabbitMQ did not answer on $http; see $dir/log" >&2
    exit 1
    ;;
  stop)
    # shellcheck disable=SC2046
    run_as $(envs) /usr/lib/rabbitmq/bin/rabbitmqctl -n "$node" stop >/dev/null
    ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
