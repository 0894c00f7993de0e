#!/usr/bin/env bash
# `make run`: starts stockd (gRPC on 127.0.0.1:50051, data in ./stockd-data, metrics on
# 127.0.0.1:9090, Admin on 127.0.0.1:50052) and stockd-gateway (HTTP on 127.0.0.1:8080) in development mode: without a
# configured Wix key the gateway makes a local key pair and app id in ./stockd-gateway-dev, so
# calls can be signed with `stockctl wix-sign`. The banner is printed only once both have
# logged that they are listening; if either fails to start (port taken, data directory locked
# by another stockd), its reason is printed and this exits non-zero. Ctrl-C stops both cleanly.
# Every setting can be overridden with the STOCKD_* / STOCKD_GATEWAY_* environment variables.
set -euo pipefail
BUILD=${1:-build}
START_TIMEOUT_S=${START_TIMEOUT_S:-30}
logs=$(mktemp -d)
pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$logs"
}
trap stop INT TERM EXIT

# Starts a process whose log goes to the terminal and to $logs/NAME.log.
start() {
  local name=$1
  shift
  "$@" 2> >(tee "$logs/$name.log" >&2) &
  pids+=($!)
}

# Waits until NAME logs "listening"; on exit or time-out prints why and fails.
wait_listening() {
  local name=$1 pid=$2 waited=0
  while ! grep -q '"event":"listening"' "$logs/$name.log" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo >&2
      echo "make run: $name did not start. Its last words:" >&2
      grep -E '"level":"(error|warn)"' "$logs/$name.log" | tail -n 5 >&2 || tail -n 5 "$logs/$name.log" >&2
      exit 1
    fi
    if [ "$waited" -ge $((START_TIMEOUT_S * 10)) ]; then
      echo "make run: $name did not report listening within ${START_TIMEOUT_S}s" >&2
      exit 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

export STOCKD_METRICS_LISTEN=${STOCKD_METRICS_LISTEN:-127.0.0.1:9090}
# Admin (checkpoints) on its own loopback port; stockctl's --admin defaults to it
export STOCKD_ADMIN_LISTEN=${STOCKD_ADMIN_LISTEN:-127.0.0.1:50052}
start stockd "$BUILD/stockd"
wait_listening stockd "${pids[0]}"
start stockd-gateway "$BUILD/stockd-gateway" --dev
wait_listening stockd-gateway "${pids[1]}"

app=215238eb-22a5-4c36-9e7b-e7c08025e04e
cat >&2 <<TEXT

stockd          gRPC  ${STOCKD_LISTEN:-127.0.0.1:50051}   data ${STOCKD_DATA_DIR:-./stockd-data}   metrics http://${STOCKD_METRICS_LISTEN}/metrics
                admin ${STOCKD_ADMIN_LISTEN} (stockctl backup)   plaintext, no auth policy: loopback only
stockd-gateway  HTTP  ${STOCKD_GATEWAY_LISTEN:-127.0.0.1:8080}    dev keys ${STOCKD_GATEWAY_DEV_DIR:-./stockd-gateway-dev}

Try a Wix order (in another terminal; see README "Try it"): stock both items it orders, then
sign the call as Wix would and send it (200 {}; a second time 428: stock is gone):
  $BUILD/stockctl --variant 00000000-0000-0020-0005-9a8c3e1f2b7d set $app b542eb00-8d3d-4df6-9abd-8254b4469f25 5
  $BUILD/stockctl set $app 283de61d-5a1e-49cc-b137-ae7067bea453 1
  $BUILD/stockctl wix-sign examples/wix/order-placed.json > token
  curl -s -i --data-binary @token http://${STOCKD_GATEWAY_LISTEN:-127.0.0.1:8080}/v1/decrement

Press Ctrl-C to stop.
TEXT
# Stop both as soon as either exits, and exit with its status.
status=0
wait -n "${pids[@]}" || status=$?
exit "$status"
