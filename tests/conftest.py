"""Shared fixtures.

``backend`` is the conformance-suite parameter: every test that takes ``rt`` runs once
per backend, on a runtime shared by the module (pytest groups tests by backend so each
runtime starts once). The ``lambda`` backend runs against
``lambdaflow.testing.aws_local.local_aws`` (moto server + the Lambda emulator, both on
127.0.0.1); it is always part of the suite unless ``LAMBDAFLOW_TEST_LAMBDA=0`` leaves it
out: stand-ins that do not import are an error, never a silent skip.

MXNet: a test module marked ``mxnet`` imports it with
``pytest.importorskip("mxnet", reason=NEEDS_MXNET)``, so it skips, with that reason, where
MXNet is not installed (the default install, numpy 2). ``--require-mxnet`` (the
MXNet environment's run, ``make test``) turns that around: MXNet must import, and an
``mxnet`` test that skips fails the run.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

import lambdaflow as lf

NEEDS_MXNET = (
    "needs MXNet: pip install 'lambdaflow[mxnet]' (numpy<1.24); "
    "make test runs these in .venvs/mxnet-py311"
)


def _lambda_backends() -> list[str]:
    if os.environ.get("LAMBDAFLOW_TEST_LAMBDA", "1") == "0":
        return []
    try:
        import lambdaflow.runtime.backends.aws_lambda  # noqa: F401
        import lambdaflow.testing.aws_local  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"the conformance suite's lambda backend does not import ({exc}): install the "
            "aws and dev extras (make install), or set LAMBDAFLOW_TEST_LAMBDA=0 to leave "
            "the lambda backend out"
        ) from exc
    return ["lambda"]


BACKENDS = ["threads", "processes", *_lambda_backends()]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-mxnet",
        action="store_true",
        help="MXNet must import and every selected mxnet test must run (no skips)",
    )
    parser.addoption(
        "--skip-once-per-ci",
        metavar="WHERE",
        help="skip the tests marked once_per_ci, saying they ran in WHERE (make test "
        "passes it to every suite but the first)",
    )
    parser.addoption(
        "--cpu-top",
        type=int,
        metavar="N",
        help="print the N tests and modules that used the most CPU (tests/cputime.py)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--cpu-top"):
        from tests.cputime import CpuTimes

        config.pluginmanager.register(CpuTimes(config.getoption("--cpu-top")), "cpu-top")
    if config.getoption("--require-mxnet"):
        try:
            import mxnet  # noqa: F401
        except Exception as exc:  # an ImportError, or numpy >= 1.24's AttributeError
            raise pytest.UsageError(
                f"--require-mxnet: MXNet does not import ({type(exc).__name__}: {exc}); "
                "install requirements/mxnet-py311.txt (make test does)"
            ) from exc
        config.pluginmanager.register(_NoMxnetSkips(), "require-mxnet")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``once_per_ci`` tests do not depend on the interpreter that runs the suite (their
    subject is a file, a lock or a subprocess on a fixed Python): CI runs them in its
    first suite only. Without --skip-once-per-ci (``pytest tests``) they all run."""
    where = config.getoption("--skip-once-per-ci")
    if where:
        skip = pytest.mark.skip(reason=f"once_per_ci: run by {where}")
        for item in items:
            if "once_per_ci" in item.keywords:
                item.add_marker(skip)


class _NoMxnetSkips:
    """With --require-mxnet, a skipped ``mxnet`` test fails the run."""

    def __init__(self) -> None:
        self.skipped: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and "mxnet" in report.keywords:
            self.skipped.append(report.nodeid)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.skipped:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.skipped:
            terminalreporter.section("--require-mxnet", red=True)
            for nodeid in self.skipped:
                terminalreporter.write_line(f"skipped, but MXNet is required: {nodeid}")


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
