"""Instant runtimes (issue 17): kernels forked from a pre-imported template
into a sandbox that bubblewrap built. A forked kernel must be confined
exactly as a bubblewrap kernel is (uid, no capabilities, no_new_privs,
seccomp, pid/mount namespaces, cgroup), never reach the template, and the
template must survive whatever its kernels do; when it cannot serve, kernels
start as before.

Real binary as root, real bubblewrap, real cgroups. The isolation suites
(test_isolation.py, test_privsep.py, test_limits.py) run unchanged with
SKYLAB_RUNTIME_TEMPLATE=1 as well.

Run with Debian's python: /usr/bin/python3 -m pytest tests/integration/test_template.py
"""
import glob
import os
import re
import secrets
import signal
import time

import pytest
import requests

import kclient
from conftest import (SERVER_KIND, _stop_server, kernel_host_pid, needs_root, needs_sandbox,
                      proc_alive, server_with_config)
from test_accounts import add_user, new_token, token_session

pytestmark = [pytest.mark.skipif(SERVER_KIND != "skylab", reason="Skylab runtimes"), needs_sandbox, needs_root]

CONFIG = """
[runtimes]
sandbox = "bwrap"
template = true
[runtime_types.cpu]
memory = "1G"
[runtime_types.small]
memory = "300M"
[runtime_types.gpu]
gpus = 1
[gpus]
fake = 1
"""

# What the kernel reports about itself, printed as one line of key=value.
PROBE = r"""
import os, sys, json
_st = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines() if ':' in l)
_procs = []
for _p in os.listdir('/proc'):
    if _p.isdigit():
        try:
            _procs.append((int(_p), open('/proc/%s/cmdline' % _p, 'rb').read().replace(b'\0', b' ').decode()))
        except OSError:
            pass
print(json.dumps({
    'preloaded': [m for m in ('numpy', 'torch', 'pandas') if m in _START_MODULES],
    'uid': os.getresuid(), 'gid': os.getresgid(), 'groups': os.getgroups(),
    'cap_eff': _st['CapEff'].strip(), 'nnp': _st['NoNewPrivs'].strip(), 'seccomp': _st['Seccomp'].strip(),
    'ppid': os.getppid(), 'procs': _procs, 'cwd': os.getcwd(), 'sys_path': sys.path,
    'env': dict(os.environ), 'fds': sorted(int(f) for f in os.listdir('/proc/self/fd')),
    'mounts': sorted(' '.join(l.split()[4:6]) + ' ' + l.split(' - ')[1].split()[0]
                     for l in open('/proc/self/mountinfo')),
}))
"""


@pytest.fixture(scope="module")
def tsrv():
    # Each start's steps in its kernel log (test_a_start_finishes_the_network_before_the_kernel).
    os.environ["SKYLAB_TEMPLATE_TRACE"] = "1"
    try:
        srv = server_with_config(CONFIG)
    finally:
        del os.environ["SKYLAB_TEMPLATE_TRACE"]
    yield srv
    if srv.proc.poll() is None:
        _stop_server(srv)
    else:
        srv.cleanup_tmp()


def template_pids(srv):
    return [int(p) for p in re.findall(r"runtime template: ready \[[^\]]*\] pid (\d+)", srv.log_text(10 ** 7))]


def stat_fields(pid):
    """/proc/PID/stat after the command name: [state, ppid, ...] (field 3 on)."""
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    return s[s.rindex(")") + 2:].split()


def ppid(pid):
    return int(stat_fields(pid)[1])


def start(srv, token=None, type_=None):
    """A new runtime's kernel (as the admin, or the user of `token`); returns (kid, client, probe)."""
    http = token_session(token) if token else srv.http
    body = {"name": "python3"}
    if type_:
        r = http.post(srv.url("/api/skylab/runtimes"), json={"type": type_}, timeout=60)
        assert r.status_code == 201, r.text
        kid = r.json()["id"]
    else:
        r = http.post(srv.url("/api/kernels"), json=body, timeout=60)
        assert r.status_code == 201, r.text
        kid = r.json()["id"]
    srv.kernels.append(kid)
    c = kclient.KernelClient(srv.ws_base, kid, token or srv.token)
    srv.clients.append(c)
    c.nudge(timeout=60)
    # sys.modules as the kernel's first cell finds it (before the probe imports anything).
    c.eval_ok("import sys as _s; _START_MODULES = set(_s.modules)")
    return kid, c, probe(c)


def probe(c):
    import json
    r = c.eval_ok(PROBE)
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_a_forked_kernel_is_confined_like_a_bubblewrap_kernel(tsrv):
    assert template_pids(tsrv), tsrv.log_text()
    tpid = template_pids(tsrv)[-1]
    kid, c, p = start(tsrv)
    # It was forked from the template: the preloaded modules were there before any cell.
    assert p["preloaded"] == ["numpy", "torch", "pandas"], p["preloaded"]
    host = kernel_host_pid(c)
    assert ppid(host) == tpid  # reaped by the template (subreaper), not by anything in the sandbox
    # The runtime's uid and gid, no groups, no capabilities, no_new_privs, the seccomp filter.
    uid = p["uid"][0]
    assert uid >= 200000 and p["uid"] == [uid] * 3 and p["gid"] == [uid] * 3 and p["groups"] == []
    assert p["cap_eff"] == "0000000000000000" and p["nnp"] == "1" and p["seccomp"] == "2"
    # Its own pid namespace: the parent is outside (0), the template and the host are not visible.
    assert p["ppid"] == 0
    assert all("template" not in cmd and "skylab serve" not in cmd for _, cmd in p["procs"]), p["procs"]
    assert len(p["procs"]) <= 4, p["procs"]  # bwrap's init, the holder, the kernel (+ its helpers)
    # The runtime's cgroup.
    with open("/proc/%d/cgroup" % host) as f:
        assert "skylab-" + kid in f.read()
    # Only its own fds (no template socket, no listening socket), the runtime's environment.
    assert "SKYLAB_ADMIN_TOKEN" not in p["env"] and p["env"]["SKYLAB_KERNEL_ID"] == kid
    assert p["env"]["HOME"] == "/root" and p["cwd"] == "/content"
    assert p["env"].get("MPLBACKEND") in (None, "module://matplotlib_inline.backend_inline")
    r = c.eval_ok("import os\nprint([os.readlink('/proc/self/fd/' + d) for d in os.listdir('/proc/self/fd') if os.path.exists('/proc/self/fd/' + d)])\n"
                  "print(open('/proc/self/cmdline', 'rb').read(), open('/proc/self/environ', 'rb').read())")
    fds, shown = r.stdout.splitlines()[:2]
    assert "template" not in fds and ".sock" not in fds, fds
    # Its priority is a bubblewrap kernel's (the template imports at nice 10, serves at 0).
    assert c.eval_ok("import os; print(os.getpriority(os.PRIO_PROCESS, 0))").stdout.strip() == "0"
    for host in (tsrv.data_dir, tsrv.tmp):  # its command line and environment are the kernel's
        assert host not in shown, shown
    assert "ipykernel_launcher" in shown and "SKYLAB_KERNEL_ID=" + kid in shown, shown
    # The template is unreachable: its socket is not in the sandbox, its pid not in this namespace.
    r = c.execute("import os; os.kill(%d, 0)" % tpid)
    assert r.status == "error"  # ESRCH (or EPERM): no such process here
    # Numerical libraries work after the fork (no hung OpenBLAS/OpenMP pools).
    r = c.eval_ok("import numpy as np, torch\na = np.ones((300, 300)); print((a @ a).sum())\n"
                  "print(float(torch.ones(200, 200).matmul(torch.ones(200, 200)).sum()))\n"
                  "print(torch.cuda.is_initialized())", timeout=120)
    assert r.stdout.split() == ["27000000.0", "8000000.0", "False"], r.stdout


def test_a_start_finishes_the_network_before_the_kernel(tsrv):
    # pasta configures the runtime's network while bubblewrap builds the
    # sandbox; its routes must be in place before the kernel is forked into it.
    kid, c, p = start(tsrv)
    assert p["preloaded"], p
    steps = re.findall(r"skylab (?:sandbox-exec|template): [-+0-9.]+ ms (.*) \(at ([0-9.]+)\)",
                       kernel_log(tsrv, kid))
    at = {step: float(t) for step, t in steps}
    order = ["supervisor started", "joined the cgroups", "started pasta, seccomp filter",
             "started bubblewrap", "the holder is ready (bubblewrap built the sandbox)",
             "the network is ready (pasta, prohibit routes)", "opened the sandbox",
             "joined the sandbox (cgroups, namespaces, root)",
             "kernel: dropped to the user, filter set, checks done", "kernel app: initialize"]
    assert [s for s in order if s not in at] == [], steps
    times = [at[s] for s in order]
    assert times == sorted(times), list(zip(order, times))


def kernel_log(srv, kid):
    logs = glob.glob(os.path.join(srv.data_dir, "**", "kernel-%s.log" % kid), recursive=True)
    assert logs, kid
    with open(logs[0], errors="replace") as f:
        return f.read()


SHELL_PROBE = r"""
import json, os, sys
ip = get_ipython()
ip.history_manager.writeout_cache()
print(json.dumps({
    'profile': ip.profile_dir.location, 'ipython_dir': ip.ipython_dir,
    'history': [ip.history_manager.enabled, str(ip.history_manager.hist_file),
                [r[2] for r in ip.history_manager.search('*HISTORY' + '-MARK*')]],
    'dh': [str(d) for d in _dh], 'starting_dir': ip.starting_dir, 'home_dir': ip.home_dir,
    'db': str(ip.db.root), 'main': sys.modules['__main__'] is ip.user_module,
    'kernel': ip.kernel.shell is ip and ip.parent is ip.kernel,
    'env': [os.environ.get(k) for k in ('TERM', 'CLICOLOR', 'PAGER', 'GIT_PAGER')],
    'home': os.path.expanduser('~'), 'startup': globals().get('FROM_THE_PROFILE'),
}))
"""


def shell_probe(c):
    import json
    c.eval_ok("'HISTORY-MARK'")
    return json.loads(c.eval_ok(SHELL_PROBE).stdout.strip().splitlines()[-1])


def restart(srv, token, kid, c):
    r = token_session(token).post(srv.url("/api/kernels/%s/restart" % kid), timeout=120)
    assert r.status_code == 200, r.text
    c.nudge(timeout=60)


TOOK = "kernel app: took the template's shell"


def test_a_forked_kernel_makes_the_templates_shell_its_users(tsrv):
    """The template builds the IPython shell once (no user, history off);
    each forked kernel takes it over with its user's IPython folder,
    profile (startup files), history database, environment and __main__,
    as a shell built in the kernel would have them."""
    name = "tpl" + secrets.token_hex(3)
    add_user(tsrv, name, "password-" + name)
    tok = new_token(tsrv, name)
    kid, c, p = start(tsrv, token=tok)
    assert p["preloaded"]
    assert kernel_log(tsrv, kid).count(TOOK) == 1
    s1 = shell_probe(c)
    home = s1["home"]
    assert s1["home_dir"] == home
    assert s1["ipython_dir"] == home + "/.ipython"  # not the template's (in the server's state)
    assert s1["profile"] == home + "/.ipython/profile_default"
    assert s1["db"] == s1["profile"] + "/db"
    enabled, hist_file, found = s1["history"]
    assert enabled and hist_file == s1["profile"] + "/history.sqlite", s1["history"]
    assert found == ["'HISTORY-MARK'"], found  # in the user's own history database
    assert s1["dh"] == ["/content"] and s1["starting_dir"] == "/content"
    assert s1["main"] and s1["kernel"]
    assert s1["env"] == ["xterm-color", "1", "cat", "cat"]
    # Magics that use what was redone: the directory history, %reset, the shell's own ns.
    r = c.eval_ok("%cd /tmp\n%cd -0\nimport os; print(os.getcwd(), len(_dh))")
    assert r.stdout.split()[-2:] == ["/content", "3"], r.stdout
    c.eval_ok("mine = 1")
    r = c.eval_ok("%reset -f\nprint('mine' in globals(), len(In) > 1, get_ipython().user_ns is globals())")
    assert r.stdout.split()[-3:] == ["False", "True", "True"], r.stdout
    r = c.eval_ok("!echo from-a-shell\n%load_ext autoreload\nprint(get_ipython().extension_manager.loaded)")
    assert "from-a-shell" in r.stdout and "autoreload" in r.stdout, r.stdout
    # The profile is the user's: its startup files run when the kernel restarts (a new fork).
    c.eval_ok("import os\nd = get_ipython().profile_dir.startup_dir\nos.makedirs(d, exist_ok=True)\n"
              "open(os.path.join(d, '00-mine.py'), 'w').write('FROM_THE_PROFILE = 42\\n')")
    restart(tsrv, tok, kid, c)
    assert kernel_log(tsrv, kid).count(TOOK) == 2
    s2 = shell_probe(c)
    assert s2["startup"] == 42
    assert s2["history"][2] == ["'HISTORY-MARK'"] * 2  # the session before and this one


def test_a_user_with_ipython_config_gets_a_shell_built_for_it(tsrv):
    """Configuration (here ipython_kernel_config.py in the profile) applies
    when a shell is built, so such a kernel builds its own instead of taking
    the template's, and the configuration holds."""
    name = "tpl" + secrets.token_hex(3)
    add_user(tsrv, name, "password-" + name)
    tok = new_token(tsrv, name)
    kid, c, _ = start(tsrv, token=tok)
    r = c.execute("1\n2")
    assert [m["content"]["data"]["text/plain"] for m in r.of_type("execute_result")] == ["2"]
    c.eval_ok("import os\nd = get_ipython().profile_dir.location\n"
              "open(os.path.join(d, 'ipython_kernel_config.py'), 'w').write("
              "'c.InteractiveShell.ast_node_interactivity = \"all\"\\n')")
    restart(tsrv, tok, kid, c)
    c.eval_ok("import sys as _s; assert 'torch' in _s.modules")  # still forked from the template
    log = kernel_log(tsrv, kid)
    assert log.count(TOOK) == 1 and "kernel app: builds its own shell (IPython config files:" in log, log
    r = c.execute("1\n2")
    assert [m["content"]["data"]["text/plain"] for m in r.of_type("execute_result")] == ["1", "2"], r
    s2 = shell_probe(c)
    assert s2["history"][0] and s2["history"][2] and s2["main"] and s2["kernel"]


def test_two_forked_kernels_do_not_share_randomness_or_processes(tsrv):
    name = "tpl" + secrets.token_hex(3)
    add_user(tsrv, name, "password-" + name)
    tok = new_token(tsrv, name)
    _, a, pa = start(tsrv)
    _, b, pb = start(tsrv, token=tok)
    assert pa["preloaded"] and pb["preloaded"]
    assert pa["uid"] != pb["uid"]
    code = ("import numpy, random, uuid, torch\n"
            "print(numpy.random.rand(), random.random(), uuid.uuid4(), torch.rand(1).item(), torch.initial_seed())")
    ra, rb = a.eval_ok(code).stdout.split(), b.eval_ok(code).stdout.split()
    assert all(x != y for x, y in zip(ra, rb)), (ra, rb)
    # Neither sees the other's processes (own pid namespaces): same small pid numbers, each its own.
    ha, hb = kernel_host_pid(a), kernel_host_pid(b)
    assert ha != hb
    r = b.execute("import os; print(open('/proc/%d/cmdline').read())" % ha)
    assert r.status == "error" or "ipykernel" not in r.stdout


def test_a_kernel_that_kills_itself_leaves_the_template_alive(tsrv):
    tpid = template_pids(tsrv)[-1]
    kid, c, p = start(tsrv)
    assert p["preloaded"]
    host = kernel_host_pid(c)
    c.execute_request("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    deadline = time.monotonic() + 60
    while proc_alive(host) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not proc_alive(host)
    assert proc_alive(tpid)
    # The next runtime is forked from the same template.
    _, c2, p2 = start(tsrv)
    assert p2["preloaded"] and ppid(kernel_host_pid(c2)) == tpid


def test_the_memory_limit_kills_only_that_kernel(tsrv):
    tpid = template_pids(tsrv)[-1]
    kid, c, p = start(tsrv, type_="small")
    assert p["preloaded"]
    host = kernel_host_pid(c)
    c.execute_request("x = bytearray(800 << 20); x[::4096] = b'1' * len(x[::4096])")
    deadline = time.monotonic() + 120
    while proc_alive(host) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not proc_alive(host)
    assert proc_alive(tpid)
    deadline = time.monotonic() + 60
    while "out of memory" not in tsrv.log_text(10 ** 7) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "out of memory" in tsrv.log_text(10 ** 7)


def test_the_user_site_and_mounts_match_and_a_shadowed_package_falls_back(tsrv):
    """A forked kernel sees what a bubblewrap kernel sees (sys.path with the
    user's site, mounts); a user who installed their own copy of a preloaded
    package gets today's path, which imports their copy."""
    name = "tpl" + secrets.token_hex(3)
    add_user(tsrv, name, "password-" + name)
    tok = new_token(tsrv, name)
    _, c1, p1 = start(tsrv, token=tok)
    assert p1["preloaded"]
    c1.eval_ok("import os, site\nd = site.getusersitepackages(); os.makedirs(d + '/mine', exist_ok=True)\n"
               "open(d + '/mine/__init__.py', 'w').write('X = 1\\n')")
    _, c2, p2 = start(tsrv, token=tok)
    assert p2["preloaded"]  # a user site without preloaded names: still forked
    c2.eval_ok("import mine; assert mine.X == 1")
    c2.eval_ok("import os, site\nd = site.getusersitepackages(); os.makedirs(d + '/pandas', exist_ok=True)\n"
               "open(d + '/pandas/__init__.py', 'w').write('MINE = True\\n')")
    _, c3, p3 = start(tsrv, token=tok)
    assert p3["preloaded"] == []  # today's path
    c3.eval_ok("import pandas; assert pandas.MINE")
    assert p2["sys_path"] == p3["sys_path"], (p2["sys_path"], p3["sys_path"])
    def mounts(p):
        return sorted(m.replace(p["env"]["SKYLAB_KERNEL_ID"], "KID") for m in p["mounts"])
    assert mounts(p2) == mounts(p3), (mounts(p2), mounts(p3))
    env2 = {k: v.replace(p2["env"]["SKYLAB_KERNEL_ID"], "KID") for k, v in p2["env"].items()}
    env3 = {k: v.replace(p3["env"]["SKYLAB_KERNEL_ID"], "KID") for k, v in p3["env"].items()}
    assert env2 == env3


def test_a_crashed_template_falls_back_then_comes_back(tsrv):
    old = template_pids(tsrv)[-1]
    os.kill(old, signal.SIGKILL)
    # Meanwhile runtimes start as before.
    _, c, p = start(tsrv)
    assert p["preloaded"] == []
    c.eval_ok("import numpy; print(numpy.ones(3).sum())")
    deadline = time.monotonic() + 120
    while template_pids(tsrv)[-1] == old and time.monotonic() < deadline:
        time.sleep(0.2)
    new = template_pids(tsrv)[-1]
    assert new != old and proc_alive(new)
    _, c2, p2 = start(tsrv)
    assert p2["preloaded"] and ppid(kernel_host_pid(c2)) == new


def test_a_package_change_restarts_the_template(tsrv):
    """pip or apt changed what `import` finds: new kernels must not get the old modules."""
    old = template_pids(tsrv)[-1]
    site = "/usr/local/lib/python3.11/dist-packages"
    if not os.path.isdir(site):
        site = "/usr/lib/python3/dist-packages"
    st = os.stat(site)
    try:
        os.utime(site, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        deadline = time.monotonic() + 120
        while template_pids(tsrv)[-1] == old and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        os.utime(site, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert "the Python packages changed" in tsrv.log_text(10 ** 7)
    new = template_pids(tsrv)[-1]
    assert new != old and not proc_alive(old)
    _, c, p = start(tsrv)
    assert p["preloaded"] and ppid(kernel_host_pid(c)) == new


SEEDED = r"""
import torch, numpy, random
torch.manual_seed(0); numpy.random.seed(0); random.seed(0)
m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
opt = torch.optim.SGD(m.parameters(), lr=0.1)
x, y = torch.randn(32, 8), torch.randn(32, 2)
for _ in range(5):
    opt.zero_grad(); loss = torch.nn.functional.mse_loss(m(x), y); loss.backward(); opt.step()
print(repr([[p.sum().item() for p in m.parameters()], loss.item(), numpy.random.rand(), random.random()]))
"""


def test_same_seeds_give_the_same_weights_as_a_fresh_python(tsrv):
    """What a course notebook computes from its seeds does not depend on being
    forked, nor on the template having given back its libraries' start pages."""
    tpid = template_pids(tsrv)[-1]
    with open(os.path.join(tsrv.data_dir, "run", "template-0.log"), errors="replace") as f:
        assert "gave back the library pages only the imports used" in f.read()
    assert template_only_file_mib(tpid) < 20  # ~100 MiB of torch's libraries without
    _, c, p = start(tsrv)
    assert p["preloaded"]
    forked = c.eval_ok(SEEDED, timeout=120).stdout.strip().splitlines()[-1]
    assert forked == seeded_in_a_fresh_python()


def template_only_file_mib(pid):
    """MiB of file pages that only `pid` maps, in mappings without copied pages."""
    total, pc, anon, is_file = 0, 0, 0, False
    with open("/proc/%d/smaps" % pid) as f:
        for line in f.read().splitlines() + ["end-of-smaps x"]:
            head, _, rest = line.partition(" ")
            if not head.endswith(":"):
                total += pc if is_file and not anon else 0
                fields = rest.split()
                is_file, pc, anon = len(fields) >= 5 and fields[4].startswith("/"), 0, 0
            elif head == "Private_Clean:":
                pc = int(rest.split()[0])
            elif head == "Anonymous:":
                anon = int(rest.split()[0])
    return total / 1024


def seeded_in_a_fresh_python():
    """The last line SEEDED prints in a fresh /usr/bin/python3 (no template, no GPU)."""
    import subprocess
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "CUDA_VISIBLE_DEVICES": ""}
    fresh = subprocess.run(["/usr/bin/python3", "-c", SEEDED], capture_output=True, text=True,
                           env=env, timeout=300)
    assert fresh.returncode == 0, fresh.stderr
    return fresh.stdout.strip().splitlines()[-1]


def test_the_template_socket_refuses_everyone_but_root_and_bad_requests(tsrv):
    """Attacks on the template itself: another uid, uid 0 asked for, missing fds, junk."""
    import json
    import socket
    import subprocess
    tpid = template_pids(tsrv)[-1]
    sock = os.path.join(tsrv.data_dir, "run", "template-0.sock")
    st = os.stat(sock)
    assert st.st_uid == 0 and st.st_mode & 0o077 == 0
    assert os.stat(os.path.dirname(sock)).st_mode & 0o077 == 0
    # Not even connectable by another uid (a runtime's uid is not root either).
    probe = ("import os, socket; os.setgid(65534); os.setuid(65534)\n"
             "s = socket.socket(socket.AF_UNIX)\n"
             "try:\n    s.connect(%r); print('connected')\nexcept OSError as e:\n    print('refused', e.errno)" % sock)
    r = subprocess.run(["/usr/bin/python3", "-c", probe], capture_output=True, text=True, timeout=60)
    assert r.stdout.startswith("refused"), (r.stdout, r.stderr)

    def ask(payload, fds=()):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(30)
        s.connect(sock)
        try:
            if fds:
                socket.send_fds(s, [payload], list(fds))
            else:
                s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):  # refused before it read it all
            pass
        out = b""
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                out += b
        except ConnectionResetError:  # it hung up on the rest of an oversized request
            return {"ok": False, "reset": True}
        finally:
            s.close()
        return json.loads(out)

    good = {"uid": 200123, "gid": 200123, "seccomp": False, "cgroups": ["/sys/fs/cgroup/x"],
            "env": {}, "argv": ["python3", "-m", "ipykernel_launcher", "-f", "/run/c.json"]}
    null = os.open("/dev/null", os.O_RDONLY)
    try:
        for bad in (dict(good, uid=0), dict(good, gid=0), dict(good, argv=["/bin/sh", "-c", "id"]),
                    dict(good, cgroups=["/etc"]), dict(good, env={"A": 1})):
            r = ask(json.dumps(bad).encode(), [null] * 10)
            assert r["ok"] is False, (bad, r)
        assert ask(json.dumps(good).encode())["ok"] is False            # no fds
        assert ask(json.dumps(good).encode(), [null] * 3)["ok"] is False  # too few
        assert ask(b"{" * 100000)["ok"] is False                          # junk
        assert ask(b"x" * (2 << 20))["ok"] is False                       # oversized
        big = dict(good, env={"K%d" % i: "v" * 100 for i in range(900)})  # large but valid
        assert ask(json.dumps(big).encode(), [null] * 10)["ok"] is False  # (not namespaces)
    finally:
        os.close(null)
    assert proc_alive(tpid) and template_pids(tsrv)[-1] == tpid
    _, c, p = start(tsrv)
    assert p["preloaded"]


def test_a_gpu_runtime_gets_its_own_devices_not_the_templates(tsrv):
    """The template sees no GPU (CUDA never touched before the fork); a GPU
    runtime's forked kernel has its grant and initialises CUDA itself."""
    _, c, p = start(tsrv, type_="gpu")
    assert p["preloaded"]
    assert p["env"]["CUDA_VISIBLE_DEVICES"] == "0"
    r = c.eval_ok("import os, torch\nprint(os.environ['CUDA_VISIBLE_DEVICES'], torch.cuda.is_initialized())")
    assert r.stdout.split() == ["0", "False"], r.stdout


COMPACT_CHECK = r"""
import sys
sys.path.insert(0, sys.argv[1])
from skylab import template
template.preload(["numpy", "pandas"])
before = list(sys.modules.items())
def pages(keys):
    return len({id(k) >> 12 for k in keys})
spread = pages(k for k, _ in before)
n = template.compact_module_names()
after = list(sys.modules.items())
assert n == len(before) > 500, (n, len(before))
assert [k for k, _ in after] == [k for k, _ in before]
assert all(a[1] is b[1] for a, b in zip(after, before))
assert not any(a[0] is b[0] for a, b in zip(after, before))
import json, importlib
assert importlib.import_module("json") is json and sys.modules["numpy"].__name__ == "numpy"
print(spread, pages(k for k, _ in after))
"""


def test_the_module_names_a_kernel_walks_sit_together():
    """The template re-keys sys.modules with fresh copies of the names, side by
    side (IPython walks them at every kernel's start; scattered, each name
    would copy its page): same names, order and modules, a few pages."""
    import subprocess
    python_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python")
    out = subprocess.run(["/usr/bin/python3", "-c", COMPACT_CHECK, python_dir],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    spread, compact = map(int, out.stdout.split()[-2:])
    assert compact * 5 < spread, (spread, compact)


IMPORT_CACHES_CHECK = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from skylab import template
template.preload(["numpy"])
sys.path_importer_cache["relative/dir"] = None
forget = template._import_caches_to_forget()
assert sys.argv[1] in forget and "relative/dir" in forget, forget
usr = {n: f for n, f in sys.path_importer_cache.items() if n.startswith("/usr/") and f is not None}
assert not set(usr) & set(forget), forget
assert len(usr) > 50, len(usr)
mtimes = {n: f._path_mtime for n, f in usr.items()}
ours = sys.path_importer_cache[sys.argv[1]]
template._FORGET_FINDERS[:] = forget
template._forget_import_caches()
assert "relative/dir" not in sys.path_importer_cache
assert ours._path_mtime == -1  # read again at the next lookup
assert all(sys.path_importer_cache[n] is f and f._path_mtime == mtimes[n] for n, f in usr.items())
print("ok")
"""


def test_a_kernel_forgets_the_templates_folder_caches_outside_usr():
    """importlib's folder caches: a forked kernel rereads every folder that
    can differ in its sandbox (the template's own, relative paths), and keeps
    those under /usr, the same read-only folders there (touching all of them
    would copy ~2.5 MiB of template pages into each kernel)."""
    import subprocess
    python_dir = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
    out = subprocess.run(["/usr/bin/python3", "-c", IMPORT_CACHES_CHECK, python_dir],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.split()[-1] == "ok", out.stderr[-2000:]


PAGE_OUT_CHECK = r"""
import mmap, os, shutil, subprocess, sys, tempfile
sys.path.insert(0, sys.argv[1])
from skylab import template
# A library of its own: a file no other process maps (torch's libraries may
# be mapped by any process that imported torch), 32 MiB, its pages clean on
# disk, every page read through a private read-only mapping, as a loader's.
d = tempfile.mkdtemp(dir=sys.argv[2])
path = os.path.join(d, "libonlymine.so")
data = os.urandom(32 << 20)
with open(path, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
fd = os.open(path, os.O_RDONLY)
m = mmap.mmap(fd, len(data), flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
sum(m[i] for i in range(0, len(m), 4096))
def mapped_mib():  # Private_Clean of this process's mapping of the file
    out, mine = 0, False
    for line in open("/proc/self/smaps"):
        head = line.split(None, 1)[0]
        if not head.endswith(":"):
            mine = line.rstrip().endswith(path)
        elif mine and head == "Private_Clean:":
            out += int(line.split()[1])
    return out / 1024
def cached_mib():  # its pages in the page cache, mapped or not
    r = subprocess.run(["fincore", "-n", "-b", "-o", "RES", path], capture_output=True, text=True, check=True)
    return int(r.stdout.split()[0]) / 2 ** 20
m0, c0 = mapped_mib(), cached_mib()
template.page_out_start_only_pages()
m1, c1 = mapped_mib(), cached_mib()
same = m[:] == data  # read back from the disk
shutil.rmtree(d)
print(m0, m1, c0, c1, same)
"""


def test_the_template_gives_back_the_library_pages_only_its_imports_used(tmp_path):
    """Importing torch reads ~100 MiB of its libraries once (static
    initialisers) that no kernel maps; the template hands such pages back:
    they leave its mappings and the page cache itself, and what is read
    again comes back from the disk unchanged. (With torch: 120 -> 2 MiB;
    here a file of the test's own, which no other process maps.)"""
    import subprocess
    python_dir = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
    disk = str(tmp_path)  # page-out reclaims file pages of a disk, not of tmpfs (swap)
    if subprocess.run(["stat", "-f", "-c", "%T", disk], capture_output=True, text=True).stdout.strip() == "tmpfs":
        disk = os.path.dirname(python_dir)  # the checkout
    out = subprocess.run(["/usr/bin/python3", "-c", PAGE_OUT_CHECK, python_dir, disk],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    m0, m1, c0, c1, same = out.stdout.split()[-5:]
    m0, m1, c0, c1 = map(float, (m0, m1, c0, c1))
    assert m0 > 30 and m1 < 2, (m0, m1)  # out of its mappings
    assert c0 > 30 and c1 < 8, (c0, c1)  # and out of the page cache
    assert same == "True"


def test_the_template_imports_at_low_priority_and_serves_at_normal(tmp_path):
    """The imports (seconds of CPU, again after each package change) run at
    nice 10, out of the way of the server and running kernels; forking
    kernels runs at 0, so that kernels start at 0."""
    import subprocess
    python_dir = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    p = subprocess.Popen(["/usr/bin/python3", os.path.join(python_dir, "skylab", "template.py"),
                          "--socket", str(run / "t.sock"), "--preload", "numpy,pandas"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    try:
        seen = set()
        while p.poll() is None and not (run / "t.sock").exists():
            seen.add(int(stat_fields(p.pid)[16]))
            time.sleep(0.02)
        assert p.stdout.readline().startswith("ready"), p.poll()
        assert 10 in seen, seen  # while importing
        assert int(stat_fields(p.pid)[16]) == 0  # serving
    finally:
        p.terminate()
        p.wait(timeout=30)
