"""Tasks that submit tasks on Lambda: a nested runtime inside the task, which owns what
the task submits (as in Ray, where the submitting worker owns its children).

A Lambda worker cannot be reached by the driver, so a task's API calls cannot go up to
it. Instead ``NestedClient`` (the client ``run_task`` gives every Lambda task) starts, on
the task's first call, a nested runtime: a ``Scheduler`` over a ``LambdaBackend`` built
from the settings the task message carries (``nested["lambda"]``: function name,
bucket, prefix, region, endpoints, max_concurrency; never the driver's credentials: the
worker signs with its own role's). Children are invoked by the worker itself::

    task (environment A) ── f.remote() ──> nested Scheduler ──> NestedBackend queue
         │ get(): runs queued children inline in A;              │ up to ``limit`` at
         │ else waits, holding A (a paid environment)            v once
         │                                              LambdaBackend.invoke ──> B, C ...
         └─ returns: the objects its result refers to are finished and written to S3
            under their object keys (``export``); every child has ended (``close``)

The driver then reads those objects by key: it registers the ids reported in the result
as objects its nested owner exported. Refs the task got from its caller (arguments and
values) are read from S3 by key: those the message lists as known are waited for until
they appear; a stale or foreign one fails at once with ObjectLostError.

Costs, stated in docs/DESIGN.md: a blocked parent keeps its environment (billed while it
waits: ``blocked_s`` in its stats); at most ``limit = max_concurrency - depth - 1``
children of one task are in flight; a chain deeper than ``max_concurrency`` is refused
with ``ConcurrencyLimitError``, and so is a wait on children that stay throttled (429)
for ``nested_patience_s`` while nothing finishes, instead of waiting forever.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from lambdaflow import config as config_mod
from lambdaflow.errors import (
    ConcurrencyLimitError,
    GetTimeoutError,
    LambdaflowError,
    ObjectLostError,
)
from lambdaflow.runtime import keys, refs, values
from lambdaflow.runtime.backends.pool import PENDING_MARK, TaskThreads
from lambdaflow.runtime.context import OwningClient, Remote, current_context
from lambdaflow.runtime.dagstate import Reply
from lambdaflow.runtime.owner import OwnerClient, WaitFn
from lambdaflow.runtime.refs import ObjectRef
from lambdaflow.runtime.scheduler import Scheduler
from lambdaflow.runtime.store.base import Store
from lambdaflow.runtime.store.signed import SignedStore
from lambdaflow.runtime.task import TaskMessage, TaskResult

if TYPE_CHECKING:
    from lambdaflow.runtime.backends.aws_lambda import LambdaBackend

log = logging.getLogger(__name__)
DEFAULT_PATIENCE_S = 10.0
_BACKENDS: dict[tuple, LambdaBackend] = {}  # per (settings, job) in a warm environment
_BACKENDS_KEPT = 4
_BACKENDS_LOCK = threading.Lock()
_POLL_MAX_S = 0.5


def _lambda_backend(settings: dict, job_id: str, job_key: bytes | None) -> LambdaBackend:
    """The warm environment's LambdaBackend for these settings and this job: its store is
    signed under the job's key (what it spills, the children read through
    ``integrity.task_store``). The last few jobs' backends are kept warm; older ones are
    shut down."""
    key = (tuple(sorted((k, str(v)) for k, v in settings.items())), job_id)
    with _BACKENDS_LOCK:
        backend = _BACKENDS.pop(key, None)
        if backend is None:
            from lambdaflow.runtime.backends.aws_lambda import LambdaBackend

            class _InWorker(LambdaBackend):
                def _check(self) -> None:
                    """No version ping: this worker is the function it would ping, and
                    a ping (one more environment) would be throttled exactly when the
                    parents waiting for their children use the concurrency up."""

            fields = set(config_mod.Config.valid_names())
            cfg = config_mod.Config(backend="lambda", stats_path="", **{
                k: v for k, v in settings.items() if k in fields})
            backend = _InWorker(cfg, job_id)
            if job_key is not None:
                backend.store = SignedStore(backend.store, job_key)  # type: ignore[assignment]
        _BACKENDS[key] = backend  # most recently used last
        while len(_BACKENDS) > _BACKENDS_KEPT:
            _BACKENDS.pop(next(iter(_BACKENDS))).shutdown()
        return backend


class NestedBackend:
    """A claimable queue in front of a LambdaBackend: children wait here until one of
    ``limit`` invoker slots is free, so that a parent that waits for one still queued
    runs it itself (``serve``) instead of holding a second environment for it."""

    name = "lambda"
    eager_delete = False

    def __init__(self, inner: LambdaBackend, limit: int) -> None:
        self.inner = inner
        self.store = inner.store  # signed under the job's key (_lambda_backend)
        self.pool = TaskThreads(limit, self._invoke, "lambdaflow-nested")

    def _invoke(self, msg: TaskMessage) -> TaskResult:
        return self.inner.submit(msg).result()

    def run_here(self, msg: TaskMessage) -> TaskResult:
        """Run a claimed child in this environment (its parent waits for it)."""
        from lambdaflow.runtime.worker import run_task

        result = run_task(msg, self.store)
        result.stats["backend"] = "lambda"
        return result

    def submit(self, msg: TaskMessage) -> Future:
        return self.pool.submit(msg)

    def shutdown(self) -> None:
        self.pool.shutdown()


class _NestedOwner(OwnerClient):
    """The nested runtime's client: depth checked at submit; waits run queued children
    inline and watch for endless throttling."""

    def __init__(self, parent: NestedClient, scheduler: Scheduler, backend: NestedBackend,
                 settings: dict, depth: int) -> None:
        prefix = f"{parent.message.task_id}a{parent.message.attempt}_"
        super().__init__(scheduler, parent.store,
                         inline_limit=int(settings.get("inline_limit", 64 * 1024)),
                         max_retries=int(parent.message.nested.get("max_retries", 3)),
                         share=False, task_prefix=prefix, put_prefix="p" + prefix)
        self.prefix = prefix
        self.backend = backend
        self.depth = depth
        self.max_concurrency = int(settings.get("max_concurrency", 1))
        self.patience_s = float(settings.get("nested_patience_s", DEFAULT_PATIENCE_S))
        self._name = f"{parent.message.name}[{parent.message.task_id}]"

    def mine(self, oid: str) -> bool:
        return oid.startswith(self.prefix) or oid.startswith("p" + self.prefix)

    def before_submit(self) -> None:
        chain = self.depth + 2  # environments held by a chain of waiting tasks to the new one
        if chain > self.max_concurrency:
            raise ConcurrencyLimitError(
                f"task {self._name} at nesting depth {self.depth} cannot submit a task: a "
                f"chain of {chain} tasks each waiting for the next needs {chain} Lambda "
                f"environments at once, beyond max_concurrency={self.max_concurrency} "
                "(a task blocked in get() keeps its environment). Raise max_concurrency "
                "(and the function's reserved concurrency), or nest less deeply")

    def wait_hooks(self, refs_: Sequence[ObjectRef], inline: bool
                   ) -> tuple[WaitFn | None, Callable[[], None] | None]:
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        task_ids = {keys.task_of(r.id) for r in refs_} if inline else set()
        pending_at: list[float] = []
        ctx = current_context()
        sched, inner, pool = self.scheduler, self.backend.inner, self.backend.pool

        def wait(reply: Reply, timeout: float | None) -> bool:
            deadline = None if timeout is None else time.monotonic() + timeout
            throttles, seen, progress_at = inner.throttles, len(sched.records), time.monotonic()
            try:
                while True:
                    left = None if deadline is None else deadline - time.monotonic()
                    step = 1.0 if left is None else max(0.0, min(1.0, left))
                    if pool.serve(task_ids, reply, inbox, step, lambda s: None,
                                  pool_thread=False, run=self.backend.run_here):
                        return True
                    now = time.monotonic()
                    if deadline is not None and now >= deadline:
                        return False
                    if len(sched.records) != seen:
                        seen, progress_at = len(sched.records), now
                    elif inner.throttles > throttles and now - progress_at > self.patience_s:
                        raise ConcurrencyLimitError(
                            f"task {self._name} waits for tasks it submitted, but they "
                            f"cannot start: invocations are throttled (429) and nothing "
                            f"finished for {self.patience_s:.0f} s. Every task blocked in "
                            "get() holds its Lambda environment, so a tree of waiting "
                            f"tasks can use up max_concurrency={self.max_concurrency}. "
                            "Raise the function's reserved concurrency and max_concurrency, "
                            "or pass refs to a final task instead of waiting in tasks")
            finally:
                if pending_at and ctx is not None:
                    ctx.blocked_s += time.perf_counter() - pending_at[0]

        def pending() -> None:
            pending_at.append(time.perf_counter())
            inbox.put(PENDING_MARK)

        return wait, pending


class NestedClient(OwningClient):
    """The client of a task on Lambda (see the module docstring). Costs nothing until
    the task calls the API."""

    def __init__(self, message: TaskMessage, store: Store) -> None:
        self.message = message
        self.store = store
        self.job_id = message.job_id
        self.known: dict[str, str] = dict(message.refs)  # remote refs: id -> state
        self._owner: _NestedOwner | None = None
        self._prev = refs.LIVE_JOBS.get(message.job_id)
        refs.LIVE_JOBS[message.job_id] = self._resolve

    # ------------------------------------------------------------------ owner
    def _own(self) -> _NestedOwner:
        if self._owner is None:
            settings = dict(self.message.nested.get("lambda") or {})
            depth = int(self.message.nested.get("depth", 0))
            limit = max(1, int(settings.get("max_concurrency", 1)) - depth - 1)
            backend = NestedBackend(
                _lambda_backend(settings, self.job_id, self.message.job_key), limit)
            nested = {"depth": depth + 1,
                      "max_retries": self.message.nested.get("max_retries", 3),
                      "lambda": settings}
            sched = Scheduler(backend, self.job_id, store=self.store,
                              inline_limit=int(settings.get("inline_limit", 64 * 1024)),
                              eager_delete=False, export=True, nested=nested,
                              max_lineage_bytes=int(settings.get("max_lineage_bytes",
                                                                 64 * 1024 * 1024)),
                              name="lambdaflow-nested", known=self.known,
                              job_key=self.message.job_key)
            self._owner = _NestedOwner(self, sched, backend, settings, depth)
        return self._owner

    def _resolve(self, oid: str) -> ObjectRef:
        """``refs.LIVE_JOBS`` while the task runs: its own objects are counted by its
        nested scheduler; any other is a remote ref, read from the store by key."""
        owner = self._owner
        if owner is not None and owner.mine(oid):
            return owner.scheduler.counted_ref(oid)
        self.known.setdefault(oid, "pending")
        return ObjectRef(oid, self.job_id, None)

    # ------------------------------------------------------------------ Client
    def submit(self, remote: Remote, args: tuple, kwargs: dict) -> list[ObjectRef]:
        return self._own().submit(remote, args, kwargs)

    def put(self, value: Any) -> ObjectRef:
        return self._own().put(value)

    def cancel(self, ref: ObjectRef, force: bool) -> bool:
        if ref._rt is None:
            raise LambdaflowError(
                f"{ref!r} was submitted by another task or the driver: a Lambda task can "
                "cancel only the tasks it submitted itself")
        return self._own().cancel(ref, force)

    def get(self, refs_: Sequence[ObjectRef], timeout: float | None) -> list:
        deadline = None if timeout is None else time.monotonic() + timeout
        mine = [r for r in refs_ if r._rt is not None]
        got = dict(zip((r.id for r in mine), self._own().get(mine, timeout))) if mine else {}
        return [got[r.id] if r._rt is not None else self._remote(r, deadline) for r in refs_]

    def wait(self, refs_: Sequence[ObjectRef], num_returns: int,
             timeout: float | None) -> list[bool]:
        if all(r._rt is not None for r in refs_):
            return self._own().wait(refs_, num_returns, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay, t0 = 0.01, time.perf_counter()
        try:
            while True:
                flags = [self._ready(r) for r in refs_]
                if sum(flags) >= num_returns or (deadline is not None
                                                 and time.monotonic() >= deadline):
                    return flags
                time.sleep(delay)
                delay = min(delay * 2, _POLL_MAX_S)
        finally:
            self._blocked(time.perf_counter() - t0)

    def _ready(self, ref: ObjectRef) -> bool:
        if ref._rt is not None:
            return self._own().wait([ref], 1, 0)[0]
        self._check_remote(ref)
        return self.store.exists(keys.object_key(ref.job, ref.id))

    def _check_remote(self, ref: ObjectRef) -> None:
        state = self.known.get(ref.id) if ref.job == self.job_id else None
        if state != "pending":
            raise ObjectLostError(
                f"{ref!r} is not an object this task can read: it was freed, or belongs "
                "to another job or runtime", key=ref.id)

    def _remote(self, ref: ObjectRef, deadline: float | None) -> Any:
        """A value owned by the caller (or its owner): poll for its key, then read it."""
        self._check_remote(ref)
        key = keys.object_key(ref.job, ref.id)
        delay, t0 = 0.005, time.perf_counter()
        try:
            while not self.store.exists(key):  # its task may still be running
                if deadline is not None and time.monotonic() >= deadline:
                    raise GetTimeoutError(f"{ref!r} not ready in time (inside a Lambda task)")
                time.sleep(delay)
                delay = min(delay * 2, _POLL_MAX_S)
        finally:
            self._blocked(time.perf_counter() - t0)
        return values.load(self.store, {"key": key})

    @staticmethod
    def _blocked(seconds: float) -> None:
        ctx = current_context()
        if ctx is not None and seconds > 0.001:
            ctx.blocked_s += seconds

    def _drain(self, owner: _NestedOwner) -> None:
        sched, inner = owner.scheduler, owner.backend.inner
        throttles, seen, progress_at = inner.throttles, len(sched.records), time.monotonic()
        while not sched.drain(timeout=1.0):
            now = time.monotonic()
            if len(sched.records) != seen:
                seen, progress_at = len(sched.records), now
            elif inner.throttles > throttles and now - progress_at > owner.patience_s:
                log.warning("task %s[%s] returns while tasks it submitted are still "
                            "throttled (max_concurrency=%s); they are abandoned",
                            self.message.name, self.message.task_id, owner.max_concurrency)
                return

    # -------------------------------------------------------------- ownership
    def export(self, oids: list[str]) -> None:
        owner = self._owner
        if owner is not None:
            owner.scheduler.export([oid for oid in oids if owner.mine(oid)])

    def close(self, abandon: bool = False) -> None:
        """The task ended: wait for its children (unless it failed: ``abandon``), then
        stop its nested runtime. Children that stay throttled for ``nested_patience_s``
        with nothing finishing are abandoned with a warning instead of waited for."""
        owner, self._owner = self._owner, None
        try:
            if owner is not None:
                if not abandon:
                    self._drain(owner)
                owner.scheduler.close()
                owner.backend.shutdown()
        finally:
            if self._prev is None:
                refs.LIVE_JOBS.pop(self.job_id, None)
            else:
                refs.LIVE_JOBS[self.job_id] = self._prev
