"""The scheduler's records: objects and tasks, each with its own state enum and named
transitions that refuse an illegal source state (``InvalidTransition``).

Objects::

    PENDING ──resolve──> READY ──release──> RELEASED ──revive──> PENDING
       │                  │ lose (its stored bytes vanished; the task runs again)
       │                  └──────> PENDING
       └──fail──> FAILED ──release──> RELEASED

Tasks::

    WAITING ──dispatch──> DISPATCHED ──finish──> FINISHED ──rerun──> WAITING
       ^                    │  │ retry (attempt+1) / requeue (an input was lost)
       └────────────────────┘  │
    WAITING | DISPATCHED ──fail──> FAILED (terminal: error, crash, cancel, lost input)

Only the scheduler, under its lock, touches these records (see ``scheduler.py``); the guards
turn a logic error into an immediate, named failure instead of a silently wrong DAG.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import Future

    from lambdaflow.runtime.task import TaskSpec

RECORD_FIELDS = (
    "task_id", "name", "attempt", "status", "submit_time", "start", "end", "duration_s",
    "cold_start", "env_id", "memory_mb", "bytes_in", "bytes_out", "peak_memory_mb",
    "throttles", "backend", "blocked_s",
)


class ObjState(enum.Enum):
    PENDING = "pending"  # its task has not produced it (yet, or again)
    READY = "ready"  # ``loc`` says where the value is
    FAILED = "failed"  # ``error`` says why
    RELEASED = "released"  # no refs left: the value is gone; kept only as lineage


class TaskState(enum.Enum):
    WAITING = "waiting"  # for dependencies (``n_waiting`` of them)
    DISPATCHED = "dispatched"  # handed to the backend: queued there or running
    FINISHED = "finished"  # its objects are READY; its spec is kept as lineage
    FAILED = "failed"  # its objects FAILED; terminal


class InvalidTransition(RuntimeError):
    """A transition was asked of a record in a state it does not leave that way."""

    def __init__(self, record: object, transition: str, state: enum.Enum) -> None:
        super().__init__(f"{transition}() from {state.value}: {record!r}")


P, R, F, X = ObjState.PENDING, ObjState.READY, ObjState.FAILED, ObjState.RELEASED


class Obj:
    """An object: a task's return value or a ``put`` value."""

    __slots__ = ("id", "task", "state", "loc", "error", "refs", "waiters", "dependents",
                 "escaped", "holds", "pins")

    def __init__(self, oid: str, task: Task | None, refs: int = 0) -> None:
        self.id, self.task, self.state = oid, task, P
        self.loc: dict | None = None
        self.error: BaseException | None = None
        #: live references: ObjectRefs in the driver, tasks that need it, values that
        #: contain a ref to it, worker processes that borrow it
        self.refs = refs
        self.waiters: list[Waiter] | None = None
        self.dependents: list[Task] | None = None  # tasks WAITING for it
        self.escaped = False  # refs to it left in values: keep a copy in the store
        self.holds: list[str] | None = None  # ids of the refs inside its value
        self.pins = 0  # retained lineage of downstream tasks that may need it rebuilt

    def __repr__(self) -> str:
        return f"Obj({self.id!r}, {self.state.value}, refs={self.refs}, pins={self.pins})"

    def resolve(self, loc: dict, holds: list[str] | None) -> None:
        if self.state is not P:
            raise InvalidTransition(self, "resolve", self.state)
        self.state, self.loc, self.holds = R, loc, holds or None

    def fail(self, error: BaseException) -> None:
        if self.state is not P:
            raise InvalidTransition(self, "fail", self.state)
        self.state, self.error = F, error

    def lose(self) -> None:
        if self.state is not R:
            raise InvalidTransition(self, "lose", self.state)
        self.state, self.loc = P, None

    def release(self) -> None:
        if self.state is not R and self.state is not F:
            raise InvalidTransition(self, "release", self.state)
        self.state, self.loc, self.error = X, None, None

    def revive(self) -> None:
        if self.state is not X:
            raise InvalidTransition(self, "revive", self.state)
        self.state = P


W, D, FIN, FAIL = (TaskState.WAITING, TaskState.DISPATCHED, TaskState.FINISHED,
                   TaskState.FAILED)


class Task:
    """One submitted task and, once finished, its lineage."""

    __slots__ = ("id", "name", "spec", "state", "attempt", "deps", "nested", "outs",
                 "n_waiting", "future", "submit_time", "owner", "held", "pinned")

    def __init__(self, spec: TaskSpec, deps: Sequence[Obj], nested: Sequence[Obj],
                 submit_time: float, owner: Any = None) -> None:
        self.id, self.name = spec.task_id, spec.options.name
        self.spec: TaskSpec | None = spec  # None once its lineage is dropped
        self.state, self.attempt = W, 0
        self.deps, self.nested = deps, nested
        self.outs: list[Obj] = []
        self.n_waiting = 0
        #: the running attempt's handle: a Future, or the attempt of a backend's
        #: ``start`` (both have ``done()`` and ``cancel()``)
        self.future: Future | Any = None
        self.submit_time = submit_time
        self.owner = owner  # the worker process that submitted it (processes), else None
        self.held = False  # whether it holds a ref on each of deps + nested now
        self.pinned = False  # whether its lineage pins each of deps + nested

    def __repr__(self) -> str:
        return f"Task({self.id!r}, {self.name!r}, {self.state.value}, attempt={self.attempt})"

    def dispatch(self) -> None:
        if self.state is not W:
            raise InvalidTransition(self, "dispatch", self.state)
        self.state = D

    def finish(self) -> None:
        if self.state is not D:
            raise InvalidTransition(self, "finish", self.state)
        self.state, self.future = FIN, None

    def retry(self) -> None:
        if self.state is not D:
            raise InvalidTransition(self, "retry", self.state)
        self.state, self.future = W, None
        self.attempt += 1

    def requeue(self) -> None:
        """An input was lost before the task could use it: wait for it again."""
        if self.state is not D:
            raise InvalidTransition(self, "requeue", self.state)
        self.state, self.future = W, None

    def fail(self) -> None:
        if self.state is not W and self.state is not D:
            raise InvalidTransition(self, "fail", self.state)
        self.state = FAIL

    def rerun(self) -> None:
        """Lineage reconstruction: run a finished task again to rebuild a lost object."""
        if self.state is not FIN:
            raise InvalidTransition(self, "rerun", self.state)
        self.state = W
        self.attempt += 1


class Waiter:
    """Someone waiting for ``remaining`` more of ``objs`` to finish. ``done`` gets, under the
    scheduler's lock, how each object ended (None: still pending); ``pending`` is
    called when the wait had to start; ``closed`` when the scheduler stops first."""

    __slots__ = ("remaining", "objs", "done", "pending", "closed")

    def __init__(self, remaining: int, done: Callable[[list], None],
                 pending: Callable[[], None] | None = None,
                 closed: Callable[[], None] | None = None) -> None:
        self.remaining = remaining
        self.objs: list[Obj | None] = []
        self.done = done
        self.pending = pending
        self.closed = closed


class Reply:
    """A one-shot answer from the scheduler to a blocked caller. ``on_set``
    (set by a waiter that also waits for other things) is called after ``set``."""

    __slots__ = ("event", "value", "on_set")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.value: Any = None
        self.on_set: Callable[[], None] | None = None

    def set(self, value: Any) -> None:
        self.value = value
        self.event.set()
        notify = self.on_set
        if notify is not None:
            notify()
