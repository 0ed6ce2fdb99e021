"""A one-node Slurm cluster for the Slurm backend's tests, started as root in
a temp folder: munged with its own key and socket, slurmctld and slurmd with a
generated slurm.conf on free 127.0.0.1 ports. Clients find it through
SLURM_CONF (see SlurmCluster.env)."""

import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing_reason():
    """Why no cluster can start here, or None."""
    for b in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo"):
        if not shutil.which(b) and not os.path.exists("/usr/sbin/" + b):
            return "%s is not installed (apt-get install slurm-wlm munge)" % b
    if os.geteuid() != 0:
        return "the test cluster runs as root"
    return None


def _bin(name):
    return shutil.which(name) or "/usr/sbin/" + name


class SlurmCluster:
    def __init__(self):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="skylab-slurm-"))
        os.chmod(self.dir, 0o755)
        self.host = socket.gethostname().split(".")[0]
        self.procs = []
        self.conf = self.dir / "slurm.conf"
        self.munge_socket = self.dir / "munge.socket"

    @property
    def env(self):
        e = dict(os.environ)
        e["SLURM_CONF"] = str(self.conf)
        return e

    def run(self, *argv, check=True):
        # cwd: sbatch --wrap jobs write their slurm-<id>.out there, not into the checkout.
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True, check=check, timeout=30,
                              cwd=self.dir)

    def start(self, cpus=2):
        d = self.dir
        (d / "state").mkdir()
        (d / "spool").mkdir()
        (d / "munge.key").write_bytes(secrets.token_bytes(1024))
        os.chmod(d / "munge.key", 0o400)
        self.procs.append(subprocess.Popen(
            [_bin("munged"), "-F", "--force", "--socket=%s" % self.munge_socket, "--key-file=%s" % (d / "munge.key"),
             "--pid-file=%s" % (d / "munged.pid"), "--log-file=%s" % (d / "munged.log"),
             "--seed-file=%s" % (d / "munged.seed")],
            stdout=subprocess.DEVNULL, stderr=open(d / "munged.err", "w")))
        self._wait(lambda: self.munge_socket.exists(), "munged", 20)
        mem = 2048
        self.conf.write_text("\n".join([
            "ClusterName=skylabtest",
            "SlurmctldHost=%s(127.0.0.1)" % self.host,
            "SlurmUser=root",
            "SlurmdUser=root",
            "SlurmctldPort=%d" % free_port(),
            "SlurmdPort=%d" % free_port(),
            "AuthType=auth/munge",
            "CredType=cred/munge",
            "AuthInfo=socket=%s" % self.munge_socket,
            "StateSaveLocation=%s" % (d / "state"),
            "SlurmdSpoolDir=%s" % (d / "spool"),
            "SlurmctldPidFile=%s" % (d / "slurmctld.pid"),
            "SlurmdPidFile=%s" % (d / "slurmd.pid"),
            "SlurmctldLogFile=%s" % (d / "slurmctld.log"),
            "SlurmdLogFile=%s" % (d / "slurmd.log"),
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "MpiDefault=none",
            "ReturnToService=2",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=sched_interval=1",
            "MinJobAge=300",
            "KillWait=5",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "NodeName=%s NodeAddr=127.0.0.1 CPUs=%d RealMemory=%d State=UNKNOWN" % (self.host, cpus, mem),
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO",
            "",
        ]))
        for daemon in ("slurmctld", "slurmd"):
            self.procs.append(subprocess.Popen([_bin(daemon), "-D", "-f", str(self.conf)], env=self.env,
                                               stdout=open(d / (daemon + ".out"), "w"), stderr=subprocess.STDOUT))
            if daemon == "slurmctld":
                self._wait(lambda: self.run("sinfo", "-h", check=False).returncode == 0, "slurmctld", 40)
        self._wait(lambda: self.node_state() == "idle", "slurmd (node idle)", 60)
        return self

    def node_state(self):
        r = self.run("sinfo", "-h", "-N", "-o", "%t", check=False)
        return r.stdout.strip()

    def _wait(self, cond, what, timeout):
        end = time.time() + timeout
        while time.time() < end:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError("%s exited early (%s); logs in %s: %s" % (p.args[0], p.returncode, self.dir, self.logs()))
            if cond():
                return
            time.sleep(0.3)
        raise RuntimeError("%s did not come up in %ss: %s" % (what, timeout, self.logs()))

    def logs(self):
        out = []
        for f in ("munged.err", "slurmctld.out", "slurmd.out", "slurmctld.log", "slurmd.log"):
            p = self.dir / f
            if p.exists():
                out.append("== %s ==\n%s" % (f, p.read_text()[-2000:]))
        return "\n".join(out)

    def jobs(self):
        """{job id: state} of every job squeue lists."""
        r = self.run("squeue", "-h", "-a", "-t", "all", "-o", "%i %T")
        return dict(line.split() for line in r.stdout.splitlines() if line.strip())

    def stop(self):
        self.run("scancel", "--full", "-u", "root", check=False) if self.conf.exists() else None
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
