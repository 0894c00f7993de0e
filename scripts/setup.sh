#!/usr/bin/env bash
# Installs every Debian package stockd needs to build, run and test, by exact name.
# Idempotent: installs only what is missing, and runs apt-get update only then.
# Needs root (or sudo) on Debian 12 "bookworm".
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git ca-certificates
  libgrpc-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libprotobuf-dev grpc-proto
  libmicrohttpd-dev librocksdb-dev libjansson-dev libssl-dev libcmocka-dev
  python3 python3-grpcio python3-protobuf python3-jwt python3-cryptography
  python3-yaml yamllint shellcheck libuv1-dev zlib1g-dev
  curl openssl valgrind clang libclang-rt-14-dev clang-format clang-tidy
)

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

# Node.js and npm run the grpc-js interop test; keep a Node that is already installed (a
# newer one from elsewhere conflicts with Debian's npm package).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  for package in nodejs npm; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$package")
    fi
  done
fi

# Replication runs on cowsql/raft 0.22, which Debian ships for bookworm in bookworm-backports
# (bookworm's own libraft-dev 0.15 has Raft safety bugs fixed in 0.17.1 and 0.18.0).
raft_ok() {
  local version
  version=$(dpkg-query -W -f='${Version}' libraft-dev 2>/dev/null) || return 1
  dpkg --compare-versions "$version" ge 0.22
}
BACKPORTS_LIST=/etc/apt/sources.list.d/stockd-bookworm-backports.sources
need_raft=0
raft_ok || need_raft=1

if [ "${#missing[@]}" -eq 0 ] && [ "$need_raft" -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present, and libraft-dev >= 0.22"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

# The backports suite of the archive apt already uses (deb822 .sources or sources.list).
add_backports() {
  if grep -h -s -q 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/*; then
    return 0
  fi
  local uri
  uri=$(grep -h -s -E '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' \
    | grep -v -- '-security' | head -n1)
  if [ -z "$uri" ]; then
    uri=$(grep -h -s -E '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
      | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' \
      | grep -v -- '-security' | head -n1)
  fi
  echo "setup: adding bookworm-backports from ${uri:-http://deb.debian.org/debian} ($BACKPORTS_LIST)"
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
    "${uri:-http://deb.debian.org/debian}" /usr/share/keyrings/debian-archive-keyring.gpg \
    | $SUDO tee "$BACKPORTS_LIST" >/dev/null
}

if [ "$need_raft" -eq 1 ]; then
  add_backports
fi
if [ "$need_raft" -eq 1 ]; then
  missing_text="${missing[*]} libraft-dev (bookworm-backports)"
else
  missing_text="${missing[*]}"
fi
echo "setup: installing ${missing_text# }"
$SUDO apt-get update -qq
if [ "${#missing[@]}" -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ "$need_raft" -eq 1 ]; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    -t bookworm-backports libraft-dev
  raft_ok || { echo "setup: libraft-dev >= 0.22 is still missing" >&2; exit 1; }
fi
