"""Upgrades (issue 16): this binary opens data directories written by earlier
releases (tests/fixtures/datadir-*.tar.gz, made by tests/fixtures/make_datadir.py
with that release's binary) and every user, password, token, file, revision
and share is still there. Older schema versions than the fixture's are made
from it by undoing each recorded migration, so every forward path runs; a
database from a newer Skylab is refused, not damaged."""

import glob
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess

import pytest
import requests

from conftest import REPO, Server, _stop_server, needs_root, skylab_bin

pytestmark = [pytest.mark.skylab_only, needs_root]  # item ids are trusted.* attributes

FIXTURES = sorted(glob.glob(str(REPO / "tests" / "fixtures" / "datadir-*.tar.gz")))


def unpack(fixture, dest):
    os.makedirs(dest)
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "-xzf", fixture, "-C", dest], check=True)
    with open(fixture[:-len(".tar.gz")] + ".json") as f:
        return json.load(f)


def downgrade(data, step):
    """Undo the recorded schema migrations down to the stores' first version
    (what releases before the fixture's wrote)."""
    with sqlite3.connect(os.path.join(data, "drive.db")) as c:
        if step >= 1:  # drive schema 2 -> 1: revisions had no author
            c.execute("ALTER TABLE revisions DROP COLUMN author")
            c.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    with sqlite3.connect(os.path.join(data, "skylab.db")) as c:
        if step >= 1:  # accounts 2 -> 1: no e-mail address; shares 2 -> 1: shares named paths, not items
            c.execute("ALTER TABLE users DROP COLUMN email")
            c.execute("UPDATE auth_schema SET version=1 WHERE component='auth'")
            c.execute("ALTER TABLE auth_shares DROP COLUMN item")
            c.execute("UPDATE auth_schema SET version=1 WHERE component='shares'")
    return data


def check_everything_is_there(srv, data, expect):
    # Accounts: list, admin and disabled flags, passwords, tokens.
    listed = json.loads(subprocess.run([skylab_bin(), "user", "list", "--json", "--data-dir", data],
                                       capture_output=True, text=True, check=True).stdout)
    rows = listed if isinstance(listed, list) else listed.get("users", [])
    by_name = {u["name"] if "name" in u else u["username"]: u for u in rows}
    assert set(expect["users"]) <= set(by_name), by_name
    for name in expect["admins"]:
        assert by_name[name].get("admin") is True, by_name[name]
    for name in expect["disabled"]:
        assert by_name[name].get("disabled") is True, by_name[name]
    sessions = {}
    for name, token in expect["tokens"].items():
        s = requests.Session()
        s.headers["Authorization"] = "token " + token
        assert s.get(srv.url("/api/contents"), timeout=30).status_code == 200, name
        sessions[name] = s
    s = requests.Session()
    page = s.get(srv.url("/login"), timeout=10)
    xsrf = page.text.split('name="_xsrf" value="')[1].split('"')[0]
    r = s.post(srv.url("/login"), data={"_xsrf": xsrf, "username": "student", "password": expect["users"]["student"],
                                        "next": "/"}, allow_redirects=False, timeout=10)
    assert r.status_code in (302, 303) and "login" not in r.headers.get("Location", ""), r.text
    # Files, byte for byte, through the API; revisions.
    for key, digest in expect["files"].items():
        user, path = key.split("/", 1)
        m = sessions[user].get(srv.url("/api/files/" + path), timeout=30)
        if m.status_code == 404:  # the raw-file route is /files/
            m = sessions[user].get(srv.url("/files/" + path), timeout=30)
        assert m.status_code == 200, (key, m.status_code)
        assert hashlib.sha256(m.content).hexdigest() == digest, key
    for key, count in expect["revisions"].items():
        user, path = key.split("/", 1)
        r = sessions[user].get(srv.url("/api/skylab/revisions"), params={"path": path}, timeout=30)
        # The fixture ages: past an hour the revision policy keeps the newest
        # of each hour (drive/revision_policy.hpp), so fewer may remain, never none.
        assert r.status_code == 200 and 1 <= len(r.json()["revisions"]) <= count, (key, r.text)
    # Shares: the student still sees and opens each; the link still works.
    shared = sessions["student"].get(srv.url("/api/skylab/shared"), timeout=30).json()
    ids = {s["id"] for s in shared}
    for share in expect["shares"]:
        if share["link"]:
            assert sessions["student"].get(srv.url(share["link"]), timeout=30).status_code == 200
        else:
            assert share["id"] in ids, (share, shared)
            r = sessions["student"].get(srv.url("/api/skylab/shared/%s/contents" % share["id"]), timeout=30)
            assert r.status_code == 200, (share, r.text)


@pytest.mark.skipif(not FIXTURES, reason="no data-directory fixtures")
@pytest.mark.parametrize("fixture", FIXTURES, ids=[os.path.basename(f) for f in FIXTURES])
@pytest.mark.parametrize("step", [0, 1], ids=["as-released", "first-schemas"])
def test_a_data_directory_of_an_earlier_release_opens_with_everything_in_it(tmp_path, fixture, step):
    data = str(tmp_path / "data")
    expect = unpack(fixture, data)
    downgrade(data, step)
    srv = Server(extra_args=("--data-dir", data))
    try:
        check_everything_is_there(srv, data, expect)
    finally:
        _stop_server(srv)
    # The stores recorded their current versions.
    with sqlite3.connect(os.path.join(data, "drive.db")) as c:
        assert c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "2"
        assert "author" in [r[1] for r in c.execute("PRAGMA table_info(revisions)")]
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with sqlite3.connect(os.path.join(data, "skylab.db")) as c:
        versions = dict(c.execute("SELECT component, version FROM auth_schema"))
        assert versions.get("auth", 0) >= 2 and versions.get("shares", 0) >= 2, versions
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # And a second start on the migrated directory changes nothing.
    srv = Server(extra_args=("--data-dir", data))
    try:
        check_everything_is_there(srv, data, expect)
    finally:
        _stop_server(srv)


@pytest.mark.skipif(not FIXTURES, reason="no data-directory fixtures")
def test_a_database_from_a_newer_skylab_is_refused_not_damaged(tmp_path):
    data = str(tmp_path / "data")
    unpack(FIXTURES[-1], data)
    with sqlite3.connect(os.path.join(data, "drive.db")) as c:
        c.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    before = {n: open(os.path.join(data, n), "rb").read() for n in ("drive.db", "skylab.db")}
    with pytest.raises(RuntimeError) as e:
        Server(extra_args=("--data-dir", data))
    assert "newer Skylab" in str(e.value)
    with sqlite3.connect(os.path.join(data, "drive.db")) as c:
        assert c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "99"
        assert c.execute("SELECT count(*) FROM revisions").fetchone()[0] > 0
    assert open(os.path.join(data, "skylab.db"), "rb").read() == before["skylab.db"]
    shutil.rmtree(data, ignore_errors=True)
