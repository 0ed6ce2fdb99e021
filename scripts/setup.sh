#!/usr/bin/env bash
# Installs everything Skylab needs to build, test and run on Debian 12.
# Idempotent: installs only what is missing. Run as root or with sudo available.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # build
  build-essential cmake pkg-config ccache
  clang-format  # make test checks the C++ formatting (scripts/check_format.sh)
  clang-14 clang-tidy-14  # make test: scripts/check_thread_safety.sh (clang++ -Wthread-safety), scripts/check_tidy.sh
  dpkg-dev  # make deb: dpkg-shlibdeps (build-essential pulls it in; named for clarity)
  libboost-dev libzmq3-dev nlohmann-json3-dev libssl-dev libsqlite3-dev libsodium-dev
  libgtest-dev libgmock-dev libtomlplusplus-dev libseccomp-dev
  # runtimes
  python3 python3-ipykernel python3-jupyter-client python3-nbformat
  python3-matplotlib python3-numpy python3-pandas python3-zmq bubblewrap passt iproute2  # passt: runtimes' NAT (pasta); iproute2: routes in its namespace and the tests' fake internet host
  slurm-wlm munge  # the Slurm backend (src/runtime/slurm.hpp) and its one-node test cluster
  e2fsprogs mount  # mkfs.ext4 and mount -o loop: the /content size limit (runtime type `disk`)
  python3-torch python3-tqdm python3-pil  # the course notebooks (examples/, docs/course.md)
  # tests and benchmarks
  python3-pytest python3-websocket python3-requests python3-jupyter-server
  python3-prometheus-client python3-cryptography openssl nginx caddy  # tests/integration/test_ops.py: the /metrics parser, certificates, the proxies of docs/proxy
  python3-nbconvert  # the reference for skylab run (tests/integration/test_run.py, bench/run_bench.py)
  python3-tqdm       # progress bars in notebooks (tests/browser)
  chromium fonts-dejavu-core fonts-liberation  # the browser tests (tests/browser, Playwright drives Debian's Chromium)
)
# Node.js: use the machine's if it has one (e.g. NodeSource, which bundles npm
# and conflicts with Debian's npm package); else Debian's.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  APT_PACKAGES+=(nodejs npm)
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # nginx and caddy are here only for the proxy tests, which start their own
  # on free loopback ports: Debian starts the packaged services on :80; a
  # service this script just installed is stopped and disabled again.
  if [ -d /run/systemd/system ]; then
    for svc in nginx caddy; do
      if printf '%s\n' "${missing[@]}" | grep -qx "$svc"; then
        $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
      fi
    done
  fi
fi

# Node packages for the client-compatibility tests (@jupyterlab/services).
if [ -f tests/node/package.json ] && [ ! -d tests/node/node_modules ]; then
  (cd tests/node && npm install --no-audit --no-fund --loglevel=error)
fi
# The browser app's build tools and libraries (exact versions from the lock file).
# (again when the lock file changed since: a pull that adds a package)
if [ -f web/package-lock.json ] && { [ ! -d web/node_modules ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; }; then
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
# The browser tests' Playwright (playwright-core only: it drives /usr/bin/chromium, downloads nothing).
if [ -f tests/browser/package-lock.json ] && { [ ! -d tests/browser/node_modules ] || [ tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]; }; then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
