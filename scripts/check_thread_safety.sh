#!/usr/bin/env bash
# Fails when Clang's thread-safety analysis (-Wthread-safety: GUARDED_BY,
# REQUIRES, ... from src/common/thread_annotations.hpp) finds a violation in a
# src/ TU. Syntax-only, with the flags of build/compile_commands.json; TUs
# unchanged since they last passed are skipped (see scripts/clang_check.py).
# Usage: scripts/check_thread_safety.sh [--build DIR] [-j N] [--no-cache] [FILE...]
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/clang_check.py" thread-safety "$@"
