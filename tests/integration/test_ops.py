"""Operating Skylab (issue 16): HTTPS/WSS and certificate reload, trusted
proxies, /api/health, /metrics, access and runtime-event logs.

Everything runs against the real binary; certificates are made with the
`openssl` CLI; /metrics is read with Prometheus' own text parser plus a
strict line check of our own.
"""

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import pytest
import requests
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

import kclient
from conftest import Server, _stop_server, needs_sandbox, skylab_bin

pytestmark = pytest.mark.skylab_only


# ---------------------------------------------------------------- helpers

def make_cert(directory, serial, name="c"):
    """A self-signed certificate for 127.0.0.1 with this serial; (cert, key) paths."""
    cert = os.path.join(directory, name + ".pem")
    key = os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-set_serial", str(serial)], check=True, capture_output=True, timeout=60)
    return cert, key


def served_serial(port):
    """The serial of the certificate a new TLS handshake with the server gets."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as s:
            der = s.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


def wait_for(pred, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


def write_config(text):
    fd, path = tempfile.mkstemp(prefix="skylab-ops-", suffix=".toml")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


class TlsServer(Server):
    """A Skylab server on HTTPS (its config names the certificate)."""

    def __init__(self, cert, config_text):
        self.cert = cert
        path = write_config(config_text)
        try:
            super().__init__(extra_args=("--config", path))
        finally:
            os.unlink(path)

    def wait_ready(self, timeout=60):
        self.base_url = "https://127.0.0.1:%d" % self.port
        self.ws_base = "wss://127.0.0.1:%d" % self.port
        self.http.verify = self.cert
        self.http.trust_env = False  # REQUESTS_CA_BUNDLE would replace `verify`
        deadline = time.monotonic() + timeout
        banner = "https://127.0.0.1:%d/" % self.port
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited during start-up:\n" + self.log_text())
            if banner in self.log_text(tail=10 ** 6):
                try:
                    if requests.get(self.url("/api"), timeout=2, verify=self.cert).status_code == 200:
                        return
                except requests.RequestException:
                    pass
            time.sleep(0.1)
        raise RuntimeError("TLS server not ready:\n" + self.log_text())

    def connect(self, kid, framing="legacy", session_id=None, timeout=30):
        c = kclient.KernelClient(self.ws_base, kid, self.token, framing=framing, session_id=session_id,
                                 timeout=timeout, sslopt={"ca_certs": self.cert})
        self.clients.append(c)
        return c


def config_server(text):
    path = write_config(text)
    try:
        return Server(extra_args=("--config", path))
    finally:
        os.unlink(path)


def add_user(server, name, password, admin=False):
    r = subprocess.run([skylab_bin(), "user", "add", name, "--password-stdin", "--data-dir", server.data_dir]
                       + (["--admin"] if admin else []),
                       input=(password + "\n").encode(), capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()


def login(server, session, name, password, headers=None, verify=None):
    """Signs in through the form; returns the /login POST response."""
    r = session.get(server.url("/login"), timeout=10, headers=headers, verify=verify)
    assert r.status_code == 200, r.text[:300]
    xsrf = re.search(r'name="_xsrf" value="([0-9a-f]+)"', r.text).group(1)
    return session.post(server.url("/login"), data={"_xsrf": xsrf, "username": name, "password": password},
                        allow_redirects=False, timeout=30, headers=headers, verify=verify)


def login_over_http_as_https(base, name, password, headers):
    """Signs in over plain HTTP while a proxy says the client used HTTPS:
    the cookies are Secure, so the client sends them by hand."""
    r = requests.get(base + "/login", headers=headers, timeout=10)
    assert r.status_code == 200, r.text[:300]
    xsrf = re.search(r'name="_xsrf" value="([0-9a-f]+)"', r.text).group(1)
    jar = "; ".join(c.split(";", 1)[0] for c in set_cookies(r))
    return requests.post(base + "/login", data={"_xsrf": xsrf, "username": name, "password": password},
                         headers=dict(headers, Cookie=jar), allow_redirects=False, timeout=30)


def set_cookies(response):
    return [v for k, v in response.raw.headers.items() if k.lower() == "set-cookie"]


METRIC_LINE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)'                      # name
    r'(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'  # first label
    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*)?\})?'
    r' (-?[0-9.]+(e[+-]?[0-9]+)?|\+Inf|-Inf|NaN)$')


def strict_parse(text):
    """Checks the text format line by line (every sample's family has a TYPE
    before it, no series twice, text ends with a newline) and returns
    {(name, frozenset(labels)): value} from Prometheus' own parser."""
    assert text.endswith("\n")
    typed = {}
    seen = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name not in typed, "family typed twice: " + name
            typed[name] = kind
            continue
        m = METRIC_LINE.match(line)
        assert m, "not a valid sample line: %r" % line
        name = m.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in typed else name
        assert family in typed, "sample before its # TYPE: " + line
        series = line.rsplit(" ", 1)[0]
        assert series not in seen, "series twice: " + series
        seen.add(series)
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


# ---------------------------------------------------------------- TLS

@needs_sandbox
def test_https_secure_cookies_hsts_wss_and_reload_without_dropping(tmp_path):
    cert, key = make_cert(str(tmp_path), 4097)
    srv = TlsServer(cert, '[server]\ntls_cert = "%s"\ntls_key = "%s"\n' % (cert, key))
    try:
        assert served_serial(srv.port) == 4097
        r = srv.get("/api/status")
        assert r.status_code == 200
        assert r.headers["Strict-Transport-Security"].startswith("max-age=")
        # Plain HTTP on the TLS port gets no answer.
        with pytest.raises(requests.RequestException):
            requests.get("http://127.0.0.1:%d/api" % srv.port, timeout=5)

        # Sign-in over HTTPS: the cookies are Secure (and the session's __Host-).
        add_user(srv, "tlsuser", "tls-password-1")
        s = requests.Session()
        s.trust_env = False
        s.verify = cert
        r = login(srv, s, "tlsuser", "tls-password-1")
        assert r.status_code == 303, r.text[:300]
        cookies = set_cookies(r)
        session_cookie = [c for c in cookies if "session" in c.split("=", 1)[0]]
        assert session_cookie and all("Secure" in [a.strip() for a in c.split(";")] for c in cookies), cookies
        assert session_cookie[0].startswith("__Host-"), session_cookie

        # The kernel channels over WSS.
        kid = srv.create_kernel()
        c = srv.connect(kid)
        assert c.execute("print(6 * 7)").stdout.strip() == "42"

        # A renewal replaces the files (new inode, as certbot does); SIGHUP:
        # new handshakes get the new certificate, the open WSS keeps working.
        new_cert, new_key = make_cert(str(tmp_path), 8193, name="renewed")
        os.replace(new_key, key)
        os.replace(new_cert, cert)
        srv.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: served_serial(srv.port) == 8193, what="the renewed certificate after SIGHUP")
        assert srv.proc.poll() is None
        assert c.execute("print('still here')").stdout.strip() == "still here"

        # No signal: the server notices the files changed by itself.
        third_cert, third_key = make_cert(str(tmp_path), 12289, name="third")
        os.replace(third_key, key)
        os.replace(third_cert, cert)
        wait_for(lambda: served_serial(srv.port) == 12289, what="the certificate reloaded on change")
        assert c.execute("print('and still')").stdout.strip() == "and still"

        # A broken renewal (key does not match) keeps the working certificate.
        bad_cert, _ = make_cert(str(tmp_path), 16385, name="bad")
        os.replace(bad_cert, cert)
        srv.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "TLS certificate not reloaded" in srv.log_text(10 ** 6), what="the refused reload")
        assert served_serial(srv.port) == 12289
        assert c.execute("print(1)").stdout.strip() == "1"
        srv.http.verify = False  # the certificate file no longer matches what is served

        # A FIFO in the certificate's place: refused at once (the poll and
        # SIGHUP both see it), never an I/O thread waiting for a writer.
        os.unlink(cert)
        os.mkfifo(cert)
        srv.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "not a regular file" in srv.log_text(10 ** 6), what="the FIFO refused")
        assert served_serial(srv.port) == 12289
        assert srv.get("/api/status").status_code == 200
        assert c.execute("print(2)").stdout.strip() == "2"
    finally:
        _stop_server(srv)


def test_tls_config_errors_are_named(tmp_path):
    cert, key = make_cert(str(tmp_path), 5)
    for text, needle in (('[server]\ntls_cert = "%s"\n' % cert, "tls_key"),
                         ('[server]\ntls_cert = "%s"\ntls_key = "%s"\n' % (cert, cert), "TLS key"),
                         ('[server]\ntrusted_proxies = ["10.0.0.0/33"]\n', "trusted_proxies"),
                         ('[log]\nformat = "xml"\n', "log.format"),
                         ('[metrics]\nbogus = 1\n', "metrics.bogus")):
        path = write_config(text)
        try:
            r = subprocess.run([skylab_bin(), "serve", "--port", "0", "--data-dir", str(tmp_path / "d"),
                                "--config", path], capture_output=True, timeout=60)
        finally:
            os.unlink(path)
        assert r.returncode != 0 and needle in r.stderr.decode(), (text, r.stderr.decode())


# ---------------------------------------------------------------- proxies

def _forwarded_request(srv, headers):
    return requests.get(srv.url("/api/status"), headers=dict(headers, Authorization="token " + srv.token),
                        timeout=10)


FORWARDED = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "127.0.0.1"}


def test_forwarded_headers_from_an_untrusted_peer_change_nothing():
    srv = config_server('[server]\ntrusted_proxies = ["10.0.0.0/8", "192.0.2.1"]\n')
    try:
        r = _forwarded_request(srv, FORWARDED)
        assert r.status_code == 200
        assert "Strict-Transport-Security" not in r.headers
        # A forged host does not reach the host policy either.
        assert _forwarded_request(srv, dict(FORWARDED, **{"X-Forwarded-Host": "evil.example"})).status_code == 200
        add_user(srv, "proxyuser1", "proxy-password-1")
        r = login(srv, requests.Session(), "proxyuser1", "proxy-password-1", headers=FORWARDED)
        assert r.status_code == 303
        assert not any("Secure" in c for c in set_cookies(r)), set_cookies(r)
        log = srv.log_text(10 ** 6)
        assert "203.0.113.9" not in log
        assert "client=127.0.0.1" in log
    finally:
        _stop_server(srv)


def test_forwarded_headers_from_a_trusted_proxy_network():
    srv = config_server('[server]\ntrusted_proxies = ["127.0.0.0/8"]\n')
    try:
        r = _forwarded_request(srv, FORWARDED)
        assert r.status_code == 200
        assert r.headers["Strict-Transport-Security"].startswith("max-age=")
        # The proxy's host is the one the host policy sees.
        r = _forwarded_request(srv, dict(FORWARDED, **{"X-Forwarded-Host": "evil.example"}))
        assert r.status_code == 403 and "Host" in r.json()["message"]
        add_user(srv, "proxyuser2", "proxy-password-2")
        r = login_over_http_as_https(srv.base_url, "proxyuser2", "proxy-password-2", FORWARDED)
        assert r.status_code == 303
        assert all("Secure" in c for c in set_cookies(r)), set_cookies(r)
        assert "client=203.0.113.9" in srv.log_text(10 ** 6)
    finally:
        _stop_server(srv)


class ForwardingProxy:
    """A minimal reverse proxy (as nginx's example config does): adds
    X-Forwarded-For/-Proto/-Host and relays one request per connection."""

    def __init__(self, upstream_port, proto="https"):
        self.upstream_port = upstream_port
        self.proto = proto
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        import threading
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                client, addr = self.sock.accept()
            except OSError:
                return
            with client:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = client.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                length = 0
                out = [lines[0]]
                for line in lines[1:]:
                    k = line.split(b":", 1)[0].strip().lower()
                    if k == b"content-length":
                        length = int(line.split(b":", 1)[1])
                    if k in (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"connection"):
                        continue  # the proxy sets these itself
                    out.append(line)
                while len(body) < length:
                    body += client.recv(65536)
                out += [b"X-Forwarded-For: " + addr[0].encode(), b"X-Forwarded-Proto: " + self.proto.encode(),
                        b"X-Forwarded-Host: 127.0.0.1", b"Connection: close"]
                with socket.create_connection(("127.0.0.1", self.upstream_port)) as up:
                    up.sendall(b"\r\n".join(out) + b"\r\n\r\n" + body)
                    while True:
                        chunk = up.recv(65536)
                        if not chunk:
                            break
                        client.sendall(chunk)

    def close(self):
        self.sock.close()


def test_behind_a_forwarding_proxy_cookies_are_secure_and_the_client_is_logged():
    srv = config_server('[server]\ntrusted_proxies = ["127.0.0.1"]\n')
    proxy = ForwardingProxy(srv.port)
    try:
        add_user(srv, "behindproxy", "proxy-password-3")
        base = "http://127.0.0.1:%d" % proxy.port
        r = login_over_http_as_https(base, "behindproxy", "proxy-password-3", {})
        assert r.status_code == 303, r.text[:300]
        cookies = set_cookies(r)
        assert cookies and all("Secure" in c for c in cookies), cookies
        assert r.headers["Strict-Transport-Security"].startswith("max-age=")
        # A client's own X-Forwarded-For is replaced by the proxy, not trusted.
        r = requests.get(base + "/api/status", headers={"Authorization": "token " + srv.token,
                                                         "X-Forwarded-For": "198.51.100.7"}, timeout=10)
        assert r.status_code == 200
        assert "198.51.100.7" not in srv.log_text(10 ** 6)
    finally:
        proxy.close()
        _stop_server(srv)


# ---------------------------------------------------------------- health

def test_health_answers_200_then_503_when_the_database_is_gone():
    srv = Server()
    try:
        r = requests.get(srv.url("/api/health"), timeout=10)  # no credentials
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "ok" and body["checks"] == {"database": True, "runtimes": True}
        assert srv.token not in r.text
        db = os.path.join(srv.data_dir, "skylab.db")
        os.rename(db, db + ".away")  # gone from under the server (a lost volume)
        try:
            # An answer is shared for a second: wait for the next check.
            r = wait_for(lambda: (lambda r: [r] if r.status_code != 200 else None)(
                requests.get(srv.url("/api/health"), timeout=30)), what="a failed health check")[0]
            assert r.status_code == 503, r.text
            assert r.json()["status"] == "unavailable" and r.json()["checks"]["database"] is False
        finally:
            os.replace(db + ".away", db)
        wait_for(lambda: requests.get(srv.url("/api/health"), timeout=10).status_code == 200,
                 what="health back to 200")
        # A flood of unauthenticated probes is answered (from the shared answer)
        # and leaves the server serving.
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda _: requests.get(srv.url("/api/health"), timeout=30).status_code,
                                  range(200)))
        assert set(codes) <= {200, 503} and codes.count(200) > 0
        assert srv.get("/api/status").status_code == 200
        # SIGHUP (systemctl reload) without TLS: logged, the server goes on.
        srv.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "SIGHUP: nothing to reload" in srv.log_text(10 ** 6), what="the SIGHUP log line")
        assert srv.proc.poll() is None and srv.get("/api/status").status_code == 200
    finally:
        _stop_server(srv)


# ---------------------------------------------------------------- metrics

METRICS_TOKEN = "metrics-" + "ab12" * 6


@needs_sandbox
def test_metrics_parse_and_follow_a_runtime():
    srv = config_server('[metrics]\ntoken = "%s"\n' % METRICS_TOKEN)
    try:
        url = srv.url("/metrics")
        assert requests.get(url, timeout=10).status_code == 401
        assert requests.get(url, headers={"Authorization": "Bearer wrong-token-0000000000"},
                            timeout=10).status_code == 401
        assert requests.get(url + "?token=" + METRICS_TOKEN, timeout=10).status_code == 401
        assert requests.get(url, headers={"Authorization": "Bearer " + srv.token}, timeout=10).status_code == 200

        def scrape():
            r = requests.get(url, headers={"Authorization": "Bearer " + METRICS_TOKEN}, timeout=30)
            assert r.status_code == 200
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            return strict_parse(r.text)

        m = scrape()
        for name in ("skylab_runtimes_pending", "skylab_http_request_duration_seconds_count",
                     "skylab_websocket_connections", "skylab_gpus_allocated", "skylab_gpus_total",
                     "skylab_sqlite_busy_waits_total"):
            assert sample(m, name) is not None, name
        assert sample(m, "skylab_runtimes_running", type="cpu") == 0
        assert sample(m, "skylab_http_requests_total", method="GET", code="401") >= 3
        assert sample(m, "skylab_http_request_duration_seconds_bucket", le="+Inf") == \
            sample(m, "skylab_http_request_duration_seconds_count")

        kid = srv.create_kernel()
        c = srv.connect(kid)
        assert c.execute("print('hi')").stdout.strip() == "hi"
        m = scrape()
        assert sample(m, "skylab_runtimes_running", type="cpu") == 1
        assert sample(m, "skylab_websocket_connections") == 1
        assert sample(m, "skylab_kernel_messages_total", channel="shell", direction="in") >= 1
        assert sample(m, "skylab_kernel_messages_total", channel="iopub", direction="out") >= 1
        assert sample(m, "skylab_http_requests_total", method="POST", code="201") >= 1
        assert sample(m, "skylab_drive_bytes", user="admin") is None  # the admin token has no account

        c.close()
        srv.clients.remove(c)
        assert srv.delete_kernel(kid).status_code == 204
        m = wait_for(lambda: (lambda m: m if sample(m, "skylab_runtimes_running", type="cpu") == 0 and
                              sample(m, "skylab_websocket_connections") == 0 else None)(scrape()),
                     what="the runtime's stop in /metrics")
        add_user(srv, "metricsuser", "metrics-password")
        m = scrape()
        assert sample(m, "skylab_drive_bytes", user="metricsuser") is not None
        # A user's own API token is no key to everyone's numbers.
        tok = subprocess.run([skylab_bin(), "user", "token", "metricsuser", "--data-dir", srv.data_dir],
                             capture_output=True, timeout=60).stdout.decode().strip()
        assert tok and requests.get(url, headers={"Authorization": "Bearer " + tok}, timeout=10).status_code == 401
        assert requests.get(url, headers={"Authorization": "token " + tok}, timeout=10).status_code == 401
    finally:
        _stop_server(srv)


# ---------------------------------------------------------------- logs

@needs_sandbox
def test_json_log_lines_parse_and_carry_no_secrets():
    srv = config_server('[log]\nformat = "json"\n')
    try:
        add_user(srv, "loguser", "log-password-secret")
        token_out = subprocess.run([skylab_bin(), "user", "token", "loguser", "--data-dir", srv.data_dir],
                                   capture_output=True, timeout=60)
        user_token = token_out.stdout.decode().strip()
        assert user_token
        # A token in the URL, in the Authorization header, and a session cookie.
        assert requests.get(srv.url("/api/me?token=" + user_token), timeout=10).status_code == 200
        assert requests.get(srv.url("/api/me"), headers={"Authorization": "token " + user_token},
                            timeout=10).status_code == 200
        s = requests.Session()
        r = login(srv, s, "loguser", "log-password-secret")
        assert r.status_code == 303
        session_secret = [v for k, v in s.cookies.items() if "session" in k][0]
        xsrf = s.cookies.get("_xsrf")
        assert s.get(srv.url("/api/me"), timeout=10).status_code == 200
        assert requests.get(srv.url("/api/contents?token=wrong-" + user_token[:10]), timeout=10).status_code == 403
        kid = srv.create_kernel()
        c = srv.connect(kid)  # the admin token in the WebSocket URL
        assert c.execute("print(1)").stdout.strip() == "1"
        c.close()
        srv.clients.remove(c)
        assert srv.delete_kernel(kid).status_code == 204
        wait_for(lambda: '"event":"stop"' in srv.log_text(10 ** 6), what="the runtime stop record")

        text = srv.log_text(10 ** 7)
        for secret in (user_token, srv.token, "log-password-secret", session_secret, xsrf, user_token[:10]):
            assert secret not in text, "a secret reached the log"
        records = []
        for line in text.splitlines():
            if line.startswith("Skylab is listening on "):
                continue  # the banner on stdout
            records.append(json.loads(line))
        requests_logged = [r for r in records if r["msg"] == "request"]
        me = [r for r in requests_logged if r["path"] == "/api/me"]
        assert len(me) == 3 and {r["user"] for r in me} == {"loguser"}
        assert all(r["status"] == 200 and r["method"] == "GET" and isinstance(r["duration"], float) and
                   r["duration"] >= 0 and isinstance(r["bytes"], int) and r["bytes"] > 0 for r in me)
        assert any(r["path"] == "/api/contents" and r["status"] == 403 for r in requests_logged)
        assert any(r["path"].endswith("/channels") and r["status"] == 101 for r in requests_logged)
        events = {r["event"]: r for r in records if r["msg"] == "runtime"}
        assert events["start"]["id"] == kid and events["start"]["user"] == "admin"
        assert events["stop"]["id"] == kid and events["stop"]["reason"]
    finally:
        _stop_server(srv)


# ---------------------------------------------------------------- real proxies (docs/proxy)

DOCS_PROXY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "proxy")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(tmp, upstream, cert, key):
    """nginx running docs/proxy/nginx.conf, pointed at our ports and certificate."""
    port, redirect_port = free_port(), free_port()
    with open(os.path.join(DOCS_PROXY, "nginx.conf")) as f:
        site = f.read()
    site = (site.replace("listen 443 ssl http2;", "listen 127.0.0.1:%d ssl http2;" % port)
                .replace("listen 80;", "listen 127.0.0.1:%d;" % redirect_port)
                .replace("/etc/letsencrypt/live/colab.example.edu/fullchain.pem", cert)
                .replace("/etc/letsencrypt/live/colab.example.edu/privkey.pem", key)
                .replace("127.0.0.1:8888", "127.0.0.1:%d" % upstream)
                .replace("colab.example.edu", "127.0.0.1"))
    with open(os.path.join(tmp, "skylab-site.conf"), "w") as f:
        f.write(site)
    temp = {k: os.path.join(tmp, k) for k in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write("worker_processes 1;\npid %s/nginx.pid;\nerror_log %s/error.log;\ndaemon off;\n"
                "events {}\nhttp {\n access_log off;\n" % (tmp, tmp) +
                "".join(" %s_temp_path %s;\n" % ("client_body" if k == "body" else k, v) for k, v in temp.items()) +
                " include %s/skylab-site.conf;\n}\n" % tmp)
    proc = subprocess.Popen(["nginx", "-p", tmp, "-c", conf], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(tmp, "nginx.stderr"), "wb"))
    return proc, port


def start_caddy(tmp, upstream, cert, key):
    """Caddy running docs/proxy/Caddyfile, pointed at our ports and certificate."""
    port = free_port()
    with open(os.path.join(DOCS_PROXY, "Caddyfile")) as f:
        site = f.read()
    site = (site.replace("127.0.0.1:8888", "127.0.0.1:%d" % upstream)
                .replace("colab.example.edu {", "https://127.0.0.1:%d {\n\ttls %s %s" % (port, cert, key)))
    caddyfile = os.path.join(tmp, "Caddyfile")
    with open(caddyfile, "w") as f:  # no admin endpoint, no redirect listener: nothing beyond our port
        f.write("{\n\tadmin off\n\tauto_https disable_redirects\n}\n" + site)
    env = dict(os.environ, HOME=tmp, XDG_DATA_HOME=tmp, XDG_CONFIG_HOME=tmp)
    proc = subprocess.Popen(["caddy", "run", "--config", caddyfile, "--adapter", "caddyfile"], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "caddy.stderr"), "wb"))
    return proc, port


def https_get_from(source_ip, port, path, cert, headers):
    """GET over HTTPS from a chosen loopback source address (the client the proxy sees)."""
    import http.client
    ctx = ssl.create_default_context(cafile=cert)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, source_address=(source_ip, 0), timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


@needs_sandbox
@pytest.mark.parametrize("proxy", ["nginx", "caddy"])
def test_real_proxy_in_front(proxy, tmp_path):
    import shutil
    if not shutil.which(proxy):
        pytest.skip("%s is not installed (scripts/setup.sh installs it)" % proxy)
    cert, key = make_cert(str(tmp_path), 77)
    srv = config_server('[server]\ntrusted_proxies = ["127.0.0.1"]\n')
    proc, port = (start_nginx if proxy == "nginx" else start_caddy)(str(tmp_path), srv.port, cert, key)
    base = "https://127.0.0.1:%d" % port
    try:
        s = requests.Session()
        s.trust_env = False
        s.verify = cert

        def up():
            try:
                return s.get(base + "/api/health", timeout=5).status_code == 200
            except requests.RequestException:
                return False
        wait_for(up, what=proxy + " in front of skylab")

        add_user(srv, "viaproxy", "via-proxy-password")
        r = s.get(base + "/login", timeout=10)
        xsrf = re.search(r'name="_xsrf" value="([0-9a-f]+)"', r.text).group(1)
        r = s.post(base + "/login", data={"_xsrf": xsrf, "username": "viaproxy", "password": "via-proxy-password"},
                   allow_redirects=False, timeout=30)
        assert r.status_code == 303, r.text[:300]
        cookies = set_cookies(r)
        assert cookies and all("Secure" in c for c in cookies), cookies
        assert any(c.startswith("__Host-") for c in cookies), cookies
        assert r.headers["Strict-Transport-Security"].startswith("max-age=")
        assert s.get(base + "/api/me", timeout=10).json()["identity"]["username"] == "viaproxy"

        # The client address in the log is the one the proxy saw (127.0.0.2),
        # not one the client claims.
        status, _, _ = https_get_from("127.0.0.2", port, "/api/status", cert,
                                      {"Authorization": "token " + srv.token, "X-Forwarded-For": "198.51.100.7"})
        assert status == 200
        log = srv.log_text(10 ** 6)
        assert re.search(r"path=/api/status status=200 .*client=127\.0\.0\.2", log), log[-2000:]
        assert "198.51.100.7" not in log

        # Kernel channels through the proxy (WSS).
        kid = srv.create_kernel()
        c = kclient.KernelClient("wss://127.0.0.1:%d" % port, kid, srv.token, sslopt={"ca_certs": cert})
        srv.clients.append(c)
        assert c.execute("print('through %s')" % proxy).stdout.strip() == "through " + proxy
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _stop_server(srv)
