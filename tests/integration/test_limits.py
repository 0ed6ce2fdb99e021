"""Issue 12, rows 3, 4, 10 and 12: one request never takes the server down.

- Row 3: JSON nested 50,000 deep (kernel WebSocket in both framings, job
  parameters, a kernel that displays such a value) is refused; the server lives.
- Row 4: a FIFO planted under the upload staging name in /content gives a
  quick 4xx and blocks no Drive worker.
- Row 10: while another process holds skylab.db's write lock, requests are
  still answered and login says 503 with Retry-After, never 500.
- Row 12: a Host header outside the allow-list gets 403 (DNS rebinding).
"""
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest
import requests

import kclient
from conftest import SERVER_KIND, Server, needs_root, needs_sandbox, server_with_config, _stop_server, skylab_bin
from test_accounts import add_user, new_token, post_login, token_session, uname
from test_jobs import notebook, put, submit, wait_job, contents

pytestmark = pytest.mark.skipif(SERVER_KIND != "skylab", reason="Skylab's own limits")

DEEP = 50000
V1 = "v1.kernel.websocket.jupyter.org"


def deep_json(depth=DEEP):
    return "[" * depth + "]" * depth


def alive(server):
    r = server.get("/api/status", timeout=10)
    assert r.status_code == 200, r.text
    assert server.proc.poll() is None, server.log_text()


def _raw(server, kid, subprotocol=None):
    path = "/api/kernels/%s/channels?session_id=%s&token=%s" % (kid, uuid.uuid4().hex, server.token)
    return kclient.RawWebSocket(server.host, server.port, path, subprotocol=subprotocol)


# ---------------------------------------------------------------- row 3

@pytest.mark.parametrize("framing", kclient.FRAMINGS)
def test_deep_content_on_the_kernel_websocket_closes_1007(server, connect, shared_kernel, framing):
    other = connect(shared_kernel, framing="legacy")
    other.eval_ok("deep_ran = False")
    header = {"msg_id": uuid.uuid4().hex, "msg_type": "execute_request", "session": uuid.uuid4().hex,
              "username": "t", "version": "5.3", "date": "2026-01-01T00:00:00Z"}
    content = '{"code": "deep_ran = True", "silent": false, "a": %s}' % deep_json()
    raw = _raw(server, shared_kernel, V1 if framing == "v1" else None)
    try:
        if framing == "v1":
            raw.send_frame(0x2, kclient.serialize_v1("shell", [json.dumps(header).encode(), b"{}", b"{}",
                                                               content.encode()]))
        else:
            frame = '{"channel": "shell", "header": %s, "parent_header": {}, "metadata": {}, "content": %s}' % (
                json.dumps(header), content)
            raw.send_frame(0x1, frame.encode())
        assert raw.wait_close(timeout=20) == 1007
    finally:
        raw.close()
    alive(server)
    # Nothing reached the kernel, and everyone else carries on.
    assert other.execute("print(deep_ran)").stdout == "False\n"


def test_deeply_nested_job_parameters_are_refused(server):
    name = uname("lj")
    add_user(server, name, "password-" + name)
    s = token_session(new_token(server, name))
    put(server, s, "deep-params.ipynb", notebook("n = 1", "print(n)", tagged_first=True))
    before = s.get(server.url("/api/skylab/jobs"), timeout=10).json()
    body = '{"path": "deep-params.ipynb", "parameters": {"n": %s}}' % deep_json()
    r = s.post(server.url("/api/skylab/jobs"), data=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 400, r.text
    assert "nested deeper" in r.json()["message"]
    alive(server)
    assert s.get(server.url("/api/skylab/jobs"), timeout=10).json() == before


# A cell that sends, on the kernel's own iopub socket and properly signed, a
# display_data whose content nests 50,000 deep (Python's json module cannot
# write it, so the bytes are handed over already packed), then a normal one.
DEEP_DISPLAY_CELL = r'''
import IPython
k = get_ipython().kernel
parent = k.get_parent("shell") if hasattr(k, "get_parent") else k._parent_header
deep = b'{"data": {"application/json": {"x": ' + b'[' * 50000 + b']' * 50000 + b'}}, "metadata": {}, "transient": {}}'
k.session.send(k.iopub_socket, "display_data", content=deep, parent=parent, ident=b"display_data")
shallow = {"level": 0}
for i in range(20):
    shallow = {"level": i + 1, "inner": shallow}
IPython.display.display({"application/json": shallow}, raw=True)
print("sent")
'''


def test_a_job_whose_kernel_displays_a_deep_object(server):
    name = uname("lk")
    add_user(server, name, "password-" + name)
    s = token_session(new_token(server, name))
    put(server, s, "deep-display.ipynb", notebook(DEEP_DISPLAY_CELL, "print('after')"))
    job = wait_job(server, s, submit(server, s, path="deep-display.ipynb")["id"])
    alive(server)
    assert job["state"] == "succeeded", job
    out = contents(server, s, "deep-display.out.ipynb")
    outputs = [o for c in out["cells"] for o in c["outputs"]]
    jsons = [o["data"]["application/json"] for o in outputs if "application/json" in o.get("data", {})]
    # The deep message was dropped; the shallow one (20 levels) came through.
    assert len(jsons) == 1 and jsons[0]["level"] == 20, jsons
    assert "after\n" in ["".join(o.get("text", "")) for o in outputs]


def test_a_notebook_with_deep_cell_metadata_runs_as_a_job_or_is_refused(server):
    name = uname("lm")
    add_user(server, name, "password-" + name)
    s = token_session(new_token(server, name))
    nb = notebook("print('hi')")
    text = json.dumps(nb).replace('"metadata": {}', '"metadata": {"deep": %s}' % deep_json(), 1)
    r = s.put(server.url("/api/contents/deep-meta.ipynb"), timeout=30,
              data='{"type": "notebook", "format": "json", "content": %s}' % text,
              headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    # Planted on disk behind the server's back (the Drive is plain files).
    put(server, s, "deep-meta.ipynb", nb)
    path = os.path.join(server.data_dir, "drive", name, "deep-meta.ipynb")
    assert os.path.exists(path)
    with open(path, "w") as f:
        f.write(text)
    r = s.get(server.url("/api/contents/deep-meta.ipynb"), timeout=30)
    assert r.status_code in (400, 415, 422), r.text
    r = s.post(server.url("/api/skylab/jobs"), json={"path": "deep-meta.ipynb"}, timeout=30)
    assert 400 <= r.status_code < 500, r.text
    alive(server)
    # `skylab run` on the same file fails cleanly, without a crash.
    p = subprocess.run([skylab_bin(), "run", path], capture_output=True, timeout=60)
    assert p.returncode not in (0, -11, 139) and p.returncode > 0, (p.returncode, p.stderr[-2000:])
    assert b"nested deeper" in p.stderr, p.stderr[-2000:]


# ---------------------------------------------------------------- row 4

@needs_sandbox
@needs_root
def test_fifo_as_upload_staging_file_blocks_no_worker(server):
    a_name, b_name = uname("lf"), uname("lg")
    add_user(server, a_name, "password-" + a_name)
    add_user(server, b_name, "password-" + b_name)
    a = token_session(new_token(server, a_name))
    b = token_session(new_token(server, b_name))
    r = a.post(server.url("/api/kernels"), json={}, timeout=60)
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    server.kernels.append(kid)
    client = server.connect(kid)
    client.nudge()
    staging = ".~skylab-upload-" + hashlib.sha256(b"up.bin").hexdigest()[:32]
    res = client.execute("import os\nos.mkfifo('/content/%s')\nprint('ok')" % staging, timeout=60)
    assert res.stdout == "ok\n", (res.error, res.stderr)
    url = server.url("/api/skylab/runtimes/%s/files/up.bin" % kid)

    answers = []

    def upload():
        try:
            answers.append(a.put(url, data=b"payload", timeout=30).status_code)
        except requests.RequestException as e:
            answers.append(repr(e))

    threads = [threading.Thread(target=upload) for _ in range(4)]
    for t in threads:
        t.start()
    # Meanwhile another user's Drive answers.
    r = b.get(server.url("/api/contents"), timeout=20)
    assert r.status_code == 200, r.text
    for t in threads:
        t.join(40)
    assert answers == [400] * 4, answers
    # The FIFO is still a FIFO (nothing wrote through it) and the Drive works.
    res = client.execute("import stat\nprint(stat.S_ISFIFO(os.lstat('/content/%s').st_mode))\n"
                         "os.unlink('/content/%s')" % (staging, staging), timeout=60)
    assert res.stdout == "True\n", (res.error, res.stderr)
    r = a.put(url, data=b"payload", timeout=30)
    assert r.status_code == 201, r.text
    assert b.get(server.url("/api/contents"), timeout=20).status_code == 200
    alive(server)


# ---------------------------------------------------------------- row 10

LOCKER = r'''
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
con.execute("ROLLBACK")
print("released", flush=True)
'''


def test_a_locked_database_gives_503_and_stalls_nothing(fresh_server):
    srv = fresh_server
    name = uname("ld")
    add_user(srv, name, "password-" + name)
    user = token_session(new_token(srv, name))
    assert user.get(srv.url("/api/me"), timeout=10).status_code == 200
    kid = srv.create_kernel()
    kc = srv.connect(kid)
    kc.nudge()
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, os.path.join(srv.data_dir, "skylab.db")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        # A write through the API waits for the lock (on a worker, not on the
        # I/O thread): meanwhile other requests, authenticated ones included,
        # are answered.
        writes = []
        t = threading.Thread(target=lambda: writes.append(
            user.post(srv.url("/api/skylab/tokens"), json={"name": "x"}, timeout=60)))
        t.start()
        time.sleep(0.3)  # let the write reach the server first; no assertion depends on time
        answered_while_writing = []
        while t.is_alive() and not answered_while_writing:
            assert srv.get("/api/status", timeout=60).status_code == 200
            me = user.get(srv.url("/api/me"), timeout=60)
            assert me.status_code == 200, me.text
            assert kc.execute("40 + 2").result_text == "42"  # a kernel WebSocket echo
            fresh = srv.connect(kid, framing="v1")  # and a new upgrade, authenticated
            assert fresh.execute("1 + 1").result_text == "2"
            answered_while_writing.append(t.is_alive())
        t.join(60)
        assert answered_while_writing == [True], "nothing was answered while the write waited"
        r = writes[0]
        assert r.status_code == 503 and r.headers.get("Retry-After", "").isdigit(), (r.status_code, r.text)
        # Login: 503 with Retry-After, never 500.
        r = post_login(srv, requests.Session(), name, "password-" + name)
        assert r.status_code == 503, (r.status_code, r.text[:300])
        assert r.headers.get("Retry-After", "").isdigit(), r.headers
        alive(srv)
    finally:
        locker.stdin.write("\n")
        locker.stdin.flush()
        locker.wait(30)
    r = post_login(srv, requests.Session(), name, "password-" + name)
    assert r.status_code in (302, 303), (r.status_code, r.text[:300])
    alive(srv)


# ---------------------------------------------------------------- row 12

def _upgrade(server, kid, host):
    """The status of a WebSocket upgrade sent with this Host header."""
    sock = socket.create_connection((server.host, server.port), timeout=10)
    try:
        sock.sendall(("GET /api/kernels/%s/channels?token=%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n" % (kid, server.token, host)).encode())
        buf = b""
        while b"\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                break
            buf += chunk
        return int(buf.split(b" ", 2)[1])
    finally:
        sock.close()


def test_host_allow_list(server, shared_kernel):
    port = server.port
    for host in ("evil.example", "evil.example:%d" % port, "127.0.0.1.evil.example:%d" % port, ""):
        status, _, body = kclient.raw_http(server.host, port, "GET", "/login", headers={"Host": host})
        assert status == 403, (host, status, body[:200])
        assert _upgrade(server, shared_kernel, host) == 403, host
    for host in ("127.0.0.1:%d" % port, "localhost:%d" % port, "LOCALHOST:%d" % port):
        status, _, body = kclient.raw_http(server.host, port, "GET", "/login", headers={"Host": host})
        assert status == 200, (host, status, body[:200])
        assert _upgrade(server, shared_kernel, host) == 101, host
    alive(server)


def test_allowed_hosts_from_the_config():
    srv = server_with_config('[server]\nallowed_hosts = ["colab.example.org"]\n')
    try:
        for host, want in (("colab.example.org:%d" % srv.port, 200), ("127.0.0.1:%d" % srv.port, 200),
                           ("other.example.org", 403)):
            status, _, _ = kclient.raw_http(srv.host, srv.port, "GET", "/login", headers={"Host": host})
            assert status == want, (host, status)
    finally:
        _stop_server(srv)
    srv = server_with_config('[server]\nallowed_hosts = ["*"]\n')
    try:
        status, _, _ = kclient.raw_http(srv.host, srv.port, "GET", "/login", headers={"Host": "any.example"})
        assert status == 200
    finally:
        _stop_server(srv)


def test_unknown_server_key_is_named(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[server]\nallowed_host = ["x"]\n')
    p = subprocess.run([skylab_bin(), "serve", "--port", "0", "--data-dir", str(tmp_path / "d"), "--config", str(cfg)],
                       capture_output=True, timeout=30)
    assert p.returncode != 0
    assert b"server.allowed_host" in p.stderr, p.stderr
