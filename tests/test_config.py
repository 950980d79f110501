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
