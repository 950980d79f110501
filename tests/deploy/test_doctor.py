"""``lambdaflow doctor`` on the stand-ins: the deploy-side checks against moto after a
real ``deploy`` (moto's Lambda answers the ping with queued replies), the test invoke and
keep-alive against the Lambda emulator running the real worker, and the keep-alive
check itself against real sockets."""

from __future__ import annotations

import json
import platform
import socket

import cloudpickle
import pytest

from lambdaflow import deploy_settings
from lambdaflow._version import __version__
from lambdaflow.deploy import deploy
from lambdaflow.deploy.doctor import FAIL, OK, SKIP, WARN, _keepalive, run_checks

from .conftest import push_fake_image, queue_invoke_results


def _by_name(checks):
    return {c.name: c for c in checks}


def test_doctor_after_deploy(clients, moto, settings, tmp_path):
    deploy(clients, settings)
    push_fake_image(clients, settings.repository_name, settings.variant.image_tag(__version__))
    result = deploy(clients, settings)
    path = deploy_settings.write(tmp_path / "deployment.json", result.record)
    ping = {"lambdaflow_version": __version__, "python_version": platform.python_version(),
            "cloudpickle_version": cloudpickle.__version__,
            "image_variant": settings.image_variant}
    queue_invoke_results(moto, *[ping] * 3)
    checks = _by_name(run_checks(clients, str(path), invoke=False))
    assert [checks[n].status for n in ("credentials", "region", "settings", "functions",
                                       "image variant", "role")] == [OK] * 6, checks
    assert checks["quotas"].status in (OK, WARN)  # moto has no GetAccountSettings
    assert checks["test invoke"].status == SKIP
    assert "lftest-1769, lftest-3008, lftest-10240" in checks["functions"].detail

    # Someone widens the role by hand; a tier is deleted; a worker is stale.
    clients.iam.put_role_policy(RoleName="lftest-worker", PolicyName="lambdaflow-worker",
                                PolicyDocument=json.dumps({"Version": "2012-10-17",
                                "Statement": [{"Effect": "Allow", "Action": "s3:*",
                                               "Resource": "*"}]}))  # fmt: skip
    clients.lambda_.delete_function(FunctionName="lftest-10240")
    queue_invoke_results(moto, ping, {**ping, "python_version": "3.9.1"})
    checks = _by_name(run_checks(clients, str(path), invoke=False))
    assert checks["role"].status == FAIL and "differs" in checks["role"].detail
    assert checks["functions"].status == FAIL
    assert "lftest-10240: in the file, not deployed" in checks["functions"].detail
    assert checks["image variant"].status == FAIL
    assert "Python 3.9.1" in checks["image variant"].detail


def test_doctor_without_settings_file(clients, tmp_path):
    checks = _by_name(run_checks(clients, str(tmp_path / "none.json")))
    assert checks["settings"].status == FAIL and "lambdaflow deploy" in checks["settings"].fix


@pytest.mark.parametrize("idle, status", [(30, OK), (None, FAIL), (7200, FAIL)])
def test_keepalive_check_reads_the_sockets(idle, status):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        try:
            if idle is not None:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            alive = client.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
            got = client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) if alive else None
            check = _keepalive(f"http://127.0.0.1:{port}", [(alive, got)])
        finally:
            client.close()
    assert check.status == status, check


def test_doctor_test_invoke_on_the_emulator(tmp_path, monkeypatch):
    """A real task through the lambda backend on the emulator (the real worker under
    awslambdaric): the worker reaches the job prefix and sees a missing key as absent."""
    from lambdaflow.deploy import AwsClients
    from lambdaflow.testing.aws_local import local_aws
    with local_aws(concurrency=2, function_name="lfdoc-1769") as aws:
        for name, value in aws.env.items():  # what `lambdaflow local-aws` prints
            monkeypatch.setenv(name, value)
        record = {"deployment": "lfdoc", "function_name": "lfdoc-1769",
                  "memory_tiers": "1769", "bucket": aws.config["bucket"],
                  "prefix": aws.config["prefix"], "region": aws.region,
                  "image_variant": "py3.11", "functions": ["lfdoc-1769"]}
        path = deploy_settings.write(tmp_path / "deployment.json", record)
        monkeypatch.setenv("LAMBDAFLOW_LAMBDA_ENDPOINT_URL", aws.emulator.endpoint_url)
        monkeypatch.setenv("AWS_ENDPOINT_URL", aws.moto.endpoint_url)  # the rest
        clients = AwsClients.create(region=aws.region)
        endpoints = {k: aws.config[k] for k in ("lambda_endpoint_url", "s3_endpoint_url")}
        checks = _by_name(run_checks(clients, str(path), config=endpoints))
    assert checks["credentials"].status == OK
    assert checks["functions"].status == WARN  # the emulator keeps no tags: said so
    assert checks["test invoke"].status == OK, checks["test invoke"]
    assert "a key not yet written is absent" in checks["test invoke"].detail
    # The check found the invoke connections: the transport sets keep-alive on them.
    assert checks["keep-alive"].status == OK, checks["keep-alive"]
    assert "connection" in checks["keep-alive"].detail
