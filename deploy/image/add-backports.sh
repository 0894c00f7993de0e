#!/bin/sh
# Adds bookworm-backports (cowsql/raft 0.22 for replication) from the Debian archive the image
# already uses; both stages of the Dockerfile run it before apt-get.
set -eu
uri=$(grep -h -s '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' \
  | grep -v -- -security | head -n1 || true)
[ -n "$uri" ] || uri=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
  "${uri:-http://deb.debian.org/debian}" /usr/share/keyrings/debian-archive-keyring.gpg \
  > /etc/apt/sources.list.d/bookworm-backports.sources
