"""ObjectRef: a handle to a value that exists now or will once its task finishes.

A ref is *counted* when it has an owner proxy (``_rt``): the owner keeps the object while
any counted ref to it is alive anywhere. In the driver the proxy is the scheduler; in a
worker process it is the process's pipe client, which borrows the object from the driver
(and tells it when its last ref dies); in a Lambda task it is the task's nested
scheduler for what the task submitted. ``__del__`` only calls ``_rt.drop_ref(id)``, which
is a queue put, safe from the garbage collector at any point.

Pickled refs carry (job, id). Unpickling one asks ``LIVE_JOBS[job]`` (set by whoever
owns or borrows the job's objects in this process) for a counted ref; without one it is
an uncounted *remote* ref (a Lambda task reads those from the store by key).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from lambdaflow import serialization


class RefOwner(Protocol):
    def drop_ref(self, oid: str) -> None: ...


class ObjectRef:
    """A future value. Pass it to ``.remote()`` calls or resolve it with
    ``lambdaflow.get``. Hashable and comparable by id."""

    __slots__ = ("id", "job", "_rt", "__weakref__")

    def __init__(self, object_id: str, job: str, owner: RefOwner | None = None) -> None:
        self.id = object_id
        self.job = job
        self._rt = owner  # counted by the owner when not None

    def __del__(self) -> None:
        rt = self._rt
        if rt is not None:
            try:
                rt.drop_ref(self.id)
            except Exception:  # interpreter shutdown
                pass

    def __reduce__(self) -> tuple:
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

    def __await__(self) -> Any:  # pragma: no cover - convenience, not part of the contract
        raise TypeError("ObjectRefs are not awaitable; use lambdaflow.get(ref)")


#: job id -> function returning a counted ref for an object id (set by whoever owns or
#: borrows that job's objects in this process)
LIVE_JOBS: dict[str, Callable[[str], ObjectRef]] = {}


def _rebuild(object_id: str, job: str) -> ObjectRef:
    owner = LIVE_JOBS.get(job)
    if owner is not None:
        return owner(object_id)
    return ObjectRef(object_id, job, None)
