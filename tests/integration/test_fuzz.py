"""Fuzzing the real binary (issue 12, row 3 and the limits that go with it).

Deep (50,000 levels), huge (above the body limit), malformed (truncated
UTF-8, invalid JSON, NaN, huge numbers, duplicate keys, wrong types for every
field) input to a representative set of REST routes, the kernel WebSocket in
both framings, and a kernel that sends a deeply nested object. After each: the
server answers (GET /api/status 200), no answer is a 5xx, and at the end the
stored data are intact. Deterministic (fixed seed), bounded in count and time.
"""
import json
import os
import random
import sqlite3
import time
import uuid

import pytest

import kclient
from conftest import SERVER_KIND
from test_accounts import add_user, new_token, token_session, uname
from test_jobs import contents, notebook, put, submit, wait_job

pytestmark = pytest.mark.skipif(SERVER_KIND != "skylab", reason="Skylab's own limits")

SEED = 12
BUDGET_S = 60  # the whole module's fuzzing, not counting server start
DEEP = 50000


def deep_array():
    return "[" * DEEP + "]" * DEEP


def deep_object():
    return '{"a":' * DEEP + "1" + "}" * DEEP


# Bodies that are wrong as a whole, whatever the route.
WHOLE_BODIES = [
    ("deep array", lambda: '{"a": %s}' % deep_array()),
    ("deep object", lambda: deep_object()),
    ("deep in a list", lambda: "[" + deep_array() + "]"),
    ("truncated", lambda: '{"name": "python3", "pa'),
    ("truncated utf-8", lambda: b'{"name": "\xe2\x82"}'),
    ("lone surrogate", lambda: '{"name": "\\ud800"}'),
    ("invalid utf-8", lambda: b'{"name": "\xff\xfe"}'),
    ("NaN", lambda: '{"name": NaN}'),
    ("Infinity", lambda: '{"name": Infinity}'),
    ("huge number", lambda: '{"name": 1e999999}'),
    ("huge integer", lambda: '{"name": %s}' % ("9" * 5000)),
    ("duplicate keys", lambda: '{"name": "a", "name": {"b": [1]}}'),
    ("not an object", lambda: "[1, 2, 3]"),
    ("a string", lambda: '"x"'),
    ("null", lambda: "null"),
    ("empty", lambda: ""),
    ("NUL", lambda: b"\x00"),
    ("BOM", lambda: b"\xef\xbb\xbf{}"),
    ("trailing garbage", lambda: '{"a": 1} x'),
    ("many keys", lambda: json.dumps({"k%d" % i: i for i in range(20000)})),
]

# Values of the wrong type (or shape) for any field.
WRONG_VALUES = [None, True, 0, -1, 2 ** 63, 1.5, -1e308, "", "x" * 20000, "../../etc/passwd", "\u0000",
                [], {}, [[["deep"]]], {"a": {"b": {}}}]

ADMIN_ROUTES = [  # (method, path, fields); bodies go to the admin's own routes
    ("POST", "/api/kernels", ["name", "path", "env"]),
    ("POST", "/api/sessions", ["path", "name", "type", "kernel"]),
    ("PATCH", "/api/sessions/00000000-0000-0000-0000-000000000000", ["path", "name", "kernel"]),
    ("POST", "/api/skylab/runtimes", ["type", "runtime_type", "name"]),
]
USER_ROUTES = [
    ("PUT", "/api/contents/fuzz/target.ipynb", ["type", "format", "content", "path"]),
    ("POST", "/api/contents/fuzz", ["type", "ext", "copy_from"]),
    ("PATCH", "/api/contents/fuzz/canary.ipynb", ["path"]),
    ("POST", "/api/skylab/jobs", ["path", "parameters", "runtime_type", "output_path"]),
    ("POST", "/api/skylab/shares", ["path", "user", "role", "with", "permission"]),
    ("POST", "/api/skylab/tokens", ["name", "expires_in"]),
]


class Fuzzer:
    def __init__(self, server, user):
        self.server = server
        self.user = user
        self.rng = random.Random(SEED)
        self.started = time.monotonic()
        self.count = 0
        self.log = []

    def over_budget(self):
        return time.monotonic() - self.started > BUDGET_S

    def send(self, session, method, path, body, what):
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogatepass")
        r = session.request(method, self.server.url(path), data=body, timeout=60,
                            headers={"Content-Type": "application/json"})
        self.count += 1
        self.log.append((method, path, what, r.status_code))
        assert r.status_code < 500, (method, path, what, r.status_code, r.text[:300])
        # What was created by a body that happened to be acceptable is removed.
        if r.status_code == 201 and path in ("/api/kernels", "/api/sessions", "/api/skylab/runtimes"):
            model = r.json()
            kid = model.get("id") if path != "/api/sessions" else (model.get("kernel") or {}).get("id")
            if path == "/api/sessions":
                session.delete(self.server.url("/api/sessions/" + model["id"]), timeout=60)
            if kid:
                session.delete(self.server.url("/api/kernels/" + kid), timeout=60)
        if r.status_code == 201 and path == "/api/skylab/tokens":
            session.delete(self.server.url("/api/skylab/tokens/" + r.json()["id"]), timeout=30)
        if self.count % 10 == 0:
            self.alive()
        return r

    def alive(self):
        assert self.server.proc.poll() is None, self.server.log_text()
        assert self.server.get("/api/status", timeout=30).status_code == 200


@pytest.fixture(scope="module")
def fuzz_user(server):
    name = uname("fz")
    add_user(server, name, "password-" + name)
    s = token_session(new_token(server, name))
    s.put(server.url("/api/contents/fuzz"), json={"type": "directory"}, timeout=30)
    canary = notebook("print('canary')")
    put(server, s, "fuzz/canary.ipynb", canary)
    return s


def test_rest_routes_survive_deep_huge_and_malformed_bodies(server, fuzz_user, shared_kernel):
    f = Fuzzer(server, fuzz_user)
    before = contents(server, fuzz_user, "fuzz/canary.ipynb")
    files = "/api/skylab/runtimes/%s/files/fuzz" % shared_kernel  # the admin's runtime's /content
    admin_routes = ADMIN_ROUTES + [("POST", files, ["type"]), ("PATCH", files, ["path"])]
    routes = [(server.http, m, p, fl) for m, p, fl in admin_routes] + [(fuzz_user, m, p, fl) for m, p, fl in USER_ROUTES]
    for session, method, path, fields in routes:
        for what, body in WHOLE_BODIES:
            if path in ("/api/kernels", "/api/sessions", "/api/skylab/runtimes") and what in ("empty", "duplicate keys"):
                continue  # acceptable bodies that would start a runtime: not what this test is about
            r = f.send(session, method, path, body(), what)
            if what.startswith("deep"):
                assert r.status_code == 400 and "nest" in r.text, (method, path, r.status_code, r.text[:200])
        assert not f.over_budget(), f.log[-5:]
    # Wrong types, one field at a time, in a seeded sample.
    cases = [(s, m, p, field, v) for s, m, p, fl in routes for field in fl for v in WRONG_VALUES]
    f.rng.shuffle(cases)
    for session, method, path, field, value in cases[:160]:
        if f.over_budget():
            break
        if path in ("/api/kernels", "/api/sessions", "/api/skylab/runtimes") and value in (None, "", [], {}):
            continue  # may mean "the default": would start runtimes
        f.send(session, method, path, json.dumps({field: value}), "%s=%r" % (field, value)[:60])
    # Bodies above every route's limit are refused before they are read.
    for session, method, path, _ in routes:
        status = huge_body_status(server, session, method, path)
        assert status == 413, (method, path, status)
    f.alive()
    # Nothing stored was damaged.
    assert contents(server, fuzz_user, "fuzz/canary.ipynb") == before
    for db in ("skylab.db", "drive.db"):
        con = sqlite3.connect("file:%s?mode=ro" % os.path.join(server.data_dir, db), uri=True, timeout=30)
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok", db
        finally:
            con.close()


def huge_body_status(server, session, method, path):
    """Announce 4 GiB of body; the server must answer 413 without reading it."""
    status, _, _ = kclient.raw_http(server.host, server.port, method, path,
                                    headers={"Authorization": session.headers["Authorization"],
                                             "Content-Type": "application/json", "Content-Length": str(4 << 30)},
                                    body=b"{" * 65536, timeout=30)
    return status


def _raw(server, kid, subprotocol=None):
    path = "/api/kernels/%s/channels?session_id=%s&token=%s" % (kid, uuid.uuid4().hex, server.token)
    return kclient.RawWebSocket(server.host, server.port, path, subprotocol=subprotocol)


def _header(msg_type="execute_request"):
    return {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": uuid.uuid4().hex, "username": "f",
            "version": "5.3", "date": "2026-01-01T00:00:00Z"}


@pytest.mark.parametrize("framing", kclient.FRAMINGS)
def test_kernel_websocket_survives_deep_and_malformed_frames(server, connect, shared_kernel, framing):
    rng = random.Random(SEED)
    sub = "v1.kernel.websocket.jupyter.org" if framing == "v1" else None
    other = connect(shared_kernel, framing="legacy")

    def frame(parts):
        if framing == "v1":
            return 0x2, kclient.serialize_v1("shell", [p.encode("utf-8", "surrogatepass") if isinstance(p, str) else p
                                                       for p in parts])
        h, ph, md, ct = parts
        text = '{"channel": "shell", "header": %s, "parent_header": %s, "metadata": %s, "content": %s}' % (
            h, ph, md, ct)
        return 0x1, text.encode("utf-8", "surrogatepass")

    hdr = json.dumps(_header())
    # A deep value in each part closes the connection with 1007.
    for i in range(4):
        parts = [hdr, "{}", "{}", '{"code": "1"}']
        parts[i] = '{"x": %s}' % deep_array()
        raw = _raw(server, shared_kernel, sub)
        try:
            raw.send_frame(*frame(parts))
            assert raw.wait_close(timeout=30) == 1007, (framing, i)
        finally:
            raw.close()
    # Malformed frames: ignored (or the connection closed), never a crash.
    bad_parts = ['{"code": NaN}', '{"code": 1e99999}', '{"code": "\\ud800"}', '{"code": "1", "code": 2}',
                 "[]", "null", "{", '"x"', '{"code": %s}' % ("9" * 5000)]
    raw = _raw(server, shared_kernel, sub)
    try:
        for _ in range(30):
            parts = [hdr, "{}", "{}", '{"code": "1"}']
            parts[rng.randrange(4)] = rng.choice(bad_parts)
            try:
                raw.send_frame(*frame(parts))
                raw.send_frame(0x2 if rng.random() < 0.5 else 0x1, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))))
            except (BrokenPipeError, ConnectionResetError):
                break
    finally:
        raw.close()
    assert server.get("/api/status", timeout=30).status_code == 200
    assert other.execute("1+1").result_text == "2"


# Sends, signed on the kernel's own iopub socket, display_data nested 50,000
# deep (packed by hand: Python's json cannot write it); then tries the public
# API, which refuses in the kernel (RecursionError), and prints a marker.
KERNEL_DEEP_CELL = r'''
import IPython
k = get_ipython().kernel
parent = k.get_parent("shell") if hasattr(k, "get_parent") else k._parent_header
deep = b'{"data": {"application/json": {"x": ' + b'[' * 50000 + b']' * 50000 + b'}}, "metadata": {}, "transient": {}}'
k.session.send(k.iopub_socket, "display_data", content=deep, parent=parent, ident=b"display_data")
nested = []
for _ in range(50000):
    nested = [nested]
try:
    IPython.display.display({"application/json": {"x": nested}}, raw=True)
except RecursionError:
    pass
print("done")
'''


def test_a_kernel_that_displays_a_deep_object(server, connect, shared_kernel):
    c = connect(shared_kernel, framing="v1")
    r = c.execute(KERNEL_DEEP_CELL, timeout=60)
    assert r.stdout.endswith("done\n"), (r.error, r.stdout, r.stderr)
    # The deep display never reached the client (it would not parse here either).
    assert not [m for m in r.of_type("display_data") if "x" in m["content"].get("data", {}).get("application/json", {})]
    assert server.get("/api/status", timeout=30).status_code == 200
    assert c.execute("2+3").result_text == "5"


def test_a_job_with_deep_but_acceptable_cell_metadata(server, fuzz_user):
    """300 levels: above the wire limit (256) but within what stored notebooks
    may hold (512), so that a notebook the server wrote always reads back."""
    nb = notebook("print('meta ok')")
    nested = {}
    for _ in range(300):
        nested = {"n": nested}
    nb["cells"][0]["metadata"]["deep"] = nested
    put(server, fuzz_user, "fuzz/deep-meta-ok.ipynb", nb)
    job = wait_job(server, fuzz_user, submit(server, fuzz_user, path="fuzz/deep-meta-ok.ipynb")["id"])
    assert job["state"] == "succeeded", job
    out = contents(server, fuzz_user, "fuzz/deep-meta-ok.out.ipynb")
    assert "meta ok\n" in ["".join(o.get("text", "")) for c in out["cells"] for o in c["outputs"]]
    assert server.get("/api/status", timeout=30).status_code == 200
