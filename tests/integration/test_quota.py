"""Host disk is bounded (issue 12, row 9): kernel logs are capped and
rotated; the Drive has a per-user quota, enforced on the server's write
paths and shown in /api/me."""

import base64
import os
import tempfile
import time

import pytest

from conftest import _stop_server, needs_root, needs_sandbox, server_with_config
from test_runtime_files import Owner
from test_sharing import User

pytestmark = pytest.mark.skylab_only

LOG_CAP = 8 << 20  # kernel::kDefaultKernelLogCap


def wait_until(cond, timeout=60):
    """Polls `cond` (not a timed assertion: the bound only ends a hang)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@needs_sandbox
@needs_root
def test_kernel_log_is_capped_and_rotated(server):
    o = Owner(server, "log")
    log = os.path.join(server.data_dir, "runtime", "kernel-%s.log" % o.kid)
    r = o.client.execute("import os\nchunk = b'e' * (1 << 20)\n"
                         "for _ in range(64):\n    os.write(2, chunk)\n"
                         "os.write(2, b'THE-END\\n')\nprint('done')", timeout=120)
    assert r.status == "ok", (r.error, r.stderr)
    assert "done" in r.stdout

    def capped():
        sizes = [os.path.getsize(p) if os.path.exists(p) else 0 for p in (log, log + ".1")]
        return sizes[0] <= LOG_CAP and sizes[1] <= LOG_CAP
    assert wait_until(capped), (os.path.getsize(log), os.path.exists(log + ".1"))
    assert os.path.exists(log + ".1")

    # The newest lines are kept (in the log or its rotated copy). The server
    # rotates on its own clock: a rotation between reading the copy and
    # reading the log hides the lines it moved, so look again.
    def tail():
        out = b""
        for p in (log + ".1", log):
            with open(p, "rb") as f:
                out += f.read()
        return out[-(1 << 20):]
    assert wait_until(lambda: b"THE-END" in tail()), tail()[-200:]
    assert capped()
    # The kernel was never blocked and still answers.
    assert o.run("print(6 * 7)").strip() == "42"


@pytest.fixture(scope="module")
def small_quota():
    srv = server_with_config('[drive]\nquota = "5M"\n')
    yield srv
    _stop_server(srv)
    # A clean stop with no runtime left unmounts the users' volumes.
    with open("/proc/self/mounts") as f:
        left = [line for line in f if srv.data_dir in line]
    assert not left, left


def put_b64(user, path, data, chunk=None):
    body = {"type": "file", "format": "base64", "content": base64.b64encode(data).decode()}
    if chunk is not None:
        body["chunk"] = chunk
    return user.req("PUT", "/api/contents/" + path, json=body)


def test_server_side_writes_over_the_quota_are_refused(small_quota):
    u = User(small_quota, "quota")
    me = u.req("GET", "/api/me").json()
    assert me["storage"]["quota"] == 5 << 20 and me["storage"]["used"] < 1 << 20, me
    keep = os.urandom(1 << 20)
    r = put_b64(u, "keep.bin", keep)
    assert r.status_code == 201, r.text
    # A whole-file PUT over the quota: 507, the old content is unchanged.
    r = put_b64(u, "keep.bin", os.urandom(6 << 20))
    assert r.status_code == 507, r.text
    assert "quota" in r.json()["message"]
    got = u.req("GET", "/api/contents/keep.bin?format=base64&type=file").json()
    assert base64.b64decode(got["content"]) == keep
    # Chunked: the chunk that passes the quota is refused and the staging is dropped.
    assert put_b64(u, "big.bin", os.urandom(2 << 20), chunk=1).status_code in (200, 201)
    r = put_b64(u, "big.bin", os.urandom(3 << 20), chunk=-1)
    assert r.status_code == 507, r.text
    assert u.req("GET", "/api/contents/big.bin").status_code == 404
    # Copies count too.
    assert put_b64(u, "two.bin", os.urandom(2 << 20)).status_code == 201
    r = u.req("POST", "/api/contents", json={"copy_from": "two.bin"})
    assert r.status_code == 507, r.text
    used = u.req("GET", "/api/me").json()["storage"]["used"]
    assert (3 << 20) <= used <= (5 << 20), used
    # Operators see it too.
    users = small_quota.get("/api/skylab/users").json()
    mine = [x for x in users if x["username"] == u.name][0]
    assert mine["storage"]["quota"] == 5 << 20 and mine["storage"]["used"] >= 3 << 20, mine


@needs_sandbox
@needs_root
def test_runtime_writes_meet_the_quota_in_drive_and_caches(small_quota):
    srv = small_quota
    # Written by the server before the first runtime: moved onto the volume.
    u = User(srv, "vol")
    assert put_b64(u, "before.bin", b"from before the volume").status_code == 201
    r = u.req("POST", "/api/kernels", json={})
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    srv.kernels.append(kid)
    c = srv.connect(kid)
    c.nudge()
    res = c.execute("import errno, os\n"
                    "print(open('/content/drive/before.bin').read())\n"
                    "def fill(path):\n"
                    "    try:\n"
                    "        with open(path, 'wb') as f:\n"
                    "            for _ in range(10):\n"
                    "                f.write(os.urandom(1 << 20)); f.flush(); os.fsync(f.fileno())\n"
                    "        return 'WROTE'\n"
                    "    except OSError as e:\n"
                    "        return errno.errorcode[e.errno]\n"
                    "    finally:\n"
                    "        if os.path.exists(path): os.remove(path)\n"
                    "os.makedirs('/root/.cache/x', exist_ok=True)\n"
                    "print(fill('/content/drive/big.bin'), fill('/root/.cache/x/big.bin'))", timeout=120)
    assert res.status == "ok", (res.error, res.stderr)
    lines = res.stdout.split()
    if "WROTE" in lines and "enforced by the server only" in srv.log_text(20000):
        pytest.skip("no loop devices or mkfs.ext4 here: the quota is enforced by the server only: " + "".join(l for l in srv.log_text(20000).splitlines(True) if "server only" in l))
    assert lines[0] == "from" or "from before the volume" in res.stdout, res.stdout
    assert lines[-2] in ("ENOSPC", "EDQUOT") and lines[-1] in ("ENOSPC", "EDQUOT"), res.stdout
    me = u.req("GET", "/api/me").json()["storage"]
    assert me["quota"] == 5 << 20 and me["used"] <= 5 << 20, me
    # The server's own writes meet the same volume: refused whole, old file kept.
    r = put_b64(u, "before.bin", os.urandom(6 << 20))
    assert r.status_code == 507, r.text
    got = u.req("GET", "/api/contents/before.bin?format=base64&type=file").json()
    assert base64.b64decode(got["content"]) == b"from before the volume"
    assert srv.delete("/api/kernels/" + kid).status_code == 204
    srv.kernels.remove(kid)


@needs_sandbox
@needs_root
def test_data_from_before_the_quota_is_moved_onto_the_volume():
    srv = server_with_config('[drive]\nquota = "0"\n')  # no quota yet
    try:
        u = User(srv, "pre")
        kid = u.req("POST", "/api/kernels", json={}).json()["id"]
        c = srv.connect(kid)
        c.nudge()
        res = c.execute("import os\nos.makedirs('/content/drive/sub', exist_ok=True)\n"
                        "open('/content/drive/sub/old.txt','w').write('kept')\n"
                        "os.symlink('/etc/shadow', '/content/drive/shadow-link')\n"
                        "os.makedirs('/root/.cache/pip', exist_ok=True)\n"
                        "open('/root/.cache/pip/c.txt','w').write('cached')", timeout=60)
        assert res.status == "ok", (res.error, res.stderr)
        c.close()
        assert srv.delete("/api/kernels/" + kid).status_code == 204
        before = u.req("GET", "/api/contents/sub/old.txt?content=0").json()["last_modified"]
        assert srv.terminate() == 0
        # The same data directory, now with a quota.
        fd, path = tempfile.mkstemp(suffix=".toml")
        with os.fdopen(fd, "w") as f:
            f.write('[drive]\nquota = "5M"\n')
        srv.argv = [a if not a.endswith(".toml") else path for a in srv.argv]
        srv.restart()
        os.unlink(path)
        kid = u.req("POST", "/api/kernels", json={}).json()["id"]
        srv.kernels.append(kid)
        c = srv.connect(kid)
        c.nudge()
        res = c.execute("import os\n"
                        "print(open('/content/drive/sub/old.txt').read(), open('/root/.cache/pip/c.txt').read())\n"
                        "print(os.readlink('/content/drive/shadow-link'))\n"
                        "try:\n    open('/content/drive/big','wb').write(os.urandom(10 << 20)); print('WROTE')\n"
                        "except OSError as e:\n    print('refused', e.errno)\n", timeout=60)
        assert res.status == "ok", (res.error, res.stderr)
        lines = res.stdout.splitlines()
        assert lines[0] == "kept cached" and lines[1] == "/etc/shadow", res.stdout
        assert lines[2] in ("refused 28", "refused 122"), res.stdout
        drive = os.path.join(srv.data_dir, "drive", u.name)
        with open("/proc/self/mounts") as f:
            assert any(line.split()[1] == drive for line in f), "the Drive is not on a volume"
        # The move keeps what clients compare to detect saves made elsewhere
        # (the app would otherwise ask "changed elsewhere?" for every notebook).
        assert u.req("GET", "/api/contents/sub/old.txt?content=0").json()["last_modified"] == before
        # The link was copied as a link: the server never read /etc/shadow into the Drive.
        assert os.readlink(os.path.join(drive, "shadow-link")) == "/etc/shadow"
    finally:
        if srv.proc.poll() is None:
            _stop_server(srv)
        else:
            srv.cleanup_tmp()
