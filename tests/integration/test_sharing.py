"""Sharing (issue 4): notebooks and folders shared with a user as viewer or
editor, or by link; revoke; "Shared with me"; Save a copy."""

import json
import secrets

import pytest
import requests

from test_accounts import NOTEBOOK, Browser, add_user, new_token, token_session, uname

pytestmark = pytest.mark.skylab_only


def nb_with(text):
    nb = json.loads(json.dumps(NOTEBOOK))
    nb["cells"][0]["source"] = text
    return nb


class User:
    def __init__(self, server, prefix):
        self.server = server
        self.name = uname(prefix)
        add_user(server, self.name, "password-" + self.name)
        self.token = new_token(server, self.name)
        self.s = token_session(self.token)

    def req(self, method, path, **kw):
        kw.setdefault("timeout", 60)
        return self.s.request(method, self.server.url(path), **kw)

    def put_notebook(self, path, text):
        r = self.req("PUT", "/api/contents/" + path,
                     json={"type": "notebook", "format": "json", "content": nb_with(text)})
        assert r.status_code in (200, 201), r.text
        return r

    def share(self, path, **kw):
        return self.req("POST", "/api/skylab/shares", json=dict(path=path, **kw))


@pytest.fixture(scope="module")
def people(server):
    if not any(r["pattern"].startswith("/api/skylab/shared")
               for r in server.get("/api/skylab/routes").json()):
        pytest.skip("this server has no Drive")
    return {k: User(server, k[0]) for k in ("owner", "viewer", "editor", "stranger")}


def source_of(model):
    return "".join(model["content"]["cells"][0]["source"])


def test_viewer_reads_cannot_save_or_run_and_can_save_a_copy(server, people):
    o, v = people["owner"], people["viewer"]
    path = "view-%s.ipynb" % secrets.token_hex(3)
    o.put_notebook(path, "print('shared for viewing')")
    r = o.share(path, user=v.name, role="viewer")
    assert r.status_code == 201, r.text
    share = r.json()
    assert share["role"] == "viewer" and share["user"] == v.name and share["link"] is None

    listed = v.req("GET", "/api/skylab/shared").json()
    assert [s["id"] for s in listed if s["path"] == path] == [share["id"]]
    assert listed[0]["owner"] == o.name

    r = v.req("GET", "/api/skylab/shared/%s/contents" % share["id"])
    assert r.status_code == 200, r.text
    assert source_of(r.json()) == "print('shared for viewing')" and r.json()["writable"] is False
    assert "text/html" not in r.headers["Content-Type"]

    # No saving into the owner's file.
    r = v.req("PUT", "/api/skylab/shared/%s/contents" % share["id"],
              json={"type": "notebook", "format": "json", "content": nb_with("defaced")})
    assert r.status_code == 403, r.text
    assert source_of(o.req("GET", "/api/contents/" + path).json()) == "print('shared for viewing')"
    # No executing in the owner's runtime: their kernels and sessions are not the viewer's.
    kid = o.req("POST", "/api/kernels", json={}).json()["id"]
    try:
        assert v.req("GET", "/api/kernels/" + kid).status_code == 404
        assert v.req("POST", "/api/kernels/%s/interrupt" % kid).status_code == 404
        assert kid not in v.req("GET", "/api/kernels").text
    finally:
        o.req("DELETE", "/api/kernels/" + kid)

    # Save a copy into the viewer's own Drive; it is theirs to edit and run.
    r = v.req("POST", "/api/skylab/shared/%s/copy" % share["id"], json={})
    assert r.status_code == 201, r.text
    copy = r.json()["path"]
    assert copy == "Copy of " + path
    mine = v.req("GET", "/api/contents/" + copy)
    assert mine.status_code == 200 and source_of(mine.json()) == "print('shared for viewing')"
    assert mine.json()["writable"] is True
    v.put_notebook(copy, "print('my own version')")
    assert source_of(o.req("GET", "/api/contents/" + path).json()) == "print('shared for viewing')"
    r = v.req("POST", "/api/skylab/shared/%s/copy" % share["id"], json={})
    assert r.status_code == 201 and r.json()["path"] == "Copy of " + path.replace(".ipynb", " (2).ipynb")
    assert v.req("POST", "/api/skylab/shared/%s/copy" % share["id"], json={"to": copy}).status_code == 409


def test_editor_saves_into_the_owners_file(server, people):
    o, e = people["owner"], people["editor"]
    path = "edit-%s.ipynb" % secrets.token_hex(3)
    o.put_notebook(path, "x = 1")
    share = o.share(path, user=e.name, role="editor").json()
    assert share["role"] == "editor"
    r = e.req("GET", "/api/skylab/shared/%s/contents" % share["id"])
    assert r.status_code == 200 and r.json()["writable"] is True
    r = e.req("PUT", "/api/skylab/shared/%s/contents" % share["id"],
              json={"type": "notebook", "format": "json", "content": nb_with("x = 2  # by the editor")})
    assert r.status_code == 200, r.text
    assert source_of(o.req("GET", "/api/contents/" + path).json()) == "x = 2  # by the editor"
    # The owner keeps the revision history of their file.
    revs = o.req("GET", "/api/skylab/revisions", params={"path": path}).json()["revisions"]
    assert len(revs) >= 2
    # ...and each revision says who saved it: newest the editor, oldest the owner.
    assert revs[0]["author"] == e.name, revs[0]
    assert revs[-1]["author"] == o.name, revs[-1]
    # Sharing again changes the role: now a viewer, the editor can no longer save.
    again = o.share(path, user=e.name, role="viewer").json()
    assert again["id"] == share["id"] and again["role"] == "viewer"
    r = e.req("PUT", "/api/skylab/shared/%s/contents" % share["id"],
              json={"type": "notebook", "format": "json", "content": nb_with("x = 3")})
    assert r.status_code == 403


def test_link_share_and_revoke(server, people):
    o, stranger = people["owner"], people["stranger"]
    path = "link-%s.ipynb" % secrets.token_hex(3)
    o.put_notebook(path, "print('by link')")
    assert o.share(path, link=True, role="editor").status_code == 400  # links are view-only
    link = o.share(path, link=True).json()
    assert link["user"] is None and link["role"] == "viewer" and link["link"].endswith("/contents")
    assert len(link["id"]) >= 40
    assert o.share(path, link=True).json()["id"] == link["id"]
    # Anyone signed in with the link may view, by token or by cookie...
    r = stranger.req("GET", link["link"])
    assert r.status_code == 200 and source_of(r.json()) == "print('by link')"
    b = Browser(server, stranger.name, "password-" + stranger.name)
    assert b.request("GET", link["link"]).status_code == 200
    # ...but not anonymously, not to write, and it is not "shared with" them by name.
    assert requests.get(server.url(link["link"]), timeout=10).status_code == 403
    assert stranger.req("PUT", link["link"], json={"type": "notebook", "format": "json",
                                                   "content": nb_with("defaced")}).status_code == 403
    assert link["id"] not in stranger.req("GET", "/api/skylab/shared").text
    # Only the owner may revoke; revoking takes effect at once.
    assert stranger.req("DELETE", "/api/skylab/shares/" + link["id"]).status_code == 404
    assert stranger.req("GET", link["link"]).status_code == 200
    assert o.req("DELETE", "/api/skylab/shares/" + link["id"]).status_code == 204
    assert stranger.req("GET", link["link"]).status_code == 404
    assert b.request("GET", link["link"]).status_code == 404
    assert o.req("DELETE", "/api/skylab/shares/" + link["id"]).status_code == 404


def test_revoking_a_user_share(server, people):
    o, v = people["owner"], people["viewer"]
    path = "revoke-%s.ipynb" % secrets.token_hex(3)
    o.put_notebook(path, "1")
    share = o.share(path, user=v.name).json()
    assert v.req("GET", "/api/skylab/shared/%s/contents" % share["id"]).status_code == 200
    mine = o.req("GET", "/api/skylab/shares", params={"path": path}).json()
    assert [s["id"] for s in mine] == [share["id"]]
    assert o.req("DELETE", "/api/skylab/shares/" + share["id"]).status_code == 204
    assert v.req("GET", "/api/skylab/shared/%s/contents" % share["id"]).status_code == 404
    assert v.req("POST", "/api/skylab/shared/%s/copy" % share["id"], json={}).status_code == 404
    assert share["id"] not in v.req("GET", "/api/skylab/shared").text


def test_folder_share_stays_inside_the_folder(server, people):
    o, v = people["owner"], people["viewer"]
    folder = "proj-%s" % secrets.token_hex(3)
    assert o.req("PUT", "/api/contents/" + folder, json={"type": "directory"}).status_code in (200, 201)
    o.put_notebook(folder + "/inside.ipynb", "inside")
    o.put_notebook("outside-%s.ipynb" % folder, "outside")
    share = o.share(folder, user=v.name).json()
    base = "/api/skylab/shared/%s" % share["id"]
    listing = v.req("GET", base + "/contents")
    assert listing.status_code == 200 and listing.json()["type"] == "directory"
    assert [c["name"] for c in listing.json()["content"]] == ["inside.ipynb"]
    assert all(c["writable"] is False for c in listing.json()["content"])
    assert source_of(v.req("GET", base + "/contents/inside.ipynb").json()) == "inside"
    raw = v.req("GET", base + "/files/inside.ipynb")
    assert raw.status_code == 200 and b"inside" in raw.content
    for escape in ("/../outside-%s.ipynb" % folder, "/%2e%2e/outside-" + folder + ".ipynb", "/%2e/inside.ipynb",
                   "//inside.ipynb"):
        r = v.req("GET", base + "/contents" + escape)
        assert r.status_code in (400, 404), (escape, r.status_code, r.text[:200])
        assert "outside" not in r.text or r.status_code != 200
    r = v.req("POST", base + "/copy", json={"path": "inside.ipynb", "to": "from-folder.ipynb"})
    assert r.status_code == 201, r.text
    assert v.req("POST", base + "/copy", json={}).status_code == 400  # a folder


def test_share_bad_input_stores_nothing(server, people):
    o, v = people["owner"], people["viewer"]
    path = "bad-%s.ipynb" % secrets.token_hex(3)
    o.put_notebook(path, "1")
    before = o.req("GET", "/api/skylab/shares").json()
    for body in ({"path": path, "user": v.name, "color": "red"}, {"path": path}, {"path": path, "user": v.name,
                 "link": True}, {"path": path, "user": v.name, "role": "owner"}, {"path": path, "user": 5},
                 {"path": path, "user": "nobody-" + secrets.token_hex(3)}, {"path": path, "user": o.name},
                 {"path": "", "user": v.name}, {"path": path, "user": "x" * 100000}, {"user": v.name}, []):
        r = o.req("POST", "/api/skylab/shares", json=body)
        assert r.status_code == 400, (str(body)[:80], r.status_code, r.text[:200])
    r = o.req("POST", "/api/skylab/shares", data=b'{"path": "\xff", "user": "x"}',
              headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    # Only one's own things can be shared: another user's path is "not found".
    assert v.req("POST", "/api/skylab/shares", json={"path": path, "user": o.name}).status_code == 404
    assert o.req("GET", "/api/skylab/shares").json() == before
