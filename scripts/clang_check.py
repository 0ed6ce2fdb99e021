#!/usr/bin/python3
"""Runs one Clang check over every translation unit under src/, in parallel,
with the flags from BUILD/compile_commands.json; exits 1 on any finding.

  clang_check.py thread-safety  clang++ -fsyntax-only -Wthread-safety -Werror=thread-safety
  clang_check.py tidy           clang-tidy with .clang-tidy, --warnings-as-errors='*'

A TU that passed is remembered in ~/.cache/skylab-tidy/<check>/ under a hash
of its preprocessed source with comments (`clang++ -E -C`, so headers and
NOLINT comments count), its flags, the tool's version and, for tidy, the
.clang-tidy file, with the checkout's path taken out (a fresh clone elsewhere
hits the same entries): an unchanged tree checks in seconds. Findings are never
cached; entries unused for 30 days are removed. Options: --build DIR (default build), -j N (default nproc),
--no-cache, and file names to check only those TUs.
"""
import argparse
import concurrent.futures
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Only Asio's and Beast's own sources (no project code): a TU that takes
# minutes under clang-tidy and is not ours to fix.
SKIP = {"src/http/beast_impl.cpp"}


def tool(name):
    for cand in (name + "-14", name):
        for d in os.environ.get("PATH", "/usr/bin").split(":"):
            if os.access(os.path.join(d, cand), os.X_OK):
                return os.path.join(d, cand)
    sys.exit(f"clang_check: {name}-14 (or {name}) not found; run scripts/setup.sh")


def flags_of(entry):
    """The compile flags of a compile_commands entry, without compiler, -c, -o and source."""
    args = entry.get("arguments") or shlex.split(entry["command"])
    out, skip = [], False
    for a in args[1:]:
        if skip:
            skip = False
            continue
        if a == "-o":
            skip = True
            continue
        if a == "-c" or a == entry["file"] or a.startswith("-o"):
            continue
        out.append(a)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("check", choices=["thread-safety", "tidy"])
    ap.add_argument("--build", default="build")
    ap.add_argument("-j", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("files", nargs="*")
    a = ap.parse_intermixed_args()

    build = os.path.join(ROOT, a.build) if not os.path.isabs(a.build) else a.build
    db = os.path.join(build, "compile_commands.json")
    if not os.path.exists(db):
        sys.exit(f"clang_check: {db} missing; configure with cmake first")
    clangxx = tool("clang++")
    tidy = tool("clang-tidy") if a.check == "tidy" else None
    version = subprocess.run([tidy or clangxx, "--version"], capture_output=True, text=True).stdout
    config = ""
    if a.check == "tidy":
        with open(os.path.join(ROOT, ".clang-tidy")) as f:
            config = f.read()

    wanted = {os.path.abspath(f) for f in a.files}
    units = []
    with open(db) as f:
        for e in json.load(f):
            path = os.path.abspath(os.path.join(e["directory"], e["file"]))
            rel = os.path.relpath(path, ROOT)
            if not rel.startswith("src/") or rel in SKIP:
                continue
            if wanted and path not in wanted:
                continue
            units.append((rel, path, e["directory"], flags_of(e)))
    units.sort()
    cache = os.path.join(os.path.expanduser("~/.cache/skylab-tidy"), a.check)
    os.makedirs(cache, exist_ok=True)

    def check(unit):
        rel, path, cwd, flags = unit
        if a.check == "thread-safety":
            # Only the thread-safety warnings: the GCC build owns the others.
            flags = [f for f in flags if not f.startswith("-W")] + [
                "-Wthread-safety", "-Werror=thread-safety"]
        pre = subprocess.run([clangxx, *flags, "-E", "-C", path], cwd=cwd, capture_output=True)
        key = None
        if pre.returncode == 0:
            # Keyed without the checkout's own path (include paths, line
            # markers), so a fresh clone elsewhere hits what this one checked.
            h = hashlib.sha256()
            for part in (a.check, version, config, "\0".join(flags).replace(ROOT, "@ROOT@"), rel):
                h.update(part.encode() + b"\0")
            h.update(pre.stdout.replace(ROOT.encode(), b"@ROOT@"))
            key = os.path.join(cache, h.hexdigest())
            if not a.no_cache and os.path.exists(key):
                os.utime(key)  # recently used: kept by the pruning below
                return rel, True, True, ""
        if a.check == "thread-safety":
            cmd = [clangxx, *flags, "-fsyntax-only", path]
        else:
            cmd = [tidy, "--quiet", f"--config-file={os.path.join(ROOT, '.clang-tidy')}",
                   "--warnings-as-errors=*", path, "--", *flags]
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        ok = r.returncode == 0
        if ok and key:
            with open(key, "w") as f:
                f.write(rel + "\n")
        out = r.stdout + r.stderr
        if a.check == "tidy":  # clang-tidy's "N warnings generated." chatter
            out = "\n".join(l for l in out.splitlines() if not l.endswith(" generated."))
        return rel, ok, False, out.strip()

    start = time.monotonic()
    failed, cached = [], 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.j)) as pool:
        for rel, ok, hit, out in pool.map(check, units):
            cached += hit
            if not ok:
                failed.append(rel)
            if out and (not ok or a.check == "thread-safety"):
                print(out, flush=True)
    secs = time.monotonic() - start
    # Entries not used for 30 days belong to trees long gone.
    for name in os.listdir(cache):
        path = os.path.join(cache, name)
        try:
            if time.time() - os.path.getmtime(path) > 30 * 86400:
                os.remove(path)
        except OSError:
            pass
    name = "check_tidy" if a.check == "tidy" else "check_thread_safety"
    print(f"{name}: {len(units)} TUs ({cached} unchanged since a clean check), "
          f"{len(failed)} with findings, {secs:.0f}s")
    if failed:
        print(f"{name}: findings in: {' '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
