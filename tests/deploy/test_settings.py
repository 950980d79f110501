from __future__ import annotations

import pytest

from lambdaflow.deploy.settings import (
    DeploySettings,
    split_function_name,
    tier_function_name,
)
from lambdaflow.errors import ConfigError


def test_derived_names_and_defaults():
    s = DeploySettings(bucket="my-jobs")
    assert s.role_name == "lambdaflow-worker"
    assert s.repository_name == "lambdaflow"
    assert s.function_names == [
        "lambdaflow-1769",
        "lambdaflow-3008",
        "lambdaflow-10240",
    ]
    assert s.default_function_name == "lambdaflow-1769"
    assert s.prefix == "lambdaflow/"
    assert s.timeout_s == 900 and s.expire_days == 7
    assert s.tags == {"lambdaflow:deployment": "lambdaflow"}
    env = s.function_environment(3008)
    assert env["LAMBDAFLOW_BUCKET"] == "my-jobs"
    assert env["LAMBDAFLOW_PREFIX"] == "lambdaflow/"
    assert env["LAMBDAFLOW_MEMORY_MB"] == "3008"


def test_prefix_is_normalized_and_tiers_sorted():
    s = DeploySettings(
        bucket="my-jobs", prefix="/jobs", memory_tiers=(3008, 1769, 3008)
    )
    assert s.prefix == "jobs/"
    assert s.memory_tiers == (1769, 3008)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"bucket": "UPPER"}, "bucket name"),
        ({"bucket": "ok-bucket", "name": "Bad_Name"}, "deployment name"),
        ({"bucket": "ok-bucket", "prefix": "/"}, "prefix is empty"),
        ({"bucket": "ok-bucket", "memory_tiers": (64,)}, "128..10240"),
        ({"bucket": "ok-bucket", "timeout_s": 901}, "1..900"),
        ({"bucket": "ok-bucket", "expire_days": 0}, "at least 1"),
        ({"bucket": "ok-bucket", "log_retention_days": 2}, "CloudWatch accepts"),
        ({"bucket": "ok-bucket", "environment": {"AWS_REGION": "x"}}, "reserved"),
    ],
)
def test_bad_settings_name_the_input_and_the_fix(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        DeploySettings(**kwargs)


def test_tier_function_name_picks_the_smallest_tier_that_fits():
    tiers = (1769, 3008, 10240)
    assert tier_function_name("lf", 128, tiers) == "lf-1769"
    assert tier_function_name("lf", 1769, tiers) == "lf-1769"
    assert tier_function_name("lf", 4000, tiers) == "lf-10240"
    with pytest.raises(ConfigError, match="lambdaflow deploy --memory"):
        tier_function_name("lf", 20000, tiers)


def test_split_function_name():
    assert split_function_name("lf", "lf-3008") == 3008
    assert split_function_name("lf", "lf-x") is None
    assert split_function_name("lf", "other-3008") is None
