#!/usr/bin/env bash
# The cluster's fault scenarios under load, long versions: the same tests as the suite's
# (tests/integration/test_cluster_faults.py, section e: kill -9 and back, with the clients on the
# queue's node and across nodes; a pause longer than the lease, a cut from etcd, a cut from
# everything; nodes cut from each other while etcd stays reachable, both ways and one way; etcd's
# leader killed; and the checker against a node that confirms before it writes, clients on its node
# and across nodes) with each load phase stretched to SECONDS (default 30; the suite uses 1) and the
# one-way cuts between nodes added (WARREN_FAULT_ALL_CUTS). Prints each scenario's figures:
# confirmed / published / refused / delivered, lost, unexpected, duplicates (unflagged), order
# broken, and the times (failover, fencing, reconnection). Needs root (network namespaces),
# etcd-server, python3-pika, a Release build.
# Usage: bench/cluster_faults.sh [SECONDS]     (WARREN_BIN for another binary)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-30}
cd "$ROOT/tests/integration"
ulimit -n 20000
WARREN_FAULT_LOAD_SECONDS=$seconds WARREN_FAULT_ALL_CUTS=1 /usr/bin/python3 -m pytest -q -rP -p no:cacheprovider \
  -k "under_load or checker_catches" test_cluster_faults.py 2>&1 |
  grep -v '^20[0-9][0-9]-\|^---\|^{"level"' | sed -n '/PASSES\|FAILURES/,$p'
