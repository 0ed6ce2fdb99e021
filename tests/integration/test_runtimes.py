"""Runtimes: sandbox isolation, resource limits, idle timeout and maximum
lifetime with expiry hooks (real bubblewrap, cgroups and ipykernel)."""
import json
import signal
import os
import time
from datetime import timezone

import pytest

from conftest import SERVER_KIND, Server, _stop_server, needs_root, needs_sandbox, server_with_config

pytestmark = pytest.mark.skipif(SERVER_KIND != "skylab", reason="Skylab runtimes")


@pytest.fixture
def runtime_server(request):
    srv = server_with_config(request.param)
    yield srv
    if srv.proc.poll() is None:
        _stop_server(srv)
    else:
        srv.cleanup_tmp()


def run(client, code, timeout=60):
    return client.execute(code, timeout=timeout)


def wait_gone(srv, kid, timeout=30):
    """True once GET /api/kernels/{kid} answers 404 (the runtime ended)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if srv.get("/api/kernels/" + kid).status_code == 404:
            return True
        time.sleep(0.2)
    return False


SANDBOX = """
[runtimes]
sandbox = "bwrap"
[runtime_types.cpu]
memory = "300M"
pids = 64
"""


@needs_sandbox
@needs_root
@pytest.mark.parametrize("runtime_server", [SANDBOX], indirect=True)
def test_sandbox_isolation_and_limits(runtime_server):
    srv = runtime_server
    kid = srv.create_kernel()
    c = srv.connect(kid)
    c.nudge()
    # The user's own uid, not root.
    out = run(c, "!id -u").stdout
    assert out.strip().isdigit() and int(out.strip()) >= 200000, out
    # /content is the working directory; the Drive is mounted inside it.
    assert run(c, "import os; print(os.getcwd(), os.path.isdir('/content/drive'))").stdout.strip() == "/content True"
    # Nothing of the server is reachable: its data directory, database, other processes.
    r = run(c, "import os; print(os.path.exists(%r), os.path.exists(%r))" % (srv.data_dir, srv.tmp))
    assert r.stdout.strip() == "False False", r.stdout
    r = run(c, "import os; print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))")
    pids = eval(r.stdout.strip())
    assert len(pids) < 10, pids  # only the sandbox's own processes
    assert "Permission denied" in run(c, "!cat /etc/shadow 2>&1").stdout
    assert "Read-only file system" in run(c, "!touch /usr/skylab-x 2>&1").stdout
    assert not os.path.exists("/usr/skylab-x")
    # /tmp and /var/tmp are the user's scratch space (tempfile, pip, matplotlib use them).
    r = run(c, "import tempfile\nfor d in ('/tmp', '/var/tmp'):\n    print(tempfile.NamedTemporaryFile(dir=d).name[:len(d)])")
    assert r.stdout.split() == ["/tmp", "/var/tmp"], r.stdout + str(r.error)
    # Writing the Drive from inside lands in the user's Drive on the host.
    run(c, "open('/content/drive/from-runtime.txt', 'w').write('hello')")
    assert open(os.path.join(srv.data_dir, "drive", "admin", "from-runtime.txt")).read() == "hello"
    # A fork bomb is contained by the pids limit.
    r = run(c, """
import os, time
n = 0
try:
    for i in range(500):
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
except OSError as e:
    print('blocked after', n)
""")
    assert "blocked after" in r.stdout, r.stdout
    assert int(r.stdout.split()[-1]) < 64
    # The server answers throughout.
    assert srv.get("/api/status").status_code == 200
    # A memory hog is killed and the reason is reported; the server is untouched.
    c.send("shell", "execute_request", {"code": "x = bytearray(600 << 20); x[::4096] = b'1' * len(x[::4096])",
                                        "silent": False, "store_history": False, "user_expressions": {},
                                        "allow_stdin": False})
    dead = c.wait_for(lambda m: m["msg_type"] == "status" and m["content"].get("execution_state") == "dead",
                      timeout=60, what="dead status")
    assert "memory" in dead["content"].get("reason", ""), dead["content"]
    model = srv.kernel_model(kid)
    assert model["execution_state"] == "dead"
    assert srv.get("/api/status").status_code == 200
    # Deleting the runtime leaves no process of it behind.
    srv.delete_kernel(kid)
    assert not any(d.startswith("skylab-" + kid) for d in os.listdir("/sys/fs/cgroup/pids") if os.path.isdir("/sys/fs/cgroup/pids"))


LIFETIME = """
[runtimes]
max_lifetime = "8s"
warning = "5s"
grace = "10s"
idle_timeout = "1h"
"""


@pytest.mark.parametrize("runtime_server", [LIFETIME], indirect=True)
def test_lifetime_warning_and_expiry_hook(runtime_server):
    srv = runtime_server
    kid = srv.create_kernel()
    c = srv.connect(kid)
    c.nudge()
    # The deadline is known from the first instruction (the state file is
    # written before the kernel starts, not at the monitor's first pass).
    r = run(c, """
import skylab.runtime, time
print(skylab.runtime.time_left(), skylab.runtime.deadline() - time.time())
""")
    left, until = (float(v) for v in r.stdout.split())
    assert 0 < left <= 8 and 0 < until <= 8, r.stdout
    run(c, """
import skylab.runtime
import os
def save():
    where = '/content/drive' if os.path.isdir('/content/drive') else '.'
    with open(os.path.join(where, 'expiry-proof.txt'), 'w') as f:
        f.write('checkpoint saved')
skylab.runtime.on_expiry(save)
""")
    warning = c.wait_for(lambda m: m["msg_type"] == "skylab_runtime_event" and m["content"]["event"] == "warning",
                         timeout=20, what="lifetime warning")
    assert warning["content"]["reason"] == "lifetime"
    assert 0 <= warning["content"]["seconds_left"] <= 5
    c.wait_for(lambda m: m["msg_type"] == "skylab_runtime_event" and m["content"]["event"] == "expiring",
               timeout=20, what="expiry event")
    assert wait_gone(srv, kid), "runtime outlived its lifetime"
    # The hook ran before the end and its file outlives the runtime: in the
    # user's Drive (sandboxed), or the server's working directory (not).
    found = [os.path.join(root, f) for root, _, files in os.walk(srv.tmp) for f in files if f == "expiry-proof.txt"]
    assert found, "expiry hook did not run"
    assert open(found[0]).read() == "checkpoint saved"


IDLE = """
[runtimes]
idle_timeout = "3s"
warning = "2s"
grace = "5s"
"""


@pytest.mark.parametrize("runtime_server", [IDLE], indirect=True)
def test_idle_cull_spares_busy_kernels(runtime_server):
    srv = runtime_server
    busy = srv.create_kernel()
    idle = srv.create_kernel()
    cb = srv.connect(busy)
    cb.nudge()
    ci = srv.connect(idle)
    ci.nudge()
    cb.execute_request("import time; time.sleep(7); print('survived')")
    # The idle one goes after ~3 s; the busy one is still there while its cell runs.
    assert wait_gone(srv, idle, timeout=20), "idle runtime was not culled"
    assert srv.get("/api/kernels/" + busy).status_code == 200, "busy runtime was culled"
    cb.wait_for(lambda m: m["msg_type"] == "stream" and "survived" in m["content"].get("text", ""), timeout=20,
                what="busy cell output")
    # Once idle, it goes too.
    assert wait_gone(srv, busy, timeout=20), "runtime not culled once idle"


GPUS = """
[runtimes]
max_gpu_per_user = 4
[runtime_types.gpu]
gpus = 1
[gpus]
fake = 2
"""


@pytest.mark.parametrize("runtime_server", [GPUS], indirect=True)
def test_gpu_queue_with_fake_inventory(runtime_server):
    srv = runtime_server
    types = srv.get("/api/skylab/runtime_types").json()
    assert types["gpus"]["total"] == 2
    assert {t["name"] for t in types["types"]} >= {"cpu", "gpu"}
    made = [srv.post("/api/skylab/runtimes", json={"type": "gpu"}) for _ in range(4)]
    assert [r.status_code for r in made] == [201, 201, 202, 202], [r.text for r in made]
    running, queued = [r.json() for r in made[:2]], [r.json() for r in made[2:]]
    srv.kernels.extend(r["id"] for r in running)
    assert sorted(g for r in running for g in r["gpus"]) == [0, 1]
    assert [q["position"] for q in queued] == [1, 2]
    assert all(q["state"] == "queued" for q in queued)
    # The runtime sees only its own GPU.
    c = srv.connect(running[0]["id"])
    c.nudge()
    assert c.execute("import os; print(os.environ['CUDA_VISIBLE_DEVICES'])").stdout.strip() == str(running[0]["gpus"][0])
    # Releasing a GPU hands it to the head of the queue; positions advance.
    assert srv.delete("/api/skylab/runtimes/" + running[0]["id"]).status_code == 204
    srv.kernels.remove(running[0]["id"])
    deadline = time.time() + 30
    while time.time() < deadline and srv.get("/api/skylab/runtimes/" + queued[0]["id"]).json()["state"] == "queued":
        time.sleep(0.2)
    third = srv.get("/api/skylab/runtimes/" + queued[0]["id"]).json()
    assert third["state"] != "queued" and third["gpus"] == running[0]["gpus"], third
    srv.kernels.append(third["id"])
    assert srv.get("/api/skylab/runtimes/" + queued[1]["id"]).json()["position"] == 1
    # Cancel works.
    assert srv.delete("/api/skylab/runtimes/" + queued[1]["id"]).status_code == 204
    assert srv.get("/api/skylab/runtimes/" + queued[1]["id"]).status_code == 404
    # Bad input: unknown type, unknown field, impossible request.
    assert srv.post("/api/skylab/runtimes", json={"type": "tpu"}).status_code == 400
    assert srv.post("/api/skylab/runtimes", json={"type": "gpu", "x": 1}).status_code == 400
    assert srv.post("/api/skylab/runtimes", data="{nope").status_code == 400


def test_runtimes_survive_a_server_sigkill_and_are_reattached():
    import subprocess

    srv = Server()
    try:
        kids = [srv.create_kernel() for _ in range(5)]
        for i, kid in enumerate(kids):
            c = srv.connect(kid)
            c.nudge(timeout=60)
            c.eval_ok("x = %d" % (i * 11))
            c.close()
        srv.clients.clear()
        # SIGKILL: no chance to shut anything down; then a new server process.
        srv.kill_and_restart()
        listed = {k["id"] for k in srv.get("/api/kernels").json()}
        assert listed == set(kids), srv.log_text()
        for i, kid in enumerate(kids):
            c = srv.connect(kid)
            c.nudge(timeout=60)
            assert c.execute("print(x)").stdout.strip() == str(i * 11), "state lost in " + kid
        # A runtime deleted after the restart leaves no process or cgroup.
        victim = kids.pop()
        assert srv.delete("/api/kernels/" + victim).status_code == 204
        srv.kernels = kids
        time.sleep(0.5)
        assert not [d for d in os.listdir("/sys/fs/cgroup/pids") if victim in d] if os.path.isdir("/sys/fs/cgroup/pids") else True
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert victim not in ps
    finally:
        if srv.proc.poll() is None:
            _stop_server(srv)
        else:
            srv.cleanup_tmp()


def test_a_runtime_record_of_an_older_server_is_adopted_with_its_state_file():
    """A record written before records kept the launch environment (`gpus`,
    `spare`, no `env`): the kernel is adopted, and restarting it gives it its
    runtime state file again."""
    srv = Server()
    try:
        kid = srv.create_kernel()
        c = srv.connect(kid)
        c.nudge(timeout=60)
        where = "import os; print(os.environ.get('SKYLAB_RUNTIME_STATE'))"
        before = c.execute(where).stdout.strip()
        c.close()
        srv.clients.clear()
        srv.kill()
        path = os.path.join(srv.data_dir, "runtime", "records", kid + ".json")
        with open(path) as f:
            r = json.load(f)
        assert r.pop("env")["SKYLAB_RUNTIME_STATE"] == r["state_file"]
        r["gpus"] = r.pop("devices")
        r["spare"] = r.pop("reserved")
        with open(path, "w") as f:
            json.dump(r, f)
        srv.restart()
        assert kid in {k["id"] for k in srv.get("/api/kernels").json()}, srv.log_text()
        assert srv.post("/api/kernels/%s/restart" % kid).status_code == 200, srv.log_text()
        c = srv.connect(kid)
        c.nudge(timeout=60)
        assert c.execute(where).stdout.strip() == before != "None"
        state = c.execute("import json, os; "
                          "print(sorted(json.load(open(os.environ['SKYLAB_RUNTIME_STATE']))))")
        assert "lifetime_deadline" in state.stdout, state.stdout
    finally:
        if srv.proc.poll() is None:
            _stop_server(srv)
        else:
            srv.cleanup_tmp()


def test_runtime_state_exists_before_the_kernel_starts(tmp_path):
    """skylab.runtime.deadline() is right from the kernel's first instant:
    a kernelspec that reads SKYLAB_RUNTIME_STATE before ipykernel starts."""
    spec = tmp_path / "kernels" / "statecheck"
    spec.mkdir(parents=True)
    boot = ("import json, os, runpy, sys\n"
            "s = json.load(open(os.environ['SKYLAB_RUNTIME_STATE']))\n"
            "os.environ['STATE_AT_START'] = repr(s['lifetime_deadline'])\n"
            "sys.argv = ['ipykernel_launcher', '-f', sys.argv[1]]\n"
            "runpy.run_module('ipykernel_launcher', run_name='__main__')\n")
    (spec / "kernel.json").write_text(json.dumps({
        "argv": ["/usr/bin/python3", "-c", boot, "{connection_file}"],
        "display_name": "state check", "language": "python"}))
    cfg = tmp_path / "rt.toml"
    cfg.write_text('[runtimes]\nmax_lifetime = "1h"\n')
    srv = Server(env_extra={"JUPYTER_PATH": str(tmp_path)}, extra_args=("--config", str(cfg)))
    try:
        t0 = time.time()
        kid = srv.create_kernel("statecheck")
        c = srv.connect(kid)
        c.nudge(timeout=60)
        at_start = float(c.execute("import os; print(os.environ['STATE_AT_START'])").stdout)
        assert t0 + 3600 - 5 <= at_start <= time.time() + 3600, at_start
    finally:
        _stop_server(srv)


def mounts():
    with open("/proc/self/mountinfo") as f:
        return f.read()


DISK = """
[runtimes]
sandbox = "bwrap"
[runtime_types.cpu]
memory = "1G"
[runtime_types.small]
memory = "1G"
disk = "64M"
"""


@needs_sandbox
@needs_root
@pytest.mark.parametrize("runtime_server", [DISK], indirect=True)
def test_content_size_limit_and_runtime_usage(runtime_server):
    srv = runtime_server
    types = {t["name"]: t for t in srv.get("/api/skylab/runtime_types").json()["types"]}
    assert types["small"]["disk"] == 64 << 20 and types["cpu"]["disk"] is None
    r = srv.post("/api/skylab/runtimes", json={"type": "small"})
    assert r.status_code == 201, r.text
    small = r.json()["id"]
    srv.kernels.append(small)
    other = srv.create_kernel()
    cs, co = srv.connect(small), srv.connect(other)
    cs.nudge(timeout=60)
    co.nudge(timeout=60)
    root = os.path.join(srv.data_dir, "runtimes", small)
    assert root in mounts(), "no /content image mounted"
    # Writing beyond the limit: ENOSPC inside the runtime.
    out = run(cs, "!dd if=/dev/zero of=/content/big bs=1M count=100 2>&1; echo rc=$?").stdout
    assert "No space left on device" in out and "rc=0" not in out, out
    # The home directory shares the limit.
    out = run(cs, "!dd if=/dev/zero of=/root/more bs=1M count=10 2>&1; echo rc=$?").stdout
    assert "No space left on device" in out, out
    # Another runtime (no limit) and the server are fine.
    out = run(co, "!dd if=/dev/zero of=/content/big bs=1M count=100 2>&1; echo rc=$?; rm /content/big").stdout
    assert "rc=0" in out, out
    assert srv.get("/api/status").status_code == 200
    assert run(cs, "print(6 * 7)").stdout.strip() == "42"
    # Per-runtime usage: memory from the cgroup, disk from the image.
    res = srv.get("/api/skylab/resources").json()
    assert res["host"]["memory_total"] > 0
    by_id = {x["id"]: x for x in res["runtimes"]}
    assert set(by_id) == {small, other}
    u = by_id[small]
    assert u["type"] == "small"
    assert 60 << 20 <= u["disk"]["limit"] <= 64 << 20, u
    assert u["disk"]["used"] >= 50 << 20, u
    assert 10 << 20 < u["memory"]["used"] < u["memory"]["limit"] == 1 << 30, u
    assert u["cpu"]["seconds"] > 0, u
    assert by_id[other]["disk"]["limit"] is None and by_id[other]["disk"]["used"] < 10 << 20, by_id[other]
    assert u["gpus"] == []
    # A second read gives a CPU utilisation figure.
    time.sleep(0.3)
    again = {x["id"]: x for x in srv.get("/api/skylab/resources").json()["runtimes"]}
    assert again[small]["cpu"]["percent"] is not None and again[small]["cpu"]["percent"] >= 0
    # Deleting the runtime unmounts and removes the image.
    assert srv.delete("/api/skylab/runtimes/" + small).status_code == 204
    srv.kernels.remove(small)
    assert root not in mounts()
    assert not os.path.exists(root) and not os.path.exists(root + ".img")


@needs_sandbox
@needs_root
def test_content_image_of_a_runtime_that_died_with_the_server_is_cleaned_up(tmp_path):
    import signal

    cfg = tmp_path / "rt.toml"
    cfg.write_text(DISK)
    srv = Server(extra_args=("--config", str(cfg)))
    try:
        r = srv.post("/api/skylab/runtimes", json={"type": "small"})
        assert r.status_code == 201, r.text
        kid = r.json()["id"]
        c = srv.connect(kid)
        c.nudge(timeout=60)
        c.close()
        srv.clients.clear()
        root = os.path.join(srv.data_dir, "runtimes", kid)
        assert root in mounts()
        srv.kill()
        # The runtime dies while no server is there.
        procs = [p for p in ("/sys/fs/cgroup/pids/skylab-%s/cgroup.procs" % kid,
                             "/sys/fs/cgroup/skylab/skylab-%s/cgroup.procs" % kid) if os.path.exists(p)]
        assert procs
        for pid in open(procs[0]).read().split():
            os.kill(int(pid), signal.SIGKILL)
        srv.restart()
        assert srv.get("/api/kernels").json() == []
        assert root not in mounts(), srv.log_text()
        assert not os.path.exists(root + ".img")
    finally:
        if srv.proc.poll() is None:
            _stop_server(srv)
        else:
            srv.cleanup_tmp()


POOL = """
[runtimes]
warm_pool = 1
max_per_user = 2
"""


def wait_warm(srv, n, timeout=90):
    """True once the admin has n ready spares of the default type."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        types = {t["name"]: t for t in srv.get("/api/skylab/runtime_types").json()["types"]}
        if types["cpu"]["warm_ready"] == n:
            return True
        time.sleep(0.2)
    return False


def server_processes(srv, also=""):
    """Processes (not the server) whose command line mentions the server's
    data directory (and `also`), and their descendants (bwrap's command line
    names no host paths; its supervisor's does)."""
    out, parents = [], {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                parents[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmdline = f.read()
            if srv.data_dir.encode() in cmdline and also.encode() in cmdline and int(d) != srv.proc.pid:
                out.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    seen = set(out)
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in seen and pid not in seen and pid != srv.proc.pid:
                seen.add(pid)
                out.append(pid)
                changed = True
    return out


@pytest.mark.parametrize("runtime_server", [POOL], indirect=True)
def test_warm_pool_serves_fresh_runtimes_and_refills(runtime_server):
    srv = runtime_server
    first = srv.post("/api/skylab/runtimes", json={})
    assert first.status_code == 201, first.text
    first = first.json()
    srv.kernels.append(first["id"])
    assert first["warm"] is False
    c = srv.connect(first["id"])
    c.nudge(timeout=60)
    c.eval_ok("x = 41")
    # A spare is started for this user in the background; it is nobody's
    # runtime yet: not listed, not counted.
    assert wait_warm(srv, 1), srv.log_text()
    assert [k["id"] for k in srv.get("/api/kernels").json()] == [first["id"]]
    assert [k["id"] for k in srv.get("/api/skylab/runtimes").json()] == [first["id"]]
    assert srv.get("/api/status").json()["kernels"] == 1
    # The next runtime comes from the pool: fresh, its lifetime counted from now.
    t0 = time.time()
    second = srv.post("/api/skylab/runtimes", json={})
    assert second.status_code == 201, second.text
    second = second.json()
    srv.kernels.append(second["id"])
    assert second["warm"] is True and second["state"] == "idle", second
    from datetime import datetime
    started = datetime.strptime(second["started"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
    assert started >= t0 - 0.5, (started, t0)  # not when the spare was started
    assert second["id"] != first["id"]
    c2 = srv.connect(second["id"])
    c2.nudge(timeout=30)
    r = c2.execute("import skylab.runtime, time; print('x' in globals(), round(skylab.runtime.time_left()), "
                   "round(skylab.runtime._state()['lifetime_deadline'] - time.time()))")
    fresh, left, lifetime_left = r.stdout.split()
    assert fresh == "False"
    assert 90 * 60 - 60 <= int(left) <= 90 * 60, r.stdout  # the idle deadline, from the take
    assert 12 * 3600 - 60 <= int(lifetime_left) <= 12 * 3600, r.stdout
    assert srv.get("/api/skylab/runtimes/" + second["id"]).json()["warm"] is True
    # The first runtime still has its state.
    assert c.execute("print(x + 1)").stdout.strip() == "42"
    # The pool refills; the spare does not count against max_per_user = 2.
    assert wait_warm(srv, 1), srv.log_text()
    third = srv.post("/api/skylab/runtimes", json={})
    assert third.status_code == 409, third.text
    # A session (what a notebook's Connect does) is served from the pool too.
    assert srv.delete("/api/skylab/runtimes/" + first["id"]).status_code == 204
    srv.kernels.remove(first["id"])
    s = srv.post("/api/sessions", json={"path": "a.ipynb", "type": "notebook", "kernel": {"name": "python3"}})
    assert s.status_code == 201, s.text
    kid = s.json()["kernel"]["id"]
    srv.kernels.append(kid)
    assert srv.get("/api/skylab/runtimes/" + kid).json()["warm"] is True
    # Stopping the server releases the spares with the runtimes.
    assert wait_warm(srv, 1), srv.log_text()
    assert server_processes(srv)
    srv.kernels.clear()
    assert srv.terminate() == 0
    time.sleep(0.5)
    assert server_processes(srv) == [], "a spare outlived the server"


@needs_sandbox
@needs_root
def test_runtime_exec_runs_a_command_in_a_fresh_sandbox(tmp_path):
    import subprocess

    from conftest import skylab_bin

    cfg = tmp_path / "rt.toml"
    cfg.write_text('[runtime_types.cpu]\nmemory = "200M"\n[runtime_types.gpu]\ngpus = 1\ndisk = "32M"\n'
                   '[gpus]\nfake = 2\n')
    data = tmp_path / "data"
    base = [skylab_bin(), "runtime", "exec", "--config", str(cfg), "--data-dir", str(data)]
    r = subprocess.run(base + ["--user", "carol", "--", "sh", "-c",
                               "id -u; pwd; ls /content; echo hi > /content/drive/x; exit 3"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stderr
    uid, cwd, listing = r.stdout.split()
    assert int(uid) >= 200000 and cwd == "/content" and listing == "drive", r.stdout
    assert (data / "drive" / "carol" / "x").read_text() == "hi\n"  # the user's Drive
    # A GPU type: its GPU, its disk limit.
    r = subprocess.run(base + ["--type", "gpu", "--", "sh", "-c",
                               "echo gpu=$CUDA_VISIBLE_DEVICES; dd if=/dev/zero of=/content/x bs=1M count=40"],
                       capture_output=True, text=True, timeout=120)
    assert "gpu=0" in r.stdout and r.returncode != 0 and "No space left" in r.stderr, (r.stdout, r.stderr)
    # The memory limit kills, and says so.
    r = subprocess.run(base + ["--", "/usr/bin/python3", "-c",
                               "x = bytearray(400 << 20); x[::4096] = b'1' * len(x[::4096])"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 137 and "out of memory" in r.stderr, (r.returncode, r.stderr)
    # Nothing is left behind.
    assert os.listdir(data / "runtimes") == []
    assert str(data) not in mounts()
    assert subprocess.run(base + ["--type", "tpu", "--", "true"], capture_output=True).returncode == 2


@needs_sandbox
@needs_root
@pytest.mark.parametrize("runtime_server", [POOL], indirect=True)
def test_warm_spares_are_per_user_and_go_with_a_disabled_account(runtime_server):
    import subprocess

    import requests

    from conftest import skylab_bin

    srv = runtime_server

    def cli(*args, stdin=None):
        r = subprocess.run([skylab_bin(), "user", *args, "--data-dir", srv.data_dir], input=stdin,
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.decode().strip()

    cli("add", "bob", "--password-stdin", stdin=b"bob-password-1\n")
    bob = requests.Session()
    bob.headers["Authorization"] = "token " + cli("token", "bob")
    r = bob.post(srv.url("/api/skylab/runtimes"), json={}, timeout=60)
    assert r.status_code == 201 and r.json()["warm"] is False, r.text
    bob_runtime = r.json()["id"]

    def bob_ready():
        types = bob.get(srv.url("/api/skylab/runtime_types"), timeout=30).json()["types"]
        return {t["name"]: t for t in types}["cpu"]["warm_ready"]

    deadline = time.time() + 90
    while bob_ready() != 1 and time.time() < deadline:
        time.sleep(0.2)
    assert bob_ready() == 1, srv.log_text()
    # Bob's spare is bob's: the admin has none, and gets a cold runtime.
    assert wait_warm(srv, 0, timeout=1)
    r = srv.post("/api/skylab/runtimes", json={})
    assert r.status_code == 201 and r.json()["warm"] is False, r.text
    srv.kernels.append(r.json()["id"])
    # Bob's sandboxes mount his Drive: they are his spare and his runtime.
    bob_drive = os.path.join(srv.data_dir, "drive", "bob")

    def bob_sandboxes():
        # bwrap's command line names no host paths (its options come through a
        # memfd), and the Drive may be a volume: count sandboxes (bwrap inside,
        # whose parent is the outer bwrap) whose process runs as bob's runtime.
        procs = server_processes(srv)
        n = 0
        for pid in procs:
            try:
                with open("/proc/%d/comm" % pid) as f:
                    if f.read().strip() != "bwrap":
                        continue
                with open("/proc/%d/stat" % pid) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open("/proc/%d/comm" % ppid) as f:
                    if f.read().strip() != "bwrap":
                        continue  # the outer bwrap; its child (inside) counts the sandbox once
            except (OSError, ValueError, IndexError):
                continue
            for child in procs:
                try:
                    with open("/proc/%d/stat" % child) as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) != pid:
                            continue
                    with open("/proc/%d/environ" % child, "rb") as f:
                        if b"SKYLAB_USER=bob" in f.read().split(b"\0"):
                            n += 1
                            break
                except (OSError, ValueError, IndexError):
                    continue
        return n

    assert bob_sandboxes() == 2
    cli("disable", "bob")
    deadline = time.time() + 30
    while bob_sandboxes() > 1 and time.time() < deadline:
        time.sleep(0.2)
    assert bob_sandboxes() == 1, "a disabled user's spare was kept"
    assert srv.delete("/api/skylab/runtimes/" + bob_runtime).status_code == 204


@needs_sandbox
@needs_root
def test_a_restarted_server_does_not_keep_the_previous_servers_spares(tmp_path):

    cfg = tmp_path / "rt.toml"
    cfg.write_text(POOL)
    srv = Server(extra_args=("--config", str(cfg)))
    try:
        kid = srv.create_kernel()
        c = srv.connect(kid)
        c.nudge(timeout=60)
        c.eval_ok("y = 7")
        c.close()
        srv.clients.clear()
        assert wait_warm(srv, 1), srv.log_text()
        runtimes = os.path.join(srv.data_dir, "runtimes")
        spare = [d for d in os.listdir(runtimes) if d != kid]
        assert len(spare) == 1, os.listdir(runtimes)
        srv.kill_and_restart()
        # The runtime is adopted; the spare is shut down, nothing of it left.
        assert [k["id"] for k in srv.get("/api/kernels").json()] == [kid]
        assert os.listdir(runtimes) == [kid], srv.log_text()
        time.sleep(0.5)
        assert not server_processes(srv, spare[0]), "the old spare still runs"
        c = srv.connect(kid)
        c.nudge(timeout=60)
        assert c.execute("print(y)").stdout.strip() == "7"
    finally:
        if srv.proc.poll() is None:
            _stop_server(srv)
        else:
            srv.cleanup_tmp()


@needs_sandbox
@needs_root
def test_keep_runtimes_sigterm_leaves_runtimes_for_the_next_server(tmp_path):
    """`skylab serve --keep-runtimes` (the systemd unit): SIGTERM (systemctl
    restart, an upgrade) lets runtimes run on and the next server reattaches
    them with their state; unclaimed spares go; SIGINT still stops them all."""
    cfg = tmp_path / "rt.toml"
    cfg.write_text(POOL)
    srv = Server(extra_args=("--config", str(cfg), "--keep-runtimes"))
    try:
        kid = srv.create_kernel()
        c = srv.connect(kid)
        c.nudge(timeout=60)
        c.eval_ok("z = 99")
        c.close()
        srv.clients.clear()
        assert wait_warm(srv, 1), srv.log_text()
        runtimes = os.path.join(srv.data_dir, "runtimes")
        spare = [d for d in os.listdir(runtimes) if d != kid]
        assert len(spare) == 1, os.listdir(runtimes)
        assert srv.terminate() == 0, srv.log_text()
        assert "leaving 1 runtime(s) running for the next server" in srv.log_text()
        assert server_processes(srv, kid), "the runtime did not outlive the server"
        time.sleep(0.5)
        assert not server_processes(srv, spare[0]), "the spare outlived the server"
        srv.restart()
        assert [k["id"] for k in srv.get("/api/kernels").json()] == [kid], srv.log_text()
        c = srv.connect(kid)
        c.nudge(timeout=60)
        assert c.execute("print(z)").stdout.strip() == "99"
        c.close()
        srv.clients.clear()
        # SIGINT (an operator's Ctrl-C) stops the runtimes, as without the flag.
        srv.proc.send_signal(signal.SIGINT)
        assert srv.proc.wait(timeout=60) == 0
        time.sleep(0.5)
        assert not server_processes(srv, kid), "SIGINT left the runtime running"
    finally:
        if srv.proc.poll() is None:
            _stop_server(srv)
        else:
            srv.cleanup_tmp()
