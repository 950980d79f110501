"""Run moto's server mode (S3, DynamoDB, SQS, IAM, STS, ECR, Lambda control plane) on
127.0.0.1 for tests and local runs.

    with MotoServer(iam=True) as moto:
        s3 = boto3.client("s3", **moto.client_kwargs)

The server listens on a free port, is started with the same Python interpreter
(``python -m lambdaflow.testing.moto_app``: moto's WSGI app behind a token gate) and is
stopped on exit (also at interpreter exit).

Two modes:

- ``iam=True`` (what ``local_aws`` uses): the gate admits only holders of a per-run
  token until moto's IAM enforcement is armed; start() then creates an IAM user
  ``lambdaflow-local-admin`` with an ``*`` policy and an access key (random, per run),
  and arms moto (``INITIAL_NO_AUTH_ACTION_COUNT`` = 0 through ``/moto-api/reset-auth``).
  From then on moto verifies every request's SigV4 signature against its IAM users and
  STS sessions and evaluates their policies; ``/moto-api/`` always needs the token.
  ``client_kwargs`` and ``credentials`` carry the admin key.
- ``iam=False`` (the default, for unit tests of other modules): moto as it comes; any
  credentials work (``FAKE_CREDENTIALS``). Reachable by anyone on the host while it
  runs, so keep it to tests.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from lambdaflow.testing.emulator_bootstrap import PARENT_PID_VAR
from lambdaflow.testing.moto_app import TOKEN_HEADER, TOKEN_VAR

#: Credentials moto accepts when it does not enforce IAM; any non-empty values work.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
DEFAULT_REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
ADMIN_USER = "lambdaflow-local-admin"
_ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServer:
    """A moto server process on 127.0.0.1 and a free port."""

    def __init__(
        self, port: int | None = None, region: str = DEFAULT_REGION, *, iam: bool = False
    ) -> None:
        self.port = port or free_port()
        self.region = region
        self.iam = iam
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._token = secrets.token_urlsafe(32)
        self._proc: subprocess.Popen | None = None
        #: ``aws_access_key_id`` / ``aws_secret_access_key`` (/ ``aws_session_token``)
        self.credentials: dict[str, str] = {
            "aws_access_key_id": FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "aws_session_token": FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
        }

    @property
    def client_kwargs(self) -> dict:
        """Keyword arguments for ``boto3.client(...)`` talking to this server."""
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": self.region,
            **self.credentials,
        }

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client with the server's (admin) credentials."""
        import boto3

        return boto3.client(service, **dict(self.client_kwargs, **kwargs))

    def start(self, timeout: float = 30.0) -> MotoServer:
        if self._proc is not None:
            return self
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
        env.update(FAKE_CREDENTIALS)  # moto's own boto3 calls (never leave the process)
        if self.iam:
            env[TOKEN_VAR] = self._token
        env[PARENT_PID_VAR] = str(os.getpid())
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "lambdaflow.testing.moto_app",
             "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )  # fmt: skip
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"moto_server exited with code {self._proc.returncode}; "
                    "is moto[server] installed? (pip install 'lambdaflow[dev]')"
                )
            try:
                self.admin_request("GET", "/moto-api/data.json")
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"moto_server did not answer on {self.endpoint_url} in {timeout}s"
                    ) from None
                time.sleep(0.1)
        if self.iam:
            self._bootstrap_admin()
        return self

    def _bootstrap_admin(self) -> None:
        """Create the admin user and its key while only token holders get in; arm IAM."""
        import boto3

        iam = boto3.client(
            "iam", endpoint_url=self.endpoint_url, region_name=self.region,
            aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap",
        )  # fmt: skip
        iam.meta.events.register("before-send.iam.*", self._add_token)
        iam.create_user(UserName=ADMIN_USER)
        iam.put_user_policy(
            UserName=ADMIN_USER,
            PolicyName="admin",
            PolicyDocument=json.dumps(_ADMIN_POLICY),
        )
        key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
        self.credentials = {
            "aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"],
        }
        self.admin_request("POST", "/moto-api/reset-auth", b"0")

    def _add_token(self, request: Any, **_: Any) -> None:
        request.headers[TOKEN_HEADER] = self._token

    def admin_request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        """A ``/moto-api/`` call with the gate's token (reset, config, ...)."""
        req = urllib.request.Request(
            self.endpoint_url + path, data=body, method=method,
            headers={TOKEN_HEADER: self._token, "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.read()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        atexit.unregister(self.stop)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def reset(self) -> None:
        """Forget every resource (moto's reset API). With ``iam=True`` the admin user
        is created again (new keys: read ``client_kwargs`` after this)."""
        if self.iam:
            self.admin_request("POST", "/moto-api/reset-auth", b"inf")
        self.admin_request("POST", "/moto-api/reset")
        if self.iam:
            self._bootstrap_admin()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
