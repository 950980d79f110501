"""The DAG scheduler: one owner's single source of truth about its tasks and objects.

One lock, ``_lock`` (a plain ``threading.Lock``, never taken twice by one thread), guards
all the state below. A thread that needs the state runs its command itself, under the
lock, to completion: the user's thread (submit, put, get's watch, cancel), a backend's
thread that reports an attempt's end (a threads pool thread, the processes IO thread, a
Lambda invoke thread), a worker pipe's requests (TaskHost). Nothing else may take the
lock, and nothing done under it may call back into the scheduler on the same thread::

    user and task threads ──submit, put, watch, cancel──────────┐
    backend threads ────────ended(task, attempt, result)────────┤ under _lock, on the
    futures' callbacks ─────done(task, attempt, future)─────────┤ caller's own thread
    worker pipes (TaskHost) ──submit, borrow, release, watch────┘
    ObjectRef.__del__ ──drop_ref──> inbox ──> scheduler thread (under _lock, in batches)

    a command ──> backend.submit / start_attempt (the next attempt)
              └─> store thread (writes, deletes); Replies: where each value is

Two things may happen at any point on any thread, even inside a command, so they never
wait for the lock: an ObjectRef dying (``__del__``) only puts its id into the inbox, which
the ``lambdaflow-scheduler`` thread applies in batches; and a backend's report of an
attempt's end that arrives on the thread running a command (a future already done when
its callback is added, or cancelled by the command; a synchronous backend) becomes a
follow-up of that command (``_report``). Any other command started on the thread that
holds the lock raises at once instead of deadlocking.

So the end of one task and the dispatch of the next one happen on the thread that saw
the end, with no hand-off to another thread: one wake-up per hop of a chain, not two.

The records and the commands that change them are in ``dag.py`` (``Dag``: single-threaded,
it never sees the lock); this module is how threads reach it.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from _thread import get_ident
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from lambdaflow.errors import GetTimeoutError, LambdaflowError, ObjectLostError
from lambdaflow.runtime import keys, values
from lambdaflow.runtime.backends.base import Backend, Settled
from lambdaflow.runtime.dag import DEFAULT_MAX_LINEAGE_BYTES, Dag, _apply
from lambdaflow.runtime.dagstate import RECORD_FIELDS, Reply, Waiter
from lambdaflow.runtime.refs import ObjectRef
from lambdaflow.runtime.store.base import Store
from lambdaflow.runtime.task import TaskSpec

log = logging.getLogger(__name__)

_CLOSED = object()  # the Reply value of a wait cut short by close()
_STOP = object()  # ends the scheduler thread (close)
_DROP_BATCH = 256  # ref drops applied under one taking of the lock
_MAX_REBUILDS_PER_GET = 8
__all__ = ["Scheduler", "DEFAULT_MAX_LINEAGE_BYTES"]


class Scheduler:
    def __init__(self, backend: Backend, job_id: str, *, store: Store, inline_limit: int,
                 progress: bool = False, eager_delete: bool = True, export: bool = False,
                 kill: Callable[[str], bool] | None = None, nested: dict | None = None,
                 max_lineage_bytes: int = DEFAULT_MAX_LINEAGE_BYTES,
                 name: str = "lambdaflow-scheduler", known: dict | None = None,
                 job_key: bytes | None = None) -> None:
        self.store = store
        self.job_id = job_id
        self.job_key = job_key
        self.inline_limit = inline_limit
        self.progress = progress
        self.nested = nested or {}
        self.closed = False
        self._dag = Dag(backend, job_id, store=store, inline_limit=inline_limit,
                        report=self._report, eager_delete=eager_delete, export=export,
                        kill=kill, nested=self.nested, max_lineage_bytes=max_lineage_bytes,
                        known=known, job_key=job_key)
        self._lock = threading.Lock()  # guards self._dag (module docstring)
        self._holder: int | None = None  # the thread running a command (``_report``)
        self._stopped = False  # close ran: no command runs any more
        #: ref drops (object ids) and tests' markers, for the scheduler thread
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._ids = itertools.count()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def backend(self) -> Backend:
        return self._dag.backend

    @backend.setter
    def backend(self, backend: Backend) -> None:
        self._dag.backend = backend

    @property
    def records(self) -> list[tuple]:
        """One flat tuple per attempt, kept until shutdown (``stats_records``)."""
        return self._dag.records

    # ================================================================ any thread
    def new_id(self, prefix: str = "t") -> str:
        return f"{prefix}{next(self._ids):x}"

    def ensure_function(self, key: str, data: bytes) -> None:
        """Store a pickled function once (and keep it, to restore a lost copy)."""
        if self._dag.remember_function(key, data):
            self.store.put(key, data)

    def submit(self, spec: TaskSpec) -> list[ObjectRef]:
        """Submit a task of this process: one counted ref per return value."""
        if self.closed:
            self._check_open()
        self._run(self._dag.submit, spec, None)
        n = spec.options.num_returns
        if n == 1:
            return [ObjectRef(spec.task_id, self.job_id, self)]
        return [ObjectRef(keys.result_object_id(spec.task_id, i), self.job_id, self)
                for i in range(n)]

    def put(self, oid: str, loc: dict, holds: list[str]) -> ObjectRef:
        self._check_open()
        self._run(self._dag.put, oid, loc, holds, None)
        return ObjectRef(oid, self.job_id, self)

    def counted_ref(self, oid: str) -> ObjectRef:
        """A new counted ref to ``oid`` (unpickling a ref in this process)."""
        self._report(self._dag.add_ref, oid)
        return ObjectRef(oid, self.job_id, self)

    def drop_ref(self, oid: str) -> None:
        """An ObjectRef of this process died (``__del__``: any thread, any moment, even
        inside a command: only a queue put, applied by the scheduler thread)."""
        self._inbox.put(oid)

    def get(self, refs: Sequence[ObjectRef], timeout: float | None,
            wait: Callable[[Reply, float | None], bool] | None = None,
            pending: Callable[[], None] | None = None) -> list:
        """Values of ``refs`` in order (re-raising a failed one's error). ``wait`` and
        ``pending`` let a task's client serve other work while it waits (threads)."""
        oids = [r.id for r in refs]
        deadline = None if timeout is None else time.monotonic() + timeout
        settled = self._await(oids, len(oids), timeout, wait, pending)
        out = []
        for oid, entry in zip(oids, settled):
            out.append(self._value(oid, entry, deadline, wait, pending))
        return out

    def wait(self, refs: Sequence[ObjectRef], need: int, timeout: float | None,
             wait: Callable[[Reply, float | None], bool] | None = None,
             pending: Callable[[], None] | None = None) -> list[bool]:
        """Block until ``need`` of ``refs`` finished (READY or FAILED) or the timeout
        passes; a done-flag per ref."""
        oids = [r.id for r in refs]
        try:
            settled = self._await(oids, need, timeout, wait, pending)
        except GetTimeoutError:
            settled = self._run(self._dag.flags, oids)
        return [s is not None for s in settled]

    def cancel(self, ref: ObjectRef, force: bool = False) -> bool:
        self._check_open()
        return bool(self._run(self._dag.cancel, ref.id, force))

    def export(self, oids: list[str]) -> None:
        """(Exporting owners) keep a copy of each of ``oids`` under its object key,
        once it is finished (the values a task's result refers to; see ``drain``)."""
        self._run(self._dag.export, oids)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until no task of this owner is waiting or running and every store write
        it started is done (a nested owner before its task returns)."""
        reply = Reply()
        self._run(self._dag.drain, reply)
        if not reply.event.wait(timeout):
            return False
        return self._dag.io.barrier(timeout)

    def quiesce(self) -> None:
        """Return once every ref drop queued so far has been applied (tests; every other
        command has run when its call returns)."""
        while not self.closed:
            reply = Reply()
            self._inbox.put((reply.set, (None,)))
            reply.event.wait()
            if self._inbox.empty():
                return

    def stats_records(self) -> list[dict]:
        """One dict per attempt (``RECORD_FIELDS``; runtime/stats.py reads them)."""
        out = []
        for task_id, name, attempt, status, submitted, names, vals in list(self.records):
            s = dict(zip(names, vals))
            out.append(dict(zip(RECORD_FIELDS, (
                task_id, name, attempt, status, submitted, s.get("start"), s.get("end"),
                s.get("duration_s"), s.get("cold_start", False), s.get("env_id"),
                s.get("memory_mb"), s.get("bytes_in", 0), s.get("bytes_out", 0),
                s.get("peak_memory_mb"), s.get("throttles", 0), s.get("backend"),
                s.get("blocked_s", 0.0)))))
        return out

    def close(self) -> None:
        """Stop: blocked callers get a LambdaflowError; late results are dropped."""
        if self.closed:
            return
        self.closed = True
        self._run(self._close_now)
        self._inbox.put(_STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)
        self._dag.io.stop()

    # --- TaskHost: tasks of a worker process that call the API (see backends/base.py)
    def submit_spec(self, spec: TaskSpec, owner: Hashable | None) -> None:
        self._report(self._dag.submit, spec, owner)

    def put_located(self, oid: str, loc: dict, holds: list[str],
                    owner: Hashable | None) -> None:
        self._report(self._dag.put, oid, loc, holds, owner)

    def watch(self, oids: list[str], need: int, done: Callable[[list[Settled]], None],
              pending: Callable[[], None] | None = None) -> Waiter:
        w = Waiter(need, done, pending)
        self._report(self._dag.watch, w, oids)
        return w

    def unwatch(self, token: Any) -> None:
        self._report(self._dag.unwatch, token)

    def report_lost(self, oid: str, loc: dict) -> None:
        self._report(self._dag.lost, oid, loc)

    def borrow(self, owner: Hashable, oids: list[str]) -> None:
        self._report(self._dag.borrow, owner, oids)

    def release(self, owner: Hashable, oids: list[str]) -> None:
        self._report(self._dag.release, owner, oids)

    def drop_owner(self, owner: Hashable) -> None:
        self._report(self._dag.drop_owner, owner)

    def cancel_id(self, oid: str, force: bool, done: Callable[[bool], None]) -> None:
        self._report(lambda: done(self._dag.cancel(oid, force)))

    # -------------------------------------------------------------- the lock
    def _run(self, fn: Callable, *args: Any) -> Any:
        """Run command ``fn(*args)`` and its follow-ups under the lock. After ``close`` it
        raises; on the thread that already holds the lock it raises (a bug: it would
        deadlock)."""
        me = get_ident()
        if self._holder == me:
            raise RuntimeError(f"scheduler command {getattr(fn, '__name__', fn)} called "
                               "inside another command (on the thread holding the lock)")
        with self._lock:
            self._holder = me
            try:
                if self._stopped:
                    self._check_open()
                try:
                    out = fn(*args)
                except BaseException:
                    self._dag.later.clear()
                    raise
                self._dag.run_follow_ups()
            finally:
                self._holder = None
        return out

    def _report(self, fn: Callable, *args: Any) -> None:
        """``_run`` for a backend's report. One that arrives on the thread running a
        command (a future done inside ``add_done_callback`` or ``cancel``, a synchronous
        backend's ``start_attempt``) becomes a follow-up of that command. A late report
        after ``close`` is dropped; a bug in a command is logged, never raised into the
        backend's thread."""
        if self._holder == get_ident():
            self._dag.later.append((_apply, (fn, args)))
            return
        if self._stopped:
            return
        try:
            self._run(fn, *args)
        except Exception:
            if not self._stopped:
                log.exception("job=%s scheduler command %s failed", self.job_id,
                              getattr(fn, "__name__", fn))

    def _check_open(self) -> None:
        if self.closed:
            raise LambdaflowError(
                "this lambdaflow runtime was shut down; call lambdaflow.init() again and "
                "resubmit (ObjectRefs of a shut-down runtime cannot be used)"
            )

    def _await(self, oids: list[str], need: int, timeout: float | None,
               wait: Callable[[Reply, float | None], bool] | None,
               pending: Callable[[], None] | None) -> list:
        self._check_open()
        reply = Reply()
        w = Waiter(need, reply.set, pending, lambda: reply.set(_CLOSED))
        self._run(self._dag.watch, w, oids)
        if wait is not None:
            ok = wait(reply, timeout)
        elif self.progress and len(oids) > 1:
            ok = self._wait_with_bar(reply, w, need, timeout)
        else:
            ok = reply.event.wait(timeout)
        if not ok:
            self._report(self._dag.unwatch, w)
            raise GetTimeoutError(
                f"get() timed out after {timeout}s: {max(w.remaining, 0)} of {len(oids)} "
                "objects not ready")
        if reply.value is _CLOSED:
            self._check_open()
        return reply.value

    def _wait_with_bar(self, reply: Reply, w: Waiter, need: int,
                       timeout: float | None) -> bool:
        from lambdaflow.runtime.progress import progress_bar

        deadline = None if timeout is None else time.monotonic() + timeout
        with progress_bar(total=need, start=0) as bar:
            while True:
                step = 0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic()))
                done = reply.event.wait(step)
                bar.update_to(need - max(w.remaining, 0) if not done else need)
                if done:
                    return True
                if deadline is not None and time.monotonic() >= deadline:
                    return False

    def _value(self, oid: str, entry: Settled, deadline: float | None,
               wait: Callable[[Reply, float | None], bool] | None,
               pending: Callable[[], None] | None) -> Any:
        for _ in range(_MAX_REBUILDS_PER_GET):
            kind, payload = entry
            if kind == "error":
                raise payload  # type: ignore[misc]
            if kind == "lost":
                raise ObjectLostError(str(payload), key=oid)
            try:
                return values.load(self.store, payload)  # type: ignore[arg-type]
            except ObjectLostError:
                log.info("job=%s object %s is gone from the store; rebuilding it",
                         self.job_id, oid)
                self.report_lost(oid, payload)  # type: ignore[arg-type]
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                entry = self._await([oid], 1, left, wait, pending)[0]
        raise ObjectLostError(f"object {oid} kept disappearing from the store", key=oid)

    # ================================================================ the thread
    def _loop(self) -> None:
        """Apply ref drops (bare object ids) and run markers ``(fn, args)`` from the
        inbox, in order, as many as are there under one taking of the lock."""
        get, get_nowait, lock, dag = (self._inbox.get, self._inbox.get_nowait, self._lock,
                                      self._dag)
        release = dag.release_ref
        while True:
            batch = [get()]
            while len(batch) < _DROP_BATCH:
                try:
                    batch.append(get_nowait())
                except queue.Empty:
                    break
            stop = False
            with lock:
                self._holder = get_ident()
                try:
                    for item in batch:
                        if item is _STOP or self._stopped:
                            stop = True
                            break
                        try:
                            if type(item) is str:
                                release(item)
                            else:
                                item[0](*item[1])
                            dag.run_follow_ups()
                        except Exception:  # a bug here must not stop every later drop
                            log.exception("job=%s scheduler: dropping a ref failed",
                                          self.job_id)
                            dag.later.clear()
                finally:
                    self._holder = None
            if stop:
                return

    def _close_now(self) -> None:
        self._stopped = True
        self._dag.close()
