#!/usr/bin/env bash
# Stop the loopback cluster that up.sh started on PORT (default 6399), and only that one:
# the process groups whose leaders up.sh wrote to CLUSTER_DIR/pids. `ray stop` or a pkill by
# name would also kill every other Ray session of this user (a notebook, another sweep).
#
#   clusters/local/down.sh [PORT=6399]
set -uo pipefail
PORT=${1:-6399}
CLUSTER_DIR=${CLUSTER_DIR:-/tmp/tk-cluster-$PORT}
PIDS="$CLUSTER_DIR/pids"
if [[ ! -f "$PIDS" ]]; then
  echo "down.sh: no $PIDS: nothing started by up.sh on port $PORT" >&2
  exit 0
fi

ours() {  # is process group $1 still the one up.sh started?
  # While any member lives, the kernel hands out no new process with that id, so a group whose
  # leader died (e.g. a killed node) is still ours; a live leader must be our `ray start`.
  if [[ -r /proc/$1/cmdline ]]; then
    tr '\0' ' ' < "/proc/$1/cmdline" | grep -q "ray start --block" \
      && [[ "$(ps -o pgid= -p "$1" | tr -d ' ')" == "$1" ]]
  else
    pgrep -g "$1" > /dev/null
  fi
}

groups=()
while read -r pid; do
  [[ -n "$pid" ]] && ours "$pid" && groups+=("$pid")
done < "$PIDS"
# Workers first, head last, so workers do not spend the grace period reconnecting.
for (( k=${#groups[@]}-1; k>=0; k-- )); do kill -TERM -- "-${groups[k]}" 2>/dev/null || true; done
for _ in $(seq 1 20); do
  alive=0
  for pgid in "${groups[@]}"; do pgrep -g "$pgid" > /dev/null && alive=1; done
  (( alive )) || break
  sleep 0.5
done
for pgid in "${groups[@]}"; do pkill -KILL -g "$pgid" 2>/dev/null || true; done
rm -f "$PIDS"
echo "Ray cluster on port $PORT stopped (${#groups[@]} node process groups)"
