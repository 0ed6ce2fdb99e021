#!/usr/bin/python3
"""Kernel benchmark: Skylab vs Jupyter Server (and raw ZeroMQ as the floor).

Run with Debian's python (it has jupyter_client, ipykernel, jupyter_server,
websocket-client, requests, psutil):

    /usr/bin/python3 bench/kernel_bench.py                 # both servers, full
    /usr/bin/python3 bench/kernel_bench.py --quick         # fewer iterations
    /usr/bin/python3 bench/kernel_bench.py --only jupyter --quick --json out.json

What is measured (see bench/README.md):
  1. kernel start: POST /api/kernels -> first kernel_info_reply over the websocket
  2. execute round trip of `1+1` over the websocket (execute_reply + iopub idle)
  3. stream output throughput of one cell printing N MB
  4. server RSS (server process only) with 20 idle kernels
  5. 50 concurrent websocket clients over 5 kernels executing `1+1` in a loop

Both servers are driven through the same client code (websocket-client, the
legacy JSON framing that both servers speak). Everything binds 127.0.0.1 on
free ports and everything started is stopped at the end.
"""

import argparse
import json
import math
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone

import psutil
import requests
import websocket

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNEL = "python3"


# --------------------------------------------------------------------------- utils

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    v = sorted(values)
    k = max(0, min(len(v) - 1, math.ceil(p / 100.0 * len(v)) - 1))
    return v[k]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def cpu_seconds(proc):
    try:
        t = proc.cpu_times()
        return t.user + t.system
    except psutil.Error:
        return 0.0


# --------------------------------------------------------------------------- servers

class Server:
    """A Skylab or Jupyter Server process on a free port with a temp data dir."""

    def __init__(self, kind, args):
        self.kind = kind
        self.args = args
        self.port = free_port()
        self.token = uuid.uuid4().hex
        self.dir = tempfile.mkdtemp(prefix=f"skylab-bench-{kind}-")
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_base = f"ws://127.0.0.1:{self.port}"
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {self.token}"
        self.proc = None
        self.logf = None

    def start(self):
        env = dict(os.environ)
        if self.kind == "skylab":
            cmd = [self.args.skylab_bin, "serve", "--host", "127.0.0.1",
                   "--port", str(self.port), "--data-dir", os.path.join(self.dir, "data")]
            env["SKYLAB_ADMIN_TOKEN"] = self.token
        else:
            cmd = [self.args.jupyter_python, "-m", "jupyter_server",
                   f"--ServerApp.token={self.token}", f"--ServerApp.port={self.port}",
                   "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
                   "--ServerApp.open_browser=False", f"--ServerApp.root_dir={self.dir}"]
            if os.geteuid() == 0:
                cmd.append("--allow-root")
            cmd += self.args.jupyter_arg
            env["JUPYTER_CONFIG_DIR"] = os.path.join(self.dir, ".jupyter-config")
            env["JUPYTER_RUNTIME_DIR"] = os.path.join(self.dir, ".jupyter-runtime")
        self.logf = open(os.path.join(self.dir, "server.log"), "wb")
        # Own session/process group: stop() can sweep kernels left behind.
        self.proc = subprocess.Popen(cmd, env=env, cwd=self.dir, stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited during start-up:\n{self.log_tail()}")
            try:
                if self.http.get(self.base + "/api", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} did not answer GET /api in 60 s:\n{self.log_tail()}")
            time.sleep(0.1)
        self.ps = psutil.Process(self.proc.pid)
        log(f"[{self.kind}] up on {self.base} (pid {self.proc.pid})")
        return self

    def log_tail(self, n=3000):
        try:
            with open(os.path.join(self.dir, "server.log"), "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def descendants(self):
        try:
            return self.ps.children(recursive=True)
        except psutil.Error:
            return []

    # REST
    def start_kernel(self):
        r = self.http.post(self.base + "/api/kernels", json={"name": KERNEL}, timeout=120)
        if r.status_code != 201:
            raise RuntimeError(f"POST /api/kernels -> {r.status_code} {r.text[:300]}")
        return r.json()["id"]

    def delete_kernel(self, kid):
        try:
            self.http.delete(f"{self.base}/api/kernels/{kid}", timeout=60)
        except requests.RequestException:
            pass

    def delete_all_kernels(self):
        try:
            for k in self.http.get(self.base + "/api/kernels", timeout=30).json():
                self.delete_kernel(k["id"])
        except (requests.RequestException, ValueError):
            pass

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.delete_all_kernels()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers in its group
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None
        if self.logf:
            self.logf.close()
        if not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        log(f"[{self.kind}] stopped")


# --------------------------------------------------------------------------- ws client

QUICKACK = False  # --client-quickack
MSG_TIMEOUT = 60  # seconds for every awaited reply


class Lost(Exception):
    """An awaited reply or iopub message did not arrive."""


class KernelWS:
    """One websocket client of a kernel, legacy JSON framing."""

    def __init__(self, ws_base, token, kid, timeout=120, quickack=None):
        self.quickack = QUICKACK if quickack is None else quickack
        self.session = uuid.uuid4().hex
        url = f"{ws_base}/api/kernels/{kid}/channels?session_id={self.session}&token={token}"
        self.ws = websocket.create_connection(
            url, timeout=timeout, skip_utf8_validation=True, enable_multithread=False,
            header=[f"Authorization: token {token}"])

    def send(self, msg_type, content, channel="shell"):
        mid = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": mid, "msg_type": msg_type, "username": "bench",
                       "session": self.session, "version": "5.3",
                       "date": datetime.now(timezone.utc).isoformat()},
            "parent_header": {}, "metadata": {}, "content": content,
            "channel": channel, "buffers": []}))
        return mid

    def execute(self, code):
        return self.send("execute_request", {
            "code": code, "silent": False, "store_history": True,
            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})

    def wait(self, mid, want_reply, want_idle=True, on_msg=None, timeout=MSG_TIMEOUT):
        """Reads frames until the reply of type want_reply (and iopub idle) to mid.
        Frames that do not mention mid (other clients' traffic) are not parsed.
        Raises Lost when they are not all there within timeout seconds."""
        reply = None
        idle = not want_idle
        deadline = time.monotonic() + timeout
        while reply is None or not idle:
            if self.quickack:  # ACK at once: hides a server's Nagle delays
                self.ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            left = deadline - time.monotonic()
            if left <= 0:
                raise Lost(f"{want_reply} {'received' if reply else 'MISSING'}, iopub idle "
                           f"{'received' if idle else 'MISSING'} after {timeout} s")
            self.ws.settimeout(left)
            try:
                raw = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            if isinstance(raw, bytes):
                continue  # binary frames (buffers) are not used here
            if mid not in raw:
                continue
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != mid:
                continue
            mt = msg["header"]["msg_type"]
            if mt == want_reply:
                reply = msg
            elif mt == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
            if on_msg:
                on_msg(msg)
        return reply

    def kernel_info(self):
        return self.wait(self.send("kernel_info_request", {}), "kernel_info_reply", want_idle=False)

    def run(self, code, on_msg=None, timeout=MSG_TIMEOUT):
        return self.wait(self.execute(code), "execute_reply", on_msg=on_msg, timeout=timeout)

    def settle(self, tries=10):
        """kernel_info, then `pass` until one execute gets both its reply and its
        iopub idle. Returns how many executes lost their iopub messages first
        (0 on a server that only opens the websocket once iopub is flowing)."""
        self.kernel_info()
        for lost in range(tries):
            try:
                self.run("pass", timeout=5)
                return lost
            except Lost as e:
                log(f"  (execute on a fresh connection lost messages: {e})")
        raise Lost(f"{tries} executes in a row lost their iopub messages")

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


# --------------------------------------------------------------------------- floor

class ZmqKernel:
    """A kernel driven straight over ZeroMQ by jupyter_client (no server)."""

    def __init__(self):
        from jupyter_client.manager import KernelManager
        self.km = KernelManager(kernel_name=KERNEL)
        self.km.start_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code, on_msg=None):
        mid = self.kc.execute(code)
        reply = None
        idle = False
        while reply is None or not idle:
            if reply is None:
                m = self.kc.get_shell_msg(timeout=120)
                if m["parent_header"].get("msg_id") == mid and m["msg_type"] == "execute_reply":
                    reply = m
                continue
            m = self.kc.get_iopub_msg(timeout=120)
            if m["parent_header"].get("msg_id") != mid:
                continue
            if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                idle = True
            if on_msg:
                on_msg(m)
        return reply

    def close(self):
        try:
            self.kc.stop_channels()
            self.km.shutdown_kernel(now=True)
        except Exception:
            pass


def zmq_kernel_start_once():
    from jupyter_client.manager import KernelManager
    km = KernelManager(kernel_name=KERNEL)
    t0 = time.perf_counter()
    km.start_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kc = km.client()
    kc.start_channels()
    try:
        mid = kc.kernel_info()
        while True:
            m = kc.get_shell_msg(timeout=60)
            if m["parent_header"].get("msg_id") == mid:
                return time.perf_counter() - t0
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# --------------------------------------------------------------------------- tests

def bench_start(srv, n):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        kid = srv.start_kernel()
        c = KernelWS(srv.ws_base, srv.token, kid)
        c.kernel_info()
        times.append(time.perf_counter() - t0)
        c.close()
        srv.delete_kernel(kid)
    return {"median_ms": statistics.median(times) * 1e3, "all_ms": [t * 1e3 for t in times]}


def latency_stats(lat):
    return {"p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3,
            "mean_ms": statistics.fmean(lat) * 1e3, "n": len(lat)}


def bench_execute(run, n, warm):
    for _ in range(warm):
        run("1+1")
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = run("1+1")
        lat.append(time.perf_counter() - t0)
        if r["content"]["status"] != "ok":
            raise RuntimeError(f"1+1 failed: {r['content']}")
    return latency_stats(lat)


def output_code(mb):
    return ("import sys\n"
            f"for _ in range({mb}):\n"
            "    sys.stdout.write('x' * (1 << 20))\n"
            "    sys.stdout.flush()\n")


def bench_output(run, mb, reps):
    results = []
    for _ in range(reps):
        got = {"stdout": 0, "msgs": 0, "stderr": ""}

        def on_msg(m):
            if m["header"]["msg_type"] == "stream":
                if m["content"]["name"] == "stdout":
                    got["stdout"] += len(m["content"]["text"])
                    got["msgs"] += 1
                else:
                    got["stderr"] += m["content"]["text"]

        t0 = time.perf_counter()
        run(output_code(mb), on_msg=on_msg)
        dt = time.perf_counter() - t0
        results.append({"seconds": dt, "bytes": got["stdout"], "messages": got["msgs"],
                        "mb_per_s": got["stdout"] / dt / 1e6,
                        "rate_limited": "rate exceeded" in got["stderr"]})
    best = max(results, key=lambda r: r["mb_per_s"])
    return {"mb_per_s": best["mb_per_s"], "bytes": best["bytes"], "sent_bytes": mb << 20,
            "seconds": best["seconds"], "messages": best["messages"],
            "rate_limited": best["rate_limited"], "runs": results}


def bench_rss(srv, nk):
    srv.delete_all_kernels()
    time.sleep(1)
    before = srv.rss_kb()
    kids = [srv.start_kernel() for _ in range(nk)]
    for kid in kids:  # every kernel really up and answering
        c = KernelWS(srv.ws_base, srv.token, kid)
        c.kernel_info()
        c.close()
    time.sleep(3)
    after = srv.rss_kb()
    kernels_rss = sum(p.memory_info().rss for p in srv.descendants()
                      if _alive(p)) / 1024
    for kid in kids:
        srv.delete_kernel(kid)
    return {"rss_mb": after / 1024, "rss_no_kernels_mb": before / 1024,
            "kernels": nk, "descendants_rss_mb": kernels_rss / 1024}


def _alive(p):
    try:
        return p.is_running()
    except psutil.Error:
        return False


def _load_worker(ws_base, token, assignments, start_at, duration, q, quickack):
    """One load-generator process: a thread per websocket client."""
    global QUICKACK
    QUICKACK = quickack
    lats = [[] for _ in assignments]
    errors = []
    clients = []
    try:
        for kid in assignments:
            clients.append(KernelWS(ws_base, token, kid, timeout=60))
    except Exception as e:  # noqa: BLE001
        q.put({"error": f"connect: {e!r}"})
        return
    stop_at = start_at + duration

    def loop(i):
        c = clients[i]
        try:
            while time.time() < start_at:
                time.sleep(0.001)
            while time.time() < stop_at:
                t0 = time.perf_counter()
                r = c.run("1+1")
                lats[i].append((time.time(), time.perf_counter() - t0))
                if r["content"]["status"] != "ok":
                    errors.append(str(r["content"])[:200])
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e)[:200])

    while time.time() < start_at - 0.5:
        time.sleep(0.01)
    cpu0 = sum(os.times()[:2])
    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 120)
    cpu1 = sum(os.times()[:2])
    for c in clients:
        c.close()
    q.put({"lats": [x for l in lats for x in l], "errors": errors, "cpu": cpu1 - cpu0,
           "per_client": [len(l) for l in lats],
           "end": time.time()})


def bench_concurrent(srv, n_clients, n_kernels, duration, n_procs):
    kids = [srv.start_kernel() for _ in range(n_kernels)]
    try:
        lost = 0
        for kid in kids:  # warm each kernel
            c = KernelWS(srv.ws_base, srv.token, kid)
            lost += c.settle()
            for _ in range(5):
                c.run("1+1")
            c.close()
        per_proc = [[] for _ in range(n_procs)]
        for i in range(n_clients):
            per_proc[i % n_procs].append(kids[i % n_kernels])
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        start_at = time.time() + 3.0 + 0.1 * n_clients  # time for every client to connect
        procs = [ctx.Process(target=_load_worker,
                             args=(srv.ws_base, srv.token, a, start_at, duration, q, QUICKACK))
                 for a in per_proc if a]
        for p in procs:
            p.start()
        # CPU accounting over the measured window
        while time.time() < start_at:
            time.sleep(0.01)
        kern = {p.pid: p for p in srv.descendants()}
        s0 = cpu_seconds(srv.ps)
        k0 = {pid: cpu_seconds(p) for pid, p in kern.items()}
        time.sleep(duration)
        s1 = cpu_seconds(srv.ps)
        k1 = {pid: cpu_seconds(p) for pid, p in kern.items()}
        outs = [q.get(timeout=duration + 180) for _ in procs]
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    finally:
        for kid in kids:
            srv.delete_kernel(kid)
    errs = [o["error"] for o in outs if "error" in o]
    if errs:
        raise RuntimeError("; ".join(errs))
    done = [x for o in outs for x in o["lats"]]
    errors = [e for o in outs for e in o["errors"]]
    # Throughput: executes completed inside the window; latency: all of them.
    in_window = sum(1 for end, _ in done if end <= start_at + duration)
    lats = [lat for _, lat in done]
    res = {"executes_per_s": in_window / duration, "executes": len(lats), "seconds": duration,
           "clients": n_clients, "kernels": n_kernels, "client_procs": len(procs),
           "fresh_connection_lost_executes": lost,
           "per_client_executes": sorted(n for o in outs for n in o["per_client"]),
           "errors": len(errors), "error_sample": errors[:3],
           "cpu_s": {"server": s1 - s0,
                     "kernels": sum(k1[p] - k0.get(p, k1[p]) for p in k1),
                     "load_generator": sum(o["cpu"] for o in outs),
                     "available": duration * (os.cpu_count() or 1)}}
    if lats:
        res.update(latency_stats(lats))
    return res


# --------------------------------------------------------------------------- main

def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def print_table(results, servers):
    rows = [
        # label, test, key, format, floor available?
        ("1 kernel start, median (ms)", "start", "median_ms", ".0f"),
        ("2 execute 1+1, p50 (ms)", "execute", "p50_ms", ".2f"),
        ("2 execute 1+1, p99 (ms)", "execute", "p99_ms", ".2f"),
        ("3 output throughput (MB/s)", "output", "mb_per_s", ".1f"),
        ("3 stdout bytes received (MB)", "output", "received_mb", ".1f"),
        ("4 server RSS, no kernels (MB)", "rss", "rss_no_kernels_mb", ".1f"),
        ("4 server RSS, N idle kernels (MB)", "rss", "rss_mb", ".1f"),
        ("5 concurrent executes/s", "concurrent", "executes_per_s", ".0f"),
        ("5 concurrent p50 (ms)", "concurrent", "p50_ms", ".1f"),
        ("5 concurrent p99 (ms)", "concurrent", "p99_ms", ".1f"),
    ]
    for srv in list(servers) + ["zmq"]:
        o = results.get(srv, {}).get("output")
        if o and "bytes" in o:
            o["received_mb"] = o["bytes"] / (1 << 20)

    def cell(who, test, key, spec):
        d = results.get(who, {}).get(test, {})
        if "error" in d:
            return "ERR"
        return fmt(d.get(key), spec)
    cols = [s for s in ("skylab", "jupyter") if s in servers]
    head = f"{'metric':36s}" + "".join(f"{c:>12s}" for c in cols)
    if len(cols) == 2:
        head += f"{'sky/jup':>10s}"
    head += f"{'zmq floor':>12s}"
    print()
    print(head)
    print("-" * len(head))
    for label, test, key, spec in rows:
        vals = [results.get(c, {}).get(test, {}).get(key) for c in cols]
        line = f"{label:36s}" + "".join(f"{cell(c, test, key, spec):>12s}" for c in cols)
        if len(cols) == 2:
            a, b = vals
            ratio = format(a / b, ".2f") if a is not None and b else "-"
            line += f"{ratio:>10s}"
        line += f"{cell('zmq', test, key, spec):>12s}"
        print(line)
    print()
    for c in cols:
        r = {t: v for t, v in results.get(c, {}).items() if not (isinstance(v, dict) and "error" in v)}
        if "output" in r:
            o = r["output"]
            print(f"[{c}] output: {o['bytes']} of {o['sent_bytes']} stdout bytes arrived in "
                  f"{o['seconds']:.2f} s, {o['messages']} messages"
                  + (" (IOPub data rate limit hit)" if o["rate_limited"] else ""))
        if "rss" in r:
            print(f"[{c}] RSS with {r['rss']['kernels']} kernels; kernels themselves "
                  f"(server's descendants) {r['rss']['descendants_rss_mb']:.0f} MB")
        if "concurrent" in r:
            cc = r["concurrent"]
            cpu = cc["cpu_s"]
            pc = cc["per_client_executes"] or [0]
            print(f"[{c}] concurrent: {cc['clients']} clients/{cc['kernels']} kernels, "
                  f"{cc['executes']} executes in {cc['seconds']:.1f} s, {cc['errors']} errors, "
                  f"per client min/median/max {min(pc)}/{statistics.median(pc):.0f}/{max(pc)}; "
                  f"CPU s: server {cpu['server']:.1f}, kernels {cpu['kernels']:.1f}, "
                  f"load generator {cpu['load_generator']:.1f} of {cpu['available']:.0f} available")
    for c in cols:
        lost = results.get(c, {}).get("fresh_connection_lost_executes")
        lost5 = results.get(c, {}).get("concurrent", {}).get("fresh_connection_lost_executes")
        if lost or lost5:
            print(f"[{c}] executes that lost their iopub messages on a fresh websocket "
                  f"(before the first complete one): {lost or 0} (test 2/3), {lost5 or 0} (test 5)")
    if "output" in results.get("zmq", {}) and "bytes" in results["zmq"]["output"]:
        o = results["zmq"]["output"]
        print(f"[zmq] output: {o['bytes']} of {o['sent_bytes']} bytes in {o['seconds']:.2f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["skylab", "jupyter"])
    ap.add_argument("--quick", action="store_true", help="fewer iterations, shorter load")
    ap.add_argument("--json", metavar="OUT", help="write all results as JSON")
    ap.add_argument("--skylab-bin", default=os.environ.get("SKYLAB_BIN",
                                                          os.path.join(REPO, "build", "skylab")))
    ap.add_argument("--jupyter-python", default="/usr/bin/python3")
    ap.add_argument("--jupyter-arg", action="append", default=[],
                    help="extra Jupyter Server option, e.g. "
                         "--jupyter-arg=--ServerApp.iopub_data_rate_limit=0")
    ap.add_argument("--no-floor", action="store_true", help="skip the jupyter_client floor")
    ap.add_argument("--tests", default="1,2,3,4,5", help="comma list of tests to run")
    ap.add_argument("--output-mb", type=int, default=50)
    ap.add_argument("--idle-kernels", type=int, default=20)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--load-kernels", type=int, default=5)
    ap.add_argument("--load-seconds", type=float, default=10.0)
    ap.add_argument("--load-procs", type=int, default=max(2, os.cpu_count() or 1),
                    help="load-generator processes (threads split across them)")
    ap.add_argument("--client-quickack", action="store_true",
                    help="set TCP_QUICKACK before every websocket read (diagnostic: removes "
                         "the Nagle/delayed-ACK stalls of servers without TCP_NODELAY)")
    ap.add_argument("--keep", action="store_true", help="keep server temp dirs (logs)")
    args = ap.parse_args()
    global QUICKACK
    QUICKACK = args.client_quickack
    # Quiet debugpy's start-up note in every kernel (same for all servers).
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")

    tests = {int(t) for t in args.tests.split(",") if t}
    q = args.quick
    n_start = 2 if q else 5
    n_exec, warm = (50, 10) if q else (300, 30)
    out_reps = 1 if q else 3
    out_mb = min(args.output_mb, 20) if q else args.output_mb
    idle_k = min(args.idle_kernels, 5) if q else args.idle_kernels
    load_s = min(args.load_seconds, 3.0) if q else args.load_seconds

    kinds = [args.only] if args.only else ["skylab", "jupyter"]
    if "skylab" in kinds and not os.access(args.skylab_bin, os.X_OK):
        sys.exit(f"skylab binary not found: {args.skylab_bin} (build it, set SKYLAB_BIN, or --only jupyter)")

    # SIGTERM behaves like Ctrl-C so that the finally: below stops everything.
    def on_term(*_):
        raise KeyboardInterrupt("SIGTERM")
    signal.signal(signal.SIGTERM, on_term)

    servers = {}
    errors = []
    floor_dir = None
    results = {k: {} for k in kinds}
    results["zmq"] = {}
    meta = {"quick": q, "client_quickack": QUICKACK, "cpus": os.cpu_count(), "date": datetime.now(timezone.utc).isoformat(),
            "n_start": n_start, "n_exec": n_exec, "output_mb": out_mb,
            "idle_kernels": idle_k, "load_seconds": load_s, "clients": args.clients,
            "load_kernels": args.load_kernels, "jupyter_args": args.jupyter_arg}
    try:
        for k in kinds:
            servers[k] = Server(k, args).start()
        # jupyter_client's connection files for the floor kernels: not in ~.
        floor_dir = tempfile.mkdtemp(prefix="skylab-bench-zmq-")
        os.environ["JUPYTER_RUNTIME_DIR"] = floor_dir

        def attempt(who, test, fn):
            """Runs one measurement; a failure is recorded, the run goes on."""
            try:
                results[who][test] = fn()
            except (Exception, Lost) as e:  # noqa: BLE001
                log(f"[{who}] test {test} FAILED: {e!r}")
                results[who][test] = {"error": repr(e)[:500]}
                errors.append(f"{who} {test}: {e!r}"[:500])

        if 1 in tests:
            for k in kinds:
                log(f"[{k}] 1 kernel start x{n_start}")
                attempt(k, "start", lambda: bench_start(servers[k], n_start))
            if not args.no_floor:
                log("[zmq] 1 kernel start")

                def floor_start():
                    ts = [zmq_kernel_start_once() for _ in range(n_start)]
                    return {"median_ms": statistics.median(ts) * 1e3, "all_ms": [t * 1e3 for t in ts]}
                attempt("zmq", "start", floor_start)

        if tests & {2, 3}:
            for k in kinds:
                srv = servers[k]
                c = kid = None
                try:
                    kid = srv.start_kernel()
                    c = KernelWS(srv.ws_base, srv.token, kid)
                    results[k]["fresh_connection_lost_executes"] = c.settle()
                except (Exception, Lost) as e:  # noqa: BLE001
                    for t in ("execute", "output"):
                        results[k][t] = {"error": f"kernel for tests 2/3: {e!r}"[:500]}
                    errors.append(f"{k} tests 2/3 setup: {e!r}"[:500])
                if c is not None and "execute" not in results[k]:
                    if 2 in tests:
                        log(f"[{k}] 2 execute 1+1 x{n_exec}")
                        attempt(k, "execute", lambda: bench_execute(c.run, n_exec, warm))
                    if 3 in tests:
                        log(f"[{k}] 3 output {out_mb} MB x{out_reps}")
                        attempt(k, "output", lambda: bench_output(c.run, out_mb, out_reps))
                if c is not None:
                    c.close()
                if kid:
                    srv.delete_kernel(kid)
            if not args.no_floor:
                zk = ZmqKernel()
                try:
                    if 2 in tests:
                        log(f"[zmq] 2 execute 1+1 x{n_exec}")
                        attempt("zmq", "execute", lambda: bench_execute(zk.run, n_exec, warm))
                    if 3 in tests:
                        log(f"[zmq] 3 output {out_mb} MB x{out_reps}")
                        attempt("zmq", "output", lambda: bench_output(zk.run, out_mb, out_reps))
                finally:
                    zk.close()

        if 4 in tests:
            for k in kinds:
                log(f"[{k}] 4 RSS with {idle_k} idle kernels")
                attempt(k, "rss", lambda: bench_rss(servers[k], idle_k))

        if 5 in tests:
            for k in kinds:
                log(f"[{k}] 5 {args.clients} clients / {args.load_kernels} kernels for {load_s} s")
                attempt(k, "concurrent", lambda: bench_concurrent(
                    servers[k], args.clients, args.load_kernels, load_s, args.load_procs))
    finally:
        if floor_dir:
            shutil.rmtree(floor_dir, ignore_errors=True)
        for s in servers.values():
            try:
                s.stop()
            except Exception as e:  # noqa: BLE001
                log(f"stopping {s.kind}: {e!r}")

    print_table(results, kinds)
    for e in errors:
        print(f"FAILED: {e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results, "errors": errors}, f, indent=2)
        log(f"wrote {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
