"""The client of an owner: the API calls served by a scheduler in this process.

Three places own objects and serve the API with their own scheduler: the driver
(``api.Runtime``), a task on the threads backend (the driver's scheduler, with the
task's thread giving its slot back while it waits: ``backends/threads.py``), and a task
on Lambda (its nested runtime: ``backends/lambda_nested.py``). They share this class;
the processes backend's tasks use a pipe client instead (``process_client.py``).

``wait_hooks`` is the one point a subclass changes: what a caller does while it waits
for the scheduler's answer (default: nothing but wait).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lambdaflow.errors import LambdaflowError, ObjectLostError
from lambdaflow.runtime import calls, values
from lambdaflow.runtime.calls import FunctionHandle
from lambdaflow.runtime.context import Remote
from lambdaflow.runtime.dagstate import Reply
from lambdaflow.runtime.refs import ObjectRef
from lambdaflow.runtime.scheduler import Scheduler
from lambdaflow.runtime.store.base import Store
from lambdaflow.runtime.task import TaskSpec

WaitFn = Callable[[Reply, "float | None"], bool]
#: TaskSpec.deps / .nested of a call without refs: one shared list, never mutated (each
#: list a queued task holds is one more object for the cyclic GC to scan)
_NO_IDS: list[str] = []


class OwnerClient:
    def __init__(self, scheduler: Scheduler, store: Store, *, inline_limit: int,
                 max_retries: int, share: bool, task_prefix: str = "t",
                 put_prefix: str = "p") -> None:
        self.scheduler = scheduler
        self.store = store
        self.job_id = scheduler.job_id
        self.inline_limit = inline_limit
        self.max_retries = max_retries
        self.share = share  # threads: values stay in memory, shared read-only
        self._task_prefix = task_prefix
        self._put_prefix = put_prefix

    # ------------------------------------------------------------------ Client
    def submit(self, remote: Remote, args: tuple, kwargs: dict) -> list[ObjectRef]:
        opts = remote.task_options(self.max_retries)
        handle = remote.handle
        handle.check_call(args, kwargs)
        job, fn_key = handle.stored_key  # (the common case without a call)
        if job != self.job_id:
            fn_key = self.function_key(handle)
        chunks, deps, nested = calls.encode_call(opts.name, args, kwargs)
        for r in deps:
            self.own(r)
        self.before_submit()
        task_id = self.scheduler.new_id(self._task_prefix)
        inline, args_key = calls.place_args(chunks, self.store, self.job_id, task_id,
                                            self.inline_limit, opts.name)
        spec = TaskSpec(task_id, fn_key, opts, inline, args_key,
                        [r.id for r in deps] if deps else _NO_IDS,
                        [r.id for r in nested if r.job == self.job_id] if nested else _NO_IDS)
        return self.scheduler.submit(spec)

    def get(self, refs: Sequence[ObjectRef], timeout: float | None) -> list:
        for r in refs:
            self.own(r)
        wait, pending = self.wait_hooks(refs, inline=True)
        return self.scheduler.get(refs, timeout, wait, pending)

    def wait(self, refs: Sequence[ObjectRef], num_returns: int,
             timeout: float | None) -> list[bool]:
        for r in refs:
            self.own(r)
        wait, pending = self.wait_hooks(refs, inline=num_returns >= len(refs))
        return self.scheduler.wait(refs, num_returns, timeout, wait, pending)

    def put(self, value: Any) -> ObjectRef:
        oid = self.scheduler.new_id(self._put_prefix)
        loc, holds = values.place(self.store, self.job_id, oid, value, self.inline_limit,
                                  share="copy" if self.share else None)
        return self.scheduler.put(oid, loc, holds)

    def cancel(self, ref: ObjectRef, force: bool) -> bool:
        self.own(ref)
        return self.scheduler.cancel(ref, force)

    # ------------------------------------------------------------- for subclasses
    def wait_hooks(self, refs: Sequence[ObjectRef], inline: bool
                   ) -> tuple[WaitFn | None, Callable[[], None] | None]:
        """(how to wait for the scheduler's Reply, what to do when the wait starts).
        ``inline``: the caller needs every one of ``refs`` (a get), so it may run their
        queued tasks itself; a ``wait`` for fewer must not (the first to finish might be
        one that others run meanwhile)."""
        return None, None

    def before_submit(self) -> None:
        """Called before each submission (a nested runtime checks its limits)."""

    def own(self, ref: ObjectRef) -> None:
        if ref._rt is not self.scheduler:
            if ref._rt is None:
                raise ObjectLostError(
                    f"{ref!r} has no live runtime here: it belongs to another job or "
                    "runtime, or was made in another process", key=ref.id)
            raise LambdaflowError(
                f"{ref!r} belongs to a lambdaflow runtime that was shut down (or to another "
                "runtime); resubmit its task in the current runtime")

    def function_key(self, handle: FunctionHandle) -> str:
        return handle.key_for(self.job_id, self.scheduler.ensure_function)
