#!/usr/bin/env bash
# `make run`: starts stockd on 127.0.0.1:50051 with its data in ./stockd-data and stops it
# cleanly on Ctrl-C. Every setting can be overridden with the STOCKD_* environment variables.
set -euo pipefail
BUILD=${1:-build}
pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait
}
trap stop INT TERM

"$BUILD/stockd" &
pids+=($!)
echo "stockd: gRPC on ${STOCKD_LISTEN:-127.0.0.1:50051}, data in ${STOCKD_DATA_DIR:-./stockd-data}" >&2
echo "press Ctrl-C to stop" >&2
wait
