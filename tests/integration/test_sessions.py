"""Jupyter's Sessions API: a notebook path linked to a kernel.

Create, list, get, rename (PATCH path), change kernel (PATCH kernel.name),
delete (the kernel goes too); renaming the notebook through the Contents API
keeps its session (Skylab); a session whose kernel was deleted disappears.
"""

import urllib.parse
import uuid

import pytest

skylab_only = pytest.mark.skylab_only


def kernel_ids(server):
    return {k["id"] for k in server.get("/api/kernels").json()}


def new_session(server, path, kernel=None, type_="notebook", name=None):
    body = {"path": path, "type": type_, "name": name or path.rsplit("/", 1)[-1],
            "kernel": kernel or {"name": "python3"}}
    r = server.post("/api/sessions", json=body, timeout=120)
    return r


@pytest.fixture
def session(server):
    """A session on a fresh notebook path; deleted afterwards if still there."""
    path = "s-%s.ipynb" % uuid.uuid4().hex[:8]
    r = server.http.put(server.url("/api/contents/" + path), json={
        "type": "notebook", "content": {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}})
    assert r.status_code == 201, r.text
    r = new_session(server, path)
    assert r.status_code == 201, r.text
    s = r.json()
    yield s
    server.delete("/api/sessions/" + s["id"])
    server.delete("/api/contents/" + urllib.parse.quote(path))


def test_create_list_get(server, session):
    s = session
    assert set(s) >= {"id", "path", "name", "type", "kernel"}
    assert s["type"] == "notebook" and s["notebook"] == {"path": s["path"], "name": s["name"]}
    assert set(s["kernel"]) >= {"id", "name", "last_activity", "execution_state", "connections"}
    assert s["kernel"]["name"] == "python3"
    assert s["kernel"]["id"] in kernel_ids(server)
    listed = server.get("/api/sessions").json()
    assert s["id"] in [x["id"] for x in listed]
    g = server.get("/api/sessions/" + s["id"])
    assert g.status_code == 200 and g.json()["path"] == s["path"]
    assert g.json()["kernel"]["id"] == s["kernel"]["id"]
    # The same path again: the existing session, not a second kernel.
    again = new_session(server, s["path"])
    assert again.status_code == 201
    assert again.json()["id"] == s["id"] and again.json()["kernel"]["id"] == s["kernel"]["id"]
    assert server.get("/api/sessions/" + str(uuid.uuid4())).status_code == 404


def test_patch_path_and_name(server, session):
    r = server.http.patch(server.url("/api/sessions/" + session["id"]),
                          json={"path": "renamed-" + session["path"], "name": "renamed"})
    assert r.status_code == 200, r.text
    assert r.json()["path"] == "renamed-" + session["path"] and r.json()["name"] == "renamed"
    assert r.json()["kernel"]["id"] == session["kernel"]["id"]
    assert server.get("/api/sessions/" + session["id"]).json()["path"] == "renamed-" + session["path"]


def test_patch_kernel_starts_a_new_one_and_stops_the_old(server, session):
    old = session["kernel"]["id"]
    r = server.http.patch(server.url("/api/sessions/" + session["id"]), json={"kernel": {"name": "python3"}},
                          timeout=120)
    assert r.status_code == 200, r.text
    new = r.json()["kernel"]["id"]
    assert new != old
    ids = kernel_ids(server)
    assert new in ids and old not in ids


def test_patch_to_an_existing_kernel(server, session):
    other = server.create_kernel()
    r = server.http.patch(server.url("/api/sessions/" + session["id"]), json={"kernel": {"id": other}})
    assert r.status_code == 200, r.text
    assert r.json()["kernel"]["id"] == other
    assert session["kernel"]["id"] not in kernel_ids(server)
    bad = server.http.patch(server.url("/api/sessions/" + session["id"]), json={"kernel": {"id": str(uuid.uuid4())}})
    assert bad.status_code == 400


def test_delete_stops_the_kernel(server):
    r = new_session(server, "del-%s.ipynb" % uuid.uuid4().hex[:6])
    assert r.status_code == 201
    s = r.json()
    assert server.delete("/api/sessions/" + s["id"]).status_code == 204
    assert s["kernel"]["id"] not in kernel_ids(server)
    assert s["id"] not in [x["id"] for x in server.get("/api/sessions").json()]
    assert server.delete("/api/sessions/" + s["id"]).status_code == 404


def test_session_goes_when_its_kernel_is_deleted(server):
    r = new_session(server, "k-%s.ipynb" % uuid.uuid4().hex[:6])
    s = r.json()
    assert server.delete("/api/kernels/" + s["kernel"]["id"]).status_code == 204
    assert s["id"] not in [x["id"] for x in server.get("/api/sessions").json()]
    assert server.get("/api/sessions/" + s["id"]).status_code == 404


def test_console_sessions_and_bad_requests(server):
    r = new_session(server, "Console 1-%s" % uuid.uuid4(), type_="console", name="")
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["type"] == "console" and s.get("notebook") is None
    server.delete("/api/sessions/" + s["id"])
    assert server.post("/api/sessions", json={"type": "notebook"}).status_code == 400  # no path
    assert server.post("/api/sessions", data=b"{bad").status_code == 400
    r = new_session(server, "x-%s.ipynb" % uuid.uuid4().hex[:6], kernel={"name": "no-such-kernel"})
    assert r.status_code == 501, r.text
    assert "no-such-kernel" in r.json()["message"]


@skylab_only
def test_session_strings_are_returned_escaped(server):
    path = "<img src=x onerror=alert(1)>-%s.ipynb" % uuid.uuid4().hex[:6]
    r = new_session(server, path, name="<b>name</b>")
    assert r.status_code == 201, r.text
    try:
        assert b"<img" not in r.content and b"<b>" not in r.content
        assert r.json()["path"] == path and r.json()["name"] == "<b>name</b>"
        listed = server.get("/api/sessions")
        assert b"<img" not in listed.content and path in [s["path"] for s in listed.json()]
    finally:
        server.delete("/api/sessions/" + r.json()["id"])
    r = new_session(server, "y.ipynb", kernel={"name": "<script>x</script>"})
    assert r.status_code == 501 and b"<script>" not in r.content


@skylab_only
def test_renaming_the_notebook_keeps_its_session(server, session):
    new_path = "moved-" + session["path"]
    r = server.http.patch(server.url("/api/contents/" + urllib.parse.quote(session["path"])), json={"path": new_path})
    assert r.status_code == 200, r.text
    g = server.get("/api/sessions/" + session["id"]).json()
    assert g["path"] == new_path and g["notebook"]["path"] == new_path and g["name"] == new_path
    assert g["kernel"]["id"] == session["kernel"]["id"]
    assert g["kernel"]["id"] in kernel_ids(server)
    # moving the directory that holds it works the same way
    d = "dir-" + uuid.uuid4().hex[:6]
    server.http.put(server.url("/api/contents/" + d), json={"type": "directory"})
    server.http.patch(server.url("/api/contents/" + urllib.parse.quote(new_path)), json={"path": d + "/nb.ipynb"})
    server.http.patch(server.url("/api/contents/" + d), json={"path": d + "-2"})
    assert server.get("/api/sessions/" + session["id"]).json()["path"] == d + "-2/nb.ipynb"
    server.http.patch(server.url("/api/contents/" + d + "-2/nb.ipynb"), json={"path": session["path"]})
    server.delete("/api/contents/" + d + "-2")


@pytest.mark.skylab_only
def test_sessions_survive_a_server_restart():
    """Runtimes outlive a SIGKILL of the server; so does the notebook-to-runtime
    mapping, so that reopening the notebook finds its runtime and its state."""
    from conftest import Server
    srv = Server()
    try:
        r = srv.post("/api/sessions", json={"path": "keep/me.ipynb", "type": "notebook", "name": "me.ipynb",
                                            "kernel": {"name": "python3"}})
        assert r.status_code == 201, r.text
        sess = r.json()
        kid = sess["kernel"]["id"]
        srv.kernels.append(kid)
        c = srv.connect(kid)
        c.nudge(timeout=60)
        c.eval_ok("kept = 41 + 1")
        c.close()
        srv.clients.clear()
        srv.kill_and_restart()
        listed = srv.get("/api/sessions").json()
        assert [(s["id"], s["path"], s["kernel"]["id"]) for s in listed] == [(sess["id"], "keep/me.ipynb", kid)]
        c = srv.connect(kid)
        c.nudge(timeout=60)
        assert c.execute("print(kept)").stdout.strip() == "42"
        c.close()
        srv.clients.clear()
        # Deleting it after the restart is remembered across the next one.
        assert srv.delete("/api/sessions/" + sess["id"]).status_code == 204
        srv.kernels.remove(kid)
        srv.kill_and_restart()
        assert srv.get("/api/sessions").json() == []
    finally:
        if srv.proc.poll() is None:
            srv.terminate()
        srv.cleanup_tmp()
