#!/usr/bin/python3
"""Slurm backend at scale, on the one-node test cluster (2 CPUs): N runtimes
of a 1-CPU Slurm type are requested at once (so all but two wait in Slurm's
queue), then the running ones are deleted round by round.

    /usr/bin/python3 bench/slurm_bench.py                 # 100 runtimes, 5 start rounds
    /usr/bin/python3 bench/slurm_bench.py --runtimes 20 --rounds 2 --json out.json

Measured:
  1. submission: seconds from the first POST until squeue lists all N jobs
     (skylab-<id>), and the POSTs' own answer time (202 at once);
  2. memory per remote runtime: (server RSS + every `skylab slurm-link` RSS)
     with N runtimes, minus the server's RSS before, divided by N;
  3. time to first kernel_info once a job starts: from the moment the job's
     output file appears (slurmstepd creates it when the batch step starts;
     polled every 20 ms) until the runtime's REST state is idle (the
     server's kernel_info answered through the agent), for the jobs that
     start in each round.
Needs root, slurm-wlm, munge and bubblewrap (as tests/integration/test_slurm.py).
"""
import argparse
import concurrent.futures
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
os.environ.setdefault("SKYLAB_BIN", str(REPO / "build" / "skylab"))

import slurm_cluster  # noqa: E402
from conftest import Server, _stop_server  # noqa: E402


def rss_kb(pid):
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def private_kb(pid):
    """Unique set size: what the process alone costs (the binary's shared pages are not counted)."""
    kb = 0
    try:
        for line in open("/proc/%d/smaps_rollup" % pid):
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                kb += int(line.split()[1])
    except OSError:
        pass
    return kb


def link_pids(data_dir):
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            cmd = open("/proc/%s/cmdline" % p, "rb").read().split(b"\0")
        except OSError:
            continue
        if len(cmd) > 3 and cmd[1] == b"slurm-link" and data_dir.encode() in cmd[3]:
            pids.append(int(p))
    return pids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtimes", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    why = slurm_cluster.missing_reason()
    if why:
        sys.exit("cannot run: " + why)
    cluster = slurm_cluster.SlurmCluster().start()
    tmp = tempfile.mkdtemp(prefix="skylab-slurm-bench-")
    cfg = pathlib.Path(tmp) / "skylab.toml"
    cfg.write_text("""
[runtimes]
sandbox = "bwrap"
[runtime_types.cluster]
backend = "slurm"
cpus = 1
memory = "500M"
max_lifetime = "1h"
[slurm]
conf = "%s"
listen_host = "127.0.0.1"
""" % cluster.conf)
    srv = Server(extra_args=("--config", str(cfg)))
    res = {"runtimes": args.runtimes}
    try:
        base_rss = rss_kb(srv.proc.pid)
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            replies = list(pool.map(lambda _: srv.post("/api/skylab/runtimes", json={"type": "cluster"}),
                                    range(args.runtimes)))
        t_posts = time.monotonic() - t0
        assert all(r.status_code == 202 for r in replies), [r.text for r in replies if r.status_code != 202][:3]
        ids = [r.json()["id"] for r in replies]
        srv.kernels.extend(ids)
        names = {"skylab-" + i: i for i in ids}
        while True:
            out = cluster.run("squeue", "-h", "-o", "%j").stdout.split()
            if sum(1 for n in out if n in names) == len(ids):
                break
            if time.monotonic() - t0 > 600:
                raise SystemExit("not all jobs were submitted in 600 s")
            time.sleep(0.1)
        t_all = time.monotonic() - t0
        res["posts_answered_s"] = round(t_posts, 3)
        res["all_jobs_in_squeue_s"] = round(t_all, 3)
        res["submissions_per_s"] = round(len(ids) / t_all, 1)
        time.sleep(3)  # let the first jobs' kernels start
        links = link_pids(srv.data_dir)
        total = rss_kb(srv.proc.pid) + sum(rss_kb(p) for p in links)
        res["links"] = len(links)
        res["server_rss_before_kb"] = base_rss
        res["server_rss_now_kb"] = rss_kb(srv.proc.pid)
        res["link_rss_kb_median"] = statistics.median([rss_kb(p) for p in links]) if links else 0
        res["link_private_kb_median"] = statistics.median([private_kb(p) for p in links]) if links else 0
        res["kb_per_remote_runtime_rss"] = round((total - base_rss) / len(ids), 1)
        res["kb_per_remote_runtime_private"] = round(
            (rss_kb(srv.proc.pid) - base_rss + sum(private_kb(p) for p in links)) / len(ids), 1)

        # Time to first kernel_info once a job starts, round by round.
        waits = []
        live = set(ids)
        # Jobs that started before the first round was watched are not measured: they end first.
        early = [rid for rid in ids if os.path.exists(os.path.join(srv.data_dir, "slurm", "jobs", rid, "job.log"))]
        for rid in early:
            srv.delete("/api/skylab/runtimes/" + rid)
            live.discard(rid)
            srv.kernels.remove(rid)
        for _ in range(args.rounds):
            seen_running, ready = {}, {}
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                now = time.monotonic()
                for rid in live:
                    if rid not in seen_running and os.path.exists(
                            os.path.join(srv.data_dir, "slurm", "jobs", rid, "job.log")):
                        seen_running[rid] = now
                for rid in list(seen_running):
                    if rid in ready:
                        continue
                    r = srv.get("/api/skylab/runtimes/" + rid)
                    if r.status_code == 200 and r.json().get("state") in ("idle", "busy"):
                        ready[rid] = time.monotonic()
                if seen_running and len(ready) == len(seen_running):
                    break
                time.sleep(0.02)
            for rid, t in ready.items():
                waits.append(t - seen_running[rid])
            for rid in ready:
                srv.delete("/api/skylab/runtimes/" + rid)
                live.discard(rid)
                srv.kernels.remove(rid)
        res["kernel_info_after_start_s"] = {
            "n": len(waits),
            "median": round(statistics.median(waits), 3) if waits else None,
            "max": round(max(waits), 3) if waits else None,
        }
    finally:
        for rid in list(srv.kernels):
            try:
                srv.delete("/api/skylab/runtimes/" + rid, timeout=30)
            except Exception:
                pass
        srv.kernels.clear()
        _stop_server(srv)
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(res, indent=2))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
