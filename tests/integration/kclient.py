"""Minimal Jupyter kernel websocket client for the integration tests.

Speaks the raw protocol of ``/api/kernels/{id}/channels`` with websocket-client
in both framings:

* ``legacy``: JSON text frames ``{"header", "parent_header", "metadata",
  "content", "channel"}``; a message with binary buffers travels as a binary
  frame in Jupyter Server's binary framing (uint32-BE part count, uint32-BE
  offsets, JSON, buffers).
* ``v1``: subprotocol ``v1.kernel.websocket.jupyter.org``, binary frames:
  uint64-LE offset count, uint64-LE offsets, then channel, header,
  parent_header, metadata, content, buffers...

Also: a tiny raw websocket implementation (``RawWebSocket``) for the tests that
must send broken or oversized frames and read close codes exactly, and
``raw_http`` for requests whose response may come before the body is sent.
"""

import base64
import datetime
import json
import os
import select
import socket
import struct
import time
import uuid
from urllib.parse import urlencode, urlparse

import websocket

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
FRAMINGS = ("legacy", "v1")


# ---------------------------------------------------------------- framing

def _now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def serialize_legacy_binary(msg, buffers):
    """Jupyter Server's serialize_binary_message (msg includes 'channel')."""
    parts = [json.dumps(msg).encode("utf-8")] + [bytes(b) for b in buffers]
    nbufs = len(parts)
    offsets = [4 * (nbufs + 1)]
    for p in parts[:-1]:
        offsets.append(offsets[-1] + len(p))
    return struct.pack("!" + "I" * (nbufs + 1), nbufs, *offsets) + b"".join(parts)


def deserialize_legacy_binary(data):
    nbufs = struct.unpack("!I", data[:4])[0]
    offsets = list(struct.unpack("!" + "I" * nbufs, data[4:4 * (nbufs + 1)]))
    offsets.append(len(data))
    parts = [data[offsets[i]:offsets[i + 1]] for i in range(nbufs)]
    msg = json.loads(parts[0].decode("utf-8"))
    msg["buffers"] = parts[1:]
    return msg


def serialize_v1(channel, parts):
    """jupyter_server's serialize_msg_to_ws_v1 for already packed parts."""
    ch = channel.encode("utf-8")
    offsets = [8 * (1 + 1 + len(parts) + 1)]
    offsets.append(offsets[-1] + len(ch))
    for p in parts:
        offsets.append(offsets[-1] + len(p))
    head = len(offsets).to_bytes(8, "little") + b"".join(o.to_bytes(8, "little") for o in offsets)
    return head + ch + b"".join(parts)


def deserialize_v1(data):
    n = int.from_bytes(data[:8], "little")
    offsets = [int.from_bytes(data[8 * (i + 1):8 * (i + 2)], "little") for i in range(n)]
    channel = data[offsets[0]:offsets[1]].decode("utf-8")
    parts = [data[offsets[i]:offsets[i + 1]] for i in range(1, n - 1)]
    if len(parts) < 4:
        raise ValueError("v1 message with %d parts" % len(parts))
    msg = {
        "channel": channel,
        "header": json.loads(parts[0]),
        "parent_header": json.loads(parts[1]),
        "metadata": json.loads(parts[2]),
        "content": json.loads(parts[3]),
        "buffers": parts[4:],
    }
    return msg


# ---------------------------------------------------------------- client

class ExecResult:
    """What one execute_request produced, as seen by one client."""

    def __init__(self, msg_id):
        self.msg_id = msg_id
        self.reply = None          # execute_reply message
        self.iopub = []            # iopub messages with this parent
        self.input_requests = []   # stdin input_request messages

    @property
    def status(self):
        return self.reply["content"]["status"] if self.reply else None

    def stream(self, name="stdout"):
        return "".join(m["content"]["text"] for m in self.iopub
                       if m["header"]["msg_type"] == "stream" and m["content"]["name"] == name)

    @property
    def stdout(self):
        return self.stream("stdout")

    @property
    def stderr(self):
        return self.stream("stderr")

    def of_type(self, msg_type):
        return [m for m in self.iopub if m["header"]["msg_type"] == msg_type]

    @property
    def result_text(self):
        res = self.of_type("execute_result")
        return res[-1]["content"]["data"].get("text/plain") if res else None

    @property
    def error(self):
        errs = self.of_type("error")
        return errs[-1]["content"] if errs else None

    def __repr__(self):
        return "ExecResult(status=%r, iopub=%r, reply=%r)" % (
            self.status, [(m["header"]["msg_type"], m["content"]) for m in self.iopub],
            self.reply and self.reply["content"])


class KernelClient:
    """One websocket connection to a kernel's channels endpoint."""

    def __init__(self, ws_base, kernel_id, token, framing="legacy", session_id=None,
                 timeout=30, username="skylab-test", sslopt=None):
        assert framing in FRAMINGS, framing
        self.framing = framing
        self.kernel_id = kernel_id
        self.session_id = session_id or uuid.uuid4().hex
        self.username = username
        self.inbox = []      # received, not yet consumed
        self.history = []    # everything received, in order
        q = urlencode({"session_id": self.session_id, "token": token})
        self.url = "%s/api/kernels/%s/channels?%s" % (ws_base, kernel_id, q)
        kw = {}
        if sslopt is not None:  # wss://: e.g. {"ca_certs": PEM} for a self-signed server
            kw["sslopt"] = sslopt
        if framing == "v1":
            kw["subprotocols"] = [V1_PROTOCOL]
        self.ws = websocket.create_connection(self.url, timeout=timeout, **kw)
        if framing == "v1":
            got = self.ws.getsubprotocol()
            assert got == V1_PROTOCOL, "server did not select %s (got %r)" % (V1_PROTOCOL, got)
        self.closed = False

    # -- sending
    def make_msg(self, msg_type, content, metadata=None, parent=None):
        return {
            "header": {
                "msg_id": uuid.uuid4().hex,
                "msg_type": msg_type,
                "username": self.username,
                "session": self.session_id,
                "date": _now_iso(),
                "version": "5.3",
            },
            "parent_header": parent or {},
            "metadata": metadata or {},
            "content": content,
        }

    def encode(self, channel, msg, buffers=()):
        """-> (payload, opcode)"""
        if self.framing == "v1":
            parts = [json.dumps(msg[k]).encode("utf-8")
                     for k in ("header", "parent_header", "metadata", "content")]
            parts += [bytes(b) for b in buffers]
            return serialize_v1(channel, parts), websocket.ABNF.OPCODE_BINARY
        wire = dict(msg, channel=channel)
        if buffers:
            return serialize_legacy_binary(wire, buffers), websocket.ABNF.OPCODE_BINARY
        return json.dumps(wire), websocket.ABNF.OPCODE_TEXT

    def send(self, channel, msg_type, content, buffers=(), metadata=None, parent=None):
        msg = self.make_msg(msg_type, content, metadata, parent)
        payload, opcode = self.encode(channel, msg, buffers)
        self.ws.send(payload, opcode=opcode)
        return msg

    def send_raw(self, payload, opcode=websocket.ABNF.OPCODE_TEXT):
        self.ws.send(payload, opcode=opcode)

    # -- receiving
    def _decode(self, opcode, data):
        if self.framing == "v1":
            assert opcode == websocket.ABNF.OPCODE_BINARY, "v1 expects binary frames, got opcode %r" % opcode
            return deserialize_v1(data)
        if opcode == websocket.ABNF.OPCODE_TEXT:
            if isinstance(data, bytes):
                data = data.decode("utf-8")
            msg = json.loads(data)
            msg.setdefault("buffers", [])
            return msg
        return deserialize_legacy_binary(data)

    def recv_one(self, timeout):
        """Receive one message (or raise TimeoutError / ConnectionError)."""
        self.ws.settimeout(max(timeout, 0.01))
        try:
            opcode, data = self.ws.recv_data()
        except websocket.WebSocketTimeoutException:
            raise TimeoutError("no message within %.1fs" % timeout)
        except (websocket.WebSocketConnectionClosedException, OSError) as e:
            self.closed = True
            raise ConnectionError("websocket closed: %r" % e)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            self.closed = True
            raise ConnectionError("websocket closed by server: %r" % (data,))
        msg = self._decode(opcode, data)
        self.history.append(msg)
        self.inbox.append(msg)
        return msg

    def wait_for(self, pred, timeout=30, what="message"):
        """Pop and return the first message (old or new) satisfying pred."""
        deadline = time.monotonic() + timeout
        while True:
            for i, m in enumerate(self.inbox):
                if pred(m):
                    return self.inbox.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out after %ss waiting for %s; inbox types: %r" % (
                    timeout, what, [(m.get("channel"), m["header"].get("msg_type")) for m in self.inbox[-20:]]))
            try:
                self.recv_one(left)
            except TimeoutError:
                pass

    def drain(self, duration):
        """Receive for `duration` seconds (messages go to inbox/history)."""
        deadline = time.monotonic() + duration
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                self.recv_one(left)
            except TimeoutError:
                return

    # -- high level
    def execute_request(self, code, allow_stdin=False, stop_on_error=False):
        # stop_on_error=False: ipykernel otherwise aborts requests that arrive
        # right after an error, which the tests provoke on purpose
        return self.send("shell", "execute_request", {
            "code": code, "silent": False, "store_history": True,
            "user_expressions": {}, "allow_stdin": allow_stdin, "stop_on_error": stop_on_error,
        })

    def collect(self, msg_id, timeout=30, stdin=None):
        """Collect iopub until idle and the execute_reply for msg_id.

        stdin: None, a string, or a callable(prompt) -> str used to answer
        input_request messages.
        """
        res = ExecResult(msg_id)
        deadline = time.monotonic() + timeout
        idle = False
        while res.reply is None or not idle:
            left = deadline - time.monotonic()
            m = self.wait_for(lambda m: m.get("parent_header", {}).get("msg_id") == msg_id,
                              timeout=max(left, 0), what="execute output of %s (so far %r)" % (msg_id, res))
            ch = m.get("channel")
            mt = m["header"]["msg_type"]
            if ch == "iopub":
                res.iopub.append(m)
                if mt == "status" and m["content"].get("execution_state") == "idle":
                    idle = True
            elif ch == "shell" and mt == "execute_reply":
                res.reply = m
            elif ch == "stdin" and mt == "input_request":
                res.input_requests.append(m)
                if stdin is None:
                    raise AssertionError("unexpected input_request %r" % m["content"])
                value = stdin(m["content"].get("prompt", "")) if callable(stdin) else stdin
                self.send("stdin", "input_reply", {"value": value}, parent=m["header"])
        return res

    def execute(self, code, timeout=30, stdin=None):
        msg = self.execute_request(code, allow_stdin=stdin is not None)
        return self.collect(msg["header"]["msg_id"], timeout=timeout, stdin=stdin)

    def nudge(self, timeout=30):
        """Wait until iopub flows: send kernel_info_request until its iopub
        status arrives (what Jupyter Server does before opening a websocket).
        Tests that are not about kernel start-up use it so that an iopub
        message lost during start-up does not fail them too."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.send("shell", "kernel_info_request", {})
            mid = m["header"]["msg_id"]
            try:
                self.wait_for(lambda x: x["parent_header"].get("msg_id") == mid
                              and x.get("channel") == "iopub", timeout=1)
                self.wait_for(lambda x: x["parent_header"].get("msg_id") == mid
                              and x["header"]["msg_type"] == "kernel_info_reply",
                              timeout=max(deadline - time.monotonic(), 0.1))
                self.wait_for(lambda x: x["parent_header"].get("msg_id") == mid
                              and x["header"]["msg_type"] == "status"
                              and x["content"]["execution_state"] == "idle",
                              timeout=max(deadline - time.monotonic(), 0.1))
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise TimeoutError("kernel iopub not flowing within %ss" % timeout)

    def eval_ok(self, code, timeout=30):
        """Execute and assert success; returns the ExecResult."""
        r = self.execute(code, timeout=timeout)
        assert r.status == "ok", r
        return r

    def close(self):
        if not self.closed:
            self.closed = True
            try:
                self.ws.close(timeout=1)
            except Exception:
                pass
        try:
            self.ws.shutdown()
        except Exception:
            pass


# ---------------------------------------------------------------- raw websocket

class RawWebSocket:
    """Hand-made websocket client for protocol abuse tests."""

    def __init__(self, host, port, path, subprotocol=None, timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            "GET %s HTTP/1.1" % path,
            "Host: %s:%d" % (host, port),
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: " + key,
            "Sec-WebSocket-Version: 13",
        ]
        if subprotocol:
            lines.append("Sec-WebSocket-Protocol: " + subprotocol)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("handshake: connection closed; got %r" % buf)
            buf += chunk
        head, self.buf = buf.split(b"\r\n\r\n", 1)
        status_line = head.split(b"\r\n")[0]
        self.status = int(status_line.split()[1])
        if self.status != 101:
            raise ConnectionError("handshake failed: %r" % head)

    @staticmethod
    def frame_header(opcode, length, fin=True, mask_key=b"\0\0\0\0"):
        b0 = (0x80 if fin else 0) | opcode
        if length < 126:
            h = struct.pack("!BB", b0, 0x80 | length)
        elif length < 65536:
            h = struct.pack("!BBH", b0, 0x80 | 126, length)
        else:
            h = struct.pack("!BBQ", b0, 0x80 | 127, length)
        return h + mask_key

    @staticmethod
    def mask(payload, key):
        if key == b"\0\0\0\0":
            return payload
        n = len(payload)
        k = (key * (n // 4 + 1))[:n]
        return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")

    def send_frame(self, opcode, payload, fin=True):
        key = os.urandom(4)
        self.sock.sendall(self.frame_header(opcode, len(payload), fin, key) + self.mask(payload, key))

    def _read_exact(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("raw websocket: timeout")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("raw websocket: EOF")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self, timeout=10):
        """-> (opcode, payload)"""
        deadline = time.monotonic() + timeout
        b0, b1 = self._read_exact(2, deadline)
        opcode = b0 & 0x0F
        length = b1 & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._read_exact(2, deadline))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._read_exact(8, deadline))[0]
        if b1 & 0x80:
            key = self._read_exact(4, deadline)
            return opcode, self.mask(self._read_exact(length, deadline), key)
        return opcode, self._read_exact(length, deadline)

    def wait_close(self, timeout=10):
        """Read frames until a close frame; -> close code (None if no code).

        Raises ConnectionError if the TCP connection ends without a close frame.
        """
        deadline = time.monotonic() + timeout
        while True:
            opcode, payload = self.recv_frame(max(deadline - time.monotonic(), 0.01))
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None

    def readable(self):
        return bool(self.buf) or bool(select.select([self.sock], [], [], 0)[0])

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def raw_http(host, port, method, path, headers=None, body=b"", timeout=20, chunk=65536):
    """Send an HTTP/1.1 request over a plain socket; stop sending the body as
    soon as the server answers (it may reject early, e.g. 413).

    -> (status, headers dict (lower-case), body bytes)
    """
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        hdrs = {"Host": "%s:%d" % (host, port), "Content-Length": str(len(body)),
                "Connection": "close"}
        hdrs.update(headers or {})
        head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join(
            "%s: %s\r\n" % kv for kv in hdrs.items()) + "\r\n"
        sock.sendall(head.encode())
        view = memoryview(body)
        pos = 0
        while pos < len(view):
            r, w, _ = select.select([sock], [sock], [], timeout)
            if r:
                break  # server already answering
            try:
                pos += sock.send(view[pos:pos + chunk])
            except (BrokenPipeError, ConnectionResetError):
                break
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                sock.settimeout(max(deadline - time.monotonic(), 0.01))
                c = sock.recv(65536)
            except ConnectionResetError:
                break
            if not c:
                break
            data += c
            if b"\r\n\r\n" in data:
                h, rest = data.split(b"\r\n\r\n", 1)
                hd = _parse_headers(h)
                if "content-length" in hd and len(rest) >= int(hd["content-length"]):
                    break
        if b"\r\n\r\n" not in data:
            raise ConnectionError("no HTTP response; got %r" % data[:200])
        h, rest = data.split(b"\r\n\r\n", 1)
        status = int(h.split(b"\r\n")[0].split()[1])
        hd = _parse_headers(h)
        if "content-length" in hd:
            rest = rest[:int(hd["content-length"])]
        return status, hd, rest
    finally:
        sock.close()


def _parse_headers(h):
    out = {}
    for line in h.split(b"\r\n")[1:]:
        if b":" in line:
            k, v = line.split(b":", 1)
            out[k.strip().lower().decode()] = v.strip().decode("latin-1")
    return out


def ws_base_from_http(base_url):
    u = urlparse(base_url)
    return "ws://%s" % u.netloc
