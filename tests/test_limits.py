"""lambdaflow.limits against AWS's documented figures, and the one-table rule."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from lambdaflow import limits

ROOT = Path(__file__).resolve().parent.parent


def test_documented_figures():
    # "MB" in Lambda's documentation means 1024 KB (the quotas page says so).
    assert limits.SYNC_REQUEST_BYTES == limits.SYNC_RESPONSE_BYTES == 6_291_456
    # Lambda's ResponseSizeTooLarge message: "... maximum allowed payload size (6291556 bytes)".
    assert limits.SYNC_RESPONSE_ENFORCED_BYTES == 6_291_556
    assert limits.ASYNC_REQUEST_BYTES == 1_048_576
    assert limits.INVOKE_ASYNC_API_BYTES == 262_144
    assert (limits.MIN_TIMEOUT_S, limits.MAX_TIMEOUT_S, limits.INIT_ALLOWANCE_S) == (1, 900, 10)
    assert (limits.MIN_MEMORY_MB, limits.MAX_MEMORY_MB) == (128, 10_240)
    assert (limits.MIN_EPHEMERAL_MB, limits.MAX_EPHEMERAL_MB) == (512, 10_240)
    assert limits.ENVIRONMENT_BYTES == limits.LOG_TAIL_BYTES == 4096


@pytest.mark.parametrize("limit", [limits.SYNC_REQUEST_BYTES, limits.ASYNC_REQUEST_BYTES, 10_000])
def test_base64_budget_is_the_largest_that_fits(limit):
    n = limits.base64_budget(limit)
    wrapped = json.dumps({"lf": 1, "task": base64.b64encode(b"x" * n).decode()}).encode()
    assert len(wrapped) <= limit
    assert len(base64.b64encode(b"x" * (n + 3))) > limit - limits.JSON_OVERHEAD_BYTES


def test_checks_name_the_limit():
    assert limits.check_timeout(900) == 900
    with pytest.raises(ValueError, match="1..900"):
        limits.check_timeout(901, "--timeout")
    with pytest.raises(ValueError, match="128..10240"):
        limits.check_memory(64)


def test_consumers_read_the_table():
    from lambdaflow.deploy.settings import DeploySettings
    from lambdaflow.errors import ConfigError
    from lambdaflow.testing import emulator_env, emulator_runtime

    assert emulator_env.SYNC_PAYLOAD_LIMIT == limits.SYNC_REQUEST_BYTES
    assert emulator_env.ASYNC_PAYLOAD_LIMIT == limits.ASYNC_REQUEST_BYTES
    assert emulator_runtime.RESPONSE_LIMIT == limits.SYNC_RESPONSE_ENFORCED_BYTES
    with pytest.raises(ConfigError, match="1..900"):
        DeploySettings(bucket="ok-bucket", timeout_s=901)


def test_no_other_module_spells_the_payload_limit():
    """Issue 13: the 6 MB limit was four constants with two values. Only limits.py
    may write it down."""
    pattern = re.compile(  # (not 256 * 1024 * 1024: a 6 not preceded by a digit)
        r"(?<![\d.])(?:6\s*\*\s*10{3}\s*\*\s*10{3}|6\s*\*\s*1024\s*\*\s*1024|629\d{4})")
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "lambdaflow").rglob("*.py")
        if path.name != "limits.py" and pattern.search(path.read_text())
    ]
    assert offenders == []
