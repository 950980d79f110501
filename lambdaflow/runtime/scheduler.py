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

State (the records and their guarded transitions are in ``dagstate.py``):

    _objs   object id -> Obj   PENDING -> READY | FAILED -> RELEASED. ``refs`` counts every
            holder: ObjectRefs of this process, live tasks that take it (as a dependency
            or nested in their arguments), values that contain a ref to it, borrowing
            worker processes. At 0 its bytes are deleted and it is RELEASED; the record
            stays only while retained lineage may need it rebuilt (``pins``).
    Obj.task -> Task   WAITING -> DISPATCHED -> FINISHED | FAILED. A FINISHED task keeps
            its spec as lineage while any of its objects has a record (oldest evicted
            first beyond max_lineage_bytes). A task whose values all stay in memory
            (never lost, so never rerun) is let go when it finishes: its objects'
            ``task`` becomes None, as a ``put`` object's.

Each command runs to completion; cascades it starts (freeing what a freed value held,
forgetting lineage, rebuilding lost inputs) are queued as follow-ups (``_later``) that
run before the lock is released, so a chain of any length never recurses.

Flow: a submitted task whose dependencies are all READY is dispatched; else it waits in
each PENDING one's ``dependents``; a FAILED one fails it without running. A finished
future makes its objects READY, answers waiters, dispatches dependents; an error is
retried per max_retries / retry_exceptions, else the task's objects FAIL and the failure
spreads to its dependents. Callers read values outside the lock, from the locations
in their Reply; a read that finds the bytes gone reports it, and the object's task runs
again (and, first, that task's own lost inputs) within its max_retries.
"""

from __future__ import annotations

import collections
import itertools
import logging
import queue
import threading
import time
from _thread import get_ident
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import CancelledError, Future
from typing import Any

from lambdaflow.errors import (
    GetTimeoutError,
    LambdaflowError,
    ObjectLostError,
    TaskCancelledError,
)
from lambdaflow.runtime import failures, keys, values
from lambdaflow.runtime.backends.base import Backend, Settled
from lambdaflow.runtime.context import stored_error_frame
from lambdaflow.runtime.dagstate import (
    RECORD_FIELDS,
    Obj,
    ObjState,
    Reply,
    Task,
    TaskState,
    Waiter,
)
from lambdaflow.runtime.refs import ObjectRef
from lambdaflow.runtime.store.base import Store
from lambdaflow.runtime.task import LOST, OK, TaskMessage, TaskResult, TaskSpec

log = logging.getLogger(__name__)

PENDING, READY, FAILED, RELEASED = (ObjState.PENDING, ObjState.READY, ObjState.FAILED,
                                    ObjState.RELEASED)
WAITING, DISPATCHED, FINISHED = TaskState.WAITING, TaskState.DISPATCHED, TaskState.FINISHED
DEFAULT_MAX_LINEAGE_BYTES = 256 * 1024 * 1024
_CLOSED = object()  # the Reply value of a wait cut short by close()
_STOP = object()  # ends the scheduler thread (close)
_DROP_BATCH = 256  # ref drops applied under one taking of the lock
_MAX_REBUILDS_PER_GET = 8
#: shared by every task without dependencies / nested refs (read only, never tracked by
#: the cyclic GC: each record a task keeps alive costs GC time while it is in flight)
_NONE: tuple = ()
_NO_DEPS: list[dict] = []  # TaskMessage.deps of such a task (workers only read it)
_NO_REFS: dict[str, str] = {}  # TaskMessage.refs when not exporting (read only)


class Scheduler:
    _start: Callable[..., Any] | None = None

    def __init__(self, backend: Backend, job_id: str, *, store: Store, inline_limit: int,
                 progress: bool = False, eager_delete: bool = True, export: bool = False,
                 kill: Callable[[str], bool] | None = None, nested: dict | None = None,
                 max_lineage_bytes: int = DEFAULT_MAX_LINEAGE_BYTES,
                 name: str = "lambdaflow-scheduler", known: dict | None = None,
                 job_key: bytes | None = None) -> None:
        self.backend = backend
        self.store = store
        self.job_id = job_id
        self.job_key = job_key  # sent in every message (runtime/integrity.py)
        self.inline_limit = inline_limit
        self.progress = progress
        self.eager_delete = eager_delete
        #: write values whose refs escaped into other values or arguments to the store
        #: (workers that cannot ask this owner read them by key: lambda)
        self.exporting = export
        self.max_lineage_bytes = max_lineage_bytes
        #: (nested owners) refs of other owners this one's tasks may read by key:
        #: {object id: "pending" | "lost"}, passed on in its tasks' messages
        self.known = known if known is not None else {}
        #: one per attempt, kept until shutdown (``stats_records``)
        self.records: list[tuple] = []
        self.closed = False
        self._kill = kill
        self.nested = nested or {}
        self._lock = threading.Lock()  # guards everything below (module docstring)
        self._stopped = False  # _on_close ran: no command runs any more
        #: ref drops (object ids) and tests' markers, for the scheduler thread
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._objs: dict[str, Obj] = {}
        self._lineage: collections.OrderedDict[str, Task] = collections.OrderedDict()
        self._lineage_bytes = 0
        self._borrows: dict[Hashable, set[str]] = {}
        self._fn_bytes: dict[str, bytes] = {}
        self._ids = itertools.count()
        self._io = _StoreThread(store)
        #: follow-ups of the running command, run before the lock is released
        self._later: collections.deque[tuple[Callable, Any]] = collections.deque()
        self._holder: int | None = None  # the thread running a command (``_report``)
        self._drainers: list[Reply] = []
        self._attempt_done = self._attempt_ended  # bound once: one object less per task
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def backend(self) -> Backend:
        return self._backend

    @backend.setter
    def backend(self, backend: Backend) -> None:
        """A backend whose class defines ``start_attempt`` reports each attempt's end by
        calling back (threads: no Future per task); looked up on the class, so that a
        wrapper that forwards other attributes but overrides ``submit`` (tests/faults)
        keeps the Future path."""
        self._backend = backend
        direct = callable(getattr(type(backend), "start_attempt", None))
        self._start = backend.start_attempt if direct else None  # type: ignore[attr-defined]

    # ================================================================ any thread
    def new_id(self, prefix: str = "t") -> str:
        return f"{prefix}{next(self._ids):x}"

    def ensure_function(self, key: str, data: bytes) -> None:
        """Store a pickled function once (and keep it, to restore a lost copy)."""
        if key not in self._fn_bytes:
            self.store.put(key, data)
            self._fn_bytes[key] = data

    def submit(self, spec: TaskSpec) -> list[ObjectRef]:
        """Submit a task of this process: one counted ref per return value."""
        if self.closed:
            self._check_open()
        self._run(self._on_submit, spec, None)
        n = spec.options.num_returns
        if n == 1:
            return [ObjectRef(spec.task_id, self.job_id, self)]
        return [ObjectRef(keys.result_object_id(spec.task_id, i), self.job_id, self)
                for i in range(n)]

    def put(self, oid: str, loc: dict, holds: list[str]) -> ObjectRef:
        self._check_open()
        self._run(self._on_put, oid, loc, holds, None)
        return ObjectRef(oid, self.job_id, self)

    def counted_ref(self, oid: str) -> ObjectRef:
        """A new counted ref to ``oid`` (unpickling a ref in this process)."""
        self._report(self._on_add_ref, oid)
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
            settled = self._run(self._on_flags, oids)
        return [s is not None for s in settled]

    def cancel(self, ref: ObjectRef, force: bool = False) -> bool:
        self._check_open()
        return bool(self._run(self._on_cancel, ref.id, force))

    def export(self, oids: list[str]) -> None:
        """(Exporting owners) keep a copy of each of ``oids`` under its object key,
        once it is finished (the values a task's result refers to; see ``drain``)."""
        self._run(self._on_export, oids)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until no task of this owner is waiting or running and every store write
        it started is done (a nested owner before its task returns)."""
        reply = Reply()
        self._run(self._on_drain, reply)
        if not reply.event.wait(timeout):
            return False
        return self._io.barrier(timeout)

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
        self._run(self._on_close)
        self._inbox.put(_STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)
        self._io.stop()

    # --- TaskHost: tasks of a worker process that call the API (see backends/base.py)
    def submit_spec(self, spec: TaskSpec, owner: Hashable | None) -> None:
        self._report(self._on_submit, spec, owner)

    def put_located(self, oid: str, loc: dict, holds: list[str],
                    owner: Hashable | None) -> None:
        self._report(self._on_put, oid, loc, holds, owner)

    def watch(self, oids: list[str], need: int, done: Callable[[list[Settled]], None],
              pending: Callable[[], None] | None = None) -> Waiter:
        w = Waiter(need, done, pending)
        self._report(self._on_watch, w, oids)
        return w

    def unwatch(self, token: Any) -> None:
        self._report(self._on_unwatch, token)

    def report_lost(self, oid: str, loc: dict) -> None:
        self._report(self._on_lost, oid, loc)

    def borrow(self, owner: Hashable, oids: list[str]) -> None:
        self._report(self._on_borrow, owner, oids)

    def release(self, owner: Hashable, oids: list[str]) -> None:
        self._report(self._on_release, owner, oids)

    def drop_owner(self, owner: Hashable) -> None:
        self._report(self._on_drop_owner, owner)

    def cancel_id(self, oid: str, force: bool, done: Callable[[bool], None]) -> None:
        self._report(lambda: done(self._on_cancel(oid, force)))

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
                later = self._later
                try:
                    out = fn(*args)
                    while later:
                        follow, arg = later.popleft()
                        follow(arg)
                except BaseException:
                    later.clear()
                    raise
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
            self._later.append((_apply, (fn, args)))
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
        self._run(self._on_watch, w, oids)
        if wait is not None:
            ok = wait(reply, timeout)
        elif self.progress and len(oids) > 1:
            ok = self._wait_with_bar(reply, w, need, timeout)
        else:
            ok = reply.event.wait(timeout)
        if not ok:
            self._report(self._on_unwatch, w)
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
        get, get_nowait, lock, later = (self._inbox.get, self._inbox.get_nowait,
                                        self._lock, self._later)
        release = self._on_release_ref
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
                for item in batch:
                    if item is _STOP or self._stopped:
                        stop = True
                        break
                    try:
                        if type(item) is str:
                            release(item)
                        else:
                            item[0](*item[1])
                        while later:
                            follow, arg = later.popleft()
                            follow(arg)
                    except Exception:  # a bug here must not stop every later drop
                        log.exception("job=%s scheduler: dropping a ref failed", self.job_id)
                        later.clear()
                self._holder = None
            if stop:
                return

    def _on_close(self) -> None:
        self._stopped = True
        for o in list(self._objs.values()):
            for w in o.waiters or ():
                if w.remaining > 0 and w.closed is not None:
                    w.remaining = -1
                    w.closed()
            o.waiters = None
        self._objs.clear()
        self._lineage.clear()

    # ---------------------------------------------------------- submission
    def _on_submit(self, spec: TaskSpec, owner: Hashable | None) -> None:
        objs = self._objs
        nested = ([o for o in map(objs.get, spec.nested) if o is not None] if spec.nested
                  else _NONE)
        t = Task(spec, _NONE, nested, time.time(), owner)
        n = spec.options.num_returns
        if n == 1:
            t.outs = [Obj(t.id, t, refs=1)]
        else:
            t.outs = [Obj(keys.result_object_id(t.id, i), t, refs=1) for i in range(n)]
        for o in t.outs:
            objs[o.id] = o
        if owner is not None:
            self._borrows.setdefault(owner, set()).update(o.id for o in t.outs)
        if spec.deps:
            deps = [objs.get(oid) for oid in spec.deps]
            missing = [oid for oid, d in zip(spec.deps, deps) if d is None]
            if missing:
                self._fail_task(t, ObjectLostError(
                    f"task {t.name}[{t.id}] depends on object {missing[0]}, which this "
                    "runtime does not have (it was freed, or belongs to another runtime or "
                    "job)", key=missing[0]))
                return
            t.deps = deps  # type: ignore[assignment]
        if t.deps or nested:
            self._hold(t)
        if self.exporting:
            for o in nested:
                self._escape(o)
        self._schedule(t)

    def _on_put(self, oid: str, loc: dict, holds: list[str], owner: Hashable | None) -> None:
        o = Obj(oid, None, refs=1)
        self._objs[oid] = o
        o.resolve(loc, self._take_holds(holds))
        if owner is not None:
            self._borrows.setdefault(owner, set()).add(oid)

    def _hold(self, t: Task) -> None:
        """The task takes a ref on each input for as long as it is live."""
        for o in t.deps:
            o.refs += 1
        for o in t.nested:
            o.refs += 1
        t.held = True

    def _unhold(self, t: Task) -> None:
        if t.held and (t.deps or t.nested):
            t.held = False
            for o in t.deps:
                self._unref(o)
            for o in t.nested:
                self._unref(o)

    def _schedule(self, t: Task) -> None:
        """WAITING ``t``: dispatch it, wait for its PENDING inputs, or fail it."""
        t.n_waiting = 0
        for d in t.deps:
            if d.state is RELEASED:  # retained lineage: rebuild the freed input first
                d.revive()
                self._rebuild(d)
            if d.state is PENDING:
                t.n_waiting += 1
                if d.dependents is None:
                    d.dependents = []
                d.dependents.append(t)
            elif d.state is FAILED:
                self._fail_task(t, d.error)  # type: ignore[arg-type]
                return
        if t.n_waiting == 0:
            self._dispatch(t)

    def _dispatch(self, t: Task) -> None:
        t.dispatch()
        msg = self._message(t)
        start = self._start
        if start is not None:
            try:
                t.future = start(msg, self._attempt_done, t)
            except Exception as exc:
                self._later.append((_apply, (self._on_ended, (t, t.attempt, None, exc))))
            return
        try:
            fut = self._backend.submit(msg)
        except Exception as exc:
            self._later.append((_apply, (self._on_ended, (t, t.attempt, None, exc))))
            return
        t.future = fut
        fut.add_done_callback(_Done(self, t, t.attempt))  # done already: a follow-up

    def _attempt_ended(self, attempt: Any, result: TaskResult | None,
                       exc: BaseException | None) -> None:
        """(A backend's thread) ``start_attempt``'s callback: an attempt ended."""
        self._report(self._on_ended, attempt.tag, attempt.msg.attempt, result, exc)

    def _message(self, t: Task) -> TaskMessage:
        spec = t.spec
        assert spec is not None
        refs = _NO_REFS
        if self.exporting and spec.nested:
            refs = {oid: "pending" if oid in self._objs else self.known.get(oid, "lost")
                    for oid in spec.nested}
        return TaskMessage(
            job_id=self.job_id, task_id=t.id, name=t.name, fn_key=spec.fn_key,
            attempt=t.attempt, args=spec.args, args_key=spec.args_key,
            deps=[d.loc or {} for d in t.deps] if t.deps else _NO_DEPS, num_returns=spec.options.num_returns,
            options=spec.options.worker_options, store_uri=self.store.uri,
            inline_limit=self.inline_limit, nested=self.nested, refs=refs,
            job_key=self.job_key,
        )

    # ---------------------------------------------------------- completion
    def _on_done(self, t: Task, attempt: int, fut: Future) -> None:
        try:
            result: TaskResult = fut.result()
        except CancelledError:
            return
        except BaseException as exc:  # the backend itself failed
            self._on_ended(t, attempt, None, exc)
            return
        self._on_ended(t, attempt, result, None)

    def _on_ended(self, t: Task, attempt: int, result: TaskResult | None,
                  exc: BaseException | None) -> None:
        """Attempt ``attempt`` of ``t`` ended with ``result``, or the backend itself
        failed with ``exc``."""
        if result is None:
            result = TaskResult(t.id, attempt, "backend", error={"exc": exc})
        if t.state is not DISPATCHED or t.attempt != attempt:
            self._drop_late(t, result)  # cancelled meanwhile, or a stale duplicate
            return
        if self._drainers:
            self._later.append((self._check_drained, None))
        # (stats_records reads them) The stats as flat tuples of keys and values, not the
        # dict: a tuple of atoms is untracked by the cyclic GC at its first collection, a
        # tuple holding a dict never is, and every record of the job was rescanned by
        # each full collection until shutdown.
        stats = result.stats
        self.records.append((t.id, t.name, result.attempt, result.status, t.submit_time,
                             tuple(stats), tuple(stats.values())))
        if result.status == OK:
            self._finish(t, result)
        elif result.status == LOST:
            self._input_lost(t, str((result.error or {}).get("key", "")))
        else:
            error = failures.error_for(f"{t.name}[{t.id}]", result)
            assert t.spec is not None
            if failures.should_retry(t.attempt, t.spec.options, result, error):
                log.info("job=%s task=%s retrying after %s (attempt %d)",
                         self.job_id, t.id, type(error).__name__, attempt + 1)
                t.retry()
                self._schedule(t)
            else:
                self._fail_task(t, error)

    def _finish(self, t: Task, result: TaskResult) -> None:
        t.finish()
        nested = result.nested or [[] for _ in t.outs]
        stored = False
        for o, loc, holds in zip(t.outs, result.values, nested):
            if o.state is PENDING:  # a rebuild leaves the objects that were not lost
                o.resolve(loc, self._take_holds(holds) if holds else None)
                self._settle(o)
            if o.loc is not None and "key" in o.loc:
                stored = True
        result.keepalive = None  # its refs may die now: they are counted
        if stored:
            self._keep_lineage(t)  # a stored object can be lost: keep how to rebuild it
        else:
            self._drop_spec(t)  # in memory: never lost (a pinned one keeps its value)
        self._unhold(t)
        for o in t.outs:
            if not stored:
                # Never lost, so never rerun, cancelled or drained: its objects need no way
                # back to the task, whose record (and out list) goes now, not with the last
                # of them (two objects fewer per unread value for the cyclic GC to scan).
                o.task = None
            if o.refs <= 0:
                self._free(o)

    def _settle(self, o: Obj) -> None:
        """``o`` just became READY or FAILED: answer its waiters and dependents."""
        if o.waiters:
            waiters, o.waiters = o.waiters, None
            for w in waiters:
                w.remaining -= 1
                if w.remaining == 0:
                    w.done(self._settled_list(w.objs))
        if self.exporting and o.escaped:
            self._write_export(o)
        if o.dependents:
            deps, o.dependents = o.dependents, None
            for d in deps:
                if d.state is not WAITING:
                    continue
                if o.state is FAILED:
                    self._fail_task(d, o.error)  # type: ignore[arg-type]
                else:
                    d.n_waiting -= 1
                    if d.n_waiting == 0:
                        self._dispatch(d)

    def _fail_task(self, t: Task, error: BaseException) -> None:
        """Fail ``t`` and, transitively, the WAITING tasks that depend on it."""
        stack = [t]
        while stack:
            t = stack.pop()
            t.fail()
            fut, t.future = t.future, None
            if fut is not None and not fut.done():
                fut.cancel()  # (its callbacks' report becomes a follow-up: _report)
            for o in t.outs:
                if o.state is PENDING:
                    o.fail(error)
                    deps, o.dependents = o.dependents, None
                    self._settle(o)
                    stack.extend(d for d in deps or () if d.state is WAITING)
            self._unhold(t)
            self._drop_spec(t)
            for o in t.outs:
                if o.refs <= 0:
                    self._later.append((self._free, o))

    def _drop_late(self, t: Task, result: TaskResult) -> None:
        """A completion of ``t`` the scheduler does not accept: a stale attempt (another
        one is running or finished), or one that finished after ``t`` failed (cancel).
        Result keys are deterministic and fenced (the first attempt to commit wins, the
        others report its object), so a late result's key is the task's own committed
        object: deleted only when ``t`` FAILED (nothing will read it, no lineage can
        rebuild it); never while another attempt may report it or a record holds it."""
        if result.status != OK or not self.eager_delete or t.state is not TaskState.FAILED:
            return
        for loc in result.values:
            if "key" in loc:
                self._io.delete(loc["key"])

    # ---------------------------------------------------------- references
    def _take_holds(self, oids: list[str]) -> list[str] | None:
        """A value containing refs to ``oids`` keeps them alive. On exporting owners an
        id not known here names an object its (nested) owner exported to the store."""
        held = []
        for oid in oids:
            o = self._objs.get(oid)
            if o is None and self.exporting:
                o = self._objs[oid] = Obj(oid, None)
                o.resolve({"key": keys.object_key(self.job_id, oid)}, None)
            if o is not None:
                o.refs += 1
                held.append(oid)
                if self.exporting:
                    self._escape(o)
        return held or None

    def _unref(self, o: Obj) -> None:
        o.refs -= 1
        if o.refs <= 0:
            if o.holds is None:
                self._free(o)
            else:  # freeing it releases what it holds: a cascade, one step at a time
                self._later.append((self._free, o))

    def _on_add_ref(self, oid: str) -> None:
        o = self._objs.get(oid)
        if o is not None:
            o.refs += 1

    def _on_release_ref(self, oid: str) -> None:
        o = self._objs.get(oid)
        if o is not None:
            self._unref(o)

    def _on_borrow(self, owner: Hashable, oids: list[str]) -> None:
        mine = self._borrows.setdefault(owner, set())
        for oid in oids:
            o = self._objs.get(oid)
            if o is not None and oid not in mine:
                mine.add(oid)
                o.refs += 1

    def _on_release(self, owner: Hashable, oids: list[str]) -> None:
        mine = self._borrows.get(owner, set())
        for oid in oids:
            if oid in mine:
                mine.discard(oid)
                o = self._objs.get(oid)
                if o is not None:
                    self._unref(o)

    def _on_drop_owner(self, owner: Hashable) -> None:
        for oid in self._borrows.pop(owner, ()):
            o = self._objs.get(oid)
            if o is not None:
                self._unref(o)

    def _free(self, o: Obj) -> None:
        """No refs left: delete the value, release what it holds, keep the record only
        while lineage pins it (a pinned value kept in memory stays: it stands in for the
        lineage of its task). A PENDING object is freed once it settles."""
        if o.refs > 0 or (o.state is not READY and o.state is not FAILED):
            return
        loc = o.loc
        if o.pins > 0 and loc is not None and "key" not in loc:
            return
        if loc is not None and self.eager_delete:
            key = loc.get("key")
            if key:
                self._io.delete(key)
            if o.escaped and "key" not in loc:
                self._io.delete(keys.object_key(self.job_id, o.id))
        holds, o.holds = o.holds, None
        o.release()
        for oid in holds or ():
            h = self._objs.get(oid)
            if h is not None:
                self._unref(h)
        if o.pins <= 0:
            self._forget(o)

    def _forget(self, o: Obj) -> None:
        """(Follow-up) Drop a RELEASED record nothing pins; with its task's last object,
        the task's lineage goes too."""
        if o.state is not RELEASED or o.pins > 0 or self._objs.get(o.id) is not o:
            return
        del self._objs[o.id]
        t = o.task
        if t is None:
            return
        outs = t.outs
        if len(outs) > 1 and any(x.id in self._objs for x in outs):
            return
        if t.spec is not None:
            self._drop_spec(t)
        # Its last object is gone: nothing can rerun or fail the task now. Cut the
        # Task <-> Obj cycle so both are freed by refcount (not left to the cyclic GC,
        # which then scanned every live record: a third of a no-op task's CPU).
        t.outs = []

    # ---------------------------------------------------------- lineage
    def _keep_lineage(self, t: Task) -> None:
        """A FINISHED task keeps its spec (to rebuild its objects) and pins its inputs;
        beyond max_lineage_bytes the oldest lineage goes first."""
        spec = t.spec
        if spec is None:
            return
        if not t.pinned:
            t.pinned = True
            for o in t.deps:
                o.pins += 1
            for o in t.nested:
                o.pins += 1
        if t.id not in self._lineage:
            self._lineage[t.id] = t
            self._lineage_bytes += spec.lineage_bytes
        while self._lineage_bytes > self.max_lineage_bytes and len(self._lineage) > 1:
            oldest = next(iter(self._lineage.values()))
            log.debug("job=%s lineage of task %s evicted (max_lineage_bytes=%d)",
                      self.job_id, oldest.id, self.max_lineage_bytes)
            self._drop_spec(oldest)

    def _drop_spec(self, t: Task) -> None:
        """Forget how to rebuild ``t``'s objects; unpin its inputs."""
        spec, t.spec = t.spec, None
        if spec is None:
            return
        if self._lineage.pop(t.id, None) is not None:
            self._lineage_bytes -= spec.lineage_bytes
        if t.pinned:
            t.pinned = False
            for o in itertools.chain(t.deps, t.nested):
                o.pins -= 1
                if o.pins <= 0 and o.state is RELEASED:
                    self._later.append((self._forget, o))
                elif o.pins <= 0 and o.refs <= 0:
                    self._later.append((self._free, o))  # a value kept only for lineage
        if spec.args_key and self.eager_delete:
            self._io.delete(spec.args_key)

    def _on_lost(self, oid: str, loc: dict) -> None:
        o = self._objs.get(oid)
        if o is not None and o.state is READY and o.loc == loc:
            o.lose()
            self._rebuild(o)

    def _rebuild(self, o: Obj) -> None:
        """``o`` is PENDING again (lost, or revived from RELEASED): run its task again,
        as a follow-up (a chain of lost inputs is rebuilt iteratively)."""
        self._later.append((self._rebuild_now, o))

    def _rebuild_now(self, o: Obj) -> None:
        t = o.task
        why = None
        if o.state is not PENDING:
            return
        if t is None:
            why = "it was stored with put(), which keeps no lineage"
        elif t.spec is None:
            why = ("its lineage was dropped (max_lineage_bytes="
                   f"{self.max_lineage_bytes}, or its task failed)")
        elif t.state is not FINISHED:
            return  # already running again
        elif t.attempt >= t.spec.options.max_retries:
            why = (f"rebuilding it would run task {t.name}[{t.id}] again (attempt "
                   f"{t.attempt + 1}), beyond max_retries={t.spec.options.max_retries}")
        if why is not None:
            o.fail(ObjectLostError(f"object {o.id} was lost from the store and cannot be "
                                   f"rebuilt: {why}", key=o.id))
            self._settle(o)
            if o.refs <= 0:
                self._later.append((self._free, o))
            return
        assert t is not None and t.spec is not None
        log.info("job=%s rebuilding %s: running task %s again", self.job_id, o.id, t.id)
        if self._lineage.pop(t.id, None) is not None:  # back in _keep_lineage at finish
            self._lineage_bytes -= t.spec.lineage_bytes
        t.rerun()
        self._hold(t)
        self._schedule(t)

    def _input_lost(self, t: Task, key: str) -> None:
        """The worker found input ``key`` missing before running ``t``."""
        spec = t.spec
        assert spec is not None
        if key == spec.fn_key and key in self._fn_bytes:
            self.store.put(key, self._fn_bytes[key])
            t.retry()
            self._schedule(t)
            return
        lost = next((d for d in t.deps if d.loc is not None and d.loc.get("key") == key), None)
        if lost is None or lost.state is not READY:
            what = "its arguments" if key == spec.args_key else f"input {key}"
            self._fail_task(t, ObjectLostError(
                f"task {t.name}[{t.id}]: {what} vanished from the store and cannot be "
                "rebuilt", key=key))
            return
        lost.lose()
        self._rebuild(lost)
        t.requeue()
        self._schedule(t)

    # ---------------------------------------------------------- waiting
    def _on_watch(self, w: Waiter, oids: list[str]) -> None:
        objs = w.objs
        finished = 0
        for oid in oids:
            o = self._objs.get(oid)
            if o is not None and o.state is RELEASED:
                o.revive()
                self._rebuild(o)
            objs.append(o)
            if o is None or o.state is READY or o.state is FAILED:
                finished += 1
        w.remaining -= finished
        if w.remaining <= 0:
            w.remaining = 0
            w.done(self._settled_list(objs))
            return
        for o in objs:
            if o is not None and o.state is PENDING:
                if o.waiters is None:
                    o.waiters = []
                o.waiters.append(w)
        if w.pending is not None:
            w.pending()

    def _on_unwatch(self, w: Waiter) -> None:
        w.remaining = -1
        for o in w.objs:
            if o is not None and o.waiters and w in o.waiters:
                o.waiters.remove(w)

    def _on_flags(self, oids: list[str]) -> list:
        return self._settled_list([self._objs.get(oid) for oid in oids])

    def _settled_list(self, objs: list[Obj | None]) -> list:
        out: list = []
        for o in objs:
            if o is None:
                out.append(("lost", "this runtime has no such object (it was freed, or "
                                    "belongs to another runtime or job)"))
            elif o.state is READY:
                out.append(("ok", o.loc))
            elif o.state is FAILED:
                out.append(("error", o.error))
            else:
                out.append(None)
        return out

    # ---------------------------------------------------------- cancel, export
    def _on_cancel(self, oid: str, force: bool) -> bool:
        o = self._objs.get(oid)
        t = o.task if o is not None else None
        if t is None or (t.state is not WAITING and t.state is not DISPATCHED):
            return False
        if force and t.state is DISPATCHED and self._kill is not None:
            self._kill(t.id)
        label = f"{t.name}[{t.id}]"
        self._fail_task(t, TaskCancelledError(f"task {label} was cancelled", task=label))
        return True

    def _on_export(self, oids: list[str]) -> None:
        for oid in oids:
            o = self._objs.get(oid)
            if o is not None:
                self._escape(o)

    def _on_drain(self, reply: Reply) -> None:
        self._drainers.append(reply)
        self._check_drained(None)

    def _check_drained(self, _: Any) -> None:
        busy = any(o.task is not None and (o.task.state is WAITING or o.task.state is DISPATCHED)
                   for o in self._objs.values())
        if not busy:
            drainers, self._drainers = self._drainers, []
            for reply in drainers:
                reply.set(True)

    def _escape(self, o: Obj) -> None:
        if not o.escaped:
            o.escaped = True
            if o.state is READY or o.state is FAILED:
                self._write_export(o)

    def _write_export(self, o: Obj) -> None:
        """Put a copy of an escaped object under its object key for key readers."""
        key = keys.object_key(self.job_id, o.id)
        if o.state is FAILED:
            self._io.put(key, stored_error_frame(o.error))  # type: ignore[arg-type]
        elif o.loc is not None and "inline" in o.loc:
            self._io.put(key, o.loc["inline"])


class _Done:
    """A future's done callback: ends the attempt on the thread that completed it. One
    small object per dispatch (a partial of a bound method was three, each scanned by
    the cyclic GC while the task is queued)."""

    __slots__ = ("scheduler", "task", "attempt")

    def __init__(self, scheduler: Scheduler, task: Task, attempt: int) -> None:
        self.scheduler, self.task, self.attempt = scheduler, task, attempt

    def __call__(self, fut: Future) -> None:
        self.scheduler._report(self.scheduler._on_done, self.task, self.attempt, fut)


def _apply(call: tuple[Callable, tuple]) -> None:
    """A follow-up that calls ``fn(*args)``."""
    fn, args = call
    fn(*args)


class _StoreThread:
    """Writes and deletes on behalf of the scheduler, in order, off its thread (a store
    may be S3: the scheduler's thread must never wait for the network)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def put(self, key: str, data: Any) -> None:
        self._submit(self._store.put, key, data)

    def delete(self, key: str) -> None:
        self._submit(self._store.delete, key)

    def _submit(self, fn: Callable, *args: Any) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lambdaflow-store",
                                            daemon=True)
            self._thread.start()
        self._queue.put((fn, args))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
            except Exception as exc:  # freed bytes are garbage: never fail for them
                log.debug("store %s%s failed: %s", fn.__name__, args[:1], exc)

    def barrier(self, timeout: float | None) -> bool:
        """Wait until every write and delete submitted so far is done."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue.put((done.set, ()))
        return done.wait(timeout)

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
