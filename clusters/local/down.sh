#!/usr/bin/env bash
# Stop the loopback cluster that up.sh started on PORT (default 6399), and only that one:
# `ray stop` would also kill any other Ray session of this user (a notebook, another sweep).
#
#   clusters/local/down.sh [PORT=6399]
set -uo pipefail
PORT=${1:-6399}
TEMP_DIR=/tmp/tk-ray-$PORT
for signal in TERM KILL; do
  pkill -"$signal" -f -- "$TEMP_DIR" 2>/dev/null || true
  pkill -"$signal" -f -- "127.0.0.1:$PORT" 2>/dev/null || true
  sleep 2
done
echo "Ray cluster on port $PORT stopped"
