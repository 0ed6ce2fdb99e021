"""One runtime service admits every runtime (issue 12, rows 5 and 11):
max_per_user and max_gpu_per_user hold whichever route starts the runtime
(/api/kernels, /api/sessions, /api/skylab/runtimes, jobs), also for
concurrent requests, and a start does not hold up the server's network
thread."""

import os
import threading
import time

import pytest

from conftest import SERVER_KIND, _stop_server, server_with_config
from test_accounts import add_user, new_token, token_session, uname

pytestmark = pytest.mark.skipif(SERVER_KIND != "skylab", reason="Skylab runtime limits")

LIMIT = """
[runtimes]
max_per_user = 2
"""

GPUS = """
[runtimes]
default_type = "gpu"
max_gpu_per_user = 1
[runtime_types.gpu]
gpus = 1
[gpus]
fake = 2
"""


@pytest.fixture
def limited(request):
    srv = server_with_config(getattr(request, "param", LIMIT))
    yield srv
    if srv.proc.poll() is None:
        _stop_server(srv)
    else:
        srv.cleanup_tmp()


class User:
    def __init__(self, srv):
        self.srv = srv
        self.name = uname("adm")
        add_user(srv, self.name, "password-of-" + self.name)
        self.s = token_session(new_token(srv, self.name))

    def post(self, url, **body):
        return self.s.post(self.srv.url(url), json=body, timeout=120)

    def get(self, path):
        r = self.s.get(self.srv.url(path), timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def delete(self, path):
        return self.s.delete(self.srv.url(path), timeout=60)

    def kernels(self):
        return [k["id"] for k in self.get("/api/kernels")]


def refused(r):
    assert r.status_code == 409, (r.status_code, r.text)
    assert "the most allowed" in r.json()["message"], r.text


def test_kernels_api_is_limited_and_a_deleted_one_frees_a_slot(limited):
    u = User(limited)
    a = u.post("/api/kernels", name="python3")
    b = u.post("/api/kernels", name="python3")
    assert a.status_code == 201 and b.status_code == 201, (a.text, b.text)
    refused(u.post("/api/kernels", name="python3"))
    assert sorted(u.kernels()) == sorted([a.json()["id"], b.json()["id"]])
    # Another user is not affected.
    other = User(limited)
    assert other.post("/api/kernels").status_code == 201
    # Deleting one frees its slot.
    assert u.delete("/api/kernels/" + a.json()["id"]).status_code == 204
    c = u.post("/api/kernels")
    assert c.status_code == 201, c.text
    assert len(u.kernels()) == 2


def test_sessions_api_is_limited(limited):
    u = User(limited)
    for i in range(2):
        r = u.post("/api/sessions", path="nb%d.ipynb" % i, type="notebook", kernel={"name": "python3"})
        assert r.status_code == 201, r.text
    refused(u.post("/api/sessions", path="nb2.ipynb", type="notebook", kernel={"name": "python3"}))
    assert len(u.kernels()) == 2
    assert len(u.get("/api/sessions")) == 2


def test_every_route_counts_against_one_limit(limited):
    u = User(limited)
    assert u.post("/api/skylab/runtimes").status_code == 201
    assert u.post("/api/sessions", path="a.ipynb", type="notebook").status_code == 201
    refused(u.post("/api/kernels"))
    refused(u.post("/api/skylab/runtimes"))
    refused(u.post("/api/sessions", path="b.ipynb", type="notebook"))
    # A job is refused too (it reports why rather than start a third runtime).
    nb = {"cells": [{"cell_type": "code", "source": "1", "metadata": {}, "outputs": [], "execution_count": None,
                     "id": "c0"}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    r = u.s.put(limited.url("/api/contents/job.ipynb"), json={"type": "notebook", "format": "json", "content": nb},
                timeout=30)
    assert r.status_code in (200, 201), r.text
    r = u.post("/api/skylab/jobs", path="job.ipynb")
    assert r.status_code == 201, r.text
    jid = r.json()["id"]
    while True:  # bounded by the test timeout
        job = u.get("/api/skylab/jobs/" + jid)
        if job["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.2)
    assert job["state"] == "failed" and "the most allowed" in job["message"], job
    assert len(u.kernels()) == 2


def test_concurrent_requests_never_exceed_the_limit(limited):
    u = User(limited)
    results = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def one(i):
        start.wait()
        if i % 2:
            r = u.post("/api/kernels")
        else:
            r = u.post("/api/sessions", path="c%d.ipynb" % i, type="notebook")
        with lock:
            results.append(r)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [r for r in results if r.status_code == 201]
    assert len(ok) == 2, [(r.status_code, r.text) for r in results]
    for r in results:
        if r.status_code != 201:
            refused(r)
    assert len(u.kernels()) == 2


@pytest.mark.parametrize("limited", [GPUS], indirect=True)
def test_gpu_limit_through_the_kernels_api(limited):
    u = User(limited)
    a = u.post("/api/kernels")
    assert a.status_code == 201, a.text
    runtimes = u.get("/api/skylab/runtimes")
    assert len(runtimes) == 1 and len(runtimes[0]["gpus"]) == 1, runtimes
    r = u.post("/api/kernels")
    assert r.status_code == 409 and "GPU runtime" in r.json()["message"], r.text
    # Another user gets the second GPU; a third finds none free: /api/kernels
    # cannot answer with a queue position, so it says so at once.
    assert User(limited).post("/api/kernels").status_code == 201
    third = User(limited).post("/api/kernels")
    assert third.status_code == 503 and "GPUs are in use" in third.json()["message"], third.text
    # The first user's GPU comes back when their runtime goes.
    assert u.delete("/api/kernels/" + a.json()["id"]).status_code == 204
    assert u.post("/api/kernels").status_code == 201


DISK = """
[runtimes]
sandbox = "bwrap"
[runtime_types.cpu]
disk = "1G"
"""


@pytest.mark.parametrize("limited", [DISK], indirect=True)
def test_the_network_thread_answers_while_a_runtime_is_prepared(limited):
    """While a runtime's sandbox is prepared (a /content image made and
    mounted, the user's Drive walked), /api/status answers. The old server
    prepared it on its only network thread: every request sent after the
    preparation began was answered after the new kernel existed."""
    from conftest import bwrap_works
    if not bwrap_works():
        pytest.skip("bubblewrap cannot run here")
    u = User(limited)
    # A Drive with many files makes the preparation's walk take a while.
    drive = os.path.join(limited.data_dir, "drive", u.name)
    os.makedirs(drive, exist_ok=True)
    for d in range(20):
        sub = os.path.join(drive, "d%d" % d)
        os.makedirs(sub)
        for i in range(1000):
            os.close(os.open(os.path.join(sub, "f%d" % i), os.O_CREAT | os.O_WRONLY, 0o644))
    runtimes = os.path.join(limited.data_dir, "runtimes")
    before = set(os.listdir(runtimes)) if os.path.isdir(runtimes) else set()

    done = threading.Event()
    reply = {}

    def start():
        reply["r"] = u.post("/api/kernels")
        done.set()

    t = threading.Thread(target=start)
    t.start()
    answered_during_prepare = 0
    polls = 0
    while not done.is_set():
        now = set(os.listdir(runtimes)) if os.path.isdir(runtimes) else set()
        if not (now - before):
            time.sleep(0.001)  # the preparation has not begun yet
            continue
        status = u.get("/api/status")
        polls += 1
        # The kernel is registered when the preparation ends: a status that
        # counts none was answered while it ran.
        if status["kernels"] == 0:
            answered_during_prepare += 1
    t.join()
    assert reply["r"].status_code == 201, reply["r"].text
    assert answered_during_prepare > 0, (polls, limited.log_text())
