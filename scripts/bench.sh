#!/usr/bin/env bash
# `make bench`: the benchmark runs behind BENCHMARKS.md. Starts its own stockd (and gateway)
# on free loopback ports with temporary data directories, runs stockbench, and prints one
# JSON line per measurement (also saved in $BUILD/bench-results.jsonl). Then a concurrency
# sweep: for every series below and every number of calls in flight, a short run on a fresh
# stockd, drawn with gnuplot into docs/bench/sweep-throughput.svg and sweep-p99.svg.
#
#   DURATION=10s make bench      measured seconds per run of sections 1-4 (default 10s)
#   SWEEP_INFLIGHT="1 2 4 8 16 32 64 128 256" SWEEP_DURATION=3s SWEEP_WARMUP=1s
#                                the sweep's points and the time of each
#   SWEEP_ATTEMPTS=3 SWEEP_QUIET=0.1
#                                a point during which other processes took more than this share
#                                of the machine's CPU is run again, up to SWEEP_ATTEMPTS times;
#                                the least disturbed run is kept
#   SWEEP=0 / SWEEP_ONLY=1       skip the sweep / run only the sweep
#   SWEEP_REPLOT=1               only draw the plots again from $BUILD/bench-results.jsonl
#   SWEEP_PLOTS=docs/bench       where the SVGs go
#   SWEEP_SERIES_EXTRA="batch64|direct|Batch of 64|--mode decrement --batch 64"
#                                more series, ";"-separated (see SWEEP_SERIES below)
set -euo pipefail
BUILD=${1:-build}
DURATION=${DURATION:-10s}
SWEEP=${SWEEP:-1}
SWEEP_ONLY=${SWEEP_ONLY:-0}
SWEEP_REPLOT=${SWEEP_REPLOT:-0}
if [ "$SWEEP_REPLOT" = 1 ]; then SWEEP_ONLY=1; fi
SWEEP_INFLIGHT=${SWEEP_INFLIGHT:-"1 2 4 8 16 32 64 128 256"}
SWEEP_DURATION=${SWEEP_DURATION:-3s}
SWEEP_WARMUP=${SWEEP_WARMUP:-1s}
SWEEP_PLOTS=${SWEEP_PLOTS:-docs/bench}
SWEEP_ATTEMPTS=${SWEEP_ATTEMPTS:-3}
SWEEP_QUIET=${SWEEP_QUIET:-0.1}

# The sweep's series, one per line: NAME|TARGET|LEGEND|stockbench options. TARGET "direct"
# drives stockd's gRPC port, "gateway" drives stockd-gateway (Wix calls) in front of it. Every point
# N is N connections with one call each in flight (closed loop), 1-3 of 10,000 SKUs per call,
# restricted (all or nothing), durable (stockd's default --sync=always).
SWEEP_SERIES=(
  "direct|direct|Decrement over gRPC|--mode decrement"
  "wix|gateway|Wix calls through stockd-gateway|--mode wix"
  # Batch calls of 16 decrements: its points count writes (16 per call), each write's latency
  # being its call's
  "batch|direct|Batch of 16 decrements over gRPC (writes/s)|--mode decrement --batch 16"
)
if [ -n "${SWEEP_SERIES_EXTRA:-}" ]; then
  IFS=';' read -ra extra <<<"$SWEEP_SERIES_EXTRA"
  SWEEP_SERIES+=("${extra[@]}")
fi

OUT="$BUILD/bench-results.jsonl"
WORK=$(mktemp -d /tmp/stockd-bench-XXXXXX)
pids=()
CLIENT_PID=""
cleanup() {
  if [ -n "$CLIENT_PID" ]; then kill -TERM "$CLIENT_PID" 2>/dev/null || true; fi
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ "$SWEEP_REPLOT" != 1 ]; then : > "$OUT"; fi

seconds_of() { local v=$1; case $v in *m) echo $((${v%m} * 60));; *s) echo "${v%s}";; *) echo "$v";; esac; }
# no client may run longer than this (the Wix corpus is signed inside the client's time)
LIMIT=$(( $(seconds_of "$DURATION") * 3 + 600 ))

# listening_address LOG: the address a daemon logged it listens on (waits up to 10 s)
listening_address() {
  local address=""
  for _ in $(seq 100); do
    address=$(grep -o '"event":"listening","address":"127.0.0.1:[0-9]*' "$1" \
                | grep -o '127.0.0.1:[0-9]*' || true)
    [ -n "$address" ] && { echo "$address"; return 0; }
    sleep 0.1
  done
  echo "did not start:" >&2; cat "$1" >&2; return 1
}

# start_stockd NAME ARGS... : starts stockd on a free port, sets ADDR and PID
start_stockd() {
  local name=$1; shift
  : > "$WORK/$name.log" # there before stockd writes it: listening_address reads it at once
  "$BUILD/stockd" --listen 127.0.0.1:0 --data-dir "$WORK/$name" "$@" 2> "$WORK/$name.log" &
  PID=$!
  pids+=("$PID")
  ADDR=$(listening_address "$WORK/$name.log")
}

# start_gateway NAME : a gateway in front of $ADDR (development keys in $WORK/dev, the same for
# every gateway of the run), no per-address connection limit; sets GW and GW_PID
start_gateway() {
  : > "$WORK/$1-gateway.log"
  "$BUILD/stockd-gateway" --listen 127.0.0.1:0 --stockd "$ADDR" --dev --dev-dir "$WORK/dev" \
    --max-connections-per-ip 0 2> "$WORK/$1-gateway.log" &
  GW_PID=$!
  pids+=("$GW_PID")
  GW=$(listening_address "$WORK/$1-gateway.log")
}

# stop_pid PID: stops one of ours and forgets it (cleanup never signals a pid reused since)
stop_pid() {
  kill -TERM "$1"
  wait "$1" || true
  local keep=() pid
  for pid in "${pids[@]}"; do [ "$pid" = "$1" ] || keep+=("$pid"); done
  pids=("${keep[@]}")
}

# bench ARGS... : runs stockbench (bounded by LIMIT) and leaves its JSON line in $WORK/last.
# In the background and waited for, so that Ctrl-C or a TERM stops `make bench` at once.
bench() {
  timeout "$LIMIT" "$BUILD/stockbench" "$@" > "$WORK/client.out" &
  CLIENT_PID=$!
  wait "$CLIENT_PID" || echo "bench: stockbench $* failed (its JSON line says why)" >&2
  CLIENT_PID=""
  tail -n 1 "$WORK/client.out" > "$WORK/last"
}

record() { # record LABEL [EXTRA_JSON_FIELDS]: the last run's JSON line, labelled
  local line
  line=$(cat "$WORK/last")
  [ -n "$line" ] || line='{"error":"no result"}'
  echo "{\"run\":\"$1\",${2:+$2,}${line#\{}" | tee -a "$OUT"
}

rss_kib() { grep VmHWM "/proc/$1/status" | awk '{print $2}'; }

BENCH=(--duration "$DURATION" --warmup 2s --connections 4 --inflight 64 --lines-min 1 --lines-max 3)

echo "== machine: $(nproc) cores, $(grep MemTotal /proc/meminfo | awk '{print $2/1048576 " GiB"}'), $(uname -r)"

if [ "$SWEEP_ONLY" != 1 ]; then
  echo "== 1. health vs durable restricted decrements, 10k SKUs, --sync=always"
  start_stockd always
  bench "${BENCH[@]}" --stockd "$ADDR" --skus 10000 --compare
  record compare_sync_always
  stop_pid "$PID"

  echo "== 2. the same decrements with --sync=never"
  start_stockd never --sync never
  bench "${BENCH[@]}" --stockd "$ADDR" --skus 10000 --mode decrement --server-pids "$PID"
  record decrement_sync_never
  stop_pid "$PID"

  echo "== 3. 1,000,000 SKUs stored (--block-cache-mb 64 --write-buffer-mb 32)"
  start_stockd million
  bench "${BENCH[@]}" --stockd "$ADDR" --skus 1000000 --mode health --duration 1s --warmup 0s
  bench "${BENCH[@]}" --stockd "$ADDR" --skus 1000000 --mode decrement --server-pids "$PID"
  record decrement_1m_skus
  echo "{\"run\":\"rss_1m_skus\",\"stockd_peak_rss_mib\":$(( $(rss_kib "$PID") / 1024 ))}" | tee -a "$OUT"
  stop_pid "$PID"

  echo "== 4. Wix calls through the gateway vs direct gRPC decrements (1 line each, 64 connections)"
  echo "   (each Wix call has its own metadata.requestId; the tokens are signed before the run)"
  start_stockd wix
  start_gateway wix
  bench "${BENCH[@]}" --stockd "$ADDR" --lines-max 1 --skus 10000 --mode decrement \
    --server-pids "$PID"
  record direct_1_line
  bench "${BENCH[@]}" --stockd "$ADDR" --lines-max 1 --skus 10000 --mode wix \
    --gateway "$GW" --connections 64 --key "$WORK/dev/wix-private.pem" \
    --server-pids "$PID,$GW_PID"
  record wix_gateway
  echo "   the same, each token signed by the sending thread just before the call (why the"
  echo "   tokens are signed before the run: RS256 signing takes the CPU the gateway needs)"
  bench "${BENCH[@]}" --stockd "$ADDR" --lines-max 1 --skus 10000 --mode wix \
    --gateway "$GW" --connections 64 --key "$WORK/dev/wix-private.pem" \
    --server-pids "$PID,$GW_PID" --wix-presign=false
  record wix_gateway_signed_per_call
  stop_pid "$GW_PID"
  stop_pid "$PID"

  echo "== 4b. the peers' workload (stockbench --preset peers: 64 connections x 1 call), lone"
  echo "   Decrement calls vs Batch calls of 16 and 64 decrements (ops = writes)"
  start_stockd peers
  for batch in 0 16 64; do
    bench --preset peers --stockd "$ADDR" --duration "$DURATION" \
      --warmup 2s --batch "$batch" --server-pids "$PID"
    record "peers_batch_$batch"
  done
  stop_pid "$PID"
fi

# sweep_point SERIES TARGET N OPTIONS... : one run of N connections x 1 in flight on a fresh
# stockd (and gateway); its JSON line in $WORK/last
sweep_point() {
  local series=$1 target=$2 n=$3 server_pids target_options
  shift 3
  start_stockd "sweep-$series-$n"
  server_pids=$PID
  target_options=(--stockd "$ADDR")
  if [ "$target" = gateway ]; then
    start_gateway "sweep-$series-$n"
    server_pids="$PID,$GW_PID"
    # one corpus of unique tokens for the whole series (each point runs on a fresh stockd, so
    # no token reaches the same stockd twice)
    target_options+=(--gateway "$GW" --key "$WORK/dev/wix-private.pem"
                     --wix-corpus "$WORK/wix-corpus-$series")
  fi
  bench --duration "$SWEEP_DURATION" --warmup "$SWEEP_WARMUP" --connections "$n" \
    --inflight "$n" --lines-min 1 --lines-max 3 --skus 10000 "${target_options[@]}" \
    --server-pids "$server_pids" "$@"
  if [ "$target" = gateway ]; then stop_pid "$GW_PID"; fi
  stop_pid "$PID"
  rm -rf "$WORK/sweep-$series-$n" "$WORK/sweep-$series-$n.log" "$WORK/sweep-$series-$n-gateway.log"
}
QUIET_CPU_S=$(awk -v q="$SWEEP_QUIET" -v c="$(nproc)" -v d="$(seconds_of "$SWEEP_DURATION")" \
                'BEGIN { print q * c * d }')

if [ "$SWEEP" = 1 ]; then
  echo "== 5. concurrency sweep: $SWEEP_WARMUP + $SWEEP_DURATION per point, in flight: $SWEEP_INFLIGHT"
  if [ "$SWEEP_REPLOT" = 1 ]; then SWEEP_SERIES_RUN=(); else SWEEP_SERIES_RUN=("${SWEEP_SERIES[@]}"); fi
  for spec in "${SWEEP_SERIES_RUN[@]}"; do
    IFS='|' read -r series target _ options <<<"$spec"
    read -ra series_options <<<"$options"
    for n in $SWEEP_INFLIGHT; do
      # Other processes on the shared machine take CPU from short runs: a point measured while
      # they took more than SWEEP_QUIET of its CPU time is measured again (SWEEP_ATTEMPTS in
      # all), and the least disturbed attempt is kept ("attempts" and "other_cpu_s" say so).
      kept_other=""
      for attempt in $(seq "$SWEEP_ATTEMPTS"); do
        sweep_point "$series" "$target" "$n" "${series_options[@]}"
        other=$(grep -o '"other_cpu_s":[-0-9.]*' "$WORK/last" | cut -d: -f2 || true)
        other=${other:-0}
        if [ -z "$kept_other" ] || awk -v a="$other" -v b="$kept_other" 'BEGIN { exit !(a < b) }'; then
          cp "$WORK/last" "$WORK/kept"
          kept_other=$other
        fi
        if awk -v a="$other" -v b="$QUIET_CPU_S" 'BEGIN { exit !(a <= b) }'; then break; fi
      done
      cp "$WORK/kept" "$WORK/last"
      record sweep "\"series\":\"$series\",\"attempts\":$attempt"
    done
  done

  if ! command -v gnuplot >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    echo "bench: installing gnuplot-nox (Debian's gnuplot without X) for the plots"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends gnuplot-nox
  fi
  mkdir -p "$SWEEP_PLOTS"
  # one data file per series: in-flight ops/s p99-ms
  python3 - "$OUT" "$WORK" <<'EOF'
import json, sys
series = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("run") == "sweep" and "ops_per_s" in r:
        series.setdefault(r["series"], []).append((r["inflight"], r["ops_per_s"], r["p99_ms"]))
with open(sys.argv[2] + "/series", "w") as names:
    for name, points in series.items():
        names.write(name + "\n")
        with open("%s/sweep-%s.dat" % (sys.argv[2], name), "w") as f:
            for point in sorted(points):
                f.write("%d %.1f %.3f\n" % point)
EOF
  plots=""
  while read -r series; do
    legend=$series
    for spec in "${SWEEP_SERIES[@]}"; do
      IFS='|' read -r name _ title _ <<<"$spec"
      if [ "$name" = "$series" ]; then legend=$title; fi
    done
    plots+="${plots:+, }'$WORK/sweep-$series.dat' using 1:COLUMN title '$legend'"
  done < "$WORK/series"
  read -ra points <<<"$SWEEP_INFLIGHT"
  subtitle="durable (--sync=always); N connections x 1 call in flight; 1-3 of 10,000 SKUs per call; $SWEEP_WARMUP + $SWEEP_DURATION per point; $(nproc)-core VM, client and server on it"
  gnuplot <<EOF
set terminal svg size 820,500 dynamic font "sans,12" background rgb "white"
set logscale x 2
set xtics ($(IFS=,; echo "${points[*]}"))
set xrange [${points[0]} * 0.8:${points[-1]} * 1.25]
set xlabel "calls in flight (connections, each one call at a time)"
set grid
set key top left Left reverse
set style data linespoints
set pointsize 1.2
set output "$SWEEP_PLOTS/sweep-throughput.svg"
set title "stockd: throughput vs calls in flight\n{/*0.75 $subtitle}"
set ylabel "calls/s"
set yrange [0:*]
plot ${plots//COLUMN/2}
set output "$SWEEP_PLOTS/sweep-p99.svg"
set title "stockd: p99 latency vs calls in flight\n{/*0.75 $subtitle}"
set ylabel "p99 latency (ms, log scale)"
set logscale y 10
set yrange [*:*]
set key top left Left reverse
plot ${plots//COLUMN/3}
EOF
  echo "== plots: $SWEEP_PLOTS/sweep-throughput.svg $SWEEP_PLOTS/sweep-p99.svg"
fi

if grep -q '"check_mismatches":[1-9-]\|"error"\|"wix_tokens_exhausted":true' "$OUT"; then
  echo "== a run above failed its check or did not finish (see its JSON line)" >&2
  exit 1
fi
echo "== results in $OUT"
