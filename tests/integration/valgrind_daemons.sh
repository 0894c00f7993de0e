#!/usr/bin/env bash
# valgrind runs of the real daemons: stockd and stockd-gateway under memcheck, driven through
# every kind of call (writes, reads, paging, Watch, backup, Wix calls, a stream open at
# shutdown) over mutual TLS with a policy (certificates made here by openssl; the gateway is
# known by its client certificate, stockctl by a bearer token), then stopped with SIGTERM. Passes when both exit 0 with no memory errors and
# nothing definitely lost.
# Usage: valgrind_daemons.sh BUILD-DIR
set -euo pipefail
BUILD=$1
WORK=$(mktemp -d /tmp/stockd-vg-XXXXXX)
trap 'kill -TERM $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
VG=(valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --quiet)

wait_listening() { # LOG [EVENT] → prints the bound address
  for _ in $(seq 300); do
    addr=$(grep -o "\"event\":\"${2:-listening}\",\"address\":\"127.0.0.1:[0-9]*" "$1" 2>/dev/null \
             | grep -o '127.0.0.1:[0-9]*' || true)
    [ -n "$addr" ] && { echo "$addr"; return 0; }
    sleep 0.1
  done
  echo "did not start: $1" >&2; cat "$1" >&2; return 1
}

# a CA, stockd's server certificate, the gateway's client certificate; an ops token
certificate() { # NAME SUBJECT EXT-LINES
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/$1.key" \
    -out "$WORK/$1.csr" -subj "/CN=$2" 2>/dev/null
  printf '%b' "$3" > "$WORK/$1.ext"
  openssl x509 -req -in "$WORK/$1.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -set_serial "$RANDOM" \
    -days 1 -extfile "$WORK/$1.ext" -out "$WORK/$1.pem" 2>/dev/null
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/ca.key" \
  -out "$WORK/ca.pem" -days 1 -subj /CN=vg-ca -addext basicConstraints=critical,CA:TRUE 2>/dev/null
certificate server stockd 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'
certificate gateway stockd-gateway 'subjectAltName=DNS:stockd-gateway\nextendedKeyUsage=clientAuth\n'
TOKEN=vg-ops-token-0123456789
cat > "$WORK/policy.json" <<JSON
{"identities": [
  {"name": "stockd-gateway", "tls_subject": "stockd-gateway", "tenants": ["*"], "roles": ["read", "write"]},
  {"name": "ops", "token_sha256": "$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)",
   "tenants": ["*"], "roles": ["read", "write", "admin"]}]}
JSON

"${VG[@]}" "$BUILD/stockd" --listen 127.0.0.1:0 --data-dir "$WORK/data" --admin-listen 127.0.0.1:0 \
  --tls-cert "$WORK/server.pem" --tls-key "$WORK/server.key" --tls-client-ca "$WORK/ca.pem" \
  --auth-policy "$WORK/policy.json" 2> "$WORK/stockd.log" &
STOCKD=$!
ADDR=$(wait_listening "$WORK/stockd.log")
ADMIN=$(wait_listening "$WORK/stockd.log" admin_listening)
"${VG[@]}" "$BUILD/stockd-gateway" --listen 127.0.0.1:0 --stockd "$ADDR" --dev \
  --dev-dir "$WORK/dev" --tls-ca "$WORK/ca.pem" --tls-cert "$WORK/gateway.pem" \
  --tls-key "$WORK/gateway.key" 2> "$WORK/gateway.log" &
GATEWAY=$!
HTTP=$(wait_listening "$WORK/gateway.log")

CTL=("$BUILD/stockctl" --stockd "$ADDR" --admin "$ADMIN" --tenant default --tls-ca "$WORK/ca.pem"
     --token "$TOKEN")
"${CTL[@]}" set 215238eb-22a5-4c36-9e7b-e7c08025e04e 283de61d-5a1e-49cc-b137-ae7067bea453 1 >/dev/null
"${CTL[@]}" --variant 00000000-0000-0020-0005-9a8c3e1f2b7d \
  set 215238eb-22a5-4c36-9e7b-e7c08025e04e b542eb00-8d3d-4df6-9abd-8254b4469f25 5 >/dev/null
"${CTL[@]}" --restrict decrement app missing 1 >/dev/null 2>&1 || true
"${CTL[@]}" list >/dev/null
"${CTL[@]}" history >/dev/null
"${CTL[@]}" --from-start --count 2 watch >/dev/null
"${CTL[@]}" backup vg >/dev/null
"${CTL[@]}" backup list >/dev/null
"${CTL[@]}" backup remove vg >/dev/null
"$BUILD/stockctl" --stockd "$ADDR" --tls-ca "$WORK/ca.pem" --token wrong list >/dev/null 2>&1 || true
# the Batch RPC: an import of three one-row chunks (one Batch of three SetStock), and Batch
# calls of decrements and increments from stockbench (its check must find every SKU right)
printf 'location_id,app_id,catalog_item_id,variant,available\n,app,vg-1,,5\n,app,vg-2,,6\n,app,vg-3,,7\n' \
  > "$WORK/import.csv"
"${CTL[@]}" --chunk-rows 1 import "$WORK/import.csv" >/dev/null 2>&1
"$BUILD/stockbench" --stockd "$ADDR" --tls-ca "$WORK/ca.pem" --token "$TOKEN" --tenant default \
  --mode mixed --batch 4 --connections 1 --inflight 2 --threads 1 --skus 20 --duration 1s \
  --warmup 0s > "$WORK/bench.out" 2>&1
grep -q '"check_mismatches":0' "$WORK/bench.out" || { cat "$WORK/bench.out" >&2; exit 1; }
codes=""
for i in 1 2; do
  "$BUILD/stockctl" wix-sign --key "$WORK/dev/wix-private.pem" examples/wix/order-placed.json \
    > "$WORK/token"
  codes+=$(curl -s -o /dev/null -w "%{http_code} " --data-binary @"$WORK/token" "http://$HTTP/v1/decrement")
done
# the first order is applied through the gateway's mTLS connection, the second finds no stock
[ "$codes" = "200 428 " ] || { echo "Wix calls answered $codes, expected 200 428" >&2; exit 1; }
# concurrent Wix calls: the gateway's coalescer sends those that queue as Batch calls
for i in 1 2 3 4 5 6; do
  "$BUILD/stockctl" wix-sign --key "$WORK/dev/wix-private.pem" examples/wix/order-placed.json \
    > "$WORK/token-$i"
done
curls=()
for i in 1 2 3 4 5 6; do
  curl -s -o /dev/null --data-binary @"$WORK/token-$i" "http://$HTTP/v1/decrement" &
  curls+=($!)
done
wait "${curls[@]}"   # only the curls: the daemons are children of this shell too
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
