"""init / shutdown and misuse, on every backend."""

from __future__ import annotations

import pytest

import lambdaflow as lf
from tests.conformance import helpers as h
from tests.conftest import BACKENDS, start_runtime


@pytest.mark.parametrize("backend", BACKENDS)
def test_init_context_manager_shutdown_idempotent_and_reinit(backend, request, fresh):
    with start_runtime(backend, request) as rt:
        assert isinstance(rt, lf.Runtime)
        ref = h.add.remote(1, 2)
        assert lf.get(ref) == 3
        with pytest.raises(lf.LambdaflowError, match="already initialized"):
            lf.init(backend="threads")
    lf.shutdown()
    lf.shutdown()
    with pytest.raises(lf.LambdaflowError, match="shut down"):
        lf.get(ref)
    rt2 = start_runtime(backend, request)
    assert lf.get(h.add.remote(2, 2)) == 4
    with pytest.raises(lf.LambdaflowError, match="shut down"):
        lf.get(ref)  # an old ref stays invalid in the new runtime
    rt2.shutdown()


def test_api_before_init_starts_threads(fresh):
    ref = h.add.remote(1, 1)
    assert lf.get(ref) == 2
    import lambdaflow.api as api

    assert api._runtime.config.backend == "threads"


def test_unknown_init_option_lists_valid(fresh):
    with pytest.raises(TypeError, match="valid options"):
        lf.init(backend="threads", bogus_option=1)
    with pytest.raises(lf.ConfigError, match="unknown backend"):
        lf.init(backend="nope")


def test_remote_on_non_callable(fresh):
    with pytest.raises(TypeError):
        lf.remote(3)
    with pytest.raises(TypeError, match="valid options"):
        lf.remote(nope=1)


def test_progress_bar(fresh, capsys):
    with lf.init(backend="threads", progress=True):
        refs = [h.sleep_then.remote(i, 0.05) for i in range(20)]
        assert lf.get(refs) == list(range(20))
    err = capsys.readouterr().err
    assert "20/20" in err


def test_progress_from_env(fresh, monkeypatch):
    monkeypatch.setenv("LAMBDAFLOW_PROGRESS", "1")
    with lf.init(backend="threads") as rt:
        assert rt.config.progress is True
