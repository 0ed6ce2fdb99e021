"""Secrets (Colab's google.colab.userdata) against the real binary, real
sandboxed ipykernel runtimes bound to notebooks through the Sessions API:
a notebook reads a secret only after its owner gave it access; Colab's
errors otherwise; another user's kernel cannot read it, even by name; the
value is never in the server's log, the notebook file, an API listing, the
kernel's environment or anywhere on disk in clear (encrypted at rest); it
survives a server restart."""
import hashlib
import json
import os
import secrets
import time

import pytest

import kclient
from conftest import SERVER_KIND, Server, _stop_server, kernel_host_pid, needs_root, needs_sandbox
from test_accounts import add_user, new_token, token_session, uname

pytestmark = [pytest.mark.skipif(SERVER_KIND != "skylab", reason="Skylab secrets"), needs_sandbox, needs_root]

NAME = "KAGGLE_KEY"


class User:
    def __init__(self, srv, prefix):
        self.srv = srv
        self.name = uname(prefix)
        add_user(srv, self.name, "password-" + self.name)
        self.token = new_token(srv, self.name)
        self.s = token_session(self.token)

    def req(self, method, path, **kw):
        kw.setdefault("timeout", 60)
        return self.s.request(method, self.srv.url(path), **kw)

    def notebook(self, path):
        """A notebook in the Drive, a session for it, a client on its kernel."""
        nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
              "cells": [{"cell_type": "code", "id": "c1", "source": "", "metadata": {},
                         "outputs": [], "execution_count": None}]}
        folder = path.rpartition("/")[0]
        if folder:
            self.req("PUT", "/api/contents/" + folder, json={"type": "directory"})
        r = self.req("PUT", "/api/contents/" + path, json={"type": "notebook", "format": "json", "content": nb})
        assert r.status_code in (200, 201), r.text
        r = self.req("POST", "/api/sessions", json={"path": path, "type": "notebook", "name": path,
                                                   "kernel": {"name": "python3"}})
        assert r.status_code == 201, r.text
        kid = r.json()["kernel"]["id"]
        self.srv.kernels.append(kid)
        return Notebook(self, path, kid)


class Notebook:
    def __init__(self, user, path, kid):
        self.user, self.path, self.kid = user, path, kid
        self.connect()

    def connect(self):
        self.client = kclient.KernelClient(self.user.srv.ws_base, self.kid, self.user.token, timeout=60)
        self.user.srv.clients.append(self.client)
        self.client.nudge(timeout=60)

    def run(self, code):
        """Runs `code` as the notebook's cell c1 (outputs recorded into the file)."""
        m = self.client.send("shell", "execute_request",
                             {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                              "allow_stdin": False, "stop_on_error": False}, metadata={"cellId": "c1"})
        return self.client.collect(m["header"]["msg_id"], timeout=90)

    def read(self, name=NAME, module="from google.colab import userdata"):
        """Reads the secret in the kernel; returns the SHA-256 of the value (the
        value itself is never printed) or the error's (module.class, message)."""
        r = self.run(module + "\nimport hashlib\n"
                     "try:\n"
                     "    _v = userdata.get(%r)\n"
                     "    print('sha', hashlib.sha256(_v.encode()).hexdigest())\n"
                     "except Exception as e:\n"
                     "    print('err', type(e).__module__ + '.' + type(e).__name__, '|', e)\n"
                     "finally:\n"
                     "    _v = None\n" % name)
        assert r.status == "ok", (r.error, r.stderr)
        out = r.stdout.strip()
        if out.startswith("sha "):
            return out[4:]
        kind, _, message = out[4:].partition(" | ")
        return kind, message


def sha(v):
    return hashlib.sha256(v.encode()).hexdigest()


@pytest.fixture(scope="module")
def world():
    srv = Server()
    try:
        alice, bob = User(srv, "sa"), User(srv, "sb")
        value = "kgl-" + secrets.token_hex(24)
        r = alice.req("PUT", "/api/skylab/secrets/" + NAME, json={"value": value})
        assert r.status_code == 200, r.text
        a = alice.notebook("course/a.ipynb")
        b = alice.notebook("course/b.ipynb")
        yield {"srv": srv, "alice": alice, "bob": bob, "value": value, "a": a, "b": b}
    finally:
        _stop_server(srv)


def test_access_is_per_notebook_and_checked_at_each_read(world):
    alice, a, b, value = world["alice"], world["a"], world["b"], world["value"]
    assert a.read() == ("google.colab.userdata.NotebookAccessError", "Notebook does not have access to secret " + NAME)
    r = alice.req("PUT", "/api/skylab/secrets/%s/grants" % NAME, json={"path": "/course/a.ipynb"})
    assert r.status_code == 200, r.text
    assert a.read() == sha(value)
    assert a.read(module="from skylab import userdata") == sha(value)
    # The other notebook of the same user still has no access.
    assert b.read()[0] == "google.colab.userdata.NotebookAccessError"
    assert a.read("NO_SUCH_KEY") == ("google.colab.userdata.SecretNotFoundError", "Secret NO_SUCH_KEY does not exist.")
    # The two modules raise the same classes (except clauses written for Colab catch them).
    r = a.run("from google.colab import userdata as g\nfrom skylab import userdata as s\n"
              "print(g.SecretNotFoundError is s.SecretNotFoundError, g.NotebookAccessError is s.NotebookAccessError)")
    assert r.stdout.strip() == "True True", (r.stdout, r.stderr)
    # input() after a read gets the user's answer, not a leftover of the secret protocol.
    r = a.client.execute("from google.colab import userdata\nuserdata.get(%r)\nprint('typed:', input('q? '))" % NAME,
                         timeout=90, stdin="an answer")
    assert r.status == "ok" and r.stdout.strip() == "typed: an answer", (r.stdout, r.stderr, r.error)
    # Taking access back works at once for the running kernel.
    r = alice.req("DELETE", "/api/skylab/secrets/%s/grants" % NAME, json={"path": "course/a.ipynb"})
    assert r.status_code == 200, r.text
    assert a.read()[0] == "google.colab.userdata.NotebookAccessError"
    r = alice.req("PUT", "/api/skylab/secrets/%s/grants" % NAME, json={"path": "course/a.ipynb"})
    assert r.status_code == 200
    # A new value reaches the same kernel.
    r = alice.req("PUT", "/api/skylab/secrets/OTHER", json={"value": "x" * 65536})
    assert r.status_code == 200, r.text
    alice.req("PUT", "/api/skylab/secrets/OTHER/grants", json={"path": "course/a.ipynb"})
    assert a.read("OTHER") == sha("x" * 65536)


def test_another_users_kernel_cannot_read_it(world):
    alice, bob, value = world["alice"], world["bob"], world["value"]
    r = alice.req("PUT", "/api/skylab/secrets/%s/grants" % NAME, json={"path": "course/a.ipynb"})
    assert r.status_code == 200
    # Bob's notebook at the very same path, in his Drive: his secrets only.
    nb = bob.notebook("course/a.ipynb")
    assert nb.read() == ("google.colab.userdata.SecretNotFoundError", "Secret %s does not exist." % NAME)
    # A hand-made request on the kernel's stdin socket asks the same server
    # connection, which knows the kernel by the socket: still Bob's.
    r = nb.run("from skylab import userdata as u\nimport uuid, zmq\nk = get_ipython().kernel\n"
               "rid = uuid.uuid4().hex\n"
               "k.session.send(k.stdin_socket, u.REQUEST, {'name': %r, 'request_id': rid, 'user': %r, "
               "'owner': %r, 'path': 'course/a.ipynb'}, k.get_parent('shell'), ident=k._parent_ident['shell'])\n"
               "assert k.stdin_socket.poll(30000)\n"
               "_, m = k.session.recv(k.stdin_socket)\n"
               "print(m['msg_type'], m['content']['status'], m['content']['ename'], 'value' in m['content'])"
               % (NAME, alice.name, alice.name))
    assert r.stdout.strip() == "skylab_secret_reply error SecretNotFoundError False", (r.stdout, r.stderr, r.error)
    # Bob can neither see nor change Alice's secrets over REST.
    assert bob.req("GET", "/api/skylab/secrets").json() == []
    assert bob.req("PUT", "/api/skylab/secrets/%s/grants" % NAME, json={"path": "course/a.ipynb"}).status_code == 404
    assert bob.req("DELETE", "/api/skylab/secrets/" + NAME).status_code == 404
    # Bob's browser never sees the request on the kernel's stdin (the server keeps it).
    seen = [m["header"]["msg_type"] for m in nb.client.history + world["a"].client.history
            if m.get("channel") == "stdin" and m["header"]["msg_type"] != "input_request"]
    assert seen == []
    # Alice's own kernel still reads it.
    assert world["a"].read() == sha(value)


def test_rest_limits_and_listing(world):
    alice = world["alice"]
    carol = User(world["srv"], "sc")
    listing = alice.req("GET", "/api/skylab/secrets").json()
    names = {s["name"]: s for s in listing}
    assert names[NAME]["grants"] == ["course/a.ipynb"]
    assert set(names[NAME]) == {"name", "grants", "updated"}
    for bad in ("1ABC", "A-B", "A" * 129, "A.B"):
        r = carol.req("PUT", "/api/skylab/secrets/" + bad, json={"value": "v"})
        assert r.status_code in (400, 404, 405), (bad, r.status_code)
    assert carol.req("PUT", "/api/skylab/secrets/" + "A" * 128, json={"value": "v"}).status_code == 200
    assert carol.req("PUT", "/api/skylab/secrets/K", json={"value": 5}).status_code == 400
    assert carol.req("PUT", "/api/skylab/secrets/K", json={}).status_code == 400
    assert carol.req("PUT", "/api/skylab/secrets/K", data="{not json").status_code == 400
    assert carol.req("PUT", "/api/skylab/secrets/K", json={"value": "x" * 65537}).status_code == 413
    assert carol.req("PUT", "/api/skylab/secrets/K/grants", json={"path": "a.ipynb"}).status_code == 404
    carol.req("PUT", "/api/skylab/secrets/K", json={"value": "v"})
    for bad in ("", "/", "../x.ipynb", "a/../b.ipynb", "a//b.ipynb", "x" * 5000):
        assert carol.req("PUT", "/api/skylab/secrets/K/grants", json={"path": bad}).status_code == 400, bad
    assert carol.req("DELETE", "/api/skylab/secrets/K").status_code == 204
    assert carol.req("DELETE", "/api/skylab/secrets/K").status_code == 404
    for i in range(99):
        assert carol.req("PUT", "/api/skylab/secrets/S%d" % i, json={"value": "v"}).status_code == 200
    assert carol.req("PUT", "/api/skylab/secrets/ONE_TOO_MANY", json={"value": "v"}).status_code == 409
    assert carol.req("PUT", "/api/skylab/secrets/S1", json={"value": "replaced"}).status_code == 200
    assert len(carol.req("GET", "/api/skylab/secrets").json()) == 100


def test_access_follows_a_rename_and_ends_with_the_notebook(world):
    alice, a, value = world["alice"], world["a"], world["value"]
    alice.req("PUT", "/api/skylab/secrets/%s/grants" % NAME, json={"path": "course/a.ipynb"})
    r = alice.req("PATCH", "/api/contents/course/a.ipynb", json={"path": "course/renamed.ipynb"})
    assert r.status_code == 200, r.text
    grants = {s["name"]: s["grants"] for s in alice.req("GET", "/api/skylab/secrets").json()}
    assert grants[NAME] == ["course/renamed.ipynb"]
    assert a.read() == sha(value)  # its session followed the rename, and so did access
    r = alice.req("PATCH", "/api/contents/course", json={"path": "course2"})
    assert r.status_code == 200, r.text
    grants = {s["name"]: s["grants"] for s in alice.req("GET", "/api/skylab/secrets").json()}
    assert grants[NAME] == ["course2/renamed.ipynb"]
    assert a.read() == sha(value)
    assert alice.req("PATCH", "/api/contents/course2", json={"path": "course"}).status_code == 200
    assert alice.req("PATCH", "/api/contents/course/renamed.ipynb", json={"path": "course/a.ipynb"}).status_code == 200
    assert a.read() == sha(value)
    # A deleted notebook's access ends: a new notebook at its path starts without it.
    t = alice.notebook("course/t.ipynb")
    alice.req("PUT", "/api/skylab/secrets/%s/grants" % NAME, json={"path": "course/t.ipynb"})
    assert t.read() == sha(value)
    assert alice.req("DELETE", "/api/contents/course/t.ipynb").status_code == 204
    grants = {s["name"]: s["grants"] for s in alice.req("GET", "/api/skylab/secrets").json()}
    assert grants[NAME] == ["course/a.ipynb"]
    t2 = alice.notebook("course/t.ipynb")
    assert t2.read()[0] == "google.colab.userdata.NotebookAccessError"


def test_a_job_reads_the_secrets_its_notebook_may_read(world):
    """A headless job (/api/skylab/jobs) has no session: it works on the job's
    notebook, and gets what that notebook was given access to."""
    alice, value = world["alice"], world["value"]
    code = ("import hashlib\nfrom google.colab import userdata\ntry:\n"
            "    print(hashlib.sha256(userdata.get(%r).encode()).hexdigest())\n"
            "except Exception as e:\n    print(type(e).__name__)" % NAME)
    nb = {"nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "cells": [{"cell_type": "code", "id": "c1", "source": code, "metadata": {}, "outputs": [],
                     "execution_count": None}]}
    assert alice.req("PUT", "/api/contents/course/job.ipynb",
                     json={"type": "notebook", "format": "json", "content": nb}).status_code in (200, 201)

    def run_job():
        r = alice.req("POST", "/api/skylab/jobs", json={"path": "course/job.ipynb"})
        assert r.status_code == 201, r.text
        jid = r.json()["id"]
        deadline = time.time() + 120
        while time.time() < deadline:
            j = alice.req("GET", "/api/skylab/jobs/" + jid).json()
            if j["state"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.2)
        assert j["state"] == "succeeded", j
        out = alice.req("GET", "/api/contents/" + j["output_path"]).json()["content"]
        return "".join("".join(o.get("text", "")) for o in out["cells"][0]["outputs"]).strip()

    assert run_job() == "NotebookAccessError"
    alice.req("PUT", "/api/skylab/secrets/%s/grants" % NAME, json={"path": "course/job.ipynb"})
    assert run_job() == sha(value)


def test_value_is_nowhere_but_the_kernel_that_asked(world):
    srv, alice, a, value = world["srv"], world["alice"], world["a"], world["value"]
    alice.req("PUT", "/api/skylab/secrets/%s/grants" % NAME, json={"path": "course/a.ipynb"})
    # The cell keeps the value in a variable; outputs are recorded into the file.
    r = a.run("from google.colab import userdata\nkey = userdata.get(%r)\nprint('got', len(key))" % NAME)
    assert r.stdout.strip() == "got %d" % len(value), (r.stdout, r.stderr)
    # Every listing the API has.
    for path in ("/api/skylab/secrets", "/api/sessions", "/api/kernels", "/api/contents/course",
                 "/api/contents/course/a.ipynb", "/files/course/a.ipynb", "/api/skylab/runtimes",
                 "/api/me", "/api/kernels/" + a.kid):
        resp = alice.req("GET", path)
        assert resp.status_code == 200, (path, resp.status_code)
        assert value not in resp.text, path
    assert alice.req("GET", "/api/skylab/secrets/" + NAME).status_code in (404, 405)
    # The kernel's environment.
    pid = kernel_host_pid(a.client)
    with open("/proc/%d/environ" % pid, "rb") as f:
        assert value.encode() not in f.read()
    # The server's log, and every file of the data directory in clear
    # (skylab.db and its WAL: encrypted at rest; the notebook file).
    assert value not in srv.log_text(tail=10 ** 9)
    hits = []
    for root, dirs, files in os.walk(srv.data_dir):
        for fn in files:
            p = os.path.join(root, fn)
            try:
                if not os.path.isfile(p) or os.path.islink(p) or os.path.getsize(p) > 200 << 20:
                    continue
                with open(p, "rb") as f:
                    if value.encode() in f.read():
                        hits.append(p)
            except OSError:
                pass
    assert hits == []
    assert os.path.exists(os.path.join(srv.data_dir, "skylab.db"))
    key = os.path.join(srv.data_dir, "secrets.key")
    assert os.stat(key).st_mode & 0o777 == 0o600 and os.stat(key).st_uid == 0


def test_a_backup_restores_readable_secrets(world, tmp_path):
    """`skylab backup` takes secrets.key along with skylab.db: the restored
    server reads the secrets, grants included."""
    import subprocess
    from conftest import skylab_bin
    srv, alice, value = world["srv"], world["alice"], world["value"]
    alice.req("PUT", "/api/skylab/secrets/%s/grants" % NAME, json={"path": "course/a.ipynb"})
    archive, d2 = str(tmp_path / "b.tar"), str(tmp_path / "restored")
    r = subprocess.run([skylab_bin(), "backup", "--data-dir", srv.data_dir, archive], capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr
    with open(archive, "rb") as f:
        assert value.encode() not in f.read()  # sealed in the archive too
    r = subprocess.run([skylab_bin(), "restore", archive, "--data-dir", d2], capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert os.stat(os.path.join(d2, "secrets.key")).st_mode & 0o777 == 0o600
    restored = Server(extra_args=("--data-dir", d2))
    try:
        alice2 = User.__new__(User)
        alice2.srv, alice2.name, alice2.token, alice2.s = restored, alice.name, alice.token, alice.s
        before = {s["name"]: s["grants"] for s in alice.req("GET", "/api/skylab/secrets").json()}
        assert {s["name"]: s["grants"] for s in alice2.req("GET", "/api/skylab/secrets").json()} == before
        nb = alice2.notebook("course/a.ipynb")
        assert nb.read() == sha(value)
    finally:
        _stop_server(restored)


def test_still_readable_after_a_server_restart(world):
    srv, alice, a, value = world["srv"], world["alice"], world["a"], world["value"]
    alice.req("PUT", "/api/skylab/secrets/%s/grants" % NAME, json={"path": "course/a.ipynb"})
    # A cell that asks only after the restart, with no client there to speak
    # to the kernel first: the restarted server answers it (and records it).
    go = os.path.join(srv.data_dir, "runtimes", a.kid, "content", "go")
    a.client.send("shell", "execute_request",
                  {"code": "import os, time, hashlib\nwhile not os.path.exists('/content/go'): time.sleep(0.05)\n"
                           "from google.colab import userdata\n"
                           "print('late', hashlib.sha256(userdata.get(%r).encode()).hexdigest())" % NAME,
                   "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False,
                   "stop_on_error": False}, metadata={"cellId": "c1"})
    a.client.wait_for(lambda m: m["header"]["msg_type"] == "execute_input", timeout=60)
    a.client.close()
    srv.kill_and_restart()
    assert os.path.isdir(os.path.dirname(go))
    open(go, "w").close()
    deadline = time.time() + 60
    text = ""
    while time.time() < deadline and "late " not in text:
        nb = alice.req("GET", "/api/contents/course/a.ipynb").json()["content"]
        text = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
        time.sleep(0.2)
    assert "late " + sha(value) in text, text
    os.unlink(go)
    a.connect()  # the runtime was reattached; the page reconnects
    assert a.read() == sha(value)
    world["b"].connect()
    assert world["b"].read()[0] == "google.colab.userdata.NotebookAccessError"
    # A restarted kernel (same id, new process) still reads it.
    r = alice.req("POST", "/api/kernels/%s/restart" % a.kid)
    assert r.status_code == 200, r.text
    a.client.nudge(timeout=60)
    assert a.read() == sha(value)


def test_a_slurm_runtime_reads_secrets_through_the_agent_link(tmp_path):
    """A Slurm runtime's kernel talks to the server through `skylab agent`'s
    encrypted link, stdin channel included: userdata works the same."""
    import slurm_cluster
    from conftest import bwrap_works
    from test_slurm import config

    missing = slurm_cluster.missing_reason()
    if missing or not bwrap_works():
        pytest.skip(missing or "bubblewrap cannot run here")
    cluster = slurm_cluster.SlurmCluster()
    try:
        cluster.start()
    except RuntimeError as e:
        cluster.stop()
        pytest.skip("the test cluster cannot start here: %s" % str(e)[:2000])
    srv = None
    try:
        cfg = tmp_path / "skylab.toml"
        cfg.write_text(config(cluster))
        srv = Server(extra_args=("--config", str(cfg)))
        value = "slurm-" + secrets.token_hex(16)
        assert srv.http.put(srv.url("/api/skylab/secrets/" + NAME), json={"value": value}).status_code == 200
        r = srv.post("/api/skylab/runtimes", json={"type": "cluster"})
        assert r.status_code == 202, r.text
        rid = r.json()["id"]
        srv.kernels.append(rid)
        deadline = time.time() + 120
        while time.time() < deadline and srv.get("/api/skylab/runtimes/" + rid).json().get("state") not in ("idle", "busy"):
            time.sleep(0.3)
        r = srv.post("/api/sessions", json={"path": "s.ipynb", "type": "notebook", "name": "s.ipynb", "kernel": {"id": rid}})
        assert r.status_code == 201, r.text
        c = srv.connect(rid)
        c.nudge(timeout=60)
        code = ("import os, hashlib\nfrom google.colab import userdata\nprint(os.environ.get('SLURM_JOB_ID') is not None)\n"
                "try:\n    print(hashlib.sha256(userdata.get(%r).encode()).hexdigest())\n"
                "except Exception as e:\n    print(type(e).__name__)" % NAME)
        r = c.execute(code, timeout=90)
        assert r.stdout.split() == ["True", "NotebookAccessError"], (r.stdout, r.stderr)
        assert srv.http.put(srv.url("/api/skylab/secrets/%s/grants" % NAME), json={"path": "s.ipynb"}).status_code == 200
        r = c.execute(code, timeout=90)
        assert r.stdout.split() == ["True", sha(value)], (r.stdout, r.stderr)
        # The same path carries input(): the kernel speaks first on stdin.
        r = c.execute("print('typed:', input('q? '))", timeout=90, stdin="over the link")
        assert r.stdout.strip() == "typed: over the link", (r.stdout, r.stderr, r.error)
    finally:
        if srv is not None:
            _stop_server(srv)
        cluster.run("scancel", "--full", "-u", "root", check=False)
        cluster.stop()
