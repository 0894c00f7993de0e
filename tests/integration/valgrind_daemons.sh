#!/usr/bin/env bash
# valgrind runs of the real daemons: stockd and stockd-gateway under memcheck, driven through
# every kind of call (writes, reads, paging, Watch, backup, Wix calls, a stream open at
# shutdown), then stopped with SIGTERM. Passes when both exit 0 with no memory errors and
# nothing definitely lost.
# Usage: valgrind_daemons.sh BUILD-DIR
set -euo pipefail
BUILD=$1
WORK=$(mktemp -d /tmp/stockd-vg-XXXXXX)
trap 'kill -TERM $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
VG=(valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --quiet)

wait_listening() { # LOG → prints the bound address
  for _ in $(seq 300); do
    addr=$(grep -o '"event":"listening","address":"127.0.0.1:[0-9]*' "$1" 2>/dev/null \
             | grep -o '127.0.0.1:[0-9]*' || true)
    [ -n "$addr" ] && { echo "$addr"; return 0; }
    sleep 0.1
  done
  echo "did not start: $1" >&2; cat "$1" >&2; return 1
}

"${VG[@]}" "$BUILD/stockd" --listen 127.0.0.1:0 --data-dir "$WORK/data" 2> "$WORK/stockd.log" &
STOCKD=$!
ADDR=$(wait_listening "$WORK/stockd.log")
"${VG[@]}" "$BUILD/stockd-gateway" --listen 127.0.0.1:0 --stockd "$ADDR" --dev \
  --dev-dir "$WORK/dev" 2> "$WORK/gateway.log" &
GATEWAY=$!
HTTP=$(wait_listening "$WORK/gateway.log")

CTL=("$BUILD/stockctl" --stockd "$ADDR" --tenant default)
"${CTL[@]}" set 215238eb-22a5-4c36-9e7b-e7c08025e04e 283de61d-5a1e-49cc-b137-ae7067bea453 1 >/dev/null
"${CTL[@]}" --variant 00000000-0000-0020-0005-9a8c3e1f2b7d \
  set 215238eb-22a5-4c36-9e7b-e7c08025e04e b542eb00-8d3d-4df6-9abd-8254b4469f25 5 >/dev/null
"${CTL[@]}" --restrict decrement app missing 1 >/dev/null 2>&1 || true
"${CTL[@]}" list >/dev/null
"${CTL[@]}" history >/dev/null
"${CTL[@]}" --from-start --count 2 watch >/dev/null
"${CTL[@]}" backup vg >/dev/null
for i in 1 2; do
  "$BUILD/stockctl" wix-sign --key "$WORK/dev/wix-private.pem" examples/wix/order-placed.json \
    > "$WORK/token"
  curl -s -o /dev/null -w "%{http_code}\n" --data-binary @"$WORK/token" "http://$HTTP/v1/decrement"
done
curl -s -o /dev/null "http://$HTTP/readyz"
curl -s -o /dev/null "http://$HTTP/metrics"
curl -s -o /dev/null --data-binary garbage "http://$HTTP/v1/increment"
("${CTL[@]}" watch >/dev/null 2>&1 &)   # a stream still open at shutdown
sleep 1

kill -TERM "$GATEWAY"; gateway_exit=0; wait "$GATEWAY" || gateway_exit=$?
kill -TERM "$STOCKD"; stockd_exit=0; wait "$STOCKD" || stockd_exit=$?
echo "stockd exit $stockd_exit, stockd-gateway exit $gateway_exit"
grep -h "==" "$WORK/stockd.log" "$WORK/gateway.log" || true
[ "$stockd_exit" -eq 0 ] && [ "$gateway_exit" -eq 0 ]
