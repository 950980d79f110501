"""The scheduler's state records: objects, tasks, waiters and the guarded lock.

Plain slotted classes with no behaviour of their own beyond ``Guard``; the transitions
between their states live in ``scheduler.py`` (see its docstring for the diagram).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lambdaflow.runtime.scheduler import Scheduler

PENDING, READY, FAILED = 0, 1, 2
WAITING, RUNNING, FINISHED = 0, 1, 2
RECORD_FIELDS = (
    "task_id", "name", "attempt", "status", "submit_time", "start", "end", "duration_s",
    "cold_start", "env_id", "memory_mb", "bytes_in", "bytes_out", "peak_memory_mb",
    "throttles", "backend",
)


class Obj:
    __slots__ = ("id", "task", "state", "loc", "error", "refcount", "waiters",
                 "dependents", "escaped", "holds")

    def __init__(self, oid: str, task: Task | None) -> None:
        self.id, self.task, self.state = oid, task, PENDING
        self.loc: dict | None = None
        self.error: BaseException | None = None
        self.refcount = 0
        self.waiters: list | None = None
        self.dependents: list | None = None
        self.escaped = False
        self.holds: list | None = None  # refs nested in a put() value


class Task:
    __slots__ = ("id", "name", "fn_key", "args", "args_key", "dep_objs", "dep_refs",
                 "nested", "n_waiting", "opts", "attempt", "state", "future", "outs",
                 "submit_time")


class Guard:
    """``with self._guard``: the scheduler lock. On the outermost release it applies the
    completions that arrived while it was held (worker threads only queue them when the
    lock is taken, see ``Scheduler._on_done``)."""

    def __init__(self, sched: Scheduler) -> None:
        self._sched = sched
        self._local = threading.local()

    def held(self) -> bool:
        return getattr(self._local, "depth", 0) > 0

    def enter_held(self) -> None:
        self._local.depth = getattr(self._local, "depth", 0) + 1

    def exit_held(self) -> None:
        self._local.depth -= 1

    def __enter__(self) -> None:
        self._sched._lock.acquire()
        self._local.depth = getattr(self._local, "depth", 0) + 1

    def __exit__(self, *exc: object) -> None:
        self._local.depth -= 1
        self._sched._lock.release()
        if self._local.depth == 0 and self._sched._completions:
            self._sched._apply_completions()


class Waiter:
    __slots__ = ("remaining", "event")

    def __init__(self, remaining: int) -> None:
        self.remaining = remaining
        self.event = threading.Event()


