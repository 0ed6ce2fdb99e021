# The two commands a newcomer needs:
#   make run   - install what is missing, build, start `skylab serve` on the defaults
#   make test  - the same set-up, then every test
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all setup build web run test unit integration node browser bench clean

all: build

setup:
	bash scripts/setup.sh

build: setup
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD) -j$(JOBS)
	$(MAKE) --no-print-directory web

# The browser app (web/): npm ci when node_modules is missing or older than
# the lock file, then one esbuild run into $(BUILD)/web (served by skylab serve).
web:
	@cd web && { [ -f node_modules/.package-lock.json ] && [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund --loglevel=error; }
	cd web && node build.mjs --out $(abspath $(BUILD))/web

run: build
	$(BUILD)/skylab serve

test: build
	bash tests/run_all.sh $(BUILD)

unit: build
	ctest --test-dir $(BUILD) --output-on-failure

integration: build
	/usr/bin/python3 -m pytest tests/integration -q

browser: build
	cd tests/browser && node --test

bench: build
	/usr/bin/python3 bench/kernel_bench.py
	node bench/web_bench.mjs

clean:
	rm -rf $(BUILD)
