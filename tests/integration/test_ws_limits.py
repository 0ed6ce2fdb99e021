"""Bad input on the kernel websocket and on raw connections: the server keeps serving."""

import json
import select
import socket
import time
import uuid

import pytest

import kclient

MiB = 1 << 20


def _raw_channels(server, kid, subprotocol=None):
    path = "/api/kernels/%s/channels?session_id=%s&token=%s" % (kid, uuid.uuid4().hex, server.token)
    return kclient.RawWebSocket(server.host, server.port, path, subprotocol=subprotocol)


def _still_serving(server, kid, client):
    """The server, the existing client and a new connection all still work."""
    assert server.get("/api").status_code == 200
    assert server.get("/api/kernels/" + kid).status_code == 200
    assert client.execute("1+1").result_text == "2"
    fresh = server.connect(kid, framing="legacy")
    try:
        assert fresh.execute("2+3").result_text == "5"
    finally:
        fresh.close()
        server.clients.remove(fresh)


def _send_until_answered(raw, total, first_header, chunk=MiB):
    """Send a frame header then `total` zero payload bytes (zero mask key),
    stopping early once the server says something."""
    raw.sock.sendall(first_header)
    sent = 0
    zeros = b"\0" * chunk
    while sent < total:
        if raw.readable():
            return
        try:
            raw.sock.sendall(zeros[:min(chunk, total - sent)])
        except (BrokenPipeError, ConnectionResetError):
            return
        sent += min(chunk, total - sent)


@pytest.mark.skylab_only
@pytest.mark.parametrize("how", ["single_frame", "fragmented"])
def test_oversize_message_closes_1009(server, connect, shared_kernel, how):
    other = connect(shared_kernel, framing="v1")
    other.eval_ok("1")
    raw = _raw_channels(server, shared_kernel)
    try:
        total = 33 * MiB
        if how == "single_frame":
            _send_until_answered(raw, total, raw.frame_header(0x2, total))
        else:
            # 33 fragments of 1 MiB: each frame is small, the message is not
            for i in range(33):
                if raw.readable():
                    break
                op = 0x2 if i == 0 else 0x0
                try:
                    raw.sock.sendall(raw.frame_header(op, MiB, fin=(i == 32)) + b"\0" * MiB)
                except (BrokenPipeError, ConnectionResetError):
                    break
        code = raw.wait_close(timeout=15)
        assert code == 1009, code
    finally:
        raw.close()
    _still_serving(server, shared_kernel, other)


@pytest.mark.skylab_only
def test_non_utf8_text_frame_closes_1007(server, connect, shared_kernel):
    other = connect(shared_kernel, framing="legacy")
    raw = _raw_channels(server, shared_kernel)
    try:
        raw.send_frame(0x1, b'{"header": "\xff\xfe\xfd"}')
        assert raw.wait_close(timeout=10) == 1007
    finally:
        raw.close()
    _still_serving(server, shared_kernel, other)


@pytest.mark.skylab_only
def test_malformed_json_frames_ignored_legacy(server, connect, shared_kernel):
    c = connect(shared_kernel, framing="legacy")
    bad = [
        '{"header": ',
        "not json at all",
        "[]",
        '"a string"',
        "{}",
        '{"header": 5, "content": [], "channel": "shell"}',
        json.dumps({"header": {"msg_id": "x", "msg_type": "execute_request"}, "parent_header": {},
                    "metadata": {}, "content": {"code": "1"}, "channel": "no-such-channel"}),
    ]
    for frame in bad:
        c.send_raw(frame)
    # a broken legacy binary frame (offsets out of range)
    c.send_raw(b"\x00\x00\x00\x02\xff\xff\xff\xff\x00\x00\x00\x10", opcode=0x2)
    assert c.execute("1+1").result_text == "2"
    assert server.get("/api").status_code == 200


@pytest.mark.skylab_only
def test_malformed_frames_ignored_v1(server, connect, shared_kernel):
    c = connect(shared_kernel, framing="v1")
    # valid v1 framing, invalid JSON in the header
    c.send_raw(kclient.serialize_v1("shell", [b"{nope", b"{}", b"{}", b"{}"]), opcode=0x2)
    # valid JSON, header missing everything
    c.send_raw(kclient.serialize_v1("shell", [b"{}", b"{}", b"{}", b"{}"]), opcode=0x2)
    assert c.execute("1+1").result_text == "2"
    # garbage framing: the connection may be closed, the server must live on
    other = connect(shared_kernel, framing="legacy")
    for garbage in (b"\x01", b"\xff" * 8 + b"\x00" * 64, (3).to_bytes(8, "little") + (10 ** 12).to_bytes(8, "little") * 3):
        try:
            c.send_raw(garbage, opcode=0x2)
        except Exception:
            break
    _still_serving(server, shared_kernel, other)


def test_client_closes_mid_frame(server, connect, shared_kernel):
    other = connect(shared_kernel, framing="legacy")
    for _ in range(3):
        raw = _raw_channels(server, shared_kernel)
        raw.sock.sendall(raw.frame_header(0x1, 1000) + b"0123456789")
        raw.close()
    _still_serving(server, shared_kernel, other)


def test_client_closes_mid_handshake_and_mid_body(server, connect, shared_kernel):
    other = connect(shared_kernel, framing="legacy")
    # half an upgrade request
    s = socket.create_connection((server.host, server.port), timeout=5)
    s.sendall(b"GET /api/kernels/%s/channels?token=%s HTTP/1.1\r\nHost: x\r\nUpgrade: websock"
              % (shared_kernel.encode(), server.token.encode()))
    s.close()
    # a POST announcing 1000 bytes of body, sending 10
    s = socket.create_connection((server.host, server.port), timeout=5)
    s.sendall(b"POST /api/kernels HTTP/1.1\r\nHost: x\r\nAuthorization: token %s\r\n"
              b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"name\": \""
              % server.token.encode())
    s.close()
    # garbage instead of HTTP
    s = socket.create_connection((server.host, server.port), timeout=5)
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100 + b"\r\n\r\n")
    try:
        select.select([s], [], [], 2)
    finally:
        s.close()
    time.sleep(0.2)
    _still_serving(server, shared_kernel, other)
