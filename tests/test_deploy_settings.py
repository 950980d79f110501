"""lambdaflow.deploy_settings: the file deploy writes and config.resolve reads (13.7)."""

from __future__ import annotations

import json

import pytest

from lambdaflow import config, deploy_settings
from lambdaflow.errors import ConfigError

RECORD = {"deployment": "lf", "function_name": "lf-1769", "memory_tiers": "1769,10240",
          "bucket": "jobs", "prefix": "p/", "region": "eu-west-1",
          "image_variant": "py3.12", "functions": ["lf-1769", "lf-10240"]}


@pytest.fixture
def in_dir(tmp_path, monkeypatch):
    for key in ("LAMBDAFLOW_FUNCTION_NAME", "LAMBDAFLOW_MEMORY_TIERS", "LAMBDAFLOW_BUCKET",
                "LAMBDAFLOW_PREFIX", "LAMBDAFLOW_REGION", "LAMBDAFLOW_DEPLOY_FILE",
                "LAMBDAFLOW_BACKEND"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_init_reads_what_deploy_wrote(in_dir):
    deploy_settings.write(in_dir / deploy_settings.DEFAULT_PATH, RECORD)
    cfg = config.resolve(backend="lambda")
    assert (cfg.function_name, cfg.memory_tiers, cfg.bucket, cfg.prefix, cfg.region) == (
        "lf-1769", "1769,10240", "jobs", "p/", "eu-west-1")
    assert config.resolve(backend="threads").function_name is None  # lambda only


def test_keywords_and_variables_win(in_dir, monkeypatch):
    deploy_settings.write(in_dir / deploy_settings.DEFAULT_PATH, RECORD)
    monkeypatch.setenv("LAMBDAFLOW_BUCKET", "other-jobs")
    cfg = config.resolve(backend="lambda", region="us-west-2")
    assert (cfg.bucket, cfg.region, cfg.memory_tiers) == ("other-jobs", "us-west-2",
                                                          "1769,10240")


def test_another_deployments_function_ignores_the_file(in_dir):
    deploy_settings.write(in_dir / deploy_settings.DEFAULT_PATH, RECORD)
    cfg = config.resolve(backend="lambda", function_name="lambdaflow-worker")
    assert cfg.memory_tiers == "" and cfg.bucket is None  # not mixed with lf's tiers
    cfg = config.resolve(backend="lambda", function_name="lf-10240")
    assert cfg.memory_tiers == "1769,10240"


def test_missing_and_broken_files(in_dir, monkeypatch):
    assert config.resolve(backend="lambda").function_name is None  # no file: defaults
    with pytest.raises(ConfigError, match="no such file; run `lambdaflow deploy`"):
        config.resolve(backend="lambda", deploy_file=str(in_dir / "nope.json"))
    bad = in_dir / "bad.json"
    bad.write_text("{not json")
    monkeypatch.setenv("LAMBDAFLOW_DEPLOY_FILE", str(bad))
    with pytest.raises(ConfigError, match="bad.json: cannot read it"):
        config.resolve(backend="lambda")
    bad.write_text(json.dumps({"format": 1, "bucket": "x"}))
    with pytest.raises(ConfigError, match="missing function_name"):
        config.resolve(backend="lambda")


def test_backend_settings_are_the_export_lines():
    env = deploy_settings.backend_settings(RECORD)
    assert env["LAMBDAFLOW_MEMORY_TIERS"] == "1769,10240"
    assert set(env) == {"LAMBDAFLOW_BACKEND", "LAMBDAFLOW_FUNCTION_NAME",
                        "LAMBDAFLOW_MEMORY_TIERS", "LAMBDAFLOW_BUCKET", "LAMBDAFLOW_PREFIX",
                        "LAMBDAFLOW_REGION"}
