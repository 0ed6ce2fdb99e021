"""POST /api/skylab/jobs (issue 7, part 5): a Drive notebook runs headless in
a runtime of the user's, with its status visible and the executed notebook
saved next to the source."""

import time

import nbformat
import pytest
import websocket

from conftest import Server
from test_accounts import add_user, new_token, token_session, uname

pytestmark = pytest.mark.skylab_only


def notebook(*sources, tagged_first=False):
    cells = []
    for i, src in enumerate(sources):
        meta = {"tags": ["parameters"]} if tagged_first and i == 0 else {}
        cells.append({"cell_type": "code", "source": src, "metadata": meta, "outputs": [],
                      "execution_count": None, "id": "c%d" % i})
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                        "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture(scope="module")
def user(server):
    name = uname("j")
    add_user(server, name, "password-of-j")
    return token_session(new_token(server, name))


def put(server, s, path, nb):
    r = s.put(server.url("/api/contents/" + path), json={"type": "notebook", "format": "json", "content": nb},
              timeout=30)
    assert r.status_code in (200, 201), r.text


def submit(server, s, **body):
    r = s.post(server.url("/api/skylab/jobs"), json=body, timeout=30)
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == "/api/skylab/jobs/" + r.json()["id"]
    return r.json()


def wait_job(server, s, jid, states=("succeeded", "failed", "cancelled"), timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = s.get(server.url("/api/skylab/jobs/" + jid), timeout=10)
        assert r.status_code == 200, r.text
        if r.json()["state"] in states:
            return r.json()
        time.sleep(0.2)
    raise AssertionError("job %s never reached %s: %s" % (jid, states, r.text))


def contents(server, s, path):
    r = s.get(server.url("/api/contents/" + path), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["content"]


def test_job_runs_with_parameters_and_saves_next_to_source(server, user):
    user.put(server.url("/api/contents/jobs-a"), json={"type": "directory"}, timeout=30)
    put(server, user, "jobs-a/train.ipynb", notebook("n = 1", "print(n * 2)", "x = 'done'\nx", tagged_first=True))
    job = submit(server, user, path="jobs-a/train.ipynb", parameters={"n": 21})
    assert job["state"] in ("queued", "starting", "running") and job["output_path"] == "jobs-a/train.out.ipynb"
    job = wait_job(server, user, job["id"])
    assert job["state"] == "succeeded", job
    assert job["cells_total"] == 4 and job["cells_done"] == 4 and job["finished"] and job["error"] is None
    out = contents(server, user, "jobs-a/train.out.ipynb")
    nbformat.validate(nbformat.from_dict(out))
    injected = [c for c in out["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1 and "n = 21" in "".join(injected[0]["source"])
    texts = ["".join(o.get("text", "")) for c in out["cells"] for o in c["outputs"]]
    assert "42\n" in texts
    assert any(o.get("data", {}).get("text/plain") == "'done'" for c in out["cells"] for o in c["outputs"])
    # The source is untouched; the job's runtime is gone.
    src = contents(server, user, "jobs-a/train.ipynb")
    assert all(not c["outputs"] for c in src["cells"])
    assert job["kernel_id"] not in user.get(server.url("/api/kernels"), timeout=10).text
    # Listed, newest first; a finished job can be forgotten.
    listed = user.get(server.url("/api/skylab/jobs"), timeout=10).json()
    assert listed[0]["id"] == job["id"]
    assert user.delete(server.url("/api/skylab/jobs/" + job["id"]), timeout=10).status_code == 204
    assert user.get(server.url("/api/skylab/jobs/" + job["id"]), timeout=10).status_code == 404


def test_failing_job_reports_the_error_and_keeps_the_output(server, user):
    put(server, user, "jobs-fail.ipynb", notebook("print('before')", "1/0", "print('after')"))
    user.put(server.url("/api/contents/runs"), json={"type": "directory"}, timeout=30)
    job = wait_job(server, user, submit(server, user, path="jobs-fail.ipynb", output_path="runs/fail.ipynb")["id"])
    assert job["state"] == "failed" and job["error"]["ename"] == "ZeroDivisionError", job
    out = contents(server, user, "runs/fail.ipynb")
    kinds = [[o["output_type"] for o in c["outputs"]] for c in out["cells"]]
    assert kinds == [["stream"], ["error"], []], kinds
    job = wait_job(server, user, submit(server, user, path="jobs-fail.ipynb", output_path="runs/fail2.ipynb",
                                        allow_errors=True)["id"])
    assert job["state"] == "succeeded", job
    assert "after" in str(contents(server, user, "runs/fail2.ipynb")["cells"][2]["outputs"])


def test_cancel_a_running_job(server, user):
    put(server, user, "jobs-slow.ipynb", notebook("import time\nprint('started', flush=True)\ntime.sleep(120)"))
    job = submit(server, user, path="jobs-slow.ipynb")
    job = wait_job(server, user, job["id"], states=("running",), timeout=60)
    # Nobody may attach to the job's kernel while it runs.
    tok = user.headers["Authorization"].split()[1]
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(server.ws_base + "/api/kernels/%s/channels?token=%s" % (job["kernel_id"], tok),
                                    timeout=10)
    assert e.value.status_code == 409
    t0 = time.time()
    r = user.delete(server.url("/api/skylab/jobs/" + job["id"]), timeout=10)
    assert r.status_code == 202, r.text
    job = wait_job(server, user, job["id"], timeout=30)
    assert job["state"] == "cancelled" and time.time() - t0 < 20, job
    deadline = time.time() + 15
    while job["kernel_id"] in user.get(server.url("/api/kernels"), timeout=10).text and time.time() < deadline:
        time.sleep(0.2)
    assert job["kernel_id"] not in user.get(server.url("/api/kernels"), timeout=10).text


@pytest.mark.parametrize("body,status,message", [
    ({}, 400, "'path'"),
    ({"path": "x.txt"}, 400, ".ipynb"),
    ({"path": "jobs-bad.ipynb", "output_path": "jobs-bad.ipynb"}, 400, "differ"),
    ({"path": "jobs-bad.ipynb", "output_path": "out.txt"}, 400, ".ipynb"),
    ({"path": "jobs-bad.ipynb", "parameters": {"not a name": 1}}, 400, "parameter name"),
    ({"path": "jobs-bad.ipynb", "parameters": [1]}, 400, "object"),
    ({"path": "jobs-bad.ipynb", "runtime_type": "quantum"}, 400, "runtime type"),
    ({"path": "jobs-bad.ipynb", "kernel_name": "cobol"}, 404, "kernel spec"),
    ({"path": "jobs-bad.ipynb", "cell_timeout": -1}, 400, "cell_timeout"),
    ({"path": "jobs-bad.ipynb", "priority": 9}, 400, "Unknown field"),
    ({"path": "no-such.ipynb"}, 404, None),
    ({"path": "../../etc/passwd.ipynb"}, None, None),
])
def test_bad_job_requests_change_nothing(server, user, body, status, message):
    put(server, user, "jobs-bad.ipynb", notebook("print(1)"))
    before = user.get(server.url("/api/skylab/jobs"), timeout=10).json()
    r = user.post(server.url("/api/skylab/jobs"), json=body, timeout=30)
    if status is None:
        assert 400 <= r.status_code < 500, r.text
    else:
        assert r.status_code == status, r.text
    if message:
        assert message in r.json()["message"]
    assert user.get(server.url("/api/skylab/jobs"), timeout=10).json() == before
    r = user.post(server.url("/api/skylab/jobs"), data="{not json", timeout=30)
    assert r.status_code == 400


def test_another_users_notebook_and_jobs_are_invisible(server, user):
    other = token_session(new_token(server, (lambda n: (add_user(server, n, "password-of-o"), n)[1])(uname("o"))))
    put(server, user, "jobs-private.ipynb", notebook("print('secret')"))
    job = submit(server, user, path="jobs-private.ipynb")
    assert other.post(server.url("/api/skylab/jobs"), json={"path": "jobs-private.ipynb"},
                      timeout=30).status_code == 404
    assert other.get(server.url("/api/skylab/jobs/" + job["id"]), timeout=10).status_code == 404
    assert other.delete(server.url("/api/skylab/jobs/" + job["id"]), timeout=10).status_code == 404
    assert job["id"] not in other.get(server.url("/api/skylab/jobs"), timeout=10).text
    assert wait_job(server, user, job["id"])["state"] == "succeeded"


def test_jobs_survive_a_server_restart(tmp_path):
    """A finished job's record survives SIGKILL; a running one is reported
    failed after the restart, and its runtime does not linger."""
    srv = Server()
    try:
        name = uname("r")
        add_user(srv, name, "password-of-r")
        s = token_session(new_token(srv, name))
        put(srv, s, "quick.ipynb", notebook("print('quick')"))
        put(srv, s, "slow.ipynb", notebook("import time\ntime.sleep(300)"))
        quick = wait_job(srv, s, submit(srv, s, path="quick.ipynb")["id"])
        assert quick["state"] == "succeeded"
        slow = wait_job(srv, s, submit(srv, s, path="slow.ipynb")["id"], states=("running",), timeout=60)
        srv.kill_and_restart()
        assert s.get(srv.url("/api/skylab/jobs/" + quick["id"]), timeout=10).json()["state"] == "succeeded"
        after = s.get(srv.url("/api/skylab/jobs/" + slow["id"]), timeout=10).json()
        assert after["state"] == "failed" and "restarted" in after["message"], after
        deadline = time.time() + 20
        while slow["kernel_id"] in srv.get("/api/kernels").text and time.time() < deadline:
            time.sleep(0.2)
        assert slow["kernel_id"] not in srv.get("/api/kernels").text, srv.log_text()
    finally:
        if srv.proc.poll() is None:
            srv.terminate()
        srv.cleanup_tmp()
