"""The live notebook (issue 14, part 1): the server holds the open notebook
and records the outputs of cells run through a session's kernel, with no
browser attached, across a server restart, merged with writes from outside.

Every test talks to the real binary with a raw Jupyter client (kclient) and
real ipykernel runtimes; "on disk" is read through /files/ (the file's bytes,
never the live document)."""

import json
import secrets
import time

import pytest

from conftest import Server, _stop_server
from test_accounts import add_user, new_token, token_session, uname

pytestmark = pytest.mark.skylab_only

WAIT = 60  # generous bound for polling; nothing asserts on time


def wait_until(pred, what, timeout=WAIT, interval=0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out waiting for " + what)


def notebook(*cells):
    return {"cells": [{"cell_type": "code", "id": cid, "source": src, "metadata": {},
                       "outputs": [], "execution_count": None} for cid, src in cells],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


class Client:
    """One account's HTTP view of a server (the admin token by default)."""

    def __init__(self, srv, session=None):
        self.srv = srv
        self.s = session or srv.http

    def req(self, method, path, **kw):
        kw.setdefault("timeout", 60)
        return self.s.request(method, self.srv.url(path), **kw)

    def put_nb(self, path, nb):
        r = self.req("PUT", "/api/contents/" + path, json={"type": "notebook", "format": "json", "content": nb})
        assert r.status_code in (200, 201), r.text
        return r

    def disk(self, path):
        """The notebook file as stored (raw bytes, not the live document)."""
        r = self.req("GET", "/files/" + path)
        assert r.status_code == 200, r.text
        return json.loads(r.content)

    def live(self, path):
        r = self.req("GET", "/api/contents/" + path)
        assert r.status_code == 200, r.text
        return r.json()["content"]

    def session(self, path, kernel_id=None):
        body = {"path": path, "type": "notebook", "name": path, "kernel": {"name": "python3"}}
        if kernel_id:
            body["kernel"] = {"id": kernel_id}
        return self.req("POST", "/api/sessions", json=body)


def cell(nb, cid):
    for c in nb["cells"]:
        if c.get("id") == cid:
            return c
    raise AssertionError("no cell %s in %r" % (cid, [c.get("id") for c in nb["cells"]]))


def text_of(c, name="stdout"):
    return "".join("".join(o["text"]) if isinstance(o["text"], list) else o["text"]
                   for o in c["outputs"] if o["output_type"] == "stream" and o["name"] == name)


def run_and_leave(srv, kid, cell_id, code, framing="legacy"):
    """A raw Jupyter client sends the cell and disconnects at once."""
    c = srv.connect(kid, framing=framing)
    c.nudge()
    msg = c.send("shell", "execute_request",
                 {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                  "allow_stdin": False, "stop_on_error": True},
                 metadata={"cellId": cell_id})
    c.close()
    return msg["header"]["msg_id"]


def start(client, path, nb):
    client.put_nb(path, nb)
    r = client.session(path)
    assert r.status_code == 201, r.text
    kid = r.json()["kernel"]["id"]
    client.srv.kernels.append(kid)
    return kid


def finished(c):
    ex = c["metadata"].get("execution", {})
    return c["execution_count"] is not None and (
        ex.get("shell.execute_reply.status") is not None or "iopub.status.idle" in ex)


@pytest.fixture(scope="module")
def srv():
    s = Server()
    yield s
    _stop_server(s)


def test_outputs_recorded_with_no_client_attached(srv):
    cl = Client(srv)
    path = "live-%s.ipynb" % secrets.token_hex(3)
    code = "import time\nfor i in range(5):\n    print('line', i, flush=True)\n    time.sleep(0.4)\n"
    kid = start(cl, path, notebook(("a1", code), ("b2", "1+1")))
    run_and_leave(srv, kid, "a1", code)

    nb = wait_until(lambda: (lambda d: d if "shell.execute_reply.status" in cell(d, "a1")["metadata"].get(
        "execution", {}) and finished(cell(d, "a1")) else None)(cl.disk(path)),
                    "the cell's outputs on disk")
    a = cell(nb, "a1")
    assert text_of(a) == "".join("line %d\n" % i for i in range(5))
    assert isinstance(a["execution_count"], int) and a["execution_count"] >= 1
    assert a["metadata"]["execution"]["shell.execute_reply.status"] == "ok"
    assert cell(nb, "b2")["outputs"] == []
    assert nb["nbformat"] == 4 and nb["nbformat_minor"] >= 5
    try:
        import nbformat
    except ImportError:
        nbformat = None
    if nbformat is not None:
        nbformat.validate(nbformat.reads(json.dumps(nb), as_version=4))
    # The Contents API serves the same document.
    assert text_of(cell(cl.live(path), "a1")) == text_of(a)


def test_a_jupyterlab_style_v1_client_is_recorded_too(srv):
    """JupyterLab and VS Code speak the v1 WebSocket subprotocol."""
    cl = Client(srv)
    path = "v1-%s.ipynb" % secrets.token_hex(3)
    code = "print('over v1')\n6 * 7\n"
    kid = start(cl, path, notebook(("v1", code)))
    run_and_leave(srv, kid, "v1", code, framing="v1")
    nb = wait_until(lambda: (lambda d: d if finished(cell(d, "v1")) else None)(cl.disk(path)), "the v1 run")
    c = cell(nb, "v1")
    assert text_of(c) == "over v1\n"
    results = [o for o in c["outputs"] if o["output_type"] == "execute_result"]
    assert len(results) == 1 and "".join(results[0]["data"]["text/plain"]) == "42"
    assert results[0]["execution_count"] == c["execution_count"]


def test_progress_clear_output_and_display_updates_collapse_as_in_the_browser(srv):
    cl = Client(srv)
    path = "collapse-%s.ipynb" % secrets.token_hex(3)
    progress = ("import time, sys\n"
                "for i in range(5):\n"
                "    sys.stdout.write('\\r%d%%' % (i * 25)); sys.stdout.flush(); time.sleep(0.05)\n"
                "print()\nprint('end')\n")
    clearing = ("from IPython.display import clear_output\nimport time\n"
                "for i in range(4):\n    clear_output(wait=True)\n    print('step', i, flush=True)\n"
                "    time.sleep(0.05)\n")
    updating = ("from IPython.display import display\n"
                "h = display('first', display_id=True)\nh.update('second')\nprint('after')\n")
    kid = start(cl, path, notebook(("p1", progress), ("c2", clearing), ("u3", updating)))
    for cid, code in (("p1", progress), ("c2", clearing), ("u3", updating)):
        run_and_leave(srv, kid, cid, code)
    nb = wait_until(lambda: (lambda d: d if all(finished(cell(d, x)) for x in ("p1", "c2", "u3")) else None)(
        cl.disk(path)), "three cells recorded")
    assert text_of(cell(nb, "p1")) == "100%\nend\n"
    c2 = cell(nb, "c2")
    assert [o["output_type"] for o in c2["outputs"]] == ["stream"] and text_of(c2) == "step 3\n"
    u3 = cell(nb, "u3")
    shown = [o for o in u3["outputs"] if o["output_type"] == "display_data"]
    assert len(shown) == 1 and "".join(shown[0]["data"]["text/plain"]) == "'second'"
    assert text_of(u3) == "after\n"


def test_huge_output_is_truncated_with_a_marker(srv):
    cl = Client(srv)
    path = "huge-%s.ipynb" % secrets.token_hex(3)
    code = "import sys\nfor _ in range(12):\n    sys.stdout.write('x' * (1 << 20) + '\\n'); sys.stdout.flush()\n"
    kid = start(cl, path, notebook(("h1", code)))
    run_and_leave(srv, kid, "h1", code)
    nb = wait_until(lambda: (lambda d: d if finished(cell(d, "h1")) else None)(cl.disk(path)),
                    "the huge cell recorded")
    h = cell(nb, "h1")
    assert "[output truncated by Skylab: 8 MB]" in text_of(h, "stderr")
    assert len(text_of(h)) <= (8 << 20) + (1 << 20)
    assert len(text_of(h)) >= 4 << 20  # what came before the limit is kept


def test_deep_and_huge_kernel_messages_are_bounded(srv):
    cl = Client(srv)
    path = "deep-%s.ipynb" % secrets.token_hex(3)
    code = ("from IPython.display import display\n"
            "deep = []\ncur = deep\nfor _ in range(600):\n    nxt = []\n    cur.append(nxt)\n    cur = nxt\n"
            "display({'application/json': {'x': deep}, 'text/plain': 'deep'}, raw=True)\n"
            "print('still recorded', flush=True)\n"
            "display({'text/plain': 'y' * (10 << 20)}, raw=True)\n")
    kid = start(cl, path, notebook(("d1", code)))
    run_and_leave(srv, kid, "d1", code)
    nb = wait_until(lambda: (lambda d: d if finished(cell(d, "d1")) else None)(cl.disk(path)),
                    "the cell recorded")
    d = cell(nb, "d1")
    assert text_of(d) == "still recorded\n"
    # Too deep: not recorded; one message bigger than the cell's limit: the marker instead.
    assert not any(o["output_type"] == "display_data" for o in d["outputs"])
    assert "[output truncated by Skylab: 8 MB]" in text_of(d, "stderr")
    assert srv.get("/api/status").status_code == 200


def test_outside_put_during_recording_loses_neither(srv):
    cl = Client(srv)
    path = "merge-%s.ipynb" % secrets.token_hex(3)
    code = "import time\nfor i in range(12):\n    print('tick', i, flush=True)\n    time.sleep(0.5)\nprint('done')\n"
    nb0 = notebook(("r1", code), ("s2", "x = 1"))
    kid = start(cl, path, nb0)
    run_and_leave(srv, kid, "r1", code)
    wait_until(lambda: "tick 1" in text_of(cell(cl.live(path), "r1")), "recording under way")
    # Opened elsewhere: the cell is still running.
    assert cl.req("GET", "/api/contents/" + path).json()["skylab"]["running_cells"] == ["r1"]
    # A stale client (it never saw the outputs) saves new sources and a new cell.
    edited = notebook(("r1", code), ("s2", "x = 2"), ("n3", "print('new')"))
    cl.put_nb(path, edited)
    nb = wait_until(lambda: (lambda d: d if finished(cell(d, "r1")) else None)(cl.disk(path)),
                    "the run finished on disk")
    assert [c["id"] for c in nb["cells"]] == ["r1", "s2", "n3"]
    assert "".join(cell(nb, "s2")["source"]) == "x = 2"
    assert text_of(cell(nb, "r1")) == "".join("tick %d\n" % i for i in range(12)) + "done\n"
    wait_until(lambda: cl.req("GET", "/api/contents/" + path).json()["skylab"]["running_cells"] == [],
               "the cell no longer running")


def test_revision_restored_during_recording_loses_neither(srv):
    """A write from outside that bypasses the Contents PUT (a revision
    restore; skylab run writing the file is the same case) is merged into
    the live document before its next save, never overwritten."""
    cl = Client(srv)
    path = "restore-%s.ipynb" % secrets.token_hex(3)
    code = "import time\nfor i in range(30):\n    print('tick', i, flush=True)\n    time.sleep(0.5)\nprint('done')\n"
    cl.put_nb(path, notebook(("r1", code), ("s2", "'version 1'")))
    kid = start(cl, path, notebook(("r1", code), ("s2", "'version 2'")))
    revs = cl.req("GET", "/api/skylab/revisions", params={"path": path}).json()["revisions"]
    oldest = revs[-1]["id"]
    run_and_leave(srv, kid, "r1", code)
    wait_until(lambda: "tick 1" in text_of(cell(cl.disk(path), "r1")), "recorded ticks on disk")
    assert not finished(cell(cl.live(path), "r1"))  # still running: the restore lands during the recording
    r = cl.req("POST", "/api/skylab/revisions/%s/restore" % oldest, params={"path": path})
    assert r.status_code == 200, r.text
    nb = wait_until(lambda: (lambda d: d if finished(cell(d, "r1")) else None)(cl.disk(path)),
                    "the run finished on disk")
    assert "".join(cell(nb, "s2")["source"]) == "'version 1'"
    assert text_of(cell(nb, "r1")) == "".join("tick %d\n" % i for i in range(30)) + "done\n"
    assert "".join(cell(cl.live(path), "s2")["source"]) == "'version 1'"


def test_recording_follows_a_rename_of_the_notebook(srv):
    cl = Client(srv)
    path = "before-%s.ipynb" % secrets.token_hex(3)
    to = "after-%s.ipynb" % secrets.token_hex(3)
    code = "import time\nfor i in range(16):\n    print('tick', i, flush=True)\n    time.sleep(0.5)\nprint('done')\n"
    kid = start(cl, path, notebook(("r1", code)))
    run_and_leave(srv, kid, "r1", code)
    wait_until(lambda: "tick 1" in text_of(cell(cl.live(path), "r1")), "recording under way")
    r = cl.req("PATCH", "/api/contents/" + path, json={"path": to})
    assert r.status_code == 200, r.text
    nb = wait_until(lambda: (lambda d: d if finished(cell(d, "r1")) else None)(cl.disk(to)),
                    "the run finished in the renamed file")
    assert text_of(cell(nb, "r1")) == "".join("tick %d\n" % i for i in range(16)) + "done\n"
    assert cl.req("GET", "/api/contents/" + path).status_code == 404


def test_recorder_saves_do_not_look_like_edits_to_an_editor(srv):
    """The app and JupyterLab refuse to save over a file "changed elsewhere"
    (last_modified newer than their own save): the recorder's saves must
    not trigger that, a save by another client must."""
    cl = Client(srv)
    path = "conflict-%s.ipynb" % secrets.token_hex(3)
    code = "print('recorded', flush=True)\n"
    kid = start(cl, path, notebook(("e1", code)))
    run_and_leave(srv, kid, "e1", code)
    wait_until(lambda: finished(cell(cl.live(path), "e1")), "the run in the live document")
    mine = cl.put_nb(path, notebook(("e1", code), ("e2", "# edited"))).json()["last_modified"]
    run_and_leave(srv, kid, "e1", code)
    nb = wait_until(lambda: (lambda d: d if finished(cell(d, "e1")) and cell(d, "e1")["execution_count"] == 2
                             else None)(cl.disk(path)), "the second run saved by the server")
    assert [c["id"] for c in nb["cells"]] == ["e1", "e2"]
    assert cl.req("GET", "/api/contents/" + path + "?content=0").json()["last_modified"] == mine
    # Another client's save is a real edit.
    theirs = cl.put_nb(path, notebook(("e1", code), ("e3", "# theirs"))).json()["last_modified"]
    assert theirs != mine
    assert cl.req("GET", "/api/contents/" + path + "?content=0").json()["last_modified"] == theirs


def test_a_cell_cut_short_by_a_kernel_restart_stops_running(srv):
    cl = Client(srv)
    path = "krestart-%s.ipynb" % secrets.token_hex(3)
    long_code = "import time\nprint('started', flush=True)\ntime.sleep(600)\n"
    kid = start(cl, path, notebook(("l1", long_code), ("n2", "print('next')")))
    run_and_leave(srv, kid, "l1", long_code)
    wait_until(lambda: "started" in text_of(cell(cl.live(path), "l1")), "the long cell running")
    r = cl.req("POST", "/api/kernels/%s/restart" % kid)
    assert r.status_code == 200, r.text
    run_and_leave(srv, kid, "n2", "print('next')")
    nb = wait_until(lambda: (lambda d: d if finished(cell(d, "n2")) else None)(cl.disk(path)), "the next cell")
    assert text_of(cell(nb, "n2")) == "next\n"
    assert text_of(cell(nb, "l1")) == "started\n"  # what it printed stays
    assert cl.req("GET", "/api/contents/" + path).json()["skylab"]["running_cells"] == []


def test_other_users_cannot_record_into_a_notebook_not_theirs(srv):
    alice = Client(srv, token_session(_user(srv, "alice")[1]))
    bob = Client(srv, token_session(_user(srv, "bob")[1]))
    path = "mine-%s.ipynb" % secrets.token_hex(3)
    kid = start(alice, path, notebook(("m1", "print('alice')")))
    # Bob cannot bind a session to Alice's kernel...
    r = bob.session(path, kernel_id=kid)
    assert r.status_code == 404, r.text
    # ...nor reach her file: his sessions name paths in his own Drive.
    for p in (path, "../" + path):
        r = bob.session(p)
        if r.status_code == 201:
            bkid = r.json()["kernel"]["id"]
            srv.kernels.append(bkid)
            run_and_leave(srv, bkid, "m1", "print('bob was here')")
    # A viewer share gives no kernel and no save either.
    vname, vtoken = _user(srv, "viewer")
    r = alice.req("POST", "/api/skylab/shares", json={"path": path, "user": vname, "role": "viewer"})
    assert r.status_code == 201, r.text
    v = Client(srv, token_session(vtoken))
    assert v.session(path, kernel_id=kid).status_code == 404
    assert v.req("PUT", "/api/skylab/shared/%s/contents" % r.json()["id"],
                 json={"type": "notebook", "format": "json",
                       "content": notebook(("m1", "print('viewer')"))}).status_code == 403
    # Alice's own run is recorded, and nothing of Bob's or the viewer's is in her file.
    run_and_leave(srv, kid, "m1", "print('alice')")
    nb = wait_until(lambda: (lambda d: d if finished(cell(d, "m1")) else None)(alice.disk(path)),
                    "alice's run recorded")
    assert text_of(cell(nb, "m1")) == "alice\n"
    assert "".join(cell(nb, "m1")["source"]) == "print('alice')"
    assert [c["id"] for c in nb["cells"]] == ["m1"]


def _user(srv, prefix):
    name = uname(prefix)
    add_user(srv, name, "password-" + name)
    return name, new_token(srv, name)


def test_outputs_survive_a_server_sigterm_and_restart(fresh_server):
    srv = fresh_server
    cl = Client(srv)
    path = "sigterm-%s.ipynb" % secrets.token_hex(3)
    code = "print('kept across the restart', flush=True)\n"
    kid = start(cl, path, notebook(("k1", code)))
    run_and_leave(srv, kid, "k1", code)
    # Stop the server as soon as the live document has it: the last save
    # happens on the way down if the debounced one has not yet.
    wait_until(lambda: finished(cell(cl.live(path), "k1")), "the run in the live document", interval=0.05)
    assert srv.terminate() == 0
    srv.restart()
    nb = cl.disk(path)
    assert text_of(cell(nb, "k1")) == "kept across the restart\n"
    assert finished(cell(nb, "k1"))


def test_recording_continues_after_a_server_crash_in_the_middle_of_a_cell(fresh_server):
    srv = fresh_server
    cl = Client(srv)
    path = "crash-%s.ipynb" % secrets.token_hex(3)
    code = ("import time\nprint('tick 0', flush=True)\n"
            "for i in range(1, 30):\n    time.sleep(0.5)\n    print('tick', i, flush=True)\nprint('done')\n")
    kid = start(cl, path, notebook(("r1", code)))
    run_and_leave(srv, kid, "r1", code)
    # What was recorded before the crash is on disk (debounced saves while it streams).
    wait_until(lambda: "tick 2" in text_of(cell(cl.disk(path), "r1")), "ticks on disk before the crash")
    srv.kill_and_restart()  # the runtime outlives the server and is reattached
    on_disk = cl.disk(path)
    ticks_at_restart = text_of(cell(on_disk, "r1")).count("tick")
    assert text_of(cell(on_disk, "r1")).startswith("tick 0\ntick 1\ntick 2\n")
    # What the kernel prints after the restart is still recorded into the cell.
    try:
        nb = wait_until(lambda: (lambda d: d if finished(cell(d, "r1")) else None)(cl.disk(path)),
                        "the long cell finished on disk after the restart")
    except AssertionError:
        raise AssertionError("%r\n%s" % (cell(cl.disk(path), "r1"), srv.log_text(20000)))
    r1 = text_of(cell(nb, "r1"))
    assert r1.startswith("tick 0\n") and r1.endswith("tick 29\ndone\n"), r1
    assert r1.count("tick") > ticks_at_restart
    # Its execute_reply went to the crashed server's socket: the iopub idle ended it.
    assert "iopub.status.idle" in cell(nb, "r1")["metadata"]["execution"]
