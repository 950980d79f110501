"""Shared fixtures.

``backend`` is the conformance-suite parameter: every test that takes ``rt`` runs once
per backend, on a runtime shared by the module (pytest groups tests by backend so each
runtime starts once). The ``lambda`` backend joins when its stand-ins are importable:
it runs against ``lambdaflow.testing.aws_local.local_aws`` (moto server + the Lambda
emulator, both on 127.0.0.1).
"""

from __future__ import annotations

import os

import pytest

import lambdaflow as lf

BACKENDS = ["threads", "processes"]
if os.environ.get("LAMBDAFLOW_TEST_LAMBDA", "1") != "0":
    try:
        import lambdaflow.runtime.backends.aws_lambda  # noqa: F401
        import lambdaflow.testing.aws_local  # noqa: F401

        BACKENDS.append("lambda")
    except ImportError:
        pass


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test that takes more than a few seconds")


@pytest.fixture(scope="session")
def local_aws_env():
    """moto server + Lambda emulator for the whole session (started on first use)."""
    from lambdaflow.testing.aws_local import local_aws
    from lambdaflow.testing.moto_server import FAKE_CREDENTIALS

    saved = {k: os.environ.get(k) for k in FAKE_CREDENTIALS}
    os.environ.update(FAKE_CREDENTIALS)  # the driver's boto3 clients need some
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        with local_aws(concurrency=8, python_path=[root]) as aws:
            yield aws
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def start_runtime(backend: str, request, **extra):
    lf.shutdown()
    if backend == "lambda":
        aws = request.getfixturevalue("local_aws_env")
        return lf.init(backend="lambda", **dict(aws.config, **extra))
    return lf.init(backend=backend, num_workers=extra.pop("num_workers", 2), **extra)


@pytest.fixture(scope="module", params=BACKENDS)
def rt(request):
    runtime = start_runtime(request.param, request)
    runtime.backend_name = request.param
    yield runtime
    runtime.shutdown()


@pytest.fixture
def fresh():
    """Make sure no runtime is live before and after the test."""
    lf.shutdown()
    yield
    lf.shutdown()
