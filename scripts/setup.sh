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
  python3-yaml yamllint
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

if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
