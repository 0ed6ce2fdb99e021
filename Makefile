# The two commands a newcomer needs:
#   make run   - install what is missing, build, start `skylab serve` on the defaults
#   make test  - the same set-up, then every test
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all setup build run test unit integration node bench clean

all: build

setup:
	bash scripts/setup.sh

build: setup
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD) -j$(JOBS)

run: build
	$(BUILD)/skylab serve

test: build
	bash tests/run_all.sh $(BUILD)

unit: build
	ctest --test-dir $(BUILD) --output-on-failure

integration: build
	/usr/bin/python3 -m pytest tests/integration -q

bench: build
	/usr/bin/python3 bench/kernel_bench.py

clean:
	rm -rf $(BUILD)
