#!/usr/bin/python3
"""Throughput of `skylab backup` and `skylab restore` (issue 16).

    /usr/bin/python3 bench/backup_bench.py [SKYLAB_BIN] [--files N] [--file-kib K] [--big-mib M]

Builds a data directory with one user's Drive (N files of K KiB and one of
M MiB, random bytes) plus a drive.db of 2000 revisions, then times a backup
and a restore of it (each run once, after a warm-up read of the tree);
prints MiB/s. Everything in a temporary folder, removed afterwards."""

import argparse
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time

p = argparse.ArgumentParser()
p.add_argument("bin", nargs="?", default=os.path.join(os.path.dirname(__file__), "..", "build", "skylab"))
p.add_argument("--files", type=int, default=2000)
p.add_argument("--file-kib", type=int, default=100)
p.add_argument("--big-mib", type=int, default=256)
a = p.parse_args()

tmp = tempfile.mkdtemp(prefix="skylab-backup-bench-")
try:
    data = os.path.join(tmp, "data")
    drive = os.path.join(data, "drive", "alice")
    os.makedirs(drive)
    for i in range(a.files):
        with open(os.path.join(drive, "f%05d.bin" % i), "wb") as f:
            f.write(os.urandom(a.file_kib * 1024))
    with open(os.path.join(drive, "big.bin"), "wb") as f:
        for _ in range(a.big_mib):
            f.write(os.urandom(1 << 20))
    with sqlite3.connect(os.path.join(data, "drive.db")) as c:
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("CREATE TABLE blobs(sha256 TEXT PRIMARY KEY, size INTEGER, data BLOB)")
        c.executemany("INSERT INTO blobs VALUES(?, ?, ?)", ((str(i), 4096, os.urandom(4096)) for i in range(2000)))
    total = sum(os.path.getsize(os.path.join(r, n)) for r, _, ns in os.walk(data) for n in ns)
    subprocess.run(["tar", "cf", "/dev/null", "-C", data, "."], check=True)  # warm the page cache
    archive = os.path.join(tmp, "b.tar")
    t0 = time.monotonic()
    subprocess.run([a.bin, "backup", "--quiet", "--data-dir", data, archive], check=True)
    t1 = time.monotonic()
    subprocess.run([a.bin, "restore", "--quiet", archive, "--data-dir", os.path.join(tmp, "restored")], check=True)
    t2 = time.monotonic()
    mib = total / (1 << 20)
    print("data: %.0f MiB in %d files" % (mib, a.files + 2))
    print("backup:  %.2f s  %.0f MiB/s" % (t1 - t0, mib / (t1 - t0)))
    print("restore: %.2f s  %.0f MiB/s" % (t2 - t1, mib / (t2 - t1)))
finally:
    shutil.rmtree(tmp, ignore_errors=True)
