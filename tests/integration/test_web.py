"""The browser app's server side: who gets the page, its CSP, static assets
(cache headers, traversal) and the sandboxed output frame. The app itself is
tested in a real browser (tests/browser)."""
import http.client
import os
import re
import tempfile

import pytest
import requests

from conftest import SERVER_KIND, Server, _stop_server
from test_accounts import Browser, add_user, uname

pytestmark = pytest.mark.skipif(SERVER_KIND != "skylab", reason="Skylab's own routes")


@pytest.fixture(scope="module")
def web():
    d = tempfile.mkdtemp(prefix="skylab-web-")
    os.makedirs(os.path.join(d, "static", "sub"))
    with open(os.path.join(d, "index.html"), "w") as f:
        f.write('<!doctype html><script type="module" src="/static/app-X1.js"></script>')
    with open(os.path.join(d, "frame.html"), "w") as f:
        f.write("<!doctype html><div id=out></div>")
    with open(os.path.join(d, "static", "app-X1.js"), "w") as f:
        f.write("console.log(1)")
    with open(os.path.join(d, "static", "sub", "font-A.woff2"), "wb") as f:
        f.write(b"wOF2")
    with open(os.path.join(d, "secret.txt"), "w") as f:
        f.write("not an asset")
    srv = Server(extra_args=("--web-dir", d))
    yield srv
    _stop_server(srv)


@pytest.fixture(scope="module")
def browser(web):
    name, pw = uname("w"), "a web password"
    add_user(web, name, pw)
    return Browser(web, name, pw)


@pytest.mark.parametrize("path", ["/", "/drive", "/drive/a/b", "/recent", "/shared", "/notebooks/x%20y.ipynb"])
def test_signed_out_users_go_to_login_and_back(web, path):
    r = requests.get(web.url(path), allow_redirects=False, timeout=10)
    assert r.status_code == 303
    loc = r.headers["Location"]
    assert loc.startswith("/login?next=")
    assert requests.utils.unquote(loc.split("next=", 1)[1]) == requests.utils.unquote(path)
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/", "/drive", "/notebooks/a/b.ipynb", "/shared/0123456789abcdef01234567"])
def test_signed_in_users_get_the_app_with_a_strict_csp(browser, path):
    r = browser.request("GET", path, allow_redirects=False)
    assert r.status_code == 200
    assert "/static/app-X1.js" in r.text
    assert r.headers["Cache-Control"] == "no-store"
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert re.search(r"frame-src 'self'(;| )", csp)


def test_static_assets_are_long_cached_and_typed(web):
    r = requests.get(web.url("/static/app-X1.js"), timeout=10)
    assert r.status_code == 200 and r.text == "console.log(1)"
    assert r.headers["Content-Type"].startswith("text/javascript")
    assert "immutable" in r.headers["Cache-Control"]
    r = requests.get(web.url("/static/sub/font-A.woff2"), timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"] == "font/woff2"


@pytest.mark.parametrize("path", [
    "/static/../secret.txt", "/static/%2e%2e/secret.txt", "/static/sub/../../secret.txt", "/static/.hidden",
    "/static/..", "/static/sub/", "/static/nope.js", "/static/a%00b.js", "/static/sub%2f..%2f..%2fsecret.txt",
])
def test_static_paths_cannot_leave_the_web_dir(web, path):
    # http.client sends the path as written (requests would remove dot segments).
    host, port = web.url("/").split("//", 1)[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read().decode(errors="replace")
    conn.close()
    assert r.status in (400, 404), (path, r.status)
    assert "not an asset" not in body


def test_output_frame_is_always_sandboxed(web):
    r = requests.get(web.url("/output-frame"), timeout=10)
    assert r.status_code == 200 and "<div id=out>" in r.text
    csp = r.headers["Content-Security-Policy"]
    sandbox = csp.split(";")[0]
    assert sandbox.startswith("sandbox ") and "allow-scripts" in sandbox and "allow-same-origin" not in sandbox


def test_output_origin_is_allowed_to_frame(tmp_path):
    srv = Server(extra_args=("--web-dir", str(tmp_path), "--output-origin", "https://out.example.org"))
    try:
        (tmp_path / "index.html").write_text("<!doctype html>")
        name, pw = uname("w"), "a web password"
        add_user(srv, name, pw)
        b = Browser(srv, name, pw)
        r = b.request("GET", "/")
        assert r.status_code == 200
        assert "frame-src 'self' https://out.example.org;" in r.headers["Content-Security-Policy"]
        assert b.request("GET", "/api/me").json()["skylab"]["output_origin"] == "https://out.example.org"
    finally:
        _stop_server(srv)


def test_without_a_built_app_the_page_says_so(tmp_path):
    srv = Server(extra_args=("--web-dir", str(tmp_path / "missing")))
    try:
        name, pw = uname("w"), "a web password"
        add_user(srv, name, pw)
        b = Browser(srv, name, pw)
        r = b.request("GET", "/")
        assert r.status_code == 503 and "make" in r.json()["message"]
        assert b.request("GET", "/api/me").status_code == 200
    finally:
        _stop_server(srv)
