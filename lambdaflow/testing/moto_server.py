"""Run moto's server mode (S3, DynamoDB, SQS, IAM, ECR, Lambda control plane) on
127.0.0.1 for tests and local runs.

    with MotoServer() as moto:
        s3 = boto3.client("s3", endpoint_url=moto.endpoint_url, **moto.client_kwargs)

The server listens on a free port, is started with the same Python interpreter
(``python -m moto.server``) and is stopped on exit (also at interpreter exit).
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
import urllib.request

#: Credentials moto accepts; any non-empty values work.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
DEFAULT_REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServer:
    """A ``moto_server`` process on 127.0.0.1 and a free port."""

    def __init__(self, port: int | None = None, region: str = DEFAULT_REGION) -> None:
        self.port = port or free_port()
        self.region = region
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen | None = None

    @property
    def client_kwargs(self) -> dict:
        """Keyword arguments for ``boto3.client(...)`` talking to this server."""
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": self.region,
            "aws_access_key_id": FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "aws_session_token": FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
        }

    def start(self, timeout: float = 30.0) -> MotoServer:
        if self._proc is not None:
            return self
        env = dict(os.environ, **FAKE_CREDENTIALS)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"moto_server exited with code {self._proc.returncode}; "
                    "is moto[server] installed? (pip install 'lambdaflow[dev]')"
                )
            try:
                urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto_server did not answer on {self.endpoint_url} in {timeout}s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def reset(self) -> None:
        """Forget every resource (moto's reset API)."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).close()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
