# stockd — the two commands a newcomer needs:
#   make run    install what is missing, build, start stockd on 127.0.0.1:50051
#   make test   install what is missing, build (warnings are errors), run every test, then
#               build again with ASan+UBSan and run the unit and integration tests again
#   make bench  the benchmarks of BENCHMARKS.md (DURATION=10s per run by default) and the
#               concurrency sweep drawn into docs/bench/*.svg
#   make bench-peers  stockd vs Redis and PostgreSQL on the same durable workload (installs
#               redis-server, postgresql, libhiredis-dev, libpq-dev when missing; ~4 minutes)
#   make profile  instructions per call under callgrind (Health vs durable decrements)
#   make bench-replication  three replicas vs one node (stockbench --preset peers) and the
#               time from a leader's SIGKILL to the first acknowledged write (bench/replication.py)
#   make image  the container image, built offline with podman over a debootstrap base, then
#               checked end to end (scripts/image.sh; IMAGE=name:tag)
#   make soak   the seeded Raft group simulation over SIM_SEEDS seeds (default 200000), then
#               SIGKILL stockd under load SOAK_CYCLES times (default 100; a few minutes each;
#               not part of make test) and check what survives; SOAK_SEED repeats a run
.PHONY: all setup build run test bench bench-peers bench-replication profile soak fuzz image clean

BUILD ?= build
BUILD_ASAN ?= build-asan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

all: build

setup:
	@bash scripts/setup.sh

# Quiet unless something fails: the compiler's output goes to $(BUILD)/build.log and is shown
# only when the build breaks.
build: setup
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTOCKD_WERROR=ON >/dev/null
	@echo "build: compiling into $(BUILD)/ (log: $(BUILD)/build.log)"
	@cmake --build $(BUILD) -j $(JOBS) >$(BUILD)/build.log 2>&1 || { cat $(BUILD)/build.log; exit 1; }

run: build
	@bash scripts/run.sh $(BUILD)

test: setup
	@bash scripts/test.sh $(BUILD) $(BUILD_ASAN)

bench: build
	@bash scripts/bench.sh $(BUILD)

# bench/peers.sh: ROUNDS (3) round-robin rounds of stockd, Redis (appendfsync always) and
# PostgreSQL (synchronous_commit on), PEERS_DURATION (20s) measured each (BENCHMARKS.md).
bench-peers: build
	@bash bench/peers.sh $(BUILD)

# History by item and by order over the ledger's index, against the scan it replaced
# (BENCHMARKS.md "History queries"): 1M ledger entries over 10k items written through the real
# write path, then first pages timed both ways (a few minutes). BENCH_HISTORY_ARGS passes
# options (bench_history --help).
.PHONY: bench-history
bench-history: build
	$(BUILD)/tests/bench_history $(BENCH_HISTORY_ARGS)

# A deterministic cost meter (BENCHMARKS.md "Instructions per call"): stockd under callgrind,
# PROFILE_SECONDS (default 10s) of Health checks, then of durable 1-3-line decrements.
profile: build
	/usr/bin/python3 scripts/profile.py $(BUILD) $${PROFILE_SECONDS:-10s}

# First the seeded Raft group simulation over SIM_SEEDS seeds (default 200000, a few minutes;
# make test runs 10000; SIM_ARGS="--help" for more), then tests/soak/soak.py: kill -9 under
# load, restart, compare acknowledged / in-doubt writes with what stockd holds, re-send them,
# check floors; half the cycles with --write-buffer-mb 1 so that compactions happen. More
# options: SOAK_ARGS="--help".
soak: build
	bash scripts/raft-source.sh build-deps/raft
	@cmake -S . -B $(BUILD) >/dev/null && cmake --build $(BUILD) -j $(JOBS) --target stockd_sim >/dev/null
	$(BUILD)/tests/stockd_sim --seeds $${SIM_SEEDS:-200000} $(SIM_ARGS)
	/usr/bin/python3 tests/soak/soak.py $(BUILD)/stockd $(BUILD)/pygen $(SOAK_ARGS)

# libFuzzer targets (tests/fuzz/fuzz_<name>.c), each run FUZZ_SECONDS (default 300) from a copy
# of its checked-in corpus, in build-fuzz where every library is instrumented. To keep what a
# run found (at most ~200 files / ~1 MB per target), merge it into the checked-in corpus:
#   build-fuzz/tests/fuzz_<name> -merge=1 tests/fuzz/corpus/<name> build-fuzz/corpus-<name>
FUZZ_TARGETS = gateway parsers request import
fuzz: setup
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DSTOCKD_FUZZ=ON >/dev/null
	cmake --build build-fuzz -j $(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p build-fuzz/corpus-$$t && cp tests/fuzz/corpus/$$t/* build-fuzz/corpus-$$t/ && \
	  ./build-fuzz/tests/fuzz_$$t -max_total_time=$${FUZZ_SECONDS:-300} \
	    -artifact_prefix=build-fuzz/ build-fuzz/corpus-$$t || exit 1; \
	done

bench-replication: build
	@/usr/bin/python3 bench/replication.py $(BUILD)

image:
	@bash scripts/image.sh

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) build-fuzz
