"""check_worker_version against moto's Docker-free Lambda, whose Invoke returns the payload
the test queues: the worker's side of the ping (lambda_entry) is not run here; the image
check (tests/test_worker_image.py) calls the real handler."""

from __future__ import annotations

import platform

import pytest

from lambdaflow._version import __version__
from lambdaflow.deploy import check_worker_version, functions, iam
from lambdaflow.errors import ConfigError

from .conftest import push_fake_image, queue_invoke_results, set_lambda_docker

IDS = {"partition": "aws", "account": "123456789012", "region": "us-east-1"}
PY = platform.python_version()


@pytest.fixture
def function(clients, settings) -> str:
    role = iam.ensure_role(clients.iam, settings, **IDS)[1]
    _, repo_uri = functions.ensure_repository(clients.ecr, settings)
    tag = settings.variant.image_tag(__version__)
    digest = push_fake_image(clients, settings.repository_name, tag)
    uri = functions.default_image_uri(repo_uri, settings)
    functions.ensure_function(clients.lambda_, settings, 1769, role, uri, digest)
    return "lftest-1769"


def test_matching_worker(clients, moto, function):
    queue_invoke_results(
        moto, {"lambdaflow_version": __version__, "python_version": PY}
    )
    worker = check_worker_version(clients.lambda_, function)
    assert (worker.lambdaflow_version, worker.python_version) == (__version__, PY)


def test_python_patch_level_may_differ(clients, moto, function):
    major_minor = ".".join(PY.split(".")[:2])
    queue_invoke_results(
        moto, {"lambdaflow_version": __version__, "python_version": f"{major_minor}.99"}
    )
    assert check_worker_version(clients.lambda_, function).python_version.endswith(
        ".99"
    )


@pytest.mark.parametrize(
    ("reply", "fragment"),
    [
        (
            {"lambdaflow_version": "0.0.1", "python_version": PY},
            "runs lambdaflow 0.0.1",
        ),
        (
            {"lambdaflow_version": __version__, "python_version": "2.7.18"},
            "Python 2.7.18",
        ),
        ({"status": "ok"}, "not lambdaflow's reply"),
    ],
)
def test_mismatch_is_a_clear_config_error(clients, moto, function, reply, fragment):
    queue_invoke_results(moto, reply)
    with pytest.raises(ConfigError, match=fragment) as info:
        check_worker_version(clients.lambda_, function)
    assert "build_and_push.sh" in str(info.value)


def test_missing_function(clients, moto):
    # moto's Docker-free Invoke answers for any name; its default backend checks the name.
    set_lambda_docker(moto, True)
    try:
        with pytest.raises(ConfigError, match="lambdaflow deploy --bucket"):
            check_worker_version(clients.lambda_, "lftest-1769")
    finally:
        set_lambda_docker(moto, False)


def test_client_versions_can_be_given(clients, moto, function):
    queue_invoke_results(
        moto, {"lambdaflow_version": "9.9.9", "python_version": "3.11.1"}
    )
    worker = check_worker_version(
        clients.lambda_, function, client_version="9.9.9", client_python="3.11.7"
    )
    assert worker.lambdaflow_version == "9.9.9"


# -- against the Lambda emulator, which runs the real handler under awslambdaric ----------


def _emulator_function(aws, name: str, handler: str) -> str:
    from lambdaflow.testing.aws_local import LOCAL_IMAGE_URI, LOCAL_ROLE

    lam = aws.client("lambda")
    lam.create_function(
        FunctionName=name,
        Role=LOCAL_ROLE,
        PackageType="Image",
        Code={"ImageUri": LOCAL_IMAGE_URI},
        ImageConfig={"Command": [handler]},
        Timeout=30,
        MemorySize=512,
        Environment={"Variables": aws.function_env()},
    )
    return name


@pytest.mark.slow
def test_real_worker_answers_the_ping(local_aws_env):
    aws = local_aws_env
    worker = check_worker_version(aws.client("lambda"), aws.config["function_name"])
    assert worker.lambdaflow_version == __version__
    assert worker.python_version == PY


@pytest.mark.slow
def test_stale_and_broken_workers_on_the_emulator(local_aws_env):
    aws = local_aws_env
    lam = aws.client("lambda")
    stale = _emulator_function(aws, "lftest-stale", "tests.deploy.handlers.stale_ping")
    broken = _emulator_function(aws, "lftest-broken", "tests.deploy.handlers.broken")
    try:
        with pytest.raises(ConfigError, match="runs lambdaflow 0.0.1 on Python 3.11.0"):
            check_worker_version(lam, stale)
        with pytest.raises(ConfigError, match="failed the version ping .*mxnet"):
            check_worker_version(lam, broken)
        with pytest.raises(ConfigError, match="not found"):
            check_worker_version(lam, "lftest-missing")
    finally:
        for name in (stale, broken):
            lam.delete_function(FunctionName=name)
