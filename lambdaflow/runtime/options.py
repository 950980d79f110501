"""Task options: checked once where the user writes them, frozen, resolved per runtime.

``@remote(**options)`` and ``f.options(**options)`` go through :func:`check_options`
(unknown names and bad values fail there, with the valid names). A task carries a frozen
:class:`TaskOptions`: the user's options with the runtime's defaults filled in
(``resolve``). Its wire form (``to_wire`` / ``from_wire``) travels in nested submissions
from worker processes; only ``timeout_s`` and ``memory_mb`` reach the worker itself, in
``TaskMessage.options``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

import cloudpickle

#: Every option a remote function takes, with its default ("default" means: the runtime's).
OPTION_NAMES = ("max_retries", "retry_exceptions", "timeout_s", "memory_mb", "num_returns",
                "name")

RetryOn = Union[bool, tuple[type, ...]]


@dataclass(frozen=True)
class TaskOptions:
    name: str
    max_retries: int
    retry_exceptions: RetryOn = False
    num_returns: int = 1
    timeout_s: float | None = None
    memory_mb: int | None = None
    #: what the worker and the backend need to know (the message's ``options``)
    worker_options: dict = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        out: dict = {}
        if self.timeout_s:
            out["timeout_s"] = self.timeout_s
        if self.memory_mb:
            out["memory_mb"] = self.memory_mb
        object.__setattr__(self, "worker_options", out)  # frozen: set once, here

    def to_wire(self) -> list:
        retry = self.retry_exceptions
        packed = retry if isinstance(retry, bool) else cloudpickle.dumps(retry)
        return [self.name, self.max_retries, packed, self.num_returns, self.timeout_s,
                self.memory_mb]

    @classmethod
    def from_wire(cls, f: list) -> TaskOptions:
        retry = f[2] if isinstance(f[2], bool) else tuple(cloudpickle.loads(f[2]))
        return cls(name=f[0], max_retries=f[1], retry_exceptions=retry, num_returns=f[3],
                   timeout_s=f[4], memory_mb=f[5])


def resolve(options: Mapping[str, Any], default_name: str, max_retries: int) -> TaskOptions:
    """``options`` (already checked) with the runtime's defaults filled in."""
    retry = options.get("retry_exceptions", False)
    return TaskOptions(
        name=options.get("name") or default_name,
        max_retries=options.get("max_retries", max_retries),
        retry_exceptions=tuple(retry) if isinstance(retry, (list, tuple)) else bool(retry),
        num_returns=options.get("num_returns", 1),
        timeout_s=options.get("timeout_s") or None,
        memory_mb=options.get("memory_mb") or None,
    )


def check_options(options: Mapping[str, Any]) -> dict:
    """Refuse unknown names and bad values, naming the valid ones; returns a copy."""
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise TypeError(
            f"unknown remote option(s) {', '.join(unknown)}; valid options: "
            f"{', '.join(OPTION_NAMES)}"
        )
    n = options.get("num_returns")
    if "num_returns" in options and (type(n) is not int or n < 1):
        raise ValueError(f"num_returns must be an int >= 1, got {n!r}")
    r = options.get("max_retries")
    if "max_retries" in options and (type(r) is not int or r < 0):
        raise ValueError(f"max_retries must be an int >= 0, got {r!r}")
    t = options.get("timeout_s")
    if t is not None and (not isinstance(t, (int, float)) or t <= 0):
        raise ValueError(f"timeout_s must be a number > 0, got {t!r}")
    m = options.get("memory_mb")
    if m is not None and (type(m) is not int or m <= 0):
        raise ValueError(f"memory_mb must be an int > 0, got {m!r}")
    retry = options.get("retry_exceptions")
    if retry is not None and not isinstance(retry, bool):
        if not isinstance(retry, (list, tuple)) or not all(
            isinstance(c, type) and issubclass(c, BaseException) for c in retry
        ):
            raise TypeError("retry_exceptions must be True/False or a list of exception classes")
    name = options.get("name")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    return dict(options)
