"""The DAG scheduler: the driver's one source of truth about tasks and objects.

State, all guarded by ``self._lock``::

    objs: object id -> _Obj    state PENDING -> READY | FAILED (never back)
                               loc: {"inline": frame} | {"key": store key} when READY
                               refcount: live counted ObjectRefs in the driver
                               dependents: tasks WAITING on it
    _Obj.task -> _Task         state WAITING -> RUNNING -> FINISHED
                               n_waiting: dependencies not yet READY

Flow (no polling anywhere on the hot path):

    submit() ──> deps all READY? ──yes──> dispatch: backend.submit(msg) -> Future
                   │ no: task joins each PENDING dep's ``dependents``
                   │ a FAILED dep: the task fails at once, without running
    Future done (any thread) ──> _on_done: objects READY, waiters woken, each dependent's
        n_waiting -1; those at 0 are dispatched (after the lock is released, from one
        loop per thread, so a synchronous backend cannot recurse). Errors: retried per
        ``max_retries`` (crashes) / ``retry_exceptions``; else the task's objects FAIL and
        the failure spreads to its dependents transitively.
    ObjectRef.__del__ ──> ``released`` deque ──> drained under the lock: an object with
        no refs left and no longer PENDING is forgotten and its stored bytes deleted.

Backends never touch this state; they only complete the futures they return.
"""

from __future__ import annotations

import collections
import functools
import itertools
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import CancelledError, Future
from typing import Any

from lambdaflow import serialization
from lambdaflow.errors import (
    GetTimeoutError,
    LambdaflowError,
    ObjectLostError,
    TaskCancelledError,
)
from lambdaflow.runtime import failures, keys
from lambdaflow.runtime.dagstate import (
    FAILED,
    FINISHED,
    PENDING,
    READY,
    RECORD_FIELDS,
    RUNNING,
    WAITING,
)
from lambdaflow.runtime.dagstate import (
    Guard as _Guard,
)
from lambdaflow.runtime.dagstate import (
    Obj as _Obj,
)
from lambdaflow.runtime.dagstate import (
    Task as _Task,
)
from lambdaflow.runtime.dagstate import (
    Waiter as _Waiter,
)
from lambdaflow.runtime.refs import ObjectRef
from lambdaflow.runtime.task import OK, TaskMessage, TaskResult
from lambdaflow.runtime.worker import stored_error_frame

log = logging.getLogger(__name__)

class Scheduler:
    def __init__(self, backend: Any, job_id: str, *, inline_limit: int,
                 progress: bool = False, eager_delete: bool = True,
                 job_key: bytes | None = None) -> None:
        self.backend = backend
        self.store = backend.store
        self.job_id = job_id
        self.job_key = job_key  # sent in every message (runtime/integrity.py)
        self.inline_limit = inline_limit
        self.progress = progress
        self.eager_delete = eager_delete
        self.released: collections.deque[str] = collections.deque()
        self.records: list[tuple] = []
        self.closed = False
        self._lock = threading.RLock()
        self._guard = _Guard(self)
        self._completions: collections.deque = collections.deque()
        self._objs: dict[str, _Obj] = {}
        self._ids = itertools.count()
        self._stored_fns: set[str] = set()
        self._local = threading.local()

    # ----------------------------------------------------------------- submission
    def ensure_function(self, key: str, data: bytes) -> None:
        if key not in self._stored_fns:
            self.store.put(key, data)
            self._stored_fns.add(key)

    def new_task_id(self) -> str:
        return f"t{next(self._ids):x}"

    def submit(self, name: str, fn_key: str, task_id: str, args: bytes | None,
               args_key: str | None, dep_refs: Sequence[ObjectRef], nested: list,
               opts: dict) -> list[ObjectRef]:
        t = _Task()
        t.id, t.name, t.fn_key, t.args, t.args_key = task_id, name, fn_key, args, args_key
        t.dep_refs, t.nested, t.opts, t.attempt = list(dep_refs), nested, opts, 0
        t.state, t.future, t.submit_time, t.n_waiting = WAITING, None, time.time(), 0
        n = opts["num_returns"]
        to_write: list[_Obj] = []
        with self._guard:
            self._check_open()
            self._drain_released()
            t.dep_objs = [self._lookup(r) for r in dep_refs]
            to_write = self._escape(nested)
            oids = [keys.result_object_id(task_id, None if n == 1 else i) for i in range(n)]
            t.outs = [_Obj(oid, t) for oid in oids]
            refs = []
            for o in t.outs:
                o.refcount = 1
                self._objs[o.id] = o
                refs.append(ObjectRef(o.id, self.job_id, self))
            failed = None
            for d in t.dep_objs:
                if d.state == PENDING:
                    t.n_waiting += 1
                    if d.dependents is None:
                        d.dependents = []
                    d.dependents.append(t)
                elif d.state == FAILED and failed is None:
                    failed = d.error
            msg = None
            if failed is not None:
                self._fail(t, failed, to_write)
            elif t.n_waiting == 0 and getattr(self._local, "queue", None) is None:
                msg = self._start(t)
            elif t.n_waiting == 0:
                self._local.queue.append(t)
        if to_write:
            self._write_escaped(to_write)
        if msg is not None:
            self._send(t, msg)
        return refs

    def put(self, value: Any) -> ObjectRef:
        with serialization.collect_refs() as nested:
            chunks = serialization.dumps(value)
        size = serialization.chunks_len(chunks)
        oid = f"p{next(self._ids):x}"
        if size <= self.inline_limit:
            loc = {"inline": b"".join(chunks), "size": size}
        else:
            key = keys.object_key(self.job_id, oid)
            self.store.put(key, chunks)
            loc = {"key": key, "size": size}
        with self._guard:
            self._check_open()
            o = _Obj(oid, None)
            o.state, o.loc, o.refcount, o.holds = READY, loc, 1, nested.refs or None
            self._objs[oid] = o
            to_write = self._escape(nested.refs)
            ref = ObjectRef(oid, self.job_id, self)
        self._write_escaped(to_write)
        return ref

    def counted_ref(self, oid: str) -> ObjectRef:
        """A new counted ref to a known object (used when unpickling refs)."""
        with self._guard:
            o = self._objs.get(oid)
            if o is None:
                return ObjectRef(oid, self.job_id, None)
            o.refcount += 1
            return ObjectRef(oid, self.job_id, self)

    # ------------------------------------------------------------------- dispatch
    def _dispatch(self, tasks: list[_Task]) -> None:
        if not tasks:
            return
        queue = getattr(self._local, "queue", None)
        if queue is not None:  # already dispatching on this thread: let that loop do it
            queue.extend(tasks)
            return
        queue = self._local.queue = collections.deque(tasks)
        try:
            while queue:
                t = queue.popleft()
                with self._guard:
                    msg = self._start(t)
                if msg is not None:
                    self._send(t, msg)
        finally:
            self._local.queue = None

    def _start(self, t: _Task) -> TaskMessage | None:
        """WAITING -> RUNNING; the message to send (under the lock)."""
        if t.state != WAITING or self.closed:
            return None
        t.state = RUNNING
        return TaskMessage(
            job_id=self.job_id, task_id=t.id, name=t.name, fn_key=t.fn_key,
            attempt=t.attempt, args=t.args, args_key=t.args_key,
            deps=[d.loc for d in t.dep_objs], num_returns=len(t.outs),
            options=t.opts["wire"], store_uri=self.store.uri,
            inline_limit=self.inline_limit, job_key=self.job_key,
        )

    def _send(self, t: _Task, msg: TaskMessage) -> None:
        try:
            fut = self.backend.submit(msg)
        except Exception as exc:
            fut = Future()
            fut.set_exception(exc)
        t.future = fut
        fut.add_done_callback(functools.partial(self._on_done, t, msg.attempt))

    def _on_done(self, t: _Task, attempt: int, fut: Future) -> None:
        """A backend future finished (any thread). Queue it; apply now if the lock is
        free, else the thread holding the lock applies it when it lets go. Worker
        threads never block on the lock, so they do not convoy behind the submitter."""
        self._completions.append((t, attempt, fut))
        self._apply_completions()

    def _apply_completions(self) -> None:
        while self._completions:
            if self._guard.held() or not self._lock.acquire(blocking=False):
                return  # the holder applies them on release (_Guard.__exit__)
            ready: list[_Task] = []
            to_write: list[_Obj] = []
            self._guard.enter_held()
            try:
                while self._completions:
                    t, attempt, fut = self._completions.popleft()
                    self._complete(t, attempt, fut, ready, to_write)
                self._drain_released()
            finally:
                self._guard.exit_held()
                self._lock.release()
            if to_write:
                self._write_escaped(to_write)
            self._dispatch(ready)

    def _complete(self, t: _Task, attempt: int, fut: Future, ready: list,
                  to_write: list) -> None:
        """Apply one finished future (under the lock): objects, waiters, dependents,
        retries, failures."""
        try:
            result: TaskResult = fut.result()
        except CancelledError:
            return
        except BaseException as exc:  # the backend itself failed
            result = TaskResult(t.id, attempt, "backend", error={"exc": exc})
        if t.state != RUNNING or t.attempt != attempt:
            return  # cancelled meanwhile, or a stale duplicate
        self._record(t, result)
        if result.status == OK:
            t.state = FINISHED
            t.future = None  # breaks the task <-> future <-> callback cycle
            for o, loc in zip(t.outs, result.values):
                o.state, o.loc = READY, loc
                self._wake(o)
                if o.escaped:
                    to_write.append(o)
                if o.dependents:
                    for d in o.dependents:
                        d.n_waiting -= 1
                        if d.n_waiting == 0 and d.state == WAITING:
                            ready.append(d)
                    o.dependents = None
            self._finish(t)
        else:
            error = failures.error_for(f"{t.name}[{t.id}]", result)
            if failures.should_retry(t.attempt, t.opts, result, error):
                log.info("job=%s task=%s retrying after %s (attempt %d)",
                         self.job_id, t.id, type(error).__name__, attempt + 1)
                t.attempt += 1
                t.state = WAITING
                ready.append(t)
            else:
                self._fail(t, error, to_write)

    # ------------------------------------------------------------- state changes
    def _wake(self, o: _Obj) -> None:
        if o.waiters:
            for w in o.waiters:
                w.remaining -= 1
                if w.remaining <= 0:
                    w.event.set()
            o.waiters = None
        if o.refcount <= 0:
            self._free(o)

    def _finish(self, t: _Task) -> None:
        t.args = t.dep_objs = t.dep_refs = t.nested = None  # drop what the task held

    def _fail(self, t: _Task, error: BaseException, to_write: list) -> None:
        stack = [t]
        while stack:
            t = stack.pop()
            t.state = FINISHED
            fut, t.future = t.future, None
            if fut is not None and not fut.done():
                fut.cancel()
            self._finish(t)
            for o in t.outs:
                o.state, o.error = FAILED, error
                if o.escaped:
                    to_write.append(o)
                deps, o.dependents = o.dependents, None
                self._wake(o)
                for d in deps or ():
                    if d.state == WAITING:
                        stack.append(d)

    def _free(self, o: _Obj) -> None:
        if self._objs.pop(o.id, None) is not None and o.loc is not None:
            key = o.loc.get("key")
            if key and self.eager_delete:
                try:
                    self.store.delete(key)
                except Exception as exc:  # freed bytes are garbage; never fail for them
                    log.debug("job=%s could not delete %s: %s", self.job_id, key, exc)
        o.holds = None

    def _drain_released(self) -> None:
        released = self.released
        objs = self._objs
        while released:
            try:
                oid = released.popleft()
            except IndexError:
                break
            o = objs.get(oid)
            if o is None:
                continue
            o.refcount -= 1
            if o.refcount <= 0 and o.state != PENDING:
                self._free(o)

    def _escape(self, refs: list) -> list[_Obj]:
        """Mark objects whose refs left the driver inside a value; the finished ones are
        returned so the caller writes them to the store (outside the lock)."""
        out = []
        for r in refs:
            if r.job != self.job_id:
                continue
            o = self._objs.get(r.id)
            if o is not None and not o.escaped:
                o.escaped = True
                if o.state != PENDING:
                    out.append(o)
        return out

    def _write_escaped(self, objs: list[_Obj]) -> None:
        for o in objs:
            key = keys.object_key(self.job_id, o.id)
            if o.state == FAILED:
                self.store.put(key, stored_error_frame(o.error))
            elif o.loc is not None and "inline" in o.loc:
                self.store.put(key, o.loc["inline"])

    def _record(self, t: _Task, r: TaskResult) -> None:
        s = r.stats or {}
        self.records.append((
            t.id, t.name, r.attempt, r.status, t.submit_time, s.get("start"), s.get("end"),
            s.get("duration_s"), s.get("cold_start", False), s.get("env_id"),
            s.get("memory_mb"), s.get("bytes_in", 0), s.get("bytes_out", 0),
            s.get("peak_memory_mb"), s.get("throttles", 0), s.get("backend"),
        ))

    # ---------------------------------------------------------------- retrieval
    def _check_open(self) -> None:
        if self.closed:
            raise LambdaflowError(
                "this lambdaflow runtime was shut down; call lambdaflow.init() again and "
                "resubmit (ObjectRefs of a shut-down runtime cannot be used)"
            )

    def _lookup(self, ref: ObjectRef) -> _Obj:
        if ref._rt is not self:
            raise LambdaflowError(
                f"{ref!r} belongs to a lambdaflow runtime that was shut down (or to another "
                "runtime); resubmit its task in the current runtime"
            )
        o = self._objs.get(ref.id)
        if o is None:
            raise ObjectLostError(f"{ref!r} was released and its value freed", key=ref.id)
        return o

    def wait_objects(self, refs: Sequence[ObjectRef], need: int,
                     timeout: float | None) -> list[bool]:
        """Block until ``need`` of ``refs`` are finished (READY or FAILED) or the timeout
        passes; return a done-flag per ref."""
        with self._guard:
            self._check_open()
            objs = [self._lookup(r) for r in refs]
            pending = [o for o in objs if o.state == PENDING]
            missing = need - (len(objs) - len(pending))
            w = None
            if missing > 0:
                w = _Waiter(missing)
                for o in pending:
                    if o.waiters is None:
                        o.waiters = []
                    o.waiters.append(w)
        if w is not None and not self._block(w, len(objs), need, timeout):
            with self._guard:
                for o in pending:
                    if o.waiters and w in o.waiters:
                        o.waiters.remove(w)
        with self._guard:
            self._check_open()
            return [o.state != PENDING for o in objs]

    def _block(self, w: _Waiter, total: int, need: int, timeout: float | None) -> bool:
        if not (self.progress and total > 1):
            return w.event.wait(timeout)
        from lambdaflow.runtime.progress import progress_bar

        deadline = None if timeout is None else time.monotonic() + timeout
        with progress_bar(total=need, start=need - w.remaining) as bar:
            while True:
                step = 0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic()))
                done = w.event.wait(step)
                bar.update_to(need - max(w.remaining, 0))
                if done:
                    return True
                if deadline is not None and time.monotonic() >= deadline:
                    return False

    def get(self, refs: Sequence[ObjectRef], timeout: float | None) -> list:
        done = self.wait_objects(refs, len(refs), timeout)
        if not all(done):
            left = done.count(False)
            raise GetTimeoutError(
                f"get() timed out after {timeout}s: {left} of {len(refs)} objects not ready"
            )
        with self._guard:
            objs = [self._lookup(r) for r in refs]
        values = []
        for o in objs:
            if o.state == FAILED:
                raise o.error
            loc = o.loc
            data = loc.get("inline")
            if data is None:
                data = self.store.get(loc["key"])
            values.append(serialization.loads(data))
        return values

    def cancel(self, ref: ObjectRef) -> bool:
        with self._guard:
            o = self._lookup(ref)
            t = o.task
            if t is None or t.state == FINISHED:
                return False
            label = f"{t.name}[{t.id}]"
            to_write: list[_Obj] = []
            self._fail(t, TaskCancelledError(f"task {label} was cancelled", task=label), to_write)
        self._write_escaped(to_write)
        return True

    # ---------------------------------------------------------------- lifecycle
    def stats_records(self) -> list[dict]:
        return [dict(zip(RECORD_FIELDS, r)) for r in list(self.records)]

    def close(self) -> None:
        with self._guard:
            self.closed = True
            objs = list(self._objs.values())
            self._objs.clear()
        for o in objs:  # wake anyone still blocked in get()/wait()
            if o.waiters:
                for w in o.waiters:
                    w.event.set()
