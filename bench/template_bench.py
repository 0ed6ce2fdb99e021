#!/usr/bin/python3
"""Instant runtimes benchmark (issue 17): Skylab with the runtime template
(kernels forked into their sandbox from a pre-imported interpreter), Skylab
with the instant pool as well (runtimes started for anyone, handed to the
user who connects), Skylab without either (today's path: Python exec'd in
the sandbox), and Jupyter Server, side by side in one run.

    /usr/bin/python3 bench/template_bench.py              # as root (~5 min)
    /usr/bin/python3 bench/template_bench.py --quick      # fewer samples, 10 runtimes
    /usr/bin/python3 bench/template_bench.py --json out.json

What is measured (see bench/README.md, "Template benchmark"):
  1. connect: POST /api/kernels -> websocket -> first kernel_info_reply, p50
     and p99 (no warm spare: warm_pool = 0).
  2. N runtimes of N different users, all connecting at the same moment: wall
     time until every one answered kernel_info (Jupyter Server: N kernels of
     its one user).
  3. the first cell `import torch, numpy, pandas, matplotlib.pyplot` in a new
     runtime: execute_request -> execute_reply, p50 (and the time the kernel
     itself measured for the imports).
  4. memory: the PSS (/proc/PID/smaps_rollup) summed over every process of
     the N idle runtimes of test 2 (Skylab: what runs in their cgroups:
     kernel, bubblewrap, holder, supervisor, pasta) plus the template, idle
     and after each ran the import cell of test 3; and of their kernels
     (Python processes) plus the template only.
"""

import argparse
import glob
import json
import os
import re
import sys
import threading
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kernel_bench as kb  # noqa: E402
from kernel_bench import KernelWS, log, pct  # noqa: E402
from runtime_bench import Skylab, stats  # noqa: E402

CONFIG = """
[runtimes]
sandbox = "auto"
warm_pool = 0
template = %s
instant = %d
[runtime_types.cpu]
memory = "4G"
"""

IMPORTS = ("import time as _t; _t0 = _t.perf_counter()\n"
           "import torch, numpy, pandas, matplotlib.pyplot\n"
           "print('IMPORT_S', _t.perf_counter() - _t0)")


def wait_template(srv, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = open(os.path.join(srv.dir, "server.log"), "rb").read().decode(errors="replace")
        if "runtime template: ready" in text:
            m = re.search(r"runtime template: ready \[[^\]]*\] pid (\d+), ([0-9.]+)s", text)
            return {"pid": int(m.group(1)), "import_s": float(m.group(2))} if m else {}
        if "runtime template: failed" in text or "runtime template: off" in text:
            raise RuntimeError("the template did not start:\n" + srv.log_tail())
        time.sleep(0.1)
    raise RuntimeError("no template within %d s" % timeout)


def instant_ready(srv):
    r = srv.http.get(srv.base + "/api/skylab/runtime_types", timeout=30)
    return sum(t.get("instant_ready", 0) for t in r.json()["types"] if t["name"] == "cpu")


def wait_instant(srv, n, timeout=600):
    """The instant pool's steady state: n runtimes ready for whoever connects (not timed)."""
    deadline = time.monotonic() + timeout
    while instant_ready(srv) < n:
        if time.monotonic() > deadline:
            raise RuntimeError("the instant pool did not reach %d in %d s:\n%s" % (n, timeout, srv.log_tail()))
        time.sleep(0.1)


def handed_over(srv):
    """How many connects were answered by a runtime started for anyone."""
    text = open(os.path.join(srv.dir, "server.log"), "rb").read().decode(errors="replace")
    return text.count("(started for anyone)")


def connect(srv, token=None):
    """Seconds from POST /api/kernels to the first kernel_info_reply; (seconds, id, client)."""
    if getattr(srv, "instant", 0):
        wait_instant(srv, 1)
    http = srv.http
    if token:
        http = requests.Session()
        http.headers["Authorization"] = "token " + token
    t0 = time.perf_counter()
    r = http.post(srv.base + "/api/kernels", json={"name": "python3"}, timeout=300)
    if r.status_code != 201:
        raise RuntimeError(f"POST /api/kernels -> {r.status_code} {r.text[:300]}")
    kid = r.json()["id"]
    c = KernelWS(srv.ws_base, token or srv.token, kid, timeout=300)
    c.kernel_info()
    return time.perf_counter() - t0, kid, c


def bench_connect(srv, n):
    times = []
    for _ in range(n):
        dt, kid, c = connect(srv)
        times.append(dt)
        c.close()
        srv.delete_kernel(kid)
    return stats(times)


TRACE_LINE = re.compile(r"skylab (sandbox-exec|template): [-+0-9.]+ ms (.*) \(at ([0-9.]+)\)")


def trace_of(srv, kid, since):
    """{step: ms after `since` (wall seconds)} from a traced kernel's log."""
    logs = glob.glob(os.path.join(srv.dir, "**", "kernel-%s.log" % kid), recursive=True)
    text = open(logs[0], errors="replace").read() if logs else ""
    return {"%s: %s" % (who, step): (float(at) - since) * 1e3
            for who, step, at in TRACE_LINE.findall(text)}


def bench_trace(srv, n):
    """Where a templated start's time goes (SKYLAB_TEMPLATE_TRACE=1): for each
    step the supervisor and the template log, ms after the POST (median of n)."""
    steps, total = {}, []
    for _ in range(n):
        t_post = time.time()
        dt, kid, c = connect(srv)
        total.append(dt * 1e3)
        c.close()
        for step, ms in trace_of(srv, kid, t_post).items():
            steps.setdefault(step, []).append(ms)
        srv.delete_kernel(kid)
    rows = sorted(((pct(v, 50), k) for k, v in steps.items()), key=lambda r: r[0])
    rows.append((pct(total, 50), "client: kernel_info_reply"))
    return [{"step": k, "ms_after_post_p50": round(ms, 1)} for ms, k in rows]


def bench_first_cell(srv, n):
    wall, inner = [], []
    for _ in range(n):
        _, kid, c = connect(srv)
        out = []
        t0 = time.perf_counter()
        c.run(IMPORTS, on_msg=lambda m: out.append(m), timeout=300)
        wall.append(time.perf_counter() - t0)
        text = "".join(m["content"].get("text", "") for m in out if m.get("msg_type", m.get("header", {}).get("msg_type")) == "stream")
        mm = re.search(r"IMPORT_S ([0-9.e-]+)", text)
        if mm:
            inner.append(float(mm.group(1)))
        c.close()
        srv.delete_kernel(kid)
    res = stats(wall)
    if inner:
        res["in_kernel_p50_ms"] = pct(inner, 50) * 1e3
    return res


def pss_kb(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def bench_many(srv, n, template_pid=0, traced=False):
    """n users connect at once; wall until all answered; PSS idle and after imports."""
    tokens = [None] * n
    if srv.kind == "skylab":
        tokens = [srv.user_token("bench%02d" % i) for i in range(n)]
    results = [None] * n
    errors = []

    retries = []

    def one(i):
        for attempt in range(2):
            try:
                results[i] = connect(srv, tokens[i])
                return
            except ConnectionError as e:  # a reset under load: once more, counted
                if attempt:
                    errors.append(repr(e))
                else:
                    retries.append(repr(e))
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
                return

    if getattr(srv, "instant", 0):
        wait_instant(srv, n)
    before = {p.pid for p in srv.descendants()}
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t_wall = time.time()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError("; ".join(errors[:3]))
    time.sleep(3)

    def runtime_pids(kernels_only=False):
        """Every process of the N runtimes plus the template; or their kernels only."""
        if srv.kind != "skylab":
            out = [p.pid for p in srv.descendants() if p.pid not in before]
        else:
            # What runs in the N runtimes' cgroups: kernel, bubblewrap, the
            # holder, the supervisor and pasta (which daemonizes: not a
            # descendant of the server), whenever they were started.
            pids = set()
            for _, kid, _ in results:
                for f in glob.glob("/sys/fs/cgroup/**/skylab-%s/cgroup.procs" % kid, recursive=True):
                    pids.update(int(x) for x in open(f).read().split())
            out = sorted(pids)
        if kernels_only:
            def is_python(pid):
                try:
                    return "python" in os.path.basename(os.readlink("/proc/%d/exe" % pid))
                except OSError:
                    return False
            out = [p for p in out if is_python(p)]
        if template_pid and template_pid not in out:
            out.append(template_pid)
        return out

    idle, idle_kernels = pss_kb(runtime_pids()), pss_kb(runtime_pids(True))
    for _, _, c in results:
        c.run(IMPORTS, timeout=600)
    time.sleep(2)
    procs = runtime_pids()
    after = pss_kb(procs)
    spread = {}
    if traced:  # when each start's steps happened, ms after the N POSTs: p50 and the last
        for _, kid, _ in results:
            for step, ms in trace_of(srv, kid, t_wall).items():
                spread.setdefault(step, []).append(ms)
        spread = {k: {"p50_ms": round(pct(v, 50), 1), "max_ms": round(max(v), 1)}
                  for k, v in sorted(spread.items(), key=lambda kv: pct(kv[1], 50))}
    for _, kid, c in results:
        c.close()
        srv.delete_kernel(kid)
    out = {"runtimes": n, "wall_s": wall, "each_p50_s": pct([r[0] for r in results], 50),
           "pss_idle_mib": idle / 1024, "pss_kernels_idle_mib": idle_kernels / 1024,
           "pss_after_imports_mib": after / 1024, "processes": len(procs),
           "retried_connects": len(retries)}
    if spread:
        out["trace"] = spread
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--starts", type=int, default=20, help="connects per variant (test 1)")
    ap.add_argument("--cells", type=int, default=5, help="first cells per variant (test 3)")
    ap.add_argument("--users", type=int, default=20, help="runtimes started at once (tests 2, 4)")
    ap.add_argument("--variants", default="jupyter,bare,template,instant")
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--skylab-bin", default=os.environ.get("SKYLAB_BIN", os.path.join(kb.REPO, "build", "skylab")))
    ap.add_argument("--jupyter-python", default="/usr/bin/python3")
    ap.add_argument("--jupyter-arg", action="append", default=[])
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--trace", type=int, default=0, metavar="N",
                    help="template: also N traced starts, where their time goes (ms after the POST)")
    args = ap.parse_args()
    if args.quick:
        args.starts, args.cells, args.users = 8, 3, 10
    res = {"machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg(), "root": os.geteuid() == 0}}
    for variant in args.variants.split(","):
        log(f"== {variant}")
        if variant == "jupyter":
            srv = kb.Server("jupyter", args)
        else:
            instant = args.users if variant == "instant" else 0
            srv = Skylab(args, CONFIG % ("false" if variant == "bare" else "true", instant))
            srv.instant = instant
        if variant == "template" and args.trace:
            os.environ["SKYLAB_TEMPLATE_TRACE"] = "1"  # the server's environment (copied at start)
        try:
            srv.start()
            tpl = wait_template(srv) if variant in ("template", "instant") else {}
            r = {"template": tpl}
            r["connect"] = bench_connect(srv, args.starts)
            log(f"  connect p50 {r['connect']['p50_ms']:.0f} ms")
            if variant == "template" and args.trace:
                r["trace"] = bench_trace(srv, args.trace)
                for row in r["trace"]:
                    log("  %8.1f ms  %s" % (row["ms_after_post_p50"], row["step"]))
            r["first_cell"] = bench_first_cell(srv, args.cells)
            log(f"  first cell p50 {r['first_cell']['p50_ms']:.0f} ms")
            traced = variant == "template" and args.trace > 0
            r["many"] = bench_many(srv, args.users, tpl.get("pid", 0), traced)
            log(f"  {args.users} at once {r['many']['wall_s']:.2f} s, PSS {r['many']['pss_idle_mib']:.0f} MiB"
                + (f" ({r['many']['retried_connects']} connects reset and retried)"
                   if r['many']['retried_connects'] else ""))
            if variant == "instant":
                r["handed_over"] = handed_over(srv)
                r["connects"] = args.starts + args.cells + args.users
                log(f"  {r['handed_over']} of {r['connects']} connects got a runtime started for anyone")
            for step, t in r["many"].get("trace", {}).items():
                log("  %8.1f ms p50, %8.1f ms last  %s" % (t["p50_ms"], t["max_ms"], step))
            res[variant] = r
        finally:
            srv.stop()
            os.environ.pop("SKYLAB_TEMPLATE_TRACE", None)
    print()
    print("%-28s %12s %12s %14s %16s %14s %16s %14s" % ("", "connect p50", "connect p99", "first cell p50",
                                                      "(in kernel)", "N at once", "PSS idle/after",
                                                      "kernels idle"))
    names = {"jupyter": "Jupyter Server", "bare": "Skylab, template off", "template": "Skylab, template on",
             "instant": "Skylab, instant pool"}
    for v in args.variants.split(","):
        if v not in res:
            continue
        r = res[v]
        print("%-28s %10.0f ms %10.0f ms %12.0f ms %13.0f ms %12.2f s %8.0f/%.0f MiB %10.0f MiB" % (
            names.get(v, v), r["connect"]["p50_ms"], r["connect"]["p99_ms"], r["first_cell"]["p50_ms"],
            r["first_cell"].get("in_kernel_p50_ms", float("nan")), r["many"]["wall_s"],
            r["many"]["pss_idle_mib"], r["many"]["pss_after_imports_mib"], r["many"]["pss_kernels_idle_mib"]))
    print("(N = %d runtimes of %d users; PSS summed over all their processes (Skylab: kernel, bubblewrap,"
          " holder, supervisor, pasta) and the template; 'kernels idle': the Python processes and the"
          " template only)" % (args.users, args.users))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
