#!/usr/bin/env bash
# `make bench`: the benchmark runs behind BENCHMARKS.md. Starts its own stockd (and gateway)
# on free loopback ports with temporary data directories, runs stockbench, and prints one
# JSON line per measurement (also saved in $BUILD/bench-results.jsonl).
#
#   DURATION=10s make bench      measured seconds per run (default 10s)
set -euo pipefail
BUILD=${1:-build}
DURATION=${DURATION:-10s}
OUT="$BUILD/bench-results.jsonl"
WORK=$(mktemp -d /tmp/stockd-bench-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
: > "$OUT"

# start_stockd NAME ARGS... : starts stockd on a free port, sets ADDR and PID
start_stockd() {
  local name=$1; shift
  "$BUILD/stockd" --listen 127.0.0.1:0 --data-dir "$WORK/$name" "$@" 2> "$WORK/$name.log" &
  PID=$!
  pids+=("$PID")
  for _ in $(seq 100); do
    ADDR=$(grep -o '"event":"listening","address":"127.0.0.1:[0-9]*' "$WORK/$name.log" \
             | grep -o '127.0.0.1:[0-9]*' || true)
    [ -n "$ADDR" ] && return 0
    sleep 0.1
  done
  echo "stockd did not start" >&2; cat "$WORK/$name.log" >&2; exit 1
}

stop_pid() { kill -TERM "$1"; wait "$1" || true; }

record() { # record LABEL JSON
  local line="{\"run\":\"$1\",${2#\{}"
  echo "$line" | tee -a "$OUT"
}

rss_kib() { grep VmHWM "/proc/$1/status" | awk '{print $2}'; }

BENCH=("$BUILD/stockbench" --duration "$DURATION" --warmup 2s --connections 4 --inflight 64
       --lines-min 1 --lines-max 3)

echo "== machine: $(nproc) cores, $(grep MemTotal /proc/meminfo | awk '{print $2/1048576 " GiB"}'), $(uname -r)"

echo "== 1. health vs durable restricted decrements, 10k SKUs, --sync=always"
start_stockd always
record compare_sync_always "$("${BENCH[@]}" --stockd "$ADDR" --skus 10000 --compare | tail -n 1)"
stop_pid "$PID"

echo "== 2. the same decrements with --sync=never"
start_stockd never --sync never
record decrement_sync_never "$("${BENCH[@]}" --stockd "$ADDR" --skus 10000 --mode decrement | tail -n 1)"
stop_pid "$PID"

echo "== 3. 1,000,000 SKUs stored (--block-cache-mb 64 --write-buffer-mb 32)"
start_stockd million
"${BENCH[@]}" --stockd "$ADDR" --skus 1000000 --mode health --duration 1s --warmup 0s >/dev/null
record decrement_1m_skus "$("${BENCH[@]}" --stockd "$ADDR" --skus 1000000 --mode decrement | tail -n 1)"
echo "{\"run\":\"rss_1m_skus\",\"stockd_peak_rss_mib\":$(( $(rss_kib "$PID") / 1024 ))}" | tee -a "$OUT"
stop_pid "$PID"

echo "== 4. Wix calls through the gateway vs direct gRPC decrements (1 line each, 64 connections)"
start_stockd wix
"$BUILD/stockd-gateway" --listen 127.0.0.1:0 --stockd "$ADDR" --dev --dev-dir "$WORK/dev" \
  2> "$WORK/gateway.log" &
GW_PID=$!
pids+=("$GW_PID")
for _ in $(seq 100); do
  GW=$(grep -o '"event":"listening","address":"127.0.0.1:[0-9]*' "$WORK/gateway.log" \
         | grep -o '127.0.0.1:[0-9]*' || true)
  [ -n "$GW" ] && break
  sleep 0.1
done
record direct_1_line "$("${BENCH[@]}" --stockd "$ADDR" --lines-max 1 --skus 10000 --mode decrement | tail -n 1)"
record wix_gateway "$("${BENCH[@]}" --stockd "$ADDR" --lines-max 1 --skus 10000 --mode wix \
  --gateway "$GW" --connections 64 --key "$WORK/dev/wix-private.pem" | tail -n 1)"
stop_pid "$GW_PID"
stop_pid "$PID"

echo "== results in $OUT"
