"""``lambdaflow deploy / destroy / status`` (lambdaflow/commands/deploy.py) on moto."""

from __future__ import annotations

import argparse
import platform
import re

import cloudpickle
import pytest

from lambdaflow import config, deploy_settings, variants
from lambdaflow._version import __version__
from lambdaflow.commands import deploy as command
from lambdaflow.errors import ConfigError
from lambdaflow.testing.moto_server import FAKE_CREDENTIALS

from .conftest import push_fake_image, queue_invoke_results


@pytest.fixture
def run(moto, monkeypatch, capsys, tmp_path):
    for key, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    for key in list(__import__("os").environ):
        if key.startswith("LAMBDAFLOW_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)  # the settings file lands in ./.lambdaflow/
    parser = argparse.ArgumentParser(prog="lambdaflow")
    command.register(parser.add_subparsers())

    def run(*argv: str) -> tuple[int, str]:
        args = parser.parse_args(
            [*argv, "--endpoint-url", moto.endpoint_url, "--region", "us-east-1"]
        )
        code = args.func(args)
        return code, capsys.readouterr().out

    return run


VARIANT = variants.driver_variant().name
#: A variant whose Python is not the one running these tests (the CLI must refuse it).
OTHER = next(v for v in variants.VARIANTS.values() if v.python != variants.python_minor())


def test_deploy_push_deploy_status_destroy(run, clients, moto, tmp_path):
    code, out = run("deploy", "--bucket", "cli-test-jobs", "--name", "clitest")
    assert code == 0
    assert "bucket      cli-test-jobs" in out and "created" in out
    assert "skipped" in out
    assert f"worker_image/build_and_push.sh {VARIANT} clitest" in out
    assert not (tmp_path / deploy_settings.DEFAULT_PATH).exists()  # nothing to use yet

    push_fake_image(clients, "clitest", f"{__version__}-{VARIANT}")
    argv = ("deploy", "--bucket", "cli-test-jobs", "--name", "clitest",
            "--memory", "3008,1769")  # fmt: skip
    code, out = run(*argv)
    assert code == 0
    assert "function    clitest-1769" in out
    # Every setting the backend needs, memory tiers included (13.7).
    for line in ("export LAMBDAFLOW_FUNCTION_NAME=clitest-1769",
                 "export LAMBDAFLOW_MEMORY_TIERS=1769,3008",
                 "export LAMBDAFLOW_BUCKET=cli-test-jobs",
                 "export LAMBDAFLOW_PREFIX=lambdaflow/",
                 "export LAMBDAFLOW_REGION=us-east-1",
                 f"image variant {VARIANT}"):  # fmt: skip
        assert line in out, line
    # ... and written to the file that init() reads, without any variable set.
    record = deploy_settings.read(tmp_path / deploy_settings.DEFAULT_PATH)
    assert record["functions"] == ["clitest-1769", "clitest-3008"]
    cfg = config.resolve(backend="lambda")
    assert (cfg.function_name, cfg.memory_tiers, cfg.bucket, cfg.region) == (
        "clitest-1769", "1769,3008", "cli-test-jobs", "us-east-1")

    code, out = run(*argv)
    assert "deploy clitest: 7 unchanged" in out

    ping = {
        "lambdaflow_version": __version__,
        "python_version": platform.python_version(),
        "cloudpickle_version": cloudpickle.__version__,
        "image_variant": VARIANT,
    }
    queue_invoke_results(moto, ping, ping)
    code, out = run("status", "--name", "clitest")
    assert code == 0, out
    assert "clitest-3008" in out and f"lambdaflow {__version__}" in out
    assert "matches .lambdaflow/deployment.json" in out

    queue_invoke_results(moto, ping, {**ping, "lambdaflow_version": "0.0.1"})
    code, out = run("status", "--name", "clitest")
    assert code == 1
    assert "error: worker clitest-3008" in out and "lambdaflow 0.0.1" in out

    # What is live differs from the file: status says where.
    clients.lambda_.delete_function(FunctionName="clitest-3008")
    queue_invoke_results(moto, ping)
    code, out = run("status", "--name", "clitest")
    assert code == 1 and "function clitest-3008: in the file, not deployed" in out

    code, out = run("destroy", "--name", "clitest", "--yes")
    assert code == 0, out
    assert "destroy clitest: 6 deleted" in out
    assert clients.s3.list_buckets()["Buckets"] == []
    code, out = run("destroy", "--name", "clitest", "--yes")
    assert code == 0 and "deleted" not in out.rsplit("\n", 2)[-2]


def test_status_without_deployment(run):
    code, out = run("status", "--name", "nothing")
    assert code == 1 and "no functions deployed" in out


def test_destroy_asks_first(run, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    code, out = run("destroy", "--name", "clitest")
    assert code == 1 and "nothing deleted" in out


def test_destroy_without_a_terminal_says_so(run, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    monkeypatch.setattr("builtins.input", lambda prompt: (_ for _ in ()).throw(EOFError))
    with pytest.raises(ConfigError, match="no terminal to ask for confirmation; pass --yes"):
        run("destroy", "--name", "clitest")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (("deploy",), "no bucket given"),
        (("deploy", "--bucket", "b-ok", "--memory", "big"), "--memory"),
        (("deploy", "--bucket", "b-ok", "--env", "NOVALUE"), "KEY=VALUE"),
        (("deploy", "--bucket", "b-ok", "--env", "LAMBDAFLOW_BUCKET=x"), "sets"),
        (("deploy", "--bucket", "b-ok", "--variant", OTHER.name),
         re.escape(f"image variant {OTHER.name} runs Python {OTHER.python}, this driver "
                   f"runs Python {variants.python_minor()}")),
    ],
)
def test_bad_arguments(run, argv, fragment):
    with pytest.raises(ConfigError, match=fragment):
        run(*argv)


def test_registered_in_the_cli():
    from lambdaflow.cli import COMMAND_MODULES

    assert "lambdaflow.commands.deploy" in COMMAND_MODULES
