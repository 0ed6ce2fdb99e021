"""Real-time co-editing (issue 14, part 2): the collab WebSocket's refusals
and its authority. Every test talks to the real binary with raw WebSocket
frames (crafted, not through the app): viewers and other users cannot change
anything, malformed, huge and stale updates are refused, accepted ones reach
the other clients and the file on disk."""

import json
import secrets
import threading
import time
from urllib.parse import quote

import pytest
import websocket

from conftest import Server, _stop_server
from test_accounts import add_user, new_token, token_session, uname
from test_live import Client, notebook, cell, wait_until

pytestmark = pytest.mark.skylab_only


@pytest.fixture(scope="module")
def srv():
    s = Server()
    yield s
    _stop_server(s)


def user(srv, prefix):
    name = uname(prefix)
    add_user(srv, name, "password-" + name)
    return name, new_token(srv, name)


class Collab:
    """One co-editing connection; `init` is the first frame."""

    def __init__(self, srv, token, path=None, share=None, sub=""):
        if share:
            url = "%s/api/skylab/shared/%s/collab%s?token=%s" % (srv.ws_base, share, sub, token)
        else:
            url = "%s/api/skylab/collab/%s?token=%s" % (srv.ws_base, quote(path), token)
        self.ws = websocket.create_connection(url, timeout=30)
        self.inbox = []
        self.init = self.recv()

    def send(self, msg):
        self.ws.send(msg if isinstance(msg, str) else json.dumps(msg))

    def recv(self):
        op, data = self.ws.recv_data()
        if op == websocket.ABNF.OPCODE_CLOSE:
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            raise ConnectionError("closed %r %r" % (code, data[2:]))
        return json.loads(data)

    def wait(self, pred, what="a frame"):
        for i, m in enumerate(self.inbox):
            if pred(m):
                return self.inbox.pop(i)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = self.recv()
            if pred(m):
                return m
            self.inbox.append(m)
        raise AssertionError("timed out waiting for " + what)

    def close(self):
        self.ws.close()


def closed_with(srv, url):
    """The close code the server answers a collab connection with."""
    ws = websocket.create_connection(url, timeout=30)
    try:
        op, data = ws.recv_data()
        while op != websocket.ABNF.OPCODE_CLOSE:
            op, data = ws.recv_data()
        return int.from_bytes(data[:2], "big")
    finally:
        ws.close()


def insert(text, at, length):
    """A ChangeSet JSON inserting `text` at UTF-16 offset `at` of a text of `length`."""
    cs = []
    if at:
        cs.append(at)
    cs.append([0] + text.split("\n"))
    if length - at:
        cs.append(length - at)
    return cs


@pytest.fixture(scope="module")
def shared(srv):
    """Alice's notebook, shared with an editor and a viewer; a stranger."""
    alice, atok = user(srv, "alice")
    ed, etok = user(srv, "ed")
    vi, vtok = user(srv, "vi")
    _, stok = user(srv, "stranger")
    a = Client(srv, token_session(atok))
    path = "co-%s.ipynb" % secrets.token_hex(3)
    a.put_nb(path, notebook(("c1", "x = 1"), ("c2", "print('é😀')")))
    shares = {}
    for name, role in ((ed, "editor"), (vi, "viewer")):
        r = a.req("POST", "/api/skylab/shares", json={"path": path, "user": name, "role": role})
        assert r.status_code == 201, r.text
        shares[role] = r.json()["id"]
    return dict(path=path, a=a, atok=atok, etok=etok, vtok=vtok, stok=stok, shares=shares)


def test_owner_and_editor_edit_one_cell_and_the_file_follows(srv, shared):
    owner = Collab(srv, shared["atok"], path=shared["path"])
    editor = Collab(srv, shared["etok"], share=shared["shares"]["editor"])
    assert owner.init["writable"] and editor.init["writable"]
    v = owner.init["versions"]["c2"]
    # c2 is "print('é😀')": 12 UTF-16 units (the emoji counts two).
    owner.send({"t": "push", "cell": "c2", "version": v,
                "updates": [{"clientID": "o", "changes": insert("# ", 0, 12)}]})
    got = editor.wait(lambda m: m["t"] == "updates" and m["cell"] == "c2")
    assert got["version"] == v and got["updates"][0]["clientID"] == "o"
    # The editor inserts after the emoji, on top of the owner's update.
    editor.send({"t": "push", "cell": "c2", "version": v + 1,
                 "updates": [{"clientID": "e", "changes": insert(" # ok\nz", 14, 14)}]})
    owner.wait(lambda m: m["t"] == "updates" and m["updates"][0]["clientID"] == "e")
    want = "# print('é😀') # ok\nz"
    assert "".join(cell(shared["a"].live(shared["path"]), "c2")["source"]) == want
    wait_until(lambda: "".join(cell(shared["a"].disk(shared["path"]), "c2")["source"]) == want,
               "the debounced save")
    # A later joiner starts from the same text at the same version.
    third = Collab(srv, shared["atok"], path=shared["path"])
    c2 = [c for c in third.init["nb"]["cells"] if c["id"] == "c2"][0]
    assert c2["source"] == want and third.init["versions"]["c2"] == v + 2
    for c in (owner, editor, third):
        c.close()


def test_a_stale_push_is_refused_and_the_client_catches_up_by_pull(srv, shared):
    a = Collab(srv, shared["atok"], path=shared["path"])
    b = Collab(srv, shared["etok"], share=shared["shares"]["editor"])
    v = a.init["versions"]["c1"]
    a.send({"t": "push", "cell": "c1", "version": v, "updates": [{"clientID": "a", "changes": insert("A", 0, 5)}]})
    a.wait(lambda m: m["t"] == "updates" and m["cell"] == "c1")
    # b pushes on the old version: refused, nothing applied.
    b.send({"t": "push", "cell": "c1", "version": v, "updates": [{"clientID": "b", "changes": insert("B", 0, 5)}]})
    st = b.wait(lambda m: m["t"] == "stale")
    assert st["version"] == v + 1
    assert "".join(cell(shared["a"].live(shared["path"]), "c1")["source"]) == "Ax = 1"
    # Pull gives the missing update; rebased (here: after it) the push goes through.
    b.send({"t": "pull", "cell": "c1", "version": v})
    up = b.wait(lambda m: m["t"] == "updates" and m["version"] == v and m["updates"][0]["clientID"] == "a")
    assert len(up["updates"]) == 1
    b.send({"t": "push", "cell": "c1", "version": v + 1, "updates": [{"clientID": "b", "changes": insert("B", 1, 6)}]})
    a.wait(lambda m: m["t"] == "updates" and m["updates"][0]["clientID"] == "b")
    assert "".join(cell(shared["a"].live(shared["path"]), "c1")["source"]) == "ABx = 1"
    # A version from the future or another epoch: the whole text, never a guess.
    b.send({"t": "pull", "cell": "c1", "version": v + 99})
    r = b.wait(lambda m: m["t"] == "reset")
    assert r["source"] == "ABx = 1" and r["version"] == v + 2
    a.close()
    b.close()


def test_every_client_gets_the_frames_in_the_order_they_were_sequenced(srv):
    """Frames are sequenced on more than one thread (a push on the I/O thread,
    a join on the work queue): while a writer pushes without pause, clients
    join. Each one's first frame is its init, and the updates after it come
    version after version from the init's, none missing, none twice (an
    editor cannot take version v+1 before v)."""
    _, tok = user(srv, "order")
    path = "order-%s.ipynb" % secrets.token_hex(3)
    Client(srv, token_session(tok)).put_nb(path, notebook(("c1", "")))
    writer = Collab(srv, tok, path=path)
    v0 = writer.init["versions"]["c1"]
    stop = threading.Event()
    pushed = [0]

    def drain():  # the writer's own echoes (a client that never reads is closed as slow)
        try:
            while True:
                writer.ws.recv_data()
        except Exception:
            pass

    def write():
        # Pipelined: each push on top of the one before, accepted in order.
        while not stop.is_set():
            n = pushed[0]
            writer.send({"t": "push", "cell": "c1", "version": v0 + n,
                         "updates": [{"clientID": "w", "changes": insert("x", n, n)}]})
            pushed[0] += 1
            time.sleep(0.001)

    problems = []

    def join(k):
        for _ in range(k):
            c = Collab(srv, tok, path=path)
            try:
                if c.init.get("t") != "init":
                    problems.append("first frame %r" % c.init.get("t"))
                    continue
                want = got = c.init["versions"]["c1"]
                c.ws.settimeout(5)
                while want < got + 50:  # the next 50 updates
                    m = c.recv()
                    if m.get("t") != "updates":
                        continue
                    if m["version"] != want:
                        problems.append("updates at %d after %d" % (m["version"], want))
                        break
                    want += len(m["updates"])
            finally:
                c.close()

    threading.Thread(target=drain, daemon=True).start()
    w = threading.Thread(target=write)
    w.start()
    joiners = [threading.Thread(target=join, args=(25,)) for _ in range(4)]
    for t in joiners:
        t.start()
    for t in joiners:
        t.join()
    stop.set()
    w.join()
    writer.close()
    assert pushed[0] > 100
    assert not problems, problems


def test_a_viewer_receives_but_every_change_is_refused(srv, shared):
    owner = Collab(srv, shared["atok"], path=shared["path"])
    viewer = Collab(srv, shared["vtok"], share=shared["shares"]["viewer"])
    assert viewer.init["writable"] is False
    before = shared["a"].live(shared["path"])
    v = viewer.init["versions"]["c1"]
    n = len(before["cells"][0]["source"])
    crafted = [
        {"t": "push", "cell": "c1", "version": v, "updates": [{"clientID": "v", "changes": insert("evil", 0, n)}]},
        {"t": "op", "rid": 1, "op": {"kind": "insert", "after": None,
                                     "cell": {"id": "evil", "cell_type": "code", "source": "rm -rf"}}},
        {"t": "op", "rid": 2, "op": {"kind": "delete", "id": "c1"}},
        {"t": "op", "rid": 3, "op": {"kind": "move", "id": "c2", "after": None}},
        {"t": "op", "rid": 4, "op": {"kind": "type", "id": "c1", "cell_type": "markdown"}},
    ]
    for m in crafted:
        viewer.send(m)
        e = viewer.wait(lambda f: f["t"] == "error")
        assert e["code"] == "read_only", e
    # The viewer still receives the owner's edits live.
    owner.send({"t": "push", "cell": "c1", "version": v,
                "updates": [{"clientID": "o", "changes": insert("#", 0, n)}]})
    got = viewer.wait(lambda m: m["t"] == "updates" and m["cell"] == "c1")
    assert got["updates"][0]["clientID"] == "o"
    after = shared["a"].live(shared["path"])
    assert [c["id"] for c in after["cells"]] == [c["id"] for c in before["cells"]]
    assert [c["cell_type"] for c in after["cells"]] == [c["cell_type"] for c in before["cells"]]
    assert "evil" not in json.dumps(after)
    owner.close()
    viewer.close()


def test_other_users_and_bad_shares_cannot_join(srv, shared):
    path = quote(shared["path"])
    # A stranger asking for Alice's path gets their own (missing) notebook: 404.
    assert closed_with(srv, "%s/api/skylab/collab/%s?token=%s" % (srv.ws_base, path, shared["stok"])) == 4404
    # Nor through someone else's share id, nor a made-up one, nor a path climbing out.
    sid = shared["shares"]["editor"]
    assert closed_with(srv, "%s/api/skylab/shared/%s/collab?token=%s" % (srv.ws_base, sid, shared["stok"])) == 4404
    assert closed_with(srv, "%s/api/skylab/shared/%s/collab?token=%s" % (srv.ws_base, "0" * 32, shared["etok"])) == 4404
    assert closed_with(srv, "%s/api/skylab/shared/%s/collab/..%%2f..?token=%s" % (srv.ws_base, sid, shared["etok"])) == 4404
    # No credential: no upgrade at all.
    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection("%s/api/skylab/collab/%s" % (srv.ws_base, path), timeout=10)
    # Alice's notebook is untouched by all of it.
    assert "".join(cell(shared["a"].live(shared["path"]), "c2")["source"]).count("print") == 1


def test_malformed_and_huge_updates_are_refused(srv, shared):
    a = Collab(srv, shared["atok"], path=shared["path"])
    before = shared["a"].live(shared["path"])
    src = cell(before, "c1")["source"]
    n = len(src.encode("utf-16-le")) // 2
    v = a.init["versions"]["c1"]
    bad = [
        "not json",
        "[1,2,3]",
        {"t": "push", "cell": "c1", "version": v, "updates": [{"clientID": "a", "changes": [n + 5]}]},  # too long
        {"t": "push", "cell": "c1", "version": v, "updates": [{"clientID": "a", "changes": [n - 1]}]},  # too short
        {"t": "push", "cell": "c1", "version": v, "updates": [{"clientID": "a", "changes": [[0, "a\nb", "c"], n]}]},
        {"t": "push", "cell": "c1", "version": v, "updates": [{"clientID": "a", "changes": [-1, n + 1]}]},
        {"t": "push", "cell": "c1", "version": v, "updates": [{"clientID": "a", "changes": "x"}]},
        {"t": "push", "cell": "c1", "version": v, "updates": []},
        {"t": "push", "cell": "nope", "version": 0, "updates": [{"clientID": "a", "changes": [0]}]},
        {"t": "push", "cell": "../c1", "version": v, "updates": [{"clientID": "a", "changes": [n]}]},
        {"t": "op", "op": {"kind": "insert", "cell": {"id": "c1", "cell_type": "code", "source": ""}}},  # dup id
        {"t": "op", "op": {"kind": "insert", "cell": {"id": "x y", "cell_type": "code", "source": ""}}},
        {"t": "op", "op": {"kind": "insert", "cell": {"id": "ok1", "cell_type": "evil", "source": ""}}},
        {"t": "op", "op": {"kind": "move", "id": "c1", "after": "missing"}},
        {"t": "op", "op": {"kind": "explode"}},
        {"t": "presence", "cell": "c1", "anchor": -1, "head": 2},
        {"t": "nonsense"},
        # A valid first update followed by a broken one: all or nothing.
        {"t": "push", "cell": "c1", "version": v, "updates": [
            {"clientID": "a", "changes": insert("OK", 0, n)}, {"clientID": "a", "changes": [1]}]},
    ]
    deep = "[" * 100000 + "]" * 100000
    bad.append({"t": "push", "cell": "c1", "version": v, "updates": [{"clientID": "a", "changes": "DEEP"}]})
    for m in bad:
        if isinstance(m, dict) and m.get("updates") and m["updates"][0].get("changes") == "DEEP":
            a.send(json.dumps(m).replace('"DEEP"', deep))
        else:
            a.send(m)
        e = a.wait(lambda f: f["t"] in ("error", "updates", "op"), "a refusal")
        assert e["t"] == "error", (m, e)
    assert cell(shared["a"].live(shared["path"]), "c1")["source"] == src
    # Updates that grow the cell beyond the source limit (1 MiB): the first
    # half fits, the second is refused.
    half = "y" * (600 << 10)
    a.send({"t": "push", "cell": "c1", "version": v, "updates": [{"clientID": "a", "changes": insert(half, 0, n)}]})
    assert a.wait(lambda f: f["t"] in ("error", "updates"))["t"] == "updates"
    a.send({"t": "push", "cell": "c1", "version": v + 1,
            "updates": [{"clientID": "a", "changes": insert(half, 0, n + len(half))}]})
    e = a.wait(lambda f: f["t"] in ("error", "updates"))
    assert e["t"] == "error" and "too large" in e["message"], e
    assert cell(shared["a"].live(shared["path"]), "c1")["source"] == half + src
    assert [c["id"] for c in shared["a"].live(shared["path"])["cells"]] == [c["id"] for c in before["cells"]]
    # A frame beyond the message limit closes the connection (1009).
    a.send("x" * ((1 << 20) + 1))
    with pytest.raises(ConnectionError, match="1009"):
        while True:
            a.recv()
    a.close()


def test_structural_ops_are_sequenced_for_everyone(srv):
    name, tok = user(srv, "struct")
    cl = Client(srv, token_session(tok))
    path = "ops-%s.ipynb" % secrets.token_hex(3)
    cl.put_nb(path, notebook(("s1", "a"), ("s2", "b")))
    x = Collab(srv, tok, path=path)
    y = Collab(srv, tok, path=path)
    x.send({"t": "op", "rid": 1, "op": {"kind": "insert", "after": "s1",
                                        "cell": {"id": "n1", "cell_type": "markdown", "source": "# hi"}}})
    y.send({"t": "op", "rid": 2, "op": {"kind": "insert", "after": "s1",
                                        "cell": {"id": "n2", "cell_type": "code", "source": "2"}}})
    y.send({"t": "op", "rid": 3, "op": {"kind": "move", "id": "s2", "after": None}})
    x.send({"t": "op", "rid": 4, "op": {"kind": "type", "id": "s1", "cell_type": "raw"}})
    seen = {}
    for c in (x, y):
        ops = [c.wait(lambda m: m["t"] == "op") for _ in range(4)]
        seen[id(c)] = [(o["sv"], o["op"]["kind"]) for o in ops]
    assert seen[id(x)] == seen[id(y)]  # one order for everyone
    nb = cl.live(path)
    assert sorted(c["id"] for c in nb["cells"]) == ["n1", "n2", "s1", "s2"]
    assert nb["cells"][0]["id"] == "s2"
    assert cell(nb, "s1")["cell_type"] == "raw"
    wait_until(lambda: [c["id"] for c in cl.disk(path)["cells"]] == [c["id"] for c in nb["cells"]], "the save")
    x.close()
    y.close()


def test_an_outside_write_reaches_the_clients(srv):
    name, tok = user(srv, "outside")
    cl = Client(srv, token_session(tok))
    path = "out-%s.ipynb" % secrets.token_hex(3)
    cl.put_nb(path, notebook(("o1", "old")))
    x = Collab(srv, tok, path=path)
    cl.put_nb(path, notebook(("o1", "new text"), ("o2", "added")))
    up = x.wait(lambda m: m["t"] == "updates" and m["cell"] == "o1")
    assert up["updates"][0]["clientID"] == "skylab"
    sync = x.wait(lambda m: m["t"] == "sync")
    assert [c["id"] for c in sync["nb"]["cells"]] == ["o1", "o2"]
    # nbformat's list of lines and "\r\n" from a client: one string with "\n",
    # and the clients get exactly one update that turns their text into it.
    nb = notebook(("o1", "new text"), ("o2", "added"))
    nb["cells"][1]["source"] = ["line 1\r\n", "line 2"]
    cl.put_nb(path, nb)
    up = x.wait(lambda m: m["t"] == "updates" and m["cell"] == "o2")
    assert len(up["updates"]) == 1
    assert cell(cl.live(path), "o2")["source"] == "line 1\nline 2"
    y = Collab(srv, tok, path=path)
    assert y.init["versions"]["o2"] == up["version"] + 1
    x.send({"t": "pull", "cell": "o2", "version": 0})
    replay = x.wait(lambda m: m["t"] == "updates" and m["cell"] == "o2" and m["version"] == 0)
    assert len(replay["updates"]) == up["version"] + 1
    x.close()
    y.close()


def test_presence_is_relayed_with_the_name(srv, shared):
    a = Collab(srv, shared["atok"], path=shared["path"])
    b = Collab(srv, shared["etok"], share=shared["shares"]["editor"])
    a.wait(lambda m: m["t"] == "join")
    b.send({"t": "presence", "cell": "c1", "anchor": 1, "head": 2})
    p = a.wait(lambda m: m["t"] == "presence")
    assert p["cell"] == "c1" and p["anchor"] == 1 and p["head"] == 2 and p["user"].startswith("ed")
    b.close()
    assert a.wait(lambda m: m["t"] == "leave")["client"] == p["client"]
    a.close()


def test_a_revoked_editor_is_disconnected_and_cannot_come_back(srv):
    owner, otok = user(srv, "rev")
    ed, etok = user(srv, "reved")
    a = Client(srv, token_session(otok))
    path = "rev-%s.ipynb" % secrets.token_hex(3)
    a.put_nb(path, notebook(("r1", "")))
    r = a.req("POST", "/api/skylab/shares", json={"path": path, "user": ed, "role": "editor"})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    e = Collab(srv, etok, share=sid)
    v = e.init["versions"]["r1"]
    e.send({"t": "push", "cell": "r1", "version": v, "updates": [{"clientID": "e", "changes": [[0, "a"]]}]})
    e.wait(lambda m: m["t"] == "updates")
    assert a.req("DELETE", "/api/skylab/shares/" + sid).status_code == 204
    # The editor keeps typing; the server checks the grant again and closes.
    deadline = time.monotonic() + 60
    code = None
    n = 1
    while time.monotonic() < deadline and code is None:
        try:
            e.send({"t": "push", "cell": "r1", "version": v + n,
                    "updates": [{"clientID": "e", "changes": [n, [0, "b"]]}]})
            e.wait(lambda m: m["t"] in ("updates", "stale", "error"))
            n += 1
            time.sleep(0.5)
        except (ConnectionError, websocket.WebSocketConnectionClosedException, BrokenPipeError) as ex:
            code = str(ex)
    assert code is not None and "4403" in code, code
    assert closed_with(srv, "%s/api/skylab/shared/%s/collab?token=%s" % (srv.ws_base, sid, etok)) == 4404


def test_metadata_ops_are_sequenced_saved_and_refused_to_viewers(srv):
    """Cell and notebook metadata (Colab's cellView, tags, kernelspec) go
    through the protocol: the other clients get them, the save has them,
    viewers and oversized or too deep metadata are refused."""
    owner, otok = user(srv, "meta")
    vname, vtok = user(srv, "metavi")
    cl = Client(srv, token_session(otok))
    path = "meta-%s.ipynb" % secrets.token_hex(3)
    cl.put_nb(path, notebook(("m1", "x = 1"), ("m2", "y = 2")))
    r = cl.req("POST", "/api/skylab/shares", json={"path": path, "user": vname, "role": "viewer"})
    assert r.status_code == 201, r.text
    x = Collab(srv, otok, path=path)
    y = Collab(srv, otok, path=path)
    v = Collab(srv, vtok, share=r.json()["id"])
    meta = {"cellView": "code", "tags": ["keep", "é"], "collapsed": True}
    x.send({"t": "op", "rid": 7, "op": {"kind": "meta", "id": "m1", "metadata": meta}})
    for c in (x, y, v):
        got = c.wait(lambda m: m["t"] == "op" and m["op"]["kind"] == "meta", "the meta op")
        assert got["op"] == {"kind": "meta", "id": "m1", "metadata": meta}
    assert cell(cl.live(path), "m1")["metadata"] == meta
    nbmeta = {"kernelspec": {"name": "python3", "display_name": "Python 3"}, "colab": {"gpuType": "T4"}}
    y.send({"t": "op", "rid": 8, "op": {"kind": "nbmeta", "metadata": nbmeta}})
    assert x.wait(lambda m: m["t"] == "op" and m["op"]["kind"] == "nbmeta")["op"]["metadata"] == nbmeta
    wait_until(lambda: cell(cl.disk(path), "m1")["metadata"] == meta
               and cl.disk(path)["metadata"].get("colab") == {"gpuType": "T4"}, "the save with the metadata")
    # A viewer cannot change either.
    for rid, op in ((1, {"kind": "meta", "id": "m2", "metadata": {"cellView": "form"}}),
                    (2, {"kind": "nbmeta", "metadata": {"evil": 1}})):
        v.send({"t": "op", "rid": rid, "op": op})
        assert v.wait(lambda f: f["t"] == "error")["code"] == "read_only"
    # Not an object, too large, too deep, another cell's id: refused, nothing changed.
    deep = {}
    d = deep
    for _ in range(40):
        d["a"] = {}
        d = d["a"]
    bad = [{"kind": "meta", "id": "m2", "metadata": ["x"]},
           {"kind": "meta", "id": "m2", "metadata": {"big": "z" * (300 << 10)}},
           {"kind": "meta", "id": "m2", "metadata": deep},
           {"kind": "meta", "id": "nope", "metadata": {}},
           {"kind": "meta", "id": "../m2", "metadata": {}},
           {"kind": "nbmeta", "metadata": "x"},
           {"kind": "insert", "after": None, "cell": {"id": "m3", "cell_type": "code", "source": "",
                                                       "metadata": deep}},
           {"kind": "insert", "after": None, "cell": {"id": "m3", "cell_type": "code", "source": "",
                                                       "outputs": [{"no_type": 1}]}}]
    for i, op in enumerate(bad):
        x.send({"t": "op", "rid": 100 + i, "op": op})
        e = x.wait(lambda f: f["t"] in ("error", "op") and f.get("rid") == 100 + i, "a refusal")
        assert e["t"] == "error", (op, e)
    nb = cl.live(path)
    assert cell(nb, "m2")["metadata"] == {} and [c["id"] for c in nb["cells"]] == ["m1", "m2"]
    assert "evil" not in json.dumps(nb)
    for c in (x, y, v):
        c.close()


def test_a_deleted_cell_comes_back_in_place_with_outputs_and_metadata(srv):
    """Undo of a delete: the page inserts the cell again with its id, after
    the cell before it, with its outputs and metadata; everyone (and the
    file) gets it back where it was."""
    owner, tok = user(srv, "undo")
    cl = Client(srv, token_session(tok))
    path = "undo-%s.ipynb" % secrets.token_hex(3)
    cl.put_nb(path, notebook(("u1", "# a"), ("u2", "print(41)"), ("u3", "## b")))
    x = Collab(srv, tok, path=path)
    y = Collab(srv, tok, path=path)
    outputs = [{"output_type": "stream", "name": "stdout", "text": "41\n"}]
    x.send({"t": "op", "rid": 1, "op": {"kind": "delete", "id": "u2"}})
    x.send({"t": "op", "rid": 2, "op": {"kind": "insert", "after": "u1", "cell": {
        "id": "u2", "cell_type": "code", "source": "print(41)", "metadata": {"tags": ["t"]},
        "outputs": outputs, "execution_count": 3}}})
    got = y.wait(lambda m: m["t"] == "op" and m["op"]["kind"] == "insert")
    assert got["op"]["after"] == "u1"
    assert got["op"]["cell"]["outputs"] == outputs and got["op"]["cell"]["execution_count"] == 3
    nb = cl.live(path)
    assert [c["id"] for c in nb["cells"]] == ["u1", "u2", "u3"]
    assert cell(nb, "u2")["outputs"] == outputs and cell(nb, "u2")["metadata"] == {"tags": ["t"]}
    # On disk nbformat splits the text into lines.
    wait_until(lambda: [(o["output_type"], "".join(o["text"])) for o in cell(cl.disk(path), "u2")["outputs"]]
               == [("stream", "41\n")] and [c["id"] for c in cl.disk(path)["cells"]] == ["u1", "u2", "u3"],
               "the save with the outputs")
    x.close()
    y.close()


def close_code(c):
    """Reads frames until the server closes `c`; the close code (the socket's timeout: 30 s)."""
    while True:
        try:
            c.recv()
        except ConnectionError as e:
            return int(str(e).split()[1])


def test_silent_clients_are_closed_at_once_when_a_share_ends_or_changes(srv):
    """A viewer that never sends keeps no live view after a revoke: the server
    closes its socket at once (4403); an editor turned viewer is closed with
    4001 (it reconnects read-only); an owner disabled ends every share."""
    owner, otok = user(srv, "silent")
    names = {}
    for role in ("viewer", "editor", "other"):
        names[role] = user(srv, "s" + role)
    a = Client(srv, token_session(otok))
    path = "silent-%s.ipynb" % secrets.token_hex(3)
    a.put_nb(path, notebook(("s1", "x")))
    sid = {}
    for role, (name, _) in names.items():
        r = a.req("POST", "/api/skylab/shares",
                  json={"path": path, "user": name, "role": "editor" if role == "editor" else "viewer"})
        assert r.status_code == 201, r.text
        sid[role] = r.json()["id"]
    conns = {role: Collab(srv, names[role][1], share=sid[role]) for role in names}
    assert conns["editor"].init["writable"] and not conns["viewer"].init["writable"]

    assert a.req("DELETE", "/api/skylab/shares/" + sid["viewer"]).status_code == 204
    assert close_code(conns["viewer"]) == 4403
    # Sharing again with another role changes the role: the editor is closed and comes back as a viewer.
    r = a.req("POST", "/api/skylab/shares", json={"path": path, "user": names["editor"][0], "role": "viewer"})
    assert r.status_code == 201 and r.json()["id"] == sid["editor"], r.text
    assert close_code(conns["editor"]) == 4001
    again = Collab(srv, names["editor"][1], share=sid["editor"])
    assert again.init["writable"] is False
    # The owner's account disabled (by an administrator): every share of theirs ends.
    r = srv.http.patch(srv.url("/api/skylab/users/" + owner), json={"disabled": True}, timeout=30)
    assert r.status_code == 200, r.text
    assert close_code(conns["other"]) == 4403
    assert close_code(again) == 4403
    srv.http.patch(srv.url("/api/skylab/users/" + owner), json={"disabled": False}, timeout=30)


def test_deleting_the_last_cell_gives_everyone_the_same_blank_cell(srv):
    """A notebook always has a cell: when deletes empty it (here two clients
    each delete one of the last two cells at once), the server sequences a
    blank code cell's insert right after, which every client and the file get."""
    _, tok = user(srv, "last")
    c = Client(srv, token_session(tok))
    path = "last-%s.ipynb" % secrets.token_hex(3)
    c.put_nb(path, notebook(("l1", "one"), ("l2", "two")))
    p = Collab(srv, tok, path=path)
    q = Collab(srv, tok, path=path)
    p.send({"t": "op", "rid": 1, "op": {"kind": "delete", "id": "l1"}})
    q.send({"t": "op", "rid": 1, "op": {"kind": "delete", "id": "l2"}})
    seen = []
    for x in (p, q):
        ops = []
        while len(ops) < 3:
            m = x.wait(lambda m: m["t"] == "op", "an op")
            ops.append(m)
        assert sorted(o["op"].get("id", "") for o in ops[:2]) == ["l1", "l2"]
        ins = ops[2]
        assert ins["client"] == 0 and ins["op"]["kind"] == "insert" and ins["op"]["after"] is None
        assert ins["op"]["cell"]["cell_type"] == "code" and ins["op"]["cell"]["source"] == ""
        assert [o["sv"] for o in ops] == sorted(o["sv"] for o in ops)
        seen.append(ins["op"]["cell"]["id"])
    assert seen[0] == seen[1]
    live = c.live(path)
    assert [x["id"] for x in live["cells"]] == [seen[0]] and "".join(live["cells"][0]["source"]) == ""
    wait_until(lambda: [x["id"] for x in c.disk(path)["cells"]] == [seen[0]], "the save")
    # A later joiner gets the same notebook; deleting the blank one again gives another.
    r = Collab(srv, tok, path=path)
    assert [x["id"] for x in r.init["nb"]["cells"]] == [seen[0]]
    r.send({"t": "op", "rid": 7, "op": {"kind": "delete", "id": seen[0]}})
    r.wait(lambda m: m["t"] == "op" and m.get("rid") == 7)
    fresh = r.wait(lambda m: m["t"] == "op" and m["op"]["kind"] == "insert")
    assert fresh["op"]["cell"]["id"] != seen[0]
    assert [x["id"] for x in c.live(path)["cells"]] == [fresh["op"]["cell"]["id"]]
    for x in (p, q, r):
        x.close()
