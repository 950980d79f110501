"""The ``threads`` backend: ``worker.run_task`` on a thread pool in the driver. For tests
and debugging: arguments and mutable values are serialized exactly as on the other
backends, so a function that works here ships the same way to processes and Lambda.

Values stay in memory (``{"frame": chunks}`` locations, no store): a task's return value
is serialized once and its numpy arrays are shared read-only, never copied (frozen in
place when the task's array owns its memory). As in Ray, arrays from ``get`` and
dependency arguments are read-only here; copy one before writing to it. Immutable
atomic values (``values.shareable``: None, numbers, str, bytes, short tuples of these)
are shared as they are (``{"value": v}``), not serialized.

The scheduler reaches the pool through ``start_attempt`` (``pool.start``): each attempt's end is
reported by a callback from the thread that ran it, not through a Future; ``submit``
(the Backend protocol's Future) stays for callers that want one, and carries the
``timeout_s`` timer, which ``start_attempt`` uses for tasks that set it.

Tasks call the API directly on the driver's scheduler (same process). A task that waits
in ``get``/``wait`` gives its thread's slot back (the pool may grow past ``num_workers``)
and runs, inline, the queued tasks that make what it waits for (``pool.serve``).

``timeout_s`` is honoured softly: the task's future fails with a TIMEOUT result at the
deadline; the thread itself cannot be killed and runs on, its late result discarded.
``exit()`` in a task ends its thread and is reported as a crash.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from typing import Any

from lambdaflow.runtime import keys
from lambdaflow.runtime.backends.base import TaskHost
from lambdaflow.runtime.backends.pool import PENDING_MARK, Attempt, Done, TaskThreads, WorkerExit
from lambdaflow.runtime.context import current_context
from lambdaflow.runtime.dagstate import Reply
from lambdaflow.runtime.futures import TaskFuture
from lambdaflow.runtime.owner import OwnerClient, WaitFn
from lambdaflow.runtime.refs import ObjectRef
from lambdaflow.runtime.scheduler import Scheduler
from lambdaflow.runtime.store.memory import MemoryStore
from lambdaflow.runtime.task import CRASH, TIMEOUT, TaskMessage, TaskResult, failure
from lambdaflow.runtime.worker import run_task

_names = threading.local()


def _thread_name() -> str:
    """This thread's name, looked up once per thread (``current_thread()`` is Python
    code, on every task)."""
    try:
        return _names.name
    except AttributeError:
        _names.name = threading.current_thread().name
        return _names.name


class ThreadsBackend:
    name = "threads"
    eager_delete = True

    def __init__(self, num_workers: int | None = None) -> None:
        self.num_workers = num_workers or max(8, 2 * (os.cpu_count() or 1))
        self.store = MemoryStore()
        self.pool = TaskThreads(self.num_workers, self._run, "lambdaflow")
        self._client: ThreadTaskClient | None = None

    def attach(self, host: TaskHost) -> None:
        assert isinstance(host, Scheduler), "the threads backend serves its own scheduler"
        self._client = ThreadTaskClient(host, self.store, self.pool)

    def _run(self, msg: TaskMessage) -> TaskResult:
        try:
            return run_task(msg, self.store, client=self._client, share="move",
                            measure_memory=False, env_id=_thread_name(), backend="threads")
        except SystemExit as exc:
            raise WorkerExit(failure(
                msg.task_id, msg.attempt, CRASH,
                f"the task called exit({exc.code!r}) (SystemExit): its worker thread ended"
            )) from None

    def start_attempt(self, msg: TaskMessage, done: Done, tag: Any = None) -> Attempt | _Timed:
        """The scheduler's path: ``done(attempt, result, exc)`` on the thread that ran
        it, no Future per task (``pool.start``), and never inside this call (the
        scheduler calls it under its lock); a task with ``timeout_s`` goes through
        ``submit``'s timed Future, whose report is wired before the task is queued."""
        if msg.options.get("timeout_s"):
            timed = _Timed(msg, done, tag)
            timed.future = self._submit(msg, timed.report)
            return timed
        return self.pool.start(msg, done, tag)

    def submit(self, msg: TaskMessage) -> Future:
        return self._submit(msg, None)

    def _submit(self, msg: TaskMessage, first: Callable[[Future], None] | None) -> Future:
        """``submit``; ``first`` is added to the returned Future's callbacks before the
        task can run (so it never runs inside this call)."""
        timeout = msg.options.get("timeout_s")
        if not timeout:
            if first is None:
                return self.pool.submit(msg)
            fut: Future = TaskFuture()
            fut.add_done_callback(first)
            self.pool.submit_future(msg, fut)
            return fut
        outer: Future = Future()
        if first is not None:
            outer.add_done_callback(first)

        def settle(result: TaskResult | None, exc: BaseException | None = None) -> None:
            try:  # the first of the task and its timer wins
                if exc is not None:
                    outer.set_exception(exc)
                else:
                    outer.set_result(result)
            except InvalidStateError:
                pass

        def on_inner(f: Future) -> None:
            if f.cancelled():
                outer.cancel()
                return
            exc = f.exception()
            settle(None if exc else f.result(), exc)

        timer = threading.Timer(
            timeout,
            lambda: settle(failure(msg.task_id, msg.attempt, TIMEOUT,
                                   f"timed out after {timeout} s (timeout_s={timeout})")),
        )
        timer.daemon = True
        outer.set_running_or_notify_cancel()
        inner: Future = TaskFuture()

        def done(f: Future) -> None:
            timer.cancel()
            on_inner(f)

        inner.add_done_callback(done)
        outer.add_done_callback(lambda f: inner.cancel() if f.cancelled() else None)
        timer.start()
        self.pool.submit_future(msg, inner)
        return outer

    def kill(self, task_id: str) -> bool:
        """``cancel(force=True)`` of a running task: a Python thread cannot be stopped, so
        the task runs on unseen (its result is dropped), but its thread stops counting
        against ``num_workers``: later tasks run beside it (``TaskThreads.abandon``)."""
        return self.pool.abandon(task_id)

    def shutdown(self) -> None:
        self.pool.shutdown()


class _Timed:
    """``start_attempt``'s handle for a task with ``timeout_s``: reports its timed Future to
    ``done`` (the timer's TIMEOUT, or the task's own result)."""

    __slots__ = ("msg", "tag", "future", "_done")

    def __init__(self, msg: TaskMessage, done: Done, tag: Any) -> None:
        self.msg, self.tag, self._done = msg, tag, done
        self.future: Future | None = None

    def report(self, f: Future) -> None:
        if f.cancelled():
            return
        exc = f.exception()
        self._done(self, None if exc is not None else f.result(), exc)  # type: ignore[arg-type]

    def cancel(self) -> bool:
        return self.future is not None and self.future.cancel()

    def done(self) -> bool:
        return self.future is not None and self.future.done()


class ThreadTaskClient(OwnerClient):
    """A threads task's client: the driver's own scheduler; while the task waits, its
    thread serves the pool (see the module docstring)."""

    def __init__(self, scheduler: Scheduler, store: MemoryStore, pool: TaskThreads) -> None:
        nested = scheduler.nested
        super().__init__(scheduler, store, inline_limit=scheduler.inline_limit,
                         max_retries=int(nested.get("max_retries", 3)), share=True)
        self._pool = pool

    def wait_hooks(self, refs: Sequence[ObjectRef], inline: bool
                   ) -> tuple[WaitFn | None, Callable[[], None] | None]:
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        task_ids = {keys.task_of(r.id) for r in refs} if inline else set()
        ctx = current_context()

        def blocked(seconds: float) -> None:
            if ctx is not None:
                ctx.blocked_s += seconds

        def wait(reply: Reply, timeout: float | None) -> bool:
            return self._pool.serve(task_ids, reply, inbox, timeout, blocked)

        return wait, lambda: inbox.put(PENDING_MARK)
