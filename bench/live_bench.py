#!/usr/bin/python3
"""Live notebook benchmark (issue 14): what recording outputs server-side costs.

    /usr/bin/python3 bench/live_bench.py [--lines 100000] [--runs 5] [--docs 50] [--json OUT]

1. Kernel output rate with and without recording. One session bound to a
   notebook; the same cell prints --lines lines, sent once with
   `metadata.cellId` (recorded into the notebook by the server) and once
   without (not recorded), alternating, --runs times each. A client stays
   attached and drains every message in both cases, so the only difference
   is the recorder. The rate is measured inside the kernel (lines / seconds
   of the print loop) and end to end (execute_request -> iopub idle seen by
   the client). Goal: recorded >= 90% of unrecorded.
2. Memory per open document (measured first, on a fresh server): server RSS before and after --docs notebooks
   (--cells code cells each, with a small output) were opened by running one
   cell of each (the session's path is switched with PATCH, one kernel),
   divided by --docs; the notebook file size is printed beside it.

Uses the integration tests' Server (real binary, real sandboxed kernels).
Everything binds 127.0.0.1 and is stopped at the end.
"""

import argparse
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
os.environ.setdefault("SKYLAB_BIN", os.path.join(REPO, "build", "skylab"))

import psutil  # noqa: E402

from conftest import Server, _stop_server  # noqa: E402


def notebook(cells):
    return {"cells": [{"cell_type": "code", "id": cid, "source": src, "metadata": {}, "outputs": outs,
                       "execution_count": None} for cid, src, outs in cells],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def run(client, code, cell_id=None, timeout=600):
    meta = {"cellId": cell_id} if cell_id else {}
    t0 = time.perf_counter()
    msg = client.send("shell", "execute_request",
                      {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                       "allow_stdin": False, "stop_on_error": True}, metadata=meta)
    res = client.collect(msg["header"]["msg_id"], timeout=timeout)
    return res, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=100000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--docs", type=int, default=50)
    ap.add_argument("--cells", type=int, default=20)
    ap.add_argument("--json")
    a = ap.parse_args()

    srv = Server()
    out = {}
    try:
        http = srv.http
        http.put(srv.url("/api/contents/bench.ipynb"),
                 json={"type": "notebook", "format": "json", "content": notebook([("rec", "", [])])}).raise_for_status()
        r = http.post(srv.url("/api/sessions"), json={"path": "bench.ipynb", "type": "notebook", "name": "",
                                                      "kernel": {"name": "python3"}})
        r.raise_for_status()
        sid, kid = r.json()["id"], r.json()["kernel"]["id"]
        srv.kernels.append(kid)
        c = srv.connect(kid)
        c.nudge()
        # Memory per open document.
        proc = psutil.Process(srv.proc.pid)
        outs = [{"output_type": "stream", "name": "stdout", "text": "x" * 2000 + "\n"}]
        for k in range(a.docs):
            cells = [("c%d" % j, "print(%d)" % j, outs) for j in range(a.cells)]
            http.put(srv.url("/api/contents/doc%d.ipynb" % k),
                     json={"type": "notebook", "format": "json", "content": notebook(cells)}).raise_for_status()
        size = os.path.getsize([os.path.join(d, f) for d, _, fs in os.walk(srv.data_dir) for f in fs
                                if f == "doc0.ipynb"][0])
        time.sleep(1)
        before = proc.memory_info().rss
        for k in range(a.docs):
            http.patch(srv.url("/api/sessions/" + sid), json={"path": "doc%d.ipynb" % k}).raise_for_status()
            run(c, "print('open')", "c0")
        time.sleep(2)
        after = proc.memory_info().rss
        per_doc = (after - before) / a.docs
        out["docs"] = a.docs
        out["notebook_file_bytes"] = size
        out["rss_per_open_document_bytes"] = per_doc
        print("memory: %d open documents of %d cells (file %.0f KB each): %.0f KB RSS per document" % (
            a.docs, a.cells, size / 1024, per_doc / 1024))
        http.patch(srv.url("/api/sessions/" + sid), json={"path": "bench.ipynb"}).raise_for_status()
        code = ("import time, sys\nt0 = time.perf_counter()\n"
                "for i in range(%d):\n    print('line', i)\n"
                "sys.stdout.flush()\nsys.stderr.write('ELAPSED %%.6f\\n' %% (time.perf_counter() - t0))\n" % a.lines)
        run(c, "print('warm')")
        samples = {"recorded": [], "unrecorded": []}
        e2e = {"recorded": [], "unrecorded": []}
        for i in range(a.runs):
            for mode in ("unrecorded", "recorded") if i % 2 == 0 else ("recorded", "unrecorded"):
                res, wall = run(c, code, "rec" if mode == "recorded" else None)
                elapsed = float(res.stderr.split("ELAPSED")[-1])
                samples[mode].append(a.lines / elapsed)
                e2e[mode].append(a.lines / wall)
        # The recorded cell is in the file, complete.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            nb = json.loads(http.get(srv.url("/files/bench.ipynb")).content)
            cell = nb["cells"][0]
            text = "".join(o["text"] if isinstance(o["text"], str) else "".join(o["text"])
                           for o in cell["outputs"] if o.get("name") == "stdout")
            if text.count("\n") >= a.lines:
                break
            time.sleep(0.5)
        med = {m: statistics.median(v) for m, v in samples.items()}
        med_e2e = {m: statistics.median(v) for m, v in e2e.items()}
        out["kernel_rate_lines_per_s"] = med
        out["end_to_end_lines_per_s"] = med_e2e
        out["ratio_kernel"] = med["recorded"] / med["unrecorded"]
        out["ratio_end_to_end"] = med_e2e["recorded"] / med_e2e["unrecorded"]
        out["recorded_lines_on_disk"] = text.count("\n")
        print("%d lines, %d runs each (median)" % (a.lines, a.runs))
        print("  kernel rate   unrecorded %10.0f lines/s   recorded %10.0f lines/s   ratio %.3f" % (
            med["unrecorded"], med["recorded"], out["ratio_kernel"]))
        print("  end to end    unrecorded %10.0f lines/s   recorded %10.0f lines/s   ratio %.3f" % (
            med_e2e["unrecorded"], med_e2e["recorded"], out["ratio_end_to_end"]))
        print("  lines of the recorded cell on disk: %d" % out["recorded_lines_on_disk"])

        c.close()
    finally:
        _stop_server(srv)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
