#!/usr/bin/env bash
# Fails when Clang's thread-safety analysis (-Wthread-safety: GUARDED_BY,
# REQUIRES, ... from src/common/thread_annotations.hpp) finds a violation in a
# src/ TU, or when src/ uses a lock the analysis cannot see (std::mutex,
# std::lock_guard, std::unique_lock, std::scoped_lock, std::condition_variable:
# use skylab::Mutex, MutexLock, CondVar from src/common/mutex.hpp).
# Syntax-only, with the flags of build/compile_commands.json; TUs unchanged
# since they last passed are skipped (see scripts/clang_check.py).
# Usage: scripts/check_thread_safety.sh [--build DIR] [-j N] [--no-cache] [FILE...]
set -euo pipefail
cd "$(dirname "$0")/.."
if git grep -nE 'std::(mutex|recursive_mutex|shared_mutex|lock_guard|unique_lock|scoped_lock|condition_variable)\b' \
    -- 'src/*.cpp' 'src/*.hpp' ':!src/common/mutex.hpp'; then
  echo "check_thread_safety: the lines above use std:: locks, which the analysis cannot check;" \
       "use Mutex/MutexLock/CondVar (src/common/mutex.hpp)" >&2
  exit 1
fi
exec /usr/bin/python3 scripts/clang_check.py thread-safety "$@"
