"""A pool of threads that run task messages, growing on demand.

Shared by the ``threads`` backend (threads run ``worker.run_task``) and the ``lambda``
backend (threads invoke the function). State::

    _by_task    queued ``Attempt`` items by task id. ``_tokens`` (a SimpleQueue)
                holds one task id per queued item, FIFO; an item is *claimed* by
                whoever pops it from ``_by_task`` first (a thread that took its token,
                or a waiting task that runs it inline), so a token whose item is gone
                is skipped
    counters    under ``_lock``: threads alive = idle (waiting for a token) + blocked
                (a task in get/wait, see ``serve``) + active (running an item)

Growth: a thread starts when more items are queued than threads are idle and the
threads that will be active, counting the idle ones about to take queued items, are
fewer than ``size`` (so a burst is served by ``size`` threads, never only by the ones
idle at that moment). A blocked thread does not count as active, so the pool grows past
``size`` while tasks wait; once they resume, a thread that finds more than ``size``
threads not blocked exits instead of waiting for more work.

Hand-off to self: while a pool thread reports an item's end (``done`` / the future's
callbacks run the scheduler's completion on it, which may dispatch the next task), the
first item queued on that thread becomes its own next item instead of a token for an idle
thread (``_own.next``; as Go's scheduler keeps a ``runnext`` slot per P). A chain's next
task then runs on the thread that finished the previous one, with no thread woken; a
fan-out's other items go to the idle threads as usual. A task's own subtasks (queued while
it *runs*) never take the slot. The item stays in ``_by_task``, so a waiting task may
still claim it first.

``abandon`` is the threads backend's ``cancel(force=True)`` of a running task: a thread
cannot be stopped, so the task runs on to its end (its report is dropped: the
scheduler has cancelled it), but from then on its thread counts as blocked, not
active, so the pool may start another thread for queued work; when the task ends, the
thread takes no more work if the pool has enough without it.

``serve`` is how a task thread waits for values (threads backend): while the tasks that
make them are queued it claims and runs them inline, one at a time (free threads take
the others, in parallel); once none is left to claim it marks itself blocked when the
wait is real, and a task it waits for that is queued while the pool has no free thread
is routed to it. So recursive tasks need no more threads than their parallelism.

Each item is an ``Attempt``: the message and how its end is reported. ``start`` (the
threads backend's scheduler path) reports it by calling ``done(attempt, result, exc)``
on the thread that ran it, with no Future in between (a Future per no-op task cost
more CPU than the task, and 5 more objects for the cyclic GC to scan while it is
queued); ``submit`` (the Lambda pools) hands out a ``TaskFuture`` instead.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

from lambdaflow.errors import BackendError
from lambdaflow.runtime.dagstate import Reply
from lambdaflow.runtime.futures import TaskFuture
from lambdaflow.runtime.task import TaskMessage, TaskResult

PENDING_MARK = "pending"  # put into a serving thread's inbox: its wait has to wait
Done = Callable[["Attempt", "TaskResult | None", "BaseException | None"], None]
QUEUED, RUNNING, ENDED, CANCELLED = 0, 1, 2, 3  # Attempt.state
_NO_SLOT = object()  # TaskThreads._own.next: this thread takes no item of its own


class Attempt:
    """One task attempt in the pool: QUEUED -> RUNNING -> ENDED, or QUEUED -> CANCELLED.
    ``done(self, result, exc)`` is called once, on the thread that ran it (never when
    cancelled); ``tag`` is the caller's (the scheduler's Task). ``cancel`` races a
    thread that is about to run it (no lock: the scheduler's cancel is best-effort in
    any case): a cancelled attempt that a thread had already begun runs and reports,
    and the canceller must accept that late report (the scheduler drops it: the task is
    no longer DISPATCHED)."""

    __slots__ = ("msg", "done_fn", "tag", "state")

    def __init__(self, msg: TaskMessage, done: Done, tag: Any) -> None:
        self.msg, self.done_fn, self.tag, self.state = msg, done, tag, QUEUED

    def begin(self) -> bool:
        """QUEUED -> RUNNING; False when it was cancelled (skip it)."""
        if self.state != QUEUED:
            return False
        self.state = RUNNING
        return True

    def end(self, result: TaskResult | None, exc: BaseException | None) -> None:
        self.state = ENDED
        self.done_fn(self, result, exc)

    def cancel(self) -> bool:
        if self.state != QUEUED:
            return self.state == CANCELLED
        self.state = CANCELLED
        return True

    def done(self) -> bool:
        return self.state >= ENDED


class _FutureAttempt(Attempt):
    """``submit``'s attempt: its end sets ``tag``, a TaskFuture (whose ``cancel`` is
    the way to cancel it)."""

    __slots__ = ()

    def begin(self) -> bool:
        return self.tag.set_running_or_notify_cancel()

    def end(self, result: TaskResult | None, exc: BaseException | None) -> None:
        if exc is not None:
            self.tag.set_exception(exc)
        else:
            self.tag.set_result(result)


def _no_done(attempt: Attempt, result: TaskResult | None, exc: BaseException | None) -> None:
    pass


class WorkerExit(Exception):
    """Raised by ``run`` when the task ended its worker (``exit()``): the future gets
    ``result`` and the thread running it exits."""

    def __init__(self, result: TaskResult) -> None:
        super().__init__(result.error)
        self.result = result


class TaskThreads:
    def __init__(self, size: int, run: Callable[[TaskMessage], TaskResult], name: str) -> None:
        self.size = max(1, size)
        self._run = run
        self._name = name
        self._lock = threading.Lock()
        self._tokens: queue.SimpleQueue = queue.SimpleQueue()
        self._by_task: dict[str, Attempt] = {}
        #: per thread: ``next`` is None while a pool thread reports an item's end (it may
        #: take the first task queued meanwhile), else unset / _NO_SLOT
        self._own = threading.local()
        self._routes: dict[str, queue.SimpleQueue] = {}
        self._running: dict[str, Attempt] = {}  # by task id, while a thread runs it
        self._abandoned: set[str] = set()  # running task ids given up (``abandon``)
        self._threads = self._idle = self._blocked = 0
        self._started = 0
        self.closed = False

    @property
    def counts(self) -> dict[str, int]:
        """threads alive / idle / blocked, and items queued (for tests and stats)."""
        with self._lock:
            return {"threads": self._threads, "idle": self._idle, "blocked": self._blocked,
                    "queued": len(self._by_task)}

    def submit(self, msg: TaskMessage) -> Future:
        """Queue ``msg``; its TaskFuture gets the result (cancel it to skip the task)."""
        fut: Future = TaskFuture()
        self._queue(_FutureAttempt(msg, _no_done, fut))
        return fut

    def submit_future(self, msg: TaskMessage, fut: Future) -> None:
        """``submit`` into the caller's pending ``fut`` (its callbacks added first)."""
        self._queue(_FutureAttempt(msg, _no_done, fut))

    def start(self, msg: TaskMessage, done: Done, tag: Any = None) -> Attempt:
        """Queue ``msg``; ``done(attempt, result, exc)`` is called on the thread that ran
        it (``exc``: ``run`` itself raised). The Attempt cancels it while queued."""
        attempt = Attempt(msg, done, tag)
        self._queue(attempt)
        return attempt

    def _queue(self, item: Attempt) -> None:
        tid = item.msg.task_id
        with self._lock:
            if self.closed:
                raise BackendError("the task pool is shut down")
            inbox = self._routes.get(tid) if self._routes else None
            if inbox is not None and (self._idle or self._threads - self._blocked < self.size):
                inbox = None  # a free thread will take it (or the waiter, if first)
            if inbox is None:
                self._by_task[tid] = item
                if getattr(self._own, "next", _NO_SLOT) is None:
                    self._own.next = tid  # this thread runs it next: no wake-up
                    return
                start = self._want_thread()
        if inbox is not None:  # the pool is full and a blocked task waits for this one
            inbox.put(item)
            return
        self._tokens.put(tid)
        if start:
            self._start_thread()

    def _want_thread(self) -> bool:
        """(Under the lock) start a thread? Counts it as started when so."""
        queued, idle = len(self._by_task), self._idle
        active_soon = self._threads - idle - self._blocked + min(idle, queued)
        if queued > idle and active_soon < self.size:
            self._threads += 1
            return True
        return False

    def _start_thread(self) -> None:
        self._started += 1
        threading.Thread(target=self._work, daemon=True,
                         name=f"{self._name}-{self._started}").start()

    def _work(self) -> None:
        lock, tokens, by_task, own = self._lock, self._tokens, self._by_task, self._own
        own.next = _NO_SLOT
        while True:
            with lock:
                if self.closed or self._threads - self._blocked > self.size:
                    self._threads -= 1  # shut down, or an extra thread no longer needed
                    return
                self._idle += 1
            tid = tokens.get()
            with lock:
                self._idle -= 1
            if tid is None:
                with lock:
                    self._threads -= 1
                return
            item = by_task.pop(tid, None)
            while item is not None:
                ok = self._execute(item, take_next=True)
                tid, own.next = own.next, _NO_SLOT
                if tid is _NO_SLOT:
                    tid = None
                if not ok:
                    with lock:
                        self._threads -= 1
                        start = self._want_thread()
                    if tid is not None:
                        tokens.put(tid)  # the task its end queued: for another thread
                    if start:
                        self._start_thread()
                    return
                item = by_task.pop(tid, None) if tid is not None else None  # None: claimed

    def _execute(self, item: Attempt,
                 run: Callable[[TaskMessage], TaskResult] | None = None,
                 take_next: bool = False) -> bool:
        """Run one item; False when its task ended the worker (the thread exits).
        ``take_next``: the first task queued while its end is reported is this thread's
        own next item (``_own.next``, see the module docstring)."""
        if not item.begin():
            return True
        tid = item.msg.task_id
        self._running[tid] = item
        try:
            result = (run or self._run)(item.msg)
        except WorkerExit as exc:
            self._ran(tid)
            self._end(item, exc.result, None, take_next)
            return False
        except BaseException as exc:
            self._ran(tid)
            self._end(item, None, exc, take_next)
            return True
        self._ran(tid)
        self._end(item, result, None, take_next)
        return True

    def _end(self, item: Attempt, result: TaskResult | None, exc: BaseException | None,
             take_next: bool) -> None:
        if take_next:
            self._own.next = None  # (only while reporting: never a task's own subtasks)
        item.end(result, exc)

    def _ran(self, tid: str) -> None:
        """The thread that ran ``tid`` is done with it; if it was abandoned, the thread
        counts as active again (and leaves the pool if it is one too many)."""
        with self._lock:
            self._running.pop(tid, None)
            if self._abandoned and tid in self._abandoned:
                self._abandoned.discard(tid)
                self._blocked -= 1

    def abandon(self, task_id: str) -> bool:
        """Give up on the running task ``task_id``: its thread runs it to the end, but no
        longer holds a slot (see the module docstring). True if it was running here."""
        with self._lock:
            if task_id not in self._running or task_id in self._abandoned:
                return False
            self._abandoned.add(task_id)
            self._blocked += 1
            start = self._want_thread()
        if start:
            self._start_thread()
        return True

    # ------------------------------------------------------------------ waiting
    def serve(self, task_ids: Iterable[str], reply: Reply, inbox: queue.SimpleQueue,
              timeout: float | None, on_blocked: Callable[[float], None],
              pool_thread: bool = True,
              run: Callable[[TaskMessage], TaskResult] | None = None) -> bool:
        """Wait for ``reply`` on a task thread, running inline the queued tasks
        ``task_ids`` (see the module docstring); ``inbox`` gets ``PENDING_MARK`` when the
        wait is real. Returns False on timeout; ``on_blocked`` gets the seconds blocked.
        ``pool_thread``: the caller is one of this pool's threads (its slot is given back
        while it is blocked); else (a Lambda task's own thread) it only runs inline.
        ``run`` runs a claimed item here when the pool's own ``run`` would not (the
        nested Lambda pool invokes; inline means in this environment)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ids = list(task_ids)
        reply.on_set = lambda: inbox.put(None)
        with self._lock:
            for tid in ids:
                self._routes[tid] = inbox
        blocked_at = None
        try:
            while not reply.event.is_set():
                item = self._claim(ids)
                if item is None:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    try:
                        item = inbox.get(timeout=left)
                    except queue.Empty:
                        return False
                    if item is None:
                        continue
                    if item == PENDING_MARK:
                        if blocked_at is None:
                            blocked_at = time.perf_counter()
                            if pool_thread:
                                self._set_blocked(+1)
                        continue
                if blocked_at is not None and pool_thread:  # running inline: active again
                    self._set_blocked(-1)
                self._execute(item, run)
                if blocked_at is not None and pool_thread:
                    self._set_blocked(+1)
            return True
        finally:
            reply.on_set = None
            with self._lock:
                for tid in ids:
                    if self._routes.get(tid) is inbox:
                        del self._routes[tid]
                if blocked_at is not None and pool_thread:
                    self._blocked -= 1
            if blocked_at is not None:
                on_blocked(time.perf_counter() - blocked_at)
            self._requeue(inbox)

    def _claim(self, ids: list[str]) -> Attempt | None:
        """One queued item among ``ids``, claimed (the newest first: depth first)."""
        by_task = self._by_task
        for tid in reversed(ids):
            item = by_task.pop(tid, None)
            if item is not None:
                return item
        return None

    def _set_blocked(self, delta: int) -> None:
        with self._lock:
            self._blocked += delta
            start = delta > 0 and self._want_thread()
        if start:
            self._start_thread()

    def _requeue(self, inbox: queue.SimpleQueue) -> None:
        """Items routed to a waiter that stopped waiting go back to the queue."""
        while True:
            try:
                item = inbox.get_nowait()
            except queue.Empty:
                return
            if item is None or item == PENDING_MARK:
                continue
            tid = item.msg.task_id
            with self._lock:
                self._by_task[tid] = item
                start = self._want_thread()
            self._tokens.put(tid)
            if start:
                self._start_thread()

    def shutdown(self) -> None:
        """Cancel what has not started and let every thread exit."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            queued = list(self._by_task.values())
            self._by_task.clear()
            n = self._threads
        for item in queued:
            if isinstance(item, _FutureAttempt):
                item.tag.cancel()
            else:
                item.cancel()
        for _ in range(n):
            self._tokens.put(None)
