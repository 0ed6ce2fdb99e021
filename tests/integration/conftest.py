"""Fixtures for the kernel API integration tests.

SKYLAB_TEST_SERVER=skylab (default): start SKYLAB_BIN (default
<repo>/build/skylab) with `serve`.  SKYLAB_TEST_SERVER=jupyter: start Debian's
Jupyter Server instead, the reference implementation of the same API.
"""

import ctypes
import glob
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
import requests

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import kclient  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
SERVER_KIND = os.environ.get("SKYLAB_TEST_SERVER", "skylab")
assert SERVER_KIND in ("skylab", "jupyter"), "SKYLAB_TEST_SERVER must be skylab or jupyter"
IS_JUPYTER = SERVER_KIND == "jupyter"
PYTHON = "/usr/bin/python3"
TEST_TIMEOUT = int(os.environ.get("SKYLAB_TEST_TIMEOUT", "120"))


def pytest_configure(config):
    config.addinivalue_line("markers", "skylab_only: Skylab behaviour that Jupyter Server does not have")


def pytest_collection_modifyitems(config, items):
    if not IS_JUPYTER:
        return
    skip = pytest.mark.skip(reason="Skylab-only behaviour (SKYLAB_TEST_SERVER=jupyter)")
    for item in items:
        if "skylab_only" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config):
    return "kernel API server under test: %s" % (
        "Jupyter Server (reference)" if IS_JUPYTER else skylab_bin())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Hard per-test time limit so a hung server never hangs the suite."""
    def on_alarm(signum, frame):
        raise TimeoutError("test exceeded %ss" % TEST_TIMEOUT)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------- helpers

def skylab_bin():
    return os.environ.get("SKYLAB_BIN", str(REPO / "build" / "skylab"))


def bwrap_works():
    if not shutil.which("bwrap"):
        return False
    r = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--unshare-pid", "--proc", "/proc", "--dev", "/dev",
                        "/bin/true"], capture_output=True)
    return r.returncode == 0


needs_sandbox = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="per-user uids and cgroups need root")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_alive(pid):
    """True while process pid exists and is not a zombie (zombies are reaped if ours)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat[stat.rindex(")") + 2]
    if state in "ZX":
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return False
    return True


def wait_gone(pids, timeout=10):
    """Wait until none of pids is alive; return the ones still alive."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids if proc_alive(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def find_pid_by_comm(tag):
    """Host pid of the process one of whose threads is named `tag`."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            tids = os.listdir("/proc/%s/task" % d)
        except OSError:
            continue
        for t in tids:
            try:
                with open("/proc/%s/task/%s/comm" % (d, t)) as f:
                    if f.read().strip() == tag:
                        return int(d)
            except OSError:
                pass
    return None


def kernel_host_pid(client):
    """The kernel process's pid as seen from this machine.

    os.getpid() inside the kernel is not enough when the kernel runs in a PID
    namespace (sandbox), so the kernel names its main thread with a unique tag
    (prctl PR_SET_NAME, visible in /proc/PID/comm) and we look the tag up.
    """
    tag = "sk" + secrets.token_hex(6)
    r = client.execute(
        "import ctypes as _c, os as _o\n"
        "_c.CDLL(None).prctl(15, %r, 0, 0, 0)\n"
        "print(_o.getpid())" % tag.encode())
    assert r.status == "ok", r
    inner = int(r.stdout.strip())
    pid = find_pid_by_comm(tag)
    assert pid is not None, "kernel process (inner pid %d) not found on this machine" % inner
    return pid


class ChildSubreaper:
    """Make this process the subreaper of its descendants so that processes
    orphaned by a server are reparented here and can be found."""

    PR_SET_CHILD_SUBREAPER = 36

    @classmethod
    def enable(cls):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(cls.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    @staticmethod
    def children():
        me = os.getpid()
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    stat = f.read()
            except OSError:
                continue
            rest = stat[stat.rindex(")") + 2:].split()
            if int(rest[1]) == me and rest[0] not in "ZX":
                out.append(int(d))
        return out


# ---------------------------------------------------------------- server

class Server:
    """A running server under test (Skylab or Jupyter Server)."""

    def __init__(self, kind=SERVER_KIND, env_extra=None, extra_args=()):
        self.kind = kind
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.host = "127.0.0.1"
        self.base_url = "http://%s:%d" % (self.host, self.port)
        self.ws_base = "ws://%s:%d" % (self.host, self.port)
        self.tmp = tempfile.mkdtemp(prefix="skylab-it-")
        self.data_dir = os.path.join(self.tmp, "data")
        os.makedirs(self.data_dir)
        self.log_path = os.path.join(self.tmp, "server.log")
        self.http = requests.Session()
        self.http.headers["Authorization"] = "token " + self.token
        self.kernels = []
        self.clients = []
        env = dict(os.environ)
        env.update(env_extra or {})
        if kind == "jupyter":
            for var, sub in (("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTER_CONFIG_DIR", "config"),
                             ("JUPYTER_DATA_DIR", "jdata"), ("IPYTHONDIR", "ipython")):
                env[var] = os.path.join(self.tmp, sub)
            env.pop("JUPYTER_PATH", None)
            argv = [PYTHON, "-m", "jupyter_server",
                    "--ServerApp.token=" + self.token,
                    "--ServerApp.port=%d" % self.port,
                    "--ServerApp.port_retries=0",
                    "--ServerApp.ip=127.0.0.1",
                    "--ServerApp.open_browser=False",
                    "--ServerApp.root_dir=" + self.data_dir,
                    "--no-browser"]
            if os.geteuid() == 0:
                argv.append("--allow-root")
        else:
            binary = skylab_bin()
            if not os.access(binary, os.X_OK):
                pytest.fail("Skylab binary not found at %s (set SKYLAB_BIN, or "
                            "SKYLAB_TEST_SERVER=jupyter to test the reference server)" % binary)
            if env.get("SKYLAB_ADMIN_TOKEN") != "" or "SKYLAB_ADMIN_TOKEN" not in (env_extra or {}):
                env["SKYLAB_ADMIN_TOKEN"] = self.token  # env_extra {"SKYLAB_ADMIN_TOKEN": ""}: generated
            argv = [binary, "serve", "--host", "127.0.0.1", "--port", str(self.port),
                    "--data-dir", self.data_dir, *extra_args]
        self.argv = argv
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, cwd=self.tmp)
        try:
            self.wait_ready()
        except BaseException:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
            self.cleanup_tmp()
            raise

    # -- lifecycle
    def log_text(self, tail=6000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-tail:]
        except OSError:
            return ""

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        banner = "http://127.0.0.1:%d/" % self.port
        try:
            start = os.path.getsize(self.log_path)
        except OSError:
            start = 0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited with %s during start-up:\n%s" % (
                    self.proc.returncode, self.log_text()))
            text = self.log_text(tail=10 ** 7)[start:]
            # A server that starts runtime templates (issue 17) is ready for the
            # tests once they are: kernels then start the way they will in use.
            if "runtime template: starting" in text and not (
                    "runtime template: ready" in text or "runtime template: failed" in text):
                time.sleep(0.1)
                continue
            if banner in text:
                try:
                    if requests.get(self.url("/api"), timeout=2).status_code == 200:
                        return
                except requests.RequestException:
                    pass
            time.sleep(0.1)
        raise RuntimeError("server not ready within %ss (banner %r seen: %s):\n%s" % (
            timeout, banner, banner in self.log_text(10 ** 6), self.log_text()))

    def terminate(self, timeout=30):
        """SIGTERM and wait; returns the exit code (None if it had to be killed)."""
        for c in self.clients:
            c.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.log.close()
                return None
        self.log.close()
        return self.proc.returncode

    def cleanup_tmp(self):
        # A killed server leaves its runtimes (and their pasta) running: end
        # everything in their cgroups, named after the kernel ids it recorded.
        ids = []
        for sub in ("data/runtime/state", "data/runtime/records", "runtime/state", "runtime/records"):
            try:
                ids += [n.split(".")[0] for n in os.listdir(os.path.join(self.tmp, sub))]
            except OSError:
                pass
        for kid in set(ids):
            for procs in glob.glob("/sys/fs/cgroup/*/skylab-%s/cgroup.procs" % kid) + \
                    glob.glob("/sys/fs/cgroup/**/skylab/skylab-%s/cgroup.procs" % kid, recursive=True) + \
                    glob.glob("/sys/fs/cgroup/memory/**/skylab-%s/cgroup.procs" % kid, recursive=True):
                try:
                    with open(procs) as f:
                        for pid in f.read().split():
                            try:
                                os.kill(int(pid), signal.SIGKILL)
                            except OSError:
                                pass
                except OSError:
                    pass
        # A killed server leaves its mounts (users' volumes, /content images).
        try:
            with open("/proc/self/mounts") as f:
                mounts = [line.split()[1] for line in f if line.split()[1].startswith(self.tmp + "/")]
        except OSError:
            mounts = []
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def kill(self):
        """SIGKILL the server: no chance to clean anything up."""
        assert self.kind == "skylab"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def restart(self):
        """A new server process on the same data directory and port."""
        self.log.close()
        self.log = open(self.log_path, "ab")
        env = dict(os.environ, SKYLAB_ADMIN_TOKEN=self.token)
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, cwd=self.tmp)
        self.wait_ready()

    def kill_and_restart(self):
        self.kill()
        self.restart()

    # -- HTTP
    def url(self, path):
        return self.base_url + path

    def get(self, path, **kw):
        kw.setdefault("timeout", 30)
        return self.http.get(self.url(path), **kw)

    def post(self, path, **kw):
        kw.setdefault("timeout", 60)
        return self.http.post(self.url(path), **kw)

    def delete(self, path, **kw):
        kw.setdefault("timeout", 60)
        return self.http.delete(self.url(path), **kw)

    # -- kernels
    def create_kernel(self, name="python3"):
        r = self.post("/api/kernels", json={"name": name} if name else {})
        assert r.status_code == 201, (r.status_code, r.text)
        kid = r.json()["id"]
        self.kernels.append(kid)
        return kid

    def delete_kernel(self, kid):
        r = self.delete("/api/kernels/" + kid)
        if kid in self.kernels:
            self.kernels.remove(kid)
        return r

    def kernel_model(self, kid):
        r = self.get("/api/kernels/" + kid)
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    def connect(self, kid, framing="legacy", session_id=None, timeout=30):
        c = kclient.KernelClient(self.ws_base, kid, self.token, framing=framing,
                                 session_id=session_id, timeout=timeout)
        self.clients.append(c)
        return c


def server_with_config(config_text):
    """A Skylab server started with `--config` holding this TOML text."""
    fd, path = tempfile.mkstemp(prefix="skylab-test-", suffix=".toml")
    with os.fdopen(fd, "w") as f:
        f.write(config_text)
    try:
        return Server(extra_args=("--config", path))
    finally:
        os.unlink(path)


def _stop_server(srv):
    """Fixture teardown: delete remaining kernels, SIGTERM, assert clean exit."""
    for c in srv.clients:
        c.close()
    for kid in list(srv.kernels):
        try:
            srv.delete_kernel(kid)
        except requests.RequestException:
            pass
    code = srv.terminate()
    log = srv.log_text()
    srv.cleanup_tmp()
    assert code == 0, "server exit status %r after SIGTERM; log tail:\n%s" % (code, log)


@pytest.fixture(scope="session")
def server():
    srv = Server()
    yield srv
    _stop_server(srv)


@pytest.fixture
def fresh_server():
    """A server of its own, for tests that stop or break it."""
    srv = Server()
    yield srv
    if srv.proc.poll() is None:
        _stop_server(srv)
    else:
        srv.cleanup_tmp()


@pytest.fixture(scope="session")
def shared_kernel(server):
    """One kernel shared by the scenarios that do not restart or kill it."""
    return server.create_kernel()


@pytest.fixture(scope="session")
def scratch_kernel(server):
    """A kernel for the scenarios that interrupt, restart or kill it."""
    return server.create_kernel()


@pytest.fixture(params=kclient.FRAMINGS)
def framing(request):
    return request.param


@pytest.fixture
def connect(server):
    """connect(kernel_id, framing=..., session_id=None) -> KernelClient, closed after the test."""
    opened = []

    def _connect(kid, framing="legacy", session_id=None, timeout=30):
        c = server.connect(kid, framing=framing, session_id=session_id, timeout=timeout)
        opened.append(c)
        return c

    yield _connect
    for c in opened:
        c.close()
        if c in server.clients:
            server.clients.remove(c)


@pytest.fixture
def kc(connect, shared_kernel, framing):
    """A client on the shared kernel, in the parametrized framing."""
    return connect(shared_kernel, framing=framing)


def new_uuid():
    return str(uuid.uuid4())


# ---------------------------------------------------------------- the internet, as a runtime sees it

class FakeInternet:
    """An HTTP server for the folder `root` on a host of our own: a network
    namespace this process makes, joined to the host by a veth pair
    (10.213.N.1 here, 10.213.N.2 there). Runtimes (own network namespace,
    pasta NAT, host addresses prohibited) reach it as they reach the
    internet; nothing else is ever addressed. Counts GET requests per path
    from the server's access log. `available()` says whether it can be built
    (root and iproute2); stop() removes everything it made."""

    def __init__(self, root):
        self.root = root
        tag = uuid.uuid4().hex[:6]
        self.ns, self.veth, peer = "skyinet-" + tag, "skyv" + tag, "skyp" + tag
        n = int(tag[:2], 16)
        self.host_ip, self.far_ip = "10.213.%d.1" % n, "10.213.%d.2" % n
        self.url = "http://%s:8080" % self.far_ip
        self.log = os.path.join(tempfile.mkdtemp(prefix="skylab-inet-"), "access.log")
        self.http = None
        steps = [["ip", "netns", "add", self.ns],
                 ["ip", "link", "add", self.veth, "type", "veth", "peer", "name", peer],
                 ["ip", "link", "set", peer, "netns", self.ns],
                 ["ip", "addr", "add", self.host_ip + "/30", "dev", self.veth],
                 ["ip", "link", "set", self.veth, "up"],
                 ["ip", "-n", self.ns, "addr", "add", self.far_ip + "/30", "dev", peer],
                 ["ip", "-n", self.ns, "link", "set", peer, "up"],
                 ["ip", "-n", self.ns, "link", "set", "lo", "up"]]
        for s in steps:
            r = subprocess.run(s, capture_output=True, text=True)
            if r.returncode != 0:
                self.stop()
                raise RuntimeError("cannot build the fake internet host: %s: %s" % (" ".join(s), r.stderr))
        with open(self.log, "wb") as logf:
            self.http = subprocess.Popen(["ip", "netns", "exec", self.ns, PYTHON, "-u", "-m", "http.server",
                                          "--bind", self.far_ip, "--directory", root, "8080"],
                                         stdout=subprocess.DEVNULL, stderr=logf)
        deadline = time.monotonic() + 15
        while True:  # until it listens (from the host, through the veth)
            try:
                socket.create_connection((self.far_ip, 8080), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the fake internet host's HTTP server did not start")
                time.sleep(0.1)

    @staticmethod
    def available():
        return os.geteuid() == 0 and shutil.which("ip") is not None

    def count(self, prefix):
        """GET requests so far whose path starts with `prefix`."""
        n = 0
        with open(self.log, errors="replace") as f:
            for line in f:
                parts = line.split('"')
                if len(parts) > 1 and parts[1].startswith("GET " + prefix):
                    n += 1
        return n

    def stop(self):
        if self.http:
            self.http.terminate()
            self.http.wait()
            self.http = None
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        shutil.rmtree(os.path.dirname(self.log), ignore_errors=True)
