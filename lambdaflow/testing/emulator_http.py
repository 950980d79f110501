"""A small HTTP/1.1 server protocol for the Lambda emulator, on asyncio.

Why not ``http.server``: the emulator answers ~3 HTTP messages per invocation (boto3's
Invoke, the runtime's ``next`` long poll, the runtime's response) and must hold many
requests open at once (every idle environment parks a ``next`` poll; every sync Invoke
waits for its environment). One event-loop thread with a hand-rolled parser does that
with no thread per request and ~30 us of CPU per message.

Flow, per connection::

    bytes ──> HttpConnection.data_received ──> Request ──> handler(request, conn)
                                                              │ (now or later)
    bytes <── conn.respond(status, body, headers) <───────────┘

Only one request per connection is outstanding at a time (boto3/urllib3, libcurl and
http.client never pipeline); bytes of a next request wait in the buffer until the
current one is answered. Keep-alive is the HTTP/1.1 default; ``Connection: close`` and
HTTP/1.0 close after the response. ``Expect: 100-continue`` is answered at once, chunked
request bodies are decoded. TCP_NODELAY is set on every accepted socket: without it a
small response waits for the peer's delayed ACK (~40 ms) and a warm invoke costs ~90 ms.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: Bodies above this are refused with 413 and the connection is closed.
MAX_BODY_BYTES = 64 * 1024 * 1024

REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Request Entity Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


class Request:
    """One parsed HTTP request. Header names are lower-cased."""

    __slots__ = ("body", "headers", "method", "path", "query", "target")

    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes):
        self.method = method
        self.target = target
        self.path, _, self.query = target.partition("?")
        self.headers = headers
        self.body = body


Handler = Callable[[Request, "HttpConnection"], None]


class HttpConnection(asyncio.Protocol):
    """One client connection. ``handler(request, conn)`` must eventually call
    ``conn.respond(...)`` exactly once (possibly from a later loop callback)."""

    def __init__(self, handler: Handler, registry: set | None = None) -> None:
        self._handler = handler
        self._registry = registry  # open connections, for closing them all at shutdown
        self._buf = bytearray()
        self._busy = False  # a request is waiting for its response
        self._close_after = False
        self._continued = False  # "100 Continue" already sent for the pending request
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.context: object = (
            None  # owner's per-connection data (e.g. the environment)
        )

    # -- asyncio.Protocol ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self._registry is not None:
            self._registry.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - not a TCP socket
                pass

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self._busy:
            self._parse()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._registry is not None:
            self._registry.discard(self)

    # -- parsing ------------------------------------------------------------------
    def _parse(self) -> None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > 65536:
                self._fail(400, b"header section too large")
            return
        head = bytes(buf[:end]).decode("latin-1")
        lines = head.split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            self._fail(400, b"malformed request line")
            return
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if headers.get("transfer-encoding", "").lower() == "chunked":
            try:
                body, consumed = _dechunk(buf, start)
            except ValueError:
                self._fail(400, b"bad chunked encoding")
                return
            if body is None:
                self._maybe_continue(headers)
                return
            del buf[:consumed]
        else:
            try:
                length = int(headers.get("content-length") or 0)
            except ValueError:
                self._fail(400, b"bad Content-Length")
                return
            if length > MAX_BODY_BYTES:
                self._fail(413, b"request body too large")
                return
            if len(buf) - start < length:
                self._maybe_continue(headers)
                return
            body = bytes(buf[start : start + length])
            del buf[: start + length]
        connection = headers.get("connection", "").lower()
        self._close_after = connection == "close" or (
            version == "HTTP/1.0" and connection != "keep-alive"
        )
        self._busy = True
        self._continued = False
        try:
            self._handler(Request(method, target, headers, body), self)
        except Exception:  # a bug in a handler must not kill the server
            logger.exception("emulator handler failed on %s %s", method, target)
            if self._busy:
                self.respond(500, b'{"Type":"Service","Message":"emulator error"}')

    def _maybe_continue(self, headers: dict[str, str]) -> None:
        # Answered once per request: the head is re-parsed as more body bytes arrive.
        if (
            not self._continued
            and headers.get("expect", "").lower() == "100-continue"
            and self.transport
        ):
            self._continued = True
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _fail(self, status: int, message: bytes) -> None:
        self._close_after = True
        self._busy = True
        self.respond(status, message, content_type="text/plain")

    # -- responding -----------------------------------------------------------------
    def respond(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        """Send the response to the outstanding request; then parse the next one."""
        if not self._busy:
            raise RuntimeError("respond() called with no outstanding request")
        self._busy = False
        if self.closed or self.transport is None:
            return
        parts = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"]
        parts.append(f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n")
        if headers:
            for name, value in headers.items():
                parts.append(f"{name}: {value}\r\n")
        if self._close_after:
            parts.append("Connection: close\r\n")
        parts.append("\r\n")
        head = "".join(parts).encode("latin-1")
        if len(body) < 16384:
            self.transport.write(head + body)
        else:
            self.transport.writelines((head, body))
        if self._close_after:
            self.transport.close()
            return
        if self._buf:
            self._parse()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()


def _dechunk(buf: bytearray, pos: int) -> tuple[bytes | None, int]:
    """Decode a chunked body starting at ``pos``; (None, 0) while incomplete."""
    out = bytearray()
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None, 0
        size = int(bytes(buf[pos:line_end]).split(b";")[0] or b"0", 16)
        pos = line_end + 2
        if size == 0:
            trailer_end = buf.find(b"\r\n", pos)
            while trailer_end > pos:  # skip trailer headers
                pos = trailer_end + 2
                trailer_end = buf.find(b"\r\n", pos)
            if trailer_end < 0:
                return None, 0
            return bytes(out), trailer_end + 2
        if len(buf) < pos + size + 2:
            return None, 0
        out += buf[pos : pos + size]
        pos += size + 2
