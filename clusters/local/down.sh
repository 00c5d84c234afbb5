#!/usr/bin/env bash
# Stop every Ray node this user started on this machine (see up.sh).
set -euo pipefail
ray stop --force >/dev/null 2>&1 || true
echo "Ray cluster stopped"
