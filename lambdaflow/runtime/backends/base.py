"""What the scheduler needs of a backend, and what a backend may ask of the scheduler.

    Backend      submit(msg) -> Future[TaskResult], shutdown(), .store, .name,
                 .eager_delete: the whole surface every backend has (the lambda
                 backend's is exactly this)
    Hosting      a backend whose tasks reach their owner while they run (threads: same
                 process; processes: the worker's pipe): ``attach(host)`` gives it the
                 scheduler's ``TaskHost`` side. Backends without it (lambda) run a
                 nested owner inside the task instead (see ``lambda_nested``).
    Killing      a backend that acts on cancel(force=True) of a running task (processes:
                 kill its worker; threads: free the task's slot, the thread runs on)
    Draining     a backend whose tasks may outlive ``shutdown()`` (lambda: invocations
                 already sent run on): ``in_flight()`` counts them, so the driver knows
                 whether the job's closed marker must stay (api.py, DESIGN.md §3)

A backend never raises for a task's failure: the future's result says what happened
(``TaskResult.status``). The future fails only when the backend itself cannot work.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any, Protocol, Union, runtime_checkable

from lambdaflow.runtime.store.base import Store
from lambdaflow.runtime.task import TaskMessage, TaskResult, TaskSpec

#: How a watched object ended, as the scheduler saw it:
#: ("ok", loc) | ("error", exception) | ("lost", message)
Settled = tuple[str, Union[dict, BaseException, str]]


class Backend(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def eager_delete(self) -> bool:
        """Whether freed objects are deleted from the store at once."""
        ...

    @property
    def store(self) -> Store:
        """The backend's store. Every concrete backend keeps it in a plain attribute,
        which the driver replaces with a SignedStore over it (api.py)."""
        ...

    def submit(self, msg: TaskMessage) -> Future[TaskResult]: ...

    def shutdown(self) -> None: ...


class TaskHost(Protocol):
    """The scheduler's side for tasks that call the API while they run. ``owner`` is an
    opaque token naming a borrower (a worker process); its borrowed refs are released
    with ``drop_owner`` when it dies. Each method runs under the scheduler's lock on the
    caller's thread (the backend must not hold a lock that its own ``submit`` takes)."""

    @property
    def job_id(self) -> str: ...

    @property
    def inline_limit(self) -> int: ...

    def submit_spec(self, spec: TaskSpec, owner: Hashable | None) -> None: ...

    def put_located(self, oid: str, loc: dict, holds: list[str],
                    owner: Hashable | None) -> None: ...

    def watch(self, oids: list[str], need: int, done: Callable[[list[Settled]], None],
              pending: Callable[[], None] | None = None) -> Any: ...

    def unwatch(self, token: Any) -> None: ...

    def report_lost(self, oid: str, loc: dict) -> None: ...

    def borrow(self, owner: Hashable, oids: list[str]) -> None: ...

    def release(self, owner: Hashable, oids: list[str]) -> None: ...

    def drop_owner(self, owner: Hashable) -> None: ...

    def cancel_id(self, oid: str, force: bool, done: Callable[[bool], None]) -> None: ...


@runtime_checkable
class Hosting(Protocol):
    def attach(self, host: TaskHost) -> None: ...


@runtime_checkable
class Killing(Protocol):
    def kill(self, task_id: str) -> bool:
        """Stop ``task_id`` if it is running; True if it was."""
        ...


@runtime_checkable
class Draining(Protocol):
    def in_flight(self) -> int:
        """Tasks sent that have not answered yet (after ``shutdown()``: still running)."""
        ...
