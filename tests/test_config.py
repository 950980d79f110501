import pytest

from lambdaflow.config import resolve
from lambdaflow.errors import ConfigError


def test_env_and_overrides(monkeypatch):
    monkeypatch.setenv("LAMBDAFLOW_BACKEND", "processes")
    monkeypatch.setenv("LAMBDAFLOW_NUM_WORKERS", "3")
    monkeypatch.setenv("LAMBDAFLOW_PROGRESS", "yes")
    monkeypatch.setenv("LAMBDAFLOW_MAX_CONCURRENCY", "7")
    cfg = resolve()
    assert (cfg.backend, cfg.num_workers, cfg.progress, cfg.max_concurrency) == (
        "processes", 3, True, 7)
    assert resolve("threads", num_workers=1).backend == "threads"
    assert resolve(num_workers=1).num_workers == 1


def test_bad_values(monkeypatch):
    with pytest.raises(TypeError, match="valid options: backend"):
        resolve(nope=1)
    monkeypatch.setenv("LAMBDAFLOW_NUM_WORKERS", "many")
    with pytest.raises(ConfigError, match="LAMBDAFLOW_NUM_WORKERS"):
        resolve()


def test_credentials_travel_with_the_config_but_not_in_its_repr(monkeypatch):
    monkeypatch.setenv("LAMBDAFLOW_AWS_ACCESS_KEY_ID", "AKIDFROMENV")
    monkeypatch.setenv("LAMBDAFLOW_AWS_SECRET_ACCESS_KEY", "very-secret-value")
    cfg = resolve(aws_session_token="session-token-value")
    assert (cfg.aws_access_key_id, cfg.aws_secret_access_key) == (
        "AKIDFROMENV", "very-secret-value")
    assert cfg.aws_session_token == "session-token-value"
    text = repr(cfg)
    assert "very-secret-value" not in text and "session-token-value" not in text


def test_extra_is_gone():
    """Config.extra was dead code (issue 10): it is no longer a valid option."""
    with pytest.raises(TypeError, match="unknown lambdaflow.init"):
        resolve(extra={})
