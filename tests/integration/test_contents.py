"""The Drive through Jupyter's Contents API, end to end on the real binary.

Covers list/get/save/rename/delete/copy, notebooks (nbformat validation on
save, v3 and older v4 reads), checkpoints and Skylab's revisions endpoint,
raw downloads, chunked uploads (100 MB; 1 GiB in bounded memory), traversal
and naming attacks, a full disk, and a crash test that SIGKILLs the server
during saves (SKYLAB_CRASH_RUNS, default 200).

Every notebook the server writes is checked with Python's nbformat.validate.
"""

import base64
import copy
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid

import nbformat
import pytest
import requests

from conftest import IS_JUPYTER, Server, free_port, skylab_bin

skylab_only = pytest.mark.skylab_only


# ---------------------------------------------------------------- helpers

def drive_root(srv):
    """The directory that holds the admin's Drive on disk."""
    if srv.kind == "jupyter":
        return srv.data_dir
    root = os.path.join(srv.data_dir, "drive", "admin")
    srv.get("/api/contents")  # the root is created on first use
    return root


def api(path):
    return "/api/contents/" + urllib.parse.quote(path)


def raw_request(srv, method, target, body=None, headers=None):
    """A request with the target sent byte for byte (no client-side URL normalization)."""
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
    h = {"Authorization": "token " + srv.token}
    h.update(headers or {})
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    conn.putrequest(method, target, skip_accept_encoding=True)
    for k, v in h.items():
        conn.putheader(k, v)
    conn.putheader("Content-Length", str(len(body or b"")))
    conn.endheaders()
    if body:
        conn.send(body)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


def notebook(marker="x", cells=3, minor=5, ids=True):
    nb = {"nbformat": 4, "nbformat_minor": minor,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"},
                       "language_info": {"name": "python"}},
          "cells": []}
    for i in range(cells):
        if i % 2:
            c = {"cell_type": "markdown", "metadata": {}, "source": "## %s %d\n\ntext" % (marker, i)}
        else:
            c = {"cell_type": "code", "metadata": {}, "execution_count": i,
                 "source": "print(%r)\nx = %d" % (marker, i),
                 "outputs": [{"output_type": "stream", "name": "stdout", "text": "%s\n" % marker},
                             {"output_type": "execute_result", "execution_count": i, "metadata": {},
                              "data": {"text/plain": repr(marker)}}]}
        if ids:
            c["id"] = "cell-%d" % i
        nb["cells"].append(c)
    return nb


def assert_valid_on_disk(srv, path):
    """The file Skylab wrote validates with nbformat, as stored."""
    with open(os.path.join(drive_root(srv), path), encoding="utf-8") as f:
        nb = nbformat.read(f, as_version=nbformat.NO_CONVERT)
    nbformat.validate(nb)
    return nb


def put_file(srv, path, content, fmt="text"):
    if fmt == "base64":
        content = base64.b64encode(content).decode()
    return srv.http.put(srv.url(api(path)), json={"type": "file", "format": fmt, "content": content}, timeout=120)


def put_notebook(srv, path, nb):
    return srv.http.put(srv.url(api(path)), json={"type": "notebook", "content": nb}, timeout=120)


def upload_chunked(srv, path, data, chunk_size=1 << 20, between=None):
    """Uploads `data` as JupyterLab does: chunks 1, 2, ..., then -1."""
    n = max(1, (len(data) + chunk_size - 1) // chunk_size)
    last = None
    for i in range(n):
        number = -1 if i == n - 1 else i + 1
        part = data[i * chunk_size:(i + 1) * chunk_size]
        last = srv.http.put(srv.url(api(path)), json={
            "type": "file", "format": "base64", "chunk": number,
            "content": base64.b64encode(part).decode()}, timeout=120)
        assert last.status_code in (200, 201), (i, last.status_code, last.text)
        if between:
            between(i, number)
    return last


def snapshot(tree):
    """{relative path: (size, mtime_ns, sha256)} of every file under tree (not following links)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(tree, followlinks=False):
        for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            digest = None
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(p, tree)] = (st.st_size, st.st_mtime_ns, digest)
    return out


@pytest.fixture
def workdir(server):
    """A fresh directory in the admin's Drive for one test; removed afterwards."""
    name = "t-" + uuid.uuid4().hex[:10]
    r = server.http.put(server.url(api(name)), json={"type": "directory"})
    assert r.status_code in (200, 201), r.text
    yield name
    shutil.rmtree(os.path.join(drive_root(server), name), ignore_errors=True)


# ---------------------------------------------------------------- basics

MODEL_KEYS = {"name", "path", "type", "writable", "created", "last_modified", "mimetype", "content",
              "format", "size"}


def test_root_directory_model(server):
    r = server.get("/api/contents")
    assert r.status_code == 200, r.text
    m = r.json()
    assert MODEL_KEYS <= set(m)
    assert m["type"] == "directory" and m["path"] == "" and m["format"] == "json"
    assert isinstance(m["content"], list)
    assert m["last_modified"].endswith("Z") and "T" in m["last_modified"]
    r2 = server.get("/api/contents?content=0")
    assert r2.json()["content"] is None and r2.json()["format"] is None


def test_text_and_binary_files(server, workdir):
    r = put_file(server, workdir + "/hello.txt", "héllo\nwörld")
    assert r.status_code == 201, r.text
    m = r.json()
    assert m["name"] == "hello.txt" and m["path"] == workdir + "/hello.txt" and m["type"] == "file"
    assert m["content"] is None and m["size"] == len("héllo\nwörld".encode())
    assert r.headers["Location"].endswith("/api/contents/%s/hello.txt" % workdir)
    assert put_file(server, workdir + "/hello.txt", "v2").status_code == 200  # existed: 200

    g = server.get(api(workdir + "/hello.txt")).json()
    assert g["content"] == "v2" and g["format"] == "text" and g["mimetype"] == "text/plain"

    blob = bytes(range(256)) * 10
    assert put_file(server, workdir + "/b.bin", blob, fmt="base64").status_code == 201
    g = server.get(api(workdir + "/b.bin")).json()
    assert g["format"] == "base64" and base64.b64decode(g["content"]) == blob
    assert g["mimetype"] == "application/octet-stream"
    assert server.get(api(workdir + "/b.bin") + "?format=text").status_code == 400
    g = server.get(api(workdir + "/hello.txt") + "?format=base64").json()
    assert base64.b64decode(g["content"]) == b"v2"
    assert server.get(api(workdir + "/hello.txt") + "?type=directory").status_code == 400
    assert server.get(api(workdir) + "?type=file").status_code == 400
    assert server.get(api(workdir + "/hello.txt") + "?format=xml").status_code == 400
    assert server.get(api(workdir + "/hello.txt") + "?content=2").status_code == 400
    assert server.get(api(workdir + "/missing.txt")).status_code == 404
    # bad models
    assert server.http.put(server.url(api(workdir + "/x.txt")), json={"content": "x"}).status_code == 400
    # no content: a new path gets an empty file, an existing one is refused
    assert server.http.put(server.url(api(workdir + "/empty.txt")), json={"type": "file"}).status_code == 201
    assert server.get(api(workdir + "/empty.txt")).json()["content"] == ""
    assert server.http.put(server.url(api(workdir + "/hello.txt")), json={"type": "file"}).status_code == 400
    assert server.http.put(server.url(api(workdir + "/x.txt")), data=b"{nope").status_code == 400
    if not IS_JUPYTER:  # Jupyter 1.23 answers 500, or decodes bad base64 leniently
        assert server.http.put(server.url(api(workdir + "/x.txt")),
                               json={"type": "file", "content": "x"}).status_code == 400
        assert server.http.put(server.url(api(workdir + "/x.txt")),
                               json={"type": "file", "format": "base64", "content": "!!!"}).status_code == 400


def test_listing(server, workdir):
    for n in ("b.txt", "a.ipynb", "c"):
        if n == "c":
            server.http.put(server.url(api(workdir + "/c")), json={"type": "directory"})
        elif n.endswith(".ipynb"):
            assert put_notebook(server, workdir + "/" + n, notebook()).status_code == 201
        else:
            put_file(server, workdir + "/" + n, "x")
    m = server.get(api(workdir)).json()
    items = {c["name"]: c for c in m["content"]}
    assert set(items) == {"a.ipynb", "b.txt", "c"}
    assert items["a.ipynb"]["type"] == "notebook" and items["c"]["type"] == "directory"
    assert items["b.txt"]["type"] == "file"
    for c in m["content"]:
        assert MODEL_KEYS <= set(c) and c["content"] is None and c["format"] is None
    assert items["c"]["size"] is None and items["b.txt"]["size"] == 1


def test_new_untitled_names(server, workdir):
    def post(body):
        r = server.post(api(workdir), json=body)
        assert r.status_code == 201, r.text
        return r.json()
    assert post({"type": "notebook"})["name"] == "Untitled.ipynb"
    assert post({"type": "notebook"})["name"] == "Untitled1.ipynb"
    assert post({"ext": ".ipynb"})["name"] == "Untitled2.ipynb"
    assert post({"type": "file", "ext": ".txt"})["name"] == "untitled.txt"
    assert post({"type": "file", "ext": ".txt"})["name"] == "untitled1.txt"
    d = post({"type": "directory"})
    assert d["name"] == "Untitled Folder" and d["type"] == "directory"
    assert post({"type": "directory"})["name"] == "Untitled Folder 1"
    assert_valid_on_disk(server, workdir + "/Untitled.ipynb")
    assert server.post(api(workdir + "/untitled.txt"), json={}).status_code == 400  # POST to a file
    assert server.post(api(workdir + "/nope"), json={"type": "file"}).status_code == 404
    assert server.post(api(workdir), json={"type": "bogus"}).status_code == 400


def test_rename_move_delete(server, workdir):
    put_file(server, workdir + "/a.txt", "A")
    put_file(server, workdir + "/b.txt", "B")
    server.http.put(server.url(api(workdir + "/sub")), json={"type": "directory"})
    r = server.http.patch(server.url(api(workdir + "/a.txt")), json={"path": workdir + "/c.txt"})
    assert r.status_code == 200, r.text
    assert r.json()["path"] == workdir + "/c.txt" and r.json()["name"] == "c.txt"
    assert server.get(api(workdir + "/a.txt")).status_code == 404
    assert server.get(api(workdir + "/c.txt")).json()["content"] == "A"
    # target exists
    r = server.http.patch(server.url(api(workdir + "/c.txt")), json={"path": workdir + "/b.txt"})
    assert r.status_code == 409
    assert server.get(api(workdir + "/b.txt")).json()["content"] == "B"
    # move into a directory, and a whole directory
    r = server.http.patch(server.url(api(workdir + "/c.txt")), json={"path": workdir + "/sub/c.txt"})
    assert r.status_code == 200
    r = server.http.patch(server.url(api(workdir + "/sub")), json={"path": workdir + "/sub2"})
    assert r.status_code == 200 and r.json()["type"] == "directory"
    assert server.get(api(workdir + "/sub2/c.txt")).json()["content"] == "A"
    if not IS_JUPYTER:  # Jupyter 1.23: 500
        assert server.http.patch(server.url(api(workdir + "/missing")),
                                 json={"path": workdir + "/x"}).status_code == 404
    # delete
    assert server.delete(api(workdir + "/b.txt")).status_code == 204
    assert server.get(api(workdir + "/b.txt")).status_code == 404
    assert server.delete(api(workdir + "/b.txt")).status_code == 404
    assert server.delete("/api/contents/").status_code == 400


@skylab_only
def test_delete_non_empty_directory(server, workdir):
    assert put_file(server, workdir + "/d/x.txt", "x").status_code == 404  # no parent directory
    server.http.put(server.url(api(workdir + "/d")), json={"type": "directory"})
    put_file(server, workdir + "/d/x.txt", "x")
    assert server.delete(api(workdir + "/d")).status_code == 204
    assert not os.path.exists(os.path.join(drive_root(server), workdir, "d"))


def test_copy(server, workdir):
    put_notebook(server, workdir + "/nb.ipynb", notebook("orig"))
    put_file(server, workdir + "/data.tar.gz", "tgz")
    server.http.put(server.url(api(workdir + "/other")), json={"type": "directory"})
    r = server.post(api(workdir), json={"copy_from": workdir + "/nb.ipynb"})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "nb-Copy1.ipynb"
    r = server.post(api(workdir), json={"copy_from": workdir + "/nb-Copy1.ipynb"})
    assert r.json()["name"] == "nb-Copy2.ipynb"
    r = server.post(api(workdir), json={"copy_from": workdir + "/data.tar.gz"})
    assert r.json()["name"] == "data-Copy1.tar.gz"
    r = server.post(api(workdir + "/other"), json={"copy_from": workdir + "/nb.ipynb"})
    assert r.status_code == 201 and r.json()["path"] == workdir + "/other/nb.ipynb"
    got = server.get(api(workdir + "/other/nb.ipynb")).json()["content"]
    assert got["cells"][0]["source"] == notebook("orig")["cells"][0]["source"]
    assert_valid_on_disk(server, workdir + "/nb-Copy1.ipynb")
    assert server.post(api(workdir), json={"copy_from": workdir + "/missing.txt"}).status_code == 404
    assert server.post(api(workdir), json={"copy_from": workdir + "/other"}).status_code == 400
    assert server.http.put(server.url(api(workdir + "/x.txt")),
                           json={"copy_from": workdir + "/nb.ipynb"}).status_code == 400


# ---------------------------------------------------------------- notebooks

def test_notebook_save_and_load(server, workdir):
    nb = notebook("hello", cells=5)
    nb["cells"][0]["source"] = "line1\nline2\n"
    r = put_notebook(server, workdir + "/n.ipynb", nb)
    assert r.status_code == 201, r.text
    assert r.json()["type"] == "notebook" and r.json()["content"] is None
    g = server.get(api(workdir + "/n.ipynb"))
    assert g.status_code == 200
    m = g.json()
    assert m["type"] == "notebook" and m["format"] == "json" and m["mimetype"] is None
    assert m["content"]["cells"][0]["source"] == "line1\nline2\n"  # joined again on read
    assert m["content"]["cells"][0]["outputs"][0]["text"] == "hello\n"
    stored = assert_valid_on_disk(server, workdir + "/n.ipynb")
    with open(os.path.join(drive_root(server), workdir, "n.ipynb")) as f:
        raw = json.load(f)
    assert raw["cells"][0]["source"] == ["line1\n", "line2\n"]  # nbformat's on-disk layout
    assert stored.nbformat == 4 and stored.nbformat_minor == 5
    # as a file, the raw JSON text
    f = server.get(api(workdir + "/n.ipynb") + "?type=file").json()
    assert f["type"] == "file" and json.loads(f["content"])["nbformat"] == 4


@skylab_only
def test_cell_ids_added_and_minor_upgraded(server, workdir):
    nb = notebook("old", minor=4, ids=False)
    assert put_notebook(server, workdir + "/old.ipynb", nb).status_code == 201
    stored = assert_valid_on_disk(server, workdir + "/old.ipynb")
    assert stored.nbformat_minor >= 5
    ids = [c["id"] for c in stored.cells]
    assert all(ids) and len(set(ids)) == len(ids)
    nb = notebook("new", ids=False)
    assert put_notebook(server, workdir + "/new.ipynb", nb).status_code == 201
    assert all(c.get("id") for c in assert_valid_on_disk(server, workdir + "/new.ipynb").cells)


@skylab_only
@pytest.mark.parametrize("breakage,expected", [
    (lambda nb: nb.pop("cells"), "cells"),
    (lambda nb: nb["cells"][0].update(cell_type="python"), "cell_type"),
    (lambda nb: nb["cells"][0].update(source=5), "source"),
    (lambda nb: nb["cells"][0].pop("outputs"), "outputs"),
    (lambda nb: nb["cells"][0]["outputs"][0].update(output_type="bogus"), "output_type"),
    (lambda nb: nb["cells"][0]["outputs"][1].pop("data"), "data"),
    (lambda nb: nb["cells"][0].update(metadata=[]), "metadata"),
    (lambda nb: nb.update(metadata="x"), "metadata"),
    (lambda nb: nb.update(nbformat="4"), "nbformat"),
    (lambda nb: nb.update(nbformat_minor=None), "nbformat_minor"),
    (lambda nb: nb.update(nbformat=9), "nbformat"),
    (lambda nb: nb["cells"][0].update(execution_count="one"), "execution_count"),
    (lambda nb: nb["cells"][0].update(id="bad id!"), "id"),
])
def test_invalid_notebook_rejected(server, workdir, breakage, expected):
    path = workdir + "/inv.ipynb"
    assert put_notebook(server, path, notebook("good")).status_code == 201
    before = open(os.path.join(drive_root(server), path), "rb").read()
    nb = notebook("bad")
    breakage(nb)
    r = put_notebook(server, path, nb)
    assert r.status_code == 400, r.text
    assert expected in r.json()["message"], r.json()["message"]
    assert open(os.path.join(drive_root(server), path), "rb").read() == before
    assert_valid_on_disk(server, path)


def test_v3_notebook_is_read_as_v4(server, workdir):
    v3 = {"metadata": {"name": "old"}, "nbformat": 3, "nbformat_minor": 0, "worksheets": [{"metadata": {}, "cells": [
        {"cell_type": "heading", "level": 1, "metadata": {}, "source": "Title"},
        {"cell_type": "code", "input": "1+1", "language": "python", "metadata": {}, "prompt_number": 1,
         "collapsed": False,
         "outputs": [{"output_type": "pyout", "prompt_number": 1, "text": "2", "metadata": {}}]}]}]}
    path = os.path.join(drive_root(server), workdir, "v3.ipynb")
    with open(path, "w") as f:
        json.dump(v3, f)
    m = server.get(api(workdir + "/v3.ipynb")).json()
    nb = m["content"]
    assert nb["nbformat"] == 4
    assert nb["cells"][0] == {**nb["cells"][0], "cell_type": "markdown", "source": "# Title"}
    assert nb["cells"][1]["source"] == "1+1" and nb["cells"][1]["execution_count"] == 1
    assert nb["cells"][1]["outputs"][0]["output_type"] == "execute_result"
    assert nb["cells"][1]["outputs"][0]["data"]["text/plain"] == "2"
    # saving it back stores a valid v4 notebook
    assert put_notebook(server, workdir + "/v3.ipynb", nb).status_code == 200
    assert assert_valid_on_disk(server, workdir + "/v3.ipynb").nbformat == 4


def test_unreadable_notebook(server, workdir):
    with open(os.path.join(drive_root(server), workdir, "broken.ipynb"), "w") as f:
        f.write("{not json")
    r = server.get(api(workdir + "/broken.ipynb"))
    assert r.status_code == 400 and "Unreadable Notebook" in r.json()["message"]
    assert server.get(api(workdir + "/broken.ipynb") + "?type=file").json()["content"] == "{not json"


# ---------------------------------------------------------------- checkpoints, revisions, hash

def test_checkpoints(server, workdir):
    path = workdir + "/c.ipynb"
    base = api(path)
    put_notebook(server, path, notebook("one"))
    r = server.post(base + "/checkpoints")
    assert r.status_code == 201, r.text
    cp = r.json()
    assert set(cp) == {"id", "last_modified"}
    put_notebook(server, path, notebook("two"))
    cps = server.get(base + "/checkpoints").json()
    assert cp["id"] in [c["id"] for c in cps]
    assert server.post(base + "/checkpoints/" + cp["id"]).status_code == 204
    assert server.get(base).json()["content"]["cells"][0]["outputs"][0]["text"] == "one\n"
    assert_valid_on_disk(server, path)
    assert server.delete(base + "/checkpoints/" + cp["id"]).status_code == 204
    assert cp["id"] not in [c["id"] for c in server.get(base + "/checkpoints").json()]
    if not IS_JUPYTER:  # Jupyter 1.23: 500
        assert server.post(base + "/checkpoints/999999999").status_code == 404


@skylab_only
def test_every_notebook_save_keeps_a_revision(server, workdir):
    path = workdir + "/r.ipynb"
    for i in range(3):
        assert put_notebook(server, path, notebook("v%d" % i)).status_code in (200, 201)
    put_notebook(server, path, notebook("v2"))  # unchanged: no new revision
    r = server.get("/api/skylab/revisions", params={"path": path})
    assert r.status_code == 200, r.text
    revs = r.json()["revisions"]
    assert len(revs) == 3
    assert revs[0]["timestamp"] >= revs[1]["timestamp"] >= revs[2]["timestamp"]  # newest first
    assert all(x["size"] > 0 and len(x["hash"]) == 64 for x in revs)
    oldest = server.get("/api/skylab/revisions/" + revs[-1]["id"], params={"path": path}).json()
    assert oldest["content"]["cells"][0]["outputs"][0]["text"] == "v0\n"
    # checkpoints are the same store, oldest first
    cps = server.get(api(path) + "/checkpoints").json()
    assert [c["id"] for c in cps] == [x["id"] for x in reversed(revs)]
    # restore through the Skylab endpoint; the replaced content stays in the history
    r = server.post("/api/skylab/revisions/%s/restore" % revs[-1]["id"], params={"path": path})
    assert r.status_code == 200, r.text
    assert server.get(api(path)).json()["content"]["cells"][0]["outputs"][0]["text"] == "v0\n"
    after = server.get("/api/skylab/revisions", params={"path": path}).json()["revisions"]
    assert any(x["hash"] == revs[0]["hash"] for x in after)
    # revisions follow a rename and go with a delete
    server.http.patch(server.url(api(path)), json={"path": workdir + "/r2.ipynb"})
    assert server.get("/api/skylab/revisions", params={"path": path}).json()["revisions"] == []
    assert len(server.get("/api/skylab/revisions", params={"path": workdir + "/r2.ipynb"}).json()["revisions"]) >= 3
    server.delete(api(workdir + "/r2.ipynb"))
    assert server.get("/api/skylab/revisions", params={"path": workdir + "/r2.ipynb"}).json()["revisions"] == []
    assert server.get("/api/skylab/revisions").status_code == 400


@skylab_only
def test_hash(server, workdir):
    put_file(server, workdir + "/h.txt", "hash me")
    want = hashlib.sha256(b"hash me").hexdigest()
    m = server.get(api(workdir + "/h.txt") + "?hash=1").json()
    assert m["hash"] == want and m["hash_algorithm"] == "sha256"
    m = server.get(api(workdir + "/h.txt") + "?hash=1&content=0").json()
    assert m["hash"] == want and m["content"] is None
    assert "hash" not in server.get(api(workdir + "/h.txt")).json()


def test_files_download(server, workdir):
    blob = os.urandom(300000)
    put_file(server, workdir + "/data.bin", blob, fmt="base64")
    put_file(server, workdir + "/page.html", "<script>alert(1)</script>")
    r = server.get("/files/" + urllib.parse.quote(workdir + "/data.bin"))
    assert r.status_code == 200 and r.content == blob
    if not IS_JUPYTER:
        assert r.headers["Content-Disposition"].startswith("attachment")
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        r = server.get("/files/" + urllib.parse.quote(workdir + "/page.html"))
        assert r.headers["Content-Disposition"].startswith("attachment")
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert server.get("/files/" + workdir + "/missing.bin").status_code == 404


# ---------------------------------------------------------------- chunked uploads

def test_chunked_upload_100mb(server, workdir):
    data = os.urandom(1 << 20) * 100
    data = data[:-12345]  # a short last chunk
    path = workdir + "/big.bin"
    on_disk = os.path.join(drive_root(server), path)
    seen = []

    def between(i, number):
        if number != -1 and i % 25 == 0:
            # Mid-upload: the file is not there (partial uploads never show as files).
            seen.append(server.get(api(path) + "?content=0").status_code)
            names = [c["name"] for c in server.get(api(workdir)).json()["content"]]
            seen.append("big.bin" in names)

    last = upload_chunked(server, path, data, between=between)
    assert last.json()["size"] == len(data)
    if not IS_JUPYTER:
        assert set(seen) == {404, False}, seen
    assert os.path.getsize(on_disk) == len(data)
    with open(on_disk, "rb") as f:
        assert hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()
    r = server.get("/files/" + urllib.parse.quote(path), stream=True)
    h = hashlib.sha256()
    for block in r.iter_content(1 << 20):
        h.update(block)
    assert h.digest() == hashlib.sha256(data).digest()


@skylab_only
def test_chunked_upload_replaces_atomically_and_rejects_bad_chunks(server, workdir):
    path = workdir + "/up.txt"
    put_file(server, path, "old")
    r = server.http.put(server.url(api(path)), json={"type": "file", "format": "text", "chunk": 1, "content": "ne"})
    assert r.status_code == 200
    assert server.get(api(path)).json()["content"] == "old"
    server.http.put(server.url(api(path)), json={"type": "file", "format": "text", "chunk": -1, "content": "w"})
    assert server.get(api(path)).json()["content"] == "new"
    bad = [{"chunk": 5}, {"chunk": 0}, {"chunk": -3}, {"chunk": "1"}, {"chunk": 1, "type": "notebook"}]
    for b in bad:
        model = {"type": "file", "format": "text", "content": "x", **b}
        r = server.http.put(server.url(api(workdir + "/other.txt")), json=model)
        assert r.status_code == 400, (b, r.text)
    assert server.get(api(workdir + "/other.txt")).status_code == 404
    hidden = [n for n in os.listdir(os.path.join(drive_root(server), workdir)) if n.startswith(".")]
    assert hidden == [] or all(n.startswith(".~skylab-upload-") for n in hidden)


# ---------------------------------------------------------------- attacks

@pytest.fixture
def fortress(server, tmp_path):
    """A sibling user's Drive ("admin2"), a directory outside every Drive,
    and symlinks inside the admin's Drive that point at both."""
    root = drive_root(server)
    sibling = os.path.join(os.path.dirname(root), "admin2")
    os.makedirs(sibling, exist_ok=True)
    with open(os.path.join(sibling, "secret.txt"), "w") as f:
        f.write("sibling secret")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("outside secret")
    links = []
    for name, target in (("link-out", str(outside)), ("link-file", str(outside / "passwd")),
                         ("link-sib", sibling)):
        p = os.path.join(root, name)
        if os.path.lexists(p):
            os.unlink(p)
        os.symlink(target, p)
        links.append(p)
    before = (snapshot(str(outside)), snapshot(sibling))
    yield {"outside": str(outside), "sibling": sibling}
    after = (snapshot(str(outside)), snapshot(sibling))
    for p in links:
        os.unlink(p)
    shutil.rmtree(sibling, ignore_errors=True)
    assert after == before, "something outside the Drive was changed"


ATTACK_PATHS = [
    "../admin2/secret.txt",
    "%2e%2e/admin2/secret.txt",
    "%2E%2E/%2E%2E/etc/passwd",
    "%252e%252e/admin2/secret.txt",
    "%25252e%25252e/admin2/secret.txt",
    "..%2fadmin2%2fsecret.txt",
    "..%252fadmin2%252fsecret.txt",
    "/etc/passwd",
    "%2Fetc%2Fpasswd",
    "%2F%2Fetc%2Fpasswd",
    "ok.txt%00.png",
    "a%00b",
    "..%5cadmin2%5csecret.txt",
    "sub%5c..%5c..%5cadmin2",
    "link-out/passwd",
    "link-file",
    "link-sib/secret.txt",
    "link-sib/../admin2/secret.txt",
    "./link-file",
]


@skylab_only
@pytest.mark.parametrize("attack", ATTACK_PATHS)
def test_traversal_attacks_get_4xx_and_touch_nothing(server, fortress, attack):
    target = "/api/contents/" + attack
    leaks = [b"sibling secret", b"outside secret", base64.b64encode(b"sibling secret"),
             base64.b64encode(b"outside secret"), b"root:"]
    for method, body in (("GET", None), ("DELETE", None),
                         ("PUT", {"type": "file", "format": "text", "content": "pwned"}),
                         ("PUT", {"type": "file", "format": "text", "content": "pwned", "chunk": 1}),
                         ("PUT", {"type": "file", "format": "text", "content": "pwned", "chunk": 2}),
                         ("PUT", {"type": "file", "format": "text", "content": "pwned", "chunk": -1}),
                         ("PUT", {"type": "directory"}),
                         ("POST", {"type": "file"}),
                         ("PATCH", {"path": "stolen.txt"}),
                         ("POST", None)):
        t = target + ("/checkpoints" if method == "POST" and body is None else "")
        status, data = raw_request(server, method, t, body)
        assert 400 <= status < 500, (method, t, status, data[:200])
        assert not any(l in data for l in leaks), (method, t, data[:200])
    status, data = raw_request(server, "GET", "/files/" + attack)
    assert 400 <= status < 500 and not any(l in data for l in leaks), (attack, status, data[:200])
    status, data = raw_request(server, "GET", "/api/skylab/revisions?path=" + attack)
    assert status == 400 or (status == 200 and json.loads(data)["revisions"] == []), (status, data)
    # no file appeared in the Drive under a surprising name
    assert "stolen.txt" not in os.listdir(drive_root(server))


@skylab_only
@pytest.mark.parametrize("field,value", [
    ("path", "../admin2/stolen.txt"), ("path", "/../outside.txt"), ("path", "link-out/stolen.txt"),
    ("path", "link-sib/stolen.txt"), ("path", "a\\..\\..\\x"), ("path", "x\u0000y"),
    ("copy_from", "../admin2/secret.txt"), ("copy_from", "link-file"), ("copy_from", "link-out/passwd"),
    ("copy_from", "%2e%2e/admin2/secret.txt"), ("copy_from", "//etc/passwd"),
])
def test_attacks_in_request_bodies(server, fortress, workdir, field, value):
    put_file(server, workdir + "/mine.txt", "mine")
    if field == "path":
        r = server.http.patch(server.url(api(workdir + "/mine.txt")), json={"path": value})
    else:
        r = server.post(api(workdir), json={"copy_from": value})
    assert 400 <= r.status_code < 500, (value, r.status_code, r.text)
    assert b"sibling secret" not in r.content and b"outside secret" not in r.content
    assert server.get(api(workdir + "/mine.txt")).json()["content"] == "mine"
    assert sorted(c["name"] for c in server.get(api(workdir)).json()["content"]) == ["mine.txt"]


@skylab_only
def test_symlinks_are_not_listed_or_followed(server, fortress):
    names = [c["name"] for c in server.get("/api/contents").json()["content"]]
    assert not {"link-out", "link-file", "link-sib"} & set(names)
    # chunk-append through a symlinked file and a symlinked directory
    for path in ("link-file", "link-out/passwd", "link-sib/secret.txt"):
        for chunk in (1, 2, -1):
            r = server.http.put(server.url(api(path)), json={
                "type": "file", "format": "base64", "chunk": chunk,
                "content": base64.b64encode(b"APPENDED").decode()})
            assert 400 <= r.status_code < 500, (path, chunk, r.text)


@skylab_only
def test_html_and_odd_names_are_returned_escaped(server, workdir):
    names = ['<img src=x onerror=alert(1)>.txt', '"quoted" & <b onmouseover=alert(1)>bold.ipynb', "naïve 名前.txt",
             "semi;colon%41.txt"]
    for n in names:
        if n.endswith(".ipynb"):
            r = put_notebook(server, workdir + "/" + n, notebook("<script>alert('x')</script>"))
        else:
            r = put_file(server, workdir + "/" + n, "<script>alert(1)</script>")
        assert r.status_code == 201, (n, r.text)
        assert b"<" not in r.content and b">" not in r.content
    r = server.get(api(workdir))
    assert r.headers["Content-Type"].startswith("application/json")
    assert b"<img" not in r.content and b"<b>" not in r.content and b"\\u003c" in r.content
    assert sorted(c["name"] for c in r.json()["content"]) == sorted(names)
    r = server.get(api(workdir + "/" + names[1]))
    assert b"<script>" not in r.content
    assert r.json()["content"]["cells"][0]["outputs"][0]["text"] == "<script>alert('x')</script>\n"
    r = server.get(api(workdir + "/" + names[0]))
    assert b"<script>" not in r.content and r.json()["content"] == "<script>alert(1)</script>"
    err = server.get(api(workdir + "/<svg onload=alert(1)>"))
    assert err.status_code == 404 and b"<svg" not in err.content
    d = server.get("/files/" + urllib.parse.quote(workdir + "/" + names[0]))
    assert d.headers["Content-Disposition"].startswith("attachment;")
    assert "\n" not in d.headers["Content-Disposition"]
    # control characters in names are refused
    assert put_file(server, workdir + "/bad\nname.txt", "x").status_code == 400
    assert put_file(server, workdir + "/bad\rname.txt", "x").status_code == 400


@skylab_only
def test_overlong_and_odd_paths(server):
    for target in ("/api/contents/" + "a" * 300, "/api/contents/" + "abc/" * 1100,
                   "/api/contents/" + "a" * 15000, "/files/" + "b/" * 7000, "/api/contents/a%0Ab"):
        status, data = raw_request(server, "GET", target)
        assert status in (400, 404, 414, 431), (target[:40], status, data[:200])
    assert server.get("/api/contents").status_code == 200  # still serving


def test_hidden_files(server, workdir):
    with open(os.path.join(drive_root(server), workdir, ".secret"), "w") as f:
        f.write("hidden")
    names = [c["name"] for c in server.get(api(workdir)).json()["content"]]
    assert ".secret" not in names
    assert server.get(api(workdir + "/.secret")).status_code == 404
    assert put_file(server, workdir + "/.secret", "x").status_code == 400
    assert server.delete(api(workdir + "/.secret")).status_code == 400
    assert open(os.path.join(drive_root(server), workdir, ".secret")).read() == "hidden"


@skylab_only
def test_unauthenticated_requests_are_refused(server):
    assert requests.get(server.url("/api/contents")).status_code == 403
    assert requests.get(server.url("/files/x")).status_code == 403
    assert requests.put(server.url("/api/contents/x.txt"),
                        json={"type": "file", "format": "text", "content": "x"}).status_code == 403


# ---------------------------------------------------------------- disk full

@skylab_only
def test_disk_full_keeps_the_old_file(fresh_server):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    srv = fresh_server
    root = drive_root(srv)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", root]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        assert put_notebook(srv, "n.ipynb", notebook("old")).status_code == 201
        put_file(srv, "f.bin", b"x" * 1000, fmt="base64")
        big = notebook("new", cells=3)
        big["cells"][0]["outputs"][0]["text"] = "y" * (3 << 20)
        r = put_notebook(srv, "n.ipynb", big)
        assert r.status_code == 507, r.text
        assert "disk" in r.json()["message"].lower()
        assert srv.get(api("n.ipynb")).json()["content"]["cells"][0]["outputs"][0]["text"] == "old\n"
        r = put_file(srv, "f.bin", b"z" * (3 << 20), fmt="base64")
        assert r.status_code == 507
        assert base64.b64decode(srv.get(api("f.bin") + "?format=base64").json()["content"]) == b"x" * 1000
        r = srv.http.put(srv.url(api("f.bin")), json={"type": "file", "format": "base64", "chunk": 1,
                                                      "content": base64.b64encode(b"a" * (1 << 20)).decode()})
        r = srv.http.put(srv.url(api("f.bin")), json={"type": "file", "format": "base64", "chunk": -1,
                                                      "content": base64.b64encode(b"a" * (2 << 20)).decode()})
        assert r.status_code == 507
        assert base64.b64decode(srv.get(api("f.bin") + "?format=base64").json()["content"]) == b"x" * 1000
        assert sorted(os.listdir(root)) == ["f.bin", "n.ipynb"]  # no temporaries left
        assert_valid_on_disk(srv, "n.ipynb")
    finally:
        subprocess.run(["umount", "-l", root])


# ---------------------------------------------------------------- memory

def vm_hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")


@skylab_only
@pytest.mark.slow
def test_1gib_chunked_upload_in_bounded_memory(fresh_server):
    """Uploading 1 GiB in 1 MiB chunks raises the server's peak RSS by < 64 MiB."""
    srv = fresh_server
    chunk = os.urandom(1 << 20)
    b64 = base64.b64encode(chunk)
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=60)

    def send(path, number):
        body = b'{"type": "file", "format": "base64", "chunk": %d, "content": "%s"}' % (number, b64)
        conn.request("PUT", "/api/contents/" + path, body=body,
                     headers={"Authorization": "token " + srv.token, "Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        assert r.status in (200, 201), data[:300]
        return data

    # Warm up the server's allocator and thread pool with a small upload first.
    for n in (1, 2, 3, -1):
        send("warmup.bin", n)
    base = vm_hwm_kb(srv.proc.pid)
    total = 1024
    for i in range(total):
        send("huge.bin", -1 if i == total - 1 else i + 1)
    peak = vm_hwm_kb(srv.proc.pid)
    conn.close()
    size = os.path.getsize(os.path.join(drive_root(srv), "huge.bin"))
    os.unlink(os.path.join(drive_root(srv), "huge.bin"))
    assert size == total << 20
    print("1 GiB upload: server VmHWM %d -> %d KiB (+%.1f MiB)" % (base, peak, (peak - base) / 1024))
    assert peak - base < 64 * 1024, "peak RSS grew by %d MiB" % ((peak - base) // 1024)


# ---------------------------------------------------------------- crash test

CRASH_RUNS = int(os.environ.get("SKYLAB_CRASH_RUNS", "200"))


class FastServer:
    """Skylab on a data dir that survives restarts; started and SIGKILLed quickly."""

    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.token = uuid.uuid4().hex
        self.proc = None

    def start(self):
        self.port = free_port()
        env = dict(os.environ, SKYLAB_ADMIN_TOKEN=self.token)
        self.proc = subprocess.Popen([skylab_bin(), "serve", "--port", str(self.port), "--data-dir", self.data_dir,
                                      "--log-level", "error"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("server exited with %s" % self.proc.returncode)
                time.sleep(0.005)
        raise RuntimeError("server did not start")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@skylab_only
def test_sigkill_during_saves_never_leaves_a_truncated_or_mixed_notebook(tmp_path):
    """A loop saves a 2 MB notebook, each version distinct in every cell, while
    the server is SIGKILLed at a random moment; after each kill the file on disk
    must be exactly one of the versions sent (or the previous one)."""
    rnd = random.Random(int(os.environ.get("SKYLAB_CRASH_SEED", "0")) or None)
    data_dir = str(tmp_path / "data")
    srv = FastServer(data_dir)
    cells = []
    filler = base64.b64encode(os.urandom(15000)).decode()
    for i in range(100):
        cells.append({"id": "c%d" % i, "cell_type": "code", "execution_count": 1, "metadata": {},
                      "source": "# version @@V@@ cell %d" % i,
                      "outputs": [{"output_type": "stream", "name": "stdout", "text": "@@V@@ " + filler}]})
    template = json.dumps({"type": "notebook", "content": {
        "nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}}).encode()
    body = lambda v: template.replace(b"@@V@@", b"v%07d" % v)
    nb_path = os.path.join(data_dir, "drive", "admin", "crash.ipynb")
    sent = {0}
    validated = set()
    version = [0]

    def check_file():
        with open(nb_path, "rb") as f:
            raw = f.read()
        nb = json.loads(raw)  # truncated files fail here
        markers = set()
        for c in nb["cells"]:
            markers.add("".join(c["source"]).split()[2])
            markers.add("".join(c["outputs"][0]["text"]).split()[0])
        assert len(markers) == 1, "mixed file: %s" % sorted(markers)[:5]
        v = int(markers.pop()[1:])
        assert v in sent, "version %d was never sent" % v
        if v not in validated:  # nbformat.validate is slow: once per version
            nbformat.validate(nbformat.reads(raw.decode(), as_version=nbformat.NO_CONVERT))
            validated.add(v)
        return v

    srv.start()
    t0 = time.monotonic()
    r = requests.put("http://127.0.0.1:%d/api/contents/crash.ipynb" % srv.port, data=body(0),
                     headers={"Authorization": "token " + srv.token}, timeout=60)
    assert r.status_code == 201, r.text
    save_ms = (time.monotonic() - t0) * 1000
    completed = 0
    seen_versions = set()
    try:
        for run in range(CRASH_RUNS):
            if run:
                srv.start()
            stop = threading.Event()

            def saver():
                nonlocal save_ms, completed
                s = requests.Session()
                s.headers["Authorization"] = "token " + srv.token
                while not stop.is_set():
                    version[0] += 1
                    sent.add(version[0])
                    t = time.monotonic()
                    try:
                        r = s.put("http://127.0.0.1:%d/api/contents/crash.ipynb" % srv.port,
                                  data=body(version[0]), timeout=30)
                    except requests.RequestException:
                        return
                    if r.status_code in (200, 201):
                        completed += 1
                        save_ms = 0.8 * save_ms + 0.2 * (time.monotonic() - t) * 1000

            th = threading.Thread(target=saver)
            th.start()
            # Kill somewhere within the next two or three saves.
            time.sleep(rnd.uniform(0.0, 2.5 * save_ms / 1000))
            srv.kill()
            stop.set()
            th.join(30)
            seen_versions.add(check_file())
    finally:
        if srv.proc and srv.proc.poll() is None:
            srv.kill()
    # The server comes back on the same data after all that, with revisions intact.
    srv.start()
    try:
        s = requests.Session()
        s.headers["Authorization"] = "token " + srv.token
        r = s.get("http://127.0.0.1:%d/api/contents/crash.ipynb" % srv.port)
        assert r.status_code == 200
        revs = s.get("http://127.0.0.1:%d/api/skylab/revisions" % srv.port, params={"path": "crash.ipynb"})
        assert revs.status_code == 200 and revs.json()["revisions"]
        names = os.listdir(os.path.dirname(nb_path))
        assert [n for n in names if not n.startswith(".")] == ["crash.ipynb"]
        assert all(n.startswith(".~skylab-save-") for n in names if n.startswith("."))
    finally:
        srv.kill()
    elapsed = time.monotonic() - t0
    print("crash test: %d runs, %d saves completed, %d distinct versions survived, %.1f s"
          % (CRASH_RUNS, completed, len(seen_versions), elapsed))
    assert completed > 0 and len(seen_versions) > 1
