"""Where a running task is, and what it may do: the one module that both the scheduler
(owner side) and the worker (task side) import, so that neither imports the other.

    Client       what ``lambdaflow.submit/get/wait/put/cancel`` talk to: the driver's
                 ``Runtime``, or inside a task the backend's client (threads: the
                 driver's runtime with slot release; processes: requests up the worker's
                 pipe; lambda: a nested runtime that owns what the task submits)
    TaskContext  the task running on this thread: its message, its store, its client,
                 and the seconds it spent blocked in get/wait (reported in its stats)
    StoredError  what an owner writes under a failed object's key, so that a worker that
                 reads that key raises the same error

``current_context()`` is thread-local: a task's own threads see no context (they talk
to the driver only on the threads backend, where the driver is in the same process).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from lambdaflow import serialization
from lambdaflow.errors import TaskError

if TYPE_CHECKING:
    from lambdaflow.runtime.calls import FunctionHandle
    from lambdaflow.runtime.options import TaskOptions
    from lambdaflow.runtime.refs import ObjectRef
    from lambdaflow.runtime.store.base import Store
    from lambdaflow.runtime.task import TaskMessage

_local = threading.local()


class Remote(Protocol):
    """A remote function view, as a client sees it (``api.RemoteFunction``)."""

    handle: FunctionHandle

    def task_options(self, max_retries: int) -> TaskOptions: ...


class Client(Protocol):
    """The operations of the public API, as one owner (or its proxy) implements them."""

    @property
    def job_id(self) -> str: ...

    def submit(self, remote: Remote, args: tuple, kwargs: dict) -> list[ObjectRef]: ...

    def get(self, refs: Sequence[ObjectRef], timeout: float | None) -> list: ...

    def wait(self, refs: Sequence[ObjectRef], num_returns: int,
             timeout: float | None) -> list[bool]: ...

    def put(self, value: Any) -> ObjectRef: ...

    def cancel(self, ref: ObjectRef, force: bool) -> bool: ...


class OwningClient:
    """Base of a client that owns what its task submits (Lambda's nested runtime):
    before the task returns, the objects its result refers to are finished and
    exported to the store (``export``), and ``close`` waits for the rest of its work.
    (A plain base class: ``run_task`` checks it on every task, and a Protocol
    ``isinstance`` costs more than a no-op task.)"""

    def export(self, oids: list[str]) -> None:
        raise NotImplementedError

    def close(self, abandon: bool = False) -> None:
        """``abandon``: the task failed; do not wait for what it submitted."""
        raise NotImplementedError


class StoredError:
    """The value stored under a failed object's key (see the module docstring)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def stored_error_frame(error: BaseException) -> list:
    """``StoredError(error)`` serialized; an error that will not pickle becomes its text."""
    try:
        return serialization.dumps(StoredError(error))
    except Exception:
        return serialization.dumps(StoredError(TaskError(str(error))))


class TaskContext:
    """The task running on this thread (set by ``worker.run_task``)."""

    def __init__(self, message: TaskMessage, store: Store, client: Client | None) -> None:
        self.message = message
        self.store = store
        self.client = client
        self.blocked_s = 0.0



def current_context() -> TaskContext | None:
    return getattr(_local, "task", None)


_process_client: list[Client] = []  # a worker process's client, for its tasks' threads


def current_client() -> Client | None:
    """The client of the task running on this thread, else of this worker process
    (threads a task starts), else None (the driver)."""
    ctx = getattr(_local, "task", None)
    if ctx is not None and ctx.client is not None:
        return ctx.client
    return _process_client[0] if _process_client else None


def set_process_client(client: Client | None) -> None:
    """Make ``client`` the one for every thread of this (worker) process."""
    _process_client[:] = [client] if client is not None else []


def enter(ctx: TaskContext) -> TaskContext | None:
    """Make ``ctx`` this thread's current task; returns the one it replaces (a task run
    inline while another waits), to give back to ``leave``."""
    prev = getattr(_local, "task", None)
    _local.task = ctx
    return prev


def leave(prev: TaskContext | None) -> None:
    _local.task = prev
