"""The Runtime API of each execution environment, as awslambdaric speaks it (a mixin of
``EmulatorCore``, event-loop thread only). Each environment has its own port, and only
its own processes may use it (``peer``).

    GET  /2018-06-01/runtime/invocation/next      park the poll; _deliver() answers it
                                                  with the next invocation
    POST /2018-06-01/runtime/invocation/<id>/response   finish(): the caller gets 200
    POST /2018-06-01/runtime/invocation/<id>/error      finish() with Unhandled
    POST /2018-06-01/runtime/init/error           kept for the caller of the first invoke

A response over Lambda's 6 MB is refused with 413 (``_response_too_large``), and the
environment is discarded, as Lambda does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from lambdaflow import limits
from lambdaflow.testing.emulator_env import (
    BUSY,
    DEAD,
    IDLE,
    RETURNING,
    STARTING,
    Environment,
    Invocation,
)
from lambdaflow.testing.emulator_http import HttpConnection, Request
from lambdaflow.testing.peer import peer_is_in_tree

logger = logging.getLogger(__name__)

RUNTIME_PREFIX = "/2018-06-01/runtime/"
#: Lambda's limit on a synchronous response, as its error message states it.
RESPONSE_LIMIT = limits.SYNC_RESPONSE_ENFORCED_BYTES


class RuntimeRoutes:
    """Mixin: needs the attributes and methods of ``EmulatorCore`` listed below."""

    loop: asyncio.AbstractEventLoop
    region: str
    _finish: Callable[..., None]
    _discard: Callable[[Environment, str], None]
    _make_available: Callable[[Environment], None]
    _drain_output: Callable[[Environment], None]
    _on_timeout: Callable[[Environment, Invocation], None]
    state_of: Callable

    def _deliver(self, env: Environment) -> None:
        inv = env.invocation
        conn, env.parked = env.parked, None
        assert inv is not None and conn is not None, "deliver needs a parked poll"
        env.state = BUSY
        env.delivered = True
        now = time.time()
        inv.started = time.monotonic()
        if inv.timer is not None:
            inv.timer.cancel()
        inv.timer = self.loop.call_later(
            env.function.timeout_s, self._on_timeout, env, inv
        )
        headers = {
            "Lambda-Runtime-Aws-Request-Id": inv.request_id,
            "Lambda-Runtime-Deadline-Ms": str(
                int((now + env.function.timeout_s) * 1000)
            ),
            "Lambda-Runtime-Invoked-Function-Arn": env.function.arn(self.region),
            "Lambda-Runtime-Trace-Id": (
                f"Root=1-{int(now):08x}-{inv.request_id.replace('-', '')[:24]};Sampled=0"
            ),
        }
        if inv.client_context:
            headers["Lambda-Runtime-Client-Context"] = inv.client_context
        conn.respond(200, inv.payload, headers)

    def runtime_request(
        self, env: Environment, req: Request, conn: HttpConnection
    ) -> None:
        if conn.context is not env and not self._peer_allowed(env, conn):
            fs = self.state_of(env.function)
            if fs is not None:
                fs.counters["runtime_refused"] += 1
            conn.respond(
                403,
                b'{"errorMessage":"this Runtime API serves only its own execution '
                b'environment","errorType":"AccessDeniedException"}',
            )
            conn.close()
            return
        path = req.path
        if not path.startswith(RUNTIME_PREFIX) or env.state == DEAD:
            conn.respond(
                404 if env.state != DEAD else 403, b'{"errorType":"InvalidRequest"}'
            )
            return
        tail = path[len(RUNTIME_PREFIX) :]
        if tail == "invocation/next" and req.method == "GET":
            if env.cold_start_s is None:
                env.cold_start_s = time.monotonic() - env.spawned_at
            env.parked = conn
            if env.invocation is not None and not env.delivered:
                self._deliver(env)
            elif env.state in (STARTING, RETURNING):
                was_starting = env.state == STARTING
                env.state = IDLE  # before _make_available, which may deliver at once
                if was_starting:
                    self._make_available(env)
            return
        if tail == "init/error" and req.method == "POST":
            env.init_error = req.body
            conn.respond(202, b'{"status":"OK"}')
            return
        if tail.startswith("invocation/") and req.method == "POST":
            request_id, _, kind = tail[len("invocation/") :].partition("/")
            inv = env.invocation
            if (
                inv is None
                or inv.request_id != request_id
                or kind not in ("response", "error")
            ):
                conn.respond(
                    400,
                    b'{"errorMessage":"unknown request id","errorType":"InvalidRequestID"}',
                )
                return
            if kind == "response" and len(req.body) > RESPONSE_LIMIT:
                self._response_too_large(env, inv, conn)
                return
            conn.respond(202, b'{"status":"OK"}')
            self._drain_output(env)
            if kind == "response":
                self._finish(inv, req.body, None)
            else:
                self._finish(inv, req.body, "Unhandled")
            env.invocation = None
            env.state = RETURNING if env.parked is None else IDLE
            self._make_available(env)
            return
        conn.respond(404, b'{"errorType":"InvalidRequest"}')

    def _peer_allowed(self, env: Environment, conn: HttpConnection) -> bool:
        """Is this connection from the environment's own process tree? (once per
        connection; the answer is kept in ``conn.context``)."""
        transport = conn.transport
        peer = transport.get_extra_info("peername") if transport else None
        local = transport.get_extra_info("sockname") if transport else None
        if not peer or not local or env.pid <= 0:
            return False
        if not peer_is_in_tree(peer[1], local[1], env.pid):
            logger.warning(
                "runtime API of %s refused a connection from 127.0.0.1:%d: not a "
                "process of that environment", env.env_id, peer[1],
            )  # fmt: skip
            return False
        conn.context = env
        return True

    def _response_too_large(
        self, env: Environment, inv: Invocation, conn: HttpConnection
    ) -> None:
        """What Lambda does with a response over 6 MB: the Runtime API refuses it (413),
        the caller gets Function.ResponseSizeTooLarge, the environment exits and is not
        reused (a fresh one serves the next invoke)."""
        conn.respond(
            413,
            json.dumps(
                {
                    "errorMessage": "Exceeded maximum allowed payload size "
                    f"({RESPONSE_LIMIT} bytes).",
                    "errorType": "RequestEntityTooLarge",
                }
            ).encode(),
        )
        body = json.dumps(
            {
                "errorMessage": "Response payload size exceeded maximum "
                f"allowed payload size ({RESPONSE_LIMIT} bytes).",
                "errorType": "Function.ResponseSizeTooLarge",
            }
        ).encode()
        self._drain_output(env)
        self._finish(inv, body, "Unhandled")
        env.invocation = None
        self._discard(env, "too-large")
