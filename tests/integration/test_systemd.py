"""The Debian package under a real systemd (issue 16): installed with dpkg on a
system that systemd booted, started by its units, serving runtimes, and
keeping a running runtime across `systemctl restart skylab`.

systemd 252 boots as PID 1 of new pid, mount, UTS, network and cgroup
namespaces, on an overlay of this machine's root (writes go to a temporary
upper layer): nothing of the host's /usr, /etc, dpkg database or network
changes, and every cgroup it makes lives below a test cgroup removed
afterwards. The machine's Debian 12 packages are the "clean Debian 12"."""

import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import textwrap
import time
import uuid

import pytest

from conftest import REPO, needs_root, skylab_bin
from test_install import deb  # noqa: F401  (the fixture: `make deb` once)

pytestmark = [pytest.mark.skylab_only, needs_root]

SYSTEMD = "/lib/systemd/systemd"

INNER = """#!/bin/sh
set -e
R=%(root)s
mount -t overlay overlay -o lowerdir=/,upperdir=$R/upper,workdir=$R/work $R/merged
mount -t proc proc $R/merged/proc
mount --bind /sys $R/merged/sys
mount -o remount,bind,ro $R/merged/sys
mount --rbind /dev $R/merged/dev
cd $R/merged
mkdir -p .oldroot
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot || true
exec %(systemd)s --system --log-target=console --log-level=warning
"""

# Joins a fresh cgroup (TAG) in every hierarchy, which the new cgroup
# namespace then makes that systemd's root, and starts the namespaces.
OUTER = r"""#!/bin/sh
TAG=$1
for h in /sys/fs/cgroup/*/; do
  [ -f "$h/cgroup.procs" ] || continue
  name=$(basename "$h")
  own=$(awk -F: -v k="$name" '(k=="unified"&&$1=="0")||(k=="systemd"&&$2=="name=systemd")||(index(","$2",", ","k",")>0){print $3; exit}' /proc/self/cgroup)
  [ -n "$own" ] || continue
  d=$(echo "$h/$own/$TAG" | sed 's#//*#/#g')
  mkdir -p "$d" && echo $$ > "$d/cgroup.procs" 2>/dev/null || rmdir "$d" 2>/dev/null
done
exec unshare --pid --fork --mount --uts --net --cgroup --propagation private "$2"
"""

CLIENT = r"""
import json, sys, time
sys.path.insert(0, %(tests)r)
import requests, kclient
token, action = sys.argv[1], sys.argv[2]
base = "http://127.0.0.1:8888"
h = {"Authorization": "token " + token}
for _ in range(300):
    try:
        if requests.get(base + "/api/health", timeout=2).status_code == 200:
            break
    except requests.RequestException:
        pass
    time.sleep(0.1)
if action == "start":
    r = requests.post(base + "/api/kernels", json={"name": "python3"}, headers=h, timeout=120)
    assert r.status_code == 201, (r.status_code, r.text)
    kid = r.json()["id"]
else:
    kid = action
c = kclient.KernelClient("ws://127.0.0.1:8888", kid, token, timeout=120)
code = "x = 41; import os; print(os.getuid())" if action == "start" else "print(x + 1)"
r = c.execute(code, timeout=120)
c.close()
print(json.dumps({"kid": kid, "status": r.status, "stdout": r.stdout}))
"""


class BootedSystemd:
    def __init__(self, tmp):
        self.root = pathlib.Path(tmp)
        for d in ("upper", "work", "merged"):
            (self.root / d).mkdir()
        self.tag = "skylab-systemd-test-" + uuid.uuid4().hex[:8]
        inner = self.root / "inner.sh"
        inner.write_text(INNER % {"root": self.root, "systemd": SYSTEMD})
        outer = self.root / "outer.sh"
        outer.write_text(OUTER)
        for p in (inner, outer):
            p.chmod(0o755)
        # This machine's other services (databases, web servers, Slurm) have
        # no business in the test system: masked in the upper layer.
        masks = self.root / "upper" / "etc" / "systemd" / "system"
        masks.mkdir(parents=True)
        for unit in ("nginx", "caddy", "postgresql", "munge", "slurmd", "slurmctld",
                     "console-getty", "getty@tty1", "ssh", "cron", "systemd-udevd",
                     "systemd-udev-trigger", "systemd-udev-settle"):
            (masks / (unit + ".service")).symlink_to("/dev/null")
        self.log = open(self.root / "boot.log", "wb")
        self.proc = subprocess.Popen([str(outer), self.tag, str(inner)], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.pid = None
        deadline = time.time() + 30
        while time.time() < deadline and self.pid is None:
            try:
                kids = (pathlib.Path("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid))
                        .read_text().split())
            except OSError:
                kids = []
            for k in kids:
                try:
                    if os.readlink("/proc/%s/exe" % k) == os.path.realpath(SYSTEMD):
                        self.pid = int(k)
                except OSError:
                    pass
            time.sleep(0.1)
        if self.pid is None:
            self.close()
            pytest.fail("systemd did not start:\n" + self.boot_log())
        # systemctl answers only once systemd has set up /run: ask until then.
        deadline = time.time() + 120
        while True:
            r = self.sh("systemctl is-system-running --wait", timeout=120, check=False)
            if r.stdout.strip() in ("running", "degraded") or time.time() > deadline:
                break
            time.sleep(0.5)
        if r.stdout.strip() not in ("running", "degraded"):
            log = self.boot_log()
            self.close()
            pytest.fail("systemd did not finish booting (%s):\n%s" % (r.stdout, log))

    def boot_log(self):
        return (self.root / "boot.log").read_text(errors="replace")[-4000:]

    def sh(self, command, timeout=120, check=True, net_only=False):
        """Runs a shell command inside the booted system (net_only: only in
        its network namespace, with this machine's files)."""
        ns = ["nsenter", "-t", str(self.pid)] + (["-n"] if net_only else ["-a"])
        r = subprocess.run(ns + ["sh", "-c", command], capture_output=True, text=True,
                           timeout=timeout)
        if check:
            assert r.returncode == 0, (command, r.returncode, r.stdout, r.stderr)
        return r

    def put(self, path, data, mode=0o644):
        """Writes a file inside the booted system (through its own mounts)."""
        if isinstance(data, str):
            data = data.encode()
        d = os.path.dirname(path)
        r = subprocess.run(["nsenter", "-t", str(self.pid), "-a", "sh", "-c",
                            'mkdir -p "$1" && cat > "$2" && chmod %o "$2"' % mode, "sh", d, path],
                           input=data, capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr

    def close(self):
        if self.pid:
            try:
                os.kill(self.pid, 9)  # the namespace's init: everything in it goes
            except OSError:
                pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        # The cgroups that systemd made, below our TAG in every hierarchy.
        for h in pathlib.Path("/sys/fs/cgroup").iterdir():
            for d in sorted(h.rglob(self.tag), key=lambda p: -len(str(p))) if h.is_dir() else []:
                for sub in sorted((x for x in d.rglob("*") if x.is_dir()),
                                  key=lambda p: -len(str(p))) + [d]:
                    for _ in range(50):
                        try:
                            sub.rmdir()
                            break
                        except FileNotFoundError:
                            break
                        except OSError:
                            time.sleep(0.1)


@pytest.fixture
def systemd(tmp_path_factory):
    if not os.access(SYSTEMD, os.X_OK) or not shutil.which("unshare") or not shutil.which("nsenter"):
        pytest.skip("systemd, unshare or nsenter is missing")
    tmp = tempfile.mkdtemp(prefix="skylab-systemd-")
    sd = BootedSystemd(tmp)
    try:
        yield sd
    finally:
        sd.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _client(sd, token, action):
    r = sd.sh("/usr/bin/python3 - %s %s <<'EOF'\n%s\nEOF" % (
        token, action, CLIENT % {"tests": str(REPO / "tests" / "integration")}),
        net_only=True, timeout=300)
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_the_package_installs_and_runs_under_systemd(systemd, deb):  # noqa: F811
    sd = systemd
    # A server has a default route (pasta, the runtimes' NAT, wants one): a
    # veth pair stands in for the machine's network card.
    sd.sh("ip link add sk0 type veth peer name sk1 && ip addr add 10.213.250.2/30 dev sk0 && "
          "ip addr add 10.213.250.1/30 dev sk1 && ip link set sk0 up && ip link set sk1 up && "
          "ip route add default via 10.213.250.1 dev sk0")
    sd.put("/root/skylab.deb", deb.read_bytes())
    r = sd.sh("dpkg -i /root/skylab.deb", timeout=300)
    assert "skylab: started" in r.stdout
    assert sd.sh("systemctl is-active skylab.service skylab-runtimes.service").stdout.split() == [
        "active", "active"]
    assert sd.sh("systemctl is-enabled skylab.service").stdout.strip() == "enabled"
    # The server runs as the unit's main process, in the unit's cgroup.
    main = sd.sh("systemctl show -p MainPID --value skylab.service").stdout.strip()
    assert "/system.slice/skylab.service" in sd.sh("cat /proc/%s/cgroup" % main).stdout

    # An operator's token (a drop-in), then a runtime through the API.
    token = uuid.uuid4().hex
    sd.put("/etc/systemd/system/skylab.service.d/token.conf",
           "[Service]\nEnvironment=SKYLAB_ADMIN_TOKEN=%s\n" % token)
    sd.sh("systemctl daemon-reload && systemctl restart skylab.service")
    first = _client(sd, token, "start")
    assert first["status"] == "ok", first
    assert int(first["stdout"].strip()) >= 200000  # the runtime's own uid, not root

    # `systemctl restart skylab` (an upgrade, a config change) keeps the runtime.
    sd.sh("systemctl restart skylab.service")
    again = _client(sd, token, first["kid"])
    assert again["status"] == "ok" and again["stdout"].strip() == "42", again

    # Removing the package ends the server cleanly (no failed unit) and every
    # runtime with it.
    assert "ipykernel" in sd.sh("ps -eo args").stdout
    sd.sh("dpkg -r skylab", timeout=300)
    states = sd.sh("systemctl is-active skylab.service skylab-runtimes.service",
                   check=False).stdout.split()
    assert states == ["inactive", "inactive"], states
    assert sd.sh("systemctl is-failed skylab.service", check=False).stdout.strip() == "inactive"
    assert "ipykernel" not in sd.sh("ps -eo args").stdout
