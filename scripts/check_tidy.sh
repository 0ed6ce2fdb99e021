#!/usr/bin/env bash
# Fails on any clang-tidy finding (checks in .clang-tidy) in a src/ TU, with
# the flags of build/compile_commands.json. TUs unchanged since they last
# passed are skipped (see scripts/clang_check.py).
# Usage: scripts/check_tidy.sh [--build DIR] [-j N] [--no-cache] [FILE...]
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/clang_check.py" tidy "$@"
