"""Runtimes started for anyone (issue 17, `[runtimes] instant = N`): a kernel
forked from the template and initialised in a sandbox that holds no one's
data, handed to the first user who connects without a spare of their own.

Until then it is root inside its sandbox and must run nothing but the
server's readiness check; at the claim it must become exactly that user's
runtime (uid in every thread, no capabilities, no_new_privs and the seccomp
filter in every thread, their Drive and caches, their name, their
environment), and a user it cannot serve must get the usual start.

Real binary as root, real bubblewrap, cgroups, template and ipykernel.
Run with Debian's python: /usr/bin/python3 -m pytest tests/integration/test_instant.py
"""
import glob
import json
import os
import re
import secrets
import time

import pytest
import zmq
from jupyter_client.session import Session

import kclient
from conftest import SERVER_KIND, _stop_server, kernel_host_pid, needs_root, needs_sandbox, server_with_config
from test_accounts import add_user, new_token, token_session
from test_template import restart

pytestmark = [pytest.mark.skipif(SERVER_KIND != "skylab", reason="Skylab runtimes"), needs_sandbox, needs_root]

CONFIG = """
[runtimes]
sandbox = "bwrap"
template = true
instant = 2
[runtime_types.cpu]
memory = "1G"
"""

# Every thread of the kernel: ids, capabilities, no_new_privs, seccomp.
PROBE = r"""
import os, json, pwd, subprocess
_t = {}
for _tid in os.listdir('/proc/self/task'):
    try:
        _s = dict(l.split(':\t', 1) for l in open('/proc/self/task/%s/status' % _tid).read().splitlines() if ':\t' in l)
    except OSError:
        continue
    _t[_tid] = [_s['Uid'].split(), _s['Gid'].split(), _s['CapEff'], _s['CapPrm'], _s['NoNewPrivs'], _s['Seccomp'], _s['Groups'].strip()]
_m = {l.split()[4]: l for l in open('/proc/self/mountinfo')}
print(json.dumps({'threads': _t, 'env': dict(os.environ), 'cwd': os.getcwd(),
                  'name': pwd.getpwuid(os.getuid()).pw_name, 'whoami': subprocess.check_output(['whoami']).decode().strip(),
                  'drive_mount': _m.get('/content/drive', ''), 'cache_mount': _m.get('/root/.cache', ''),
                  'claim_fifo': os.path.exists('/opt/skylab/state/claim'),
                  'owners': [os.stat(d).st_uid for d in ('/content', '/root', '/root/.ipython', '/root/.ipython/profile_default/history.sqlite')],
                  'writable': [os.access(d, os.W_OK) for d in ('/content', '/root', '/root/.ipython')]}))
"""


@pytest.fixture(scope="module")
def isrv():
    srv = server_with_config(CONFIG)
    yield srv
    if srv.proc.poll() is None:
        _stop_server(srv)
    else:
        srv.cleanup_tmp()


def instant_ready(srv):
    r = srv.http.get(srv.url("/api/skylab/runtime_types"), timeout=10)
    assert r.status_code == 200, r.text
    return {t["name"]: t["instant_ready"] for t in r.json()["types"]}["cpu"]


def wait_ready(srv, n=2, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        if instant_ready(srv) >= n:
            return
        time.sleep(0.3)
    raise AssertionError("the instant pool did not fill:\n" + srv.log_text())


def new_user(srv, prefix):
    name = prefix + secrets.token_hex(3)
    add_user(srv, name, "password-" + name)
    return name, new_token(srv, name)


def connect(srv, token):
    r = token_session(token).post(srv.url("/api/kernels"), json={"name": "python3"}, timeout=60)
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    srv.kernels.append(kid)
    c = kclient.KernelClient(srv.ws_base, kid, token)
    srv.clients.append(c)
    c.nudge(timeout=60)
    return kid, c


def probe(c):
    return json.loads(c.eval_ok(PROBE, timeout=60).stdout.strip().splitlines()[-1])


def handed_over(srv, kid, user):
    return ("kernel %s claimed by %s (started for anyone)" % (kid, user)) in srv.log_text(10 ** 7)


def runtime_uid(srv, user):
    with open(os.path.join(srv.data_dir, "runtime", "uids.json")) as f:
        return json.load(f)[user]


def test_a_user_without_a_spare_gets_a_prestarted_runtime_that_is_wholly_theirs(isrv):
    wait_ready(isrv)
    alice, tok = new_user(isrv, "alice")
    kid, c = connect(isrv, tok)
    assert handed_over(isrv, kid, alice), isrv.log_text()
    p = probe(c)
    uid = runtime_uid(isrv, alice)
    assert uid >= 200000
    # Every thread (ZeroMQ, iopub, heartbeat, control, history) dropped and filtered.
    assert len(p["threads"]) >= 4, p["threads"]
    for tid, (uids, gids, cap_eff, cap_prm, nnp, seccomp, groups) in p["threads"].items():
        assert uids == [str(uid)] * 4 and gids == [str(uid)] * 4, (tid, uids, gids)
        assert int(cap_eff, 16) == 0 and int(cap_prm, 16) == 0, (tid, cap_eff, cap_prm)
        assert nnp == "1" and seccomp == "2" and groups == "", (tid, nnp, seccomp, groups)
    # Their name, their environment, their folders.
    assert p["name"] == alice and p["whoami"] == alice
    assert p["env"]["SKYLAB_USER"] == alice and p["env"]["SKYLAB_KERNEL_ID"] == kid
    assert p["cwd"] == "/content"
    assert p["owners"] == [uid] * 4 and p["writable"] == [True] * 3, (p["owners"], p["writable"])
    assert not p["claim_fifo"]  # nothing left to talk to as root
    for m in (p["drive_mount"], p["cache_mount"]):
        assert m and "nosuid" in m and "nodev" in m, m
    c.eval_ok("open('/content/drive/from_instant.txt', 'w').write('hi')\n"
              "open('/root/.cache/from_instant.txt', 'w').write('hi')")
    for host in (os.path.join(isrv.data_dir, "drive", alice, "from_instant.txt"),
                 os.path.join(isrv.data_dir, "cache", alice, "cache", "from_instant.txt")):
        assert os.stat(host).st_uid == uid, host
    # The history (opened before the claim) is theirs and works.
    r = c.eval_ok("a = 41\nprint(a + 1)")
    assert r.stdout.strip() == "42"
    r = c.eval_ok("ip = get_ipython(); ip.history_manager.writeout_cache()\n"
                  "print(len(list(ip.history_manager.get_range())))")
    assert int(r.stdout.strip()) >= 2
    # Preloaded and working after the hand-over.
    r = c.eval_ok("import numpy as np, torch\nprint((np.ones((50, 50)) @ np.ones((50, 50))).sum(), "
                  "float(torch.ones(3).sum()))", timeout=120)
    assert r.stdout.split() == ["125000.0", "3.0"], r.stdout
    # The pool fills up again, and says so to the operator's scraper.
    wait_ready(isrv)
    import requests
    m = requests.get(isrv.url("/metrics"), headers={"Authorization": "Bearer " + isrv.token}, timeout=30)
    assert m.status_code == 200, m.text
    assert re.search(r'^skylab_runtimes_instant_ready\{type="cpu"\} 2$', m.text, re.M), m.text


def test_two_users_get_different_prestarted_runtimes_with_their_own_randomness(isrv):
    wait_ready(isrv)
    (bob, tb), (carol, tc) = new_user(isrv, "bob"), new_user(isrv, "carol")
    kb, b = connect(isrv, tb)
    kc, cc = connect(isrv, tc)
    assert handed_over(isrv, kb, bob) and handed_over(isrv, kc, carol), isrv.log_text()
    code = "import numpy, random, torch\nprint(numpy.random.rand(), random.random(), torch.initial_seed())"
    rb, rc = b.eval_ok(code).stdout.split(), cc.eval_ok(code).stdout.split()
    assert all(x != y for x, y in zip(rb, rc)), (rb, rc)
    pb, pc = probe(b), probe(cc)
    assert pb["name"] == bob and pc["name"] == carol
    # Each sees only its own Drive.
    b.eval_ok("open('/content/drive/mine.txt', 'w').write('bob')")
    r = cc.eval_ok("import os; print(os.path.exists('/content/drive/mine.txt'))")
    assert r.stdout.strip() == "False"
    assert kernel_host_pid(b) != kernel_host_pid(cc)


def test_a_prestarted_kernel_runs_nothing_before_its_claim(isrv):
    # As root on the host (the only one who can reach its sockets), send a
    # waiting kernel an execute_request: it must answer kernel_info only.
    wait_ready(isrv)
    records = glob.glob(os.path.join(isrv.data_dir, "**", "records", "*.json"), recursive=True)
    waiting = []
    for rec in records:
        with open(rec) as f:
            r = json.load(f)
        if r.get("owner") == "@anyone":
            waiting.append(r)
    assert waiting, records
    r = waiting[0]
    # Root until its claim, but only able to change its ids, with no_new_privs and the filter.
    procs = set()
    for f in glob.glob("/sys/fs/cgroup/**/skylab-%s/cgroup.procs" % r["id"], recursive=True):
        procs.update(int(x) for x in open(f).read().split())
    kernel = [p for p in procs if os.path.realpath("/proc/%d/exe" % p).startswith("/usr/bin/python3")]
    assert len(kernel) == 1, procs
    with open("/proc/%d/status" % kernel[0]) as f:
        st = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    assert st["Uid"].split()[0] == "0"
    assert int(st["CapEff"], 16) == (1 << 6) | (1 << 7) and int(st["CapBnd"], 16) == (1 << 6) | (1 << 7), st
    assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2", st
    holder = [p for p in procs if open("/proc/%d/status" % p).read().count("Uid:\t65534")]
    assert holder, procs  # the sandbox's program runs as nobody until the claim
    with open(r["connection_file"]) as f:
        conn = json.load(f)
    marker = "/tmp/skylab-instant-" + secrets.token_hex(4)
    session = Session(key=conn["key"].encode(), signature_scheme=conn["signature_scheme"])
    ctx = zmq.Context()
    shell = ctx.socket(zmq.DEALER)
    shell.connect("%s://%s-%d" % (conn["transport"], conn["ip"], conn["shell_port"]))
    try:
        session.send(shell, "execute_request", {"code": "open(%r, 'w').write('x')" % marker, "silent": False,
                                                "store_history": True, "user_expressions": {},
                                                "allow_stdin": False, "stop_on_error": True})
        session.send(shell, "kernel_info_request", {})
        replies = []
        end = time.time() + 10
        while time.time() < end and not any(m["msg_type"] == "kernel_info_reply" for m in replies):
            if shell.poll(500):
                _, msg = session.recv(shell)
                replies.append(msg["header"])
        types = [m["msg_type"] for m in replies]
        assert types == ["kernel_info_reply"], types
        time.sleep(0.5)
        assert not shell.poll(200)  # no execute_reply, then or later
    finally:
        shell.close(0)
        ctx.term()
    # Not in the sandbox's /tmp either (the kernel's /tmp is a tmpfs: look through its root).
    pid = r["pid"]
    assert not glob.glob("/proc/*/root" + marker)


SAME = r"""
import os, sys, json
print(json.dumps({'path': sys.path, 'env': sorted(os.environ), 'cwd': os.getcwd(), 'uid': os.getuid(),
                  'mounts': sorted(l.split()[4] + ' ' + ','.join(sorted(l.split()[5].split(','))) for l in open('/proc/self/mountinfo')),
                  'passwd': open('/etc/passwd').read().splitlines()[-1]}))
"""


def test_a_handed_over_runtime_is_what_a_usual_start_of_that_user_gives(isrv):
    # Restarting a kernel starts it the usual way (a fresh fork for that
    # user): the hand-over must have given the same sys.path, environment,
    # mounts and account.
    wait_ready(isrv)
    erin, tok = new_user(isrv, "erin")
    kid, c = connect(isrv, tok)
    assert handed_over(isrv, kid, erin)
    before = json.loads(c.eval_ok(SAME).stdout.strip().splitlines()[-1])
    restart(isrv, tok, kid, c)
    after = json.loads(c.eval_ok(SAME).stdout.strip().splitlines()[-1])
    assert before == after
    assert before["passwd"].startswith(erin + ":x:%d:" % runtime_uid(isrv, erin))


def test_same_seeds_give_the_same_weights_as_a_fresh_python(isrv):
    """A course notebook computes the same from its seeds in a handed-over kernel."""
    from test_template import SEEDED, seeded_in_a_fresh_python
    wait_ready(isrv)
    fay, tok = new_user(isrv, "fay")
    kid, c = connect(isrv, tok)
    assert handed_over(isrv, kid, fay)
    handed = c.eval_ok(SEEDED, timeout=120).stdout.strip().splitlines()[-1]
    assert handed == seeded_in_a_fresh_python()


def test_a_restarted_template_replaces_the_waiting_runtimes(isrv):
    # A template restarts when it dies or the Python packages change: the
    # runtimes waiting in the pool were forked from the old one (old
    # packages) and must not be handed out; new ones come from the new one.
    import signal
    from test_template import ppid, template_pids
    wait_ready(isrv)
    old = template_pids(isrv)[-1]
    os.kill(old, signal.SIGKILL)
    end = time.time() + 240
    while time.time() < end and template_pids(isrv)[-1] == old:
        time.sleep(0.5)
    new = template_pids(isrv)[-1]
    assert new != old, isrv.log_text()
    time.sleep(1.5)  # a few pool ticks: the old ones go
    wait_ready(isrv)
    # They held no one's work and read no control messages: killed at once,
    # not after the 3 s a kernel gets to answer a shutdown_request.
    end = time.time() + 30
    while time.time() < end and "stopped at once (started for anyone" not in isrv.log_text(10 ** 7):
        time.sleep(0.3)
    assert "stopped at once (started for anyone, never claimed)" in isrv.log_text(10 ** 7)
    gus, tok = new_user(isrv, "gus")
    kid, c = connect(isrv, tok)
    assert handed_over(isrv, kid, gus), isrv.log_text()
    assert ppid(kernel_host_pid(c)) == new


def test_a_user_it_cannot_serve_gets_the_usual_start(isrv):
    # dave's own numpy in his ~/.local shadows the preloaded one: the kernel
    # that would have been his checks that as him and refuses; he starts the usual way.
    wait_ready(isrv)
    dave, tok = new_user(isrv, "dave")
    site = os.path.join(isrv.data_dir, "cache", dave, "local", "lib", "python3.11", "site-packages", "numpy")
    os.makedirs(site)
    with open(os.path.join(site, "__init__.py"), "w") as f:
        f.write("MINE = True\n")
    kid, c = connect(isrv, tok)
    assert not handed_over(isrv, kid, dave)
    assert re.search(r"instant pool: %s starts the usual way: .*shadows numpy" % dave, isrv.log_text(10 ** 7)), \
        isrv.log_text()
    r = c.eval_ok("import numpy; print(getattr(numpy, 'MINE', False))")
    assert r.stdout.strip() == "True"  # his numpy, as in a fresh Python
    assert probe(c)["name"] == dave
