#!/usr/bin/python3
"""Terminal benchmark: how fast a shell inside a runtime opens, answers and streams.

    sudo /usr/bin/python3 bench/terminal_bench.py [--runs N]   (root + bubblewrap)

Against build/skylab serve (SKYLAB_BIN), one CPU runtime started first, then:
  1. open: POST /api/terminals {"kernel_id"} + WebSocket + the first prompt
     (skylab sandbox-enter: find the sandbox, setns, drop, exec bash), p50;
  2. echo: one keystroke ("x") sent as ["stdin"] until it comes back echoed, p50;
  3. stream: `head -c 40000000 /dev/zero | tr '\\0' x` read by one client, MB/s.
     (websocket-client in Python is the limit here: ~6 MB/s; a Node `ws` client reads ~30 MB/s)
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))

import websocket  # noqa: E402

from conftest import Server, _stop_server  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    srv = Server()
    try:
        kid = srv.create_kernel()
        opens, echoes = [], []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            name = srv.post("/api/terminals", json={"kernel_id": kid}).json()["name"]
            ws = websocket.create_connection("%s/terminals/websocket/%s?token=%s" % (srv.ws_base, name, srv.token))
            out = ""
            while "$ " not in out:
                m = json.loads(ws.recv())
                if m[0] == "stdout":
                    out += m[1]
            opens.append(time.perf_counter() - t0)
            for _ in range(10):
                t1 = time.perf_counter()
                ws.send(json.dumps(["stdin", "x"]))
                while True:
                    m = json.loads(ws.recv())
                    if m[0] == "stdout" and "x" in m[1]:
                        break
                echoes.append(time.perf_counter() - t1)
            ws.send(json.dumps(["stdin", "\x15"]))  # clear the line
            ws.close()
            srv.delete("/api/terminals/" + name)
        name = srv.post("/api/terminals", json={"kernel_id": kid}).json()["name"]
        ws = websocket.create_connection("%s/terminals/websocket/%s?token=%s" % (srv.ws_base, name, srv.token))
        ws.send(json.dumps(["stdin", "head -c 40000000 /dev/zero | tr '\\0' x; echo; echo END-$((1+1))\r"]))
        t2, got, tail = time.perf_counter(), 0, ""
        while "END-2" not in tail:
            m = json.loads(ws.recv())
            if m[0] == "stdout":
                got += len(m[1])
                tail = (tail + m[1])[-100:]
        dt = time.perf_counter() - t2
        ws.close()
        print("open terminal (POST + WS + first prompt): p50 %.1f ms, max %.1f ms (%d runs)"
              % (statistics.median(opens) * 1e3, max(opens) * 1e3, len(opens)))
        print("keystroke echo round trip: p50 %.2f ms, p95 %.2f ms (%d keys)"
              % (statistics.median(echoes) * 1e3, sorted(echoes)[int(len(echoes) * 0.95)] * 1e3, len(echoes)))
        print("stream: %.1f MB in %.2f s = %.0f MB/s" % (got / 1e6, dt, got / 1e6 / dt))
        srv.delete_kernel(kid)
    finally:
        _stop_server(srv)


if __name__ == "__main__":
    main()
