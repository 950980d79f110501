"""Task options (runtime/options.py): checked where written, frozen, resolved."""

from __future__ import annotations

import dataclasses

import pytest

from lambdaflow.runtime.options import TaskOptions, check_options, resolve


@pytest.mark.parametrize("bad,error,match", [
    ({"bogus": 1}, TypeError, "valid options"),
    ({"num_returns": 0}, ValueError, "num_returns"),
    ({"num_returns": True}, ValueError, "num_returns"),
    ({"max_retries": -1}, ValueError, "max_retries"),
    ({"timeout_s": 0}, ValueError, "timeout_s"),
    ({"memory_mb": 1.5}, ValueError, "memory_mb"),
    ({"retry_exceptions": [int]}, TypeError, "retry_exceptions"),
    ({"name": 3}, TypeError, "name"),
])
def test_bad_options_are_refused_up_front(bad, error, match):
    with pytest.raises(error, match=match):
        check_options(bad)


def test_resolve_fills_the_runtime_defaults_and_freezes():
    opts = resolve({"retry_exceptions": [KeyError], "timeout_s": 5}, "f", max_retries=7)
    assert opts == TaskOptions("f", 7, (KeyError,), 1, 5, None)
    assert opts.worker_options == {"timeout_s": 5}
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.name = "g"  # type: ignore[misc]
    assert resolve({"name": "g", "max_retries": 0}, "f", 3).max_retries == 0


def test_wire_round_trip():
    opts = TaskOptions("f", 2, (OSError,), 2, None, 1024)
    assert TaskOptions.from_wire(opts.to_wire()) == opts
    plain = TaskOptions("f", 2)
    assert TaskOptions.from_wire(plain.to_wire()) == plain
