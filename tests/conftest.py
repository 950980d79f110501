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
def local_aws_env(tmp_path_factory):
    """moto server + Lambda emulator for the whole session (started on first use).

    Nothing is put into ``os.environ``: the driver gets the stand-ins' credentials from
    ``aws.config``, as a user's ``lf.init(backend="lambda", **aws.config)`` does, and the
    workers' S3 calls are checked by moto against the worker role's policy."""
    from lambdaflow.testing.aws_local import local_aws

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shared = [str(tmp_path_factory.getbasetemp())]  # tests' marker files, seen by workers
    with local_aws(
        concurrency=8, python_path=[root], shared_paths=shared,
        read_locations=["s3://lambdaflow-local/inputs/"],  # as `deploy --read` grants
    ) as aws:  # fmt: skip
        yield aws


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
