#!/usr/bin/python3
"""How long `userdata.get` takes in a real sandboxed runtime: the kernel's
stdin request, the server's session lookup, SQLite read and decryption, the
reply on the kernel's stdin.

    /usr/bin/python3 bench/secrets_bench.py             # 200 reads per size
    /usr/bin/python3 bench/secrets_bench.py --reads 50

Measured inside the kernel with time.perf_counter around each call (no
WebSocket or cell overhead), median / p95 / max per value size; plus the
first read of a kernel that has just started (ZeroMQ may drop a request sent
while the stdin connection comes up; userdata asks again after 0.5 s).
Needs root and bubblewrap.
"""
import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
from conftest import Server, _stop_server  # noqa: E402
from test_secrets import User  # noqa: E402

CODE = """
import time, json
from google.colab import userdata
t = []
for _ in range(%d):
    s = time.perf_counter(); v = userdata.get(%r); t.append(time.perf_counter() - s)
assert len(v) == %d
t.sort()
print(json.dumps([t[len(t) // 2], t[int(len(t) * 0.95)], t[-1]]))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reads", type=int, default=200)
    args = ap.parse_args()
    srv = Server()
    try:
        u = User(srv, "bench")
        sizes = {"K1": 1024, "K64": 65536}
        for name, size in sizes.items():
            assert u.req("PUT", "/api/skylab/secrets/" + name, json={"value": "x" * size}).status_code == 200
        firsts = []
        for i in range(5):
            nb = u.notebook("bench%d.ipynb" % i)
            for name in sizes:
                u.req("PUT", "/api/skylab/secrets/%s/grants" % name, json={"path": nb.path})
            r = nb.run("import time\nfrom google.colab import userdata\ns = time.perf_counter()\n"
                       "userdata.get('K1')\nprint(time.perf_counter() - s)")
            firsts.append(float(r.stdout))
        print("first read of a fresh kernel (5 kernels): %s ms" % ", ".join("%.1f" % (f * 1000) for f in firsts))
        for name, size in sizes.items():
            r = nb.run(CODE % (args.reads, name, size))
            med, p95, mx = json.loads(r.stdout)
            print("%6d B value, %d reads: median %.2f ms, p95 %.2f ms, max %.2f ms"
                  % (size, args.reads, med * 1000, p95 * 1000, mx * 1000))
    finally:
        _stop_server(srv)


if __name__ == "__main__":
    main()
