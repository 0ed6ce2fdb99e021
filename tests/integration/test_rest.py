"""REST API models, authentication and bad input."""

import datetime
import json

import pytest
import requests
import websocket

from conftest import IS_JUPYTER, new_uuid
import kclient


def _is_iso_time(s):
    datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    return True


def _assert_error(r, status):
    assert r.status_code == status, (r.status_code, r.text[:500])
    body = r.json()
    assert isinstance(body.get("message"), str), body
    return body


def test_api_version(server):
    r = requests.get(server.url("/api"), timeout=10)
    assert r.status_code == 200
    assert isinstance(r.json()["version"], str)


def test_startup_banner(server):
    assert "http://127.0.0.1:%d/" % server.port in server.log_text(10 ** 6)


def test_status(server, shared_kernel):
    r = server.get("/api/status")
    assert r.status_code == 200
    st = r.json()
    for k in ("started", "last_activity", "connections", "kernels"):
        assert k in st, st
    assert _is_iso_time(st["started"]) and _is_iso_time(st["last_activity"])
    assert isinstance(st["connections"], int) and isinstance(st["kernels"], int)
    assert st["kernels"] >= 1


def test_kernelspecs(server):
    r = server.get("/api/kernelspecs")
    assert r.status_code == 200
    body = r.json()
    assert body["default"] == "python3"
    ks = body["kernelspecs"]["python3"]
    assert ks["name"] == "python3"
    spec = ks["spec"]
    assert isinstance(spec["argv"], list) and spec["argv"]
    assert spec["language"] == "python"
    assert isinstance(spec["display_name"], str) and spec["display_name"]
    assert isinstance(ks["resources"], dict)
    r1 = server.get("/api/kernelspecs/python3")
    assert r1.status_code == 200
    assert r1.json()["name"] == "python3"
    assert r1.json()["spec"]["language"] == "python"


def test_kernelspec_unknown(server):
    _assert_error(server.get("/api/kernelspecs/no-such-spec"), 404)


def test_kernelspec_logo(server):
    resources = server.get("/api/kernelspecs/python3").json()["resources"]
    r = server.get("/kernelspecs/python3/logo-64x64.png")
    if "logo-64x64" in resources:
        assert r.status_code == 200, (r.status_code, resources)
    assert r.status_code in (200, 404)
    if r.status_code == 200:
        assert r.content.startswith(b"\x89PNG"), r.content[:20]
        assert r.headers["Content-Type"].startswith("image/png")


def test_kernel_models(server, shared_kernel):
    r = server.get("/api/kernels")
    assert r.status_code == 200
    ids = [k["id"] for k in r.json()]
    assert shared_kernel in ids
    m = server.get("/api/kernels/" + shared_kernel).json()
    for k in ("id", "name", "last_activity", "execution_state", "connections"):
        assert k in m, m
    assert m["id"] == shared_kernel and m["name"] == "python3"
    assert _is_iso_time(m["last_activity"])
    assert isinstance(m["connections"], int)
    assert m["execution_state"] in ("idle", "busy", "starting")


UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/kernels/%s"),
    ("DELETE", "/api/kernels/%s"),
    ("POST", "/api/kernels/%s/interrupt"),
    ("POST", "/api/kernels/%s/restart"),
])
def test_unknown_kernel_404(server, method, path):
    r = server.http.request(method, server.url(path % UNKNOWN), timeout=20)
    if IS_JUPYTER and path.endswith("/restart") and r.status_code == 500:
        return  # Jupyter Server wraps the 404 of an unknown id into a 500 here
    _assert_error(r, 404)


@pytest.mark.parametrize("framing", kclient.FRAMINGS)
def test_unknown_kernel_channels_404(server, framing):
    with pytest.raises(websocket.WebSocketBadStatusException) as ei:
        kclient.KernelClient(server.ws_base, UNKNOWN, server.token, framing=framing, timeout=10)
    assert ei.value.status_code == 404


def test_missing_token_403(server):
    for method, path in (("GET", "/api/kernels"), ("GET", "/api/status"),
                         ("GET", "/api/kernelspecs"), ("POST", "/api/kernels")):
        r = requests.request(method, server.url(path), timeout=10, json={} if method == "POST" else None)
        _assert_error(r, 403)


def test_wrong_token_403(server):
    r = requests.get(server.url("/api/kernels"), headers={"Authorization": "token wrong"}, timeout=10)
    _assert_error(r, 403)
    r = requests.get(server.url("/api/kernels?token=wrong"), timeout=10)
    _assert_error(r, 403)
    r = requests.post(server.url("/api/kernels?token=" + server.token[:-1]), json={}, timeout=10)
    _assert_error(r, 403)


def test_token_query_param(server, shared_kernel):
    r = requests.get(server.url("/api/kernels?token=" + server.token), timeout=10)
    assert r.status_code == 200
    assert shared_kernel in [k["id"] for k in r.json()]


def test_channels_without_token_403(server, shared_kernel):
    url = "%s/api/kernels/%s/channels?session_id=%s" % (server.ws_base, shared_kernel, new_uuid())
    with pytest.raises(websocket.WebSocketBadStatusException) as ei:
        websocket.create_connection(url, timeout=10)
    assert ei.value.status_code == 403
    with pytest.raises(websocket.WebSocketBadStatusException) as ei:
        websocket.create_connection(url + "&token=nope", timeout=10)
    assert ei.value.status_code == 403


def test_malformed_json_400(server):
    r = server.post("/api/kernels", data=b'{"name": "python3"', headers={"Content-Type": "application/json"})
    _assert_error(r, 400)
    assert server.get("/api").status_code == 200


@pytest.mark.skylab_only
def test_non_utf8_json_400(server):
    # Jupyter Server answers 500 here (UnicodeDecodeError)
    r = server.post("/api/kernels", data=b'{"name": "py\xff\xfethon3"}', headers={"Content-Type": "application/json"})
    _assert_error(r, 400)
    assert server.get("/api").status_code == 200


@pytest.mark.skylab_only
def test_unknown_kernelspec_404(server):
    # Jupyter Server answers 500 (NoSuchKernel); Skylab answers 404
    r = server.post("/api/kernels", json={"name": "no-such-kernel"})
    _assert_error(r, 404)
    assert "no-such-kernel" not in [k["name"] for k in server.get("/api/kernels").json()]


@pytest.mark.skylab_only
def test_oversized_body_413(server):
    body = json.dumps({"name": "python3", "pad": "x" * (2 << 20)}).encode()
    status, headers, data = kclient.raw_http(
        server.host, server.port, "POST", "/api/kernels",
        {"Authorization": "token " + server.token, "Content-Type": "application/json"}, body)
    assert status == 413, (status, data[:300])
    assert isinstance(json.loads(data)["message"], str)
    assert server.get("/api").status_code == 200
    assert server.get("/api/kernels").status_code == 200


def test_channels_token_header(server, shared_kernel):
    """The websocket also accepts the Authorization header instead of ?token=."""
    url = "%s/api/kernels/%s/channels?session_id=%s" % (server.ws_base, shared_kernel, new_uuid())
    ws = websocket.create_connection(url, timeout=10, header=["Authorization: token " + server.token])
    ws.close()


@pytest.mark.skylab_only
@pytest.mark.parametrize("method,path,status", [
    ("GET", "/api/no-such-endpoint", 404),
    ("GET", "/api/kernels/not-a-kernel-id", 404),
    ("POST", "/api/kernels/not-a-kernel-id/restart", 404),
    ("PUT", "/api/kernels", 405),
])
def test_errors_are_json(server, method, path, status):
    r = server.http.request(method, server.url(path), timeout=10)
    _assert_error(r, status)
