"""``lambdaflow deploy / destroy / status`` (lambdaflow/commands/deploy.py) on moto."""

from __future__ import annotations

import argparse
import platform

import pytest

from lambdaflow._version import __version__
from lambdaflow.commands import deploy as command
from lambdaflow.errors import ConfigError
from lambdaflow.testing.moto_server import FAKE_CREDENTIALS

from .conftest import push_fake_image, queue_invoke_results


@pytest.fixture
def run(moto, monkeypatch, capsys):
    for key, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    for key in ("LAMBDAFLOW_BUCKET", "LAMBDAFLOW_PREFIX", "LAMBDAFLOW_DEPLOYMENT"):
        monkeypatch.delenv(key, raising=False)
    parser = argparse.ArgumentParser(prog="lambdaflow")
    command.register(parser.add_subparsers())

    def run(*argv: str) -> tuple[int, str]:
        args = parser.parse_args(
            [*argv, "--endpoint-url", moto.endpoint_url, "--region", "us-east-1"]
        )
        code = args.func(args)
        return code, capsys.readouterr().out

    return run


def test_deploy_push_deploy_status_destroy(run, clients, moto):
    code, out = run("deploy", "--bucket", "cli-test-jobs", "--name", "clitest")
    assert code == 0
    assert "bucket      cli-test-jobs" in out and "created" in out
    assert "skipped" in out and "worker_image/build_and_push.sh clitest" in out

    push_fake_image(clients, "clitest", __version__)
    code, out = run(
        "deploy",
        "--bucket",
        "cli-test-jobs",
        "--name",
        "clitest",
        "--memory",
        "1769,3008",
    )
    assert code == 0
    assert "function    clitest-1769" in out
    assert "export LAMBDAFLOW_FUNCTION_NAME=clitest-1769" in out
    assert "export LAMBDAFLOW_BUCKET=cli-test-jobs" in out

    code, out = run(
        "deploy",
        "--bucket",
        "cli-test-jobs",
        "--name",
        "clitest",
        "--memory",
        "1769,3008",
    )
    assert "deploy clitest: 7 unchanged" in out

    ping = {
        "lambdaflow_version": __version__,
        "python_version": platform.python_version(),
    }
    queue_invoke_results(moto, ping, ping)
    code, out = run("status", "--name", "clitest")
    assert code == 0, out
    assert "clitest-3008" in out and f"lambdaflow {__version__}" in out

    queue_invoke_results(moto, ping, {**ping, "lambdaflow_version": "0.0.1"})
    code, out = run("status", "--name", "clitest")
    assert code == 1
    assert "error: worker clitest-3008 runs lambdaflow 0.0.1" in out

    code, out = run("destroy", "--name", "clitest", "--yes")
    assert code == 0
    assert "destroy clitest: 7 deleted" in out
    assert clients.s3.list_buckets()["Buckets"] == []


def test_status_without_deployment(run):
    code, out = run("status", "--name", "nothing")
    assert code == 1 and "no functions deployed" in out


def test_destroy_asks_first(run, monkeypatch):
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    code, out = run("destroy", "--name", "clitest")
    assert code == 1 and "nothing deleted" in out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (("deploy",), "no bucket given"),
        (("deploy", "--bucket", "b-ok", "--memory", "big"), "--memory"),
        (("deploy", "--bucket", "b-ok", "--env", "NOVALUE"), "KEY=VALUE"),
    ],
)
def test_bad_arguments(run, argv, fragment):
    with pytest.raises(ConfigError, match=fragment):
        run(*argv)


def test_registered_in_the_cli():
    from lambdaflow.cli import COMMAND_MODULES

    assert "lambdaflow.commands.deploy" in COMMAND_MODULES
