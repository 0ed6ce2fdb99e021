"""Optional self sign-up (issue 4): off by default; open, by invitation code
or limited to e-mail domains through `[accounts]` in the config file."""

import re

import pytest
import requests

from conftest import _stop_server, server_with_config
from test_accounts import cli, uname

pytestmark = pytest.mark.skylab_only

CODE = "join-skylab-2026"


@pytest.fixture(scope="module")
def gated():
    """Sign-up needs the invitation code and an address at example.edu."""
    srv = server_with_config('[accounts]\nsignup = true\ninvite_codes = ["%s"]\nemail_domains = ["Example.EDU"]\n' % CODE)
    yield srv
    _stop_server(srv)


def signup_form(server, session):
    r = session.get(server.url("/signup"), timeout=10)
    assert r.status_code == 200, r.text[:300]
    return re.search(r'name="_xsrf" value="([0-9a-f]+)"', r.text).group(1), r.text


def post_signup(server, session, **fields):
    xsrf, _ = signup_form(server, session)
    data = {"_xsrf": xsrf, "password": "a-good-password", "password2": "a-good-password"}
    data.update(fields)
    return session.post(server.url("/signup"), data=data, allow_redirects=False, timeout=30)


def users(server):
    r = server.get("/api/skylab/users")
    assert r.status_code == 200
    return {u["username"]: u for u in r.json()}


def test_signup_is_off_by_default(server):
    assert server.get("/signup").status_code == 404
    r = requests.post(server.url("/signup"), data={"username": "mallory", "password": "a-good-password"},
                      timeout=10)
    assert r.status_code == 404
    assert "Create an account" not in requests.get(server.url("/login"), timeout=10).text
    assert "mallory" not in users(server)


def test_signup_with_code_and_domain_signs_in(gated):
    s = requests.Session()
    assert "Create an account" in s.get(gated.url("/login"), timeout=10).text
    _, page = signup_form(gated, s)
    assert 'name="invite"' in page and 'name="email"' in page and "example.edu" in page
    name = uname("s")
    r = post_signup(gated, s, username=name, email="Ada@Example.edu", invite=CODE, next="/api/me")
    assert r.status_code == 303, r.text[:500]
    assert r.headers["Location"] == "/api/me"
    me = s.get(gated.url("/api/me"), timeout=10).json()
    assert me["identity"]["username"] == name and me["skylab"]["admin"] is False
    u = users(gated)[name]
    assert u["email"] == "Ada@Example.edu" and u["admin"] is False
    # The account also signs in with its password afterwards.
    listed = cli(gated, "list").stdout.decode()
    assert name in listed


@pytest.mark.parametrize("fields,status,message", [
    ({"invite": "wrong-code-123"}, 403, "invitation code is not valid"),
    ({"invite": ""}, 403, "invitation code is not valid"),
    ({"email": "ada@evil.example"}, 400, "limited to e-mail addresses"),
    ({"email": "ada@example.edu.evil.example"}, 400, "limited to e-mail addresses"),
    ({"email": "not-an-address"}, 400, "valid e-mail address"),
    ({"email": "a@b@example.edu"}, 400, "valid e-mail address"),
    ({"username": "Bad Name"}, 400, "User names are"),
    ({"username": "x" * (10 << 20)}, 413, None),
    ({"password": "short", "password2": "short"}, 400, "at least 8"),
    ({"password2": "something-else"}, 400, "passwords differ"),
    ({"role": "admin"}, 400, "Unknown field"),
])
def test_bad_signups_store_nothing(gated, fields, status, message):
    name = uname("b")
    data = {"username": name, "email": "b@example.edu", "invite": CODE}
    data.update(fields)
    r = post_signup(gated, requests.Session(), **data)
    assert r.status_code == status, r.text[:300]
    if message:
        assert message in r.text
    assert "skylab_session" not in r.cookies
    assert name not in users(gated)


def test_signup_needs_the_form_xsrf_and_a_free_name(gated):
    name = uname("x")
    r = requests.post(gated.url("/signup"), data={"username": name, "email": "x@example.edu", "invite": CODE,
                                                  "password": "a-good-password", "password2": "a-good-password"},
                      timeout=10)
    assert r.status_code == 403 and "expired" in r.text
    r = requests.post(gated.url("/signup"), data="username=" + name, timeout=10,
                      headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert name not in users(gated)
    # A taken name is refused and the existing account is untouched.
    first = post_signup(gated, requests.Session(), username=name, email="x@example.edu", invite=CODE)
    assert first.status_code == 303
    created = users(gated)[name]["created"]
    again = post_signup(gated, requests.Session(), username=name, email="y@example.edu", invite=CODE,
                        password="other-password", password2="other-password")
    assert again.status_code == 409 and "taken" in again.text
    assert users(gated)[name]["email"] == "x@example.edu" and users(gated)[name]["created"] == created


def test_open_redirect_after_signup_refused(gated):
    r = post_signup(gated, requests.Session(), username=uname("r"), email="r@example.edu", invite=CODE,
                    next="//evil.example/")
    assert r.status_code == 303 and r.headers["Location"] == "/"


def test_config_errors_name_the_key(tmp_path):
    from conftest import skylab_bin
    import subprocess
    for text, key in (('[accounts]\nsignup = "yes"\n', "accounts.signup"),
                      ('[accounts]\ninvite_codes = ["short"]\n', "accounts.invite_codes"),
                      ('[accounts]\nemail_domains = ["no_dots"]\n', "accounts.email_domains"),
                      ('[accounts]\nsign_up = true\n', "accounts.sign_up")):
        cfg = tmp_path / "c.toml"
        cfg.write_text(text)
        r = subprocess.run([skylab_bin(), "serve", "--port", "0", "--data-dir", str(tmp_path / "d"),
                            "--config", str(cfg)], capture_output=True, timeout=30)
        assert r.returncode != 0 and key in r.stderr.decode(), (text, r.stderr.decode())
