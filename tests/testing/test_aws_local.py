"""local_aws(): moto + the Lambda emulator, created through real boto3 calls."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil
import pytest
from botocore.exceptions import ClientError

from lambdaflow.testing.aws_local import local_aws

HANDLERS_DIR = str(Path(__file__).resolve().parent)


def test_local_aws_yields_a_working_config():
    with local_aws(
        concurrency=3,
        bucket="lf-test",
        function_name="lf-worker",
        handler="handlers.s3_roundtrip",
        python_path=[HANDLERS_DIR],
        memory_mb=512,
        timeout_s=30,
    ) as aws:
        keys = aws.moto.credentials
        assert aws.config == {
            "function_name": "lf-worker",
            "bucket": "lf-test",
            "prefix": "lambdaflow/",
            "region": "us-east-1",
            "lambda_endpoint_url": aws.emulator.endpoint_url,
            "s3_endpoint_url": aws.moto.endpoint_url,
            "max_concurrency": 3,
            "aws_access_key_id": keys["aws_access_key_id"],
            "aws_secret_access_key": keys["aws_secret_access_key"],
        }
        assert keys["aws_access_key_id"].startswith("AKIA")  # moto's IAM user, per run
        assert aws.env["LAMBDAFLOW_BACKEND"] == "lambda"
        assert aws.env["LAMBDAFLOW_LAMBDA_ENDPOINT_URL"] == aws.emulator.endpoint_url
        assert aws.env["LAMBDAFLOW_MAX_CONCURRENCY"] == "3"
        assert aws.env["LAMBDAFLOW_AWS_ACCESS_KEY_ID"] == keys["aws_access_key_id"]
        assert not [k for k in aws.env if k.startswith("AWS_")]

        s3 = aws.client("s3")
        s3.head_bucket(Bucket="lf-test")
        lam = aws.client("lambda")
        function = lam.get_function(FunctionName="lf-worker")
        assert function["Configuration"]["MemorySize"] == 512
        assert function["Configuration"]["Role"] == aws.role_arn
        assert function["Concurrency"]["ReservedConcurrentExecutions"] == 3

        # The environment reaches moto with boto3's default endpoint resolution, as
        # the execution role: its session may write under the job prefix only.
        resp = lam.invoke(
            FunctionName="lf-worker",
            Payload=json.dumps(
                {"bucket": "lf-test", "key": "lambdaflow/hello", "outside_key": "other/x"}
            ).encode(),
        )
        body = json.loads(resp["Payload"].read())
        assert "FunctionError" not in resp, body
        assert (
            body["s3_endpoint"]
            == aws.moto.endpoint_url
            == body["lambdaflow_s3_endpoint"]
        )
        assert body["region"] == "us-east-1" and body["memory"] == "512"
        assert body["identity"].startswith(
            "arn:aws:sts::123456789012:assumed-role/lambdaflow-local-worker/"
        )
        assert body["access_key"] != keys["aws_access_key_id"]
        assert body["denied"] == "AccessDenied"  # moto enforced the worker policy
        assert body["lambda_endpoint"] == aws.emulator.endpoint_url
        assert (
            s3.get_object(Bucket="lf-test", Key="lambdaflow/hello")["Body"].read()
            == b"from the environment"
        )
        assert "Contents" not in s3.list_objects_v2(Bucket="lf-test", Prefix="other/")
        assert aws.client("sqs").list_queues().get("QueueUrls", []) == []
        pids = [e["pid"] for e in aws.emulator.stats()["environments"]]
        moto_proc = aws.moto._proc
    assert moto_proc.poll() is not None
    for pid in pids:
        assert (
            not psutil.pid_exists(pid)
            or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        )


def test_local_aws_checks_its_arguments():
    with pytest.raises(ValueError, match="concurrency"), local_aws(concurrency=0):
        pass


def test_local_aws_command_prints_exports_and_stops_on_sigint():
    import signal
    import subprocess
    import sys

    import boto3

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lambdaflow",
            "local-aws",
            "--concurrency",
            "2",
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        exports = {}
        for line in proc.stdout:
            if line.startswith("export "):
                name, _, value = line[len("export ") :].strip().partition("=")
                exports[name] = value
            if "Ctrl-C to stop" in line:
                break
        assert exports["LAMBDAFLOW_MAX_CONCURRENCY"] == "2"
        assert not [name for name in exports if name.startswith("AWS_")]
        lam = boto3.client(
            "lambda",
            endpoint_url=exports["LAMBDAFLOW_LAMBDA_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id=exports["LAMBDAFLOW_AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=exports["LAMBDAFLOW_AWS_SECRET_ACCESS_KEY"],
        )
        assert lam.get_function(FunctionName=exports["LAMBDAFLOW_FUNCTION_NAME"])
        stranger = boto3.client(
            "lambda",
            endpoint_url=exports["LAMBDAFLOW_LAMBDA_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        with pytest.raises(ClientError, match="UnrecognizedClientException"):
            stranger.get_function(FunctionName=exports["LAMBDAFLOW_FUNCTION_NAME"])
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children  # moto
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    assert code == 0, proc.stderr.read()
    assert not [
        c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE
    ]


def _scrubbed_env(home) -> dict[str, str]:
    """A new user's environment: no AWS_* or LAMBDAFLOW_* variables, an empty HOME.
    (AWS_EC2_METADATA_DISABLED only stops botocore from probing the instance
    metadata address should anything regress to the default credential chain.)"""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TMPDIR")}
    return {**keep, "HOME": str(home), "AWS_EC2_METADATA_DISABLED": "true"}


README_SNIPPET = """
import lambdaflow as lf
from lambdaflow.testing.aws_local import local_aws

@lf.remote
def square(x):
    return x * x

with local_aws(concurrency=4) as aws:
    lf.init(backend="lambda", **aws.config)
    print(lf.get([square.remote(i) for i in range(5)]))
    lf.shutdown()
"""


def test_readme_snippet_runs_with_no_aws_credentials_anywhere(tmp_path):
    """issue 10 item 3: the README's local_aws snippet on a fresh machine."""
    import subprocess
    import sys

    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", README_SNIPPET],
        env=_scrubbed_env(home),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[0, 1, 4, 9, 16]"
    assert not (home / ".aws").exists()


def test_local_aws_exports_are_self_sufficient(tmp_path):
    """What `lambdaflow local-aws` prints is all another shell needs."""
    import signal
    import subprocess
    import sys

    home = tmp_path / "home"
    home.mkdir()
    server = subprocess.Popen(
        [sys.executable, "-m", "lambdaflow", "local-aws", "--concurrency", "2", "--quiet"],
        env=_scrubbed_env(home), cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        exports = {}
        for line in server.stdout:
            if line.startswith("export "):
                name, _, value = line[len("export ") :].strip().partition("=")
                exports[name] = value
            if "Ctrl-C to stop" in line:
                break
        client = subprocess.run(
            [sys.executable, "-c", "import lambdaflow as lf\n"
             "sq = lf.remote(lambda x: x * x)\n"
             "with lf.init():\n    print(lf.get(sq.remote(7)))\n"],
            env={**_scrubbed_env(home), **exports}, cwd=tmp_path,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert client.returncode == 0, client.stderr[-3000:]
        assert client.stdout.strip() == "49"
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)


def test_stand_ins_die_with_a_killed_driver(tmp_path):
    """SIGKILL of the process that ran local_aws leaves no moto, emulator or environment."""
    import signal
    import subprocess
    import sys
    import time

    code = (
        "import json, sys, time\n"
        "from lambdaflow.testing.aws_local import local_aws\n"
        "with local_aws(concurrency=1) as aws:\n"
        "    aws.client('lambda').invoke(FunctionName=aws.config['function_name'],\n"
        "                                Payload=b'{\"lambdaflow\": \"ping\"}')\n"
        "    envs = [e['pid'] for e in aws.emulator.stats()['environments']]\n"
        "    print(json.dumps([aws.moto._proc.pid, aws.emulator.pid, *envs]), flush=True)\n"
        "    time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pids = json.loads(proc.stdout.readline())
    assert len(pids) == 3
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    deadline = time.monotonic() + 30
    while True:
        alive = [
            p for p in pids
            if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        ]  # fmt: skip
        if not alive:
            break
        assert time.monotonic() < deadline, f"left behind: {alive}"
        time.sleep(0.1)
