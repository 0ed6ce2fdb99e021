"""The Slurm backend against a real one-node cluster (slurm_cluster.py):
runtime types with backend = "slurm" run as Slurm jobs whose `skylab agent`
starts the usual sandbox and links back to the server."""
import os
import socket
import subprocess
import time

import pytest

import slurm_cluster
from conftest import SERVER_KIND, Server, _stop_server, bwrap_works, skylab_bin

_missing = slurm_cluster.missing_reason()
pytestmark = [
    pytest.mark.skipif(SERVER_KIND != "skylab", reason="Skylab runtimes"),
    pytest.mark.skipif(_missing is not None, reason=_missing or ""),
    pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here"),
]


@pytest.fixture(scope="module")
def cluster():
    c = slurm_cluster.SlurmCluster()
    try:
        c.start()
    except RuntimeError as e:
        c.stop()
        pytest.skip("the test cluster cannot start here: %s" % str(e)[:2000])
    yield c
    c.stop()


def config(cluster, extra=""):
    return """
[runtimes]
sandbox = "bwrap"
[runtime_types.cluster]
display_name = "CPU (cluster)"
backend = "slurm"
partition = "debug"
cpus = 1
memory = "1G"
max_lifetime = "1h"
[slurm]
conf = "%s"
listen_host = "127.0.0.1"
%s""" % (cluster.conf, extra)


@pytest.fixture
def srv(cluster, tmp_path):
    cfg = tmp_path / "skylab.toml"  # kept: a restarted server reads it again
    cfg.write_text(config(cluster))
    s = Server(extra_args=("--config", str(cfg)))
    yield s
    if s.proc.poll() is None:
        _stop_server(s)
    else:
        s.cleanup_tmp()
    cluster.run("scancel", "--full", "-u", "root", check=False)


def create(srv):
    r = srv.post("/api/skylab/runtimes", json={"type": "cluster"})
    assert r.status_code == 202, (r.status_code, r.text)
    assert r.json()["state"] == "starting", r.text
    srv.kernels.append(r.json()["id"])
    return r.json()["id"]


def wait_state(srv, rid, pred, timeout=60, what="state"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        r = srv.get("/api/skylab/runtimes/" + rid)
        last = (r.status_code, r.json() if r.status_code == 200 else r.text)
        if pred(last):
            return last
        time.sleep(0.3)
    raise AssertionError("runtime %s: no %s in %ss; last %r\n%s" % (rid, what, timeout, last, srv.log_text()))


def running(srv, rid, timeout=60):
    return wait_state(srv, rid, lambda l: l[0] == 200 and l[1].get("state") in ("idle", "busy"), timeout, "running")[1]


def job_of(cluster, rid):
    """(job id, state) of the runtime's job, from squeue's job names."""
    r = cluster.run("squeue", "-h", "-t", "all", "-o", "%i %j %T")
    for line in r.stdout.splitlines():
        job, name, state = line.split()
        if name == "skylab-" + rid:
            return job, state
    return None, None


def runtime_processes(rid):
    """Pids whose command line names runtime `rid` (its sandbox, supervisor, kernel)."""
    pids = []
    for p in os.listdir("/proc"):
        try:
            if rid.encode() in open("/proc/%s/cmdline" % p, "rb").read():
                pids.append(int(p))
        except OSError:
            continue
    return pids


def cell(c, code, timeout=60):
    return c.execute(code, timeout=timeout).stdout


def test_notebook_runs_in_a_slurm_job_in_the_usual_sandbox(srv, cluster):
    rid = create(srv)
    running(srv, rid)
    job, state = job_of(cluster, rid)
    assert job and state == "RUNNING", cluster.jobs()
    c = srv.connect(rid)
    c.nudge(timeout=60)
    # The kernel runs inside the job, under the user's uid, with /content and the Drive.
    out = cell(c, "import os; print(os.environ.get('SLURM_JOB_ID'), os.getuid(), os.getcwd(), os.path.isdir('/content/drive'))")
    job_env, uid, cwd, drive = out.split()
    assert job_env == job, (out, job)
    assert int(uid) >= 200000 and cwd == "/content" and drive == "True", out
    # The Drive is the user's Drive on the server's data directory.
    cell(c, "open('/content/drive/from-slurm.txt', 'w').write('hello')")
    drive_file = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(srv.data_dir)) for f in fs if f == "from-slurm.txt"]
    assert drive_file, "the Drive write did not reach the server's data directory"
    # The secret stays root-only, outside the sandbox.
    out = cell(c, "import glob; print(glob.glob('/**/secret', recursive=False), os.path.exists(%r))"
               % os.path.join(srv.data_dir, "slurm"))
    assert out.strip() == "[] False", out
    # The node's cgroup figures reach /api/skylab/resources (reported by the agent).
    deadline = time.time() + 30
    mine = {}
    while time.time() < deadline:
        mine = {r["id"]: r for r in srv.get("/api/skylab/resources").json()["runtimes"]}.get(rid, {})
        if mine.get("memory", {}).get("used"):
            break
        time.sleep(0.5)
    assert mine["memory"]["used"] > 0 and mine["memory"]["limit"] == 1 << 30, mine
    # Deleting the runtime ends the job.
    assert srv.delete("/api/skylab/runtimes/" + rid).status_code == 204
    srv.kernels.remove(rid)
    deadline = time.time() + 30
    while time.time() < deadline and job_of(cluster, rid)[1] in ("RUNNING", "COMPLETING"):
        time.sleep(0.3)
    assert job_of(cluster, rid)[1] not in ("RUNNING", "COMPLETING", "PENDING"), cluster.jobs()
    assert not os.path.exists(os.path.join(srv.data_dir, "slurm", "jobs", rid))


def test_scancel_from_outside_reaches_the_notebook_as_dead(srv, cluster):
    rid = create(srv)
    running(srv, rid)
    c = srv.connect(rid)
    c.nudge(timeout=60)
    job, _ = job_of(cluster, rid)
    cluster.run("scancel", job)
    st = c.wait_for(lambda m: m["header"]["msg_type"] == "status" and m["content"].get("execution_state") == "dead",
                    timeout=30, what="status dead")
    model = srv.get("/api/skylab/runtimes/" + rid).json()
    assert model["state"] == "dead", model
    assert "Slurm job " + job in model["reason"] and "scancel" in model["reason"], model
    assert "scancel" in str(st["content"]), st


def test_a_full_cluster_leaves_the_runtime_waiting_then_it_starts(srv, cluster):
    filler = cluster.run("sbatch", "--parsable", "-c", "2", "--wrap", "sleep 600").stdout.strip()
    wait = time.time() + 30
    while time.time() < wait and cluster.jobs().get(filler) != "RUNNING":
        time.sleep(0.2)
    assert cluster.jobs().get(filler) == "RUNNING"
    rid = create(srv)
    # Slurm's own reason (Resources) once its scheduler looked at the job.
    pending = wait_state(srv, rid, lambda l: l[0] == 200 and "Resources" in l[1].get("reason", ""),
                         30, "a waiting reason")[1]
    assert pending["state"] == "starting" and "Resources" in pending["reason"] and "position 1" in pending["reason"], pending
    assert job_of(cluster, rid)[1] == "PENDING"
    # The runtime list shows the same reason (the notebook's status button shows it).
    listed = {r["id"]: r for r in srv.get("/api/skylab/runtimes").json()}
    assert "Waiting for a machine" in listed[rid].get("reason", ""), listed
    cluster.run("scancel", filler)
    running(srv, rid, timeout=90)
    c = srv.connect(rid)
    c.nudge(timeout=60)
    assert cell(c, "print(6 * 7)").strip() == "42"


def test_deleting_a_waiting_runtime_cancels_its_job(srv, cluster):
    filler = cluster.run("sbatch", "--parsable", "-c", "2", "--wrap", "sleep 600").stdout.strip()
    rid = create(srv)
    wait_state(srv, rid, lambda l: l[0] == 200 and "Waiting for a machine" in l[1].get("reason", ""), 30, "waiting")
    job, state = job_of(cluster, rid)
    assert state == "PENDING"
    assert srv.delete("/api/skylab/runtimes/" + rid).status_code == 204
    srv.kernels.remove(rid)
    deadline = time.time() + 30
    while time.time() < deadline and cluster.jobs().get(job) == "PENDING":
        time.sleep(0.3)
    assert cluster.jobs().get(job) == "CANCELLED", cluster.jobs()
    wait_state(srv, rid, lambda l: l[0] == 404, 30, "404")
    cluster.run("scancel", filler)


def test_a_restarted_server_readopts_running_jobs_and_cancels_unknown_ones(srv, cluster):
    rid = create(srv)
    running(srv, rid)
    c = srv.connect(rid)
    c.nudge(timeout=60)
    c.eval_ok("x = 4711")
    c.close()
    srv.clients.clear()
    job, _ = job_of(cluster, rid)
    srv.kill()
    # A job named like a Skylab runtime that this server has no record of.
    stray = cluster.run("sbatch", "--parsable", "-c", "1", "--job-name=skylab-00000000-dead-beef-0000-000000000000",
                        "--wrap", "sleep 600").stdout.strip()
    srv.restart()
    assert job_of(cluster, rid) == (job, "RUNNING")
    assert cluster.jobs().get(stray) in ("CANCELLED", None), cluster.jobs()
    assert rid in {k["id"] for k in srv.get("/api/kernels").json()}
    c = srv.connect(rid)
    c.nudge(timeout=60)
    assert cell(c, "print(x)").strip() == "4711"


def test_slurm_runtime_cannot_reach_the_host_loopback_and_is_filtered(srv, cluster):
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    lst.settimeout(0.5)
    port = lst.getsockname()[1]
    try:
        rid = create(srv)
        running(srv, rid)
        c = srv.connect(rid)
        c.nudge(timeout=60)
        out = cell(c, "import socket\ntry:\n  socket.create_connection(('127.0.0.1', %d), timeout=3); print('reached')\n"
                      "except OSError as e:\n  print('refused', type(e).__name__)" % port)
        assert out.startswith("refused"), out
        with pytest.raises(socket.timeout):
            lst.accept()
        out = cell(c, "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('Seccomp:')])")
        assert out.strip() == "['2']", out
        out = cell(c, "!unshare -Ur true; echo rc=$?")
        assert "rc=0" not in out and "rc=" in out, out
        # A second runtime on the same node cannot reach a port the first one listens on.
        other = create(srv)
        running(srv, other)
        c2 = srv.connect(other)
        c2.nudge(timeout=60)
        cell(c, "import socket\nsrv_sock = socket.socket(); srv_sock.bind(('0.0.0.0', 0)); srv_sock.listen(1)\n"
                "print(srv_sock.getsockname()[1])")
        port2 = int(cell(c, "print(srv_sock.getsockname()[1])").strip())
        # The first runtime's own address (a UDP "connect" sends nothing).
        addr = cell(c, "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.connect(('192.0.2.1', 9)); "
                       "print(u.getsockname()[0])").strip()
        assert addr and addr != "0.0.0.0", addr
        for a in (addr, "127.0.0.1"):
            out = cell(c2, "import socket\ntry:\n  socket.create_connection((%r, %d), timeout=3); print('reached')\n"
                           "except OSError as e:\n  print('refused')" % (a, port2))
            assert out.strip() == "refused", (a, out)
    finally:
        lst.close()


def test_lifetime_expiry_runs_the_hooks_and_ends_the_job(cluster, tmp_path):
    cfg = tmp_path / "skylab.toml"
    cfg.write_text(config(cluster).replace('max_lifetime = "1h"', 'max_lifetime = "14s"')
                   .replace("[runtimes]\n", '[runtimes]\nwarning = "6s"\ngrace = "10s"\nidle_timeout = "1h"\n'))
    srv = Server(extra_args=("--config", str(cfg)))
    try:
        rid = create(srv)
        running(srv, rid)
        job, _ = job_of(cluster, rid)
        c = srv.connect(rid)
        c.nudge(timeout=60)
        cell(c, "import skylab.runtime\n"
                "def save():\n"
                "    open('/content/drive/expiry-proof.txt', 'w').write('checkpoint saved')\n"
                "skylab.runtime.on_expiry(save)\n")
        warning = c.wait_for(lambda m: m["msg_type"] == "skylab_runtime_event" and m["content"]["event"] == "warning",
                             timeout=30, what="lifetime warning")
        assert warning["content"]["reason"] == "lifetime"
        c.wait_for(lambda m: m["msg_type"] == "skylab_runtime_event" and m["content"]["event"] == "expiring",
                   timeout=30, what="expiry event")
        wait_state(srv, rid, lambda l: l[0] == 404, 40, "the end of the runtime")
        found = [os.path.join(d, f) for d, _, fs in os.walk(srv.data_dir) for f in fs if f == "expiry-proof.txt"]
        assert found and open(found[0]).read() == "checkpoint saved", "the expiry hook did not run"
        deadline = time.time() + 30
        while time.time() < deadline and cluster.jobs().get(job) in ("RUNNING", "COMPLETING"):
            time.sleep(0.3)
        assert cluster.jobs().get(job) not in ("RUNNING", "COMPLETING", "PENDING"), cluster.jobs()
        srv.kernels.clear()
    finally:
        if srv.proc.poll() is None:
            _stop_server(srv)
        else:
            srv.cleanup_tmp()


def test_a_waiting_job_cancelled_after_a_server_restart_shows_dead(srv, cluster):
    filler = cluster.run("sbatch", "--parsable", "-c", "2", "--wrap", "sleep 600").stdout.strip()
    rid = create(srv)
    wait_state(srv, rid, lambda l: l[0] == 200 and "Waiting for a machine" in l[1].get("reason", ""), 30, "waiting")
    job, _ = job_of(cluster, rid)
    srv.kill()
    srv.restart()
    assert srv.kernel_model(rid)["execution_state"] == "starting"
    assert job_of(cluster, rid) == (job, "PENDING")
    # The adopted runtime still shows why it waits.
    wait_state(srv, rid, lambda l: l[0] == 200 and "Waiting for a machine (Resources" in l[1].get("reason", ""),
               30, "a waiting reason after the restart")
    cluster.run("scancel", job)
    deadline = time.time() + 30
    while time.time() < deadline and srv.kernel_model(rid)["execution_state"] != "dead":
        time.sleep(0.3)
    model = srv.get("/api/skylab/runtimes/" + rid).json()
    assert model["state"] == "dead" and "Slurm job " + job in model.get("reason", ""), model
    cluster.run("scancel", filler)


def test_restarting_the_kernel_runs_it_in_a_new_job(srv, cluster):
    rid = create(srv)
    running(srv, rid)
    first, _ = job_of(cluster, rid)
    c = srv.connect(rid)
    c.nudge(timeout=60)
    c.eval_ok("x = 1")
    # Interrupt reaches the kernel on the node (interrupt_request through the link and the agent).
    msg = c.execute_request("import time; print('sleeping', flush=True); time.sleep(60)")
    # Interrupt once the cell runs (an interrupt before it started could be lost in ipykernel itself).
    c.wait_for(lambda m: m["msg_type"] == "stream" and "sleeping" in m["content"].get("text", ""), timeout=30)
    assert srv.post("/api/kernels/%s/interrupt" % rid).status_code == 204
    reply = c.wait_for(lambda m: m["msg_type"] == "execute_reply" and m["parent_header"].get("msg_id") == msg["header"]["msg_id"], timeout=30)
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt", reply["content"]
    r = srv.post("/api/kernels/%s/restart" % rid, timeout=120)
    assert r.status_code == 200, (r.status_code, r.text)
    c.nudge(timeout=60)
    out = cell(c, "import os; print(os.environ['SLURM_JOB_ID'], 'x' in dir())")
    job, has_x = out.split()
    assert job != first and has_x == "False", out
    assert cluster.jobs().get(job) == "RUNNING" and cluster.jobs().get(first) != "RUNNING", cluster.jobs()


def test_jobs_are_submitted_for_the_users_cluster_account(cluster, tmp_path):
    cfg = tmp_path / "skylab.toml"
    cfg.write_text(config(cluster, 'users = { admin = "nobody" }\n'))
    srv = Server(extra_args=("--config", str(cfg)))
    filler = cluster.run("sbatch", "--parsable", "-c", "2", "--wrap", "sleep 600").stdout.strip()
    try:
        rid = create(srv)
        wait_state(srv, rid, lambda l: l[0] == 200 and "Waiting for a machine" in l[1].get("reason", ""), 30, "waiting")
        job, _ = job_of(cluster, rid)
        user = cluster.run("squeue", "-h", "-j", job, "-o", "%u").stdout.strip()
        assert user == "nobody", user
        # The job runs the agent through sudo (a rule on the compute nodes): only root reads the job directory.
        script = open(os.path.join(srv.data_dir, "slurm", "jobs", rid, "job.sh")).read()
        assert "sudo -n " in script and " agent --job-dir " in script, script
        # Through sudo, the agent serves only the invoking account's running job on its node:
        # another account, or this account's job before Slurm started it, is refused.
        jobdir = os.path.join(srv.data_dir, "slurm", "jobs", rid)
        for sudo_uid in ("1234", "65534"):
            p = subprocess.run([skylab_bin(), "agent", "--job-dir", jobdir],
                               env=dict(cluster.env, SUDO_UID=sudo_uid), capture_output=True, text=True, timeout=30)
            assert p.returncode == 1 and "is not a running job of uid" in p.stderr, p.stderr
        assert "Waiting for a machine" in srv.get("/api/skylab/runtimes/" + rid).json().get("reason", "")
    finally:
        cluster.run("scancel", filler, check=False)
        if srv.proc.poll() is None:
            _stop_server(srv)
        else:
            srv.cleanup_tmp()


def test_an_agent_that_dies_without_a_word_shows_dead_with_a_reason(srv, cluster):
    """A node that fails (here: its agent SIGKILLed): the link loses the connection, the notebook sees dead."""
    rid = create(srv)
    running(srv, rid)
    c = srv.connect(rid)
    c.nudge(timeout=60)
    agents = []
    for p in os.listdir("/proc"):
        try:
            cmd = open("/proc/%s/cmdline" % p, "rb").read().split(b"\0")
        except OSError:
            continue
        if b"agent" in cmd and any(a.endswith(rid.encode()) for a in cmd):
            agents.append(int(p))
    assert len(agents) == 1, agents
    os.kill(agents[0], 9)
    c.wait_for(lambda m: m["header"]["msg_type"] == "status" and m["content"].get("execution_state") == "dead",
               timeout=30, what="status dead")
    model = srv.get("/api/skylab/runtimes/" + rid).json()
    assert model["state"] == "dead" and "lost the connection to the runtime's agent" in model["reason"], model
    # The kernel died with its agent (its supervisor dies with its parent), so nothing of it runs on.
    deadline = time.time() + 30
    while time.time() < deadline and runtime_processes(rid):
        time.sleep(0.3)
    assert not runtime_processes(rid)
