"""The client of a task in a worker process: its API calls become requests up the
worker's pipe to the driver, which owns every object (process_wire.py has the frames).

    submit / put   fire-and-forget SUBMIT / PUT; ids are made here (``w<token>-<n>``), so
                   the refs exist at once; the driver counts this process as a borrower
                   of the new objects
    get / wait     GET, then wait on a per-request inbox for: the REPLY (where each value
                   is), BLOCKED (the wait is real: the main thread gives back its queued
                   tasks, and the time counts as blocked), INLINE tasks (what it waits
                   for, sent here to run on this thread). A get of results this process
                   made itself (subtasks come back to the worker that submitted them,
                   and a getter runs the queued ones first) needs no request at all.
    refs           a ref made in this process (unpickled, or returned by submit / put)
                   is counted here; the ref thread tells the driver when the first one
                   to an object appears (BORROW) and when the last one dies (RELEASE).
                   Releases wait for the end of the task that dropped them, so that the
                   refs inside a result reach the driver (with the result) first.
"""

from __future__ import annotations

import collections
import itertools
import pickle
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lambdaflow.errors import GetTimeoutError, LambdaflowError, ObjectLostError
from lambdaflow.runtime import calls, keys, refs, values
from lambdaflow.runtime.backends import process_wire as wire
from lambdaflow.runtime.context import Remote, current_context
from lambdaflow.runtime.refs import ObjectRef
from lambdaflow.runtime.store.base import Store
from lambdaflow.runtime.task import OK, TaskMessage, TaskResult, TaskSpec

if TYPE_CHECKING:
    from lambdaflow.runtime.backends.process_worker import Worker

_OWN, _SYNC, _TASK_END = "own", "sync", "end"
_MAX_REBUILD_WAITS = 8
_MADE_KEPT = 1024  # results of this process remembered for local gets


class PipeClient:
    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self.token = uuid.uuid4().hex[:8]
        self._ids = itertools.count()
        self._reqs: dict[int, queue.SimpleQueue] = {}
        self._stored_fns: set[str] = set()
        self._refq: queue.SimpleQueue = queue.SimpleQueue()
        self.dirty = False  # refs made or dropped since the last sync
        self._dropped = False  # refs dropped since the last task end (``task_end``)
        self.message: TaskMessage | None = None  # the latest task's (settings, store)
        #: where the values of the tasks this process ran lately are (task id -> locs)
        self._made: collections.OrderedDict[str, list[dict]] = collections.OrderedDict()
        self.store: Store | None = None
        threading.Thread(target=self._ref_loop, name="lambdaflow-refs", daemon=True).start()

    @property
    def job_id(self) -> str:
        assert self.message is not None
        return self.message.job_id

    def start_task(self, message: TaskMessage, store: Store) -> None:
        if self.message is None or self.message.job_id != message.job_id:
            refs.LIVE_JOBS.clear()
            refs.LIVE_JOBS[message.job_id] = self.counted_ref
        self.message, self.store = message, store

    # ------------------------------------------------------------------ Client
    def submit(self, remote: Remote, args: tuple, kwargs: dict) -> list[ObjectRef]:
        msg, store = self._settings()
        opts = remote.task_options(int(msg.nested.get("max_retries", 3)))
        handle = remote.handle
        handle.check_call(args, kwargs)
        digest, data = handle.pickled()
        fn_key = keys.function_key(msg.job_id, digest)
        if fn_key not in self._stored_fns:
            if not store.exists(fn_key):
                store.put(fn_key, data)
            self._stored_fns.add(fn_key)
        chunks, deps, nested = calls.encode_call(opts.name, args, kwargs)
        for r in deps:
            self._check(r)
        task_id = f"w{self.token}-{next(self._ids):x}"
        inline, args_key = calls.place_args(chunks, store, msg.job_id, task_id,
                                            msg.inline_limit, opts.name)
        spec = TaskSpec(task_id, fn_key, opts, inline, args_key, [r.id for r in deps],
                        [r.id for r in nested if r.job == msg.job_id])
        n = opts.num_returns
        oids = [keys.result_object_id(task_id, None if n == 1 else i) for i in range(n)]
        for oid in oids:
            self._refq.put((_OWN, oid))
        self._worker.send(wire.frame(wire.SUBMIT, spec.to_list()))
        return [ObjectRef(oid, msg.job_id, self) for oid in oids]

    def put(self, value: Any) -> ObjectRef:
        msg, store = self._settings()
        oid = f"pw{self.token}-{next(self._ids):x}"
        loc, holds = values.place(store, msg.job_id, oid, value, msg.inline_limit)
        self._refq.put((_OWN, oid))
        self._worker.send(wire.frame(wire.PUT, oid, loc, holds))
        return ObjectRef(oid, msg.job_id, self)

    def get(self, refs_: Sequence[ObjectRef], timeout: float | None) -> list:
        for r in refs_:
            self._check(r)
        deadline = None if timeout is None else time.monotonic() + timeout
        oids = [r.id for r in refs_]
        settled = self._request(oids, len(oids), deadline)
        out = []
        for oid, entry in zip(oids, settled):
            out.append(self._value(oid, entry, deadline))
        return out

    def wait(self, refs_: Sequence[ObjectRef], num_returns: int,
             timeout: float | None) -> list[bool]:
        for r in refs_:
            self._check(r)
        oids = [r.id for r in refs_]
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            settled = self._request(oids, num_returns, deadline)
        except GetTimeoutError:
            settled = self._request(oids, 0, None)  # the flags as they are now
        return [s is not None for s in settled]

    def cancel(self, ref: ObjectRef, force: bool) -> bool:
        self._check(ref)
        req, inbox = self._new_request()
        try:
            self._worker.send(wire.frame(wire.CANCEL, req, ref.id, force))
            return bool(inbox.get()[1])
        finally:
            self._reqs.pop(req, None)

    # ------------------------------------------------------------- requests
    def ran(self, result: TaskResult) -> None:
        """(Main thread) a task of this process finished: remember where its values are,
        so a get of them right after needs no round trip."""
        if result.status == OK:
            self._made[result.task_id] = result.values
            if len(self._made) > _MADE_KEPT:
                self._made.popitem(last=False)

    def _made_here(self, oids: list[str]) -> list | None:
        found = []
        for oid in oids:
            head, dot, tail = oid.rpartition(".")
            tid, index = (head, int(tail)) if dot and tail.isdigit() else (oid, 0)
            locs = self._made.get(tid)
            if locs is None or index >= len(locs):
                return None
            found.append(("ok", locs[index]))
        return found

    def _request(self, oids: list[str], need: int, deadline: float | None) -> list:
        """GET and wait for the answer (see the module docstring)."""
        main = self._worker.is_main_thread()
        inline = main and need >= len(oids)  # a get: it may run what it waits for itself
        if inline:
            self._worker.run_own_producers({keys.task_of(oid) for oid in oids})
            here = self._made_here(oids)
            if here is not None:
                return here
        req, inbox = self._new_request()
        ctx = current_context()
        blocked_at = None
        try:
            self._worker.send(wire.frame(wire.GET, req, oids, need, main, inline))
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                try:
                    if left is not None and left <= 0:
                        raise queue.Empty
                    kind, payload = inbox.get(timeout=left)
                except queue.Empty:
                    self._worker.send(wire.frame(wire.UNWATCH, req))
                    raise GetTimeoutError(
                        f"get() timed out after waiting: {len(oids)} objects, {need} needed "
                        "(inside a task)") from None
                if kind == wire.REPLY:
                    return [tuple(s) if s is not None else None for s in payload]
                if kind == wire.BLOCKED and main and blocked_at is None:
                    blocked_at = time.perf_counter()
                    self._worker.give_back_queue()
                elif kind == wire.INLINE:
                    self._worker.run_inline(payload)
                    here = self._made_here(oids) if inline else None
                    if here is not None:  # what we ran was all we waited for
                        self._worker.send(wire.frame(wire.UNWATCH, req))
                        return here
        finally:
            self._reqs.pop(req, None)
            if blocked_at is not None and ctx is not None:
                ctx.blocked_s += time.perf_counter() - blocked_at

    def _new_request(self) -> tuple[int, queue.SimpleQueue]:
        req = next(self._ids)
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._reqs[req] = inbox
        return req, inbox

    def deliver(self, req: int, kind: int, payload: Any) -> bool:
        """(Reader thread) an answer for request ``req``; False if nobody waits."""
        inbox = self._reqs.get(req)
        if inbox is None:
            return False
        inbox.put((kind, payload))
        return True

    def _value(self, oid: str, entry: Any, deadline: float | None) -> Any:
        for _ in range(_MAX_REBUILD_WAITS):
            kind, payload = entry
            if kind == "error":
                raise pickle.loads(payload)
            if kind == "lost":
                raise ObjectLostError(str(payload), key=oid)
            try:
                return values.load(self._settings()[1], payload)
            except ObjectLostError:
                self._worker.send(wire.frame(wire.LOST, oid, payload))
                entry = self._request([oid], 1, deadline)[0]
        raise ObjectLostError(f"object {oid} kept disappearing from the store", key=oid)

    def _settings(self) -> tuple[TaskMessage, Store]:
        ctx = current_context()
        if ctx is not None:
            return ctx.message, ctx.store
        if self.message is None or self.store is None:
            raise LambdaflowError("no task has run in this worker process yet")
        return self.message, self.store

    def _check(self, ref: ObjectRef) -> None:
        if ref._rt is not self:
            raise ObjectLostError(
                f"{ref!r} does not belong to this job's runtime (it was made by another "
                "runtime or job, or in another process)", key=ref.id)

    # ------------------------------------------------------------------ refs
    def counted_ref(self, oid: str) -> ObjectRef:
        """A ref unpickled in this process (``refs.LIVE_JOBS``)."""
        self.dirty = True
        self._refq.put((1, oid))
        return ObjectRef(oid, self.job_id, self)

    def drop_ref(self, oid: str) -> None:
        """An ObjectRef of this process died (``__del__``: reentrant-safe)."""
        self.dirty = True
        self._refq.put((-1, oid))
        self._dropped = True  # after the put: a task end that sees it comes after it

    def sync(self) -> None:
        """Wait until the driver has been told of every borrow so far (before a task's
        result is sent: its arguments' refs are held only until then)."""
        if self.dirty:
            self.dirty = False
            done = threading.Event()
            self._refq.put((_SYNC, done))
            done.wait()

    def task_end(self) -> None:
        """A task's result is logged: the releases it held back may go. Only a dropped
        ref makes a release to hold back, so without one the ref thread is not woken."""
        if self._dropped:
            self._dropped = False
            self._refq.put((_TASK_END, None))

    def _ref_loop(self) -> None:
        counts: dict[str, int] = {}
        told: set[str] = set()  # oids the driver counts this process as borrowing
        held: set[str] = set()  # told, no ref left: released at the next task end
        while True:
            batch = [self._refq.get()]
            while True:
                try:
                    batch.append(self._refq.get_nowait())
                except queue.Empty:
                    break
            borrows: list[str] = []
            releases: list[str] = []
            syncs: list[threading.Event] = []
            for op, arg in batch:
                if op == _SYNC:
                    syncs.append(arg)
                elif op == _TASK_END:
                    releases.extend(held)
                    told.difference_update(held)
                    held.clear()
                elif op == _OWN:
                    counts[arg] = counts.get(arg, 0) + 1
                    told.add(arg)
                    held.discard(arg)
                else:
                    n = counts.get(arg, 0) + op
                    if n > 0:
                        counts[arg] = n
                        if arg in held:
                            held.discard(arg)  # still told: no new borrow needed
                        elif arg not in told:
                            told.add(arg)
                            borrows.append(arg)
                    else:
                        counts.pop(arg, None)
                        if arg in told:
                            held.add(arg)
            try:
                if borrows:
                    self._worker.send(wire.frame(wire.BORROW, borrows))
                if releases:
                    self._worker.send(wire.frame(wire.RELEASE, releases))
            except OSError:
                return  # the driver is gone
            for done in syncs:
                done.set()
