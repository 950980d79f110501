"""What crosses between an owner and a worker: submissions, task messages and results.

    TaskSpec     a submission (driver or task -> owner): the function's key, the call's
                 arguments, the ids of its dependencies and of the refs nested inside
                 them, frozen options. The owner keeps it as the task's lineage.
    TaskMessage  owner -> worker: one attempt of a task, with where each dependency's
                 value is (``deps``) and what the worker may do inside (``nested``).
    TaskResult   worker -> owner: status, where each return value is, and the ids of the
                 refs nested in each value (so the owner counts them without unpickling).

All three have a msgpack wire form (``pack``/``unpack``, or ``to_list``/``from_list`` for
batching) used by the ``processes`` and ``lambda`` backends; ``threads`` passes the
objects as they are. New fields go at the end of the lists (readers of an older list
get the defaults).

Arguments: the call's ``(args, kwargs)`` are serialized once, with every *top-level*
ObjectRef replaced by ``DepSlot(i)``; ``deps[i]`` then says where the value of dependency
``i`` is: ``{"inline": frame bytes}``, ``{"key": store key}`` or, on threads only,
``{"frame": chunks}`` (a frame shared in memory, never packed). The arguments travel
inline (``args``) or, when large, under ``args_key``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import msgpack

from lambdaflow import serialization
from lambdaflow.runtime.options import TaskOptions

#: 2: nested (tasks that submit tasks) and refs; 3: job_key (runtime/integrity.py)
PROTOCOL_VERSION = 3


@serialization.register_plain
@dataclass(frozen=True)
class DepSlot:
    """Placeholder for the value of dependency ``index`` in a task's arguments."""

    index: int


@dataclass
class TaskSpec:
    task_id: str
    fn_key: str
    options: TaskOptions
    args: bytes | None = None  # inline frame of (args, kwargs) with DepSlots
    args_key: str | None = None
    deps: list[str] = field(default_factory=list)  # object ids, in DepSlot order
    nested: list[str] = field(default_factory=list)  # ids of refs nested in the args

    def to_list(self) -> list:
        return [self.task_id, self.fn_key, self.options.to_wire(), self.args, self.args_key,
                self.deps, self.nested]

    @classmethod
    def from_list(cls, f: list) -> TaskSpec:
        return cls(task_id=f[0], fn_key=f[1], options=TaskOptions.from_wire(f[2]),
                   args=f[3], args_key=f[4], deps=list(f[5]), nested=list(f[6]))

    @functools.cached_property
    def lineage_bytes(self) -> int:
        """What keeping this spec costs in memory: its inline arguments, its ids, and
        about 600 bytes of task and object records."""
        return (len(self.args) if self.args is not None else 0) + 600 + 48 * (
            len(self.deps) + len(self.nested))


@dataclass
class TaskMessage:
    job_id: str
    task_id: str
    name: str
    fn_key: str
    attempt: int = 0
    args: bytes | None = None  # inline frame of (args, kwargs), or None when args_key
    args_key: str | None = None
    deps: list[dict] = field(default_factory=list)
    num_returns: int = 1
    options: dict = field(default_factory=dict)  # timeout_s, memory_mb
    store_uri: str = ""
    inline_limit: int = 64 * 1024
    fn_bytes: bytes | None = None  # the function itself, when the worker may not have it
    version: int = PROTOCOL_VERSION
    #: what a task may do inside: defaults for the tasks it submits ("max_retries"), its
    #: nesting depth ("depth") and, on Lambda, the settings of its own nested runtime
    nested: dict = field(default_factory=dict)
    #: state of each ref nested in the arguments, for workers that cannot ask the owner
    #: (Lambda): {object id: "ready" | "pending" | "lost"}
    refs: dict = field(default_factory=dict)
    #: the job's 32-byte MAC key (runtime/integrity.py): only ever on the private channel
    job_key: bytes | None = field(default=None, repr=False)

    def pack(self) -> bytes:
        return msgpack.packb(self.to_list(), use_bin_type=True)

    def to_list(self) -> list:
        return [
            self.version, self.job_id, self.task_id, self.name, self.fn_key, self.attempt,
            self.args, self.args_key, self.deps, self.num_returns, self.options,
            self.store_uri, self.inline_limit, self.fn_bytes, self.nested, self.refs,
            self.job_key,
        ]

    @classmethod
    def unpack(cls, data: bytes) -> TaskMessage:
        return cls.from_list(msgpack.unpackb(data, raw=False))

    @classmethod
    def from_list(cls, f: list) -> TaskMessage:
        if f[0] != PROTOCOL_VERSION:
            raise ValueError(
                f"task message version {f[0]} but this worker speaks {PROTOCOL_VERSION}: "
                "the worker's lambdaflow does not match the driver's (redeploy the worker)"
            )
        return cls(
            version=f[0], job_id=f[1], task_id=f[2], name=f[3], fn_key=f[4], attempt=f[5],
            args=f[6], args_key=f[7], deps=f[8], num_returns=f[9], options=f[10],
            store_uri=f[11], inline_limit=f[12], fn_bytes=f[13],
            nested=f[14] if len(f) > 14 else {}, refs=f[15] if len(f) > 15 else {},
            job_key=f[16] if len(f) > 16 else None,
        )


#: TaskResult.status values.
OK = "ok"  # the function returned; ``values`` holds its return value(s)
ERROR = "error"  # the function raised; ``error`` holds the pickled exception
CRASH = "crash"  # the worker died (set by the backend, or by a worker whose task exited)
TIMEOUT = "timeout"  # the task ran past timeout_s (set by the backend)
CANCELLED = "cancelled"  # force-cancelled while running (set by the backend)
LOST = "lost"  # an input was missing from the store (``error["key"]``); nothing ran


@dataclass
class TaskResult:
    task_id: str
    attempt: int
    status: str
    #: one entry per return value: {"inline": frame bytes, "size": n} or {"key": k, "size": n}
    #: (threads: {"frame": chunks, "size": n})
    values: list[dict] = field(default_factory=list)
    #: for ERROR: {"exc": pickled exception or None, "type": qualname, "message": str,
    #: "traceback": str}; for CRASH / TIMEOUT: {"message": str, "log": tail};
    #: for LOST: {"key": the missing key, "message": str}
    error: dict | None = None
    stats: dict = field(default_factory=dict)
    #: per return value, the ids of the ObjectRefs pickled inside it
    nested: list[list[str]] = field(default_factory=list)
    #: (in-process backends, never packed) the returned value, kept alive until the
    #: owner has counted the refs inside it: their last local copy dies only after
    keepalive: Any = field(default=None, repr=False, compare=False)

    def pack(self) -> bytes:
        return msgpack.packb(self.to_list(), use_bin_type=True)

    @classmethod
    def unpack(cls, data: bytes) -> TaskResult:
        return cls.from_list(msgpack.unpackb(data, raw=False))

    @classmethod
    def from_list(cls, f: list) -> TaskResult:
        return cls(
            task_id=f[0], attempt=f[1], status=f[2], values=f[3], error=f[4], stats=f[5],
            nested=f[6] if len(f) > 6 else [],
        )

    def to_list(self) -> list:
        return [self.task_id, self.attempt, self.status, self.values, self.error, self.stats,
                self.nested]


def failure(task_id: str, attempt: int, status: str, message: str, **extra: Any) -> TaskResult:
    """A result the backend writes when the task could not report for itself."""
    return TaskResult(task_id, attempt, status, error=dict(message=message, **extra))
