"""How a failed task result becomes an error, and whether it is retried.

    ERROR    the function raised: ``TaskError.as_instanceof_cause`` of the unpickled
             exception (both a TaskError and the original class), remote traceback kept
    CRASH    the worker died (or the task called exit()): WorkerCrashedError, with the
             log tail when there is one
    TIMEOUT  it ran past timeout_s: TaskTimeoutError
    CANCELLED                   TaskCancelledError
    "backend" the backend failed: its LambdaflowError as is, else BackendError

Retries (DESIGN.md §1): crashes up to ``max_retries`` times; exceptions only with
``retry_exceptions=True`` or when the exception is an instance of a listed class; never
timeouts (a task that timed out once would most likely time out again).
"""

from __future__ import annotations

import cloudpickle

from lambdaflow.errors import (
    BackendError,
    LambdaflowError,
    TaskCancelledError,
    TaskError,
    TaskTimeoutError,
    WorkerCrashedError,
)
from lambdaflow.runtime.options import TaskOptions
from lambdaflow.runtime.task import CANCELLED, CRASH, ERROR, TIMEOUT, TaskResult


def error_for(label: str, r: TaskResult) -> BaseException:
    """The exception ``get`` raises for the failed result ``r`` of task ``label``."""
    err = r.error or {}
    if r.status == ERROR:
        cause = None
        if err.get("exc") is not None:
            try:
                cause = cloudpickle.loads(err["exc"])
            except Exception:
                cause = None
        tb = err.get("traceback", "")
        if cause is None or not isinstance(cause, BaseException):
            return TaskError(f"{err.get('type', 'Exception')}: {err.get('message', '')}",
                             traceback_text=tb, task=label)
        return TaskError.as_instanceof_cause(cause, tb, label)
    if r.status == CRASH:
        text = f"task {label} (attempt {r.attempt}): {err.get('message', 'worker crashed')}"
        return WorkerCrashedError(_with_log(text, err), task=label)
    if r.status == TIMEOUT:
        text = f"task {label}: {err.get('message', 'timed out')}"
        return TaskTimeoutError(_with_log(text, err), task=label)
    if r.status == CANCELLED:
        return TaskCancelledError(f"task {label} was cancelled", task=label)
    exc = err.get("exc")
    if isinstance(exc, LambdaflowError):
        return exc
    return BackendError(f"task {label}: the backend failed: {exc}")


def should_retry(attempt: int, opts: TaskOptions, r: TaskResult, error: BaseException) -> bool:
    """Whether attempt number ``attempt`` (0-based) that failed with ``r`` runs again."""
    if attempt >= opts.max_retries:
        return False
    if r.status == CRASH:
        return True
    if r.status == ERROR:
        retry_on = opts.retry_exceptions
        if retry_on is True:
            return True
        if retry_on:
            return isinstance(error, tuple(retry_on))
    return False


def _with_log(message: str, err: dict) -> str:
    tail = err.get("log")
    return f"{message}\n--- log tail ---\n{tail}" if tail else message
