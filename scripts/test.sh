#!/usr/bin/env bash
# The whole test suite:
#  1. a release build with warnings as errors: unit, integration, interop (grpc-js),
#     valgrind and deployment-manifest tests;
#  2. libFuzzer smoke runs of every fuzz target (gateway, parsers, stockd requests, CSV
#     import), every library instrumented (clang);
#  3. an ASan+UBSan build running the unit and integration tests again (last, so the run
#     ends with CTest's summary).
set -euo pipefail
BUILD=${1:-build}
BUILD_ASAN=${2:-build-asan}
JOBS=$(nproc 2>/dev/null || echo 2)

echo "== npm packages for the grpc-js interop test and the manifest schema check"
(cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
(cd tests/deploy && npm ci --no-audit --no-fund --loglevel=error)

echo "== Raft library source for the seeded simulation (tests/sim), from Debian's source package"
bash scripts/raft-source.sh build-deps/raft

echo "== release build (-Werror)"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTOCKD_WERROR=ON >/dev/null
cmake --build "$BUILD" -j "$JOBS"
echo "== release tests"
(cd "$BUILD" && ctest --output-on-failure --timeout 900)

echo "== libFuzzer smoke runs: every fuzz target, 12 s each, every library instrumented (clang)"
if command -v clang >/dev/null 2>&1; then
  FUZZ_TARGETS=(gateway parsers request import)
  CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DSTOCKD_FUZZ=ON >/dev/null
  cmake --build build-fuzz -j "$JOBS" --target "${FUZZ_TARGETS[@]/#/fuzz_}"
  for target in "${FUZZ_TARGETS[@]}"; do
    corpus=$(mktemp -d)
    log="build-fuzz/smoke-$target.log"
    cp "tests/fuzz/corpus/$target"/* "$corpus"/
    if ! "./build-fuzz/tests/fuzz_$target" -max_total_time=12 -print_final_stats=0 \
        -artifact_prefix=build-fuzz/ "$corpus" >"$log" 2>&1; then
      tail -n 40 "$log"
      rm -rf "$corpus"
      echo "fuzz_$target failed; the input is in build-fuzz/ (crash-*, leak-*, timeout-*)"
      exit 1
    fi
    echo "fuzz_$target: $(grep -m1 -o '[0-9]* inline 8-bit counters' "$log")," \
      "reached $(grep -o 'cov: [0-9]*' "$log" | tail -n 1); $(tail -n 1 "$log")"
    rm -rf "$corpus"
  done
else
  echo "clang not found: skipped (the corpus replay in the release tests still ran)"
fi

echo "== ASan+UBSan build"
cmake -S . -B "$BUILD_ASAN" -DCMAKE_BUILD_TYPE=Debug -DSTOCKD_WERROR=ON -DSTOCKD_SANITIZE=ON \
  >/dev/null
cmake --build "$BUILD_ASAN" -j "$JOBS"
echo "== ASan+UBSan tests"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd "$BUILD_ASAN" && ctest --output-on-failure --timeout 900 -LE valgrind)
