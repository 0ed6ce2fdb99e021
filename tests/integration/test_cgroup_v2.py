"""Runtimes' cgroups on a cgroup v2 host under systemd (issue 16).

systemd puts skylab.service's main process at the top of the unit's cgroup;
the kernel refuses to enable controllers below a cgroup that holds a process
("no internal processes"), so runtimes made below the server's own cgroup get
no memory/cpu/pids limits. The fix: skylab-runtimes.service's `skylab
cgroup-hold` keeps a cgroup free of processes with its controllers enabled,
and the server (`[runtimes] cgroup_parent`) makes runtimes' cgroups there.

This machine mounts cgroup v1 for memory/cpu/pids, with a cgroup2 hierarchy
beside it (/sys/fs/cgroup/unified) that offers the hugetlb controller. The
tests run the server and the holder in a private mount namespace where that
hierarchy is /sys/fs/cgroup, as on a v2 host, each in its own cgroup as
systemd would place a unit's main process, and check the delegation chain
with the controller the hierarchy offers (hugetlb). The limits themselves are
covered on v1 by test_limits.py.
"""
import os
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

from conftest import Server, skylab_bin, bwrap_works, proc_alive

UNIFIED = "/sys/fs/cgroup/unified"


def _unified_offers_a_controller():
    try:
        with open(os.path.join(UNIFIED, "cgroup.controllers")) as f:
            return bool(f.read().split())
    except OSError:
        return False


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.isfile(os.path.join(UNIFIED, "cgroup.procs")),
                       reason="no cgroup2 hierarchy beside cgroup v1 at %s" % UNIFIED),
    pytest.mark.skipif(not _unified_offers_a_controller(),
                       reason="the cgroup2 hierarchy offers no controller to delegate"),
]

# Runs a command in cgroup $1 (a path from the cgroup2 root), with the cgroup2
# hierarchy mounted at /sys/fs/cgroup in a private mount namespace: what
# systemd does for a unit's main process on a v2 host.
WRAPPER = """#!/bin/sh
cg="$1"; shift
echo $$ > %(unified)s"$cg"/cgroup.procs || exit 97
exec unshare -m --propagation private sh -c \
  'mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$0" "$@"' "$@"
"""


def _read(path):
    with open(path) as f:
        return f.read()


def _procs(cg):
    return [int(p) for p in _read(UNIFIED + cg + "/cgroup.procs").split()]


def _own_cgroup(pid):
    for line in _read("/proc/%d/cgroup" % pid).splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


def _rmtree_cgroup(cg):
    path = UNIFIED + cg
    if not os.path.isdir(path):
        return
    for root, dirs, _ in os.walk(path, topdown=False):
        for d in dirs:
            for _ in range(50):
                try:
                    os.rmdir(os.path.join(root, d))
                    break
                except OSError:
                    time.sleep(0.1)
    try:
        os.rmdir(path)
    except OSError:
        pass


@pytest.fixture
def cgroups(tmp_path):
    """Fresh top-level test cgroups ("units"), removed afterwards."""
    made = []
    tag = "skylab-test-" + uuid.uuid4().hex[:8]
    # systemd enables the controllers on the way down to a unit's cgroup; do
    # the same at the hierarchy's root (undone afterwards when we did it).
    root_ctl = UNIFIED + "/cgroup.subtree_control"
    enabled_here = []
    for c in _read(UNIFIED + "/cgroup.controllers").split():
        if c not in _read(root_ctl).split():
            with open(root_ctl, "w") as f:
                f.write("+" + c)
            enabled_here.append(c)

    def make(name):
        cg = "/%s-%s" % (tag, name)
        os.mkdir(UNIFIED + cg)
        made.append(cg)
        return cg

    wrapper = tmp_path / "in-cgroup"
    wrapper.write_text(WRAPPER % {"unified": UNIFIED})
    wrapper.chmod(0o755)
    make.wrapper = str(wrapper)
    yield make
    for cg in made:
        for pid in _procs_recursive(cg):
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        _rmtree_cgroup(cg)
    for c in enabled_here:
        try:
            with open(root_ctl, "w") as f:
                f.write("-" + c)
        except OSError:
            pass


def _procs_recursive(cg):
    out = []
    for root, _, files in os.walk(UNIFIED + cg):
        if "cgroup.procs" in files:
            try:
                out += [int(p) for p in _read(os.path.join(root, "cgroup.procs")).split()]
            except OSError:
                pass
    return out


class _ServerIn(Server):
    """A Skylab server started by the wrapper inside cgroup `cg`."""

    def __init__(self, wrapper, cg, config_text):
        fd, self.config_path = tempfile.mkstemp(prefix="skylab-test-", suffix=".toml")
        with os.fdopen(fd, "w") as f:
            f.write(config_text)
        self._wrapper, self._cg = wrapper, cg
        super().__init__(extra_args=("--config", self.config_path))

    def cleanup_tmp(self):
        try:
            os.unlink(self.config_path)
        except OSError:
            pass
        super().cleanup_tmp()


def _start_server(monkeypatch, wrapper, cg, config_text):
    # The Server class runs SKYLAB_BIN; point it at a script that runs the
    # real binary through the wrapper.
    real = skylab_bin()
    script = os.path.join(os.path.dirname(wrapper), "skylab-in-" + cg.strip("/"))
    with open(script, "w") as f:
        f.write('#!/bin/sh\nexec %s %s %s "$@"\n' % (wrapper, cg, real))
    os.chmod(script, 0o755)
    monkeypatch.setenv("SKYLAB_BIN", script)
    return _ServerIn(wrapper, cg, config_text)


def _start_hold(wrapper, cg, env=None):
    p = subprocess.Popen([wrapper, cg, skylab_bin(), "cgroup-hold"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=env)
    # Ready when its cgroup holds no process and the leaf does.
    deadline = time.time() + 10
    while time.time() < deadline:
        if os.path.isdir(UNIFIED + cg + "/hold") and _procs(cg + "/hold") and not _procs(cg):
            return p
        if p.poll() is not None:
            break
        time.sleep(0.05)
    out = p.stdout.read().decode(errors="replace") if p.poll() is not None else ""
    p.kill()
    pytest.fail("cgroup-hold did not take its leaf: %s" % out)


def _runtime_cgroup(server, kid):
    """The cgroup v2 path of kernel `kid`'s sandbox, from its processes."""
    r = server.get("/api/kernels/" + kid)
    assert r.status_code == 200
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cg = _own_cgroup(int(pid))
        except OSError:
            continue
        if cg and cg.endswith("/skylab-" + kid):
            return cg
    return None


def _stop(server):
    for c in server.clients:
        c.close()
    for kid in list(server.kernels):
        server.delete_kernel(kid)
    code = server.terminate()
    server.cleanup_tmp()
    return code


def test_hold_takes_a_leaf_and_delegates_every_controller(cgroups):
    unit = cgroups("runtimes")
    hold = _start_hold(cgroups.wrapper, unit)
    try:
        offered = _read(UNIFIED + unit + "/cgroup.controllers").split()
        assert offered, "the test hierarchy offers no controller"
        enabled = _read(UNIFIED + unit + "/cgroup.subtree_control").split()
        assert sorted(enabled) == sorted(offered)
        assert _procs(unit) == []
        assert _own_cgroup(hold.pid) is not None
        # SIGTERM ends it cleanly (systemctl stop).
        hold.terminate()
        assert hold.wait(timeout=10) == 0
    finally:
        if hold.poll() is None:
            hold.kill()


def test_hold_tells_systemd_it_is_ready(cgroups, tmp_path):
    unit = cgroups("notify")
    sock_path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sock_path)
    s.settimeout(10)
    hold = _start_hold(cgroups.wrapper, unit, env=dict(os.environ, NOTIFY_SOCKET=sock_path))
    try:
        assert s.recv(4096) == b"READY=1"
        hold.terminate()
        assert s.recv(4096) == b"STOPPING=1"
        assert hold.wait(timeout=10) == 0
    finally:
        s.close()
        if hold.poll() is None:
            hold.kill()


def test_hold_in_the_root_cgroup_refuses(tmp_path):
    # Not under a unit (the root cgroup): it says so instead of holding "/".
    script = tmp_path / "root-hold"
    script.write_text("#!/bin/sh\nexec unshare -m --propagation private sh -c "
                      "'mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec \"$0\" cgroup-hold' %s\n"
                      % skylab_bin())
    script.chmod(0o755)
    if _own_cgroup(os.getpid()) != "/":
        pytest.skip("this test process is not in the cgroup2 root")
    r = subprocess.run([str(script)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "root cgroup" in r.stderr


def test_config_refuses_a_bad_cgroup_parent(tmp_path):
    for bad in ("relative/path", "/a/../b", "/a//b", "/a/", "/a b", "/a/./b"):
        cfg = tmp_path / "bad.toml"
        cfg.write_text('[runtimes]\ncgroup_parent = "%s"\n' % bad)
        r = subprocess.run([skylab_bin(), "serve", "--config", str(cfg), "--port", "0",
                            "--data-dir", str(tmp_path / "d")],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0, bad
        assert "runtimes.cgroup_parent" in r.stderr, (bad, r.stderr)


@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot create sandboxes here")
def test_below_the_servers_own_cgroup_no_controller_reaches_runtimes(cgroups, monkeypatch):
    # Today's layout under systemd: the server at the top of its unit's cgroup.
    unit = cgroups("server-alone")
    srv = _start_server(monkeypatch, cgroups.wrapper, unit, '[runtimes]\nsandbox = "bwrap"\n')
    try:
        kid = srv.create_kernel()
        assert srv.connect(kid).execute("1+1").status == "ok"
        cg = _runtime_cgroup(srv, kid)
        assert cg == unit + "/skylab/skylab-" + kid
        assert _read(UNIFIED + cg + "/cgroup.controllers").split() == []
        assert "controllers cannot be enabled below " + unit in srv.log_text(200000)
    finally:
        assert _stop(srv) == 0


@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot create sandboxes here")
def test_runtimes_below_cgroup_parent_get_the_controllers_and_survive_a_restart(
        cgroups, monkeypatch):
    runtimes_unit = cgroups("runtimes")
    server_unit = cgroups("server")
    hold = _start_hold(cgroups.wrapper, runtimes_unit)
    srv = None
    try:
        srv = _start_server(monkeypatch, cgroups.wrapper, server_unit,
                            '[runtimes]\nsandbox = "bwrap"\ncgroup_parent = "%s"\n'
                            % runtimes_unit)
        assert "controllers cannot be enabled" not in srv.log_text(200000)
        kid = srv.create_kernel()
        assert srv.connect(kid).execute("x = 41").status == "ok"
        cg = _runtime_cgroup(srv, kid)
        assert cg == runtimes_unit + "/skylab/skylab-" + kid
        offered = _read(UNIFIED + runtimes_unit + "/cgroup.controllers").split()
        assert sorted(_read(UNIFIED + cg + "/cgroup.controllers").split()) == sorted(offered)
        # Nothing of the runtime is in the server's unit, nothing in the held cgroup itself.
        assert _procs(runtimes_unit) == []
        runtime_pids = _procs(cg)
        assert runtime_pids

        # systemctl restart skylab: the server goes (SIGKILL here), the runtime stays.
        srv.kill()
        assert all(proc_alive(p) for p in runtime_pids)
        srv.restart()
        r = srv.connect(kid).execute("print(x + 1)")
        assert r.status == "ok" and r.stdout.strip() == "42"
        # A new runtime after the restart goes to the same place.
        kid2 = srv.create_kernel()
        assert srv.connect(kid2).execute("1").status == "ok"
        assert _runtime_cgroup(srv, kid2) == runtimes_unit + "/skylab/skylab-" + kid2
        assert _stop(srv) == 0
        srv = None
    finally:
        if srv is not None:
            srv.kill()
            srv.cleanup_tmp()
        hold.terminate()
        hold.wait(timeout=10)


@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot create sandboxes here")
def test_a_missing_cgroup_parent_refuses_runtimes_with_a_clear_error(cgroups, monkeypatch):
    # skylab-runtimes.service is not running: no runtime starts without its limits.
    unit = cgroups("server-only")
    srv = _start_server(monkeypatch, cgroups.wrapper, unit,
                        '[runtimes]\nsandbox = "bwrap"\ncgroup_parent = "/no-such-unit.service"\n')
    try:
        r = srv.post("/api/kernels", json={"name": "python3"})
        assert r.status_code >= 500, (r.status_code, r.text)
        assert "skylab-runtimes.service" in r.text
        assert not os.path.exists(UNIFIED + "/no-such-unit.service")
    finally:
        assert _stop(srv) == 0
