#!/usr/bin/python3
"""`skylab run` vs `jupyter nbconvert --to notebook --execute`, side by side.

Run with Debian's python (it has nbformat and nbconvert):

    /usr/bin/python3 bench/run_bench.py              # 5 rounds
    /usr/bin/python3 bench/run_bench.py --repeat 3 --json out.json

Two notebooks, generated into a temporary directory:
  tiny      N tiny cells (`xI = I * 2` then `xI`: one execute_result each);
            this is the per-cell and start/stop overhead case
  compute   a few cells that keep the CPU busy for seconds (pure Python
            loops, numpy matmul, sorting); here the kernel's work dominates

Each round runs every tool on every notebook once, in alternating order, and
the table shows the median wall time (process start to exit, including the
kernel's start and shutdown) and the ratio skylab/nbconvert, and the median
CPU time (user + system) of the tool and its kernel together, which a busy
machine disturbs less than wall time. Both tools use
the same python3 kernelspec, in the notebook's directory. The outputs of the
two tools are checked to have the same number of outputs per cell.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import nbformat

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = "/usr/bin/python3"


def make_notebooks(d, n_tiny):
    cells = [nbformat.v4.new_code_cell("x%d = %d * 2\nx%d" % (i, i, i)) for i in range(n_tiny)]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    tiny = os.path.join(d, "tiny.ipynb")
    nbformat.write(nb, tiny)

    compute_src = [
        "import numpy as np, time\nt0 = time.perf_counter()",
        "total = 0\nfor i in range(6_000_000):\n    total += i * i % 7\ntotal",
        "rng = np.random.default_rng(0)\na = rng.standard_normal((1500, 1500))\n"
        "for _ in range(4):\n    a = a @ a\n    a /= np.abs(a).max()\nfloat(a.sum().round(3))",
        "words = [str(i * 7919 % 100003) for i in range(1_500_000)]\nwords.sort()\nwords[:3]",
        "print('kernel-side seconds: %.2f' % (time.perf_counter() - t0))",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in compute_src])
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    compute = os.path.join(d, "compute.ipynb")
    nbformat.write(nb, compute)
    return {"tiny": tiny, "compute": compute}


def run_skylab(binary, nb, out):
    return [binary, "run", "--quiet", nb, "-o", out]


def run_nbconvert(nb, out):
    return [PYTHON, "-m", "nbconvert", "--to", "notebook", "--execute", "--log-level=ERROR",
            "--output", os.path.basename(out), "--output-dir", os.path.dirname(out), nb]


def timed(argv, cwd):
    """(wall seconds, CPU seconds of the tool and its kernel: user + system)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    dt = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s" % (argv[0], r.returncode, r.stderr[-2000:]))
    return dt, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def output_shape(path):
    with open(path) as f:
        nb = json.load(f)
    return [len(c.get("outputs", [])) for c in nb["cells"]]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="rounds (median is reported)")
    ap.add_argument("--cells", type=int, default=200, help="cells in the tiny notebook")
    ap.add_argument("--skylab-bin", default=os.environ.get("SKYLAB_BIN", os.path.join(REPO, "build", "skylab")))
    ap.add_argument("--json", help="write every sample here")
    args = ap.parse_args()

    d = tempfile.mkdtemp(prefix="skylab-run-bench-")
    try:
        nbs = make_notebooks(d, args.cells)
        tools = {
            "skylab": lambda nb, out: run_skylab(args.skylab_bin, nb, out),
            "nbconvert": run_nbconvert,
        }
        samples = {name: {t: [] for t in tools} for name in nbs}
        cpu = {name: {t: [] for t in tools} for name in nbs}
        for rnd in range(args.repeat):
            order = list(tools) if rnd % 2 == 0 else list(reversed(tools))
            for name, nb in nbs.items():
                for tool in order:
                    out = os.path.join(d, "%s.%s.ipynb" % (name, tool))
                    wall, used = timed(tools[tool](nb, out), d)
                    samples[name][tool].append(wall)
                    cpu[name][tool].append(used)
            print("round %d/%d done" % (rnd + 1, args.repeat), file=sys.stderr)
        for name in nbs:
            a = output_shape(os.path.join(d, name + ".skylab.ipynb"))
            b = output_shape(os.path.join(d, name + ".nbconvert.ipynb"))
            if a != b:
                raise RuntimeError("%s: outputs per cell differ: %s vs %s" % (name, a, b))

        load = os.getloadavg()
        print()
        print("skylab run vs nbconvert --execute; median of %d rounds; %d CPUs, load %.1f %.1f %.1f"
              % (args.repeat, os.cpu_count(), *load))
        head = "%-22s %10s %12s %7s   %10s %12s %7s" % (
            "notebook", "skylab s", "nbconvert s", "ratio", "skylab CPU", "nbconvert CPU", "ratio")
        print(head)
        print("-" * len(head))
        result = {}
        for name in nbs:
            s = statistics.median(samples[name]["skylab"])
            n = statistics.median(samples[name]["nbconvert"])
            cs = statistics.median(cpu[name]["skylab"])
            cn = statistics.median(cpu[name]["nbconvert"])
            label = "tiny (%d cells)" % args.cells if name == "tiny" else "compute-bound"
            print("%-22s %10.2f %12.2f %7.2f   %10.2f %12.2f %7.2f" % (label, s, n, s / n, cs, cn, cs / cn))
            result[name] = {"skylab_s": s, "nbconvert_s": n, "ratio": s / n,
                            "skylab_cpu_s": cs, "nbconvert_cpu_s": cn, "cpu_ratio": cs / cn,
                            "samples": samples[name], "cpu_samples": cpu[name]}
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"repeat": args.repeat, "cells": args.cells, "cpus": os.cpu_count(),
                           "loadavg": load, "results": result}, f, indent=2)
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
