"""Scheduler unit tests with a ten-line synchronous backend (no threads, no processes):
the DAG logic alone."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from lambdaflow import serialization
from lambdaflow.errors import TaskCancelledError, TaskError, WorkerCrashedError
from lambdaflow.runtime import keys
from lambdaflow.runtime.refs import ObjectRef
from lambdaflow.runtime.scheduler import Scheduler
from lambdaflow.runtime.store.memory import MemoryStore
from lambdaflow.runtime.task import CRASH, DepSlot, TaskMessage, failure
from lambdaflow.runtime.worker import run_task

OPTS = {"name": "f", "max_retries": 3, "retry_exceptions": False, "num_returns": 1, "wire": {}}


class SyncBackend:
    """Runs each task at once, or holds it until ``release()`` when ``hold`` is set."""

    name = "sync"
    eager_delete = True

    def __init__(self, hold: bool = False, crash_first: int = 0) -> None:
        self.store = MemoryStore()
        self.hold = hold
        self.crash_first = crash_first
        self.held: list[tuple[TaskMessage, Future]] = []
        self.ran: list[str] = []

    def submit(self, msg: TaskMessage) -> Future:
        fut: Future = Future()
        if self.hold:
            self.held.append((msg, fut))
        else:
            self._run(msg, fut)
        return fut

    def _run(self, msg: TaskMessage, fut: Future) -> None:
        if not fut.set_running_or_notify_cancel():
            return
        self.ran.append(msg.task_id)
        if self.crash_first > 0:
            self.crash_first -= 1
            fut.set_result(failure(msg.task_id, msg.attempt, CRASH, "simulated crash"))
        else:
            fut.set_result(run_task(msg, self.store))

    def release(self) -> None:
        held, self.held = self.held, []
        for msg, fut in held:
            self._run(msg, fut)

    def release_all(self) -> None:
        while self.held:
            self.release()

    def shutdown(self) -> None:
        pass


def make(backend=None):
    backend = backend or SyncBackend()
    sched = Scheduler(backend, "job-test", inline_limit=1024)
    return sched, backend


def submit(sched, fn, *args, opts=OPTS):
    digest, data = serialization.dumps_function(fn)
    key = keys.function_key(sched.job_id, digest)
    sched.ensure_function(key, data)
    deps = [a for a in args if isinstance(a, ObjectRef)]
    slots, i = [], 0
    for a in args:
        if isinstance(a, ObjectRef):
            slots.append(DepSlot(i))
            i += 1
        else:
            slots.append(a)
    frame = serialization.dumps_bytes((tuple(slots), {}))
    return sched.submit(opts["name"], key, sched.new_task_id(), frame, None, deps, [], opts)


def test_dispatch_when_last_dependency_ready():
    sched, be = make(SyncBackend(hold=True))
    a = submit(sched, lambda: 1)[0]
    b = submit(sched, lambda: 2)[0]
    c = submit(sched, lambda x, y: x + y, a, b)[0]
    assert len(be.held) == 2  # c waits
    be.release()
    assert [m.task_id for m, _ in be.held] == [c.id]  # dispatched once both are done
    be.release()
    assert sched.get([c], timeout=1) == [3]
    assert be.ran[-1] == c.id


def test_long_chain_does_not_recurse():
    sched, _ = make()
    ref = submit(sched, lambda: 0)[0]
    for _ in range(3000):  # a synchronous backend completes inside submit
        ref = submit(sched, lambda x: x + 1, ref)[0]
    assert sched.get([ref], timeout=5) == [3000]


def test_failure_propagates_without_running_dependents():
    sched, be = make()

    def boom():
        raise KeyError("nope")

    bad = submit(sched, boom)[0]
    child = submit(sched, lambda x: x, bad)[0]
    grandchild = submit(sched, lambda x: x, child)[0]
    with pytest.raises(KeyError):
        sched.get([grandchild], timeout=1)
    with pytest.raises(TaskError):
        sched.get([child], timeout=1)
    assert be.ran == [bad.id]


def test_crash_retried_then_succeeds_and_only_that_task_reruns():
    sched, be = make(SyncBackend(crash_first=2))
    a = submit(sched, lambda: 5)[0]
    b = submit(sched, lambda x: x * 2, a)[0]
    assert sched.get([b], timeout=1) == [10]
    assert be.ran == [a.id, a.id, a.id, b.id]
    attempts = [r["attempt"] for r in sched.stats_records() if r["task_id"] == a.id]
    assert attempts == [0, 1, 2]


def test_crash_exhausts_max_retries():
    sched, be = make(SyncBackend(crash_first=10))
    a = submit(sched, lambda: 5, opts=dict(OPTS, max_retries=1))[0]
    with pytest.raises(WorkerCrashedError, match="simulated crash"):
        sched.get([a], timeout=1)
    assert be.ran == [a.id, a.id]


def test_cancel_waiting_task_never_runs():
    sched, be = make(SyncBackend(hold=True))
    a = submit(sched, lambda: 1)[0]
    b = submit(sched, lambda x: x, a)[0]
    assert sched.cancel(b)
    be.release()
    with pytest.raises(TaskCancelledError):
        sched.get([b], timeout=1)
    assert b.id not in be.ran


def test_cancel_dispatched_but_queued_task():
    sched, be = make(SyncBackend(hold=True))
    a = submit(sched, lambda: 1)[0]
    assert sched.cancel(a)
    be.release()  # its future was cancelled: the backend skips it
    assert be.ran == []


def test_released_objects_are_freed():
    sched, be = make()
    big = submit(sched, lambda: b"x" * 5000)[0]  # above inline_limit: in the store
    assert sched.get([big], timeout=1) == [b"x" * 5000]
    key = keys.object_key(sched.job_id, big.id)
    assert be.store.exists(key)
    del big
    submit(sched, lambda: 0)  # releases are drained on the next scheduler call
    assert not be.store.exists(key)
    assert len(sched._objs) == 1


def test_object_kept_while_a_dependent_needs_it():
    sched, be = make(SyncBackend(hold=True))
    a = submit(sched, lambda: b"y" * 5000)[0]
    b = submit(sched, lambda x: len(x), a)[0]
    a_id = a.id
    del a
    be.release()  # runs a; b becomes ready and is held
    assert a_id in sched._objs
    be.release()
    assert sched.get([b], timeout=1) == [5000]
    submit(sched, lambda: 0)
    assert a_id not in sched._objs


def test_wait_objects_partial():
    sched, be = make(SyncBackend(hold=True))
    a = submit(sched, lambda: 1)[0]
    done = sched.wait_objects([a], 1, timeout=0.01)
    assert done == [False]
    be.release()
    assert sched.wait_objects([a], 1, timeout=1) == [True]
