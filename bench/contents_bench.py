#!/usr/bin/python3
"""Drive benchmark: Skylab vs Jupyter Server on the Contents API.

Run with Debian's python (it has jupyter_server, requests):

    /usr/bin/python3 bench/contents_bench.py              # both servers, full
    /usr/bin/python3 bench/contents_bench.py --quick      # fewer iterations
    /usr/bin/python3 bench/contents_bench.py --json out.json

What is measured (p50 over --runs requests, after warm-up):
  1. save: PUT of a 5 MB, 1000-cell notebook (each save differs in one cell,
     as autosaves do), until the reply arrives;
  2. load: GET of that notebook with its content;
  3. list: GET of a directory holding 10,000 files (with content=1).

Both servers run at the same time on free 127.0.0.1 ports, each with a
fresh temp directory, and the requests alternate between them, so machine
noise hits both alike. Skylab: build/skylab serve (admin token); Jupyter:
python3 -m jupyter_server (1.23 on Debian 12) with its default
FileContentsManager. The ratio column is Skylab / Jupyter (lower is
better for Skylab); the issue's targets are save and load <= 0.5, list <= 0.33.
"""

import argparse
import base64
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values, p):
    v = sorted(values)
    return v[max(0, min(len(v) - 1, math.ceil(p / 100.0 * len(v)) - 1))]


class Server:
    def __init__(self, kind, args):
        self.kind = kind
        self.args = args
        self.port = free_port()
        self.token = uuid.uuid4().hex
        self.dir = tempfile.mkdtemp(prefix="skylab-cbench-%s-" % kind)
        self.base = "http://127.0.0.1:%d" % self.port
        self.http = requests.Session()
        self.http.headers["Authorization"] = "token " + self.token
        self.proc = None

    @property
    def root(self):
        """Where the benchmark user's files are on disk."""
        if self.kind == "skylab":
            return os.path.join(self.dir, "data", "drive", "admin")
        return os.path.join(self.dir, "root")

    def start(self):
        env = dict(os.environ)
        if self.kind == "skylab":
            cmd = [self.args.skylab_bin, "serve", "--host", "127.0.0.1", "--port", str(self.port),
                   "--data-dir", os.path.join(self.dir, "data"), "--log-level", "warn"]
            env["SKYLAB_ADMIN_TOKEN"] = self.token
        else:
            os.makedirs(self.root)
            cmd = [self.args.jupyter_python, "-m", "jupyter_server",
                   "--ServerApp.token=" + self.token, "--ServerApp.port=%d" % self.port,
                   "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
                   "--ServerApp.open_browser=False", "--ServerApp.root_dir=" + self.root,
                   "--ServerApp.log_level=WARN"]
            if os.geteuid() == 0:
                cmd.append("--allow-root")
            env["JUPYTER_CONFIG_DIR"] = os.path.join(self.dir, ".jupyter-config")
            env["JUPYTER_RUNTIME_DIR"] = os.path.join(self.dir, ".jupyter-runtime")
            env["JUPYTER_DATA_DIR"] = os.path.join(self.dir, ".jupyter-data")
        self.logf = open(os.path.join(self.dir, "server.log"), "wb")
        self.proc = subprocess.Popen(cmd, env=env, cwd=self.dir, stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited during start-up" % self.kind)
            try:
                if self.http.get(self.base + "/api/contents", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("%s did not start" % self.kind)
            time.sleep(0.1)
        os.makedirs(self.root, exist_ok=True)
        log("[%s] up on %s (pid %d)" % (self.kind, self.base, self.proc.pid))
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        if self.proc:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.logf.close()
        if not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def make_notebook(target_bytes=5_000_000, cells=1000, seed=1):
    """A notebook like real ones: markdown, code with stdout and an image output."""
    rnd = random.Random(seed)

    def build(img_bytes):
        out = []
        for i in range(cells):
            if i % 4 == 0:
                out.append({"id": "md%05d" % i, "cell_type": "markdown", "metadata": {},
                            "source": "## Step %d\n\nWe now look at *part %d* of the data.\n" % (i, i)})
                continue
            src = "\n".join("y%d = model.layer_%d(x) * %d  # tuned" % (j, j, i) for j in range(8))
            img = base64.b64encode(rnd.randbytes(img_bytes)).decode()
            out.append({"id": "c%05d" % i, "cell_type": "code", "execution_count": i, "metadata": {},
                        "source": src,
                        "outputs": [
                            {"output_type": "stream", "name": "stdout",
                             "text": "".join("epoch %d loss %.4f\n" % (e, 1.0 / (e + 1)) for e in range(10))},
                            {"output_type": "display_data", "metadata": {},
                             "data": {"image/png": img, "text/plain": "<Figure size 640x480 with 1 Axes>"}}]})
        return {"nbformat": 4, "nbformat_minor": 5, "cells": out,
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"},
                             "language_info": {"name": "python"}}}

    per = 3000
    nb = build(per)
    size = len(json.dumps(nb, indent=1))
    per = max(1, int(per + (target_bytes - size) / (cells * 0.75) * 0.75))
    nb = build(per)
    return nb


def timed(fn):
    t = time.perf_counter()
    r = fn()
    dt = time.perf_counter() - t
    if r.status_code not in (200, 201):
        raise RuntimeError("HTTP %d: %s" % (r.status_code, r.text[:300]))
    return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["skylab", "jupyter"])
    ap.add_argument("--runs", type=int, default=30, help="timed requests per measurement (default 30)")
    ap.add_argument("--quick", action="store_true", help="10 runs")
    ap.add_argument("--files", type=int, default=10000, help="files in the listed directory")
    ap.add_argument("--json", help="write the numbers here")
    ap.add_argument("--skylab-bin", default=os.environ.get("SKYLAB_BIN", os.path.join(REPO, "build", "skylab")))
    ap.add_argument("--jupyter-python", default="/usr/bin/python3")
    ap.add_argument("--keep", action="store_true", help="keep the servers' temp dirs")
    args = ap.parse_args()
    runs = 10 if args.quick else args.runs
    kinds = [args.only] if args.only else ["skylab", "jupyter"]

    nb = make_notebook()
    nb_bytes = len(json.dumps(nb, indent=1))
    log("notebook: %d cells, %.1f MB as stored" % (len(nb["cells"]), nb_bytes / 1e6))
    template = json.dumps({"type": "notebook", "content": nb}).replace('"## Step 0\\n', '"## Step 0 @@V@@\\n', 1)

    servers = {}
    results = {k: {"save": [], "load": [], "list": []} for k in kinds}
    try:
        for k in kinds:
            servers[k] = Server(k, args).start()
        for k, s in servers.items():
            d = os.path.join(s.root, "many")
            os.makedirs(d)
            for i in range(args.files):
                with open(os.path.join(d, "file-%05d.txt" % i), "w") as f:
                    f.write("x" * (i % 100))
        log("created %d files per server" % args.files)

        def save(s, i):
            body = template.replace("@@V@@", "%s-%d" % (s.kind, i))
            return timed(lambda: s.http.put(s.base + "/api/contents/bench.ipynb", data=body,
                                            headers={"Content-Type": "application/json"}, timeout=300))

        def load(s):
            return timed(lambda: s.http.get(s.base + "/api/contents/bench.ipynb",
                                            params={"type": "notebook", "content": "1"}, timeout=300))

        def listing(s):
            return timed(lambda: s.http.get(s.base + "/api/contents/many", params={"content": "1"}, timeout=300))

        for name, op in (("save", None), ("load", load), ("list", listing)):
            log("measuring %s (%d runs + 2 warm-up)" % (name, runs))
            for i in range(runs + 2):
                for k, s in servers.items():  # alternate: noise hits both
                    dt = save(s, i) if name == "save" else op(s)
                    if i >= 2:
                        results[k][name].append(dt)
    finally:
        for s in servers.values():
            s.stop()

    rows = [("save 5 MB notebook", "save"), ("load 5 MB notebook", "load"),
            ("list %d files" % args.files, "list")]
    print()
    print("%-24s %14s %14s %8s" % ("p50 (ms)", "Skylab", "Jupyter", "ratio"))
    out = {"runs": runs, "notebook_bytes": nb_bytes, "cells": len(nb["cells"]), "files": args.files}
    for label, key in rows:
        p = {k: statistics.median(results[k][key]) * 1000 for k in kinds}
        p90 = {k: pct(results[k][key], 90) * 1000 for k in kinds}
        ratio = p["skylab"] / p["jupyter"] if len(kinds) == 2 else float("nan")
        print("%-24s %14s %14s %8s" % (
            label,
            "%.1f (p90 %.0f)" % (p["skylab"], p90["skylab"]) if "skylab" in p else "-",
            "%.1f (p90 %.0f)" % (p["jupyter"], p90["jupyter"]) if "jupyter" in p else "-",
            "%.2f" % ratio if ratio == ratio else "-"))
        out[key] = {"p50_ms": p, "p90_ms": p90, "ratio": ratio, "samples_s": {k: results[k][key] for k in kinds}}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
