"""The Lambda emulator in its own process, and the command that serves it.

``LambdaEmulator`` runs its event loop in a thread of the calling process, so it shares
that process's GIL: a driver that fans out from many boto3 threads then competes with
the emulator it is measuring. ``EmulatorProcess`` has the same Python API (``start``,
``stop``, ``endpoint_url``, ``create_function``, ``delete_function``, ``stats``, context
manager) over a child ``python -m lambdaflow.testing.lambda_emulator``:

    EmulatorProcess.start() ──spawn──> child: main() ──> LambdaEmulator, prints
                                         "Lambda emulator on http://127.0.0.1:PORT"
    create_function / stats ──HTTP──> /_emulator/functions, /_emulator/stats
    stop() ──SIGTERM──> child stops the emulator (kills and reaps every environment)

If the child is killed outright, its environments die with it (PR_SET_PDEATHSIG).

Secrets (the accepted keys, the STS service key) reach the child in the environment
variable ``_LAMBDAFLOW_EMULATOR_SECRETS`` (JSON), which it removes at once: a command
line is readable by every user on the host, a process's environment only by its owner.
The ``/_emulator/`` calls are SigV4-signed like any other.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from lambdaflow.testing.emulator_bootstrap import PARENT_PID_VAR, die_with_parent
from lambdaflow.testing.emulator_env import DEFAULT_HANDLER, FunctionConfig
from lambdaflow.testing.emulator_options import EmulatorOptions, accepted
from lambdaflow.testing.sigv4 import Credential

logger = logging.getLogger(__name__)

READY_LINE = "Lambda emulator on "
SECRETS_VAR = "_LAMBDAFLOW_EMULATOR_SECRETS"
OPTIONS_VAR = "_LAMBDAFLOW_EMULATOR_OPTIONS"  # EmulatorOptions as JSON, from EmulatorProcess


def _encode_secrets(
    credentials: list[Credential], sts_endpoint_url: str | None, service: Credential | None
) -> str:
    return json.dumps(
        {
            "credentials": [vars(c) for c in credentials],
            "sts_endpoint_url": sts_endpoint_url,
            "service_credential": vars(service) if service else None,
        }
    )


def _decode_secrets(text: str) -> dict:
    data = json.loads(text) if text else {}
    return {
        "credentials": [Credential(**c) for c in data.get("credentials", [])] or None,
        "sts_endpoint_url": data.get("sts_endpoint_url"),
        "service_credential": (
            Credential(**data["service_credential"])
            if data.get("service_credential")
            else None
        ),
    }


class EmulatorProcess:
    """``LambdaEmulator``'s API, served by a child process."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        options: EmulatorOptions | None = None,
        credentials: Sequence[Credential] | None = None,
        sts_endpoint_url: str | None = None,
        service_credential: Credential | None = None,
        **overrides: Any,
    ) -> None:
        """As ``LambdaEmulator``: ``options`` / ``overrides`` are ``EmulatorOptions``."""
        self.options, creds = accepted(
            options, overrides, credentials, sts_endpoint_url, service_credential)
        self.host = host
        self.port = port
        self.region = self.options.region
        self.credentials = creds[0]
        self._secrets = _encode_secrets(creds, sts_endpoint_url, service_credential)
        self._proc: subprocess.Popen | None = None
        self._url = ""

    @property
    def endpoint_url(self) -> str:
        if not self._url:
            raise RuntimeError(
                "EmulatorProcess is not started: call .start() or use `with`"
            )
        return self._url

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 60.0) -> EmulatorProcess:
        if self._proc is not None:
            return self
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "lambdaflow.testing.lambda_emulator",
             "--host", self.host, "--port", str(self.port)],
            stdout=subprocess.PIPE,
            text=True,
            env=dict(
                os.environ, **{SECRETS_VAR: self._secrets, OPTIONS_VAR: self.options.to_json(),
                               PARENT_PID_VAR: str(os.getpid())}
            ),
        )
        atexit.register(self.stop)
        line = _readline(self._proc, timeout)
        if not line.startswith(READY_LINE):
            self.stop()
            raise RuntimeError(
                f"the Lambda emulator process did not start (said {line!r}); "
                "run `python -m lambdaflow.testing.lambda_emulator` to see why"
            )
        self._url = line[len(READY_LINE) :].strip()
        self.port = int(self._url.rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        self._url = ""
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout:
            proc.stdout.close()
        atexit.unregister(self.stop)

    def __enter__(self) -> EmulatorProcess:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def create_function(self, name: str, **settings: Any) -> dict:
        """As ``LambdaEmulator.create_function`` (checked here first, so that a wrong
        name or value raises in the caller, as there)."""
        FunctionConfig.build(name, **settings)
        spec = {"name": name, **settings}
        return self._request("POST", "/_emulator/functions", spec)

    def delete_function(self, name: str) -> None:
        self._request("DELETE", f"/2015-03-31/functions/{name}")

    def stats(self) -> dict:
        """As ``LambdaEmulator.stats``."""
        return self._request("GET", "/_emulator/stats")

    def client(self, service: str = "lambda", **kwargs: object) -> object:
        """A boto3 client for this emulator, signed with ``.credentials``."""
        from lambdaflow.testing.lambda_emulator import signed_client

        return signed_client(self.endpoint_url, self.region, self.credentials, **kwargs)

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        data = json.dumps(body).encode() if body is not None else b""
        signed = AWSRequest(method=method, url=self.endpoint_url + path, data=data)
        cred = self.credentials
        SigV4Auth(
            Credentials(cred.access_key_id, cred.secret_access_key, cred.session_token),
            "lambda",
            self.region,
        ).add_auth(signed)
        req = urllib.request.Request(
            self.endpoint_url + path,
            data=data if body is not None else None,
            method=method,
            headers=dict(signed.headers.items()),
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            if exc.code == 404:
                raise KeyError(f"{method} {path}: {detail}") from None
            raise ValueError(f"{method} {path}: {detail}") from None
        return json.loads(raw) if raw else {}


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    """The child's first stdout line, or "" if it says nothing within ``timeout``."""
    out: list[str] = []
    stdout = proc.stdout
    assert stdout is not None, "the emulator process is started with stdout=PIPE"
    reader = threading.Thread(target=lambda: out.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return out[0] if out else ""


def main(argv: Sequence[str] | None = None) -> int:
    """Serve in the foreground: ``python -m lambdaflow.testing.lambda_emulator``."""
    from lambdaflow.testing.lambda_emulator import LambdaEmulator

    parser = argparse.ArgumentParser(description="Run the lambdaflow Lambda emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001, help="0: a free port")
    EmulatorOptions.add_arguments(parser)
    parser.add_argument(
        "--function-name", action="append", default=[],
        help="create this function at start (repeatable), with the options below",
    )  # fmt: skip
    parser.add_argument("--handler", default=DEFAULT_HANDLER)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--memory", type=int, default=1769)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    secrets = _decode_secrets(os.environ.pop(SECRETS_VAR, ""))
    if PARENT_PID_VAR in os.environ:  # started by EmulatorProcess: die with the driver
        die_with_parent(signal.SIGTERM)
    given = os.environ.pop(OPTIONS_VAR, "")
    options = EmulatorOptions.from_json(given) if given else EmulatorOptions.from_arguments(args)
    with LambdaEmulator(
        args.host,
        args.port,
        options=options,
        **secrets,
    ) as emu:
        if secrets["credentials"] is None:  # serving by hand: say which key to sign with
            cred = emu.credentials
            print(
                f"# sign with AWS_ACCESS_KEY_ID={cred.access_key_id} "
                f"AWS_SECRET_ACCESS_KEY={cred.secret_access_key}",
                file=sys.stderr,
                flush=True,
            )
        for name in args.function_name:
            emu.create_function(
                name,
                handler=args.handler,
                timeout_s=args.timeout,
                memory_mb=args.memory,
                concurrency=args.concurrency,
            )
        print(f"{READY_LINE}{emu.endpoint_url}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0
