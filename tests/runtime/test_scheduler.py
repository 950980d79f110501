"""Scheduler unit tests with a small synchronous backend (no threads of its own, no
processes): the DAG logic alone. Commands run on the caller's thread; ref drops are
applied by the scheduler's thread, so a test that counts them waits for it to go quiet
(``quiesce``) first."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from lambdaflow import serialization
from lambdaflow.errors import (
    BackendError,
    LambdaflowError,
    ObjectLostError,
    TaskCancelledError,
    TaskError,
    WorkerCrashedError,
)
from lambdaflow.runtime import keys, values
from lambdaflow.runtime.backends.pool import Attempt
from lambdaflow.runtime.dagstate import ObjState
from lambdaflow.runtime.options import TaskOptions
from lambdaflow.runtime.refs import ObjectRef
from lambdaflow.runtime.scheduler import Scheduler
from lambdaflow.runtime.store.memory import MemoryStore
from lambdaflow.runtime.task import CRASH, DepSlot, TaskMessage, TaskSpec, failure
from lambdaflow.runtime.worker import run_task

OPTS = TaskOptions(name="f", max_retries=3)


class SyncBackend:
    """Runs each task at once inside ``submit``, or holds it until ``release()``."""

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

    def release(self, sched: Scheduler) -> None:
        sched.quiesce()
        held, self.held = self.held, []
        for msg, fut in held:
            self._run(msg, fut)
        sched.quiesce()

    def shutdown(self) -> None:
        pass


@pytest.fixture
def make():
    made = []

    def make(backend=None, **kw):
        backend = backend or SyncBackend()
        sched = Scheduler(backend, "job-test", store=backend.store, inline_limit=1024, **kw)
        made.append(sched)
        return sched, backend

    yield make
    for s in made:
        s.close()


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
    spec = TaskSpec(sched.new_id(), key, opts, frame, None, [d.id for d in deps])
    return sched.submit(spec)


def put(sched, value):
    oid = sched.new_id("p")
    loc, holds = values.place(sched.store, sched.job_id, oid, value, sched.inline_limit)
    return sched.put(oid, loc, holds)


def state(sched, oid):
    sched.quiesce()  # the ref drops queued so far
    return sched._run(lambda: sched._dag.objs[oid].state if oid in sched._dag.objs else None)


def test_dispatch_when_last_dependency_ready(make):
    sched, be = make(SyncBackend(hold=True))
    a = submit(sched, lambda: 1)[0]
    b = submit(sched, lambda: 2)[0]
    c = submit(sched, lambda x, y: x + y, a, b)[0]
    sched.quiesce()
    assert len(be.held) == 2  # c waits
    be.release(sched)
    assert [m.task_id for m, _ in be.held] == [c.id]  # dispatched once both are done
    be.release(sched)
    assert sched.get([c], timeout=5) == [3]
    assert be.ran[-1] == c.id


def test_long_chain_does_not_recurse(make):
    sched, _ = make()
    ref = submit(sched, lambda: 0)[0]
    for _ in range(3000):  # a synchronous backend completes inside submit
        ref = submit(sched, lambda x: x + 1, ref)[0]
    assert sched.get([ref], timeout=30) == [3000]


def test_failure_propagates_without_running_dependents(make):
    sched, be = make()

    def boom():
        raise KeyError("nope")

    bad = submit(sched, boom)[0]
    child = submit(sched, lambda x: x, bad)[0]
    grandchild = submit(sched, lambda x: x, child)[0]
    with pytest.raises(KeyError):
        sched.get([grandchild], timeout=5)
    with pytest.raises(TaskError):
        sched.get([child], timeout=5)
    assert be.ran == [bad.id]


def test_crash_retried_then_succeeds_and_only_that_task_reruns(make):
    sched, be = make(SyncBackend(crash_first=2))
    a = submit(sched, lambda: 5)[0]
    b = submit(sched, lambda x: x * 2, a)[0]
    assert sched.get([b], timeout=5) == [10]
    assert be.ran == [a.id, a.id, a.id, b.id]
    attempts = [r["attempt"] for r in sched.stats_records() if r["task_id"] == a.id]
    assert attempts == [0, 1, 2]


def test_crash_exhausts_max_retries(make):
    sched, be = make(SyncBackend(crash_first=10))
    a = submit(sched, lambda: 5, opts=TaskOptions(name="f", max_retries=1))[0]
    with pytest.raises(WorkerCrashedError, match="simulated crash"):
        sched.get([a], timeout=5)
    assert be.ran == [a.id, a.id]


def test_cancel_waiting_task_never_runs(make):
    sched, be = make(SyncBackend(hold=True))
    a = submit(sched, lambda: 1)[0]
    b = submit(sched, lambda x: x, a)[0]
    c = submit(sched, lambda x: x, b)[0]  # depends on the cancelled one: cancelled too
    assert sched.cancel(b)
    be.release(sched)
    with pytest.raises(TaskCancelledError):
        sched.get([b], timeout=5)
    with pytest.raises(TaskCancelledError):
        sched.get([c], timeout=5)
    assert b.id not in be.ran and c.id not in be.ran
    assert not sched.cancel(a)  # finished: nothing to cancel


def test_cancel_dispatched_but_queued_task(make):
    sched, be = make(SyncBackend(hold=True))
    a = submit(sched, lambda: 1)[0]
    assert sched.cancel(a)
    be.release(sched)  # its future was cancelled: the backend skips it
    assert be.ran == []


def test_released_objects_are_freed(make):
    sched, be = make()
    big = submit(sched, lambda: b"x" * 5000)[0]  # above inline_limit: in the store
    assert sched.get([big], timeout=5) == [b"x" * 5000]
    key = keys.object_key(sched.job_id, big.id)
    assert be.store.exists(key)
    oid = big.id
    del big
    sched.quiesce()
    sched._dag.io.barrier(5)
    assert not be.store.exists(key)
    assert state(sched, oid) is None


def test_object_kept_while_a_dependent_needs_it(make):
    sched, be = make(SyncBackend(hold=True))
    a = submit(sched, lambda: b"y" * 5000)[0]
    b = submit(sched, lambda x: len(x), a)[0]
    a_id = a.id
    del a
    be.release(sched)  # runs a; b becomes ready and is held
    assert state(sched, a_id) is ObjState.READY
    be.release(sched)
    assert sched.get([b], timeout=5) == [5000]
    sched.quiesce()
    sched._dag.io.barrier(5)
    # b's result is in memory (it cannot be lost), so nothing keeps a's lineage
    assert not be.store.exists(keys.object_key(sched.job_id, a_id))
    assert state(sched, a_id) is None


def test_lineage_pins_the_inputs_of_a_stored_result(make):
    sched, be = make()
    a = submit(sched, lambda: b"a" * 5000)[0]
    b = submit(sched, lambda x: x * 2, a)[0]  # 10 kB: in the store, so it may be lost
    a_id = a.id
    assert len(sched.get([b], timeout=5)[0]) == 10000
    del a
    sched.quiesce()
    sched._dag.io.barrier(5)
    assert not be.store.exists(keys.object_key(sched.job_id, a_id))  # a's value is gone...
    assert state(sched, a_id) is ObjState.RELEASED  # ...its record stays: b's lineage
    del b
    sched.quiesce()
    sched.quiesce()
    assert state(sched, a_id) is None


def test_a_pinned_value_in_memory_stands_in_for_its_lineage(make):
    sched, be = make()
    a = submit(sched, lambda: b"a" * 100)[0]  # inline: never lost, so no lineage
    b = submit(sched, lambda x: x * 100, a)[0]  # in the store: keeps lineage, pins a
    assert len(sched.get([b], timeout=5)[0]) == 10000
    del a
    sched.quiesce()
    assert state(sched, b.id) is ObjState.READY
    be.store.delete(keys.object_key(sched.job_id, b.id))
    assert len(sched.get([b], timeout=5)[0]) == 10000  # rebuilt from a's kept value
    assert be.ran.count(b.id) == 2 and len(be.ran) == 3


def test_wait_partial_and_timeout(make):
    sched, be = make(SyncBackend(hold=True))
    a = submit(sched, lambda: 1)[0]
    assert sched.wait([a], 1, timeout=0.01) == [False]
    be.release(sched)
    assert sched.wait([a], 1, timeout=5) == [True]


def test_refs_in_a_value_keep_their_objects(make):
    sched, be = make()
    inner = put(sched, b"z" * 5000)
    outer = put(sched, [inner])
    inner_id = inner.id
    del inner
    sched.quiesce()
    assert state(sched, inner_id) is ObjState.READY  # held by outer's value
    box = sched.get([outer], timeout=5)[0]
    assert sched.get(box, timeout=5) == [b"z" * 5000]
    del box, outer
    sched.quiesce()
    sched.quiesce()
    assert state(sched, inner_id) is None


def test_borrowing_owner_keeps_objects_until_it_drops(make):
    sched, be = make()
    worker = object()
    sched.borrow(worker, [])  # an owner with nothing yet
    sched.put_located("pw-1", {"inline": serialization.dumps_bytes(7), "size": 8}, [], worker)
    sched.quiesce()
    assert state(sched, "pw-1") is ObjState.READY
    sched.release(worker, ["pw-1"])
    sched.quiesce()
    assert state(sched, "pw-1") is None
    sched.put_located("pw-2", {"inline": serialization.dumps_bytes(8), "size": 8}, [], worker)
    sched.drop_owner(worker)  # the worker process died: every borrow ends
    sched.quiesce()
    assert state(sched, "pw-2") is None


def test_stale_dependency_fails_the_task_without_running(make):
    sched, be = make()
    stale = ObjectRef("t999", "job-test", sched)
    sched._run(sched._dag.add_ref, "t999")  # it is counted, but unknown
    ref = submit(sched, lambda x: x, stale)[0]
    with pytest.raises(ObjectLostError, match="does not have"):
        sched.get([ref], timeout=5)
    assert be.ran == []


def test_lost_object_is_rebuilt_from_lineage(make):
    sched, be = make()
    a = submit(sched, lambda: b"a" * 5000)[0]
    b = submit(sched, lambda x: x + b"b" * 5000, a)[0]
    assert len(sched.get([b], timeout=5)[0]) == 10000
    del a  # a's value is freed, but b's lineage keeps its record
    sched.quiesce()
    be.store.delete(keys.object_key(sched.job_id, b.id))  # b's bytes vanish
    assert len(sched.get([b], timeout=5)[0]) == 10000  # b runs again, and a before it
    assert be.ran.count(b.id) == 2 and len(be.ran) == 4


def test_put_object_lost_raises(make):
    sched, be = make()
    p = put(sched, b"p" * 5000)
    be.store.delete(keys.object_key(sched.job_id, p.id))
    with pytest.raises(ObjectLostError, match="put"):
        sched.get([p], timeout=5)


def test_rebuilds_stay_within_max_retries(make):
    sched, be = make()
    a = submit(sched, lambda: b"a" * 5000, opts=TaskOptions(name="f", max_retries=1))[0]
    key = keys.object_key(sched.job_id, a.id)
    sched.get([a], timeout=5)
    be.store.delete(key)
    sched.get([a], timeout=5)  # attempt 1: rebuilt
    be.store.delete(key)
    with pytest.raises(ObjectLostError, match="max_retries=1"):
        sched.get([a], timeout=5)


def test_lineage_is_bounded(make):
    sched, be = make(max_lineage_bytes=3000)  # room for about four tasks' lineage
    ref = submit(sched, lambda: 0)[0]
    first = ref.id
    for _ in range(20):
        ref = submit(sched, lambda x: x + 1, ref)[0]
    assert sched.get([ref], timeout=5) == [20]
    sched.quiesce()
    sched.quiesce()
    kept = sched._run(lambda: (len(sched._dag.lineage), sched._dag.lineage_bytes))
    assert kept[0] <= 5 and kept[1] <= 3000
    assert state(sched, first) is None  # evicted: nothing pins the first input any more


def test_closed_scheduler_refuses_work(make):
    sched, be = make()
    sched.close()
    with pytest.raises(LambdaflowError, match="shut down"):
        submit(sched, lambda: 1)


class StartingBackend(SyncBackend):
    """SyncBackend with ``start_attempt``: attempts report through the callback (the threads
    backend's path), held ones as pool Attempts that ``cancel`` skips."""

    def __init__(self, hold: bool = False, crash_first: int = 0, fail_start: bool = False):
        super().__init__(hold, crash_first)
        self.fail_start = fail_start
        self.submitted = 0

    def submit(self, msg: TaskMessage) -> Future:
        self.submitted += 1
        return super().submit(msg)

    def start_attempt(self, msg: TaskMessage, done, tag) -> Attempt:
        if self.fail_start:
            raise BackendError("no room for the task")
        attempt = Attempt(msg, done, tag)
        if self.hold:
            self.held.append(attempt)
        else:
            self._start(attempt)
        return attempt

    def _start(self, attempt: Attempt) -> None:
        if not attempt.begin():
            return
        msg = attempt.msg
        self.ran.append(msg.task_id)
        if self.crash_first > 0:
            self.crash_first -= 1
            attempt.end(failure(msg.task_id, msg.attempt, CRASH, "simulated crash"), None)
        else:
            attempt.end(run_task(msg, self.store), None)

    def release(self, sched: Scheduler) -> None:
        sched.quiesce()
        held, self.held = self.held, []
        for attempt in held:
            self._start(attempt)
        sched.quiesce()


def test_a_backend_with_start_attempt_reports_by_callback_not_future(make):
    sched, be = make(StartingBackend(crash_first=1))
    a = submit(sched, lambda: 20)[0]  # crashes once, retried
    b = submit(sched, lambda x: x + 1, a)[0]
    assert sched.get([b], timeout=10) == [21]
    assert be.submitted == 0 and be.ran.count(a.id) == 2
    assert [r["status"] for r in sched.stats_records()] == ["crash", "ok", "ok"]


def test_cancel_of_a_started_but_queued_attempt(make):
    sched, be = make(StartingBackend(hold=True))
    a = submit(sched, lambda: 1)[0]
    sched.quiesce()
    assert sched.cancel(a)
    be.release(sched)  # its attempt was cancelled: the backend skips it
    assert be.ran == []
    with pytest.raises(TaskCancelledError):
        sched.get([a], timeout=10)


def test_a_start_attempt_that_raises_fails_the_task_as_the_backends_error(make):
    sched, be = make(StartingBackend(fail_start=True))
    a = submit(sched, lambda: 1)[0]
    with pytest.raises(BackendError, match="no room"):
        sched.get([a], timeout=10)


def test_a_wrapper_that_forwards_start_attempt_but_defines_submit_keeps_futures(make):
    inner = StartingBackend()

    class Wrapper:  # as tests/faults wraps a backend: only submit is its own
        def __getattr__(self, name):
            return getattr(inner, name)

        def submit(self, msg):
            return inner.submit(msg)

    sched, _ = make(Wrapper())
    assert sched.get([submit(sched, lambda: 2)[0]], timeout=10) == [2]
    assert inner.submitted == 1


# ------------------------------------------------------------------ the lock
def test_a_report_inside_a_command_is_a_follow_up_so_a_long_chain_never_recurses(make):
    """A backend that completes every task inside ``submit`` (after the first, held): each
    completion arrives on the thread running the command that dispatched it. 3,000 hops
    (three times the recursion limit) must run as follow-ups, one after the other."""
    import sys

    sched, be = make(SyncBackend(hold=True))
    refs = [submit(sched, lambda: 0)[0]]
    for _ in range(3 * sys.getrecursionlimit()):
        refs.append(submit(sched, lambda x: x + 1, refs[-1])[0])
    be.hold = False
    be.release(sched)  # the first ends: the rest run inside it, each in turn
    assert sched.get([refs[-1]], timeout=30) == [len(refs) - 1]
    assert len(be.ran) == len(refs)


def test_a_command_inside_a_command_raises_instead_of_deadlocking(make):
    sched, _ = make()
    ref = submit(sched, lambda: 1)[0]
    with pytest.raises(RuntimeError, match="inside another command"):
        sched._run(lambda: sched.cancel(ref))
    assert sched.get([ref], timeout=10) == [1]  # the lock was released


def test_a_chain_on_threads_is_dispatched_by_pool_threads_not_the_scheduler_thread():
    """The end of a task and the dispatch of the next one run on the pool thread that saw
    the end: the scheduler thread (which only applies ref drops) does not wake during a
    chain whose refs all stay alive. Counted from the kernel's context switches of that
    thread; before, every submit and every completion woke it (>= 2 per hop)."""
    import lambdaflow as lf

    def switches(tid: int) -> int:
        with open(f"/proc/self/task/{tid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["voluntary_ctxt_switches"])  # (blocking; not preemption)

    @lf.remote
    def inc(x):
        return x + 1

    hops = 300
    with lf.init(backend="threads", num_workers=2) as rt:
        assert lf.get(inc.remote(0)) == 1  # warm: threads started
        tid = rt.scheduler._thread.native_id
        before = switches(tid)
        refs = [inc.remote(0)]
        for _ in range(hops):
            refs.append(inc.remote(refs[-1]))
        assert lf.get(refs[-1], timeout=60) == hops + 1
        woke = switches(tid) - before
    assert woke < hops // 10, f"the scheduler thread woke {woke} times in {hops} hops"
