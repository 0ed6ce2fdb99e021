"""The Jupyter Server terminals API (issue 15): a shell inside the user's
runtime sandbox, spoken over terminado's WebSocket messages.

Real binary as root, real bubblewrap sandboxes and cgroups: the shell must be
*in* the runtime (its uid, /content, its /tmp, its seccomp filter), see no
more of the host than the kernel does, end with the runtime, and belong to
its user only.
"""

import json
import os
import re
import struct
import time

import pytest
import requests
import websocket

from conftest import SERVER_KIND, needs_root, needs_sandbox
from test_accounts import Browser, add_user, new_token, token_session, uname, ws_status

pytestmark = [pytest.mark.skipif(SERVER_KIND != "skylab", reason="Skylab runtimes"), needs_sandbox, needs_root]


class Term:
    """A terminado client: ["stdin", s] out, ["stdout", s] in."""

    def __init__(self, server, name, token=None):
        url = "%s/terminals/websocket/%s?token=%s" % (server.ws_base, name, token or server.token)
        self.ws = websocket.create_connection(url, timeout=30)
        self.out = ""
        self.disconnected = False
        first = json.loads(self.ws.recv())
        assert first[0] == "setup", first

    def send(self, text):
        self.ws.send(json.dumps(["stdin", text]))

    def read_until(self, pattern, timeout=30):
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern, re.S)
        while not rx.search(self.out):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %r in terminal output: %r" % (pattern, self.out[-2000:]))
            self.ws.settimeout(left)
            try:
                msg = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            if not msg:
                raise AssertionError("terminal closed; output %r" % self.out[-2000:])
            m = json.loads(msg)
            if m[0] == "stdout":
                self.out += m[1]
            elif m[0] == "disconnect":
                self.disconnected = True
                raise AssertionError("terminal disconnected; output %r" % self.out[-2000:])
        return rx.search(self.out)

    def run(self, cmd, timeout=30):
        """Runs `cmd` in the shell; its output between two markers."""
        tag = os.urandom(4).hex()
        self.send("echo B%s; %s; echo E%s\r" % (tag, cmd, tag))
        m = self.read_until(r"[\r\n]B%s\r?\n(.*?)E%s" % (tag, tag), timeout)
        return m.group(1).replace("\r", "")

    def wait_disconnect(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ws.settimeout(max(deadline - time.monotonic(), 0.1))
            try:
                msg = self.ws.recv()
            except websocket.WebSocketConnectionClosedException:
                return
            if not msg:
                return
            m = json.loads(msg)
            if m[0] == "disconnect":
                self.disconnected = True
            if m[0] == "stdout":
                self.out += m[1]
        raise AssertionError("terminal did not end")

    def close(self):
        self.ws.close()


def kernel_eval(server, kid, code):
    c = server.connect(kid)
    try:
        r = c.execute(code)
        return "".join(r.stdout) if isinstance(r.stdout, list) else r.stdout
    finally:
        c.close()
        server.clients.remove(c)


def open_terminal(server, body=None, session=None):
    s = session or server.http
    r = s.post(server.url("/api/terminals"), json=body, timeout=120) if body is not None else \
        s.post(server.url("/api/terminals"), timeout=120)
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()["name"]


def test_terminal_is_inside_the_runtime(server):
    kid = server.create_kernel()
    try:
        uid = kernel_eval(server, kid, "import os; open('/tmp/from-kernel', 'w').write('k-%s' % os.getpid()); "
                                       "print(os.getuid())").strip()
        assert uid.isdigit() and uid != "0", uid
        name = open_terminal(server, {"kernel_id": kid})
        t = Term(server, name)
        try:
            assert t.run("id -u").strip() == uid
            assert t.run("pwd").strip() == "/content"
            # The kernel's own /tmp (a tmpfs of its sandbox): the same mount namespace, not a new sandbox.
            assert t.run("cat /tmp/from-kernel").strip().startswith("k-")
            assert t.run("echo $SKYLAB_KERNEL_ID").strip() == kid
            assert t.run("hostname").strip() == "skylab"
            # Nothing of the server's: no admin token in the environment, no inherited descriptors.
            assert server.token not in t.run("env")
            assert set(t.run("ls /proc/$$/fd").split()) <= {"0", "1", "2", "255"}
            # The kernel's network namespace: the server's port on the host's loopback is as
            # (un)reachable from the terminal as from the kernel.
            probe = ("import socket\ns = socket.socket(); s.settimeout(3)\n"
                     "print('OPEN' if s.connect_ex(('127.0.0.1', %d)) == 0 else 'CLOSED')" % server.port)
            from_kernel = kernel_eval(server, kid, probe).strip()
            from_term = t.run("timeout 5 bash -c 'echo > /dev/tcp/127.0.0.1/%d' 2>/dev/null && echo OPEN || echo CLOSED"
                              % server.port).strip()
            assert from_term == from_kernel, (from_term, from_kernel)
            print("loopback from kernel and terminal:", from_kernel)
            status = t.run("grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status")
            assert re.search(r"Seccomp:\s+2", status), status
            assert re.search(r"NoNewPrivs:\s+1", status), status
            # The kernel's pid namespace: its init is pid 1, the host's processes are not there.
            assert str(server.proc.pid) not in t.run("ls /proc").split()
            # Host files the kernel cannot see, the terminal cannot either.
            for host_path in (server.data_dir, server.tmp, "/work", "/sys/fs/cgroup/skylab"):
                seen_by_kernel = kernel_eval(server, kid, "import os; print(os.path.exists(%r))" % host_path).strip()
                out = t.run("test -e %s && echo SEEN || echo ABSENT" % host_path).strip()
                assert (out == "SEEN") == (seen_by_kernel == "True"), (host_path, out, seen_by_kernel)
            assert t.run("test -e %s && echo SEEN || echo ABSENT" % server.data_dir).strip() == "ABSENT"
            # In the runtime's cgroup: its memory limit applies.
            assert t.run("cat /proc/self/cgroup").strip() != ""
            # The terminal lists and answers as Jupyter's.
            listed = server.get("/api/terminals").json()
            assert name in [x["name"] for x in listed]
            one = server.get("/api/terminals/" + name).json()
            assert one["name"] == name and "last_activity" in one
        finally:
            t.close()
    finally:
        server.delete_kernel(kid)


def test_terminal_ends_with_its_runtime(server):
    kid = server.create_kernel()
    name = open_terminal(server, {"kernel_id": kid})
    t = Term(server, name)
    try:
        assert t.run("echo alive").strip() == "alive"
        assert server.delete_kernel(kid).status_code == 204
        t.wait_disconnect()
        assert t.disconnected
        deadline = time.monotonic() + 20
        while name in [x["name"] for x in server.get("/api/terminals").json()]:
            assert time.monotonic() < deadline, "terminal still listed after its runtime went"
            time.sleep(0.2)
        assert server.get("/api/terminals/" + name).status_code == 404
    finally:
        t.close()


def test_delete_terminal(server):
    kid = server.create_kernel()
    try:
        name = open_terminal(server, {"kernel_id": kid})
        t = Term(server, name)
        t.run("true")
        r = server.delete("/api/terminals/" + name)
        assert r.status_code == 204
        t.wait_disconnect()
        t.close()
        deadline = time.monotonic() + 20
        while server.get("/api/terminals/" + name).status_code != 404:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert server.delete("/api/terminals/" + name).status_code == 404
        # The runtime is still there.
        assert server.get("/api/kernels/" + kid).status_code == 200
    finally:
        server.delete_kernel(kid)


def test_post_without_body_attaches_or_starts(server):
    user = uname("term")
    add_user(server, user, "pw-" + user)
    tok = new_token(server, user)
    s = token_session(tok)
    # No runtime yet: one of the default type is started for the terminal.
    r = s.post(server.url("/api/terminals"), timeout=120)
    assert r.status_code == 200, r.text
    name = r.json()["name"]
    kernels = s.get(server.url("/api/kernels"), timeout=30).json()
    assert len(kernels) == 1, kernels
    started = kernels[0]["id"]
    try:
        t = Term(server, name, tok)
        assert t.run("echo $SKYLAB_KERNEL_ID").strip() == started
        assert t.run("echo $SKYLAB_USER").strip() == user
        t.close()
        # A second one attaches to that runtime (the most recently used) instead of starting another.
        name2 = open_terminal(server, session=s)
        assert name2 != name
        assert len(s.get(server.url("/api/kernels"), timeout=30).json()) == 1
        t2 = Term(server, name2, tok)
        assert t2.run("echo $SKYLAB_KERNEL_ID").strip() == started
        t2.close()
    finally:
        s.delete(server.url("/api/kernels/" + started), timeout=60)


def test_another_user_cannot_see_or_use_a_terminal(server):
    kid = server.create_kernel()
    other = uname("intruder")
    add_user(server, other, "pw-" + other)
    tok = new_token(server, other)
    s = token_session(tok)
    try:
        name = open_terminal(server, {"kernel_id": kid})
        assert s.get(server.url("/api/terminals"), timeout=30).json() == []
        assert s.get(server.url("/api/terminals/" + name), timeout=30).status_code == 404
        assert s.delete(server.url("/api/terminals/" + name), timeout=30).status_code == 404
        with pytest.raises(websocket.WebSocketBadStatusException) as e:
            websocket.create_connection("%s/terminals/websocket/%s?token=%s" % (server.ws_base, name, tok),
                                        timeout=10)
        assert e.value.status_code == 404
        # Nor open a terminal into the owner's runtime by its id.
        r = s.post(server.url("/api/terminals"), json={"kernel_id": kid}, timeout=30)
        assert r.status_code == 404, r.text
        # Without credentials: refused.
        assert requests.get(server.url("/api/terminals"), timeout=10).status_code == 403
        # The owner's terminal is untouched.
        assert server.get("/api/terminals/" + name).status_code == 200
        server.delete("/api/terminals/" + name)
    finally:
        server.delete_kernel(kid)


def test_bad_input(server):
    kid = server.create_kernel()
    try:
        for bad in ("../x", "", "a" * 65, "x/y", 5):
            r = server.post("/api/terminals", json={"kernel_id": kid, "name": bad})
            assert r.status_code == 400, (bad, r.status_code, r.text)
        assert server.post("/api/terminals", json={"kernel_id": 7}).status_code == 400
        assert server.post("/api/terminals", json={"kernel_id": "nope"}).status_code == 404
        assert server.post("/api/terminals", data=b"[1,2", headers={"Content-Type": "application/json"}).status_code == 400
        assert server.get("/api/terminals/no-such").status_code == 404
        assert server.get("/api/terminals/..%2F..%2Fetc").status_code == 404
        name = open_terminal(server, {"kernel_id": kid, "name": "mine"})
        assert name == "mine"
        assert server.post("/api/terminals", json={"kernel_id": kid, "name": "mine"}).status_code == 409
        t = Term(server, name)
        # Frames terminado does not know are ignored; the shell goes on.
        for junk in ("[]", "{}", "[1]", '["stdin"]', '["set_size", "a", "b"]', '["set_size", 99999, -1]', "nope"):
            t.ws.send(junk)
        t.ws.send(json.dumps(["set_size", 33, 101, 0, 0]))
        assert t.run("stty size").strip() == "33 101"
        # A frame over the limit closes the connection (1009); the terminal stays.
        t.ws.send(json.dumps(["stdin", "x" * (70 * 1024)]))
        code = None
        for _ in range(1000):
            opcode, data = t.ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = struct.unpack("!H", data[:2])[0]
                break
        assert code == 1009, code
        t.close()
        t = Term(server, name)  # a reconnect gets the recent output (history) and works
        t.read_until("33 101")
        assert t.run("echo again").strip() == "again"
        t.close()
        # A limit on terminals per user.
        names = [name]
        while True:
            r = server.post("/api/terminals", json={"kernel_id": kid})
            if r.status_code != 200:
                break
            names.append(r.json()["name"])
            assert len(names) <= 8
        assert r.status_code == 409 and len(names) == 8, (r.status_code, len(names))
        for n in names:
            server.delete("/api/terminals/" + n)
    finally:
        server.delete_kernel(kid)


def test_a_slow_client_does_not_hold_up_the_terminal(server):
    kid = server.create_kernel()
    try:
        name = open_terminal(server, {"kernel_id": kid})
        slow = Term(server, name)  # reads nothing from here on
        fast = Term(server, name)
        assert fast.run("echo ready").strip() == "ready"
        fast.send("head -c 40000000 /dev/zero | tr '\\0' x; echo; echo DONE-$((20+22))\r")
        got, tail = 0, ""
        deadline = time.monotonic() + 120
        while "DONE-42" not in tail:
            assert time.monotonic() < deadline, "the reading client did not get all output"
            m = json.loads(fast.ws.recv())
            if m[0] == "stdout":
                got += len(m[1])
                tail = (tail + m[1])[-200:]
        assert got >= 40000000
        # The server still answers, and the slow client was told its output was dropped.
        assert server.get("/api/terminals/" + name).status_code == 200
        dropped = False
        slow.ws.settimeout(30)
        seen = 0
        while seen < 45000000:
            m = json.loads(slow.ws.recv())
            if m[0] != "stdout":
                continue
            seen += len(m[1])
            if "output dropped: the connection is too slow" in m[1]:
                dropped = True
                break
        assert dropped
        slow.close()
        fast.close()
    finally:
        server.delete_kernel(kid)


def test_restart_ends_the_terminal(server):
    kid = server.create_kernel()
    try:
        name = open_terminal(server, {"kernel_id": kid})
        t = Term(server, name)
        assert t.run("echo before").strip() == "before"
        assert server.post("/api/kernels/%s/restart" % kid).status_code == 200
        t.wait_disconnect()
        assert t.disconnected
        t.close()
        # A new terminal goes into the restarted runtime's sandbox.
        t = Term(server, open_terminal(server, {"kernel_id": kid}))
        assert t.run("echo after").strip() == "after"
        t.close()
    finally:
        server.delete_kernel(kid)


def test_server_stops_cleanly_with_a_terminal_open(fresh_server):
    srv = fresh_server
    kid = srv.create_kernel()
    name = open_terminal(srv, {"kernel_id": kid})
    t = Term(srv, name)
    assert t.run("echo up").strip() == "up"
    # The runtime outlives the server (as runtimes do); the fixture's teardown
    # asserts exit status 0 after SIGTERM with the terminal and its client open,
    # and ends what the runtime left.
    srv.kernels.remove(kid)
    code = srv.terminate()
    assert code == 0, srv.log_text()
    t.wait_disconnect()


def test_browser_rules_for_terminals(server):
    """A signed-in browser: XSRF on POST/DELETE, Origin on the WebSocket, as for kernels."""
    user = uname("tb")
    add_user(server, user, "pw-" + user)
    b = Browser(server, user, "pw-" + user)
    jar = {"Cookie": b.cookie_header()}
    # Without the XSRF token a cookie cannot open a terminal (a cross-site form could otherwise).
    r = requests.post(server.url("/api/terminals"), headers=jar, json={}, timeout=30)
    assert r.status_code == 403, r.text
    r = b.request("POST", "/api/terminals", json={}, headers={"Origin": server.base_url}, timeout=120)
    assert r.status_code == 200, r.text
    name = r.json()["name"]
    kid = [k["id"] for k in b.request("GET", "/api/kernels").json()][0]
    try:
        url = "%s/terminals/websocket/%s" % (server.ws_base, name)
        assert ws_status(lambda: websocket.create_connection(url, cookie=b.cookie_header(), timeout=10)) == 101
        assert ws_status(lambda: websocket.create_connection(
            url, cookie=b.cookie_header(), origin="http://evil.example", timeout=10)) == 403
        assert requests.delete(server.url("/api/terminals/" + name), headers=jar, timeout=30).status_code == 403
        assert b.request("DELETE", "/api/terminals/" + name).status_code == 204
    finally:
        b.request("DELETE", "/api/kernels/" + kid)


def test_multibyte_output_is_never_cut(server):
    """Characters cut by a read of the pty are kept whole for the next frame (no U+FFFD)."""
    kid = server.create_kernel()
    try:
        t = Term(server, open_terminal(server, {"kernel_id": kid}))
        # 300,000 two- and three-byte characters in odd-sized writes: reads of the pty split some of them.
        out = t.run("python3 -c \"import sys\nfor i in range(3000): sys.stdout.write('é€' * 50 + 'x' * (i % 7)); sys.stdout.flush()\"", timeout=120)
        assert "\ufffd" not in out
        assert out.count("é") == 150000 and out.count("€") == 150000
        t.close()
    finally:
        server.delete_kernel(kid)
