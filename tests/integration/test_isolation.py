"""Runtimes as a trust boundary (issue 12, rows 6 and 7): each runtime has
its own network namespace with outbound NAT through pasta (no host loopback,
no host addresses, no link-local, no other runtimes) and a seccomp filter.

Real binary as root, real bubblewrap, real pasta. The "internet" is a
network namespace this test makes (a veth pair, 10.x addresses of our own)
with a tiny HTTP server in it; no traffic goes anywhere else.
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid

import pytest

from conftest import PYTHON, SERVER_KIND, FakeInternet, _stop_server, needs_root, needs_sandbox, server_with_config

pytestmark = [pytest.mark.skipif(SERVER_KIND != "skylab", reason="Skylab runtimes"), needs_sandbox, needs_root]

PASTA = "/usr/bin/pasta"
needs_pasta = pytest.mark.skipif(not os.access(PASTA, os.X_OK), reason="pasta (Debian's passt) is not installed")

CONFIG = """
[runtimes]
sandbox = "bwrap"
[runtime_types.cpu]
memory = "2G"
pids = 256
[runtime_types.hostnet]
network = "host"
[runtime_types.unconfined]
seccomp = "unconfined"
"""


@pytest.fixture(scope="module")
def srv():
    s = server_with_config(CONFIG)
    yield s
    if s.proc.poll() is None:
        _stop_server(s)
    else:
        s.cleanup_tmp()


def start(srv, rtype="cpu"):
    r = srv.post("/api/skylab/runtimes", json={"type": rtype})
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    srv.kernels.append(kid)
    c = srv.connect(kid)
    c.nudge(timeout=60)
    return c


@pytest.fixture(scope="module")
def rt(srv):
    return start(srv)


def cell(c, code, timeout=60):
    r = c.execute(code, timeout=timeout)
    assert r.error is None, "%s\n%s" % (r.error, r.stdout)
    return r.stdout


CONNECT = """
import socket, errno, json
def probe(addr, port, family=socket.AF_INET, timeout=5):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((addr, port))
        return "connected"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    finally:
        s.close()
"""


class Listener:
    """A TCP listener on the host that records whether anyone connected."""

    def __init__(self, family=socket.AF_INET, addr="127.0.0.1"):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted = []
        self.sock.settimeout(0.2)
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                conn, peer = self.sock.accept()
                self.accepted.append(peer)
                conn.close()
            except OSError:
                pass

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


def host_addresses():
    out = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout
    addrs = []
    for link in json.loads(out):
        for a in link.get("addr_info", []):
            if a.get("scope") == "host":
                continue
            addrs.append((a["family"], a["local"]))
    return addrs


@needs_pasta
def test_host_loopback_abstract_and_proc_net_are_not_shared(srv, rt):
    lst = Listener(addr="127.0.0.1")
    name = "skylab-test-" + uuid.uuid4().hex[:8]
    ab = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ab.bind("\0" + name)
    ab.listen(1)
    try:
        out = cell(rt, CONNECT + "print(probe('127.0.0.1', %d))" % lst.port)
        assert out.strip() == "ECONNREFUSED", out
        out = cell(rt, """
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect('\\0%s'); print('connected')
except OSError as e:
    print(type(e).__name__)
""" % name)
        assert out.strip() == "ConnectionRefusedError", out
        # The host's listeners are not in the runtime's /proc/net/tcp.
        out = cell(rt, "print(open('/proc/net/tcp').read())")
        assert (":%04X" % lst.port) not in out, out
        assert (":%04X" % srv.port) not in out, out
        assert lst.accepted == []
    finally:
        lst.close()
        ab.close()


@needs_pasta
def test_link_local_and_host_addresses_are_prohibited(srv, rt):
    out = cell(rt, CONNECT + "print(probe('169.254.169.254', 80))")
    assert out.strip() == "EACCES", out  # prohibit route: refused at once, no timeout
    lst4 = Listener(socket.AF_INET, "0.0.0.0")
    lst6 = Listener(socket.AF_INET6, "::")
    try:
        addrs = host_addresses()
        if not addrs:
            pytest.skip("the host has no non-loopback address")
        for family, addr in addrs:
            port = lst4.port if family == "inet" else lst6.port
            fam = "socket.AF_INET" if family == "inet" else "socket.AF_INET6"
            if addr.startswith("fe80"):
                continue  # needs a scope id; the runtime's own link has other link-local addresses
            out = cell(rt, CONNECT + "print(probe(%r, %d, %s))" % (addr, port, fam))
            assert out.strip() in ("EACCES", "ECONNREFUSED", "ENETUNREACH", "EHOSTUNREACH"), (addr, out)
        assert lst4.accepted == [] and lst6.accepted == []
    finally:
        lst4.close()
        lst6.close()


@needs_pasta
def test_runtimes_cannot_reach_each_other(srv, rt):
    other = start(srv)
    cell(other, """
import socket, threading
_srv = socket.socket(); _srv.bind(('0.0.0.0', 0)); _srv.listen(4)
print(_srv.getsockname()[1])
""")
    port = int(cell(other, "print(_srv.getsockname()[1])").strip())
    addrs = [a for f, a in host_addresses() if f == "inet"] + ["127.0.0.1"]
    for addr in addrs:
        out = cell(rt, CONNECT + "print(probe(%r, %d))" % (addr, port))
        assert out.strip() != "connected", (addr, out)
    # The listener is in the other runtime's namespace only: not on the host either.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


@needs_pasta
def test_runtime_has_nat_interface_with_default_route(rt):
    out = cell(rt, "!ip -4 route show default; ip -4 -o addr show scope global")
    assert "default via" in out, out
    assert "inet " in out, out


@needs_pasta
def test_host_network_opt_in_sees_host_loopback(srv):
    c = start(srv, "hostnet")
    lst = Listener(addr="127.0.0.1")
    try:
        out = cell(c, CONNECT + "print(probe('127.0.0.1', %d))" % lst.port)
        assert out.strip() == "connected", out
    finally:
        lst.close()


SYSCALLS = r"""
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
NR = {"io_uring_setup": 425, "bpf": 321, "keyctl": 250, "userfaultfd": 323, "perf_event_open": 298}
def sc(name, *args):
    ctypes.set_errno(0)
    r = libc.syscall(NR[name], *args)
    return r, errno.errorcode.get(ctypes.get_errno(), "0")
p = ctypes.create_string_buffer(256)
res = {
  "io_uring_setup": sc("io_uring_setup", 8, p),
  "bpf": sc("bpf", 0, p, 64),
  "keyctl": sc("keyctl", 0, -3, 0),
  "userfaultfd": sc("userfaultfd", 0),
  "perf_event_open": sc("perf_event_open", p, 0, -1, -1, 0),
}
try:
    if hasattr(os, "unshare"):  # Python 3.12+
        os.unshare(os.CLONE_NEWUSER)
    elif libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER through libc
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    res["unshare"] = "ok"
except PermissionError:
    res["unshare"] = "PermissionError"
except OSError as e:
    res["unshare"] = errno.errorcode.get(e.errno, str(e))
print(res)
"""


def test_seccomp_refuses_kernel_attack_surface(srv, rt):
    import platform
    if platform.machine() != "x86_64":
        pytest.skip("syscall numbers in this test are x86_64's")
    res = eval(cell(rt, SYSCALLS).strip())
    assert res["unshare"] == "PermissionError", res
    for name in ("io_uring_setup", "bpf", "keyctl", "userfaultfd", "perf_event_open"):
        r, err = res[name]
        assert r == -1 and err in ("EPERM", "ENOSYS"), (name, res)
    out = cell(rt, "!unshare -Ur true; echo rc=$?")
    assert "rc=0" not in out and "rc=" in out, out
    out = cell(rt, "!unshare -m true; echo rc=$?")
    assert "rc=0" not in out, out
    out = cell(rt, "!mount -t tmpfs none /tmp 2>&1; echo rc=$?")
    assert "rc=0" not in out, out
    # The filter is the kernel's: what a process inside reports.
    out = cell(rt, "print([l for l in open('/proc/self/status') if l.startswith('Seccomp:')])")
    assert "2" in out, out


def test_seccomp_unconfined_opt_out(srv):
    c = start(srv, "unconfined")
    out = cell(c, "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('Seccomp:')])")
    assert out.strip() == "['0']", out


def test_ordinary_work_still_runs_under_the_filter(rt):
    out = cell(rt, """
import subprocess, threading, multiprocessing, numpy
r = []
t = threading.Thread(target=lambda: r.append(sum(range(10)))); t.start(); t.join()
with multiprocessing.get_context("fork").Pool(2) as pool:
    sq = pool.map(abs, [-1, -2])
print(r, sq, subprocess.run(["echo", "sub"], capture_output=True, text=True).stdout.strip(),
      float(numpy.linalg.norm(numpy.ones(4))))
""", timeout=120)
    assert out.strip() == "[45] [1, 2] sub 2.0", out
    out = cell(rt, "!pip --version; git --version; echo rc=$?", timeout=120)
    assert "pip " in out and "git version" in out and "rc=0" in out, out
    if shutil.which("gcc"):
        out = cell(rt, "!cd /tmp && printf '#include <stdio.h>\\nint main(){puts(\"compiled\");}' > t.c && gcc t.c -o t && ./t",
                   timeout=120)
        assert "compiled" in out, out


def test_torch_forward_backward_under_the_filter(rt):
    r = subprocess.run([PYTHON, "-c", "import torch"], capture_output=True)
    if r.returncode != 0:
        pytest.skip("torch is not installed on this machine")
    out = cell(rt, """
import torch
x = torch.randn(2, 3, 16, 16, requires_grad=True)
conv = torch.nn.Conv2d(3, 4, 3)
y = conv(x).relu().sum(); y.backward()
print(tuple(conv.weight.grad.shape), bool(torch.isfinite(x.grad).all()))
""", timeout=180)
    assert out.strip() == "(4, 3, 3, 3) True", out


@pytest.fixture
def fake_internet():
    """(far address, host-side address) of a fake internet host (conftest.FakeInternet)."""
    if not FakeInternet.available():
        pytest.skip("the fake internet host needs root and iproute2")
    root = tempfile.mkdtemp(prefix="skylab-inet-root-")
    with open(os.path.join(root, "hello.txt"), "w") as f:
        f.write("hello from the internet\n")
    try:
        inet = FakeInternet(root)
    except RuntimeError as e:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(str(e))
    yield inet.far_ip, inet.host_ip
    inet.stop()
    shutil.rmtree(root, ignore_errors=True)


@needs_pasta
def test_outbound_through_nat_but_not_the_host_side(srv, fake_internet):
    far_ip, host_ip = fake_internet
    c = start(srv)  # a fresh runtime: the veth address is one of the host's now
    out = cell(c, "import urllib.request\nprint(urllib.request.urlopen('http://%s:8080/hello.txt', timeout=20).read().decode())"
               % far_ip)
    assert out.strip() == "hello from the internet", out
    # The host's own end of the same link is a host address: prohibited.
    out = cell(c, CONNECT + "print(probe(%r, 8080))" % host_ip)
    assert out.strip() == "EACCES", out
