#!/usr/bin/env bash
# Start a real multi-node Ray cluster on this machine's loopback: one head plus N worker
# nodes, each its own raylet, with token authentication on (Ray's default since 2.5x).
#
#   clusters/local/up.sh [WORKERS=2] [CPUS_PER_NODE=1] [GPUS_PER_NODE=0] [PORT=6399]
#
# GPUS_PER_NODE advertises *logical* GPUs, so GPU scheduling and fractional packing can be
# exercised on a CPU-only box. Then: tunekit run SPEC --address 127.0.0.1:PORT
# Stop with clusters/local/down.sh.
set -euo pipefail
WORKERS=${1:-2}
CPUS=${2:-1}
GPUS=${3:-0}
PORT=${4:-6399}
TEMP_DIR=/tmp/tk-ray-$PORT               # this cluster's own session dir: down.sh stops only it
export RAY_AUTH_MODE=token            # clients and workers present the token in ~/.ray/auth_token
export RAY_USAGE_STATS_ENABLED=0
ray start --head --node-ip-address=127.0.0.1 --port="$PORT" --num-cpus="$CPUS" --num-gpus="$GPUS" \
  --include-dashboard=false --disable-usage-stats --temp-dir="$TEMP_DIR" >/dev/null
for _ in $(seq 1 "$WORKERS"); do
  ray start --address="127.0.0.1:$PORT" --node-ip-address=127.0.0.1 --num-cpus="$CPUS" --num-gpus="$GPUS" \
    --temp-dir="$TEMP_DIR" >/dev/null
done
echo "Ray cluster up: head + $WORKERS workers at 127.0.0.1:$PORT (export RAY_AUTH_MODE=token to connect)"
