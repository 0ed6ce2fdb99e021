#!/usr/bin/python3
"""Runtime benchmark: Skylab runtimes (sandboxed, cold and from the warm pool)
vs Jupyter Server starting a kernel.

    /usr/bin/python3 bench/runtime_bench.py                # everything (~10 min as root)
    /usr/bin/python3 bench/runtime_bench.py --quick        # fewer samples, 20 runtimes
    /usr/bin/python3 bench/runtime_bench.py --tests 1 --json out.json

What is measured (see bench/README.md, "Runtime benchmark"):
  1. connect: POST /api/kernels -> websocket -> first kernel_info_reply,
     p50/p99: Jupyter Server, Skylab cold (a sandbox and a kernel started
     for the request), Skylab warm (`warm_pool = 1`: a spare is claimed).
  2. server memory per idle runtime: server RSS delta / N with N runtimes
     started one after the other, each answering kernel_info (Skylab; Jupyter
     Server with fewer kernels beside it for the ratio).
  3. another user's API latency (GET /api/contents, /api/kernels) while a
     runtime with a 512 MiB limit allocates memory until it is killed,
     against the same requests with nothing running.
  4. start storm: another user's API latency while 10 users, each with a
     Drive of --drive-files files, connect a runtime at the same moment
     (Skylab); Jupyter Server starting 10 kernels at once beside the same
     requests is the reference.

Uses bench/kernel_bench.py's server and websocket client; everything binds
127.0.0.1 on free ports and is stopped at the end.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kernel_bench as kb  # noqa: E402
from kernel_bench import KernelWS, log, pct  # noqa: E402


class Skylab(kb.Server):
    """A Skylab server with a runtime configuration (TOML text)."""

    def __init__(self, args, config):
        super().__init__("skylab", args)
        self.config_path = os.path.join(self.dir, "skylab.toml")
        with open(self.config_path, "w") as f:
            f.write(config)
        args_copy = argparse.Namespace(**vars(args))
        self.args = args_copy
        self._config = config

    def start(self):
        # kernel_bench.Server builds the command; add --config through the binary path.
        wrapper = os.path.join(self.dir, "skylab-with-config")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec %s \"$@\" --config %s\n" % (self.args.skylab_bin, self.config_path))
        os.chmod(wrapper, 0o755)
        real = self.args.skylab_bin
        self.args.skylab_bin = wrapper
        try:
            return super().start()
        finally:
            self.args.skylab_bin = real

    def server_pid(self):
        # The wrapper execs the binary: same pid.
        return self.proc.pid

    def warm_ready(self, type_name="cpu"):
        types = self.http.get(self.base + "/api/skylab/runtime_types", timeout=30).json()["types"]
        return {t["name"]: t for t in types}[type_name].get("warm_ready", 0)

    def user_token(self, name):
        data = os.path.join(self.dir, "data")
        subprocess.run([self.args.skylab_bin, "user", "add", name, "--password-stdin", "--data-dir", data],
                       input=b"bench-password-1\n", check=True, capture_output=True)
        out = subprocess.run([self.args.skylab_bin, "user", "token", name, "--data-dir", data],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()


def connect_once(srv):
    """Seconds from POST /api/kernels to the first kernel_info_reply; the kernel id."""
    t0 = time.perf_counter()
    kid = srv.start_kernel()
    c = KernelWS(srv.ws_base, srv.token, kid)
    c.kernel_info()
    dt = time.perf_counter() - t0
    c.close()
    return dt, kid


def stats(samples):
    return {"p50_ms": pct(samples, 50) * 1e3, "p99_ms": pct(samples, 99) * 1e3, "n": len(samples),
            "all_ms": [round(s * 1e3, 1) for s in samples]}


def bench_connect_plain(srv, n):
    times = []
    for _ in range(n):
        dt, kid = connect_once(srv)
        times.append(dt)
        srv.delete_kernel(kid)
    return stats(times)


def bench_connect_warm(srv, n):
    # The first runtime of a user is cold; it makes the pool keep a spare for them.
    dt, first = connect_once(srv)
    times = []
    for _ in range(n):
        deadline = time.monotonic() + 120
        while srv.warm_ready() < 1:  # not timed: a user does not connect twice a second
            if time.monotonic() > deadline:
                raise RuntimeError("no warm spare within 120 s:\n" + srv.log_tail())
            time.sleep(0.1)
        t0 = time.perf_counter()
        kid = srv.start_kernel()
        c = KernelWS(srv.ws_base, srv.token, kid)
        c.kernel_info()
        times.append(time.perf_counter() - t0)
        c.close()
        model = srv.http.get(f"{srv.base}/api/skylab/runtimes/{kid}", timeout=30).json()
        if not model.get("warm"):
            raise RuntimeError("runtime was not served from the warm pool: %s" % model)
        srv.delete_kernel(kid)
    srv.delete_kernel(first)
    return stats(times)


def bench_memory(srv, n):
    srv.delete_all_kernels()
    time.sleep(2)
    before = srv.rss_kb()
    kids = []
    t0 = time.monotonic()
    for i in range(n):
        dt, kid = connect_once(srv)
        kids.append(kid)
        if (i + 1) % 10 == 0:
            log(f"  [{srv.kind}] {i + 1}/{n} runtimes up ({time.monotonic() - t0:.0f} s)")
    time.sleep(3)
    after = srv.rss_kb()
    kernels_rss = sum(p.memory_info().rss for p in srv.descendants() if kb._alive(p)) / 1024
    avail = kb.psutil.virtual_memory().available
    seconds = time.monotonic() - t0
    for kid in kids:
        srv.delete_kernel(kid)
    return {"runtimes": n, "server_rss_before_kb": before, "server_rss_after_kb": after,
            "per_runtime_kb": (after - before) / n, "descendants_rss_mb": kernels_rss / 1024,
            "host_available_after_mb": avail / 2 ** 20, "seconds_to_start_all": seconds}


def bench_hog(srv, seconds):
    """p50/p99 of another user's API requests, idle vs while a runtime is OOM-killed."""
    other = requests.Session()
    other.headers["Authorization"] = "token " + srv.user_token("bob")
    urls = [srv.base + "/api/contents", srv.base + "/api/kernels", srv.base + "/api/status"]

    def sample(duration):
        lat = []
        end = time.monotonic() + duration
        i = 0
        while time.monotonic() < end:
            t0 = time.perf_counter()
            r = other.get(urls[i % len(urls)], timeout=30)
            lat.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise RuntimeError(f"bob's request failed: {r.status_code} {r.text[:200]}")
            i += 1
            time.sleep(0.005)
        return lat

    kid = srv.start_kernel()
    c = KernelWS(srv.ws_base, srv.token, kid)
    c.kernel_info()
    base = sample(seconds)
    # The hog: touches memory 64 MiB at a time, forever; the cgroup limit kills it.
    hog = ("chunks = []\n"
           "while True:\n"
           "    b = bytearray(64 << 20)\n"
           "    b[::4096] = b'1' * len(b[::4096])\n"
           "    chunks.append(b)\n")
    died = {}

    def watch():
        t0 = time.monotonic()
        try:
            mid = c.execute(hog)
            while True:
                raw = c.ws.recv()
                if isinstance(raw, str) and '"dead"' in raw:
                    died["after_s"] = time.monotonic() - t0
                    died["reason"] = json.loads(raw)["content"].get("reason", "")
                    return
        except Exception as e:  # noqa: BLE001
            died["error"] = repr(e)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    during = sample(seconds)
    t.join(60)
    c.close()
    srv.delete_kernel(kid)
    return {"idle": {"p50_ms": pct(base, 50) * 1e3, "p99_ms": pct(base, 99) * 1e3, "n": len(base)},
            "hog": {"p50_ms": pct(during, 50) * 1e3, "p99_ms": pct(during, 99) * 1e3, "n": len(during)},
            "runtime_killed": died}


def sample_api(session, urls, stop, failures=None):
    """Latencies (s) of GETs cycling through `urls` until stop() is true;
    non-200 answers are appended to `failures` (raised when it is None)."""
    lat, i = [], 0
    while not stop():
        t0 = time.perf_counter()
        r = session.get(urls[i % len(urls)], timeout=60)
        lat.append(time.perf_counter() - t0)
        if r.status_code != 200:
            if failures is None:
                raise RuntimeError(f"request failed: {r.status_code} {r.text[:200]}")
            failures.append(f"{urls[i % len(urls)]} -> {r.status_code}")
        i += 1
        time.sleep(0.005)
    return lat


def fill_drive(root, n):
    """n small files in 100-file folders under root (created before the server uses them)."""
    for d in range((n + 99) // 100):
        sub = os.path.join(root, "data%04d" % d)
        os.makedirs(sub, exist_ok=True)
        for f in range(min(100, n - d * 100)):
            with open(os.path.join(sub, "f%03d.txt" % f), "w") as fh:
                fh.write("x")


def bench_storm(srv, users, drive_files):
    """Another user's API p50/p99 while `users` users connect a runtime at once."""
    observer = requests.Session()
    if srv.kind == "skylab":
        observer.headers["Authorization"] = "token " + srv.user_token("observer")
        urls = [srv.base + "/api/contents", srv.base + "/api/kernels", srv.base + "/api/status"]
        starters = []
        data = os.path.join(srv.dir, "data")
        t0 = time.monotonic()
        for u in range(users):
            name = "student%02d" % u
            tok = srv.user_token(name)
            fill_drive(os.path.join(data, "drive", name), drive_files)
            s = requests.Session()
            s.headers["Authorization"] = "token " + tok
            starters.append(s)
        log(f"  {users} users with {drive_files} Drive files each made in {time.monotonic() - t0:.0f} s")
    else:
        observer.headers["Authorization"] = f"token {srv.token}"
        urls = [srv.base + "/api/contents", srv.base + "/api/kernels", srv.base + "/api/status"]
        starters = [srv.http] * users
    idle = sample_api(observer, urls, (lambda end: (lambda: time.monotonic() > end))(time.monotonic() + 3))
    done, kids, errors = [], [], []

    def connect(s):
        try:
            t0 = time.perf_counter()
            r = s.post(srv.base + "/api/kernels", json={"name": kb.KERNEL}, timeout=300)
            if r.status_code != 201:
                raise RuntimeError(f"POST /api/kernels -> {r.status_code} {r.text[:200]}")
            kid = r.json()["id"]
            kids.append((s, kid))
            tok = s.headers["Authorization"].split()[1]
            c = KernelWS(srv.ws_base, tok, kid)
            c.kernel_info()
            c.close()
            done.append(time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    def storm():
        done.clear()
        kids.clear()
        threads = [threading.Thread(target=connect, args=(s,), daemon=True) for s in starters]
        for t in threads:
            t.start()
        failures = []
        during = sample_api(observer, urls, lambda: all(not t.is_alive() for t in threads), failures)
        for t in threads:
            t.join()
        for s, kid in kids:
            s.delete(f"{srv.base}/api/kernels/{kid}", timeout=60)
        return {"p50_ms": pct(during, 50) * 1e3, "p99_ms": pct(during, 99) * 1e3, "n": len(during),
                "connect_p50_ms": pct(done, 50) * 1e3 if done else None, "observer_failures": failures}

    # The first start of a user whose files predate their volume moves them
    # onto it (once); the second is every later day's start.
    first = storm()
    again = storm()
    return {"users": users, "drive_files": drive_files if srv.kind == "skylab" else 0,
            "idle": {"p50_ms": pct(idle, 50) * 1e3, "p99_ms": pct(idle, 99) * 1e3, "n": len(idle)},
            "storm": first, "storm_again": again, "errors": errors}


SANDBOX = """
[runtimes]
sandbox = "auto"
warm_pool = %d
[runtime_types.cpu]
memory = "%s"
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tests", default="1,2,3,4")
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--starts", type=int, default=20, help="connects per variant (test 1)")
    ap.add_argument("--runtimes", type=int, default=100, help="idle Skylab runtimes (test 2)")
    ap.add_argument("--jupyter-kernels", type=int, default=20, help="idle Jupyter kernels (test 2)")
    ap.add_argument("--hog-seconds", type=float, default=10.0)
    ap.add_argument("--storm-users", type=int, default=10, help="users connecting at once (test 4)")
    ap.add_argument("--drive-files", type=int, default=100000, help="files in each of their Drives (test 4)")
    ap.add_argument("--skylab-bin", default=os.environ.get("SKYLAB_BIN", os.path.join(kb.REPO, "build", "skylab")))
    ap.add_argument("--jupyter-python", default="/usr/bin/python3")
    ap.add_argument("--jupyter-arg", action="append", default=[])
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.starts, args.runtimes, args.jupyter_kernels, args.hog_seconds = 6, 20, 5, 5.0
        args.drive_files = 10000
    tests = {int(t) for t in args.tests.split(",") if t}
    res = {"machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg(), "root": os.geteuid() == 0}}
    servers = []

    def started(s):
        servers.append(s)
        return s.start()

    try:
        if 1 in tests:
            log("== 1. connect -> kernel_info_reply")
            j = started(kb.Server("jupyter", args))
            res["connect_jupyter"] = bench_connect_plain(j, args.starts)
            j.stop()
            cold = started(Skylab(args, SANDBOX % (0, "8G")))
            res["connect_skylab_cold"] = bench_connect_plain(cold, args.starts)
            cold.stop()
            warm = started(Skylab(args, SANDBOX % (1, "8G")))
            res["connect_skylab_warm"] = bench_connect_warm(warm, args.starts)
            warm.stop()
        if 2 in tests:
            log("== 2. server memory per idle runtime")
            s = started(Skylab(args, SANDBOX % (0, "1G")))
            res["memory_skylab"] = bench_memory(s, args.runtimes)
            s.stop()
            j = started(kb.Server("jupyter", args))
            res["memory_jupyter"] = bench_memory(j, args.jupyter_kernels)
            j.stop()
        if 3 in tests:
            log("== 3. another user's API latency while a runtime is OOM-killed")
            s = started(Skylab(args, SANDBOX % (0, "512M")))
            res["hog"] = bench_hog(s, args.hog_seconds)
            s.stop()
        if 4 in tests:
            log("== 4. another user's API latency while %d runtimes start at once" % args.storm_users)
            j = started(kb.Server("jupyter", args))
            res["storm_jupyter"] = bench_storm(j, args.storm_users, 0)
            j.stop()
            s = started(Skylab(args, SANDBOX % (0, "2G")))
            res["storm_skylab"] = bench_storm(s, args.storm_users, args.drive_files)
            s.stop()
    finally:
        for s in servers:
            try:
                s.stop()
            except Exception:  # noqa: BLE001
                pass

    print()
    print("Runtime benchmark (%d CPUs, load %.1f at start)" % (os.cpu_count(), res["machine"]["load_avg"][0]))
    if "connect_jupyter" in res:
        jp = res["connect_jupyter"]
        print("%-44s %10s %10s %12s" % ("connect -> kernel_info_reply", "p50 ms", "p99 ms", "p50 ratio"))
        for name, key in (("Jupyter Server (start a kernel)", "connect_jupyter"),
                          ("Skylab cold (sandbox + kernel)", "connect_skylab_cold"),
                          ("Skylab warm pool (claim a spare)", "connect_skylab_warm")):
            r = res[key]
            print("%-44s %10.1f %10.1f %11.3fx" % (name, r["p50_ms"], r["p99_ms"], r["p50_ms"] / jp["p50_ms"]))
    if "memory_skylab" in res:
        for key in ("memory_skylab", "memory_jupyter"):
            m = res[key]
            print("%-44s %6d runtimes: server +%.0f KiB each (RSS %.1f -> %.1f MiB); runtimes' own RSS %.0f MiB; %.0f s"
                  % (key.replace("memory_", "server memory, "), m["runtimes"], m["per_runtime_kb"],
                     m["server_rss_before_kb"] / 1024, m["server_rss_after_kb"] / 1024, m["descendants_rss_mb"],
                     m["seconds_to_start_all"]))
        print("  per-runtime server memory ratio Skylab/Jupyter: %.3f" %
              (res["memory_skylab"]["per_runtime_kb"] / max(1e-9, res["memory_jupyter"]["per_runtime_kb"])))
    if "hog" in res:
        h = res["hog"]
        print("another user's API requests: idle p50 %.1f / p99 %.1f ms; during the OOM kill p50 %.1f / p99 %.1f ms "
              "(p99 ratio %.2f); runtime killed: %s" % (h["idle"]["p50_ms"], h["idle"]["p99_ms"], h["hog"]["p50_ms"],
                                                       h["hog"]["p99_ms"], h["hog"]["p99_ms"] / h["idle"]["p99_ms"],
                                                       h["runtime_killed"]))
    for key, name in (("storm_jupyter", "Jupyter Server, kernels"), ("storm_skylab", "Skylab, runtimes")):
        if key in res:
            r = res[key]
            for when in ("storm", "storm_again"):
                w = r[when]
                print("start storm (%s: %d at once, %d Drive files each, %s): another user's API idle p99 %.1f ms, "
                      "during p50 %.1f / p99 %.1f ms; connect p50 %s ms; another user's failed requests %d"
                      % (name, r["users"], r["drive_files"], "first start" if when == "storm" else "again",
                         r["idle"]["p99_ms"], w["p50_ms"], w["p99_ms"],
                         "%.0f" % w["connect_p50_ms"] if w["connect_p50_ms"] else "-", len(w["observer_failures"])))
            print("  connect errors: %d" % len(r["errors"]))
    if "storm_skylab" in res and "storm_jupyter" in res:
        print("  storm p99 ratio Skylab/Jupyter: %.2f" %
              (res["storm_skylab"]["storm"]["p99_ms"] / max(1e-9, res["storm_jupyter"]["storm"]["p99_ms"])))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
