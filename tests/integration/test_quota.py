"""Host disk is bounded (issue 12, row 9): kernel logs are capped and
rotated; the Drive has a per-user quota, enforced on the server's write
paths and shown in /api/me."""

import os
import time

import pytest

from conftest import needs_root, needs_sandbox
from test_runtime_files import Owner

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
    # The newest lines are kept (in the log or its rotated copy).
    tail = b""
    for p in (log + ".1", log):
        with open(p, "rb") as f:
            tail += f.read()
    assert b"THE-END" in tail[-(1 << 20):]
    # The kernel was never blocked and still answers.
    assert o.run("print(6 * 7)").strip() == "42"
