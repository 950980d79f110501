"""local_aws(): moto + the Lambda emulator, created through real boto3 calls."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

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
        assert aws.config == {
            "function_name": "lf-worker",
            "bucket": "lf-test",
            "prefix": "lambdaflow/",
            "region": "us-east-1",
            "lambda_endpoint_url": aws.emulator.endpoint_url,
            "s3_endpoint_url": aws.moto.endpoint_url,
            "max_concurrency": 3,
        }
        assert aws.env["LAMBDAFLOW_BACKEND"] == "lambda"
        assert aws.env["LAMBDAFLOW_LAMBDA_ENDPOINT_URL"] == aws.emulator.endpoint_url
        assert aws.env["LAMBDAFLOW_MAX_CONCURRENCY"] == "3"
        assert (
            aws.env["AWS_ACCESS_KEY_ID"]
            and aws.env["AWS_DEFAULT_REGION"] == "us-east-1"
        )

        s3 = aws.client("s3")
        s3.head_bucket(Bucket="lf-test")
        lam = aws.client("lambda")
        function = lam.get_function(FunctionName="lf-worker")
        assert function["Configuration"]["MemorySize"] == 512
        assert function["Concurrency"]["ReservedConcurrentExecutions"] == 3

        # An execution environment reaches moto with boto3's default endpoint resolution.
        resp = lam.invoke(
            FunctionName="lf-worker",
            Payload=json.dumps({"bucket": "lf-test", "key": "hello"}).encode(),
        )
        body = json.loads(resp["Payload"].read())
        assert "FunctionError" not in resp, body
        assert (
            body["s3_endpoint"]
            == aws.moto.endpoint_url
            == body["lambdaflow_s3_endpoint"]
        )
        assert body["region"] == "us-east-1" and body["memory"] == "512"
        assert (
            s3.get_object(Bucket="lf-test", Key="hello")["Body"].read()
            == b"from the environment"
        )
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
        lam = boto3.client(
            "lambda",
            endpoint_url=exports["LAMBDAFLOW_LAMBDA_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        assert lam.get_function(FunctionName=exports["LAMBDAFLOW_FUNCTION_NAME"])
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children  # moto
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    assert code == 0, proc.stderr.read()
    assert not [
        c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE
    ]
