"""The emulator's one list of options: keywords, JSON to the child process and the
command line all come from ``EmulatorOptions``'s fields, and a wrong name or value is
refused with the name in the message."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from lambdaflow.testing.emulator_options import EmulatorOptions
from lambdaflow.testing.emulator_process import EmulatorProcess
from lambdaflow.testing.lambda_emulator import LambdaEmulator

CHANGED = dict(
    region="eu-west-3", account_concurrency=50, min_unreserved=10,
    python_path=("/opt/a", "/opt/b"), task_root="/var/task", memory_limit=None,
    rlimit_headroom_mb=256, async_retry_delays_s=(0.5, 1.5), idle_timeout_s=9.0,
    isolate=False, shared_paths=("/tmp/x",), echo_logs=True,
)  # fmt: skip


def test_every_field_is_changed_by_this_test():
    names = {f.name for f in dataclasses.fields(EmulatorOptions)}
    assert names == set(CHANGED)
    defaults = EmulatorOptions()
    assert all(getattr(defaults, k) != v for k, v in CHANGED.items())


def test_json_round_trip_keeps_every_option():
    opts = EmulatorOptions.build(**CHANGED)
    assert EmulatorOptions.from_json(opts.to_json()) == opts


def test_the_command_line_gives_what_the_keywords_give():
    parser = argparse.ArgumentParser()
    EmulatorOptions.add_arguments(parser)
    argv = [
        "--region", "eu-west-3", "--account-concurrency", "50", "--min-unreserved", "10",
        "--python-path", "/opt/a", "--python-path", "/opt/b", "--task-root", "/var/task",
        "--memory-limit", "none", "--rlimit-headroom-mb", "256",
        "--async-retry-delays-s", "0.5", "--async-retry-delays-s", "1.5",
        "--idle-timeout-s", "9", "--no-isolate", "--shared-paths", "/tmp/x", "--echo-logs",
    ]  # fmt: skip
    assert EmulatorOptions.from_arguments(parser.parse_args(argv)) == EmulatorOptions(
        **CHANGED)
    assert EmulatorOptions.from_arguments(parser.parse_args([])) == EmulatorOptions()


@pytest.mark.parametrize("kind", [LambdaEmulator, EmulatorProcess])
def test_an_unknown_option_is_named(kind):
    with pytest.raises(TypeError, match="memory_limt"):
        kind(memory_limt="rss")


@pytest.mark.parametrize("kind", [LambdaEmulator, EmulatorProcess])
def test_bad_values_are_refused_before_anything_starts(kind):
    with pytest.raises(ValueError, match="memory_limit='cgroup'"):
        kind(memory_limit="cgroup")
    with pytest.raises(ValueError, match="min_unreserved"):
        kind(account_concurrency=10, min_unreserved=10)


def test_an_emulator_process_serves_with_the_options_it_was_given():
    with EmulatorProcess(region="eu-west-3") as emu:
        config = emu.create_function("f")
    assert config["FunctionArn"].startswith("arn:aws:lambda:eu-west-3:")
