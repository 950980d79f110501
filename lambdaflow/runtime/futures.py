"""TaskFuture: the ``concurrent.futures.Future`` every backend returns for a task attempt,
made cheap enough for one per no-op task.

A ``Future`` builds a ``threading.Condition`` (Python code, an RLock, a waiter deque) in
``__init__`` and enters it in every method: on the threads backend that cost more than
running a no-op task. ``TaskFuture`` keeps ``Future``'s states, fields and semantics, and
changes only how it locks: a plain ``Lock`` guards the state, and the ``Condition``
(bound to that same lock) is created on first use, that is only when someone actually
blocks in ``result()``/``exception()`` or passes it to ``concurrent.futures.wait`` /
``as_completed``, which use ``_condition`` and ``_waiters`` directly. The methods on the
hot path (``set_running_or_notify_cancel``, ``set_result``, ``set_exception``,
``add_done_callback``, a ``result()`` that is already there) never create it; every
other method is ``Future``'s own. The waiters' and callbacks' lists are also made on first
use (a processes burst keeps every queued task's future alive: each list was one more
object for the cyclic GC to rescan).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, InvalidStateError
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    LOGGER,
    PENDING,
    RUNNING,
)
from typing import Any

_DONE = frozenset({CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED})
_CONDITIONS = threading.Lock()  # one Condition per future, even if two threads race


class TaskFuture(Future):
    #: the waiters and callbacks lists, created on first use (two GC-tracked objects
    #: less per future in flight, most of which never get either); ``Future``'s own
    #: methods and ``concurrent.futures.wait`` reach them through the properties below
    _w: list | None = None
    _cbs: list | None = None

    def __init__(self) -> None:  # no super().__init__(): it would build the Condition
        self._lock = threading.Lock()
        self._cond: threading.Condition | None = None
        self._state = PENDING
        self._result: Any = None
        self._exception: BaseException | None = None

    @property
    def _waiters(self) -> list:  # type: ignore[override]
        if self._w is None:
            self._w = []
        return self._w

    @property
    def _done_callbacks(self) -> list:
        if self._cbs is None:
            self._cbs = []
        return self._cbs

    @_done_callbacks.setter
    def _done_callbacks(self, value: list) -> None:
        self._cbs = value or None

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        """``Future``'s own methods (and ``concurrent.futures.wait``) use this."""
        if self._cond is None:
            with _CONDITIONS:
                if self._cond is None:
                    self._cond = threading.Condition(self._lock)
        return self._cond

    def set_running_or_notify_cancel(self) -> bool:
        with self._lock:
            if self._state == CANCELLED:
                self._state = CANCELLED_AND_NOTIFIED
                for waiter in self._w or ():
                    waiter.add_cancelled(self)
                return False
            if self._state == PENDING:
                self._state = RUNNING
                return True
            raise RuntimeError(f"Future in unexpected state: {self._state}")

    def set_result(self, result: Any) -> None:
        with self._lock:
            if self._state in _DONE:  # (no repr here: Future.__repr__ takes the lock)
                raise InvalidStateError(f"{self._state}: future {id(self):#x}")
            self._result, self._state = result, FINISHED
            for waiter in self._w or ():
                waiter.add_result(self)
            if self._cond is not None:
                self._cond.notify_all()
        self._run_callbacks()

    def set_exception(self, exception: BaseException | None) -> None:
        with self._lock:
            if self._state in _DONE:
                raise InvalidStateError(f"{self._state}: future {id(self):#x}")
            self._exception, self._state = exception, FINISHED
            for waiter in self._w or ():
                waiter.add_exception(self)
            if self._cond is not None:
                self._cond.notify_all()
        self._run_callbacks()

    def add_done_callback(self, fn: Callable[[Future], object]) -> None:
        with self._lock:
            if self._state not in _DONE:
                if self._cbs is None:
                    self._cbs = [fn]
                else:
                    self._cbs.append(fn)
                return
        try:
            fn(self)
        except Exception:
            LOGGER.exception("exception calling callback for %r", self)

    def result(self, timeout: float | None = None) -> Any:
        with self._lock:
            state = self._state
        if state == FINISHED:
            if self._exception is not None:
                raise self._exception
            return self._result
        if state in (CANCELLED, CANCELLED_AND_NOTIFIED):
            raise CancelledError()
        return super().result(timeout)  # wait on the Condition

    def _run_callbacks(self) -> None:
        cbs, self._cbs = self._cbs, None
        for fn in cbs or ():
            try:
                fn(self)
            except Exception:
                LOGGER.exception("exception calling callback for %r", self)
