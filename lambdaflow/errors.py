"""The lambdaflow error hierarchy.

::

    LambdaflowError
    ├── TaskError                 a task failed; get() re-raises it
    │   ├── WorkerCrashedError    the process / execution environment running it died
    │   ├── TaskTimeoutError      it ran past its ``timeout_s``
    │   └── TaskCancelledError    it was cancelled with ``lambdaflow.cancel``
    ├── GetTimeoutError           get()/wait() ran out of time (also a ``TimeoutError``)
    ├── ObjectLostError           an object's bytes are gone from the store
    ├── IntegrityError            a stored blob failed its check; it was not unpickled
    ├── BackendError              the backend itself failed (not the task)
    │   ├── ConcurrencyLimitError nested tasks need more Lambda environments than
    │   │                         max_concurrency allows (blocked parents hold theirs)
    │   └── LambdaThrottledError  Lambda throttled an invocation past the retry budget
    └── ConfigError               a setting is missing or wrong

A task's own exception is re-raised by ``get`` as an instance of both ``TaskError`` and
the original class (see :func:`TaskError.as_instanceof_cause`), so ``except ValueError``
and ``except lambdaflow.TaskError`` both catch it. Its ``str()`` carries the remote
traceback and ``.cause`` the original exception.
"""

from __future__ import annotations

from typing import Any


class LambdaflowError(Exception):
    """Base class of every error lambdaflow raises itself."""


class TaskError(LambdaflowError):
    """A task failed. ``.cause`` is the original exception, ``.traceback_text`` the remote
    traceback, ``.task`` the task's description (``name[task-id]``)."""

    def __init__(
        self,
        message: str = "",
        *,
        cause: BaseException | None = None,
        traceback_text: str = "",
        task: str = "",
    ) -> None:
        Exception.__init__(self, message)  # not super(): the MRO may hold the cause's class
        self.cause = cause
        self.traceback_text = traceback_text
        self.task = task
        self.message = message

    def __str__(self) -> str:
        text = self.message or (str(self.cause) if self.cause is not None else "")
        if self.traceback_text:
            return f"{text}\n\nRemote traceback of task {self.task}:\n{self.traceback_text}"
        return text

    def __reduce__(self):  # keep the keyword-only fields across pickling
        return (
            _rebuild_task_error,
            (type(self), self.message, self.cause, self.traceback_text, self.task),
        )

    @classmethod
    def as_instanceof_cause(
        cls, cause: BaseException, traceback_text: str, task: str
    ) -> TaskError:
        """An error that is both a ``TaskError`` and an instance of ``type(cause)``.

        Falls back to a plain ``TaskError`` when the cause's class cannot be subclassed
        (for example a class whose constructor takes unusual arguments is still fine,
        but ``bool``-like final classes are not).
        """
        cause_cls = type(cause)
        if isinstance(cause, TaskError):
            return cause
        message = f"{cause_cls.__name__}: {cause}"
        try:
            derived = _derived_class(cause_cls)
            err = derived.__new__(derived)
            err.__dict__.update(getattr(cause, "__dict__", {}))  # e.g. .code, .errno
            TaskError.__init__(
                err, message, cause=cause, traceback_text=traceback_text, task=task
            )
            err.args = getattr(cause, "args", ())  # keeps e.g. KeyError's and OSError's
            return err
        except TypeError:
            return TaskError(message, cause=cause, traceback_text=traceback_text, task=task)


_DERIVED: dict[type, type[TaskError]] = {}


def _derived_class(cause_cls: type) -> type[TaskError]:
    derived = _DERIVED.get(cause_cls)
    if derived is None:

        def __init__(self, *args: Any, **kwargs: Any) -> None:  # pragma: no cover - trivial
            TaskError.__init__(self, *args, **kwargs)

        derived = type(
            f"TaskError({cause_cls.__name__})",
            (TaskError, cause_cls),
            {
                "__init__": __init__,
                "__str__": TaskError.__str__,
                "__reduce__": TaskError.__reduce__,
                "__module__": __name__,
            },
        )
        _DERIVED[cause_cls] = derived
    return derived


def _rebuild_task_error(cls, message, cause, traceback_text, task):
    if cls.__module__ == __name__ and cls.__name__.startswith("TaskError(") and cause is not None:
        return TaskError.as_instanceof_cause(cause, traceback_text, task)
    err = cls.__new__(cls)
    TaskError.__init__(err, message, cause=cause, traceback_text=traceback_text, task=task)
    return err


class WorkerCrashedError(TaskError):
    """The worker process or Lambda execution environment died while running the task
    (killed by a signal, the OOM killer, ``os._exit``, a runtime crash). Retried up to
    ``max_retries`` times (default 3)."""


class TaskTimeoutError(TaskError):
    """The task ran longer than its ``timeout_s`` and was stopped."""


class TaskCancelledError(TaskError):
    """The task was cancelled with ``lambdaflow.cancel`` (or depends on one that was)."""


class GetTimeoutError(LambdaflowError, TimeoutError):
    """``get`` or ``wait`` did not finish within its ``timeout``."""


class ObjectLostError(LambdaflowError):
    """An object's bytes are missing from the store. ``.key`` names the missing key."""

    def __init__(self, message: str, *, key: str = "") -> None:
        super().__init__(message)
        self.key = key

    def __reduce__(self):
        return (_rebuild_object_lost, (str(self), self.key))


def _rebuild_object_lost(message: str, key: str) -> ObjectLostError:
    return ObjectLostError(message, key=key)


class IntegrityError(LambdaflowError):
    """A blob read from the store failed its integrity check (its MAC under the job's key,
    or a function blob's SHA-256 content address), so it was never unpickled. Someone
    other than this job wrote it, or it is corrupt. ``.key`` names the store key."""

    def __init__(self, message: str, *, key: str = "") -> None:
        super().__init__(message)
        self.key = key

    def __reduce__(self):
        return (_rebuild_integrity, (str(self), self.key))


def _rebuild_integrity(message: str, key: str) -> IntegrityError:
    return IntegrityError(message, key=key)


class BackendError(LambdaflowError):
    """The backend failed in a way that is not the task's fault (an API error, an
    exhausted retry budget talking to AWS, a worker pool that cannot start)."""


class ConcurrencyLimitError(BackendError):
    """Tasks submitted by tasks on Lambda cannot start: every blocked parent holds an
    execution environment, and the chain or tree of them would exceed
    ``max_concurrency`` (raised instead of waiting forever on throttled invocations)."""

class LambdaThrottledError(BackendError):
    """Lambda kept answering 429 TooManyRequests for one invocation past the lambda
    backend's ``retry_budget_s``. The message names the function, its reserved
    concurrency, the account's concurrency and what to change; ``.function_name``,
    ``.reserved`` and ``.account`` carry them (None when unknown)."""

    def __init__(
        self,
        message: str,
        *,
        function_name: str = "",
        reserved: int | None = None,
        account: int | None = None,
    ) -> None:
        super().__init__(message)
        self.function_name = function_name
        self.reserved = reserved
        self.account = account

    def __reduce__(self):
        return (_rebuild_throttled, (str(self), self.function_name, self.reserved, self.account))


def _rebuild_throttled(
    message: str, function_name: str, reserved: int | None, account: int | None
) -> LambdaThrottledError:
    return LambdaThrottledError(
        message, function_name=function_name, reserved=reserved, account=account
    )


class ConfigError(LambdaflowError):
    """A setting is missing or wrong; the message names it and how to fix it."""


__all__ = [
    "LambdaflowError",
    "TaskError",
    "WorkerCrashedError",
    "TaskTimeoutError",
    "TaskCancelledError",
    "GetTimeoutError",
    "ObjectLostError",
    "IntegrityError",
    "BackendError",
    "ConcurrencyLimitError",
    "LambdaThrottledError",
    "ConfigError",
]
