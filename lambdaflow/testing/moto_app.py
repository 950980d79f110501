"""moto's server behind a gate: ``python -m lambdaflow.testing.moto_app --port N``.

moto's server mode answers anyone on the host, and its ``/moto-api/`` routes (reset
every backend, switch authentication off with ``reset-auth``) need no credentials at
all. This launcher serves the same WSGI application as ``python -m moto.server`` with
one middleware in front:

    request ──> Gate ──/moto-api/*: needs X-Lambdaflow-Moto-Token ──> moto
                  └──── anything else: needs the token until IAM is armed ──> moto
                                        (then moto's own SigV4 + IAM checks decide)

The token comes from the environment variable ``LAMBDAFLOW_MOTO_TOKEN`` (never the
command line, which every user on the host can read in ``ps``) and is removed from the
environment at once. "Armed" means moto's ``INITIAL_NO_AUTH_ACTION_COUNT`` is 0: every
request is authenticated against moto's IAM users and assumed roles and authorized
by their policies (moto's "IAM-like access control", docs/iam.rst in moto). The
``MotoServer`` that started the process bootstraps an admin user while unarmed (only
token holders get through), then arms it with ``POST /moto-api/reset-auth`` ``0``.

With the gate on, S3 permissions are evaluated as AWS evaluates them (``moto_iam``).
Without ``LAMBDAFLOW_MOTO_TOKEN`` the gate is off and this is plain ``moto.server``.
"""

from __future__ import annotations

import argparse
import hmac
import os
import signal
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

TOKEN_VAR = "LAMBDAFLOW_MOTO_TOKEN"
TOKEN_HEADER = "X-Lambdaflow-Moto-Token"
_WSGI_HEADER = "HTTP_" + TOKEN_HEADER.upper().replace("-", "_")

StartResponse = Callable[..., Any]


class Gate:
    """WSGI middleware: the token on every ``/moto-api/`` call, and on every call while
    moto's IAM enforcement is off."""

    def __init__(self, app: Callable[..., Iterable[bytes]], token: str) -> None:
        self.app = app
        self.token = token.encode()

    @staticmethod
    def armed() -> bool:
        from moto import settings

        return settings.INITIAL_NO_AUTH_ACTION_COUNT == 0

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/moto-api") or not self.armed():
            given = environ.get(_WSGI_HEADER, "").encode()
            if not hmac.compare_digest(given, self.token):
                return _denied(start_response, "the lambdaflow moto gate needs its token")
        elif "HTTP_AUTHORIZATION" not in environ and "X-Amz-Signature=" not in (
            environ.get("QUERY_STRING", "")
        ):  # moto answers an unsigned request with a 500 (KeyError); AWS says 403
            return _denied(start_response, "Anonymous access is not allowed")
        if not self.armed():
            return self.app(environ, start_response)
        return self._call_armed(environ, start_response)

    def _call_armed(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        """Run moto; a 404 for a key the caller could not list becomes 403 (moto_iam)."""
        from lambdaflow.testing.moto_iam import may_list

        may_list.set(None)
        held: list[tuple] = []

        def hold(status: str, headers: list, exc_info: Any = None) -> Callable:
            held.append((status, headers, exc_info))
            return lambda data: None

        body = self.app(environ, hold)
        if (
            held
            and held[0][0].startswith("404")
            and environ.get("REQUEST_METHOD") in ("GET", "HEAD")
            and may_list.get() is False
        ):
            if hasattr(body, "close"):
                body.close()
            return _denied(start_response, "Access Denied")
        if held:
            start_response(*held[0])
        return body


def _denied(start_response: StartResponse, message: str) -> list[bytes]:
    """403 AccessDenied in S3's XML error shape (botocore reads the code from it)."""
    body = (
        "<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
        f"<Message>{message}</Message></Error>"
    ).encode()
    start_response(
        "403 Forbidden",
        [
            ("Content-Type", "application/xml"),
            ("Content-Length", str(len(body))),
            ("x-amzn-ErrorType", "AccessDenied"),
        ],
    )
    return [body]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))
    token = os.environ.pop(TOKEN_VAR, "")
    from lambdaflow.testing.emulator_bootstrap import die_with_parent

    die_with_parent(signal.SIGTERM)  # no moto left behind by a killed driver

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app: Any = DomainDispatcherApplication(create_backend_app)
    if token:
        from lambdaflow.testing.moto_iam import install

        install()
        app = Gate(app, token)
    run_simple(
        args.host,
        args.port,
        app,
        threaded=True,
        request_handler=MotoRequestHandler,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
