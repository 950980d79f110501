"""The DAG state machine (runtime/dag.py) driven directly, with no scheduler, lock or
thread around it: the commands are plain single-threaded calls, a backend's report is a
follow-up, and a test harness runs the follow-ups as ``Scheduler._run`` does. The values
are checked against what the functions compute (run_task runs them for real)."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from lambdaflow import serialization
from lambdaflow.errors import TaskError
from lambdaflow.runtime import keys, values
from lambdaflow.runtime.dag import Dag, _apply
from lambdaflow.runtime.dagstate import ObjState, Waiter
from lambdaflow.runtime.options import TaskOptions
from lambdaflow.runtime.store.memory import MemoryStore
from lambdaflow.runtime.task import DepSlot, TaskMessage, TaskSpec
from lambdaflow.runtime.worker import run_task

OPTS = TaskOptions(name="f", max_retries=0)


class InlineBackend:
    """Runs each task inside ``submit``, in submission order."""

    name = "inline"
    eager_delete = True

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.ran: list[str] = []

    def submit(self, msg: TaskMessage) -> Future:
        fut: Future = Future()
        fut.set_running_or_notify_cancel()
        self.ran.append(msg.task_id)
        fut.set_result(run_task(msg, self.store))
        return fut

    def shutdown(self) -> None:
        pass


class Harness:
    def __init__(self, inline_limit: int = 1024) -> None:
        self.backend = InlineBackend()
        self.dag = Dag(self.backend, "job-dag", store=self.backend.store,
                       inline_limit=inline_limit, report=self.report)
        self.ids = 0

    def report(self, fn, *args) -> None:  # as Scheduler._report inside a command
        self.dag.later.append((_apply, (fn, args)))

    def run(self, fn, *args):  # as Scheduler._run, without the lock
        out = fn(*args)
        self.dag.run_follow_ups()
        return out

    def submit(self, fn, *args) -> str:
        digest, data = serialization.dumps_function(fn)
        key = keys.function_key(self.dag.job_id, digest)
        if self.dag.remember_function(key, data):
            self.dag.store.put(key, data)
        deps = [a for a in args if isinstance(a, str)]
        slots = [DepSlot(deps.index(a)) if isinstance(a, str) else a for a in args]
        frame = serialization.dumps_bytes((tuple(slots), {}))
        self.ids += 1
        spec = TaskSpec(f"t{self.ids}", key, OPTS, frame, None, deps)
        self.run(self.dag.submit, spec, None)
        return spec.task_id

    def settled(self, oids: list[str]) -> list:
        got: list = []
        self.run(self.dag.watch, Waiter(len(oids), got.extend), oids)
        return got

    def value(self, oid: str):
        kind, loc = self.settled([oid])[0]
        if kind == "error":
            raise loc
        return values.load(self.dag.store, loc)


def test_a_diamond_runs_each_task_once_after_its_inputs():
    h = Harness()
    a = h.submit(lambda: 3)
    b = h.submit(lambda x: x * 2, a)
    c = h.submit(lambda x: x + 1, a)
    d = h.submit(lambda x, y: x * 100 + y, b, c)
    assert h.value(d) == 604
    assert h.backend.ran == [a, b, c, d]
    assert all(h.dag.objs[o].state is ObjState.READY for o in (a, b, c, d))


def test_a_failure_spreads_to_dependents_without_running_them():
    h = Harness()

    def boom():
        raise ValueError("no")

    a = h.submit(boom)
    b = h.submit(lambda x: x, a)
    with pytest.raises(TaskError, match="no"):
        h.value(b)
    assert h.backend.ran == [a]
    assert h.dag.objs[b].state is ObjState.FAILED


def test_the_last_ref_frees_a_stored_value_and_its_record():
    h = Harness(inline_limit=0)  # every value under a key of the store
    a = h.submit(lambda: b"x" * 100)
    loc = h.settled([a])[0][1]
    assert "key" in loc and h.dag.store.exists(loc["key"])
    h.run(h.dag.release_ref, a)  # the ObjectRef that submit gave out dies
    h.dag.io.barrier(5)
    assert not h.dag.store.exists(loc["key"])
    assert a not in h.dag.objs
