"""Shares follow the file, not the path (issue 12, row 8): a share names
the shared item by a stable id kept with the file (an extended attribute
only the root server can read or set), so a rename or move keeps it, a
delete ends it, and a different file later put at the old path is not
shared, whether the rename happens through the REST API or inside the
owner's runtime (which writes the Drive behind the server's back)."""

import secrets

import pytest

from conftest import needs_root, needs_sandbox
from test_sharing import User

pytestmark = pytest.mark.skylab_only


@pytest.fixture(scope="module")
def pair(server):
    return User(server, "alice"), User(server, "bob")


def put_text(user, path, text):
    r = user.req("PUT", "/api/contents/" + path,
                 json={"type": "file", "format": "text", "content": text})
    assert r.status_code in (200, 201), r.text


def read_shared(user, share_id, sub=""):
    return user.req("GET", "/api/skylab/shared/%s/contents%s" % (share_id, sub))


def shared_with(user):
    r = user.req("GET", "/api/skylab/shared")
    assert r.status_code == 200, r.text
    return {s["id"]: s for s in r.json()}


def test_rest_delete_then_rename_onto_the_old_path_does_not_leak(pair):
    a, b = pair
    d = "r8-%s" % secrets.token_hex(3)
    assert a.req("PUT", "/api/contents/" + d, json={"type": "directory"}).status_code == 201
    put_text(a, d + "/doc.txt", "meant for bob")
    put_text(a, d + "/private.txt", "alice only")
    r = a.share(d + "/doc.txt", user=b.name)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert read_shared(b, sid).json()["content"] == "meant for bob"

    assert a.req("DELETE", "/api/contents/%s/doc.txt" % d).status_code == 204
    r = a.req("PATCH", "/api/contents/%s/private.txt" % d, json={"path": d + "/doc.txt"})
    assert r.status_code == 200, r.text
    r = read_shared(b, sid)
    assert r.status_code == 404, r.text
    assert "alice only" not in r.text
    assert sid not in shared_with(b)
    assert b.req("GET", "/api/skylab/shared/%s/files" % sid).status_code == 404


def test_rest_rename_keeps_the_share_and_saves_keep_it(pair):
    a, b = pair
    name = "keep-%s.txt" % secrets.token_hex(3)
    put_text(a, name, "v1")
    sid = a.share(name, user=b.name).json()["id"]
    moved = "moved-" + name
    assert a.req("PATCH", "/api/contents/" + name, json={"path": moved}).status_code == 200
    listed = shared_with(b)
    assert listed[sid]["path"] == moved and listed[sid]["name"] == moved
    assert read_shared(b, sid).json()["content"] == "v1"
    # A save (an atomic replace on disk) is the same item: still shared.
    put_text(a, moved, "v2")
    assert read_shared(b, sid).json()["content"] == "v2"
    # Something new at the old path is not shared.
    put_text(a, name, "new file at the old path")
    assert read_shared(b, sid).json()["content"] == "v2"


def test_folder_move_keeps_shares_of_it_and_below(pair):
    a, b = pair
    d = "proj-%s" % secrets.token_hex(3)
    assert a.req("PUT", "/api/contents/" + d, json={"type": "directory"}).status_code == 201
    assert a.req("PUT", "/api/contents/%s/sub" % d, json={"type": "directory"}).status_code == 201
    put_text(a, d + "/sub/inner.txt", "inner")
    folder = a.share(d, user=b.name).json()["id"]
    inner = a.share(d + "/sub/inner.txt", user=b.name).json()["id"]
    to = "archive-" + d
    assert a.req("PATCH", "/api/contents/" + d, json={"path": to}).status_code == 200
    listed = shared_with(b)
    assert listed[folder]["path"] == to
    assert listed[inner]["path"] == to + "/sub/inner.txt"
    assert read_shared(b, folder, "/sub/inner.txt").json()["content"] == "inner"
    assert read_shared(b, inner).json()["content"] == "inner"
    # A new folder at the old name is not the shared one.
    assert a.req("PUT", "/api/contents/" + d, json={"type": "directory"}).status_code == 201
    put_text(a, d + "/secret.txt", "not shared")
    assert read_shared(b, folder, "/secret.txt").status_code == 404
    # Deleting the folder ends both shares.
    assert a.req("DELETE", "/api/contents/" + to).status_code == 204
    assert read_shared(b, folder).status_code == 404
    assert read_shared(b, inner).status_code == 404
    assert folder not in shared_with(b) and inner not in shared_with(b)


@needs_sandbox
@needs_root
def test_in_runtime_delete_then_rename_does_not_leak(server, pair):
    a, b = pair
    name = "rt-%s" % secrets.token_hex(3)
    put_text(a, name + "-doc.txt", "meant for bob")
    put_text(a, name + "-private.txt", "alice only")
    sid = a.share(name + "-doc.txt", user=b.name).json()["id"]
    assert read_shared(b, sid).json()["content"] == "meant for bob"

    r = a.req("POST", "/api/kernels", json={})
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    server.kernels.append(kid)
    c = server.connect(kid)
    c.nudge()
    # The runtime can neither read nor forge the server's id attribute.
    code = ("import os\n"
            "d = '/content/drive/'\n"
            "try:\n"
            "    os.getxattr(d + %(doc)r, 'trusted.skylab.id'); print('READ')\n"
            "except OSError as e:\n"
            "    print('noread', e.errno)\n"
            "os.remove(d + %(doc)r)\n"
            "os.rename(d + %(priv)r, d + %(doc)r)\n"
            "try:\n"
            "    os.setxattr(d + %(doc)r, 'trusted.skylab.id', b'0' * 32); print('FORGED')\n"
            "except OSError as e:\n"
            "    print('noforge', e.errno)\n"
            % {"doc": name + "-doc.txt", "priv": name + "-private.txt"})
    res = c.execute(code, timeout=60)
    assert res.status == "ok", (res.error, res.stderr)
    assert "READ" not in res.stdout and "FORGED" not in res.stdout, res.stdout
    assert a.req("GET", "/api/contents/%s-doc.txt" % name).json()["content"] == "alice only"
    r = read_shared(b, sid)
    assert r.status_code == 404, r.text
    assert "alice only" not in r.text
    assert b.req("GET", "/api/skylab/shared/%s/files" % sid).status_code == 404
    assert sid not in shared_with(b)


    # A move inside the runtime keeps the share on the file (found by its id).
    put_text(a, name + "-moving.txt", "follows the file")
    mid = a.share(name + "-moving.txt", user=b.name).json()["id"]
    res = c.execute("import os\nos.makedirs('/content/drive/%(n)s-dir', exist_ok=True)\n"
                    "os.rename('/content/drive/%(n)s-moving.txt', '/content/drive/%(n)s-dir/moved.txt')"
                    % {"n": name}, timeout=60)
    assert res.status == "ok", (res.error, res.stderr)
    r = read_shared(b, mid)
    assert r.status_code == 200 and r.json()["content"] == "follows the file", r.text
    assert shared_with(b)[mid]["path"] == name + "-dir/moved.txt"
