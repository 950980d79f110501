"""The DAG's records and the commands that change them: submission, completion,
references, lineage, waiting, cancel and export, for one owner (``scheduler.py``).

Single-threaded by contract: every method here runs under the scheduler's lock, called
by ``Scheduler._run`` (a command) or as a follow-up of one; nothing here takes a lock,
waits or knows about threads. What it starts elsewhere: the next attempt
(``backend.submit`` / ``start_attempt``), store writes and deletes (``StoreWriter``), and
the replies of waiters. Attempts report back through ``report(command, *args)``, the
scheduler's ``_report``.

State (the records and their guarded transitions are in ``dagstate.py``):

    objs    object id -> Obj   PENDING -> READY | FAILED -> RELEASED. ``refs`` counts every
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
forgetting lineage, rebuilding lost inputs) are queued as follow-ups (``later``) that the
scheduler runs before it releases the lock, so a chain of any length never recurses.

Flow: a submitted task whose dependencies are all READY is dispatched; else it waits in
each PENDING one's ``dependents``; a FAILED one fails it without running. A finished
attempt makes its objects READY, answers waiters, dispatches dependents; an error is
retried per max_retries / retry_exceptions, else the task's objects FAIL and the failure
spreads to its dependents. Callers read values outside the lock, from the locations in
their Reply; a read that finds the bytes gone reports it (``lost``), and the object's
task runs again (and, first, that task's own lost inputs) within its max_retries.
"""

from __future__ import annotations

import collections
import itertools
import logging
import time
from collections.abc import Callable, Hashable
from concurrent.futures import CancelledError, Future
from typing import Any

from lambdaflow.errors import ObjectLostError, TaskCancelledError
from lambdaflow.runtime import failures, keys
from lambdaflow.runtime.backends.base import Backend
from lambdaflow.runtime.context import stored_error_frame
from lambdaflow.runtime.dagstate import Obj, ObjState, Reply, Task, TaskState, Waiter
from lambdaflow.runtime.store.base import Store
from lambdaflow.runtime.store_writer import StoreWriter
from lambdaflow.runtime.task import LOST, OK, TaskMessage, TaskResult, TaskSpec

log = logging.getLogger(__name__)

PENDING, READY, FAILED, RELEASED = (ObjState.PENDING, ObjState.READY, ObjState.FAILED,
                                    ObjState.RELEASED)
WAITING, DISPATCHED, FINISHED = TaskState.WAITING, TaskState.DISPATCHED, TaskState.FINISHED
DEFAULT_MAX_LINEAGE_BYTES = 256 * 1024 * 1024
#: shared by every task without dependencies / nested refs (read only, never tracked by
#: the cyclic GC: each record a task keeps alive costs GC time while it is in flight)
_NONE: tuple = ()
_NO_DEPS: list[dict] = []  # TaskMessage.deps of such a task (workers only read it)
_NO_REFS: dict[str, str] = {}  # TaskMessage.refs when not exporting (read only)

Report = Callable[..., None]  # report(command, *args): run it under the lock


class Dag:
    _start: Callable[..., Any] | None = None

    def __init__(self, backend: Backend, job_id: str, *, store: Store, inline_limit: int,
                 report: Report, eager_delete: bool = True, export: bool = False,
                 kill: Callable[[str], bool] | None = None, nested: dict | None = None,
                 max_lineage_bytes: int = DEFAULT_MAX_LINEAGE_BYTES,
                 known: dict | None = None, job_key: bytes | None = None) -> None:
        self.backend = backend
        self.store = store
        self.job_id = job_id
        self.job_key = job_key  # sent in every message (runtime/integrity.py)
        self.inline_limit = inline_limit
        self.eager_delete = eager_delete
        #: write values whose refs escaped into other values or arguments to the store
        #: (workers that cannot ask this owner read them by key: lambda)
        self.exporting = export
        self.max_lineage_bytes = max_lineage_bytes
        #: (nested owners) refs of other owners this one's tasks may read by key:
        #: {object id: "pending" | "lost"}, passed on in its tasks' messages
        self.known = known if known is not None else {}
        self.nested = nested or {}
        #: one per attempt, kept until shutdown (``Scheduler.stats_records``)
        self.records: list[tuple] = []
        self.objs: dict[str, Obj] = {}
        self.lineage: collections.OrderedDict[str, Task] = collections.OrderedDict()
        self.lineage_bytes = 0
        #: follow-ups of the running command (run before the lock is released)
        self.later: collections.deque[tuple[Callable, Any]] = collections.deque()
        self.io = StoreWriter(store)
        self._report = report
        self._kill = kill
        self._borrows: dict[Hashable, set[str]] = {}
        self._fn_bytes: dict[str, bytes] = {}
        self._drainers: list[Reply] = []
        self._attempt_done = self._attempt_ended  # bound once: one object less per task

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

    def run_follow_ups(self) -> None:
        """Run the follow-ups queued so far (and the ones they queue), in order; if one
        raises, the rest are dropped and the error propagates."""
        later = self.later
        try:
            while later:
                follow, arg = later.popleft()
                follow(arg)
        except BaseException:
            later.clear()
            raise

    def remember_function(self, key: str, data: bytes) -> bool:
        """Keep a pickled function's bytes (to restore a lost copy); False if known."""
        if key in self._fn_bytes:
            return False
        self._fn_bytes[key] = data
        return True

    def close(self) -> None:
        """The runtime shuts down: waiters get their ``closed`` call; records go."""
        for o in list(self.objs.values()):
            for w in o.waiters or ():
                if w.remaining > 0 and w.closed is not None:
                    w.remaining = -1
                    w.closed()
            o.waiters = None
        self.objs.clear()
        self.lineage.clear()

    # ---------------------------------------------------------- submission
    def submit(self, spec: TaskSpec, owner: Hashable | None) -> None:
        objs = self.objs
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

    def put(self, oid: str, loc: dict, holds: list[str], owner: Hashable | None) -> None:
        o = Obj(oid, None, refs=1)
        self.objs[oid] = o
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
                self.later.append((_apply, (self.ended, (t, t.attempt, None, exc))))
            return
        try:
            fut = self._backend.submit(msg)
        except Exception as exc:
            self.later.append((_apply, (self.ended, (t, t.attempt, None, exc))))
            return
        t.future = fut
        fut.add_done_callback(_Done(self._report, self.done, t, t.attempt))  # done already: a follow-up

    def _attempt_ended(self, attempt: Any, result: TaskResult | None,
                       exc: BaseException | None) -> None:
        """(A backend's thread) ``start_attempt``'s callback: an attempt ended."""
        self._report(self.ended, attempt.tag, attempt.msg.attempt, result, exc)

    def _message(self, t: Task) -> TaskMessage:
        spec = t.spec
        assert spec is not None
        refs = _NO_REFS
        if self.exporting and spec.nested:
            refs = {oid: "pending" if oid in self.objs else self.known.get(oid, "lost")
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
    def done(self, t: Task, attempt: int, fut: Future) -> None:
        try:
            result: TaskResult = fut.result()
        except CancelledError:
            return
        except BaseException as exc:  # the backend itself failed
            self.ended(t, attempt, None, exc)
            return
        self.ended(t, attempt, result, None)

    def ended(self, t: Task, attempt: int, result: TaskResult | None,
                  exc: BaseException | None) -> None:
        """Attempt ``attempt`` of ``t`` ended with ``result``, or the backend itself
        failed with ``exc``."""
        if result is None:
            result = TaskResult(t.id, attempt, "backend", error={"exc": exc})
        if t.state is not DISPATCHED or t.attempt != attempt:
            self._drop_late(t, result)  # cancelled meanwhile, or a stale duplicate
            return
        if self._drainers:
            self.later.append((self._check_drained, None))
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
                    self.later.append((self._free, o))

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
                self.io.delete(loc["key"])

    # ---------------------------------------------------------- references
    def _take_holds(self, oids: list[str]) -> list[str] | None:
        """A value containing refs to ``oids`` keeps them alive. On exporting owners an
        id not known here names an object its (nested) owner exported to the store."""
        held = []
        for oid in oids:
            o = self.objs.get(oid)
            if o is None and self.exporting:
                o = self.objs[oid] = Obj(oid, None)
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
                self.later.append((self._free, o))

    def add_ref(self, oid: str) -> None:
        o = self.objs.get(oid)
        if o is not None:
            o.refs += 1

    def release_ref(self, oid: str) -> None:
        o = self.objs.get(oid)
        if o is not None:
            self._unref(o)

    def borrow(self, owner: Hashable, oids: list[str]) -> None:
        mine = self._borrows.setdefault(owner, set())
        for oid in oids:
            o = self.objs.get(oid)
            if o is not None and oid not in mine:
                mine.add(oid)
                o.refs += 1

    def release(self, owner: Hashable, oids: list[str]) -> None:
        mine = self._borrows.get(owner, set())
        for oid in oids:
            if oid in mine:
                mine.discard(oid)
                o = self.objs.get(oid)
                if o is not None:
                    self._unref(o)

    def drop_owner(self, owner: Hashable) -> None:
        for oid in self._borrows.pop(owner, ()):
            o = self.objs.get(oid)
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
                self.io.delete(key)
            if o.escaped and "key" not in loc:
                self.io.delete(keys.object_key(self.job_id, o.id))
        holds, o.holds = o.holds, None
        o.release()
        for oid in holds or ():
            h = self.objs.get(oid)
            if h is not None:
                self._unref(h)
        if o.pins <= 0:
            self._forget(o)

    def _forget(self, o: Obj) -> None:
        """(Follow-up) Drop a RELEASED record nothing pins; with its task's last object,
        the task's lineage goes too."""
        if o.state is not RELEASED or o.pins > 0 or self.objs.get(o.id) is not o:
            return
        del self.objs[o.id]
        t = o.task
        if t is None:
            return
        outs = t.outs
        if len(outs) > 1 and any(x.id in self.objs for x in outs):
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
        if t.id not in self.lineage:
            self.lineage[t.id] = t
            self.lineage_bytes += spec.lineage_bytes
        while self.lineage_bytes > self.max_lineage_bytes and len(self.lineage) > 1:
            oldest = next(iter(self.lineage.values()))
            log.debug("job=%s lineage of task %s evicted (max_lineage_bytes=%d)",
                      self.job_id, oldest.id, self.max_lineage_bytes)
            self._drop_spec(oldest)

    def _drop_spec(self, t: Task) -> None:
        """Forget how to rebuild ``t``'s objects; unpin its inputs."""
        spec, t.spec = t.spec, None
        if spec is None:
            return
        if self.lineage.pop(t.id, None) is not None:
            self.lineage_bytes -= spec.lineage_bytes
        if t.pinned:
            t.pinned = False
            for o in itertools.chain(t.deps, t.nested):
                o.pins -= 1
                if o.pins <= 0 and o.state is RELEASED:
                    self.later.append((self._forget, o))
                elif o.pins <= 0 and o.refs <= 0:
                    self.later.append((self._free, o))  # a value kept only for lineage
        if spec.args_key and self.eager_delete:
            self.io.delete(spec.args_key)

    def lost(self, oid: str, loc: dict) -> None:
        o = self.objs.get(oid)
        if o is not None and o.state is READY and o.loc == loc:
            o.lose()
            self._rebuild(o)

    def _rebuild(self, o: Obj) -> None:
        """``o`` is PENDING again (lost, or revived from RELEASED): run its task again,
        as a follow-up (a chain of lost inputs is rebuilt iteratively)."""
        self.later.append((self._rebuild_now, o))

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
                self.later.append((self._free, o))
            return
        assert t is not None and t.spec is not None
        log.info("job=%s rebuilding %s: running task %s again", self.job_id, o.id, t.id)
        if self.lineage.pop(t.id, None) is not None:  # back in _keep_lineage at finish
            self.lineage_bytes -= t.spec.lineage_bytes
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
    def watch(self, w: Waiter, oids: list[str]) -> None:
        objs = w.objs
        finished = 0
        for oid in oids:
            o = self.objs.get(oid)
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

    def unwatch(self, w: Waiter) -> None:
        w.remaining = -1
        for o in w.objs:
            if o is not None and o.waiters and w in o.waiters:
                o.waiters.remove(w)

    def flags(self, oids: list[str]) -> list:
        return self._settled_list([self.objs.get(oid) for oid in oids])

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
    def cancel(self, oid: str, force: bool) -> bool:
        o = self.objs.get(oid)
        t = o.task if o is not None else None
        if t is None or (t.state is not WAITING and t.state is not DISPATCHED):
            return False
        if force and t.state is DISPATCHED and self._kill is not None:
            self._kill(t.id)
        label = f"{t.name}[{t.id}]"
        self._fail_task(t, TaskCancelledError(f"task {label} was cancelled", task=label))
        return True

    def export(self, oids: list[str]) -> None:
        for oid in oids:
            o = self.objs.get(oid)
            if o is not None:
                self._escape(o)

    def drain(self, reply: Reply) -> None:
        self._drainers.append(reply)
        self._check_drained(None)

    def _check_drained(self, _: Any) -> None:
        busy = any(o.task is not None and (o.task.state is WAITING or o.task.state is DISPATCHED)
                   for o in self.objs.values())
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
            self.io.put(key, stored_error_frame(o.error))  # type: ignore[arg-type]
        elif o.loc is not None and "inline" in o.loc:
            self.io.put(key, o.loc["inline"])


class _Done:
    """A future's done callback: ends the attempt on the thread that completed it. One
    small object per dispatch (a partial of a bound method was three, each scanned by
    the cyclic GC while the task is queued)."""

    __slots__ = ("report", "done", "task", "attempt")

    def __init__(self, report: Callable, done: Callable, task: Task, attempt: int) -> None:
        self.report, self.done, self.task, self.attempt = report, done, task, attempt

    def __call__(self, fut: Future) -> None:
        self.report(self.done, self.task, self.attempt, fut)


def _apply(call: tuple[Callable, tuple]) -> None:
    """A follow-up that calls ``fn(*args)``."""
    fn, args = call
    fn(*args)
