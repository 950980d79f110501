"""A fault-injecting HTTP proxy on 127.0.0.1, for putting in front of moto.

    proxy = FaultProxy(target=moto.endpoint_url).start()
    proxy.inject("503", match=lambda method, path: method == "PUT" and "/obj/" in path)
    ... clients use proxy.endpoint_url ...
    proxy.stats()  # {"forwarded": n, "injected": [("503", "PUT", "/b/k"), ...]}

Every request is forwarded verbatim (method, target, headers including Host and the
SigV4 Authorization, body) and the answer is sent back whole, so signatures made for
the proxy's address verify at moto. An injected fault is used once, for the first
request it matches, then dropped:

    "500"    500 InternalError (S3's XML error shape), request not forwarded
    "503"    503 SlowDown ("Please reduce your request rate."), not forwarded
    "reset"  the connection is reset (SO_LINGER 0) before any answer, not forwarded
    "reset-after"  forwarded to moto (it takes effect there), then reset: the client
                   cannot tell whether it happened

One thread per connection (``ThreadingHTTPServer``); bodies with Content-Length or
chunked transfer encoding. ``stop()`` closes the listener and every connection.
"""

from __future__ import annotations

import http.client
import http.server
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

FAULTS = ("500", "503", "reset", "reset-after")
Match = Callable[[str, str], bool]

_ERRORS = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "SlowDown", "Please reduce your request rate."),
}


@dataclass
class _Rule:
    fault: str
    match: Match


class FaultProxy:
    """Forwards to ``target`` (``http://127.0.0.1:port``) and injects queued faults."""

    def __init__(self, target: str | None = None) -> None:
        self.target = target
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._forwarded = 0
        self._injected: list[tuple[str, str, str]] = []
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FaultProxy is not started: call .start()")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def inject(self, fault: str, match: Match | None = None, count: int = 1) -> None:
        """Queue ``count`` faults for the next requests that ``match(method, path)``."""
        if fault not in FAULTS:
            raise ValueError(f"fault {fault!r}: use one of {', '.join(FAULTS)}")
        with self._lock:
            for _ in range(count):
                self._rules.append(_Rule(fault, match or (lambda m, p: True)))

    def pending(self) -> int:
        with self._lock:
            return len(self._rules)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"forwarded": self._forwarded, "injected": list(self._injected)}

    def _take(self, method: str, path: str) -> str | None:
        with self._lock:
            for i, rule in enumerate(self._rules):
                if rule.match(method, path):
                    del self._rules[i]
                    self._injected.append((rule.fault, method, path))
                    return rule.fault
        return None

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _reset(self) -> None:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                self.connection.close()

            def _handle(self) -> None:
                body = self._body()
                fault = proxy._take(self.command, self.path)
                if fault in _ERRORS:
                    status, code, message = _ERRORS[fault]
                    data = (
                        f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}"
                        f"</Code><Message>{message}</Message></Error>"
                    ).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                    return
                if fault == "reset":
                    self._reset()
                    return
                status, headers, data = proxy._forward(
                    self.command, self.path, dict(self.headers.items()), body
                )
                if fault == "reset-after":
                    self._reset()
                    return
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                length = dict((k.lower(), v) for k, v in headers).get("content-length")
                self.send_header(
                    "Content-Length", length if self.command == "HEAD" and length else str(len(data))
                )
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fault-proxy", daemon=True
        )
        self._thread.start()
        return self

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        if not self.target:
            raise RuntimeError("FaultProxy has no target: set .target first")
        parsed = urlparse(self.target)
        conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=60)
        try:
            headers = {k: v for k, v in headers.items() if k.lower() != "transfer-encoding"}
            headers["Content-Length"] = str(len(body))
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            with self._lock:
                self._forwarded += 1
            return resp.status, resp.getheaders(), data
        finally:
            conn.close()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
