#!/usr/bin/env bash
# `make bench-peers`: stockd against Redis and PostgreSQL on the same workload, the peers'
# comparison of BENCHMARKS.md. Every run starts a fresh server on 127.0.0.1 (a free port, a
# temporary directory) and drives it with the same client shape:
#
#   64 clients, each its own connection with one call at a time (closed loop); each call takes
#   1 unit from each of 1-3 distinct random SKUs out of 10,000, all or nothing; 3 s warm-up,
#   20 s measured; then every SKU is read back and must have lost exactly what was acknowledged.
#
#   stockd      stockbench --preset peers (a restricted Decrement; stockd's default --sync=always)
#   Redis       peerbench --target redis: one EVALSHA of a Lua script per call
#               (appendonly yes, appendfsync always)
#   PostgreSQL  peerbench --target postgres: one call of a plpgsql function per call, in one
#               transaction (fsync=on, synchronous_commit=on)
#
# ROUNDS (3) rounds, round-robin (stockd, Redis, PostgreSQL, stockd, ...), so that drift of the
# shared machine spreads over all three. Prints a table and writes one JSON line per run to
# $BUILD/bench-peers.jsonl. Installs redis-server, postgresql, libhiredis-dev and libpq-dev
# with apt when missing (the benchmark's own needs; `make run` and `make test` need none).
#
#   ROUNDS=3 PEERS_DURATION=20s PEERS_WARMUP=3s make bench-peers
set -euo pipefail
BUILD=${1:-build}
ROUNDS=${ROUNDS:-3}
PEERS_DURATION=${PEERS_DURATION:-20s}
PEERS_WARMUP=${PEERS_WARMUP:-3s}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
OUT="$BUILD/bench-peers.jsonl"

# ---- what the benchmark needs beyond `make build` ----
missing=()
for package in redis-server postgresql libhiredis-dev libpq-dev; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "bench-peers: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[ -x "$PG_BIN/initdb" ] || { echo "bench-peers: no PostgreSQL 15 in $PG_BIN (PG_BIN=...)" >&2; exit 1; }

# peerbench in a build tree of its own: $BUILD's configuration stays as `make build` left it
cmake -S . -B "$BUILD/peers" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTOCKD_WERROR=ON \
  -DSTOCKD_BENCH_PEERS=ON -DSTOCKD_TESTS=OFF >/dev/null
cmake --build "$BUILD/peers" --target peerbench -j 2 >"$BUILD/peers/build.log" 2>&1 \
  || { cat "$BUILD/peers/build.log"; exit 1; }
PEERBENCH="$BUILD/peers/peerbench"

# ---- servers: started per run, stopped (also on failure or Ctrl-C) by cleanup ----
WORK=$(mktemp -d /tmp/stockd-peers-XXXXXX)
chmod 711 "$WORK" # PostgreSQL's own user (when run as root) must reach its directory
SERVER_PID=""    # the running server, a child of this shell
STOP_SIGNAL=TERM # PostgreSQL: INT (its "fast" shutdown)

# PostgreSQL refuses to run as root: then its commands run as the postgres user (made by
# Debian's package), in a directory that user owns. setpriv execs, so the server started
# through it is this shell's own child ($! is the postmaster: stopped, waited for).
AS_PG=()
if [ "$(id -u)" -eq 0 ]; then
  AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups --)
fi

# Runs a load generator (bounded by LIMIT) with its output in $WORK/client.out. In the
# background and waited for, so that Ctrl-C or a TERM stops the benchmark at once (a shell
# waiting for a command substitution would finish that first); cleanup stops it.
CLIENT_PID=""
run_client() {
  timeout "$LIMIT" "$@" >"$WORK/client.out" &
  CLIENT_PID=$!
  local status=0
  wait "$CLIENT_PID" || status=$?
  CLIENT_PID=""
  return "$status"
}
last_line() { tail -n 1 "$WORK/client.out"; }

stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "-$STOP_SIGNAL" "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 300); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
  STOP_SIGNAL=TERM
}
cleanup() {
  if [ -n "$CLIENT_PID" ]; then
    kill -TERM "$CLIENT_PID" 2>/dev/null || true
    wait "$CLIENT_PID" 2>/dev/null || true
  fi
  stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# bounded: a stuck client or server cannot hold the benchmark
seconds_of() { local v=$1; case $v in *m) echo $((${v%m} * 60));; *s) echo "${v%s}";; *) echo "$v";; esac; }
LIMIT=$(( $(seconds_of "$PEERS_DURATION") + $(seconds_of "$PEERS_WARMUP") + 180 ))

FAILED=0
record() { # record ROUND SYSTEM JSON
  if [ -z "$3" ]; then
    echo "bench-peers: round $1 $2: no result" >&2
    FAILED=1
    return
  fi
  echo "{\"round\":$1,\"system\":\"$2\",${3#\{}" | tee -a "$OUT"
}

run_stockd() { # run_stockd ROUND
  local dir="$WORK/stockd-$1"
  mkdir -p "$dir"
  : > "$dir/stockd.log"
  "$BUILD/stockd" --listen 127.0.0.1:0 --data-dir "$dir/data" 2>"$dir/stockd.log" &
  SERVER_PID=$!
  local addr=""
  for _ in $(seq 100); do
    addr=$(grep -o '"event":"listening","address":"127.0.0.1:[0-9]*' "$dir/stockd.log" \
             | grep -o '127.0.0.1:[0-9]*' || true)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { cat "$dir/stockd.log" >&2; exit 1; }
  run_client "$BUILD/stockbench" --preset peers --stockd "$addr" --duration "$PEERS_DURATION" \
    --warmup "$PEERS_WARMUP" --server-pids "$SERVER_PID" || FAILED=1
  stop_server
  record "$1" stockd "$(last_line)"
  rm -rf "$dir"
}

run_redis() { # run_redis ROUND
  local dir="$WORK/redis-$1" port
  port=$(free_port)
  mkdir -p "$dir"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --appendonly yes \
    --appendfsync always --save '' --daemonize no --logfile "$dir/redis.log" &
  SERVER_PID=$!
  for _ in $(seq 100); do
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
    sleep 0.1
  done
  if [ "$1" = 1 ]; then
    echo "   redis $(redis-cli -p "$port" config get appendonly | tr '\n' ' ')$(redis-cli -p "$port" config get appendfsync | tr '\n' ' ')"
  fi
  run_client "$PEERBENCH" --target redis --redis "127.0.0.1:$port" --duration "$PEERS_DURATION" \
    --warmup "$PEERS_WARMUP" --server-pids "$SERVER_PID" || FAILED=1
  stop_server
  record "$1" redis "$(last_line)"
  rm -rf "$dir"
}

run_postgres() { # run_postgres ROUND
  local dir="$WORK/postgres-$1" port
  port=$(free_port)
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
  "${AS_PG[@]}" "$PG_BIN/initdb" -D "$dir/data" -U bench --auth=trust -E UTF8 --locale=C -N \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
  "${AS_PG[@]}" "$PG_BIN/postgres" -D "$dir/data" -c listen_addresses=127.0.0.1 -p "$port" \
    -c unix_socket_directories="$dir" -c fsync=on -c synchronous_commit=on \
    >"$dir/postgres.log" 2>&1 &
  SERVER_PID=$!
  STOP_SIGNAL=INT
  for _ in $(seq 300); do
    "$PG_BIN/pg_isready" -q -h "$dir" -p "$port" && break
    sleep 0.1
  done
  if [ "$1" = 1 ]; then
    echo "   postgres $("$PG_BIN/psql" -h "$dir" -p "$port" -U bench -d postgres -At -c \
      "SELECT string_agg(name || '=' || setting, ' ') FROM pg_settings WHERE name IN \
       ('fsync', 'synchronous_commit', 'wal_sync_method', 'full_page_writes')")"
  fi
  run_client "$PEERBENCH" --target postgres \
    --postgres "host=127.0.0.1 port=$port user=bench dbname=postgres sslmode=disable" \
    --duration "$PEERS_DURATION" --warmup "$PEERS_WARMUP" --server-pids "$SERVER_PID" || FAILED=1
  stop_server
  record "$1" postgres "$(last_line)"
  rm -rf "$dir"
}

: >"$OUT"
echo "== machine: $(nproc) cores, $(grep MemTotal /proc/meminfo | awk '{print $2/1048576 " GiB"}'), $(uname -r)"
echo "== $(redis-server --version | cut -d' ' -f1-3), $("$PG_BIN/postgres" --version)"
echo "== $ROUNDS rounds of: stockd, Redis, PostgreSQL; each $PEERS_WARMUP warm-up + $PEERS_DURATION measured"
for round in $(seq "$ROUNDS"); do
  echo "== round $round"
  run_stockd "$round"
  run_redis "$round"
  run_postgres "$round"
done

python3 - "$OUT" <<'EOF'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
print("\n%-10s %-26s %8s  %-24s %8s  %s" % ("system", "ops/s by round", "median",
                                         "p99 ms by round", "median",
                                         "server CPU/op, others' CPU s, check"))
for system in ("stockd", "redis", "postgres"):
    rows = [r for r in runs if r["system"] == system]
    if not rows:
        continue
    rates = [r["ops_per_s"] for r in rows]
    p99s = [r["p99_ms"] for r in rows]
    cpu = [r["server_cpu_us_per_op"] for r in rows if "server_cpu_us_per_op" in r]
    others = [r["other_cpu_s"] for r in rows if "other_cpu_s" in r]
    print("%-10s %-26s %8.0f  %-24s %8.2f  %s us, %s, %s" % (
        system, " ".join("%.0f" % x for x in rates), statistics.median(rates),
        " ".join("%.2f" % x for x in p99s), statistics.median(p99s),
        "%.0f" % statistics.median(cpu) if cpu else "?",
        " ".join("%.1f" % x for x in others),
        "ok" if all(r["check_mismatches"] == 0 and r["errors"] == 0 for r in rows)
        else "FAILED"))
EOF
echo "== results in $OUT"
exit "$FAILED"
