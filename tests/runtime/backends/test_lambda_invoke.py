"""lambda_invoke, the task transport, against servers on 127.0.0.1 that misbehave on
purpose: each outcome (reply, not sent, read timeout, connection lost) is provoked by a
real socket doing that thing; proxies and TLS through netfixtures' stand-ins."""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import sys
import threading
import time

import pytest

pytest.importorskip("botocore")

from botocore.credentials import Credentials, RefreshableCredentials

from lambdaflow.aws import HttpRoute
from lambdaflow.errors import ConfigError
from lambdaflow.runtime.backends import lambda_invoke
from lambdaflow.runtime.backends.lambda_invoke import (
    ConnectionLostError,
    Invoker,
    NotSentError,
    ReadTimeoutError,
)
from tests.runtime.backends.netfixtures import ForwardProxy, TlsRelay, make_ca


class _Session:
    """What Invoker needs from a boto3 session: a credentials object."""

    def __init__(self, credentials) -> None:
        self._credentials = credentials

    def get_credentials(self):
        return self._credentials


STATIC = _Session(Credentials("AKIDTEST", "secret", "token"))


class ScriptedServer:
    """A raw HTTP/1.1 server; ``mode`` says what it does with each request:
    ok (reply, keep the connection), stale (reply, then close the idle connection
    without saying so), hang (never reply), drop (read the request, close)."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.requests: list[dict] = []
        self.connections = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket) -> dict | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        length = int(headers.get("content-length", 0))
        while len(body) < length:
            body += conn.recv(65536)
        return {"line": lines[0], "headers": headers, "body": body}

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    req = self._read_request(conn)
                except OSError:
                    return
                if req is None:
                    return
                self.requests.append(req)
                if self.mode == "hang":
                    time.sleep(30)
                    return
                if self.mode == "drop":
                    return
                body = json.dumps({"echo": len(req["body"])}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                if self.mode == "stale":
                    time.sleep(0.05)
                    return  # closes without a Connection: close header

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def server():
    servers = []

    def make(mode: str = "ok") -> ScriptedServer:
        servers.append(ScriptedServer(mode))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def _invoker(url: str, session=STATIC, **route) -> Invoker:
    return Invoker(session, "us-east-1", HttpRoute(url=url, **route), "fn")


def test_reply_and_keepalive_socket_options(server):
    srv = server()
    inv = _invoker(srv.url)
    reply = inv.invoke(b'{"x": 1}', read_timeout=5)
    assert reply.status == 200 and json.loads(reply.body) == {"echo": 8}
    sock = inv._local.conn.sock
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    if hasattr(socket, "TCP_KEEPIDLE"):  # AWS: keep-alives well under the 350 s NAT idle
        idle = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
        assert 0 < idle < 60
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) > 0
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) > 0
    req = srv.requests[0]
    assert req["line"] == "POST /2015-03-31/functions/fn/invocations HTTP/1.1"
    assert req["headers"]["x-amz-invocation-type"] == "RequestResponse"
    assert req["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
    inv.invoke(b"{}", read_timeout=5)
    assert srv.connections == 1  # kept alive


def test_refused_connection_is_not_sent():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(NotSentError, match="cannot connect"):
        _invoker(f"http://127.0.0.1:{port}").invoke(b"{}", read_timeout=5)


def test_tls_handshake_failure_is_not_sent(server):
    srv = server()  # speaks plain HTTP: the TLS handshake fails before anything is sent
    with pytest.raises(NotSentError):
        _invoker(f"https://127.0.0.1:{srv.port}").invoke(b"{}", read_timeout=5)
    assert srv.requests == []


def test_read_timeout_is_its_own_error(server):
    srv = server("hang")
    with pytest.raises(ReadTimeoutError, match="within 0.5 s"):
        _invoker(srv.url).invoke(b"{}", read_timeout=0.5)
    assert len(srv.requests) == 1


def test_connection_dropped_after_sending_is_lost(server):
    srv = server("drop")
    with pytest.raises(ConnectionLostError, match="after the request"):
        _invoker(srv.url).invoke(b"{}", read_timeout=5)
    assert len(srv.requests) == 1


def test_a_kept_alive_connection_closed_by_the_server_is_replaced_before_sending(server):
    srv = server("stale")
    inv = _invoker(srv.url)
    assert inv.invoke(b"{}", read_timeout=5).status == 200
    time.sleep(0.3)  # the server has closed the idle connection
    assert inv.invoke(b"{}", read_timeout=5).status == 200
    assert len(srv.requests) == 2 and srv.connections == 2


def test_credentials_are_frozen_per_request_so_they_refresh(server):
    """Refreshable credentials (SSO, assumed roles) renew as boto3 renews them: each
    request signs with what the credentials object holds at that moment."""
    srv = server()
    utc = datetime.UTC
    now = [datetime.datetime(2030, 1, 1, tzinfo=utc)]
    keys = iter(["AKIDSECOND", "AKIDTHIRD"])

    def refresh():
        return {"access_key": next(keys), "secret_key": "s", "token": "t",
                "expiry_time": (now[0] + datetime.timedelta(hours=1)).isoformat()}

    creds = RefreshableCredentials("AKIDFIRST", "s", "t", now[0] + datetime.timedelta(hours=1),
                                   refresh, "test", time_fetcher=lambda: now[0])
    inv = _invoker(srv.url, session=_Session(creds))
    inv.invoke(b"{}", read_timeout=5)
    now[0] += datetime.timedelta(hours=2)  # expired: the next request refreshes first
    inv.invoke(b"{}", read_timeout=5)
    used = [r["headers"]["authorization"].split("Credential=")[1].split("/")[0]
            for r in srv.requests]
    assert used == ["AKIDFIRST", "AKIDSECOND"]


def test_no_credentials_is_a_config_error():
    with pytest.raises(ConfigError, match="no AWS credentials"):
        _invoker("http://127.0.0.1:1", session=_Session(None))


def test_http_proxy_gets_absolute_requests(server):
    srv, proxy = server(), ForwardProxy()
    try:
        inv = _invoker(srv.url, proxy_url=proxy.url)
        assert inv.invoke(b"{}", read_timeout=5).status == 200
        assert proxy.seen == [("POST", f"{srv.url}/2015-03-31/functions/fn/invocations")]
        assert srv.requests[0]["headers"]["host"] == f"127.0.0.1:{srv.port}"
    finally:
        proxy.close()


def test_https_through_a_connect_tunnel_with_a_ca_bundle(server, tmp_path):
    ca, cert, key = make_ca(tmp_path)
    srv = server()
    relay, proxy = TlsRelay(srv.port, cert, key), ForwardProxy()
    try:
        inv = _invoker(relay.url, proxy_url=proxy.url, verify=str(ca))
        assert inv.invoke(b"{}", read_timeout=5).status == 200
        assert proxy.seen == [("CONNECT", relay.url.removeprefix("https://"))]
        with pytest.raises(NotSentError) as info:  # the system store does not know the CA
            _invoker(relay.url, proxy_url=proxy.url, verify=True).invoke(b"{}", read_timeout=5)
        assert isinstance(info.value.__cause__, ssl.SSLError)
        assert len(srv.requests) == 1
    finally:
        relay.close()
        proxy.close()


def _handshake(relay: TlsRelay, ctx: ssl.SSLContext) -> None:
    host, port = relay.url.removeprefix("https://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        ctx.wrap_socket(raw, server_hostname=host).close()


def test_the_test_ca_passes_strict_x509_verification(server, tmp_path):
    """netfixtures' chain is RFC 5280 clean on every Python, not only where the default
    context happens to be strict (3.13+), so no suite meets a fixture 3.13 rejects."""
    ca, cert, key = make_ca(tmp_path)
    relay = TlsRelay(server().port, cert, key)
    try:
        strict = ssl.create_default_context(cafile=str(ca))
        strict.verify_flags |= ssl.VERIFY_X509_STRICT
        _handshake(relay, strict)
    finally:
        relay.close()


def test_https_keeps_pythons_default_certificate_checks(server, tmp_path):
    """The transport verifies with Python's default context, VERIFY_X509_STRICT included
    where Python sets it (3.13+): a chain without key identifiers, which OpenSSL refuses
    only in strict mode, is refused exactly when this Python's defaults refuse it."""
    ca, cert, key = make_ca(tmp_path, key_identifiers=False)
    srv = server()
    relay = TlsRelay(srv.port, cert, key)
    try:
        defaults = ssl.create_default_context(cafile=str(ca))
        try:
            _handshake(relay, defaults)
            python_refuses = False
        except ssl.SSLCertVerificationError as exc:
            assert "Authority Key Identifier" in str(exc)
            python_refuses = True
        assert python_refuses == bool(defaults.verify_flags & ssl.VERIFY_X509_STRICT)
        assert python_refuses == (sys.version_info >= (3, 13))
        inv = _invoker(relay.url, verify=str(ca))
        if python_refuses:
            with pytest.raises(NotSentError) as info:
                inv.invoke(b"{}", read_timeout=5)
            assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
            assert srv.requests == []
        else:
            assert inv.invoke(b"{}", read_timeout=5).status == 200
    finally:
        relay.close()


def test_https_proxies_are_refused_with_a_clear_error():
    with pytest.raises(ConfigError, match="http://host:port"):
        _invoker("https://127.0.0.1:1", proxy_url="https://127.0.0.1:2")


def test_keepalive_idle_is_under_a_minute():
    assert lambda_invoke.KEEPALIVE_IDLE_S < 60
