"""How failed results become errors, and which are retried (runtime/failures.py)."""

from __future__ import annotations

import cloudpickle
import pytest

from lambdaflow.errors import (
    BackendError,
    ConfigError,
    TaskCancelledError,
    TaskError,
    TaskTimeoutError,
    WorkerCrashedError,
)
from lambdaflow.runtime.failures import error_for, should_retry
from lambdaflow.runtime.options import TaskOptions
from lambdaflow.runtime.task import TaskResult


def result(status, **error):
    return TaskResult("t", 0, status, error=error)


def test_a_task_exception_is_both_task_error_and_its_class():
    r = result("error", exc=cloudpickle.dumps(KeyError("k")), traceback="TB", type="KeyError")
    err = error_for("f[t]", r)
    assert isinstance(err, TaskError) and isinstance(err, KeyError) and "TB" in str(err)


def test_an_exception_that_did_not_pickle_keeps_its_text():
    err = error_for("f[t]", result("error", exc=None, type="mod.Odd", message="odd"))
    assert type(err) is TaskError and "mod.Odd: odd" in str(err)


def test_crash_timeout_cancel_and_backend():
    crash = error_for("f[t]", result("crash", message="died", log="last lines"))
    assert isinstance(crash, WorkerCrashedError) and "last lines" in str(crash)
    assert isinstance(error_for("f[t]", result("timeout", message="late")), TaskTimeoutError)
    assert isinstance(error_for("f[t]", result("cancelled")), TaskCancelledError)
    own = ConfigError("bad setting")
    assert error_for("f[t]", result("backend", exc=own)) is own
    assert isinstance(error_for("f[t]", result("backend", exc=OSError("x"))), BackendError)


@pytest.mark.parametrize("status,retry_on,attempt,expect", [
    ("crash", False, 0, True),
    ("crash", False, 3, False),  # max_retries used up
    ("error", False, 0, False),  # exceptions are not retried by default
    ("error", True, 0, True),
    ("error", (KeyError,), 0, True),
    ("error", (OSError,), 0, False),
    ("timeout", True, 0, False),  # never timeouts
])
def test_should_retry(status, retry_on, attempt, expect):
    opts = TaskOptions("f", max_retries=3, retry_exceptions=retry_on)
    r = result(status, exc=cloudpickle.dumps(KeyError("k")))
    assert should_retry(attempt, opts, r, error_for("f", r)) is expect
