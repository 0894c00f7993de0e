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
echo "image check: passed (Wix order through the gateway, kill -9 and restart, clean SIGTERM)"
