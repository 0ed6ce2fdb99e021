"""Kernel and server lifecycle: DELETE and SIGTERM leave no kernel process."""

import os
import signal
import subprocess
import time

import pytest

from conftest import ChildSubreaper, kernel_host_pid, proc_alive, proc_cmdline, wait_gone


def test_new_kernel_first_execute_and_delete(server, connect, framing):
    """Create (name optional), connect and execute at once: no iopub may be
    lost while the kernel is still starting.  Then DELETE kills the process."""
    r = server.post("/api/kernels", json={})
    assert r.status_code == 201, r.text
    m = r.json()
    kid = m["id"]
    server.kernels.append(kid)
    for k in ("id", "name", "last_activity", "execution_state", "connections"):
        assert k in m, m
    assert m["name"] == "python3"
    assert r.headers["Location"].endswith("/api/kernels/" + kid)
    assert kid in [k["id"] for k in server.get("/api/kernels").json()]

    c = connect(kid, framing=framing)
    first = c.execute("print('first'); 40 + 2", timeout=20)
    types = [x["header"]["msg_type"] for x in first.iopub]
    assert types == ["status", "execute_input", "stream", "execute_result", "status"], (
        "iopub of the first execute on a new kernel: %r" % types)
    assert first.stdout == "first\n" and first.result_text == "42"

    pid = kernel_host_pid(c)
    assert proc_alive(pid)
    r = server.delete_kernel(kid)
    assert r.status_code == 204, (r.status_code, r.text)
    alive = wait_gone([pid], timeout=10)
    assert not alive, "kernel process %d still alive after DELETE: %s" % (pid, proc_cmdline(pid))
    assert server.get("/api/kernels/" + kid).status_code == 404
    assert kid not in [k["id"] for k in server.get("/api/kernels").json()]
    assert server.delete("/api/kernels/" + kid).status_code == 404


def test_sigterm_stops_kernels(fresh_server):
    srv = fresh_server
    ChildSubreaper.enable()
    before = set(ChildSubreaper.children())
    k1 = srv.create_kernel()
    k2 = srv.create_kernel()
    c1 = srv.connect(k1, framing="legacy")
    c2 = srv.connect(k2, framing="v1")
    c1.nudge()
    c2.nudge()
    pids = [kernel_host_pid(c1), kernel_host_pid(c2)]
    c1.execute_request("import time; time.sleep(60)")  # one kernel busy
    time.sleep(0.3)
    srv.proc.send_signal(signal.SIGTERM)
    try:
        code = srv.proc.wait(30)
    except subprocess.TimeoutExpired:
        srv.proc.kill()
        srv.proc.wait()
        pytest.fail("server did not exit within 30s of SIGTERM; log:\n" + srv.log_text())
    for c in (c1, c2):
        c.close()
    alive = wait_gone(pids, timeout=10)
    leftovers = [p for p in ChildSubreaper.children() if p not in before and p != srv.proc.pid]
    described = {p: proc_cmdline(p) for p in set(alive) | set(leftovers)}
    for p in described:  # do not leave them behind
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert code == 0, "exit status %r after SIGTERM; log:\n%s" % (code, srv.log_text())
    assert not alive, "kernel processes left after SIGTERM: %r" % described
    assert not leftovers, "processes left after SIGTERM: %r" % described
    srv.kernels.clear()
