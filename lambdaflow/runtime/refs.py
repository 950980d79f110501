"""ObjectRef: a handle to a value that exists now or will once its task finishes.

A ref made by the driver is *counted*: the scheduler keeps the object's state and value
while at least one counted ref (or a task that needs it) is alive. ``__del__`` only
appends the id to the runtime's release queue (a deque append: safe from the garbage
collector at any point); the scheduler drains that queue under its own lock.

Pickled refs carry (job, id). Unpickled in the driver process they become counted refs
of the live runtime; unpickled in a worker they are *remote* refs that ``lambdaflow.get``
resolves through the task's store.
"""

from __future__ import annotations

from typing import Any

from lambdaflow import serialization


class ObjectRef:
    """A future value. Pass it to ``.remote()`` calls or resolve it with
    ``lambdaflow.get``. Hashable and comparable by id."""

    __slots__ = ("id", "job", "_rt", "__weakref__")

    def __init__(self, object_id: str, job: str, runtime: Any = None) -> None:
        self.id = object_id
        self.job = job
        self._rt = runtime  # counted by the caller (the scheduler) when not None

    def __del__(self) -> None:
        rt = self._rt
        if rt is not None:
            try:
                rt.released.append(self.id)
            except Exception:  # interpreter shutdown
                pass

    def __reduce__(self):
        serialization.note_pickled_ref(self)
        return (_rebuild, (self.id, self.job))

    def __repr__(self) -> str:
        return f"ObjectRef({self.id!r}, job={self.job!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other.id == self.id and other.job == self.job

    def __hash__(self) -> int:
        return hash((self.job, self.id))

    def __bool__(self) -> bool:
        return True

    def __await__(self):  # pragma: no cover - convenience, not part of the contract
        raise TypeError("ObjectRefs are not awaitable; use lambdaflow.get(ref)")


#: job id -> function returning a counted ref for an id (set by a live driver runtime)
LIVE_JOBS: dict[str, Any] = {}


def _rebuild(object_id: str, job: str) -> ObjectRef:
    owner = LIVE_JOBS.get(job)
    if owner is not None:
        return owner(object_id)
    return ObjectRef(object_id, job, None)
