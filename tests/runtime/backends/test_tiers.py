"""Memory-tier naming, and the rule that the runtime never imports the deploy package."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lambdaflow.errors import ConfigError
from lambdaflow.runtime.backends import tiers

ROOT = Path(__file__).resolve().parents[3]


def test_smallest_tier_that_fits():
    t = (1769, 3008, 10240)
    assert tiers.tier_function_name("lf", 128, t) == "lf-1769"
    assert tiers.tier_function_name("lf", 1770, t) == "lf-3008"
    assert tiers.tier_function_name("lf", 10240, t) == "lf-10240"
    with pytest.raises(ConfigError, match="lambdaflow deploy --memory 1769,3008,10240,20000"):
        tiers.tier_function_name("lf", 20000, t)


def test_parse_and_split():
    assert tiers.parse_tiers(" 3008,1769,,3008 ") == (1769, 3008)
    assert tiers.parse_tiers("") == ()
    with pytest.raises(ConfigError, match="memory_tiers"):
        tiers.parse_tiers("big")
    assert tiers.split_function_name("lf", "lf-3008") == 3008
    assert tiers.split_function_name("lf", "other-3008") is None
    assert tiers.deployment_of("my-app-1769") == "my-app"
    assert tiers.deployment_of("worker") is None


def test_the_runtime_does_not_import_deploy():
    """Issue 13: backends/aws_lambda.py imported deploy/settings.py for tier names."""
    pattern = re.compile(r"^\s*(from|import)\s+lambdaflow\.deploy", re.M)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "lambdaflow" / "runtime").rglob("*.py")
                 if pattern.search(p.read_text())]
    assert offenders == []
