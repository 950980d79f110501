"""The README's "try the lambda backend without an account" path, as a user runs it:
``lambdaflow local-aws`` in one process; in another, only the variables it prints (no
AWS credentials or settings of this machine, a fresh HOME), the README's upload line,
and ``lambdaflow histogram s3://... --backend lambda``. Its result must equal the
``processes`` backend's on the same file exactly.

Issue 13: with exactly those variables the driver's probe failed ("Could not connect to
the endpoint URL: https://lambdaflow-local.s3.amazonaws.com/..."), because the video
source ignored LAMBDAFLOW_S3_ENDPOINT_URL.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("boto3")
pytest.importorskip("av")

pytestmark = pytest.mark.slow

#: The README's upload line (the AWS CLI works too: aws s3 cp --endpoint-url ...).
UPLOAD = ("from lambdaflow import aws; "
          "aws.client('s3').upload_file('sample.mp4', 'lambdaflow-local', 'in/sample.mp4')")


def _base_env(home: str) -> dict[str, str]:
    """What a fresh shell has: PATH and a HOME without ~/.aws; no AWS_* or LAMBDAFLOW_*."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LANG": "C.UTF-8"}


def _run(args: list[str], env: dict, cwd: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"{shlex.join(args)} failed:\n{proc.stderr[-4000:]}"
    return proc


def test_readme_local_aws_path_equals_processes(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    base = _base_env(str(home))
    _run(["-m", "lambdaflow", "sample-video", "sample.mp4", "--seconds", "3", "--width", "160",
          "--height", "120", "--gop", "15"], base, str(tmp_path))
    server = subprocess.Popen(
        [sys.executable, "-m", "lambdaflow", "local-aws", "--concurrency", "4", "--quiet",
         "--read", "s3://lambdaflow-local/in/"],
        env=base, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        exports = {}
        for line in server.stdout:
            if line.startswith("export "):
                name, _, value = line[len("export "):].strip().partition("=")
                exports[name] = shlex.split(value)[0] if value else ""
            if "Ctrl-C to stop" in line:
                break
        assert "LAMBDAFLOW_S3_ENDPOINT_URL" in exports, "local-aws printed no exports"
        env = dict(base, **exports)
        _run(["-c", UPLOAD], env, str(tmp_path))
        _run(["-m", "lambdaflow", "histogram", "s3://lambdaflow-local/in/sample.mp4",
              "--backend", "lambda", "--batch", "15", "--no-progress", "--out", "lambda.npy"],
             env, str(tmp_path))
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    _run(["-m", "lambdaflow", "histogram", "sample.mp4", "--backend", "processes",
          "--batch", "15", "--workers", "2", "--no-progress", "--out", "processes.npy"],
         base, str(tmp_path))
    on_lambda = np.load(tmp_path / "lambda.npy")
    on_processes = np.load(tmp_path / "processes.npy")
    assert on_lambda.shape == on_processes.shape and on_lambda.shape[0] == 90
    assert np.array_equal(on_lambda, on_processes)
