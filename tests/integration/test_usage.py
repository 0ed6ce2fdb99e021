"""Usage and quotas people can see, and the admin API (issue 16): the ledger
counts runtime and GPU time per user and survives a restart; a weekly GPU
quota refuses admission with the time it refills, warns before it runs out
and ends the runtime when it has; /api/skylab/admin/* is for administrators
only; administrators' actions and shares land in the audit log."""

import datetime
import json
import os
import subprocess
import time

import pytest

from conftest import SERVER_KIND, Server, _stop_server, server_with_config, skylab_bin
from test_accounts import add_user, new_token, token_session

pytestmark = pytest.mark.skipif(SERVER_KIND != "skylab", reason="Skylab usage ledger")

GPUS = """
[runtimes]
idle_timeout = "1h"
[runtime_types.gpu]
gpus = 1
[gpus]
fake = 2
[quotas]
gpu_hours_per_week = 0
[quotas.users.rich]
gpu_hours_per_week = 100
[quotas.users.rich2]
gpu_hours_per_week = 100
[quotas.users.short]
gpu_hours_per_week = 0.005
[quotas.groups.admins]
gpu_hours_per_week = 7
"""



@pytest.fixture
def gpu_server():
    srv = server_with_config(GPUS.replace('idle_timeout = "1h"', 'idle_timeout = "1h"\nwarning = "12s"\ngrace = "3s"'))
    yield srv
    if srv.proc.poll() is None:
        _stop_server(srv)
    else:
        srv.cleanup_tmp()


@pytest.fixture
def plain_server(tmp_path):
    # The config stays on disk: the ledger test restarts the server.
    cfg = tmp_path / "skylab.toml"
    cfg.write_text("[runtimes]\nidle_timeout = \"1h\"\n")
    srv = Server(extra_args=("--config", str(cfg)))
    yield srv
    if srv.proc.poll() is None:
        _stop_server(srv)
    else:
        srv.cleanup_tmp()


class User:
    def __init__(self, srv, name, admin=False):
        self.srv = srv
        self.name = name
        add_user(srv, name, "password-of-" + name, admin=admin)
        self.s = token_session(new_token(srv, name))

    def req(self, method, path, **kw):
        kw.setdefault("timeout", 120)
        return self.s.request(method, self.srv.url(path), **kw)

    def usage(self):
        r = self.req("GET", "/api/skylab/usage")
        assert r.status_code == 200, r.text
        return r.json()


def wait_until(pred, timeout=30, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.3)
    raise AssertionError("timed out waiting for " + what)


def test_ledger_counts_a_runtime_and_survives_a_restart(plain_server):
    srv = plain_server
    u = User(srv, "ledgerer")
    first = u.usage()
    assert first["user"] == "ledgerer" and first["runtime_seconds"] == 0 and first["running"] == 0, first
    assert first["limits"]["gpu_hours_per_week"] is None
    assert first["limits"]["storage_bytes"] == 10 << 30
    start = datetime.datetime.strptime(first["week"]["start"][:19], "%Y-%m-%dT%H:%M:%S")
    assert start.strftime("%A %H:%M:%S") == "Monday 00:00:00", first["week"]
    assert start <= datetime.datetime.utcnow() < start + datetime.timedelta(days=7), first["week"]
    r = u.req("POST", "/api/kernels", json={"name": "python3"})
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    a = wait_until(lambda: (lambda j: j if j["runtime_seconds"] > 0 and j["running"] == 1 else None)(u.usage()),
                   what="runtime seconds > 0")
    assert a["by_type"]["cpu"]["runtime_hours"] >= 0 and a["gpu_seconds"] == 0, a
    b = wait_until(lambda: (lambda j: j if j["runtime_seconds"] > a["runtime_seconds"] else None)(u.usage()),
                   what="runtime seconds to grow")
    # Another user sees nothing of it.
    assert User(srv, "bystander").usage()["runtime_seconds"] == 0
    # A crash and a restart: the runtime outlives the server, is reattached,
    # and its time goes on from the ledger (counted through the gap).
    srv.kill_and_restart()
    c = u.usage()
    assert c["running"] == 1 and c["runtime_seconds"] >= b["runtime_seconds"], (b, c)
    wait_until(lambda: u.usage()["runtime_seconds"] > c["runtime_seconds"], what="growth after the restart")
    assert u.req("DELETE", "/api/kernels/" + kid).status_code == 204
    d = wait_until(lambda: (lambda j: j if j["running"] == 0 else None)(u.usage()), what="the runtime to end")
    assert d["runtime_seconds"] >= c["runtime_seconds"], (c, d)
    # Ended runtimes stay counted across another restart.
    assert srv.terminate() == 0
    srv.restart()
    e = u.usage()
    assert e["running"] == 0 and e["runtime_seconds"] >= d["runtime_seconds"] - 1, (d, e)


def test_gpu_quota_refuses_with_the_refill_time_per_user_and_group(gpu_server):
    srv = gpu_server
    poor = User(srv, "poor")
    r = poor.req("POST", "/api/skylab/runtimes", json={"type": "gpu"})
    assert r.status_code == 409, r.text
    msg = r.json()["message"]
    refill = poor.usage()["quota_refills"]
    assert "GPU" in msg and "refills at " + refill in msg, (msg, refill)
    assert datetime.datetime.strptime(refill[:19], "%Y-%m-%dT%H:%M:%S").strftime("%A %H:%M:%S") == "Monday 00:00:00", refill
    # The Jupyter kernels API with a GPU default is refused the same way; CPU runtimes are not limited.
    r = poor.req("POST", "/api/skylab/runtimes", json={"type": "cpu"})
    assert r.status_code == 201, r.text
    poor.req("DELETE", "/api/skylab/runtimes/" + r.json()["id"])
    u = poor.usage()
    assert u["limits"]["gpu_hours_per_week"] == 0 and u["gpu_hours"] == 0, u
    # A user of their own: admitted; an administrator: the "admins" group's limit.
    rich = User(srv, "rich")
    r = rich.req("POST", "/api/skylab/runtimes", json={"type": "gpu"})
    assert r.status_code == 201, r.text
    assert rich.usage()["limits"]["gpu_hours_per_week"] == 100
    wait_until(lambda: rich.usage()["gpu_seconds"] > 0, what="GPU seconds")
    assert rich.req("DELETE", "/api/skylab/runtimes/" + r.json()["id"]).status_code == 204
    boss = User(srv, "boss", admin=True)
    assert boss.usage()["limits"]["gpu_hours_per_week"] == 7


def test_gpu_quota_warns_then_ends_the_runtime(gpu_server):
    srv = gpu_server
    u = User(srv, "short")
    r = u.req("POST", "/api/skylab/runtimes", json={"type": "gpu"})
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    c = srv.connect(kid)
    c.nudge()
    warning = c.wait_for(lambda m: m["msg_type"] == "skylab_runtime_event" and m["content"]["event"] == "warning",
                         timeout=30, what="quota warning")
    assert warning["content"]["reason"] == "quota", warning["content"]
    assert 0 <= warning["content"]["seconds_left"] <= 18, warning["content"]
    c.wait_for(lambda m: m["msg_type"] == "skylab_runtime_event" and m["content"]["event"] == "expiring",
               timeout=40, what="quota expiry")
    wait_until(lambda: srv.get("/api/kernels/" + kid).status_code == 404, timeout=30, what="the runtime to end")
    # Used up: the next GPU runtime is refused.
    used = u.usage()
    assert used["gpu_seconds"] >= 17, used
    r = u.req("POST", "/api/skylab/runtimes", json={"type": "gpu"})
    assert r.status_code == 409 and "refills at" in r.json()["message"], r.text


def batch_run(srv, tmp_path, user, runtime, source, config):
    """`skylab run --runtime` on the server's data directory, as `user`."""
    nb = tmp_path / "batch.ipynb"
    nb.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "id": "a", "metadata": {}, "execution_count": None, "outputs": [],
         "source": source}]}))
    cfg = tmp_path / "run.toml"
    cfg.write_text(config)
    return subprocess.Popen([skylab_bin(), "run", str(nb), "--quiet", "--runtime", runtime, "--config", str(cfg),
                             "--data-dir", srv.data_dir, "--user", user],
                            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, TMPDIR=str(tmp_path)))


def test_a_batch_runs_runtime_counts_for_its_user_while_it_runs(plain_server, tmp_path):
    """`skylab run --runtime` beside a server on the same data directory: the
    run records its runtime in the ledger as a writer of its own; the server
    shows it running in the user's week and keeps its time after it ends."""
    u = User(plain_server, "batcher")
    p = batch_run(plain_server, tmp_path, "batcher", "cpu", "import time\ntime.sleep(6)",
                  '[runtimes]\nidle_timeout = "1h"\n')
    try:
        during = wait_until(lambda: (lambda j: j if j["running"] == 1 and j["runtime_seconds"] > 0 else None)(u.usage()),
                            timeout=60, what="the run's runtime in the server's ledger")
        assert during["by_type"]["cpu"]["runtime_hours"] > 0, during
        assert User(plain_server, "bystander2").usage()["running"] == 0
        assert p.wait(timeout=120) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
    after = wait_until(lambda: (lambda j: j if j["running"] == 0 else None)(u.usage()), what="the run to end")
    assert after["runtime_seconds"] >= max(5, during["runtime_seconds"]), (during, after)


def test_a_batch_run_gets_the_gpu_quota_of_its_user(gpu_server, tmp_path):
    """The weekly GPU hours hold for `skylab run --runtime` too: a user with
    none left is refused with when they refill, and nothing is recorded."""
    poor = User(gpu_server, "poor-batch")
    p = batch_run(gpu_server, tmp_path, "poor-batch", "gpu", "print('never')", GPUS)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 1, err
    assert "GPU hours" in err and "refills at " + poor.usage()["quota_refills"] in err, err
    time.sleep(1.5)  # the server's ledger reads the others' rows once a second
    u = poor.usage()
    assert u["runtime_seconds"] == 0 and u["running"] == 0, u


def test_admin_sees_the_gpu_queue(gpu_server):
    srv = gpu_server
    boss = User(srv, "boss", admin=True)
    holders = [User(srv, "rich"), boss]
    ids = []
    for u in holders:
        r = u.req("POST", "/api/skylab/runtimes", json={"type": "gpu"})
        assert r.status_code == 201, r.text
        ids.append((u, r.json()["id"]))
    waiter = User(srv, "rich2")
    r = waiter.req("POST", "/api/skylab/runtimes", json={"type": "gpu"})
    assert r.status_code == 202 and r.json()["state"] == "queued", r.text
    queued = r.json()["id"]
    rt = boss.req("GET", "/api/skylab/admin/runtimes").json()
    assert rt["gpus"]["total"] == 2
    assert sorted(len(k["gpus"]) for k in rt["runtimes"]) == [1, 1], rt
    assert [(q["id"], q["owner"], q["state"], q["position"]) for q in rt["queue"]] == [(queued, "rich2", "queued", 1)], rt
    # The administrator takes the waiter out of the queue.
    assert boss.req("DELETE", "/api/skylab/admin/runtimes/" + queued).status_code == 204
    assert boss.req("GET", "/api/skylab/admin/runtimes").json()["queue"] == []
    for u, kid in ids:
        assert u.req("DELETE", "/api/skylab/runtimes/" + kid).status_code == 204


ADMIN_ROUTES = [
    ("GET", "/api/skylab/admin/runtimes"),
    ("DELETE", "/api/skylab/admin/runtimes/00000000-0000-0000-0000-000000000000"),
    ("GET", "/api/skylab/admin/usage"),
    ("GET", "/api/skylab/admin/audit"),
    ("GET", "/api/skylab/users"),
    ("POST", "/api/skylab/users"),
    ("PATCH", "/api/skylab/users/someone"),
]


def test_admin_routes_refuse_non_admins(plain_server):
    srv = plain_server
    user = User(srv, "pleb")
    victim = User(srv, "victim")
    r = victim.req("POST", "/api/kernels", json={"name": "python3"})
    assert r.status_code == 201
    kid = r.json()["id"]
    for method, path in ADMIN_ROUTES + [("DELETE", "/api/skylab/admin/runtimes/" + kid)]:
        body = {"username": "x" + "y" * 5, "password": "long-enough-1"} if method in ("POST", "PATCH") else None
        r = user.req(method, path, json=body)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
    # The victim's runtime is untouched.
    assert victim.req("GET", "/api/kernels/" + kid).status_code == 200
    # An administrator gets answers.
    admin = User(srv, "chief", admin=True)
    for method, path in ADMIN_ROUTES:
        if method == "GET":
            assert admin.req(method, path).status_code == 200, path
    victim.req("DELETE", "/api/kernels/" + kid)


def test_admin_sees_runtimes_stops_one_and_the_audit_log_records_it(plain_server):
    srv = plain_server
    admin = User(srv, "chief", admin=True)
    alice = User(srv, "alice")
    r = alice.req("POST", "/api/kernels", json={"name": "python3"})
    assert r.status_code == 201
    kid = r.json()["id"]
    wait_until(lambda: alice.usage()["runtime_seconds"] > 0, what="alice's time")
    rt = admin.req("GET", "/api/skylab/admin/runtimes").json()
    mine = [x for x in rt["runtimes"] if x["id"] == kid]
    assert len(mine) == 1, rt
    assert mine[0]["owner"] == "alice" and mine[0]["type"] == "cpu" and mine[0]["age_seconds"] >= 0, mine
    assert "memory_bytes" in mine[0] and mine[0]["gpus"] == [] and rt["queue"] == [], mine
    usage = admin.req("GET", "/api/skylab/admin/usage").json()
    row = [x for x in usage["users"] if x["user"] == "alice"]
    assert row and row[0]["runtime_seconds"] > 0 and row[0]["running"] == 1, usage
    # Stop it.
    assert admin.req("DELETE", "/api/skylab/admin/runtimes/" + kid).status_code == 204
    wait_until(lambda: alice.req("GET", "/api/kernels/" + kid).status_code == 404, what="the runtime to stop")
    assert admin.req("DELETE", "/api/skylab/admin/runtimes/" + kid).status_code == 404
    # Account actions through the existing users API.
    assert admin.req("POST", "/api/skylab/users", json={"username": "newbie", "password": "long-enough-1"}).status_code == 201
    assert admin.req("PATCH", "/api/skylab/users/newbie", json={"disabled": True}).status_code == 200
    assert admin.req("PATCH", "/api/skylab/users/newbie", json={"password": "another-long-1", "admin": True}).status_code == 200
    # Shares made and ended.
    nb = {"type": "notebook", "format": "json",
          "content": {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}}
    assert alice.req("PUT", "/api/contents/shared.ipynb", json=nb).status_code in (200, 201)
    s = alice.req("POST", "/api/skylab/shares", json={"path": "shared.ipynb", "user": "chief"})
    assert s.status_code == 201, s.text
    assert alice.req("DELETE", "/api/skylab/shares/" + s.json()["id"]).status_code == 204
    log = admin.req("GET", "/api/skylab/admin/audit").json()
    got = [(e["actor"], e["action"], e["target"]) for e in log]
    for want in [("chief", "runtime.stop", "alice"), ("chief", "user.add", "newbie"),
                 ("chief", "user.disable", "newbie"), ("chief", "user.password", "newbie"),
                 ("chief", "user.admin", "newbie"), ("alice", "share.create", "chief")]:
        assert want in got, (want, got)
    assert any(a == "alice" and act == "share.delete" for a, act, _ in got), got
    assert [e["id"] for e in log] == sorted((e["id"] for e in log), reverse=True)
    # No password in any entry.
    assert not any("long-enough" in str(e) or "another-long" in str(e) for e in log), log
    # Paging.
    older = admin.req("GET", "/api/skylab/admin/audit", params={"before": log[0]["id"], "limit": 2}).json()
    assert [e["id"] for e in older] == [e["id"] for e in log[1:3]]
    assert admin.req("GET", "/api/skylab/admin/audit", params={"limit": "x"}).status_code == 400
