# The two commands a newcomer needs:
#   make run   - install what is missing, build, start `skylab serve` on the defaults
#   make test  - the same set-up, then every test
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all setup build web run test unit integration node browser bench clean install deb

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

# Installs the binary, the web app, the Python helpers, the examples, the
# systemd unit, /etc/skylab/skylab.toml and /var/lib/skylab (docs/operations.md).
# Builds first when nothing is built. PREFIX, DESTDIR, SYSCONFDIR, LOCALSTATEDIR, UNITDIR.
PREFIX ?= /usr/local
install:
	@[ -x $(BUILD)/skylab ] && [ -f $(BUILD)/web/index.html ] || $(MAKE) --no-print-directory build
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" SYSCONFDIR="$(SYSCONFDIR)" LOCALSTATEDIR="$(LOCALSTATEDIR)" \
	  UNITDIR="$(UNITDIR)" bash scripts/install.sh $(BUILD)

# $(BUILD)/skylab_<version>_<arch>.deb (Debian 12), from what is built.
deb:
	@[ -x $(BUILD)/skylab ] && [ -f $(BUILD)/web/index.html ] || $(MAKE) --no-print-directory build
	bash scripts/make_deb.sh $(BUILD)

clean:
	rm -rf $(BUILD)
