#!/usr/bin/env bash
# `make run`: starts stockd (gRPC on 127.0.0.1:50051, data in ./stockd-data) and
# stockd-gateway (HTTP on 127.0.0.1:8080) in development mode: without a configured Wix key
# the gateway makes a local key pair and app id in ./stockd-gateway-dev, so calls can be
# signed with `stockctl wix-sign`. Ctrl-C stops both cleanly. Every setting can be
# overridden with the STOCKD_* / STOCKD_GATEWAY_* environment variables.
set -euo pipefail
BUILD=${1:-build}
pids=()
stop() {
  trap - INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait
}
trap stop INT TERM EXIT

"$BUILD/stockd" &
pids+=($!)
"$BUILD/stockd-gateway" --dev &
pids+=($!)
sleep 1
cat >&2 <<TEXT

stockd          gRPC  ${STOCKD_LISTEN:-127.0.0.1:50051}   data ${STOCKD_DATA_DIR:-./stockd-data}
stockd-gateway  HTTP  ${STOCKD_GATEWAY_LISTEN:-127.0.0.1:8080}    dev keys ${STOCKD_GATEWAY_DEV_DIR:-./stockd-gateway-dev}

Try a Wix order (in another terminal; see README "Try it"):
  $BUILD/stockctl set 215238eb-22a5-4c36-9e7b-e7c08025e04e 283de61d-5a1e-49cc-b137-ae7067bea453 5
  $BUILD/stockctl wix-sign examples/wix/order-placed.json > token
  curl -s -i --data-binary @token http://127.0.0.1:8080/v1/decrement

Press Ctrl-C to stop.
TEXT
wait -n || true
