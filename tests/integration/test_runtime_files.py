"""A runtime's /content over HTTP (/api/skylab/runtimes/{id}/files): list,
download, upload (whole and chunked), folders, rename, delete; files land
with the runtime's uid; traversal and symlinks planted by the kernel never
reach outside /content; other users' runtimes answer 404. Real bubblewrap
runtimes and ipykernel."""
import hashlib
import os
import secrets

import pytest
import requests

import kclient
from conftest import SERVER_KIND, _stop_server, needs_root, needs_sandbox, server_with_config
from test_accounts import add_user, new_token, token_session, uname

pytestmark = [pytest.mark.skipif(SERVER_KIND != "skylab", reason="Skylab runtimes"), needs_sandbox, needs_root]


class Owner:
    """A user with a token and one runtime with a connected client."""

    def __init__(self, server, prefix):
        self.server = server
        self.name = uname(prefix)
        add_user(server, self.name, "password-" + self.name)
        self.s = token_session(new_token(server, self.name))
        r = self.s.post(server.url("/api/kernels"), json={}, timeout=60)
        assert r.status_code == 201, r.text
        self.kid = r.json()["id"]
        server.kernels.append(self.kid)  # deleted at teardown
        self.client = server.connect(self.kid)
        self.client.nudge()

    def run(self, code):
        r = self.client.execute(code, timeout=60)
        assert r.status == "ok", (r.error, r.stdout, r.stderr)
        return r.stdout

    def url(self, path=""):
        return self.server.url("/api/skylab/runtimes/%s/files%s" % (self.kid, path))

    def req(self, method, path="", **kw):
        kw.setdefault("timeout", 60)
        return self.s.request(method, self.url(path), **kw)

    def host_content(self):
        return os.path.join(self.server.data_dir, "runtimes", self.kid, "content")


@pytest.fixture(scope="module")
def people(server):
    return Owner(server, "f"), Owner(server, "g")


def test_list_download_upload_and_ownership(people):
    a, _ = people
    a.run("import os\nos.makedirs('/content/sub', exist_ok=True)\n"
          "open('/content/hello.txt','w').write('hello from the kernel')\n"
          "open('/content/sub/data.bin','wb').write(bytes(range(256)) * 4)\n"
          "open('/content/.hidden','w').write('x')\n"
          "open('/content/drive/in-drive.txt','w').write('drive')")
    r = a.req("GET", "")
    assert r.status_code == 200, r.text
    listing = r.json()
    names = {e["name"]: e for e in listing["content"]}
    assert listing["type"] == "directory" and listing["path"] == ""
    assert "hello.txt" in names and names["hello.txt"]["size"] == len("hello from the kernel")
    assert names["sub"]["type"] == "directory" and names["hello.txt"]["type"] == "file"
    assert "drive" not in names and ".hidden" not in names  # the Drive has its own API; hidden stay hidden
    r = a.req("GET", "/sub")
    assert [(e["name"], e["path"], e["size"]) for e in r.json()["content"]] == [("data.bin", "sub/data.bin", 1024)]

    # Download: the bytes, as an attachment that a browser never renders.
    r = a.req("GET", "/sub/data.bin")
    assert r.status_code == 200 and r.content == bytes(range(256)) * 4
    assert r.headers["Content-Disposition"].startswith("attachment;") and "data.bin" in r.headers["Content-Disposition"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert "sandbox" in r.headers["Content-Security-Policy"]
    a.run("open('/content/<b>bold.txt','w').write('x')")
    r = a.req("GET", "")
    assert "<b>" not in r.text and "\\u003cb\\u003ebold" in r.text, r.text
    assert "<b>bold.txt" in [e["name"] for e in r.json()["content"]]
    html = "<script>alert(1)</script>"
    a.run("open('/content/page.html','w').write(%r)" % html)
    r = a.req("GET", "/page.html")
    assert r.text == html and r.headers["Content-Type"] == "application/octet-stream"

    # Upload: the kernel sees the bytes, owns the file and can change it.
    payload = os.urandom(300000)
    r = a.req("PUT", "/up.bin", data=payload)
    assert r.status_code == 201, r.text
    assert r.json()["size"] == len(payload) and r.json()["path"] == "up.bin"
    out = a.run("import hashlib, os\nst = os.stat('/content/up.bin')\n"
                "print(hashlib.sha256(open('/content/up.bin','rb').read()).hexdigest(), st.st_uid == os.getuid(), "
                "st.st_gid == os.getgid())\nopen('/content/up.bin','ab').write(b'more')")
    assert out.split() == [hashlib.sha256(payload).hexdigest(), "True", "True"], out
    r = a.req("PUT", "/up.bin", data=b"replaced")
    assert r.status_code == 200, r.text  # replaced: 200
    assert a.req("GET", "/up.bin").content == b"replaced"

    # Folders: created with the runtime's uid, the kernel writes into them.
    r = a.req("POST", "/made", json={"type": "directory"})
    assert r.status_code == 201, r.text
    assert a.req("POST", "/made", json={"type": "directory"}).status_code == 409
    assert a.req("POST", "/made2", json={"type": "file"}).status_code == 400
    assert a.run("import os\nopen('/content/made/k.txt','w').write('k')\n"
                 "print(os.stat('/content/made').st_uid == os.getuid())").strip() == "True"
    assert a.req("PUT", "/nofolder/x.txt", data=b"x").status_code == 404

    # Rename, delete.
    r = a.req("PATCH", "/made/k.txt", json={"path": "made/renamed.txt"})
    assert r.status_code == 200, r.text
    assert a.run("import os; print(sorted(os.listdir('/content/made')))").strip() == "['renamed.txt']"
    assert a.req("PATCH", "/made/renamed.txt", json={"path": "drive/x.txt"}).status_code == 400
    assert a.req("DELETE", "/made").status_code == 204
    assert a.req("DELETE", "/hello.txt").status_code == 204
    assert a.run("import os; print(os.path.exists('/content/made'), os.path.exists('/content/hello.txt'))"
                 ).strip() == "False False"
    assert a.req("DELETE", "").status_code == 400
    assert a.req("GET", "/hello.txt").status_code == 404
    assert a.req("GET", "/.hidden").text == "x"  # hidden files are reachable by name (skylab.files uses .skylab/)


def test_traversal_is_refused(people):
    a, _ = people
    a.run("open('/content/drive/in-drive.txt','w').write('drive')")
    name = "outside-%s.txt" % secrets.token_hex(3)
    outside = os.path.join(os.path.dirname(a.host_content()), name)
    with open(outside, "w") as f:
        f.write("not yours")
    try:
        for p in ("/../" + name, "/%2e%2e/" + name, "/sub/../../" + name, "/%2e%2e/x", "/a/%252e%252e/%252e%252e/x", "//etc/passwd", "/a\\b", "/a%00b",
                  "/.", "/a//b"):
            for method in ("GET", "PUT", "DELETE"):
                # A raw request: HTTP clients would normalize the dots away.
                status, _, body = kclient.raw_http(a.server.host, a.server.port, method,
                                                   "/api/skylab/runtimes/%s/files%s" % (a.kid, p),
                                                   headers={"Authorization": a.s.headers["Authorization"]}, body=b"x")
                assert status in (400, 404), (method, p, status, body)
        # The Drive's mount point is not served here (it has its own API).
        for method, kw in (("GET", {}), ("PUT", {"data": b"x"}), ("DELETE", {}),
                           ("POST", {"json": {"type": "directory"}})):
            r = a.req(method, "/drive/in-drive.txt" if method != "POST" else "/drive/new", **kw)
            assert r.status_code == 404 and "Drive" in r.json()["message"], (method, r.text)
        assert open(os.path.join(a.server.data_dir, "drive", a.name, "in-drive.txt")).read() == "drive"
        assert open(outside).read() == "not yours"
        # The server's staging names are not addressable.
        assert a.req("PUT", "/.~skylab-upload-x", data=b"x").status_code == 404
    finally:
        os.unlink(outside)
    assert open("/etc/hostname").read()  # untouched, of course


def test_symlinks_planted_by_the_kernel_are_never_followed(people):
    a, b = people
    b.run("open('/content/b-secret.txt','w').write('secret of b')")
    other = b.host_content()
    victim = os.path.join(other, "b-secret.txt")
    a.run("import os\n"
          "os.symlink('/etc', '/content/etc_link')\n"
          "os.symlink('/etc/passwd', '/content/pw')\n"
          "os.symlink(%r, '/content/other')\n"
          "os.symlink(%r, '/content/other_file')\n"
          "os.makedirs('/content/d', exist_ok=True)\n"
          "os.symlink('..', '/content/d/up')" % (other, victim))
    names = [e["name"] for e in a.req("GET", "").json()["content"]]
    assert not {"etc_link", "pw", "other", "other_file"} & set(names), names
    for path in ("/etc_link/passwd", "/pw", "/other/b-secret.txt", "/other_file", "/d/up/pw", "/etc_link", "/other"):
        r = a.req("GET", path)
        assert r.status_code == 404, (path, r.status_code, r.text[:200])
        assert "secret of b" not in r.text and "root:" not in r.text
    # Writes through or onto links fail and change nothing.
    for path in ("/other/b-secret.txt", "/other/new.txt", "/etc_link/skylab-x"):
        assert a.req("PUT", path, data=b"overwritten").status_code == 404, path
    assert a.req("PUT", "/other_file", data=b"overwritten").status_code == 400
    assert a.req("PUT", "/other_file", params={"chunk": "1"}, data=b"overwritten").status_code == 400
    assert a.req("POST", "/other/newdir", json={"type": "directory"}).status_code == 404
    assert a.req("PATCH", "/other/b-secret.txt", json={"path": "stolen.txt"}).status_code == 404
    assert a.req("PATCH", "/pw", json={"path": "stolen.txt"}).status_code == 404
    assert a.req("DELETE", "/other/b-secret.txt").status_code == 404
    assert open(victim).read() == "secret of b"
    assert not os.path.exists("/etc/skylab-x") and not os.path.exists(os.path.join(other, "new.txt"))
    # Deleting a folder that holds links removes the links, not their targets.
    assert a.req("DELETE", "/d").status_code == 204
    assert os.path.exists(os.path.dirname(a.host_content()))
    assert os.path.isfile("/etc/passwd") and open(victim).read() == "secret of b"
    # A link swapped in for a folder between requests: the next walk refuses it.
    a.run("import os, shutil\nos.makedirs('/content/swap', exist_ok=True)")
    assert a.req("PUT", "/swap/ok.txt", data=b"ok").status_code == 201
    a.run("import os, shutil\nshutil.rmtree('/content/swap')\nos.symlink(%r, '/content/swap')" % other)
    assert a.req("PUT", "/swap/ok.txt", data=b"x").status_code == 404
    assert not os.path.exists(os.path.join(other, "ok.txt"))


def test_other_users_and_unknown_runtimes_answer_404(people):
    a, b = people
    for method, path, kw in (("GET", "", {}), ("GET", "/b-secret.txt", {}), ("PUT", "/x.txt", {"data": b"x"}),
                             ("POST", "/d", {"json": {"type": "directory"}}), ("DELETE", "/b-secret.txt", {}),
                             ("PATCH", "/b-secret.txt", {"json": {"path": "y.txt"}})):
        r = a.s.request(method, b.url(path), timeout=30, **kw)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        assert "secret" not in r.text
    assert b.req("GET", "/b-secret.txt").text == "secret of b"
    r = a.s.get(a.server.url("/api/skylab/runtimes/00000000-0000-4000-8000-000000000000/files/"), timeout=30)
    assert r.status_code == 404
    r = requests.get(a.url(""), timeout=30)  # no credentials
    assert r.status_code in (401, 403)


def vm_hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def test_big_chunked_upload_in_bounded_memory(people):
    """256 MiB in 8 MiB raw chunks: the kernel sees every byte; the server
    holds one chunk at a time; chunk 1 restarts, a lone chunk 2 is refused,
    an oversized body gets 413; the target appears only with the last chunk."""
    a, _ = people
    srv = a.server
    chunk = 8 << 20
    h = hashlib.sha256()
    for n in (1, -1):  # warm-up
        assert a.req("PUT", "/warm.bin", params={"chunk": n}, data=os.urandom(chunk)).status_code in (200, 201)
    base = vm_hwm_kb(srv.proc.pid)
    total = 32
    block = os.urandom(chunk)
    for i in range(total):
        data = block[i:] + block[:i]
        h.update(data)
        n = -1 if i == total - 1 else i + 1
        r = a.req("PUT", "/big.bin", params={"chunk": n}, data=data)
        assert r.status_code in (200, 201), r.text
        if n != -1:
            assert r.json()["committed"] is False and r.json()["bytes_so_far"] == (i + 1) * chunk
            if i == 0:
                assert a.req("GET", "/big.bin").status_code == 404  # nothing shows before the last chunk
    assert r.status_code == 201 and r.json()["size"] == total * chunk
    peak = vm_hwm_kb(srv.proc.pid)
    out = a.run("import hashlib\nh = hashlib.sha256()\nf = open('/content/big.bin','rb')\n"
                "for b in iter(lambda: f.read(1 << 20), b''): h.update(b)\nprint(h.hexdigest())")
    assert out.strip() == h.hexdigest()
    print("256 MiB upload: server VmHWM %d -> %d KiB (+%.1f MiB)" % (base, peak, (peak - base) / 1024))
    assert peak - base < 96 * 1024, "peak RSS grew by %d MiB" % ((peak - base) // 1024)
    # Download streams it back.
    with a.s.get(a.url("/big.bin"), stream=True, timeout=120) as r:
        g = hashlib.sha256()
        for piece in r.iter_content(1 << 20):
            g.update(piece)
    assert g.hexdigest() == h.hexdigest()
    assert a.req("PUT", "/lone.bin", params={"chunk": 2}, data=b"x").status_code == 400
    assert a.req("PUT", "/bad.bin", params={"chunk": "0"}, data=b"x").status_code == 400
    r = a.req("PUT", "/huge.bin", data=b"\0" * ((32 << 20) + 1))
    assert r.status_code == 413
    assert a.req("DELETE", "/big.bin").status_code == 204


def test_unsandboxed_runtime_has_no_content():
    srv = server_with_config('[runtimes]\nsandbox = "none"\n')
    try:
        kid = srv.create_kernel()
        r = srv.get("/api/skylab/runtimes/%s/files/" % kid)
        assert r.status_code == 409 and "sandbox" in r.json()["message"], r.text
        assert not os.path.exists(os.path.join(srv.data_dir, "runtimes", kid))
    finally:
        _stop_server(srv)
