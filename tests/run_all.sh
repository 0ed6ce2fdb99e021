#!/usr/bin/env bash
# Runs every test suite against the built binary; exits non-zero if any fails.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
export SKYLAB_BIN="$PWD/$BUILD/skylab"
failed=()

echo "== C++ formatting (clang-format, .clang-format)"
scripts/check_format.sh || failed+=(format)

echo "== C++ thread safety (clang -Wthread-safety on GUARDED_BY/REQUIRES)"
scripts/check_thread_safety.sh --build "$BUILD" || failed+=(thread-safety)

echo "== clang-tidy (.clang-tidy)"
scripts/check_tidy.sh --build "$BUILD" || failed+=(tidy)

echo "== unit tests (ctest)"
ctest --test-dir "$BUILD" --output-on-failure || failed+=(unit)

echo "== integration tests (pytest, real ipykernel)"
/usr/bin/python3 -m pytest tests/integration -q -p no:cacheprovider || failed+=(integration)

echo "== the runtime isolation suites again, kernels forked from the runtime template (issue 17)"
SKYLAB_RUNTIME_TEMPLATE=1 /usr/bin/python3 -m pytest tests/integration/test_isolation.py \
  tests/integration/test_privsep.py tests/integration/test_limits.py tests/integration/test_terminals.py \
  -q -p no:cacheprovider || failed+=(integration-template)

if [ -f tests/node/package.json ]; then
  echo "== client library tests (@jupyterlab/services in Node)"
  (cd tests/node && node --test) || failed+=(node)
fi

if [ -f tests/browser/package.json ]; then
  echo "== browser tests (the app in Chromium, playwright-core)"
  (cd tests/browser && node --test) || failed+=(browser)
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED suites: ${failed[*]}"
  exit 1
fi
echo "all test suites passed"
