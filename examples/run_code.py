#!/usr/bin/python3
"""Runs Python code in a new Skylab kernel and prints its output.

Usage: SKYLAB_TOKEN=T examples/run_code.py [--url http://127.0.0.1:8888] 'print(1+1)'

Uses only the public Jupyter API (REST + kernel WebSocket), so it works the
same against Skylab and Jupyter Server. Needs Debian's python3-websocket and
python3-requests (installed by `make run`).
"""
import argparse
import json
import os
import sys
import uuid

import requests
import websocket


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="http://127.0.0.1:8888")
    p.add_argument("--keep", action="store_true", help="do not shut the kernel down")
    p.add_argument("code")
    a = p.parse_args()
    token = os.environ.get("SKYLAB_TOKEN") or os.environ.get("SKYLAB_ADMIN_TOKEN", "")
    auth = {"Authorization": f"token {token}"}
    r = requests.post(f"{a.url}/api/kernels", headers=auth, json={"name": "python3"})
    r.raise_for_status()
    kernel = r.json()
    ws_url = a.url.replace("http", "ws", 1) + f"/api/kernels/{kernel['id']}/channels"
    ws = websocket.create_connection(ws_url, header=auth)
    session = uuid.uuid4().hex
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": session,
                   "username": "", "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": a.code, "silent": False, "store_history": True,
                    "user_expressions": {}, "allow_stdin": False},
    }))
    status = "ok"
    while True:
        m = json.loads(ws.recv())
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        t, c = m["msg_type"], m["content"]
        if t == "stream":
            sys.stdout.write(c["text"])
        elif t in ("execute_result", "display_data"):
            print(c["data"].get("text/plain", ""))
        elif t == "error":
            print("\n".join(c["traceback"]), file=sys.stderr)
        elif t == "execute_reply":
            status = c["status"]
            break
    ws.close()
    if not a.keep:
        requests.delete(f"{a.url}/api/kernels/{kernel['id']}", headers=auth)
    return 0 if status == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
