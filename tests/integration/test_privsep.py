"""Privilege separation of the local sandbox (issue 12, rows 1, 2, 12, 13):
the root server never follows a path a runtime can write, gives no recursive
chown walk per start, shows no host paths inside, and no runtime outlives
the process that is meant to end it. Real binary as root, real bubblewrap.

Run with Debian's python: /usr/bin/python3 -m pytest tests/integration/test_privsep.py
"""
import fcntl
import json
import os
import secrets
import select
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import (SERVER_KIND, _stop_server, find_pid_by_comm, kernel_host_pid, needs_root, needs_sandbox,
                      proc_alive, server_with_config, skylab_bin, wait_gone)

pytestmark = [pytest.mark.skipif(SERVER_KIND != "skylab", reason="Skylab runtimes"), needs_sandbox, needs_root]

SANDBOX = """
[runtimes]
sandbox = "bwrap"
"""


@pytest.fixture
def outside():
    """A root-owned directory outside any data directory (the attack target)."""
    d = tempfile.mkdtemp(prefix="skylab-privsep-target-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def sandbox_server():
    srv = server_with_config(SANDBOX)
    yield srv
    if srv.proc.poll() is None:
        _stop_server(srv)
    else:
        srv.cleanup_tmp()


def owners(root):
    """{path: uid} of everything below root (and root), symlinks not followed."""
    out = {root: os.lstat(root).st_uid}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            out[p] = os.lstat(p).st_uid
    return out


def start(srv):
    kid = srv.create_kernel()
    c = srv.connect(kid)
    c.nudge(timeout=60)
    return kid, c


# ---------------------------------------------------------------- row 1

def test_state_file_symlinks_do_not_redirect_root_writes(sandbox_server, outside):
    srv = sandbox_server
    target = os.path.join(outside, "victim")
    with open(target, "w") as f:
        f.write("untouched")
    os.chmod(target, 0o644)
    kid, c = start(srv)
    # What an attacker does: plant symlinks where the old server wrote its
    # temporary state file (the kernel's socket folder), and try the state
    # file's own folder too.
    r = c.execute("""
import os
conn = '/run/skylab/' + os.environ['SKYLAB_KERNEL_ID']
planted = []
for d in {conn, os.path.dirname(os.environ['SKYLAB_RUNTIME_STATE'])}:
    for n in ('state.json.tmp', 'state.json'):
        try:
            p = os.path.join(d, n)
            if os.path.lexists(p) and n == 'state.json.tmp':
                os.unlink(p)
            if not os.path.lexists(p):
                os.symlink(%r, p)
                planted.append(p)
        except OSError:
            pass
print(conn + '/state.json.tmp' in planted)
""" % target)
    assert r.status == "ok", r
    assert r.stdout.strip() == "True", r.stdout
    time.sleep(3)  # several lifecycle ticks rewrite the state file
    with open(target) as f:
        assert f.read() == "untouched"
    assert os.lstat(target).st_uid == 0
    # The state file itself: readable, not writable, by the runtime.
    r = c.execute("""
import os
try:
    open(os.environ['SKYLAB_RUNTIME_STATE'], 'a').close()
    print('state writable')
except OSError:
    print('state read-only')
""")
    assert r.stdout.strip() == "state read-only", r
    # The kernel still reads a fresh state.
    r = c.execute("import skylab.runtime; print(skylab.runtime.time_left() > 0)")
    assert r.stdout.strip() == "True", r


# ---------------------------------------------------------------- row 12

def test_no_host_paths_in_the_sandbox_cmdline_environment_or_open_files(sandbox_server):
    """What the sandbox's processes have open names no host path either: the
    kernel's log (its stdout and stderr, opened by the server in its data
    folder) reads as "/kernel-<id>.log"."""
    srv = sandbox_server
    kid, c = start(srv)
    r = c.execute("""
import os
print(repr(open('/proc/1/cmdline', 'rb').read()))
print(repr(open('/proc/self/environ', 'rb').read()))
links = []
for pid in [p for p in os.listdir('/proc') if p.isdigit()]:
    try:
        fds = os.listdir('/proc/%s/fd' % pid)
    except OSError:
        continue
    for fd in fds:
        try:
            links.append(os.readlink('/proc/%s/fd/%s' % (pid, fd)))
        except OSError:
            pass
print(repr(links))
""")
    assert r.status == "ok", r
    cmdline, environ, links = r.stdout.splitlines()[:3]
    assert "bwrap" in cmdline, cmdline
    assert "'/kernel-%s.log'" % kid in links, links  # the kernel's stdout, under its own name
    for host in (srv.data_dir, srv.tmp):
        assert host not in cmdline, cmdline
        assert host not in environ, environ
        assert host not in links, links


def test_the_runtime_uid_has_a_name_and_cannot_change_accounts(sandbox_server):
    """whoami, id -un, getpass and pwd name the runtime's uid (they failed
    with "cannot find name for user ID"); /etc/passwd stays read-only and the
    host's is untouched."""
    srv = sandbox_server
    host_passwd = open("/etc/passwd", "rb").read()
    kid, c = start(srv)
    r = c.execute("""
import getpass, os, pwd, subprocess
print(subprocess.run(['whoami'], capture_output=True, text=True).stdout.strip())
print(subprocess.run(['id', '-gn'], capture_output=True, text=True).stdout.strip())
e = pwd.getpwuid(os.getuid())
print(e.pw_name, e.pw_dir, getpass.getuser() == e.pw_name, os.getuid() >= 200000)
print(pwd.getpwnam('root').pw_uid)
try:
    open('/etc/passwd', 'a').write('x:x:0:0::/:/bin/sh\\n')
    print('wrote')
except OSError as err:
    print('refused', err.errno)
""")
    assert r.status == "ok", r
    who, group, entry, root_uid, write = r.stdout.splitlines()[:5]
    assert who and who == group, r.stdout
    name, home, same, high = entry.split()
    assert name == who and home == "/root" and same == "True" and high == "True", entry
    assert root_uid == "0"
    assert write.startswith("refused"), write
    assert open("/etc/passwd", "rb").read() == host_passwd


# ---------------------------------------------------------------- row 2

def test_ownership_is_set_at_creation_and_a_start_walks_nothing(sandbox_server, outside):
    srv = sandbox_server
    drive = os.path.join(srv.data_dir, "drive", "admin")
    os.makedirs(os.path.join(drive, "old"), exist_ok=True)
    # Left by an older version: root-owned files, a hard link to a root file
    # elsewhere and a symlink out of the Drive.
    with open(os.path.join(drive, "old", "a.txt"), "w") as f:
        f.write("a")
    secret = os.path.join(outside, "secret")
    with open(secret, "w") as f:
        f.write("s")
    os.link(secret, os.path.join(drive, "old", "hardlink"))
    os.symlink(outside, os.path.join(drive, "escape"))
    kid, c = start(srv)
    uid = int(c.execute("import os; print(os.getuid())").stdout)
    assert uid >= 200000
    # The one migration gave the old tree to the user, never what a link points at.
    assert os.lstat(drive).st_uid == uid
    assert os.lstat(os.path.join(drive, "old")).st_uid == uid
    assert os.lstat(os.path.join(drive, "old", "a.txt")).st_uid == uid
    assert os.lstat(secret).st_uid == 0
    assert set(owners(outside).values()) == {0}
    # Files the server writes into the Drive later are the user's at once.
    r = srv.http.put(srv.url("/api/contents/api-made.txt"),
                     json={"type": "file", "format": "text", "content": "hi"}, timeout=30)
    assert r.status_code in (200, 201), r.text
    assert os.lstat(os.path.join(drive, "api-made.txt")).st_uid == uid
    assert c.execute("open('/content/drive/api-made.txt', 'a').write('!')").status == "ok"
    # After the migration, a start does no walk: a root-owned file made by hand
    # keeps its owner (the old server chowned the whole Drive at every start).
    planted = os.path.join(drive, "old", "root-made.txt")
    with open(planted, "w") as f:
        f.write("r")
    kid2, c2 = start(srv)
    assert os.lstat(planted).st_uid == 0
    assert os.path.isfile(os.path.join(srv.data_dir, "runtime", "ownership-migrated", "admin"))


def test_swapping_drive_dirs_for_symlinks_during_starts_gives_nothing_away(sandbox_server, outside):
    srv = sandbox_server
    for i in range(3000):
        with open(os.path.join(outside, "f%04d" % i), "w") as f:
            f.write("x")
    kid, c = start(srv)
    # The attacker's runtime swaps a Drive folder full of files for a symlink
    # to the root-owned target, over and over, while other runtimes start.
    r = c.execute("""
import ctypes, os, threading
os.makedirs('/content/drive/swap', exist_ok=True)
for i in range(3000):
    open('/content/drive/swap/f%%04d' %% i, 'w').close()
if not os.path.lexists('/content/drive/swap.link'):
    os.symlink(%r, '/content/drive/swap.link')
libc = ctypes.CDLL(None, use_errno=True)
stop = False
def loop():
    # renameat2(RENAME_EXCHANGE): 'swap' is the folder, then the symlink, then the folder...
    while not stop:
        libc.renameat2(-100, b'/content/drive/swap', -100, b'/content/drive/swap.link', 2)
t = threading.Thread(target=loop, daemon=True)
t.start()
print('swapping')
""" % outside)
    assert r.stdout.strip() == "swapping", r
    for _ in range(4):
        kid2, c2 = start(srv)
        srv.delete_kernel(kid2)
    c.execute("stop = True; t.join()")
    assert set(owners(outside).values()) == {0}


# ---------------------------------------------------------------- row 13

NOTEBOOK_CELLS = [
    "import ctypes\nctypes.CDLL(None).prctl(15, b'%s', 0, 0, 0)\nprint('tagged')",
    "import time\ntime.sleep(120)",
]


def write_notebook(path, tag):
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
          "cells": [{"cell_type": "code", "id": "c%d" % i, "metadata": {}, "execution_count": None,
                     "outputs": [], "source": src % tag.encode().decode() if "%s" in src else src}
                    for i, src in enumerate(NOTEBOOK_CELLS)]}
    with open(path, "w") as f:
        json.dump(nb, f)


def run_until_sleeping(tmp_path, tag, runtime):
    nb = tmp_path / "sleeps.ipynb"
    write_notebook(nb, tag)
    args = [skylab_bin(), "run", str(nb)]
    if runtime:
        args += ["--runtime", "cpu", "--data-dir", str(tmp_path / "data"), "--user", "alice"]
    # Its private temporary folder in tmp_path: a SIGKILLed run cannot remove it.
    env = dict(os.environ, TMPDIR=str(tmp_path))
    p = subprocess.Popen(args, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=env)
    seen = ""
    deadline = time.monotonic() + 90
    while "[1/2]" not in seen and time.monotonic() < deadline and p.poll() is None:
        ready, _, _ = select.select([p.stderr], [], [], 1)
        if ready:
            line = p.stderr.readline()
            if not line:
                break
            seen += line
    assert "[1/2] ok" in seen, seen
    pid = None
    for _ in range(50):
        pid = find_pid_by_comm(tag)
        if pid:
            break
        time.sleep(0.1)
    assert pid, "the kernel (thread %s) was not found" % tag
    return p, pid


@pytest.mark.parametrize("runtime", [False, True], ids=["plain", "sandboxed"])
def test_skylab_run_sigterm_ends_its_kernel(tmp_path, runtime):
    tag = "pt" + secrets.token_hex(5)
    p, pid = run_until_sleeping(tmp_path, tag, runtime)
    p.send_signal(signal.SIGTERM)
    rest = p.communicate(timeout=60)[1]
    assert p.returncode == 143, rest
    assert (tmp_path / "sleeps.out.ipynb").exists()
    assert not wait_gone([pid], timeout=15), "kernel %d outlived skylab run" % pid


@pytest.mark.parametrize("runtime", [False, True], ids=["plain", "sandboxed"])
def test_skylab_run_sigkill_takes_its_kernel_along(tmp_path, runtime):
    tag = "pk" + secrets.token_hex(5)
    p, pid = run_until_sleeping(tmp_path, tag, runtime)
    p.kill()
    p.wait(timeout=10)
    assert not wait_gone([pid], timeout=15), "kernel %d outlived a SIGKILLed skylab run" % pid


def test_a_run_removes_what_killed_runs_left_and_nothing_else(tmp_path):
    """A SIGKILLed `skylab run` cannot remove its private folder (connection
    file, kernel log). The user's next run removes it: its lock is free. A
    live run's folder (locked), one just made, another user's, and a symlink
    to elsewhere with the same prefix are left as they are."""
    p, pid = run_until_sleeping(tmp_path, "pw" + secrets.token_hex(5), False)
    p.kill()
    p.wait(timeout=10)
    assert not wait_gone([pid], timeout=15)
    dead = [d for d in tmp_path.iterdir() if d.name.startswith("skylab-run-")]
    assert len(dead) == 1 and dead[0].is_dir() and any(dead[0].iterdir()), dead
    old = time.time() - 60
    os.utime(dead[0], (old, old))
    live = tmp_path / "skylab-run-live"
    live.mkdir(mode=0o700)
    os.utime(live, (old, old))
    held = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(held, fcntl.LOCK_EX)
    (tmp_path / "skylab-run-fresh").mkdir(mode=0o700)
    other = tmp_path / "skylab-run-other"
    other.mkdir(mode=0o700)
    os.chown(other, 65534, 65534)
    os.utime(other, (old, old))
    target = tmp_path / "target"
    target.mkdir()
    (target / "file").write_text("kept")
    os.utime(target, (old, old))
    (tmp_path / "skylab-run-link").symlink_to(target)
    try:
        nb = tmp_path / "quick.ipynb"
        nb.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
            {"cell_type": "code", "id": "a", "metadata": {}, "execution_count": None, "outputs": [],
             "source": "print('quick')"}]}))
        r = subprocess.run([skylab_bin(), "run", str(nb), "--quiet"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120, env=dict(os.environ, TMPDIR=str(tmp_path)))
        assert r.returncode == 0, r.stderr
        left = sorted(d.name for d in tmp_path.iterdir() if d.name.startswith("skylab-run-"))
        assert left == ["skylab-run-fresh", "skylab-run-link", "skylab-run-live", "skylab-run-other"]
        assert (target / "file").read_text() == "kept"
    finally:
        os.close(held)


def _comm(pid):
    try:
        with open("/proc/%s/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return "?"


LIFETIME = """
[runtimes]
sandbox = "bwrap"
max_lifetime = "12s"
warning = "1s"
grace = "1s"
idle_timeout = "1h"
"""


def test_a_runtime_ends_at_its_lifetime_without_a_server():
    srv = server_with_config(LIFETIME)
    try:
        kid, c = start(srv)
        pid = kernel_host_pid(c)
        c.close()
        srv.clients.clear()
        srv.kill()  # SIGKILL: the server never comes back
        assert proc_alive(pid)
        # max_lifetime + grace + the supervisor's slack, and then some.
        assert not wait_gone([pid], timeout=60), "runtime outlived its lifetime with no server"
        # The supervisor empties the runtime's cgroups once its child is gone
        # (it is in them itself until it exits): wait for that, not longer.
        cg = [d for d in os.listdir("/sys/fs/cgroup/pids") if kid in d] if os.path.isdir("/sys/fs/cgroup/pids") else []
        left = {}
        for _ in range(150):
            left = {}
            for d in cg:
                try:
                    with open(os.path.join("/sys/fs/cgroup/pids", d, "cgroup.procs")) as f:
                        procs = f.read().split()
                except FileNotFoundError:
                    continue
                if procs:
                    left[d] = [(p, _comm(p)) for p in procs]
            if not left:
                break
            time.sleep(0.1)
        assert not left, "processes outlived their runtime: %r" % left
    finally:
        if srv.proc.poll() is None:
            _stop_server(srv)
        else:
            srv.cleanup_tmp()


def test_a_runtime_that_ends_by_itself_leaves_nothing_behind():
    """A kernel that exits on its own while no server is there to clean up:
    its supervisor ends what is left in the runtime's cgroup (the runtime's
    pasta, a process a cell started in a new session)."""
    srv = server_with_config(LIFETIME.replace('max_lifetime = "12s"', 'max_lifetime = "1h"'))
    try:
        kid, c = start(srv)
        pid = kernel_host_pid(c)
        res = c.execute("import os, subprocess, threading\n"
                        "subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
                        "threading.Timer(3, lambda: os._exit(0)).start()", timeout=60)
        assert res.status == "ok", (res.error, res.stderr)
        c.close()
        srv.clients.clear()
        cg = [d for d in os.listdir("/sys/fs/cgroup/pids") if kid in d] if os.path.isdir("/sys/fs/cgroup/pids") else []
        if not cg:
            pytest.skip("no pids cgroup to look into")
        procs = os.path.join("/sys/fs/cgroup/pids", cg[0], "cgroup.procs")
        with open(procs) as f:
            before = [int(p) for p in f.read().split()]
        assert len(before) > 3, before  # supervisor, pasta (isolated network), bwrap, kernel, sleep
        srv.kill()  # SIGKILL: nobody cleans up after the runtime
        assert not wait_gone([pid], timeout=30), "the kernel did not exit"
        assert not wait_gone(before, timeout=15), "left behind: %s" % [p for p in before if proc_alive(p)]
    finally:
        if srv.proc.poll() is None:
            _stop_server(srv)
        else:
            srv.cleanup_tmp()

