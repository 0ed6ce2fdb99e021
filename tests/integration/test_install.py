"""`make install` and `make deb` (issue 16, Install): the installed layout,
the installed binary serving the app and running a kernel from it, the
Debian package's contents, and the systemd unit passing systemd-analyze.

Nothing here touches the host's /usr, /etc or dpkg database: everything is
installed under a DESTDIR in a temporary folder."""

import os
import pathlib
import re
import shutil
import stat
import subprocess
import tempfile

import pytest
import requests

from conftest import REPO, Server, _stop_server, needs_root, needs_sandbox, skylab_bin

pytestmark = pytest.mark.skylab_only

BUILD = pathlib.Path(skylab_bin()).resolve().parent
PREFIX = "/usr/local"


def _built():
    if not (BUILD / "web" / "index.html").is_file():
        pytest.fail("the web app is not built in %s (make web BUILD=%s)" % (BUILD, BUILD))


@pytest.fixture(scope="module")
def destdir():
    _built()
    tmp = tempfile.mkdtemp(prefix="skylab-install-")
    dest = os.path.join(tmp, "root")
    r = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "install", "BUILD=%s" % BUILD,
                        "DESTDIR=%s" % dest], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    yield pathlib.Path(dest)
    shutil.rmtree(tmp, ignore_errors=True)


def _mode(p):
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_make_install_lays_out_the_files(destdir):
    pre = destdir / PREFIX.lstrip("/")
    binary = pre / "bin" / "skylab"
    assert binary.is_file() and _mode(binary) == 0o755
    assert (pre / "share/skylab/web/index.html").is_file()
    assert any((pre / "share/skylab/web/static").iterdir())
    assert (pre / "share/skylab/examples/mnist_dense.ipynb").is_file()
    assert (pre / "lib/skylab/python/skylab/__init__.py").is_file()
    assert (pre / "lib/skylab/python/google/colab/__init__.py").is_file()
    assert not list((pre / "lib/skylab/python").rglob("__pycache__"))
    assert (pre / "share/doc/skylab/configuration.md").is_file()
    unit = (pre / "lib/systemd/system/skylab.service").read_text()
    assert ("ExecStart=%s/bin/skylab serve --keep-runtimes --config /etc/skylab/skylab.toml "
            "--data-dir /var/lib/skylab" % PREFIX) in unit
    assert "@" not in unit.replace("@localhost", ""), "an unfilled @PLACEHOLDER@ in the unit"
    assert "Wants=network-online.target skylab-runtimes.service" in unit
    runtimes_unit = (pre / "lib/systemd/system/skylab-runtimes.service").read_text()
    assert "ExecStart=%s/bin/skylab cgroup-hold" % PREFIX in runtimes_unit
    assert "@" not in runtimes_unit, "an unfilled @PLACEHOLDER@ in skylab-runtimes.service"
    # The packaged config puts runtimes' cgroups below that unit's (cgroup v2).
    assert 'cgroup_parent = "/system.slice/skylab-runtimes.service"' in (
        destdir / "etc/skylab/skylab.toml").read_text()
    conf = destdir / "etc/skylab/skylab.toml"
    assert conf.is_file() and _mode(conf) == 0o644
    default = destdir / "etc/default/skylab"
    assert default.is_file() and _mode(default) == 0o600  # may hold the admin token
    state = destdir / "var/lib/skylab"
    assert state.is_dir() and _mode(state) == 0o711
    # Nothing installed through a symbolic link, nothing world-writable.
    for p in destdir.rglob("*"):
        assert not p.is_symlink(), p
        assert not _mode(p) & 0o002, p


def test_make_install_keeps_an_edited_config(destdir):
    conf = destdir / "etc/skylab/skylab.toml"
    original = conf.read_text()
    conf.write_text(original + "\n# edited by the operator\n")
    try:
        r = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "install", "BUILD=%s" % BUILD,
                            "DESTDIR=%s" % destdir], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert conf.read_text().endswith("# edited by the operator\n")
        assert (destdir / "etc/skylab/skylab.toml.dist").read_text() == original
    finally:
        conf.write_text(original)
        (destdir / "etc/skylab/skylab.toml.dist").unlink(missing_ok=True)


@needs_root
@needs_sandbox
def test_installed_binary_serves_the_app_and_runs_a_kernel(destdir, monkeypatch):
    """The installed binary finds its web app, examples and Python helpers in
    the installed layout (share/skylab, lib/skylab), with the installed
    default config and data directory."""
    pre = destdir / PREFIX.lstrip("/")
    monkeypatch.setenv("SKYLAB_BIN", str(pre / "bin" / "skylab"))
    data = destdir / "var/lib/skylab"
    srv = Server(extra_args=("--config", str(destdir / "etc/skylab/skylab.toml"), "--data-dir", str(data)))
    try:
        log = srv.log_text(10 ** 6)
        assert "browser app is not built" not in log, log
        # The bundles the installed app page names, served from share/skylab/web.
        index = (pre / "share/skylab/web/index.html").read_text()
        assets = re.findall(r'/static/[A-Za-z0-9._-]+', index)
        assert assets, index
        for a in assets:
            r = requests.get(srv.url(a), timeout=10)
            assert r.status_code == 200, a
            assert r.content == (pre / "share/skylab/web" / a.lstrip("/")).read_bytes()
        # The gallery from share/skylab/examples.
        ex = srv.get("/api/skylab/examples")
        assert ex.status_code == 200, ex.text
        assert "mnist_dense" in [e["name"] for e in ex.json()]
        # A kernel in the sandbox, with the helpers from lib/skylab/python.
        kid = srv.create_kernel()
        c = srv.connect(kid)
        r = c.execute("import skylab, google.colab.files as f, os\n"
                      "print(os.path.realpath(skylab.__file__))\n"
                      "print(os.getuid())")
        assert r.status == "ok", r
        where, uid = r.stdout.split()
        assert where.startswith("/opt/skylab/python/skylab/"), where
        # The data directory is the installed one.
        assert (data / "skylab.db").exists() and (data / "drive.db").exists()
    finally:
        _stop_server(srv)


def _systemd_analyze():
    exe = shutil.which("systemd-analyze")
    if not exe:
        pytest.skip("systemd-analyze is not installed (apt install systemd)")
    return exe


def test_systemd_analyze_verify_passes_on_the_unit(destdir, tmp_path):
    exe = _systemd_analyze()
    pre = destdir / PREFIX.lstrip("/")
    paths = []
    for name in ("skylab.service", "skylab-runtimes.service"):
        text = (pre / "lib/systemd/system" / name).read_text()
        # verify checks that ExecStart's binary exists: point it at the installed
        # one (the host's /usr/local/bin has none); the rest is the unit as installed.
        text = text.replace("ExecStart=%s/bin/skylab" % PREFIX, "ExecStart=%s/bin/skylab" % pre)
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
        if name == "skylab.service":
            unit = text
    r = subprocess.run([exe, "verify", "--man=no", *paths], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "skylab" not in r.stdout + r.stderr, r.stdout + r.stderr  # no warning about either
    # And verify does catch a broken unit (the check is real).
    broken = tmp_path / "broken" / "skylab.service"
    broken.parent.mkdir()
    broken.write_text(unit.replace("ExecStart=%s/bin/skylab" % pre, "ExecStart=%s/bin/nothing-here" % pre))
    r = subprocess.run([exe, "verify", "--man=no", str(broken)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0


@pytest.fixture(scope="module")
def deb():
    _built()
    r = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "deb", "BUILD=%s" % BUILD],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    path = pathlib.Path(r.stdout.strip().splitlines()[-1])
    assert path.is_file(), r.stdout
    return path


def test_make_deb_builds_a_package(deb):
    version = subprocess.run([skylab_bin(), "--version"], capture_output=True, text=True).stdout.split()[1]
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    assert deb.name == "skylab_%s_%s.deb" % (version, arch)

    info = subprocess.run(["dpkg-deb", "-I", str(deb)], capture_output=True, text=True, check=True).stdout
    fields = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True).stdout
    depends = re.search(r"^Depends: (.*)$", fields, re.M).group(1)
    names = [d.strip().split()[0] for d in depends.split(",")]
    for runtime in ("bubblewrap", "python3-ipykernel", "python3-jupyter-client", "passt", "iproute2",
                    "e2fsprogs", "libzmq5", "libsqlite3-0", "libsodium23", "libssl3"):
        assert runtime in names, (runtime, depends)
    for script in ("postinst", "prerm", "postrm", "conffiles", "md5sums"):
        assert script in info, info

    with tempfile.TemporaryDirectory() as t:
        subprocess.run(["dpkg-deb", "-e", str(deb), t], check=True)
        conffiles = pathlib.Path(t, "conffiles").read_text().split()
        assert sorted(conffiles) == ["/etc/default/skylab", "/etc/skylab/skylab.toml"]
        postinst = pathlib.Path(t, "postinst").read_text()
        assert "/var/lib/skylab" in postinst and "daemon-reload" in postinst and "enable" in postinst
        for s in ("postinst", "prerm", "postrm"):
            assert _mode(pathlib.Path(t, s)) == 0o755
            r = subprocess.run(["sh", "-n", str(pathlib.Path(t, s))], capture_output=True, text=True)
            assert r.returncode == 0, (s, r.stderr)

    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    entries = {}
    for line in listing.splitlines():
        parts = line.split(None, 5)
        entries[parts[5].split(" -> ")[0]] = (parts[0], parts[1])
    for path in ("./usr/bin/skylab", "./usr/share/skylab/web/index.html", "./usr/share/skylab/examples/mnist_dense.ipynb",
                 "./usr/lib/skylab/python/skylab/__init__.py", "./lib/systemd/system/skylab.service",
                 "./lib/systemd/system/skylab-runtimes.service",
                 "./etc/skylab/skylab.toml", "./etc/default/skylab", "./var/lib/skylab/",
                 "./usr/share/doc/skylab/operations.md"):
        assert path in entries, path
    assert all(owner == "root/root" for _, owner in entries.values())
    assert entries["./etc/default/skylab"][0] == "-rw-------"
    assert entries["./var/lib/skylab/"][0] == "drwx--x--x"


@needs_root
def test_deb_installs_into_an_alternate_root(deb, tmp_path):
    """dpkg --root into an empty tree (never this machine's own dpkg database):
    the files land where the package says, the conffiles are registered."""
    root = tmp_path / "root"
    (root / "var/lib/dpkg/updates").mkdir(parents=True)
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text("")
    # No maintainer scripts here (they would run chrooted in an empty tree)
    # and no dependencies (the tree has no packages): the unpack is what is tested.
    r = subprocess.run(["dpkg", "--root=%s" % root, "--force-depends",
                        "--force-not-root", "--unpack", str(deb)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (root / "usr/bin/skylab").is_file()
    assert (root / "lib/systemd/system/skylab.service").is_file()
    status = subprocess.run(["dpkg-query", "--admindir=%s" % (root / "var/lib/dpkg"), "-W", "-f",
                             "${Status} ${Conffiles}", "skylab"], capture_output=True, text=True)
    assert "unpacked" in status.stdout and "/etc/skylab/skylab.toml" in status.stdout, status.stdout + status.stderr
