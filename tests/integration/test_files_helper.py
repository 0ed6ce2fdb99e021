"""skylab.files / google.colab.files in a real runtime, driven through the
channels WebSocket the way the notebook page drives it: download() shows a
download output whose bytes come from the runtime files API; upload() asks
over stdin, the "browser" uploads straight into the runtime with REST
(chunked) and answers the input_request. Also: no browser (allow_stdin
false, `skylab run`) gives a clear message, never a hang."""
import hashlib
import json
import os
import subprocess

import nbformat
import pytest

from conftest import SERVER_KIND, needs_root, needs_sandbox, skylab_bin
from test_runtime_files import Owner

pytestmark = pytest.mark.skipif(SERVER_KIND != "skylab", reason="Skylab runtimes")

MIME = "application/vnd.skylab.download+json"
PROMPT = "skylab.files.upload:"


@pytest.fixture(scope="module")
def owner(server):
    if needs_sandbox.args[0] or needs_root.args[0]:
        pytest.skip("needs bubblewrap and root")
    return Owner(server, "h")


def downloads_of(result):
    return [m["content"]["data"][MIME] for m in result.iopub
            if m["header"]["msg_type"] == "display_data" and MIME in m["content"]["data"]]


def fetch(owner, d):
    """What the page does with a download output: GET the bytes."""
    if d["source"] == "drive":
        r = owner.s.get(owner.server.url("/files/" + d["path"]), timeout=60)
    else:
        assert d["kernel_id"] == owner.kid
        r = owner.req("GET", "/" + d["path"])
    assert r.status_code == 200, r.text
    assert r.headers["Content-Disposition"].startswith("attachment")
    return r.content


@pytest.mark.parametrize("module", ["from skylab import files", "from google.colab import files"])
def test_download(owner, module):
    payload = os.urandom(5000)
    owner.run("open('/content/x.bin','wb').write(%r)\n"
              "open('/root/outside.txt','w').write('outside /content')\n"
              "open('/content/drive/d.txt','w').write('in the drive')" % payload)
    r = owner.client.execute(module + "\nfiles.download('x.bin')\nfiles.download('/root/outside.txt')\n"
                             "files.download('drive/d.txt')", timeout=60)
    assert r.status == "ok", (r.error, r.stderr)
    d = downloads_of(r)
    assert [x["name"] for x in d] == ["x.bin", "outside.txt", "d.txt"], d
    assert d[0] == dict(d[0], source="runtime", path="x.bin", size=5000)
    assert fetch(owner, d[0]) == payload
    # Outside /content: a copy under /content/.skylab/downloads is served.
    assert d[1]["path"].startswith(".skylab/downloads/") and fetch(owner, d[1]) == b"outside /content"
    # In the Drive: fetched from the Drive.
    assert d[2]["source"] == "drive" and d[2]["path"] == "d.txt" and fetch(owner, d[2]) == b"in the drive"
    texts = [m["content"]["data"]["text/plain"] for m in r.iopub if m["header"]["msg_type"] == "display_data"]
    assert texts[0] == "Download x.bin (5.0 KB)", texts
    # Names with spaces and non-ASCII characters reach the page encoded and come back whole.
    r = owner.client.execute(module + "\nimport os\nos.makedirs('/content/dir with space', exist_ok=True)\n"
                             "open('/content/dir with space/r\u00e9sum\u00e9 1.txt','w').write('cv')\n"
                             "files.download('/content/dir with space/r\u00e9sum\u00e9 1.txt')", timeout=60)
    d = downloads_of(r)[0]
    assert d["path"] == "dir with space/r\u00e9sum\u00e9 1.txt" and d["name"] == "r\u00e9sum\u00e9 1.txt", d
    resp = owner.req("GET", "/dir with space/r\u00e9sum\u00e9 1.txt")
    assert resp.content == b"cv"
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%201.txt" in resp.headers["Content-Disposition"], resp.headers
    # Errors are Python's.
    r = owner.client.execute(module + "\nfiles.download('nope.txt')", timeout=60)
    assert r.status == "error" and r.error["ename"] == "FileNotFoundError"
    r = owner.client.execute(module + "\nfiles.download('/content')", timeout=60)
    assert r.status == "error" and r.error["ename"] == "IsADirectoryError"


class Page:
    """Answers upload requests as the notebook page does: PUT each file into
    the directory named in the request (in chunks), then reply with names."""

    def __init__(self, owner, files, chunk=4 << 20, reply=None):
        self.owner, self.files, self.chunk, self.reply = owner, files, chunk, reply
        self.requests = []

    def __call__(self, prompt):
        assert prompt.startswith(PROMPT), prompt
        req = json.loads(prompt[len(PROMPT):])
        self.requests.append(req)
        assert req["skylab.files"] == "upload" and req["kernel_id"] == self.owner.kid
        if self.reply is not None:
            return self.reply
        for name, data in self.files.items():
            path = "/%s/%s" % (req["dir"], name)
            pieces = [data[i:i + self.chunk] for i in range(0, len(data), self.chunk)] or [b""]
            for i, piece in enumerate(pieces):
                n = -1 if i == len(pieces) - 1 else i + 1
                r = self.owner.req("PUT", path, params={"chunk": n}, data=piece)
                assert r.status_code in (200, 201), r.text
        return json.dumps({"files": [{"name": n, "size": len(d)} for n, d in self.files.items()]})


@pytest.mark.parametrize("module", ["from skylab import files", "from google.colab import files"])
def test_upload(owner, module):
    work = "/content/w%d" % len(module)  # a folder of its own per parametrization
    big = os.urandom((10 << 20) + 123)
    page = Page(owner, {"a.txt": b"hello upload", "big.bin": big})
    code = (module + "\nimport hashlib, os\nos.makedirs(%r, exist_ok=True)\nos.chdir(%r)\nup = files.upload()\n"
            "print(sorted((k, len(v), hashlib.sha256(v).hexdigest()) for k, v in up.items()))" % (work, work))
    r = owner.client.execute(code, timeout=120, stdin=page)
    assert r.status == "ok", (r.error, r.stdout, r.stderr)
    assert len(page.requests) == 1
    lines = r.stdout.strip().splitlines()
    assert lines[:2] == ["Saving a.txt to a.txt", "Saving big.bin to big.bin"], r.stdout
    expected = sorted([("a.txt", 12, hashlib.sha256(b"hello upload").hexdigest()),
                       ("big.bin", len(big), hashlib.sha256(big).hexdigest())])
    assert lines[-1] == str(expected), r.stdout
    # Saved in the current folder under their names (taken names get " (1)", as Colab), staging removed.
    r = owner.client.execute(code, timeout=120, stdin=Page(owner, {"a.txt": b"second"}))
    assert r.status == "ok" and "Saving a.txt to a (1).txt" in r.stdout, r.stdout
    out = owner.run("import os\nprint(open('%s/a.txt').read(), open('%s/a (1).txt').read(), "
                    "os.path.getsize('%s/big.bin'), os.listdir('/content/.skylab/uploads'))" % (work, work, work))
    assert out.strip().split(None, 2) == ["hello", "upload", "second %d []" % len(big)], out
    # target_dir, relative to the current directory.
    r = owner.client.execute(module + "\nimport os\nos.chdir(%r)\nup = files.upload('inbox/sub')\n"
                             "print(open('%s/inbox/sub/t.txt').read())" % (work, work), timeout=60,
                             stdin=Page(owner, {"t.txt": b"targeted"}))
    assert r.status == "ok" and r.stdout.strip().endswith("targeted"), (r.stdout, r.error)
    # Into the Drive: a move across mounts.
    r = owner.client.execute(module + "\nup = files.upload('/content/drive/inbox')\nprint(len(up['d.txt']))",
                             timeout=60, stdin=Page(owner, {"d.txt": b"to the drive"}))
    assert r.status == "ok" and r.stdout.strip().endswith("12"), (r.stdout, r.error)
    assert owner.s.get(owner.server.url("/files/inbox/d.txt"), timeout=30).content == b"to the drive"
    owner.s.delete(owner.server.url("/api/contents/inbox"), timeout=30)


def test_upload_cancelled_refused_and_without_browser(owner):
    r = owner.client.execute("from skylab import files\nprint(files.upload())", timeout=60,
                             stdin=Page(owner, {}, reply=json.dumps({"cancelled": True})))
    assert r.status == "ok" and r.stdout.strip().splitlines() == ["Upload cancelled.", "{}"], r.stdout
    # A frontend that is not Skylab's page types something else: a clear error.
    r = owner.client.execute("from skylab import files\nfiles.upload()", timeout=60,
                             stdin=Page(owner, {}, reply="my-file.txt"))
    assert r.status == "error" and "did not answer with an upload" in r.error["evalue"], r.error
    # Names that leave the staging folder are refused.
    r = owner.client.execute("from skylab import files\nfiles.upload()", timeout=60,
                             stdin=Page(owner, {}, reply=json.dumps({"files": [{"name": "../../etc/passwd"}]})))
    assert r.status == "error" and "invalid file name" in r.error["evalue"], r.error
    r = owner.client.execute("from skylab import files\nfiles.upload()", timeout=60,
                             stdin=Page(owner, {}, reply=json.dumps({"files": [{"name": "never-sent.txt"}]})))
    assert r.status == "error" and "did not arrive" in r.error["evalue"], r.error
    # allow_stdin false (a client that cannot answer input): an error, not a hang.
    r = owner.client.execute("from google.colab import files\nfiles.upload()", timeout=60)
    assert r.status == "error" and "needs the notebook page in a browser" in r.error["evalue"], r.error


def test_headless_skylab_run(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("open('x.txt','w').write('x')\nfrom google.colab import files\n"
                                          "files.download('x.txt')\nprint('after download')"),
                nbformat.v4.new_code_cell("from skylab import files\nfiles.upload()")]
    path = tmp_path / "headless.ipynb"
    nbformat.write(nb, str(path))
    p = subprocess.run([skylab_bin(), "run", str(path), "--quiet"], capture_output=True, timeout=120,
                       cwd=str(tmp_path))
    out = nbformat.read(str(tmp_path / "headless.out.ipynb"), as_version=4)
    first = "".join(o.get("text", "") for o in out.cells[0].outputs)
    assert "after download" in first and "no browser is attached" in first, out.cells[0].outputs
    assert p.returncode == 1  # the upload cell fails, with a clear message
    err = out.cells[1].outputs[-1]
    assert err["output_type"] == "error" and "needs the Skylab notebook page in a browser" in err["evalue"], err


def test_colab_drive_and_patches(owner):
    r = owner.client.execute("from google.colab import drive\ndrive.mount('/content/drive')\n"
                             "from google.colab.patches import cv2_imshow\nimport numpy as np\n"
                             "img = np.zeros((8, 16, 3), np.uint8)\nimg[..., 0] = 255\ncv2_imshow(img)", timeout=60)
    assert r.status == "ok", r.error
    assert r.stdout.strip() == "Mounted at /content/drive"
    pngs = [m["content"]["data"]["image/png"] for m in r.iopub
            if m["header"]["msg_type"] == "display_data" and "image/png" in m["content"]["data"]]
    assert len(pngs) == 1
    import base64
    import io
    from PIL import Image
    im = Image.open(io.BytesIO(base64.b64decode(pngs[0])))
    assert im.size == (16, 8) and im.getpixel((0, 0))[:3] == (0, 0, 255)  # BGR blue shows blue

