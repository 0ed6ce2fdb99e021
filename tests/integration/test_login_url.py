"""The login URL `skylab serve` prints (issue 15), as Jupyter's token login:
opening it signs the browser in as the admin token's identity with a cookie
session, and answers with a redirect to the same page without the token
(nothing of it left in the address bar, the history or a Referer). Wrong
tokens, tokens on other paths, open redirects and cross-site requests get
nothing; the token never reaches the log."""
import re

import pytest
import requests

from conftest import Server, _stop_server
from test_accounts import uname

pytestmark = pytest.mark.skylab_only


@pytest.fixture(scope="module")
def fresh():
    """A server started as `make run` starts it: no SKYLAB_ADMIN_TOKEN, so it
    generates a token and prints the login URL."""
    srv = Server(env_extra={"SKYLAB_ADMIN_TOKEN": ""})
    m = re.search(r"Log in with this URL: (http://\S+)\?token=([0-9a-f]+)", srv.log_text(tail=10 ** 6))
    assert m, srv.log_text()
    srv.login_base, srv.token = m.group(1), m.group(2)
    srv.http.headers["Authorization"] = "token " + srv.token
    yield srv
    _stop_server(srv)


def test_login_url_signs_in_and_drops_the_token(fresh):
    s = requests.Session()
    r = s.get(fresh.login_base + "?token=" + fresh.token, allow_redirects=False, timeout=10)
    assert r.status_code == 303, r.text[:300]
    assert r.headers["Location"] == "/" and fresh.token not in r.headers["Location"]
    assert r.headers["Referrer-Policy"] == "no-referrer" and r.headers["Cache-Control"] == "no-store"
    cookies = r.headers.get("Set-Cookie", "")
    assert "skylab_session=" in cookies and "HttpOnly" in cookies and "_xsrf=" in cookies
    assert fresh.token not in cookies  # the cookie is a session of its own, not the token
    # Following it: the app's page (the Drive), signed in by the cookie alone.
    r = s.get(fresh.url("/"), allow_redirects=False, timeout=10)
    assert r.status_code == 200 and "<html" in r.text.lower(), (r.status_code, r.headers)
    assert r.headers["Referrer-Policy"] == "same-origin"
    me = s.get(fresh.url("/api/me"), timeout=10).json()
    assert me["identity"]["username"] == "admin" and me["skylab"]["admin"] and me["skylab"]["auth"] == "session"
    # The session is an administrator's: it may create the first account
    # (with the XSRF token the app echoes from the cookie).
    name = uname("first")
    r = s.post(fresh.url("/api/skylab/users"), json={"username": name, "password": "first-password", "admin": True},
               headers={"X-XSRFToken": s.cookies["_xsrf"]}, timeout=30)
    assert r.status_code == 201, r.text
    # ... but not without it (CSRF), and not from another site.
    r = s.post(fresh.url("/api/skylab/users"), json={"username": uname("x"), "password": "first-password"}, timeout=30)
    assert r.status_code == 403
    r = s.post(fresh.url("/api/skylab/users"), json={"username": uname("x"), "password": "first-password"},
               headers={"X-XSRFToken": s.cookies["_xsrf"], "Origin": "http://evil.example"}, timeout=30)
    assert r.status_code == 403
    # The new account signs in with the ordinary form.
    f = requests.Session()
    page = f.get(fresh.url("/login"), timeout=10).text
    xsrf = re.search(r'name="_xsrf" value="([0-9a-f]+)"', page).group(1)
    r = f.post(fresh.url("/login"), data={"_xsrf": xsrf, "username": name, "password": "first-password", "next": "/"},
               allow_redirects=False, timeout=30)
    assert r.status_code == 303 and "skylab_session=" in r.headers.get("Set-Cookie", "")
    # Sign-out ends the token's session.
    admin_cookie = s.cookies["skylab_session"]
    page = s.get(fresh.url("/logout"), timeout=10).text
    xsrf = re.search(r'name="_xsrf" value="([0-9a-f]+)"', page).group(1)
    assert s.post(fresh.url("/logout"), data={"_xsrf": xsrf}, allow_redirects=False, timeout=10).status_code == 303
    assert requests.get(fresh.url("/api/me"), cookies={"skylab_session": admin_cookie}, timeout=10).status_code == 403


def test_login_url_to_a_notebook_lands_there(fresh):
    s = requests.Session()
    r = s.get(fresh.url("/notebooks/course/a b.ipynb?token=" + fresh.token + "&x=1"), allow_redirects=False,
              timeout=10)
    assert r.status_code == 303 and r.headers["Location"] == "/notebooks/course/a%20b.ipynb"
    # Header injection and odd characters in the path stay encoded in Location.
    r = requests.get(fresh.url("/notebooks/x%0d%0aSet-Cookie:%20evil=1/%C3%A9.ipynb?token=" + fresh.token),
                     allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["Location"] == "/notebooks/x%0D%0ASet-Cookie%3A%20evil%3D1/%C3%A9.ipynb"
    assert "evil" not in r.headers.get("Set-Cookie", "")
    # Jupyter's /login?token=...&next=... too.
    s2 = requests.Session()
    r = s2.get(fresh.url("/login"), params={"token": fresh.token, "next": "/drive/course"}, allow_redirects=False,
               timeout=10)
    assert r.status_code == 303 and r.headers["Location"] == "/drive/course"
    assert s2.get(fresh.url("/api/me"), timeout=10).status_code == 200


@pytest.mark.parametrize("next_", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "/\t/evil.example",
                                   "/%2fevil.example"])
def test_login_url_never_redirects_off_site(fresh, next_):
    r = requests.get(fresh.url("/login"), params={"token": fresh.token, "next": next_}, allow_redirects=False,
                     timeout=10)
    assert r.status_code == 303 and r.headers["Location"] == "/", r.headers["Location"]


def test_wrong_tokens_sign_nobody_in(fresh):
    for bad in ("", "0" * 48, fresh.token[:-1], fresh.token + "0", "x" * 5000):
        s = requests.Session()
        r = s.get(fresh.url("/"), params={"token": bad}, allow_redirects=False, timeout=10)
        assert r.status_code == 303, r.status_code
        assert r.headers["Location"] == "/login?token_refused=1&next=/"
        assert "skylab_session" not in r.headers.get("Set-Cookie", "") and r.headers["Referrer-Policy"] == "no-referrer"
        r = s.get(fresh.url(r.headers["Location"]), timeout=10)
        assert r.status_code == 200 and "That login URL is not valid" in r.text
        assert s.get(fresh.url("/api/me"), timeout=10).status_code == 403
    # An API token of a user is no login URL.
    r = requests.get(fresh.url("/drive"), params={"token": "skylab_" + "a" * 48}, allow_redirects=False, timeout=10)
    assert r.headers["Location"].startswith("/login?token_refused=1")


def test_token_on_other_paths_sets_no_session(fresh):
    # Pages of the app do turn it into a session ...
    r = requests.get(fresh.url("/drive"), params={"token": fresh.token}, allow_redirects=False, timeout=10)
    assert "skylab_session=" in r.headers.get("Set-Cookie", "")
    # ... the API accepts ?token= (as Jupyter's) but never turns it into a cookie, nor do other routes.
    for path in ("/api/contents", "/api/me", "/static/none.js", "/output-frame", "/signup"):
        r = requests.get(fresh.url(path), params={"token": fresh.token}, allow_redirects=False, timeout=10)
        assert "skylab_session" not in r.headers.get("Set-Cookie", ""), path


def test_sign_in_pages_look_like_the_app(fresh):
    page = requests.get(fresh.url("/login"), timeout=10).text
    assert 'class="card"' in page and "logo-mark" in page and "--accent:#1a73e8" in page


def test_the_token_is_never_logged(fresh):
    text = fresh.log_text(tail=10 ** 7)
    # Once, in the line that prints the login URL; nowhere else (wrong ones neither).
    assert text.count(fresh.token) == 1, text
    assert "0" * 48 not in text and fresh.token[:-1] + "\n" not in text
    assert "signed in as 'admin' with the login URL" in text
