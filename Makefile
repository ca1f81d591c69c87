# The two commands: `make demo` and `make test`. Both install what is missing first.
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)

.PHONY: all setup configure build test demo clean format

all: build

setup:
	@bash deploy/setup.sh

$(BUILD_DIR)/build.ninja:
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
	  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++

configure: setup $(BUILD_DIR)/build.ninja

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

demo: build
	bash deploy/demo.sh $(if $(KEEP),--keep)

clean:
	rm -rf $(BUILD_DIR)

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

# The system benchmark (not part of `make test`; ctest runs a short smoke run
# of it): real nodes over mutual TLS beside an echo baseline, one table on
# stdout. Takes several minutes; the 10M-entry ledger is bulk-loaded once into
# BENCH_CACHE and reused. See docs/benchmarks.md.
BENCH_CACHE ?= /tmp/corridor-system-bench-cache
BENCH_FLAGS ?=
.PHONY: bench
bench: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target system_bench corridord
	$(BUILD_DIR)/bin/system_bench --scale_cache=$(BENCH_CACHE) $(BENCH_FLAGS)
