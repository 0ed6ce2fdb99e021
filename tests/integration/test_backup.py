"""`skylab backup` / `skylab restore` (issue 16, Backups): a round trip with
a server under write load during the backup, and restore's refusals of
crafted archives (paths outside the data directory, links, tampered
content)."""

import base64
import hashlib
import io
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import tarfile
import threading
import time

import pytest
import requests

from conftest import Server, _stop_server, needs_root, skylab_bin
from test_accounts import token_session
from test_sharing import User

pytestmark = pytest.mark.skylab_only


def backup(data_dir, out):
    return subprocess.run([skylab_bin(), "backup", "--data-dir", data_dir, out], capture_output=True, text=True,
                          timeout=600)


def restore(archive, data_dir, *extra):
    return subprocess.run([skylab_bin(), "restore", archive, "--data-dir", data_dir, *extra], capture_output=True,
                          text=True, timeout=600)


def upload(user, path, data):
    r = user.req("PUT", "/api/contents/" + path,
                 json={"type": "file", "format": "base64", "content": base64.b64encode(data).decode()})
    assert r.status_code in (200, 201), r.text


def revisions(user, path):
    r = user.req("GET", "/api/skylab/revisions", params={"path": path})
    assert r.status_code == 200, r.text
    return r.json()["revisions"]


class Load(threading.Thread):
    """Saves notebooks, uploads files and shares them, as fast as the server
    answers, until stopped; records what was acknowledged and when."""

    def __init__(self, owner, friend):
        super().__init__(daemon=True)
        self.owner, self.friend = owner, friend
        self.stop = threading.Event()
        self.done = []  # (monotonic time acknowledged, kind, path, payload)
        self.error = None

    def run(self):
        i = 0
        try:
            while not self.stop.is_set():
                nb = "load/nb%03d.ipynb" % i
                self.owner.put_notebook(nb, "print(%d)" % i)
                self.done.append((time.monotonic(), "notebook", nb, "print(%d)" % i))
                blob = secrets.token_bytes(50_000)
                upload(self.owner, "load/up%03d.bin" % i, blob)
                self.done.append((time.monotonic(), "file", "load/up%03d.bin" % i, blob))
                r = self.owner.share(nb, user=self.friend.name, role="viewer")
                assert r.status_code in (200, 201), r.text
                self.done.append((time.monotonic(), "share", nb, None))
                i += 1
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e


@needs_root
def test_backup_under_write_load_restores_every_user_file_revision_and_share(tmp_path):
    srv = Server()
    restored = None
    load = None
    try:
        owner, friend = User(srv, "bko"), User(srv, "bkf")
        friend_pw = "password-" + friend.name
        # Before the load: notebooks with several revisions, big and small
        # files, a folder, shares; a file owned by a runtime uid (as a runtime writes it).
        for folder in ("course", "data", "load"):
            r = owner.req("PUT", "/api/contents/" + folder, json={"type": "directory"})
            assert r.status_code in (200, 201), r.text
        for k in range(3):
            owner.put_notebook("course/week1.ipynb", "x = %d" % k)
        blobs = {"data/big.bin": secrets.token_bytes(3 << 20), "data/small.txt": b"hello\n"}
        for path, data in blobs.items():
            upload(owner, path, data)
        upload(friend, "mine.bin", b"friend's own")
        assert owner.share("course/week1.ipynb", user=friend.name, role="editor").status_code in (200, 201)
        link = owner.share("course/week1.ipynb", link=True)
        assert link.status_code in (200, 201), link.text
        link = link.json()
        owned = os.path.join(srv.data_dir, "drive", owner.name, "data", "small.txt")
        os.chown(owned, 200777, 200777)
        os.chmod(owned, 0o640)
        week1_revs = revisions(owner, "course/week1.ipynb")
        assert len(week1_revs) == 3

        load = Load(owner, friend)
        load.start()
        while len(load.done) < 6 and load.error is None:  # the load is under way
            time.sleep(0.05)
        started = time.monotonic()
        archive = str(tmp_path / "backup.tar")
        b = backup(srv.data_dir, archive)
        ended = time.monotonic()
        time.sleep(0.2)
        load.stop.set()
        load.join(60)
        assert load.error is None, load.error
        assert b.returncode == 0, b.stderr
        assert os.stat(archive).st_mode & 0o077 == 0  # holds password hashes: not for others
        during = [d for d in load.done if started <= d[0] <= ended]
        before = [d for d in load.done if d[0] < started]
        assert before
        print("writes acknowledged during the backup: %d" % len(during))

        # GNU tar reads it; the manifest lists every entry with its checksum.
        listing = subprocess.run(["tar", "tf", archive], capture_output=True, text=True, check=True).stdout.split()
        assert listing[-1] == "MANIFEST.json"
        assert "data/skylab.db" in listing and "data/drive.db" in listing
        assert not any(n.startswith("data/cache/") or n.endswith("-wal") for n in listing)

        d2 = str(tmp_path / "restored")
        r = restore(archive, d2)
        assert r.returncode == 0, r.stderr
        for db in ("skylab.db", "drive.db"):
            with sqlite3.connect(os.path.join(d2, db)) as c:
                assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # No file newer than its metadata: every notebook in the restored
        # Drive is one of the revisions the restored database holds.
        with sqlite3.connect(os.path.join(d2, "drive.db")) as c:
            for i in range(len(load.done)):
                nb = "load/nb%03d.ipynb" % i
                f = os.path.join(d2, "drive", owner.name, nb)
                if not os.path.exists(f):
                    continue
                digest = hashlib.sha256(open(f, "rb").read()).hexdigest()
                hashes = {row[0] for row in c.execute("SELECT sha256 FROM revisions WHERE owner=? AND path=?",
                                                      (owner.name, nb))}
                assert digest in hashes, nb
        # Item ids (which shares point at) are extended attributes: restored as they were.
        week1 = os.path.join("drive", owner.name, "course", "week1.ipynb")
        ids = {a: os.getxattr(os.path.join(srv.data_dir, week1), a) for a in os.listxattr(os.path.join(srv.data_dir, week1))}
        assert "trusted.skylab.id" in ids, ids
        assert {a: os.getxattr(os.path.join(d2, week1), a) for a in os.listxattr(os.path.join(d2, week1))} == ids
        st = os.stat(os.path.join(d2, "drive", owner.name, "data", "small.txt"))
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (200777, 200777, 0o640)

        _stop_server(srv)
        srv = None
        restored = Server(extra_args=("--data-dir", d2))
        # Users, with their passwords and tokens.
        users = subprocess.run([skylab_bin(), "user", "list", "--json", "--data-dir", d2], capture_output=True,
                               text=True, check=True).stdout
        assert owner.name in users and friend.name in users
        o2 = token_session(owner.token)
        f2 = token_session(friend.token)

        def get(session, path, **kw):
            return session.get(restored.url(path), timeout=30, **kw)

        # Files and notebooks acknowledged before the backup started, byte for byte.
        for path, data in blobs.items():
            m = get(o2, "/api/contents/" + path, params={"format": "base64", "content": "1"})
            assert m.status_code == 200, m.text
            assert base64.b64decode(m.json()["content"]) == data
        for t, kind, path, payload in before:
            if kind == "file":
                m = get(o2, "/api/contents/" + path, params={"format": "base64", "content": "1"})
                assert m.status_code == 200 and base64.b64decode(m.json()["content"]) == payload, path
            elif kind == "notebook":
                m = get(o2, "/api/contents/" + path)
                assert m.status_code == 200 and payload in json.dumps(m.json()["content"]), path
        assert get(f2, "/api/contents/mine.bin").status_code == 200
        # Revisions.
        revs = get(o2, "/api/skylab/revisions", params={"path": "course/week1.ipynb"}).json()["revisions"]
        assert [r["id"] for r in revs] == [r["id"] for r in week1_revs]
        # Shares: the friend still sees and opens what was shared before the backup.
        shared = get(f2, "/api/skylab/shared")
        assert shared.status_code == 200, shared.text
        by_path = {s["path"]: s for s in shared.json()}
        expected = ["course/week1.ipynb"] + [p for _, kind, p, _ in before if kind == "share"]
        for path in expected:
            assert path in by_path, (path, sorted(by_path))
            # Each opens: the share's item id (an extended attribute on the file) came back too.
            opened = get(f2, "/api/skylab/shared/%s/contents" % by_path[path]["id"])
            assert opened.status_code == 200, (path, opened.text)
        # The link share still resolves.
        assert get(f2, link["link"]).status_code == 200
        # The friend can still sign in with the password.
        s = requests.Session()
        page = s.get(restored.url("/login"), timeout=10)
        xsrf = page.text.split('name="_xsrf" value="')[1].split('"')[0]
        r = s.post(restored.url("/login"), data={"_xsrf": xsrf, "username": friend.name, "password": friend_pw,
                                                 "next": "/"}, allow_redirects=False, timeout=10)
        assert r.status_code in (302, 303) and "login" not in r.headers.get("Location", ""), r.text
    finally:
        if load is not None:
            load.stop.set()
        if srv is not None:
            _stop_server(srv)
        if restored is not None:
            _stop_server(restored)


# ---------------------------------------------------------------- crafted archives

def make_tar(path, members, manifest=True):
    """members: (TarInfo kwargs, bytes or None). A manifest that vouches for
    every data/ member is appended unless manifest is False."""
    entries = []
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        for info, data in members:
            ti = tarfile.TarInfo(info.pop("name"))
            for k, v in info.items():
                setattr(ti, k, v)
            if data is not None:
                ti.size = len(data)
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
            if ti.name.startswith("data/"):
                rel = ti.name[5:]
                if ti.isdir():
                    entries.append({"path": rel, "type": "directory"})
                else:
                    entries.append({"path": rel, "type": "file", "size": len(data or b""),
                                    "sha256": hashlib.sha256(data or b"").hexdigest()})
        if manifest:
            body = json.dumps({"format": "skylab-backup", "version": 1, "entries": entries}).encode()
            ti = tarfile.TarInfo("MANIFEST.json")
            ti.size = len(body)
            t.addfile(ti, io.BytesIO(body))


def good_members():
    return [({"name": "data/drive", "type": tarfile.DIRTYPE, "mode": 0o700}, None),
            ({"name": "data/drive/u", "type": tarfile.DIRTYPE, "mode": 0o700}, None),
            ({"name": "data/drive/u/a.txt", "mode": 0o644}, b"content")]


@pytest.mark.parametrize("evil", [
    [({"name": "data/../escaped.txt", "mode": 0o644}, b"x")],
    [({"name": "data/drive/../../escaped.txt", "mode": 0o644}, b"x")],
    [({"name": "/tmp/escaped-abs.txt", "mode": 0o644}, b"x")],
    [({"name": "data//escaped.txt", "mode": 0o644}, b"x")],
    [({"name": "data/./x", "mode": 0o644}, b"x")],
    [({"name": "escaped.txt", "mode": 0o644}, b"x")],
    # A symbolic link, then a file through it.
    [({"name": "data/link", "type": tarfile.SYMTYPE, "linkname": "OUTSIDE"}, None),
     ({"name": "data/link/escaped.txt", "mode": 0o644}, b"x")],
    # A hard link to a file outside.
    [({"name": "data/hard", "type": tarfile.LNKTYPE, "linkname": "/etc/passwd"}, None)],
    [({"name": "data/dev", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, None)],
    [({"name": "data/fifo", "type": tarfile.FIFOTYPE}, None)],
    # The same file twice (the second would overwrite what was checked).
    [({"name": "data/drive/u/a.txt", "mode": 0o644}, b"again")],
], ids=["dotdot", "dotdot-deep", "absolute", "empty-component", "dot-component", "outside-data",
        "symlink-then-file", "hardlink", "device", "fifo", "duplicate"])
def test_restore_refuses_crafted_archives(tmp_path, evil):
    outside = tmp_path / "outside"
    outside.mkdir()
    members = good_members() + [({**i, "linkname": str(outside)} if i.get("linkname") == "OUTSIDE" else dict(i), d)
                                for i, d in evil]
    archive = str(tmp_path / "evil.tar")
    make_tar(archive, members)
    d2 = tmp_path / "d2"
    r = restore(archive, str(d2))
    assert r.returncode != 0, r.stderr
    assert "refused" in r.stderr, r.stderr
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "escaped.txt").exists() and not os.path.exists("/tmp/escaped-abs.txt")
    assert list(d2.iterdir()) == []  # nothing left, staging included


def test_restore_refuses_what_the_manifest_does_not_vouch_for(tmp_path):
    d2 = tmp_path / "d2"
    archive = str(tmp_path / "a.tar")
    # Content changed after the manifest was written.
    make_tar(archive, good_members())
    raw = open(archive, "rb").read()
    assert raw.count(b"content") >= 1
    open(archive, "wb").write(raw.replace(b"content", b"CONTENT", 1))
    r = restore(archive, str(d2))
    assert r.returncode != 0 and "checksum" in r.stderr, r.stderr
    assert list(d2.iterdir()) == []
    # No manifest at all.
    make_tar(archive, good_members(), manifest=False)
    r = restore(archive, str(d2))
    assert r.returncode != 0 and "manifest" in r.stderr, r.stderr
    # A member after the manifest.
    make_tar(archive, good_members())
    with tarfile.open(archive, "a", format=tarfile.PAX_FORMAT) as t:
        ti = tarfile.TarInfo("data/late.txt")
        ti.size = 1
        t.addfile(ti, io.BytesIO(b"x"))
    r = restore(archive, str(d2))
    assert r.returncode != 0 and "after the manifest" in r.stderr, r.stderr
    assert list(d2.iterdir()) == []
    # Not a tar file.
    open(archive, "wb").write(os.urandom(4096))
    r = restore(archive, str(d2))
    assert r.returncode != 0
    assert list(d2.iterdir()) == []


def test_restore_needs_an_empty_folder_or_force_and_never_follows_links_there(tmp_path):
    archive = str(tmp_path / "a.tar")
    make_tar(archive, good_members())
    d2 = tmp_path / "d2"
    d2.mkdir()
    (d2 / "old.txt").write_text("old")
    r = restore(archive, str(d2))
    assert r.returncode != 0 and "not empty" in r.stderr, r.stderr
    assert (d2 / "old.txt").read_text() == "old"
    # --force replaces what is there; a link already there is removed, not followed.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    os.symlink(str(outside), str(d2 / "drive"))
    r = restore(archive, str(d2), "--force")
    assert r.returncode == 0, r.stderr
    assert (outside / "keep.txt").read_text() == "keep" and sorted(os.listdir(outside)) == ["keep.txt"]
    assert not (d2 / "drive").is_symlink()
    assert (d2 / "drive" / "u" / "a.txt").read_bytes() == b"content"
    assert not (d2 / "old.txt").exists()


def test_backup_refuses_to_write_into_the_data_dir_and_skips_links(tmp_path):
    data = tmp_path / "data"
    (data / "drive" / "u").mkdir(parents=True)
    (data / "drive" / "u" / "f.txt").write_text("f")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the backup")
    os.symlink(str(secret), str(data / "drive" / "u" / "link.txt"))  # as a runtime could make it
    os.mkfifo(str(data / "drive" / "u" / "fifo"))  # and this would block a reader
    (data / "cache" / "u").mkdir(parents=True)
    (data / "cache" / "u" / "pip.whl").write_text("cache")
    r = backup(str(data), str(data / "inside.tar"))
    assert r.returncode != 0 and "inside the data directory" in r.stderr, r.stderr
    archive = str(tmp_path / "b.tar")
    r = backup(str(data), archive)
    assert r.returncode == 0, r.stderr
    names = subprocess.run(["tar", "tf", archive], capture_output=True, text=True, check=True).stdout.split()
    assert "data/drive/u/f.txt" in names
    assert "data/drive/u/link.txt" not in names and "data/drive/u/fifo" not in names
    assert not any("cache" in n for n in names)
    with tarfile.open(archive) as t:
        assert b"not for the backup" not in b"".join(
            t.extractfile(m).read() for m in t.getmembers() if m.isfile())


@needs_root
def test_backup_reads_a_drive_on_a_volume_no_server_has_mounted(tmp_path):
    """With [drive] quota, a user's Drive lives on volumes/<user>.img and is
    only bound at drive/<user> while a server runs; a backup of a stopped
    server must still hold it (read-only, in a mount namespace of its own)."""
    if not shutil.which("mkfs.ext4"):
        pytest.skip("mkfs.ext4 is not installed")
    data = tmp_path / "data"
    seed = tmp_path / "seed"
    (seed / "drive" / "course").mkdir(parents=True)
    (seed / "drive" / "course" / "notes.txt").write_bytes(b"on the volume")
    (seed / "cache").mkdir()
    (data / "volumes").mkdir(parents=True)
    (data / "drive" / "alice").mkdir(parents=True)  # the mount point, empty once the server has gone
    image = data / "volumes" / "alice.img"
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(seed), str(image)], check=True, capture_output=True)
    before = open(image, "rb").read()
    archive = str(tmp_path / "b.tar")
    r = backup(str(data), archive)
    assert r.returncode == 0, r.stderr
    with tarfile.open(archive) as t:
        assert t.extractfile("data/drive/alice/course/notes.txt").read() == b"on the volume"
        assert not any(n.startswith("data/volumes") for n in t.getnames())
    # Nothing stays mounted here, and the image was not written to.
    with open("/proc/self/mounts") as f:
        assert str(tmp_path) not in f.read()
    assert open(image, "rb").read() == before
    assert os.listdir(data / "drive" / "alice") == []


def test_backup_shows_a_progress_bar_on_a_terminal_only(tmp_path):
    import pty
    data = tmp_path / "data"
    (data / "drive" / "u").mkdir(parents=True)
    for i in range(20):
        (data / "drive" / "u" / ("f%d" % i)).write_bytes(os.urandom(100_000))
    master, slave = pty.openpty()
    p = subprocess.Popen([skylab_bin(), "backup", "--data-dir", str(data), str(tmp_path / "a.tar")],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the terminal's other end closed
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert p.wait(60) == 0
    text = out.decode(errors="replace")
    assert "100%" in text and "[" + "#" * 30 + "]" in text, text
    assert "20 files" in text, text
    # Not on a pipe (logs, cron).
    r = backup(str(data), str(tmp_path / "b.tar"))
    assert r.returncode == 0 and "%" not in r.stderr and "\r" not in r.stderr, r.stderr
