"""Accounts, sign-in, authorization and security headers (issue 4).

Users are created with the real CLI (`skylab user ...`) on the running
server's data directory, as an operator would do.
"""

import json
import re
import secrets
import subprocess
import time
import urllib.parse

import pytest
import requests
import websocket

import kclient
from conftest import skylab_bin

pytestmark = pytest.mark.skylab_only

NOTEBOOK = {"cells": [{"cell_type": "code", "source": "print('B private')", "metadata": {},
                       "outputs": [], "execution_count": None, "id": "c1"}],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


# ---------------------------------------------------------------- helpers

def uname(prefix="u"):
    return prefix + secrets.token_hex(5)


def cli(server, *args, stdin=None):
    return subprocess.run([skylab_bin(), "user", *args, "--data-dir", server.data_dir],
                          input=stdin, capture_output=True, timeout=60)


def add_user(server, name, password, admin=False):
    args = ["add", name, "--password-stdin"] + (["--admin"] if admin else [])
    r = cli(server, *args, stdin=(password + "\n").encode())
    assert r.returncode == 0, r.stderr.decode()


def new_token(server, name, *extra):
    r = cli(server, "token", name, *extra)
    assert r.returncode == 0, r.stderr.decode()
    tok = r.stdout.decode().strip()
    assert tok.startswith("skt_"), tok
    return tok


def token_session(token):
    s = requests.Session()
    s.headers["Authorization"] = "token " + token
    return s


def login_form(server, session):
    r = session.get(server.url("/login"), timeout=10)
    assert r.status_code == 200, r.text[:300]
    m = re.search(r'name="_xsrf" value="([0-9a-f]+)"', r.text)
    assert m, r.text
    return m.group(1)


def post_login(server, session, name, password, nxt=None):
    xsrf = login_form(server, session)
    data = {"_xsrf": xsrf, "username": name, "password": password}
    if nxt is not None:
        data["next"] = nxt
    return session.post(server.url("/login"), data=data, allow_redirects=False, timeout=30)


class Browser:
    """A signed-in browser: the session cookie plus the XSRF token it echoes."""

    def __init__(self, server, name, password):
        self.server = server
        self.s = requests.Session()
        r = post_login(server, self.s, name, password)
        assert r.status_code == 303, (r.status_code, r.text[:300])
        self.cookie = self.s.cookies.get("skylab_session")
        self.xsrf = self.s.cookies.get("_xsrf")
        assert self.cookie and self.xsrf

    def cookie_header(self):
        return "skylab_session=%s; _xsrf=%s" % (self.cookie, self.xsrf)

    def request(self, method, path, **kw):
        headers = dict(kw.pop("headers", {}))
        headers.setdefault("X-XSRFToken", self.xsrf)
        kw.setdefault("timeout", 60)
        return self.s.request(method, self.server.url(path), headers=headers, **kw)


def ws_url(server, kid, token=None):
    q = {"session_id": secrets.token_hex(8)}
    if token:
        q["token"] = token
    return "%s/api/kernels/%s/channels?%s" % (server.ws_base, kid, urllib.parse.urlencode(q))


def ws_status(fn):
    """Runs a websocket connect; -> 101 on success, else the refusal's status."""
    try:
        ws = fn()
    except websocket.WebSocketBadStatusException as e:
        return e.status_code
    # Some WebSockets (co-editing) check access after the upgrade and close
    # with 4000 + the HTTP status: that is the refusal's status.
    try:
        ws.settimeout(5)
        while True:
            op, data = ws.recv_data(control_frame=True)
            if op == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                return code - 4000 if 4000 <= code < 5000 else 101
    except (websocket.WebSocketTimeoutException, websocket.WebSocketConnectionClosedException, OSError):
        pass
    finally:
        ws.close()
    return 101


def wait_closed(ws, timeout=15):
    """True when the server closes `ws` within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    ws.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            op, _ = ws.recv_data(control_frame=True)
        except websocket.WebSocketTimeoutException:
            continue
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            return True
        if op == websocket.ABNF.OPCODE_CLOSE:
            return True
    return False


def has_route(server, method, pattern):
    routes = server.get("/api/skylab/routes").json()
    return any(r["method"] == method and r["pattern"] == pattern for r in routes)


# ---------------------------------------------------------------- CLI

def test_cli_user_add_list_token_passwd_disable(server):
    name = uname()
    add_user(server, name, "first-password")
    r = cli(server, "add", name, "--password-stdin", stdin=b"other-password\n")
    assert r.returncode != 0 and b"exists" in r.stderr

    listing = cli(server, "list")
    assert listing.returncode == 0 and name.encode() in listing.stdout
    users = {u["username"]: u for u in json.loads(cli(server, "list", "--json").stdout)}
    assert users[name]["admin"] is False and users[name]["disabled"] is False

    tok = new_token(server, name)
    assert b"first-password" not in listing.stdout
    me = token_session(tok).get(server.url("/api/me"), timeout=10)
    assert me.status_code == 200 and me.json()["identity"]["username"] == name
    assert me.json()["skylab"] == {"admin": False, "auth": "token", "output_origin": ""}

    # Only digests are stored: neither the password nor the token is in the database file.
    db = b""
    for suffix in ("", "-wal"):
        try:
            db += open(server.data_dir + "/skylab.db" + suffix, "rb").read()
        except FileNotFoundError:
            pass
    assert name.encode() in db
    assert b"first-password" not in db and tok.encode() not in db

    # passwd: the old password stops working, the new one works, sessions end.
    b = Browser(server, name, "first-password")
    assert b.request("GET", "/api/me").status_code == 200
    r = cli(server, "passwd", name, "--password-stdin", stdin=b"second-password\n")
    assert r.returncode == 0, r.stderr
    assert b.request("GET", "/api/me").status_code == 403
    assert post_login(server, requests.Session(), name, "first-password").status_code == 403
    assert post_login(server, requests.Session(), name, "second-password").status_code == 303
    assert token_session(tok).get(server.url("/api/me"), timeout=10).status_code == 200

    # disable: no sign-in, no tokens; enable restores tokens but not sessions.
    b2 = Browser(server, name, "second-password")
    assert cli(server, "disable", name).returncode == 0
    assert token_session(tok).get(server.url("/api/me"), timeout=10).status_code == 403
    assert b2.request("GET", "/api/me").status_code == 403
    assert post_login(server, requests.Session(), name, "second-password").status_code == 403
    assert json.loads(cli(server, "list", "--json").stdout) and \
        {u["username"]: u for u in json.loads(cli(server, "list", "--json").stdout)}[name]["disabled"]
    assert cli(server, "token", name).returncode != 0
    assert cli(server, "enable", name).returncode == 0
    assert token_session(tok).get(server.url("/api/me"), timeout=10).status_code == 200
    assert b2.request("GET", "/api/me").status_code == 403

    # Expiring CLI tokens are listed with their expiry.
    new_token(server, name, "--name", "nightly", "--expires", "1h")
    listed = token_session(tok).get(server.url("/api/skylab/tokens"), timeout=10).json()
    assert any(t["name"] == "nightly" and t["expires"] for t in listed), listed


def test_cli_bad_input_stores_nothing(server):
    before = cli(server, "list", "--json").stdout
    for bad in ("x" * 100000, "Upper", "a/b", "../etc", "\u00e9t\u00e9", ""):
        r = cli(server, "add", bad, "--password-stdin", stdin=b"long-enough-password\n")
        assert r.returncode != 0, bad[:20]
    r = cli(server, "add", uname(), "--password-stdin", stdin=b"short\n")
    assert r.returncode != 0 and b"8 characters" in r.stderr
    r = cli(server, "add", uname(), "--password-stdin", stdin=b"x" * 10000)
    assert r.returncode != 0
    assert cli(server, "token", "nobody-" + secrets.token_hex(3)).returncode != 0
    assert cli(server, "frobnicate", "x").returncode == 2
    assert cli(server, "list", "--json").stdout == before


# ---------------------------------------------------------------- sign-in

def test_login_page_and_cookies(server):
    r = requests.get(server.url("/login"), timeout=10)
    assert r.status_code == 200 and "text/html" in r.headers["Content-Type"]
    csp = r.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp and "form-action 'self'" in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Cache-Control"] == "no-store"

    name = uname()
    add_user(server, name, "cookie-password")
    s = requests.Session()
    r = post_login(server, s, name, "cookie-password", nxt="/api/me")
    assert r.status_code == 303 and r.headers["Location"] == "/api/me"
    cookies = r.raw.headers.getlist("Set-Cookie")
    session_cookie = [c for c in cookies if c.startswith("skylab_session=")]
    assert len(session_cookie) == 1, cookies
    attrs = [a.strip() for a in session_cookie[0].split(";")]
    assert "HttpOnly" in attrs and "SameSite=Lax" in attrs and "Path=/" in attrs
    assert "Secure" not in attrs  # plain HTTP here; --secure-cookies adds it
    xsrf_cookie = [c for c in cookies if c.startswith("_xsrf=")]
    assert xsrf_cookie and "HttpOnly" not in xsrf_cookie[0]

    me = s.get(server.url("/api/me"), timeout=10).json()
    assert me["identity"]["username"] == name and me["skylab"]["auth"] == "session"
    # Already signed in: /login goes straight on.
    r = s.get(server.url("/login?next=/api/status"), allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["Location"] == "/api/status"


def test_logout_ends_the_session(server):
    name = uname()
    add_user(server, name, "logout-password")
    b = Browser(server, name, "logout-password")
    old = b.cookie_header()
    # Logout without the XSRF token is refused (logout CSRF).
    r = b.s.post(server.url("/logout"), allow_redirects=False, timeout=10)
    assert r.status_code == 403
    assert b.request("GET", "/api/me").status_code == 200
    r = b.s.post(server.url("/logout"), data={"_xsrf": b.xsrf}, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["Location"] == "/login"
    # The stale cookie, replayed, proves nothing.
    r = requests.get(server.url("/api/me"), headers={"Cookie": old}, timeout=10)
    assert r.status_code == 403
    r = requests.post(server.url("/api/kernels"), headers={"Cookie": old, "X-XSRFToken": b.xsrf},
                      json={}, timeout=10)
    assert r.status_code == 403


def test_wrong_password_and_login_xsrf(server):
    name = uname()
    add_user(server, name, "right-password")
    s = requests.Session()
    r = post_login(server, s, name, "wrong-password")
    assert r.status_code == 403 and "Invalid user name or password" in r.text
    assert not s.cookies.get("skylab_session")
    r = post_login(server, requests.Session(), "nobody" + secrets.token_hex(3), "whatever-password")
    assert r.status_code == 403 and "Invalid user name or password" in r.text
    # The login form must echo the _xsrf cookie (no login CSRF).
    r = requests.post(server.url("/login"), data={"username": name, "password": "right-password"},
                      allow_redirects=False, timeout=10)
    assert r.status_code == 403
    r = requests.post(server.url("/login"), data={"_xsrf": "a" * 64, "username": name,
                                                  "password": "right-password"},
                      headers={"Cookie": "_xsrf=" + "b" * 64}, allow_redirects=False, timeout=10)
    assert r.status_code == 403
    s = requests.Session()
    xsrf = login_form(server, s)
    r = s.post(server.url("/login"), data={"_xsrf": xsrf, "username": name, "password": "right-password"},
               headers={"Origin": "http://evil.example"}, allow_redirects=False, timeout=10)
    assert r.status_code == 403


@pytest.mark.parametrize("nxt", ["//evil.example", "\\\\evil.example", "https:///x", "/\\evil.example",
                                 "https://evil.example/", "/\t/evil.example", "javascript:alert(1)",
                                 "/%2F/evil.example", "evil.example"])
def test_open_redirects_refused(server, nxt):
    name = uname()
    add_user(server, name, "redirect-password")
    r = post_login(server, requests.Session(), name, "redirect-password", nxt=nxt)
    assert r.status_code == 303 and r.headers["Location"] == "/", (nxt, r.headers.get("Location"))
    page = requests.get(server.url("/login"), params={"next": nxt}, timeout=10).text
    assert 'name="next" value="/"' in page


def test_failed_logins_are_throttled(server):
    name = uname()
    add_user(server, name, "throttle-password")
    for _ in range(5):
        assert post_login(server, requests.Session(), name, "bad-password").status_code == 403
    r = post_login(server, requests.Session(), name, "bad-password")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    # Refused without being checked, even with the right password, until the delay passes.
    r = post_login(server, requests.Session(), name, "throttle-password")
    assert r.status_code == 429
    time.sleep(int(r.headers["Retry-After"]) + 0.2)
    r = post_login(server, requests.Session(), name, "throttle-password")
    assert r.status_code == 303
    # Success forgets the failures.
    assert post_login(server, requests.Session(), name, "bad-password").status_code == 403


# ---------------------------------------------------------------- cross-site

def test_cross_site_requests_refused(server):
    name = uname()
    add_user(server, name, "csrf-password")
    b = Browser(server, name, "csrf-password")
    jar = {"Cookie": b.cookie_header()}
    before = requests.get(server.url("/api/kernels"), headers=jar, timeout=10).json()

    # A form POST with only the cookie.
    r = requests.post(server.url("/api/kernels"), headers=jar, data={"name": "python3"}, timeout=10)
    assert r.status_code == 403 and "_xsrf" in r.json()["message"]
    # JSON sent as text/plain (a "simple" cross-site request).
    r = requests.post(server.url("/api/kernels"), headers=dict(jar, **{"Content-Type": "text/plain"}),
                      data=json.dumps({"name": "python3"}), timeout=10)
    assert r.status_code == 403
    # A wrong token, and the right token from a foreign page.
    r = requests.post(server.url("/api/kernels"), headers=dict(jar, **{"X-XSRFToken": "0" * 64}), json={},
                      timeout=10)
    assert r.status_code == 403
    r = requests.post(server.url("/api/kernels"),
                      headers=dict(jar, **{"X-XSRFToken": b.xsrf, "Origin": "http://evil.example"}),
                      json={}, timeout=10)
    assert r.status_code == 403
    assert requests.get(server.url("/api/kernels"), headers=jar, timeout=10).json() == before

    # The same-site app does it right.
    r = b.request("POST", "/api/kernels", json={}, headers={"Origin": server.base_url})
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    try:
        # The token may also come as the _xsrf form field.
        r = requests.post(server.url("/api/kernels/%s/interrupt" % kid), headers=jar,
                          data={"_xsrf": b.xsrf}, timeout=10)
        assert r.status_code == 204, r.text
        r = requests.post(server.url("/api/kernels/%s/interrupt" % kid), headers=jar,
                          data={"_xsrf": "nope"}, timeout=10)
        assert r.status_code == 403

        # WebSockets with the cookie: Origin must be this server.
        url = ws_url(server, kid)
        assert ws_status(lambda: websocket.create_connection(url, cookie=b.cookie_header(), timeout=10)) == 101
        assert ws_status(lambda: websocket.create_connection(
            url, cookie=b.cookie_header(), origin="http://evil.example", timeout=10)) == 403
        assert ws_status(lambda: websocket.create_connection(
            url, cookie=b.cookie_header(), suppress_origin=True, timeout=10)) == 403
        # Token holders are not a tricked browser: no Origin rule for them.
        tok = new_token(server, name)
        assert ws_status(lambda: websocket.create_connection(
            ws_url(server, kid, tok), origin="http://evil.example", timeout=10)) == 101
        r = requests.post(server.url("/api/kernels/%s/interrupt" % kid),
                          headers={"Authorization": "token " + tok, "Origin": "http://evil.example"}, timeout=10)
        assert r.status_code == 204
    finally:
        b.request("DELETE", "/api/kernels/" + kid)


def test_password_change_closes_cookie_websockets(server):
    name = uname()
    add_user(server, name, "ws-password")
    b = Browser(server, name, "ws-password")
    kid = b.request("POST", "/api/kernels", json={}).json()["id"]
    tok = new_token(server, name)
    try:
        by_cookie = websocket.create_connection(ws_url(server, kid), cookie=b.cookie_header(), timeout=10)
        by_token = websocket.create_connection(ws_url(server, kid, tok), timeout=10)
        r = cli(server, "passwd", name, "--password-stdin", stdin=b"ws-password-2\n")
        assert r.returncode == 0
        assert wait_closed(by_cookie), "the cookie WebSocket stayed open after a password change"
        assert not wait_closed(by_token, timeout=2), "token WebSockets survive a password change"
        by_token.close()
        assert b.request("GET", "/api/me").status_code == 403
    finally:
        token_session(tok).delete(server.url("/api/kernels/" + kid), timeout=30)


def test_disable_closes_open_websockets(server):
    name = uname()
    add_user(server, name, "disable-password")
    tok = new_token(server, name)
    s = token_session(tok)
    kid = s.post(server.url("/api/kernels"), json={}, timeout=60).json()["id"]
    try:
        c = kclient.KernelClient(server.ws_base, kid, tok)
        try:
            assert c.execute("print(6*7)").stdout.strip() == "42"
            b = Browser(server, name, "disable-password")
            by_cookie = websocket.create_connection(ws_url(server, kid), cookie=b.cookie_header(), timeout=10)
            assert cli(server, "disable", name).returncode == 0
            assert wait_closed(c.ws), "the user's WebSocket stayed open after disable"
            assert wait_closed(by_cookie)
            assert ws_status(lambda: websocket.create_connection(ws_url(server, kid, tok), timeout=10)) == 403
            assert s.get(server.url("/api/kernels"), timeout=10).status_code == 403
        finally:
            c.close()
    finally:
        cli(server, "enable", name)
        s.delete(server.url("/api/kernels/" + kid), timeout=30)


# ---------------------------------------------------------------- API tokens

def test_api_tokens_rest(server):
    name = uname()
    add_user(server, name, "tokens-password")
    b = Browser(server, name, "tokens-password")
    r = b.request("POST", "/api/skylab/tokens", json={"name": "vscode", "expires_in": 3600})
    assert r.status_code == 201, r.text
    created = r.json()
    tok = created["token"]
    assert tok.startswith("skt_") and created["name"] == "vscode" and created["expires"]
    assert r.headers["Cache-Control"] == "no-store"
    listed = b.request("GET", "/api/skylab/tokens").json()
    assert [t["id"] for t in listed] == [created["id"]]
    assert "token" not in listed[0] and tok not in json.dumps(listed)

    me = token_session(tok).get(server.url("/api/me"), timeout=10).json()
    assert me["identity"]["username"] == name

    # A WebSocket opened with the token closes when the token is revoked.
    kid = token_session(tok).post(server.url("/api/kernels"), json={}, timeout=60).json()["id"]
    try:
        ws = websocket.create_connection(ws_url(server, kid, tok), timeout=10)
        r = b.request("DELETE", "/api/skylab/tokens/" + created["id"])
        assert r.status_code == 204
        assert wait_closed(ws), "WebSocket stayed open after its token was revoked"
        assert token_session(tok).get(server.url("/api/me"), timeout=10).status_code == 403
        assert b.request("DELETE", "/api/skylab/tokens/" + created["id"]).status_code == 404
    finally:
        b.request("DELETE", "/api/kernels/" + kid)

    # Bad input: clear 4xx, nothing stored.
    for body in ({"name": "x", "color": "red"}, {"name": 5}, {"name": ""}, {"name": "x" * 101},
                 {"expires_in": 1}, {"expires_in": "1h"}, {"expires_in": 10 ** 12}, []):
        r = b.request("POST", "/api/skylab/tokens", json=body)
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert isinstance(r.json()["message"], str)
    r = b.request("POST", "/api/skylab/tokens", data=b'{"name": "\xff\xfe"}',
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert b.request("GET", "/api/skylab/tokens").json() == []


# ---------------------------------------------------------------- administration

def test_admin_api(server):
    name = uname()
    add_user(server, name, "plain-password")
    tok = new_token(server, name)
    kid = token_session(tok).post(server.url("/api/kernels"), json={}, timeout=60).json()["id"]
    try:
        users = server.get("/api/skylab/users").json()
        mine = [u for u in users if u["username"] == name]
        assert mine and [k["id"] for k in mine[0]["kernels"]] == [kid]
        assert mine[0]["admin"] is False and mine[0]["disabled"] is False
        assert "password" not in json.dumps(users).lower().replace("password_changed", "")
        for path in ("/api/skylab/users", "/api/skylab/routes"):
            assert token_session(tok).get(server.url(path), timeout=10).status_code == 403
        r = token_session(tok).patch(server.url("/api/skylab/users/" + name), json={"admin": True}, timeout=10)
        assert r.status_code == 403
        # An admin account (not only the admin token) may administer.
        admin = uname("adm")
        add_user(server, admin, "admin-password", admin=True)
        ab = Browser(server, admin, "admin-password")
        assert ab.request("GET", "/api/skylab/users").status_code == 200
        r = ab.request("PATCH", "/api/skylab/users/" + name, json={"disabled": True})
        assert r.status_code == 200 and r.json()["disabled"] is True
        assert token_session(tok).get(server.url("/api/me"), timeout=10).status_code == 403
        assert ab.request("PATCH", "/api/skylab/users/" + name, json={"disabled": False}).status_code == 200
        assert ab.request("PATCH", "/api/skylab/users/nobody" + secrets.token_hex(3),
                          json={"disabled": True}).status_code == 404
    finally:
        server.delete("/api/kernels/" + kid)


def test_cli_user_changes_are_audited(server):
    """`skylab user` changes land in the audit log the Admin page shows, with a
    cli: actor; refused changes and passwords/tokens do not."""
    chief, name = uname("chief"), uname()
    add_user(server, chief, "chief-password-1", admin=True)
    admin = token_session(new_token(server, chief))
    add_user(server, name, "first-password")
    assert cli(server, "add", name, "--password-stdin", stdin=b"x-password-2\n").returncode != 0
    assert cli(server, "passwd", name, "--password-stdin", stdin=b"second-password\n").returncode == 0
    assert cli(server, "disable", name).returncode == 0
    assert cli(server, "enable", name).returncode == 0
    assert cli(server, "admin", name, "on").returncode == 0
    assert cli(server, "admin", name, "off").returncode == 0
    tok = new_token(server, name, "--name", "laptop")
    assert cli(server, "disable", uname("ghost")).returncode != 0

    log = admin.get(server.url("/api/skylab/admin/audit"), timeout=10).json()
    mine = [(e["action"], e["detail"]) for e in reversed(log) if e["target"] == name]
    assert mine == [("user.add", ""), ("user.password", ""), ("user.disable", ""),
                    ("user.enable", ""), ("user.admin", ""), ("user.unadmin", ""),
                    ("token.create", "laptop")], mine
    assert ("user.add", "administrator") in [(e["action"], e["detail"]) for e in log
                                             if e["target"] == chief]
    assert all(e["actor"].startswith("cli:") for e in log if e["target"] in (name, chief)), log
    assert not any("ghost" in e["target"] for e in log), log
    text = json.dumps(log)
    assert "first-password" not in text and "second-password" not in text and tok not in text


def test_admin_create_user_bad_input_stores_nothing(server):
    before = server.get("/api/skylab/users").json()
    hdr = {"Authorization": "token " + server.token, "Content-Type": "application/json"}
    big = json.dumps({"username": "a" * (10 << 20), "password": "long-enough"}).encode()
    status, _, data = kclient.raw_http(server.host, server.port, "POST", "/api/skylab/users", hdr, big)
    assert status == 413, (status, data[:200])
    for body in (b'{"username": "\xff\xfeab", "password": "long-enough"}',
                 b'{"username": "ok", "password": "long-enough", "role": "root"}',
                 b'{"username": "Not Valid", "password": "long-enough"}',
                 b'{"username": "okname", "password": "short"}',
                 b'{"username": "okname"}', b'{"username": 5, "password": "long-enough"}',
                 b'{"username": "okname", "password": "long-enough", "admin": "yes"}',
                 b'[1, 2]', b'{"username": '):
        r = server.post("/api/skylab/users", data=body, headers={"Content-Type": "application/json"})
        assert 400 <= r.status_code < 500, (body, r.status_code)
        assert isinstance(r.json()["message"], str)
    # 10 MB user names on the login form: refused by size, nothing happens.
    form = ("_xsrf=x&username=" + "a" * (10 << 20) + "&password=x").encode()
    status, _, _ = kclient.raw_http(server.host, server.port, "POST", "/login",
                                    {"Content-Type": "application/x-www-form-urlencoded",
                                     "Cookie": "_xsrf=x"}, form)
    assert status == 413
    s = requests.Session()
    xsrf = login_form(server, s)
    r = s.post(server.url("/login"), data=b"_xsrf=" + xsrf.encode() + b"&username=%FF%FE&password=x",
               headers={"Content-Type": "application/x-www-form-urlencoded"}, allow_redirects=False,
               timeout=10)
    assert r.status_code == 400
    assert server.get("/api/skylab/users").json() == before
    assert server.get("/api").status_code == 200
    # The admin API creates working accounts.
    name = uname()
    r = server.post("/api/skylab/users", json={"username": name, "password": "created-by-api"})
    assert r.status_code == 201 and r.json()["username"] == name
    assert server.post("/api/skylab/users", json={"username": name, "password": "created-by-api"}).status_code == 409
    Browser(server, name, "created-by-api")


# ---------------------------------------------------------------- security headers

def test_security_headers(server):
    for r in (requests.get(server.url("/"), timeout=10), requests.get(server.url("/login"), timeout=10)):
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    r = server.get("/api/kernels")
    assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert "sandbox" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Referrer-Policy"] == "same-origin"
    r = requests.get(server.url("/api/kernels"), timeout=10)  # errors too
    assert r.status_code == 403 and "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]


# ---------------------------------------------------------------- isolation

# Every route of the server, by (method, pattern), with how user A must see
# user B's things through it. A route missing here fails the walk: whoever
# adds a route decides (and tests) how it is isolated.
#   public   no authentication at all
#   global   the same for everyone; must not mention B's things
#   list     A's own collection; must not mention B's things
#   create   creates A's own thing (covered by the ownership checks below)
#   admin    administrators only: 403 for A
#   item     addresses one of B's things: 404 for A, with B's values filled in
#   empty    lists what belongs to one of B's things: 404, or empty for A
#   ws       WebSocket to one of B's things: upgrade refused with 404
#   attach   creates A's thing referring to B's: refused with 404
KID = "/api/kernels/([0-9a-fA-F-]{1,64})"
SID = "/api/sessions/([0-9a-fA-F-]{1,64})/?"
CONTENTS = r"/api/contents(/[\s\S]*)?"
SHARE = "([0-9a-f]{24,48})"
RUNTIME_FILES = r"/api/skylab/runtimes/([0-9a-fA-F-]{1,64})/files(/[\s\S]*)?"
TERMINAL = "/api/terminals/([A-Za-z0-9_.-]{1,64})/?"

RULES = {
    ("GET", "/"): ("public",),
    # The browser app's page (signed-in users, else a redirect to /login), its
    # assets and the sandboxed output frame: nothing of anyone's in them.
    ("GET", r"/(drive|recent|shared)(/[\s\S]*)?"): ("public",),
    ("GET", r"/notebooks/([\s\S]+)"): ("public",),
    ("GET", r"/static/([\s\S]+)"): ("public",),
    ("GET", "/output-frame"): ("public",),
    # Ops (test_ops.py): health says nothing of anyone; /metrics checks the
    # admin or [metrics] token itself (a user's token gets 401 there).
    ("GET", "/api/health"): ("public",),
    ("GET", "/metrics"): ("public",),
    ("GET", "/api/?"): ("public",),
    ("GET", "/login"): ("public",),
    ("POST", "/login"): ("public",),
    ("GET", "/signup"): ("public",),
    ("POST", "/signup"): ("public",),
    ("GET", "/logout"): ("public",),
    ("POST", "/logout"): ("public",),
    ("GET", "/api/status"): ("global",),
    ("GET", "/api/me"): ("global",),
    ("GET", "/api/kernelspecs/?"): ("global",),
    ("GET", "/api/kernelspecs/([^/]+)/?"): ("global", ["python3"]),
    ("GET", "/kernelspecs/([^/]+)/([^/]+)"): ("global", ["python3", "logo-64x64.png"]),
    ("GET", "/api/kernels/?"): ("list",),
    ("POST", "/api/kernels/?"): ("create",),
    ("GET", KID + "/?"): ("item", ["{kernel}"]),
    ("DELETE", KID + "/?"): ("item", ["{kernel}"]),
    ("POST", KID + "/interrupt/?"): ("item", ["{kernel}"]),
    ("POST", KID + "/restart/?"): ("item", ["{kernel}"]),
    ("WS", KID + "/channels/?"): ("ws", ["{kernel}"]),
    ("GET", "/api/skylab/routes/?"): ("admin",),
    ("GET", "/api/skylab/tokens/?"): ("list",),
    ("POST", "/api/skylab/tokens/?"): ("create",),
    ("DELETE", "/api/skylab/tokens/([0-9a-f]{1,64})"): ("item", ["{token}"]),
    ("GET", "/api/skylab/users/?"): ("admin",),
    ("POST", "/api/skylab/users/?"): ("admin",),
    ("PATCH", "/api/skylab/users/([a-z0-9_-]{1,32})"): ("admin", ["{user}"]),
    # The Drive: A's paths are A's own tree, so B's paths name nothing for A.
    ("GET", CONTENTS + "/checkpoints"): ("empty", ["/{nb}"]),
    ("POST", CONTENTS + "/checkpoints"): ("item", ["/{nb}"]),
    ("POST", CONTENTS + "/checkpoints/([A-Za-z0-9_-]+)"): ("item", ["/{nb}", "{checkpoint}"]),
    ("DELETE", CONTENTS + "/checkpoints/([A-Za-z0-9_-]+)"): ("item", ["/{nb}", "{checkpoint}"]),
    ("GET", CONTENTS): ("item", ["/{nb}"]),
    ("PUT", CONTENTS): ("create",),
    ("POST", CONTENTS): ("item", ["/{dir}"]),
    ("PATCH", CONTENTS): ("item", ["/{nb}"], {"path": "stolen.ipynb"}),
    ("DELETE", CONTENTS): ("item", ["/{nb}"]),
    ("GET", r"/files(/[\s\S]*)"): ("item", ["/{nb}"]),
    ("GET", "/api/skylab/revisions/?"): ("empty", [], None, {"path": "{nb}"}),
    ("GET", "/api/skylab/revisions/([0-9]{1,18})"): ("item", ["{revision}"], None, {"path": "{nb}"}),
    ("POST", "/api/skylab/revisions/([0-9]{1,18})/restore"): ("item", ["{revision}"], None, {"path": "{nb}"}),
    ("GET", "/api/sessions/?"): ("list",),
    ("POST", "/api/sessions/?"): ("attach", [], {"path": "a.ipynb", "type": "notebook", "kernel": {"id": "{kernel}"}}),
    ("GET", SID): ("item", ["{session}"]),
    ("PATCH", SID): ("item", ["{session}"], {"path": "stolen.ipynb"}),
    ("DELETE", SID): ("item", ["{session}"]),
    # Runtimes are kernels with a type: B's runtime id is B's kernel id.
    ("GET", "/api/skylab/runtime_types/?"): ("global",),
    ("GET", "/api/skylab/jobs/?"): ("list",),
    ("POST", "/api/skylab/jobs/?"): ("create",),
    ("GET", "/api/skylab/jobs/([0-9a-f-]{36})/?"): ("item", ["{job}"]),
    ("DELETE", "/api/skylab/jobs/([0-9a-f-]{36})/?"): ("item", ["{job}"]),
    ("GET", "/api/skylab/runtimes/?"): ("list",),
    ("POST", "/api/skylab/runtimes/?"): ("create",),
    ("GET", "/api/skylab/runtimes/([0-9a-fA-F-]{1,64})/?"): ("item", ["{kernel}"]),
    ("DELETE", "/api/skylab/runtimes/([0-9a-fA-F-]{1,64})/?"): ("item", ["{kernel}"]),
    ("GET", "/api/skylab/resources/?"): ("global",),
    # A runtime's /content: B's runtime id names nothing of A's.
    ("GET", RUNTIME_FILES): ("item", ["{kernel}", "/"]),
    ("PUT", RUNTIME_FILES): ("item", ["{kernel}", "/stolen.txt"]),
    ("POST", RUNTIME_FILES): ("item", ["{kernel}", "/stolen"], {"type": "directory"}),
    ("PATCH", RUNTIME_FILES): ("item", ["{kernel}", "/b.txt"], {"path": "stolen.txt"}),
    ("DELETE", RUNTIME_FILES): ("item", ["{kernel}", "/b.txt"]),
    # Sharing: B's share (to a third user) is not A's to see, use or revoke.
    ("POST", "/api/skylab/shares/?"): ("attach", [], {"path": "{nb}", "user": "{user}"}),
    ("GET", "/api/skylab/shares/?"): ("list",),
    ("DELETE", "/api/skylab/shares/" + SHARE): ("item", ["{share}"]),
    ("GET", "/api/skylab/shared/?"): ("list",),
    ("GET", "/api/skylab/shared/" + SHARE + r"/contents(/[\s\S]*)?"): ("item", ["{share}", ""]),
    ("PUT", "/api/skylab/shared/" + SHARE + r"/contents(/[\s\S]*)?"): (
        "item", ["{share}", ""], {"type": "notebook", "format": "json", "content": NOTEBOOK}),
    ("GET", "/api/skylab/shared/" + SHARE + r"/files(/[\s\S]*)?"): ("item", ["{share}", ""]),
    ("POST", "/api/skylab/shared/" + SHARE + "/copy"): ("item", ["{share}"]),
    # The examples gallery is the same for everyone; copying one writes into the
    # caller's own Drive (test_course.py checks that B's copy stays B's).
    ("GET", "/api/skylab/examples/?"): ("global",),
    ("POST", "/api/skylab/examples/([A-Za-z0-9_-]{1,64})"): ("create",),
    # Terminals (Jupyter's API): B's terminal is not A's to see, use or end, nor B's runtime to open one in.
    ("GET", "/api/terminals/?"): ("list",),
    ("POST", "/api/terminals/?"): ("attach", [], {"kernel_id": "{kernel}"}),
    ("GET", TERMINAL): ("item", ["{terminal}"]),
    ("DELETE", TERMINAL): ("item", ["{terminal}"]),
    ("WS", "/terminals/websocket/([A-Za-z0-9_.-]{1,64})/?"): ("ws", ["{terminal}"]),
    # Usage and administration (issue 16): the caller's own use; the rest admins only.
    ("GET", "/(usage|admin)/?"): ("public",),
    ("GET", "/api/skylab/usage/?"): ("list",),
    ("GET", "/api/skylab/admin/runtimes/?"): ("admin",),
    ("DELETE", "/api/skylab/admin/runtimes/([0-9a-fA-F-]{1,64})/?"): ("admin", ["{kernel}"]),
    ("GET", "/api/skylab/admin/usage/?"): ("admin",),
    ("GET", "/api/skylab/admin/audit/?"): ("admin",),
    # Co-editing: A's path names A's own notebook (there is none: 4404); B's
    # share id is not A's (4404).
    ("WS", r"/api/skylab/collab/([\s\S]+)"): ("ws", ["{nb}"]),
    ("WS", "/api/skylab/shared/" + SHARE + r"/collab(/[\s\S]*)?"): ("ws", ["{share}", ""]),
    # Secrets: names are per user; A's requests name A's own (absent) secret.
    ("GET", "/api/skylab/secrets/?"): ("list",),
    ("PUT", "/api/skylab/secrets/([A-Za-z_][A-Za-z0-9_]{0,127})/?"): ("create",),
    ("DELETE", "/api/skylab/secrets/([A-Za-z_][A-Za-z0-9_]{0,127})/?"): ("item", ["{secret}"]),
    ("PUT", "/api/skylab/secrets/([A-Za-z_][A-Za-z0-9_]{0,127})/grants/?"): ("item", ["{secret}"], {"path": "{nb}"}),
    ("DELETE", "/api/skylab/secrets/([A-Za-z_][A-Za-z0-9_]{0,127})/grants/?"): ("item", ["{secret}"], {"path": "{nb}"}),
}


def fill_pattern(pattern, values):
    """The concrete path for a route pattern: capture groups replaced, in
    order, by `values`; optional slashes dropped; escapes resolved."""
    out, i, used = "", 0, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "(":
            depth, j = 1, i + 1
            while depth:
                if pattern[j] == "\\":
                    j += 2
                    continue
                depth += {"(": 1, ")": -1}.get(pattern[j], 0)
                j += 1
            if j < len(pattern) and pattern[j] == "?":
                j += 1
            out += values[used]
            used += 1
            i = j
        elif c == "/" and pattern[i + 1:i + 2] == "?":
            i += 2
        elif c == "\\":
            out += pattern[i + 1]
            i += 2
        else:
            assert c not in "[]{}*+?|^$", "cannot fill pattern %r" % pattern
            out += c
            i += 1
    assert used == len(values), (pattern, values)
    return out


def subst(obj, things):
    if isinstance(obj, str):
        return obj.format(**things)
    if isinstance(obj, dict):
        return {k: subst(v, things) for k, v in obj.items()}
    if isinstance(obj, list):
        return [subst(v, things) for v in obj]
    return obj


@pytest.fixture(scope="module")
def two_users(server):
    """User B with a kernel, a token, and (when the Drive is served) a
    notebook with a checkpoint and revision, a folder and a session; user A
    signed in with a cookie and holding a token."""
    a, b = uname("a"), uname("b")
    add_user(server, a, "password-of-a")
    add_user(server, b, "password-of-b")
    b_tok = new_token(server, b)
    bs = token_session(b_tok)
    things = {"user": b, "nb": "b-secret-%s.ipynb" % secrets.token_hex(3), "dir": "b-dir-%s" % secrets.token_hex(3)}
    r = bs.post(server.url("/api/kernels"), json={}, timeout=60)
    assert r.status_code == 201, r.text
    things["kernel"] = r.json()["id"]
    r = bs.post(server.url("/api/skylab/tokens"), json={"name": "b-private"}, timeout=10)
    assert r.status_code == 201, r.text
    things["token"] = r.json()["id"]
    drive = has_route(server, "GET", CONTENTS)
    if drive:
        r = bs.put(server.url("/api/contents/" + things["nb"]),
                   json={"type": "notebook", "format": "json", "content": NOTEBOOK}, timeout=30)
        assert r.status_code in (200, 201), r.text
        r = bs.put(server.url("/api/contents/" + things["dir"]), json={"type": "directory"}, timeout=30)
        assert r.status_code in (200, 201), r.text
        r = bs.post(server.url("/api/contents/%s/checkpoints" % things["nb"]), timeout=30)
        assert r.status_code == 201, r.text
        things["checkpoint"] = str(r.json()["id"])
        r = bs.get(server.url("/api/skylab/revisions"), params={"path": things["nb"]}, timeout=30)
        assert r.status_code == 200, r.text
        things["revision"] = str(r.json()["revisions"][0]["id"])
        if has_route(server, "POST", "/api/skylab/shares/?"):
            c = uname("c")
            add_user(server, c, "password-of-c")
            r = bs.post(server.url("/api/skylab/shares"), json={"path": things["nb"], "user": c, "role": "editor"},
                        timeout=30)
            assert r.status_code == 201, r.text
            things["share"] = r.json()["id"]
        if has_route(server, "POST", "/api/skylab/jobs/?"):
            r = bs.post(server.url("/api/skylab/jobs"), json={"path": things["nb"]}, timeout=30)
            assert r.status_code == 201, r.text
            things["job"] = r.json()["id"]
    if has_route(server, "POST", "/api/sessions/?"):
        r = bs.post(server.url("/api/sessions"), json={"path": things.get("nb", "x.ipynb"), "type": "notebook",
                                                       "kernel": {"id": things["kernel"]}}, timeout=60)
        assert r.status_code == 201, r.text
        things["session"] = r.json()["id"]
    if has_route(server, "GET", "/api/skylab/secrets/?"):
        things["secret"] = "B_SECRET_" + secrets.token_hex(4)
        r = bs.put(server.url("/api/skylab/secrets/" + things["secret"]), json={"value": "b-value"}, timeout=30)
        assert r.status_code in (200, 201, 204), r.text
    things["terminal"] = "1"  # a name A's requests must not reach, also where terminals are not served
    if has_route(server, "POST", "/api/terminals/?"):
        r = bs.post(server.url("/api/terminals"), json={"kernel_id": things["kernel"]}, timeout=60)
        if r.status_code == 200:
            things["terminal"] = r.json()["name"]
            things["terminal_open"] = True
    A = {"name": a, "browser": Browser(server, a, "password-of-a"), "token": new_token(server, a)}
    yield A, things, bs
    bs.delete(server.url("/api/kernels/" + things["kernel"]), timeout=30)


def test_isolation_route_walk(server, two_users):
    A, things, bs = two_users
    routes = server.get("/api/skylab/routes").json()
    assert len(routes) >= 20
    secrets_of_b = [v for k, v in things.items() if k in ("kernel", "token", "session", "nb", "dir", "share", "job", "secret")]
    a_browser = A["browser"]
    a_token = token_session(A["token"])
    unknown, failures, checked = [], [], 0

    def as_a(method, path, body, query, via):
        kw = {"timeout": 60, "params": query}
        if body is not None:
            kw["json"] = body
        if via == "cookie":
            return a_browser.request(method, path, **kw)
        return a_token.request(method, server.url(path), **kw)

    for route in routes:
        key = (route["method"], route["pattern"])
        rule = RULES.get(key)
        if rule is None:
            unknown.append(key)
            continue
        kind = rule[0]
        if kind == "public":
            if not route["public"]:
                failures.append((key, "marked public in the test but the server authenticates it"))
            continue
        if route["public"]:
            failures.append((key, "served without authentication"))
            continue
        if kind == "create":
            continue
        try:
            values = [subst(v, things) for v in (rule[1] if len(rule) > 1 else [])]
            body = subst(rule[2], things) if len(rule) > 2 and rule[2] is not None else (
                {} if route["method"] in ("POST", "PUT", "PATCH") else None)
            query = subst(rule[3], things) if len(rule) > 3 else None
        except KeyError as e:
            failures.append((key, "the fixture made no %s of B's to try" % e))
            continue
        path = fill_pattern(route["pattern"], values)
        for via in ("token", "cookie"):
            checked += 1
            if kind == "ws" and not route["pattern"].startswith(KID):
                url = server.ws_base + path + ("?token=" + A["token"] if via == "token" else "")
                st = ws_status(lambda: websocket.create_connection(
                    url, cookie=a_browser.cookie_header() if via == "cookie" else None, timeout=10))
                if st != 404:
                    failures.append((key, via, path, st))
                continue
            if kind == "ws":
                if via == "token":
                    st = ws_status(lambda: websocket.create_connection(
                        ws_url(server, values[0], A["token"]), timeout=10))
                else:
                    st = ws_status(lambda: websocket.create_connection(
                        ws_url(server, values[0]), cookie=a_browser.cookie_header(), timeout=10))
                if st != 404:
                    failures.append((key, via, path, st))
                continue
            r = as_a(route["method"], path, body, query, via)
            if kind == "empty":
                # Nothing of B's: 404, or an empty listing (that may echo the path asked for).
                if r.status_code == 404 or (r.status_code == 200 and not any(
                        isinstance(v, list) and v for v in (r.json().values() if isinstance(r.json(), dict)
                                                        else [r.json()]))):
                    continue
                failures.append((key, via, path, r.status_code, r.text[:200]))
            elif kind in ("global", "list"):
                ok = r.status_code == 200 or (kind == "global" and r.status_code == 404)
                if not ok or any(s in r.text for s in secrets_of_b):
                    failures.append((key, via, path, r.status_code, r.text[:200]))
            elif kind == "admin":
                if r.status_code != 403:
                    failures.append((key, via, path, r.status_code, r.text[:200]))
            elif kind in ("item", "attach"):
                if r.status_code != 404:
                    failures.append((key, via, path, r.status_code, r.text[:200]))
            else:
                failures.append((key, "unknown rule kind %r" % kind))

    assert not unknown, ("routes without an isolation rule in test_accounts.RULES "
                         "(decide how user A sees user B's things through them): %r" % unknown)
    assert not failures, failures
    assert checked >= 20

    # B's things are untouched by everything A tried.
    r = bs.get(server.url("/api/kernels/" + things["kernel"]), timeout=10)
    assert r.status_code == 200 and r.json()["execution_state"] != "dead", r.text
    assert things["token"] in json.dumps(bs.get(server.url("/api/skylab/tokens"), timeout=10).json())
    if "nb" in things and has_route(server, "GET", CONTENTS):
        r = bs.get(server.url("/api/contents/" + things["nb"]), timeout=10)
        assert r.status_code == 200 and "B private" in r.text
        r = bs.get(server.url("/api/contents/%s/checkpoints" % things["nb"]), timeout=10)
        assert things["checkpoint"] in r.text
    if "session" in things:
        assert bs.get(server.url("/api/sessions/" + things["session"]), timeout=10).status_code == 200
    if "secret" in things:
        assert things["secret"] in bs.get(server.url("/api/skylab/secrets"), timeout=10).text
    if "share" in things:
        assert things["share"] in bs.get(server.url("/api/skylab/shares"), timeout=10).text
    if "job" in things:
        assert bs.get(server.url("/api/skylab/jobs/" + things["job"]), timeout=10).status_code == 200
    if things.get("terminal_open"):
        assert bs.get(server.url("/api/terminals/" + things["terminal"]), timeout=10).status_code == 200
    # A's own listings never show B's things, and B sees nothing of A's.
    kid_a = a_token.post(server.url("/api/kernels"), json={}, timeout=60).json()["id"]
    try:
        assert kid_a not in bs.get(server.url("/api/kernels"), timeout=10).text
        assert bs.get(server.url("/api/kernels/" + kid_a), timeout=10).status_code == 404
        assert A["name"] not in bs.get(server.url("/api/me"), timeout=10).text
    finally:
        a_token.delete(server.url("/api/kernels/" + kid_a), timeout=30)


def test_fill_pattern_helper():
    assert fill_pattern(KID + "/channels/?", ["abc"]) == "/api/kernels/abc/channels"
    assert fill_pattern(CONTENTS + "/checkpoints/([A-Za-z0-9_-]+)", ["/x.ipynb", "7"]) == \
        "/api/contents/x.ipynb/checkpoints/7"
    assert fill_pattern("/api/?", []) == "/api"
