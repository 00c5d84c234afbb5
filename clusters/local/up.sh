#!/usr/bin/env bash
# Start a real multi-node Ray cluster on this machine's loopback: one head (with the job
# dashboard bound to 127.0.0.1) plus N worker nodes, each its own raylet, token auth on.
#
#   clusters/local/up.sh [WORKERS=2] [CPUS_PER_NODE=1] [GPUS_PER_NODE=0] [PORT=6399]
#
# Environment knobs (all optional):
#   DASHBOARD_PORT   job/dashboard HTTP port on 127.0.0.1 (default 8265): tunekit submit --address http://127.0.0.1:8265
#   NODE_PORT_BASE   first port of the per-node blocks (default PORT+10000); node i (0 = head) uses
#                    NODE_PORT_BASE+100*i .. +99: raylet, object manager, dashboard agent (http, grpc),
#                    metrics, runtime-env agent, Ray client server (head), and workers on the last 90 ports.
#                    Nodes on one host must not share these, or the second node fails to start.
#   HEAD_CPUS, HEAD_GPUS  the head's own resources (default: CPUS_PER_NODE, GPUS_PER_NODE)
#   START_ATTEMPTS   tries per node (default 3)
#   CLUSTER_DIR      where pids, logs and Ray's session files go (default /tmp/tk-cluster-PORT)
#   START_NICE       CPU priority while the cluster starts (e.g. -10 on a crowded machine, root only):
#                    the nice value of each node's scheduler autogroup (a node is its own session, and
#                    with autogrouping only the group's nice counts against other sessions); set back
#                    to 0 once every node is up, so trials compete normally
#   RAY_AUTH_TOKEN_PATH  the token file (default ~/.ray/auth_token); created (mode 600) if missing.
#
# GPUS_PER_NODE advertises *logical* GPUs, so GPU placement and fractional packing can be
# exercised on a CPU-only box. Each node runs under `ray start --block` in its own process
# group; its pid goes to CLUSTER_DIR/pids, and down.sh stops exactly those groups.
set -euo pipefail
WORKERS=${1:-2}
CPUS=${2:-1}
GPUS=${3:-0}
PORT=${4:-6399}
DASHBOARD_PORT=${DASHBOARD_PORT:-8265}
NODE_PORT_BASE=${NODE_PORT_BASE:-$((PORT + 10000))}
CLUSTER_DIR=${CLUSTER_DIR:-/tmp/tk-cluster-$PORT}
WAIT_S=${WAIT_S:-120}
HEAD_CPUS=${HEAD_CPUS:-$CPUS}
HEAD_GPUS=${HEAD_GPUS:-$GPUS}

# Ray's unix sockets live under CLUSTER_DIR/ray/session_<date>_<pid>/sockets/ and AF_UNIX paths
# are limited to 107 bytes.
if (( ${#CLUSTER_DIR} > 32 )); then
  echo "up.sh: CLUSTER_DIR $CLUSTER_DIR is too long (${#CLUSTER_DIR} > 32 characters): Ray's socket paths under it would exceed 107 bytes" >&2
  exit 2
fi
if [[ -s "$CLUSTER_DIR/pids" ]]; then
  echo "up.sh: $CLUSTER_DIR/pids exists: a cluster on port $PORT may be running (clusters/local/down.sh $PORT)" >&2
  exit 1
fi
mkdir -p "$CLUSTER_DIR"
: > "$CLUSTER_DIR/pids"

# Token authentication: every node and every client presents the same token.
export RAY_AUTH_MODE=token
export RAY_USAGE_STATS_ENABLED=0
# A loaded machine can take longer than Ray's default wait for a node's dashboard agent to come up.
export RAY_agent_register_timeout_ms=${RAY_agent_register_timeout_ms:-120000}
TOKEN_FILE=${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}
if [[ -z "${RAY_AUTH_TOKEN:-}" && ! -s "$TOKEN_FILE" ]]; then
  mkdir -p "$(dirname "$TOKEN_FILE")"
  (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$TOKEN_FILE")
fi

set_priority() {  # session leader pid, nice: the node's autogroup (whole session), else its processes
  if [[ -w /proc/$1/autogroup ]]; then echo "$2" > "/proc/$1/autogroup" 2>/dev/null || true; fi
  renice -n "$2" -g "$1" > /dev/null 2>&1 || true
}

node_ports() {  # node index -> the ray start flags of its port block
  local base=$((NODE_PORT_BASE + 100 * $1))
  echo "--node-manager-port=$base --object-manager-port=$((base + 1))" \
       "--dashboard-agent-listen-port=$((base + 2)) --dashboard-agent-grpc-port=$((base + 3))" \
       "--metrics-export-port=$((base + 4)) --runtime-env-agent-port=$((base + 5))" \
       "--min-worker-port=$((base + 10)) --max-worker-port=$((base + 99))"
}

launch() {  # index, cpus, gpus, extra flags...: one node in its own session (pid = process group id)
  local i=$1 cpus=$2 gpus=$3; shift 3
  : > "$CLUSTER_DIR/node-$i.log"  # truncate here: the background job's own redirect may come late
  # shellcheck disable=SC2046
  setsid ray start --block --node-ip-address=127.0.0.1 --num-cpus="$cpus" --num-gpus="$gpus" \
    --disable-usage-stats $(node_ports "$i") "$@" >> "$CLUSTER_DIR/node-$i.log" 2>&1 < /dev/null &
  local pid=$!
  echo "$pid" >> "$CLUSTER_DIR/pids"
  if [[ -n "${START_NICE:-}" ]]; then
    until [[ "$(ps -o sid= -p "$pid" 2>/dev/null | tr -d ' ')" == "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    set_priority "$pid" "$START_NICE"
  fi
  local deadline=$((SECONDS + WAIT_S))
  until grep -q "Ray runtime started" "$CLUSTER_DIR/node-$i.log" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null || (( SECONDS > deadline )); then
      pkill -KILL -g "$pid" 2>/dev/null || true
      return 1
    fi
    sleep 0.5
  done
}

start_node() {  # index, extra flags...
  # On a loaded machine a raylet gives up when its dashboard agent takes more than ~15 s to
  # start (a fixed wait inside Ray); the node then exits and a second try usually works.
  for attempt in $(seq 1 "${START_ATTEMPTS:-3}"); do
    launch "$@" && return 0
    echo "up.sh: node $1 failed to start (attempt $attempt); see $CLUSTER_DIR/node-$1.log" >&2
    cp "$CLUSTER_DIR/node-$1.log" "$CLUSTER_DIR/node-$1.failed-$attempt.log" 2>/dev/null || true
  done
  tail -20 "$CLUSTER_DIR/node-$1.log" >&2 || true
  bash "$(dirname "$0")/down.sh" "$PORT"
  exit 1
}

start_node 0 "$HEAD_CPUS" "$HEAD_GPUS" --head --port="$PORT" --temp-dir="$CLUSTER_DIR/ray" \
  --include-dashboard=true --dashboard-host=127.0.0.1 --dashboard-port="$DASHBOARD_PORT" \
  --ray-client-server-port=$((NODE_PORT_BASE + 6))
for i in $(seq 1 "$WORKERS"); do
  start_node "$i" "$CPUS" "$GPUS" --address="127.0.0.1:$PORT"
done
if [[ -n "${START_NICE:-}" ]]; then
  while read -r pid; do set_priority "$pid" 0; done < "$CLUSTER_DIR/pids"
fi
echo "127.0.0.1:$PORT" > "$CLUSTER_DIR/address"
echo "http://127.0.0.1:$DASHBOARD_PORT" > "$CLUSTER_DIR/dashboard"
echo "Ray cluster up: head + $WORKERS workers; GCS 127.0.0.1:$PORT, jobs http://127.0.0.1:$DASHBOARD_PORT" \
     "(token: ${RAY_AUTH_TOKEN:+\$RAY_AUTH_TOKEN}${RAY_AUTH_TOKEN:-$TOKEN_FILE}; pids in $CLUSTER_DIR/pids)"
