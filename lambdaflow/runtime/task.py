"""Task messages and task results: what crosses from the driver to a worker and back.

Both are small dataclasses with a msgpack wire form (``pack``/``unpack``) used by the
``processes`` and ``lambda`` backends; the ``threads`` backend passes the objects as-is.

Arguments: the call's ``(args, kwargs)`` are serialized once, with every *top-level*
ObjectRef replaced by ``DepSlot(i)``; ``deps[i]`` then says where the value of dependency
``i`` is: ``{"inline": <frame bytes>}`` or ``{"key": <store key>}`` (or ``{"error": ...}``
never: a task whose dependency failed is failed by the scheduler and never sent). The
arguments themselves travel inline (``args``) or, when large, under ``args_key``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

PROTOCOL_VERSION = 2  # 2: job_key (the per-job MAC key, runtime/integrity.py)


@dataclass(frozen=True)
class DepSlot:
    """Placeholder for the value of dependency ``index`` in a task's arguments."""

    index: int


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
    #: the job's 32-byte MAC key (runtime/integrity.py): only ever on the private channel
    job_key: bytes | None = field(default=None, repr=False)

    def pack(self) -> bytes:
        return msgpack.packb(self.to_list(), use_bin_type=True)

    def to_list(self) -> list:
        return [
                self.version,
                self.job_id,
                self.task_id,
                self.name,
                self.fn_key,
                self.attempt,
                self.args,
                self.args_key,
                self.deps,
                self.num_returns,
                self.options,
                self.store_uri,
                self.inline_limit,
                self.fn_bytes,
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
            store_uri=f[11], inline_limit=f[12], fn_bytes=f[13], job_key=f[14],
        )


#: TaskResult.status values.
OK = "ok"  # the function returned; ``values`` holds its return value(s)
ERROR = "error"  # the function raised; ``error`` holds the pickled exception
CRASH = "crash"  # the worker died (set by the backend, never by the worker)
TIMEOUT = "timeout"  # the task ran past timeout_s (set by the backend)
CANCELLED = "cancelled"


@dataclass
class TaskResult:
    task_id: str
    attempt: int
    status: str
    #: one entry per return value: {"inline": frame bytes, "size": n} or {"key": k, "size": n}
    values: list[dict] = field(default_factory=list)
    #: for ERROR: {"exc": pickled exception or None, "type": qualname, "message": str,
    #: "traceback": str}; for CRASH / TIMEOUT: {"message": str, "log": tail}
    error: dict | None = None
    stats: dict = field(default_factory=dict)

    def pack(self) -> bytes:
        return msgpack.packb(
            [self.task_id, self.attempt, self.status, self.values, self.error, self.stats],
            use_bin_type=True,
        )

    @classmethod
    def unpack(cls, data: bytes) -> TaskResult:
        return cls.from_list(msgpack.unpackb(data, raw=False))

    @classmethod
    def from_list(cls, f: list) -> TaskResult:
        return cls(
            task_id=f[0], attempt=f[1], status=f[2], values=f[3], error=f[4], stats=f[5]
        )

    def to_list(self) -> list:
        return [self.task_id, self.attempt, self.status, self.values, self.error, self.stats]


def failure(task_id: str, attempt: int, status: str, message: str, **extra: Any) -> TaskResult:
    """A result the backend writes when the task could not report for itself."""
    return TaskResult(task_id, attempt, status, error=dict(message=message, **extra))
