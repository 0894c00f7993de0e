#!/usr/bin/env bash
# Offline checks of deploy/k8s (no cluster needed):
#  1. render every overlay with `kubectl kustomize` from Debian's kubernetes-client (kubectl
#     1.20, whose kustomize is old) and, where a current kubectl/kustomize is installed too,
#     check that it renders the very same objects; render overlays/prod-cert-manager (prod
#     plus the optional component components/cert-manager) with the current kustomize
#     (components need kustomize 3.7+: without one this check fails);
#  2. lint every YAML file with yamllint, and stockd-replica.sh with shellcheck;
#  3. validate every rendered object against the Kubernetes schemas (npm kubernetes-models;
#     cert-manager's objects against its CRD schemas, npm @kubernetes-models/cert-manager),
#     and check that deliberately broken manifests are refused;
#  4. check that flags, env variables, ports and probes agree with the binaries, and run
#     stockd's StatefulSet as declared (three replicas through stockd-replica on loopback:
#     leader election, the gateway through them, the id rules, the preStop hand-over);
#  4b. check the security properties (tests/deploy/security.py): mutual TLS and the policy
#     from Secrets, Admin on loopback, HTTP probes on the metrics port, NetworkPolicies for
#     stockd and the gateway, the cert-manager component's certificates; and that each of a
#     list of broken variants of the manifests is refused;
#  5. check the monitoring (deploy/prometheus/alerts.yaml, the alert examples in
#     deploy/README.md, the Grafana dashboard) with promtool and against what the binaries
#     export (tests/deploy/monitoring.py).
# Usage: validate.sh SOURCE-DIR BUILD-DIR
set -euo pipefail
SRC=$1
BUILD=$2
OUT="$BUILD/deploy-check"
mkdir -p "$OUT"

# Debian's kubectl 1.20. A machine may have another kubectl at /usr/bin/kubectl (cloud SDKs
# ship one, and it conflicts with the Debian package), so take the Debian package's binary
# from its .deb into the build directory rather than installing it over the other one.
KUBECTL_DEBIAN="$OUT/kubernetes-client/usr/bin/kubectl"
if command -v kubectl >/dev/null && kubectl version --client 2>/dev/null | grep -q 'GitVersion:"v1.20'; then
  KUBECTL_DEBIAN=$(command -v kubectl)
elif [ ! -x "$KUBECTL_DEBIAN" ]; then
  (cd "$OUT" && { apt-get download kubernetes-client >/dev/null 2>&1 \
     || { apt-get update -qq && apt-get download kubernetes-client >/dev/null; }; } \
     && dpkg-deb -x kubernetes-client_*.deb kubernetes-client)
fi
"$KUBECTL_DEBIAN" version --client 2>/dev/null | head -n 1

rendered=()
for overlay in dev prod; do
  "$KUBECTL_DEBIAN" kustomize "$SRC/deploy/k8s/overlays/$overlay" > "$OUT/$overlay.yaml"
  rendered+=("$OUT/$overlay.yaml")
  for current in kustomize kubectl; do
    command -v "$current" >/dev/null || continue
    [ "$(command -v "$current")" = "$KUBECTL_DEBIAN" ] && continue
    if [ "$current" = kustomize ]; then
      kustomize build "$SRC/deploy/k8s/overlays/$overlay" > "$OUT/$overlay.current.yaml" 2>/dev/null
    else
      kubectl kustomize "$SRC/deploy/k8s/overlays/$overlay" > "$OUT/$overlay.current.yaml" 2>/dev/null
    fi
    /usr/bin/python3 - "$OUT/$overlay.yaml" "$OUT/$overlay.current.yaml" <<'PY'
import sys, yaml
key = lambda o: (o["kind"], o["metadata"]["name"])
old, new = (sorted((o for o in yaml.safe_load_all(open(p)) if o), key=key) for p in sys.argv[1:3])
if old != new:
    sys.exit("kubectl 1.20 and the current kustomize render %s differently" % sys.argv[1])
print("current kustomize renders %s identically (%d objects)" % (sys.argv[1], len(old)))
PY
    break
  done
done

# The optional cert-manager component, in the overlay that shows how to use it. kubectl 1.20's
# kustomize predates components, so this needs the current kubectl or kustomize.
CURRENT=
if command -v kustomize >/dev/null; then
  CURRENT="kustomize build"
elif command -v kubectl >/dev/null && [ "$(command -v kubectl)" != "$KUBECTL_DEBIAN" ]; then
  CURRENT="kubectl kustomize"
fi
if [ -z "$CURRENT" ]; then
  echo "FAIL: components/cert-manager needs kustomize 3.7+ (kubectl 1.21+) to build; none found" >&2
  exit 1
fi
if ! $CURRENT "$SRC/deploy/k8s/overlays/prod-cert-manager" > "$OUT/prod-cert-manager.yaml" \
     2> "$OUT/prod-cert-manager.stderr"; then
  cat "$OUT/prod-cert-manager.stderr" >&2
  echo "FAIL: overlays/prod-cert-manager (with components/cert-manager) does not build" >&2
  exit 1
fi
rendered+=("$OUT/prod-cert-manager.yaml")
echo "$CURRENT renders overlays/prod-cert-manager with components/cert-manager"

yamllint -c "$SRC/.yamllint" "$SRC/deploy" "$SRC/tests/deploy/broken.yaml" \
  "$SRC/tests/deploy/broken-cert-manager.yaml"
echo "yamllint: clean"

# the script that starts each stockd replica (ConfigMap stockd-scripts)
shellcheck "$SRC/deploy/k8s/base/stockd-replica.sh"
echo "shellcheck: clean"

node "$SRC/tests/deploy/validate.mjs" "${rendered[@]}"
node "$SRC/tests/deploy/validate.mjs" --expect-invalid "$SRC/tests/deploy/broken.yaml"
node "$SRC/tests/deploy/validate.mjs" --expect-invalid "$SRC/tests/deploy/broken-cert-manager.yaml"
echo "schema check refuses the broken manifests"

/usr/bin/python3 "$SRC/tests/deploy/security.py" --policy "$SRC/deploy/auth-policy.example.json" \
  "${rendered[@]}"
/usr/bin/python3 "$SRC/tests/deploy/security.py" --self-test "${rendered[@]}"

/usr/bin/python3 "$SRC/tests/deploy/consistency.py" "$BUILD" "${rendered[@]}"

# promtool from Debian's prometheus package. The package is not installed (scripts/setup.sh
# leaves it out): its postinst starts a Prometheus server on port 9090, the port `make run`
# gives stockd's metrics. Only promtool is taken from the .deb, as kubectl is above.
PROMTOOL="$OUT/prometheus/usr/bin/promtool"
if command -v promtool >/dev/null; then
  PROMTOOL=$(command -v promtool)
elif [ ! -x "$PROMTOOL" ]; then
  (cd "$OUT" && { apt-get download prometheus >/dev/null 2>&1 \
     || { apt-get update -qq && apt-get download prometheus >/dev/null; }; } \
     && mkdir -p prometheus \
     && dpkg-deb --fsys-tarfile prometheus_*.deb | tar -x -C prometheus ./usr/bin/promtool \
     && rm -f prometheus_*.deb)
fi
"$PROMTOOL" --version 2>&1 | head -n 1

/usr/bin/python3 "$SRC/tests/deploy/monitoring.py" "$SRC" "$BUILD" "$PROMTOOL"
