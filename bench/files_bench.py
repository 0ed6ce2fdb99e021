#!/usr/bin/python3
"""Moving a big file between the computer and the notebook's machine:
Skylab's runtime files API vs what JupyterLab does with Jupyter Server.

    /usr/bin/python3 bench/files_bench.py               # 256 MiB, 3 runs
    /usr/bin/python3 bench/files_bench.py --size 64 --runs 1

Measured (median of --runs, both servers running side by side, requests
alternating):
  upload   Skylab: PUT /api/skylab/runtimes/{id}/files/big.bin?chunk=N, raw
           8 MiB chunks (what the Files panel and files.upload() send), into
           a sandboxed runtime's /content.
           Jupyter: PUT /api/contents/big.bin with {"chunk": N, "format":
           "base64"} 1 MiB chunks (JupyterLab's file browser upload).
  download Skylab: GET /api/skylab/runtimes/{id}/files/big.bin (streamed).
           Jupyter: GET /files/big.bin.
The ratio is Skylab time / Jupyter time (lower is better for Skylab). Needs
root and bubblewrap (the runtime is a real sandbox).
"""
import argparse
import base64
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
from conftest import Server, _stop_server  # noqa: E402


def upload_skylab(srv, kid, data, chunk=8 << 20):
    url = srv.url("/api/skylab/runtimes/%s/files/big.bin" % kid)
    n = (len(data) + chunk - 1) // chunk
    for i in range(n):
        piece = data[i * chunk:(i + 1) * chunk]
        r = srv.http.put(url, params={"chunk": -1 if i == n - 1 else i + 1}, data=piece, timeout=120)
        assert r.status_code in (200, 201), r.text


def upload_jupyter(srv, data, chunk=1 << 20):
    url = srv.url("/api/contents/big.bin")
    n = (len(data) + chunk - 1) // chunk
    for i in range(n):
        piece = base64.b64encode(data[i * chunk:(i + 1) * chunk]).decode()
        body = {"type": "file", "format": "base64", "name": "big.bin", "path": "big.bin",
                "chunk": -1 if i == n - 1 else i + 1, "content": piece}
        r = srv.http.put(url, data=json.dumps(body), headers={"Content-Type": "application/json"}, timeout=120)
        assert r.status_code in (200, 201), r.text


def download(srv, path, size):
    got = 0
    with srv.http.get(srv.url(path), stream=True, timeout=120) as r:
        assert r.status_code == 200, r.text
        for piece in r.iter_content(1 << 20):
            got += len(piece)
    assert got == size, (got, size)


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256, help="MiB")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    data = os.urandom(a.size << 20)
    sk = Server(kind="skylab")
    jp = Server(kind="jupyter")
    try:
        kid = sk.create_kernel()
        c = sk.connect(kid)
        c.nudge()
        times = {k: [] for k in ("skylab_up", "jupyter_up", "skylab_down", "jupyter_down")}
        for _ in range(a.runs):
            times["skylab_up"].append(timed(lambda: upload_skylab(sk, kid, data)))
            times["jupyter_up"].append(timed(lambda: upload_jupyter(jp, data)))
            times["skylab_down"].append(timed(lambda: download(sk, "/api/skylab/runtimes/%s/files/big.bin" % kid,
                                                                  len(data))))
            times["jupyter_down"].append(timed(lambda: download(jp, "/files/big.bin", len(data))))
        # The kernel sees the uploaded bytes.
        r = c.execute("import os; print(os.path.getsize('/content/big.bin'))", timeout=60)
        assert r.stdout.strip() == str(len(data)), r.stdout
    finally:
        _stop_server(sk)
        _stop_server(jp)
    med = {k: statistics.median(v) for k, v in times.items()}
    mb = a.size * 1.048576
    rows = [("upload %d MiB" % a.size, med["skylab_up"], med["jupyter_up"]),
            ("download %d MiB" % a.size, med["skylab_down"], med["jupyter_down"])]
    print("%-18s %14s %14s %8s" % ("", "Skylab", "Jupyter", "ratio"))
    for name, s, j in rows:
        print("%-18s %6.2fs %4.0fMB/s %6.2fs %4.0fMB/s %8.2f" % (name, s, mb / s, j, mb / j, s / j))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"size_mib": a.size, "runs": a.runs, "median_seconds": med}, f, indent=1)


if __name__ == "__main__":
    main()
