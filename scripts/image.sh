#!/usr/bin/env bash
# make image: builds the stockd container image on this machine with no container registry —
# only the Debian archive apt already uses — and checks that the image runs (scripts/image_check.sh).
#   IMAGE=stockd:0.1.0   the name and tag to build (default: stockd:<the project's version>)
#   IMAGE_CHECK=0        build only
# The base, debian:bookworm-slim, is made with debootstrap from that archive and imported into
# podman once; the Dockerfile's own `apt-get` steps then reach the same archive.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=(podman buildah debootstrap runc)
missing=()
for package in "${TOOLS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "image: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

export CONTAINERS_CONF="$PWD/deploy/image/containers.conf"
version=$(sed -n 's/^project(stockd VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
IMAGE=${IMAGE:-stockd:$version}
BASE=localhost/debian:bookworm-slim

# The first deb URI apt is configured with (deb822 .sources files or sources.list).
apt_mirror() {
  local uri
  uri=$(grep -h -s -E '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | head -n1)
  if [ -z "$uri" ]; then
    uri=$(grep -h -s -E '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
      | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' | head -n1)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

build_base() {
  local rootfs
  rootfs=$(mktemp -d /tmp/stockd-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' RETURN
  local mirror
  mirror=$(apt_mirror)
  echo "image: making the base $BASE with debootstrap from $mirror (a few minutes, once)"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -n 30 "$rootfs.log"; rm -f "$rootfs.log"; exit 1; }
  rm -f "$rootfs.log"
  # the image's apt reads the same archive as this machine's
  rm -f "$rootfs/etc/apt/sources.list"
  cp -a /etc/apt/sources.list.d/. "$rootfs/etc/apt/sources.list.d/" 2>/dev/null || true
  if [ -f /etc/apt/sources.list ]; then
    cp /etc/apt/sources.list "$rootfs/etc/apt/sources.list"
  fi
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" -c . | podman import - "$BASE" >/dev/null 2>"$rootfs.log" \
    || { cat "$rootfs.log"; rm -f "$rootfs.log"; exit 1; }
  rm -f "$rootfs.log"
}

if ! podman image exists "$BASE"; then
  build_base
fi
echo "image: building $IMAGE (log: build/image.log)"
mkdir -p build
podman build --pull=never --network host -t "$IMAGE" -f Dockerfile . >build/image.log 2>&1 \
  || { tail -n 40 build/image.log; exit 1; }
# the build stage (compilers, -dev packages: ~900 MB) is not needed once the image is made
podman image prune -f --filter label=stockd.stage=build >/dev/null
echo "image: built $IMAGE ($(podman image inspect --format '{{.Size}}' "$IMAGE" | numfmt --to=iec)B)"
if [ "${IMAGE_CHECK:-1}" != 0 ]; then
  bash scripts/image_check.sh "$IMAGE"
fi
