#!/usr/bin/env bash
# Checks that a built stockd image works the way the README's Wix flow does, with every process
# running from the image (host network, loopback only, free ports):
#   stockd on a data volume + stockd-gateway --dev; stock set with the image's stockctl; an order
#   signed with `stockctl wix-sign` and posted with curl → 200 {}; stockd SIGKILLed and started
#   again on the same volume → the acknowledged decrement is still there; SIGTERM → exit 0.
# usage: scripts/image_check.sh IMAGE
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${1:?usage: scripts/image_check.sh IMAGE}
export CONTAINERS_CONF="$PWD/deploy/image/containers.conf"

work=$(mktemp -d /tmp/stockd-image-check.XXXXXX)
name="stockd-image-check-$$"
cleanup() {
  podman rm -f -t 0 "$name-stockd" "$name-gateway" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/data" "$work/dev"
# the image runs as uid 10001 (Dockerfile); give it the volume
if [ "$(id -u)" -eq 0 ]; then
  chown -R 10001:10001 "$work/data" "$work/dev"
else
  podman unshare chown -R 10001:10001 "$work/data" "$work/dev"
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
grpc_port=$(free_port)
http_port=$(free_port)
fail() {
  echo "image check: FAILED: $*" >&2
  for c in stockd gateway; do
    echo "--- $c log:" >&2
    podman logs --tail 20 "$name-$c" >&2 2>&1 || true
  done
  exit 1
}

ctl() { # the image's own stockctl, as a client on the host network
  podman run --rm --network host -v "$PWD/examples:/examples:ro" -v "$work/dev:/dev-keys:ro" \
    --entrypoint stockctl "$IMAGE" --stockd "127.0.0.1:$grpc_port" "$@"
}

start_stockd() {
  podman run -d --name "$name-stockd" --network host -v "$work/data:/var/lib/stockd/data" \
    "$IMAGE" --data-dir=/var/lib/stockd/data --listen="127.0.0.1:$grpc_port" >/dev/null
  for _ in $(seq 1 100); do
    if ctl health >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  fail "stockd did not answer Health within 20 s"
}

echo "image check: $IMAGE (stockd 127.0.0.1:$grpc_port, gateway 127.0.0.1:$http_port)"
podman run --rm "$IMAGE" --version
start_stockd
podman run -d --name "$name-gateway" --network host -v "$work/dev:/var/lib/stockd/dev" \
  --entrypoint stockd-gateway "$IMAGE" --dev --dev-dir=/var/lib/stockd/dev \
  --listen="127.0.0.1:$http_port" --stockd="127.0.0.1:$grpc_port" >/dev/null
for _ in $(seq 1 100); do
  if curl -s -o /dev/null "http://127.0.0.1:$http_port/healthz"; then
    break
  fi
  sleep 0.2
done

app=215238eb-22a5-4c36-9e7b-e7c08025e04e
ctl --variant 00000000-0000-0020-0005-9a8c3e1f2b7d set "$app" b542eb00-8d3d-4df6-9abd-8254b4469f25 5 \
  >/dev/null
ctl set "$app" 283de61d-5a1e-49cc-b137-ae7067bea453 1 >/dev/null
ctl wix-sign --key /dev-keys/wix-private.pem /examples/wix/order-placed.json >"$work/token"
answer=$(curl -s -w ' %{http_code}' --data-binary @"$work/token" \
  "http://127.0.0.1:$http_port/v1/decrement")
[ "$answer" = "{} 200" ] || fail "order placed: expected '{} 200', got '$answer'"

# kill -9 and start again on the same volume: the acknowledged decrement survived
podman kill -s KILL "$name-stockd" >/dev/null
podman wait "$name-stockd" >/dev/null || true
podman rm "$name-stockd" >/dev/null
start_stockd
level=$(ctl --json --variant 00000000-0000-0020-0005-9a8c3e1f2b7d get "$app" \
  b542eb00-8d3d-4df6-9abd-8254b4469f25 | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["available"])')
[ "$level" = 3 ] || fail "after kill -9: expected available 3 (5 - 2), got $level"

podman stop -t 30 "$name-stockd" >/dev/null
code=$(podman inspect --format '{{.State.ExitCode}}' "$name-stockd")
[ "$code" = 0 ] || fail "stockd exited $code on SIGTERM"
echo "image check: one node passed (Wix order through the gateway, kill -9 and restart, clean SIGTERM)"

# ---- three replicas from the image: SIGKILL of the leader, writes go on, the replica rejoins
for i in 1 2 3; do
  mkdir -p "$work/replica$i"
  if [ "$(id -u)" -eq 0 ]; then chown 10001:10001 "$work/replica$i"; else
    podman unshare chown 10001:10001 "$work/replica$i"; fi
  eval "raft_$i=$(free_port) grpc_$i=$(free_port) admin_$i=$(free_port)"
done
peers="1=127.0.0.1:$raft_1=127.0.0.1:$grpc_1,2=127.0.0.1:$raft_2=127.0.0.1:$grpc_2"
peers="$peers,3=127.0.0.1:$raft_3=127.0.0.1:$grpc_3"
all="127.0.0.1:$grpc_1,127.0.0.1:$grpc_2,127.0.0.1:$grpc_3"
start_replica() {
  local i=$1 raft grpc admin
  eval "raft=\$raft_$i grpc=\$grpc_$i admin=\$admin_$i"
  podman rm -f -t 0 "$name-replica$i" >/dev/null 2>&1 || true
  podman run -d --name "$name-replica$i" --network host -v "$work/replica$i:/var/lib/stockd/data" \
    "$IMAGE" --data-dir=/var/lib/stockd/data --listen="127.0.0.1:$grpc" --node-id="$i" \
    --raft-listen="127.0.0.1:$raft" --peers="$peers" --admin-listen="127.0.0.1:$admin" >/dev/null
}
cluster_ctl() { # the image's stockctl with every replica (it follows the leader)
  podman run --rm --network host --entrypoint stockctl "$IMAGE" --stockd "$all" "$@"
}
admin_ctl() { # $1: replica number
  local admin
  eval "admin=\$admin_$1"
  shift
  podman run --rm --network host --entrypoint stockctl "$IMAGE" --admin "127.0.0.1:$admin" "$@"
}
for i in 1 2 3; do start_replica "$i"; done
cleanup_replicas() { for i in 1 2 3; do podman rm -f -t 0 "$name-replica$i" >/dev/null 2>&1 || true; done; }
trap 'cleanup_replicas; cleanup' EXIT
for _ in $(seq 1 100); do
  cluster_ctl set app r 100 >/dev/null 2>&1 && break
  sleep 0.3
done
acked=0
for n in $(seq 1 5); do
  cluster_ctl --request-id "before-$n" decrement app r 1 >/dev/null || fail "decrement before the kill"
  acked=$((acked + 1))
done
leader=""
for i in 1 2 3; do
  admin_ctl "$i" --json cluster status | grep -q '"role": *"leader"' && leader=$i
done
[ -n "$leader" ] || fail "no replica says it leads"
podman kill -s KILL "$name-replica$leader" >/dev/null
killed_at=$(date +%s.%N)
for n in $(seq 1 60); do
  # the same request_id on every try: applied at most once, whatever the answers were
  if cluster_ctl --request-id "after-kill" decrement app r 1 >/dev/null 2>&1; then
    acked=$((acked + 1))
    break
  fi
  sleep 0.25
done
took=$(python3 -c 'import sys; print("%.2f" % (float(sys.argv[1]) - float(sys.argv[2])))' \
  "$(date +%s.%N)" "$killed_at")
level=$(cluster_ctl --json get app r | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["available"])')
[ "$level" = $((100 - acked)) ] || fail "after the leader's SIGKILL: available $level, expected $((100 - acked))"
start_replica "$leader"
for _ in $(seq 1 100); do
  admin_ctl "$leader" --json cluster status 2>/dev/null | grep -q '"leader_id": *[1-9]' && break
  sleep 0.3
done
for i in 1 2 3; do
  podman stop -t 30 "$name-replica$i" >/dev/null
  code=$(podman inspect --format '{{.State.ExitCode}}' "$name-replica$i")
  [ "$code" = 0 ] || fail "replica $i exited $code on SIGTERM"
done
echo "image check: 3 replicas passed (leader $leader SIGKILLed: writes acknowledged again after $took s, none lost; it rejoined; clean SIGTERM)"
