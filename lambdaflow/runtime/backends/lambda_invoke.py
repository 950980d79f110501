"""Synchronous Lambda invokes: one signed POST per call over kept-alive connections,
routed as botocore routes its own requests.

boto3's ``client.invoke`` spends about 2.4 ms of CPU per call (request building, event
hooks, response parsing), which caps one driver near 400 invocations/s. The Invoke API is
one signed POST, so this module sends just that, but takes everything else from botocore:

* the route (:func:`lambdaflow.aws.http_route`): the endpoint botocore resolved for the
  lambda client (``AWS_ENDPOINT_URL_LAMBDA``, FIPS, China / GovCloud partitions), the proxy
  for it (``HTTPS_PROXY`` / ``HTTP_PROXY``, ``NO_PROXY`` honoured; CONNECT tunnels for
  https endpoints) and the CA bundle (``AWS_CA_BUNDLE``, the profile's ``ca_bundle``);
* signing: botocore's ``SigV4Auth`` with the session's credentials object, frozen per
  request, so refreshable credentials (SSO, assumed roles, instance roles) refresh as
  boto3 refreshes them.

Each invoker thread keeps its own ``http.client`` connection (TCP_NODELAY; TCP keep-alive
probes after :data:`KEEPALIVE_IDLE_S` of silence, so NAT gateways and load balancers that
drop idle flows after 350 s keep a long invocation's connection open).

What one :meth:`Invoker.invoke` can end in::

    a reply (any HTTP status) ......... InvokeReply
    NotSentError ...................... DNS, connection refused, connect timeout, TLS
                                        handshake or proxy tunnel failed: the request
                                        provably never left; safe to send again
    ReadTimeoutError .................. sent, no reply within the read timeout: the
                                        invocation may still run; never sent again
    ConnectionLostError ............... the connection broke after sending began:
                                        whether Lambda ran it is unknown; never sent again

A kept-alive connection the server has closed is noticed before it is reused (an idle
socket that is readable has seen EOF), so reuse never turns into a lost request.

Wire contract (the Lambda Invoke API): ``POST /2015-03-31/functions/{name}/invocations``
with ``X-Amz-Invocation-Type`` and ``X-Amz-Log-Type``; the reply's
``X-Amz-Function-Error`` and ``X-Amz-Log-Result`` headers, and JSON error bodies typed by
``x-amzn-ErrorType``.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import ssl
import threading
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from lambdaflow.aws import HttpRoute
from lambdaflow.errors import ConfigError

#: TCP keep-alive: first probe after this much silence, then every INTVL, give up after CNT.
KEEPALIVE_IDLE_S = 30
KEEPALIVE_INTERVAL_S = 10
KEEPALIVE_PROBES = 6
CONNECT_TIMEOUT_S = 10.0


@dataclass
class InvokeReply:
    status: int
    body: bytes
    function_error: str | None = None
    log_result: str | None = None
    error_type: str = ""  # for HTTP errors: TooManyRequestsException, ...
    retry_after: float | None = None

    def error_json(self) -> dict:
        try:
            data = json.loads(self.body or b"{}")
            return data if isinstance(data, dict) else {"message": str(data)}
        except ValueError:
            return {"message": self.body[:500].decode("utf-8", "replace")}

    def error_message(self) -> str:
        err = self.error_json()
        return str(err.get("message") or err.get("Message") or self.body[:300])


class InvokeTransportError(ConnectionError):
    """The call ended without a reply; the subclass says whether it may be sent again."""


class NotSentError(InvokeTransportError):
    """Failed before the request was sent (DNS, refused, connect timeout, TLS, proxy)."""


class ReadTimeoutError(InvokeTransportError):
    """Sent; no reply within the read timeout. The invocation may still be running."""


class ConnectionLostError(InvokeTransportError):
    """The connection broke after sending began; Lambda may or may not have run it."""


def keepalive(sock: socket.socket) -> None:
    """TCP_NODELAY, and keep-alive probes after KEEPALIVE_IDLE_S of silence."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    idle = getattr(socket, "TCP_KEEPIDLE", None) or getattr(socket, "TCP_KEEPALIVE", None)
    if idle is not None:  # Linux TCP_KEEPIDLE, macOS TCP_KEEPALIVE
        sock.setsockopt(socket.IPPROTO_TCP, idle, KEEPALIVE_IDLE_S)
    if hasattr(socket, "TCP_KEEPINTVL"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S)
    if hasattr(socket, "TCP_KEEPCNT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)


def _dropped(sock: socket.socket | None) -> bool:
    """An idle kept-alive socket that is readable was closed (or spoke out of turn)."""
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class Invoker:
    """Signs and sends Invoke requests to one function; thread-safe (one connection per
    thread). ``route`` comes from :func:`lambdaflow.aws.http_route`."""

    def __init__(self, session: Any, region: str, route: HttpRoute, function_name: str) -> None:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        self._sigv4, self._request = SigV4Auth, AWSRequest
        self._credentials = session.get_credentials()
        if self._credentials is None:
            raise ConfigError(
                "no AWS credentials found: configure them (aws configure, AWS_PROFILE or "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or aws_access_key_id=... in "
                "lambdaflow.init) before using the lambda backend"
            )
        self.region = region
        self.function_name = function_name
        self.route = route
        parts = urlsplit(route.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._base = route.url.rstrip("/")
        self.path = f"/2015-03-31/functions/{quote(function_name, safe='')}/invocations"
        self._proxy = urlsplit(route.proxy_url) if route.proxy_url else None
        if self._proxy is not None and self._proxy.scheme != "http":
            raise ConfigError(
                f"proxy {route.proxy_url!r} for {route.url}: the invoke transport speaks "
                "to proxies over plain http:// (HTTP CONNECT for https endpoints); set "
                "HTTPS_PROXY=http://host:port"
            )
        self._tls = self._tls_context(route.verify) if self._https else None
        self._local = threading.local()
        self._socks: weakref.WeakSet[socket.socket] = weakref.WeakSet()

    @staticmethod
    def _tls_context(verify: bool | str) -> ssl.SSLContext:
        if verify is False:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        return ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)

    # -- connections ------------------------------------------------------------------
    def _open(self) -> http.client.HTTPConnection:
        """A connected connection (TCP, proxy tunnel, TLS handshake), or NotSentError."""
        host, port = self._host, self._port
        if self._proxy is not None:
            host, port = self._proxy.hostname or "", self._proxy.port or 80
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(host, port, timeout=CONNECT_TIMEOUT_S,
                                               context=self._tls)
            if self._proxy is not None:
                conn.set_tunnel(self._host, self._port, headers=self.route.proxy_headers)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=CONNECT_TIMEOUT_S)
        try:
            conn.connect()
            keepalive(conn.sock)
            self._socks.add(conn.sock)
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            via = f" via proxy {self._proxy.hostname}:{self._proxy.port}" if self._proxy else ""
            raise NotSentError(
                f"cannot connect to {self._base}{via}: {type(exc).__name__}: {exc}"
            ) from exc
        return conn

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and _dropped(conn.sock):
            conn.close()  # the server closed it while idle: nothing was sent on it
            conn = None
        if conn is None:
            conn = self._local.conn = self._open()
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close this thread's connection."""
        self._drop()

    def socket_options(self) -> list[tuple[int, int | None]]:
        """(SO_KEEPALIVE, TCP_KEEPIDLE) of every open connection of this invoker, as the
        kernel reports them (``lambdaflow doctor`` checks them)."""
        out = []
        for sock in list(self._socks):
            if sock.fileno() < 0:
                continue
            alive = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
            idle = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) if alive else None
            out.append((alive, idle))
        return out

    # -- one call -----------------------------------------------------------------------
    def invoke(self, payload: bytes, *, read_timeout: float, log_tail: bool = True) -> InvokeReply:
        """Send one RequestResponse invoke; wait at most ``read_timeout`` s for the reply."""
        headers = {
            "X-Amz-Invocation-Type": "RequestResponse",
            "Content-Type": "application/json",
        }
        if log_tail:
            headers["X-Amz-Log-Type"] = "Tail"
        request = self._request(method="POST", url=self._base + self.path, data=payload,
                                headers=headers)
        self._sigv4(self._credentials.get_frozen_credentials(), "lambda",
                    self.region).add_auth(request)
        send_headers = dict(request.headers)
        target = self.path
        if self._proxy is not None and not self._https:
            target = self._base + self.path  # absolute-form request line for an HTTP proxy
            send_headers.update(self.route.proxy_headers)
        conn = self._connection()
        conn.sock.settimeout(read_timeout)
        try:
            conn.request("POST", target, body=payload, headers=send_headers)
            resp = conn.getresponse()
            body = resp.read()
        except TimeoutError as exc:  # socket.timeout is its alias
            self._drop()
            raise ReadTimeoutError(
                f"no reply from {self.function_name!r} within {read_timeout:g} s"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise ConnectionLostError(
                f"the connection to {self._base} broke after the request to "
                f"{self.function_name!r} was sent: {type(exc).__name__}: {exc}"
            ) from exc
        if resp.getheader("Connection", "").lower() == "close":
            self._drop()
        return self._reply(resp, body)

    @staticmethod
    def _reply(resp: http.client.HTTPResponse, body: bytes) -> InvokeReply:
        reply = InvokeReply(resp.status, body, resp.getheader("X-Amz-Function-Error"),
                            resp.getheader("X-Amz-Log-Result"))
        if resp.status < 400:
            return reply
        etype = resp.getheader("x-amzn-ErrorType", "") or ""
        reply.error_type = etype.split(":", 1)[0] or str(reply.error_json().get("Type") or "")
        hints = (resp.getheader("Retry-After"), reply.error_json().get("retryAfterSeconds"))
        for hint in hints:
            try:
                reply.retry_after = float(hint) if hint else reply.retry_after
            except (TypeError, ValueError):
                pass
        return reply


__all__ = [
    "ConnectionLostError",
    "InvokeReply",
    "InvokeTransportError",
    "Invoker",
    "NotSentError",
    "ReadTimeoutError",
    "keepalive",
]
