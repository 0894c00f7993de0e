# stockd — the two commands a newcomer needs:
#   make run    install what is missing, build, start stockd on 127.0.0.1:50051
#   make test   install what is missing, build (warnings are errors), run every test, then
#               build again with ASan+UBSan and run the unit and integration tests again
#   make bench  the benchmarks of BENCHMARKS.md (DURATION=10s per run by default)
.PHONY: all setup build run test bench fuzz clean

BUILD ?= build
BUILD_ASAN ?= build-asan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

all: build

setup:
	@bash scripts/setup.sh

build: setup
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTOCKD_WERROR=ON >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

run: build
	@bash scripts/run.sh $(BUILD)

test: setup
	@bash scripts/test.sh $(BUILD) $(BUILD_ASAN)

bench: build
	@bash scripts/bench.sh $(BUILD)

fuzz: setup
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DSTOCKD_FUZZ=ON >/dev/null
	cmake --build build-fuzz -j $(JOBS) --target fuzz_gateway fuzz_parsers
	for t in gateway parsers; do \
	  mkdir -p build-fuzz/corpus-$$t && cp tests/fuzz/corpus/$$t/* build-fuzz/corpus-$$t/ && \
	  ./build-fuzz/tests/fuzz_$$t -max_total_time=$${FUZZ_SECONDS:-300} build-fuzz/corpus-$$t || exit 1; \
	done

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) build-fuzz
