"""TaskThreads (backends/pool.py): growth to ``size`` on bursts (issue 12 item 3), never
more than ``size`` active, growth past it only while tasks are blocked, inline serving,
shutdown, and a task that ends its worker."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from lambdaflow.runtime.backends.pool import PENDING_MARK, Attempt, TaskThreads, WorkerExit
from lambdaflow.runtime.dagstate import Reply
from lambdaflow.runtime.task import CRASH, OK, TaskMessage, TaskResult, failure


def msg(task_id: str, name: str = "t") -> TaskMessage:
    return TaskMessage(job_id="job", task_id=task_id, name=name, fn_key="fn")


class Runner:
    """``run`` for the pool: a task named "slow" waits for ``release``, "quick" returns
    at once, "exit" ends its worker; it records how many run at the same time."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running = self.peak = 0

    def __call__(self, m: TaskMessage) -> TaskResult:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            if m.name == "slow":
                self.release.wait(30)
            elif m.name == "exit":
                raise WorkerExit(failure(m.task_id, 0, CRASH, "exit()"))
            return TaskResult(m.task_id, 0, OK)
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def runner():
    r = Runner()
    yield r
    r.release.set()


def test_a_quick_task_behind_a_slow_one_gets_a_thread(runner):
    # The repro: after one quick task the pool has one idle thread; a burst of
    # slow + quick used to be served by that thread alone.
    pool = TaskThreads(8, runner, "t")
    pool.submit(msg("a", "quick")).result(timeout=5)
    pool.submit(msg("b", "slow"))
    quick = pool.submit(msg("c", "quick"))
    assert quick.result(timeout=5).status == OK
    pool.shutdown()


def test_a_burst_is_served_by_size_threads_and_no_more(runner):
    pool = TaskThreads(4, runner, "t")
    futs = [pool.submit(msg(f"s{i}", "slow")) for i in range(10)]
    deadline = time.monotonic() + 10
    while runner.running < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert runner.running == 4 and pool.counts["threads"] == 4
    runner.release.set()
    assert all(f.result(timeout=10).status == OK for f in futs)
    assert runner.peak == 4


def test_a_blocked_waiter_lets_the_pool_grow_and_runs_its_producer(runner):
    pool = TaskThreads(1, runner, "t")
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    reply = Reply()
    served = []

    def waiter(_m: TaskMessage) -> TaskResult:
        # A task that waits for task "p": it runs it inline if still queued.
        inbox.put(PENDING_MARK)
        threading.Timer(0.3, lambda: reply.set("done")).start()
        ok = pool.serve(["p"], reply, inbox, 10, served.append)
        return TaskResult("w", 0, OK if ok else "error")

    pool._run = lambda m: waiter(m) if m.name == "waiter" else runner(m)
    w = pool.submit(msg("w", "waiter"))
    other = pool.submit(msg("o", "quick"))  # the waiter is blocked: a thread starts for it
    assert other.result(timeout=5).status == OK
    assert w.result(timeout=5).status == OK
    assert served and served[0] > 0  # it was blocked for a while
    pool.shutdown()


def test_serve_runs_the_awaited_task_inline():
    pool = TaskThreads(1, lambda m: TaskResult(m.task_id, 0, OK, stats={
        "thread": threading.current_thread().name}), "t")
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    reply = Reply()
    ended: list = []
    with pool._lock:  # queue "p" without waking a thread: only the waiter can run it
        pool._by_task["p"] = Attempt(msg("p"), lambda a, r, e: ended.append((r, e)), None)
    threading.Timer(0.2, lambda: reply.set(True)).start()
    assert pool.serve(["p"], reply, inbox, 5, lambda s: None, pool_thread=False)
    [(result, exc)] = ended
    assert exc is None and result.stats["thread"] == threading.current_thread().name
    pool.shutdown()


def test_serve_times_out():
    pool = TaskThreads(1, lambda m: TaskResult(m.task_id, 0, OK), "t")
    assert not pool.serve(["nothing"], Reply(), queue.SimpleQueue(), 0.05, lambda s: None)
    pool.shutdown()


def test_shutdown_cancels_what_has_not_started(runner):
    pool = TaskThreads(1, runner, "t")
    first = pool.submit(msg("a", "slow"))
    queued = pool.submit(msg("b", "quick"))
    time.sleep(0.1)
    pool.shutdown()
    assert queued.cancelled()
    runner.release.set()
    assert first.result(timeout=5).status == OK
    with pytest.raises(Exception, match="shut down"):
        pool.submit(msg("c"))


def test_a_task_that_ends_its_worker(runner):
    pool = TaskThreads(2, runner, "t")
    assert pool.submit(msg("x", "exit")).result(timeout=5).status == CRASH
    assert pool.submit(msg("y", "quick")).result(timeout=5).status == OK  # a new thread
    pool.shutdown()


def test_start_reports_each_end_to_its_callback_on_the_thread_that_ran_it(runner):
    pool = TaskThreads(2, runner, "t")
    ended: queue.SimpleQueue = queue.SimpleQueue()

    def done(attempt, result, exc):
        ended.put((attempt, result, exc, threading.current_thread().name))

    a = pool.start(msg("a", "quick"), done, tag="mine")
    attempt, result, exc, where = ended.get(timeout=5)
    assert attempt is a and attempt.tag == "mine" and result.status == OK and exc is None
    assert where.startswith("t-") and a.done()
    pool._run = lambda m: 1 / 0  # run itself fails: the exception is reported
    pool.start(msg("b"), done)
    _, result, exc, _ = ended.get(timeout=5)
    assert result is None and isinstance(exc, ZeroDivisionError)
    pool.shutdown()


def test_a_cancelled_attempt_never_runs_nor_reports(runner):
    pool = TaskThreads(1, runner, "t")
    ended: list = []
    pool.start(msg("slow", "slow"), lambda *a: ended.append(a))  # holds the only thread
    queued = pool.start(msg("q", "quick"), lambda *a: ended.append(a))
    assert queued.cancel() and queued.cancel()  # idempotent
    assert queued.done()  # as a cancelled Future is
    runner.release.set()
    after = pool.submit(msg("after", "quick"))  # FIFO: runs after the cancelled one
    assert after.result(timeout=5).status == OK
    assert [a[0].msg.task_id for a in ended] == ["slow"]
    assert runner.peak == 1
    pool.shutdown()


def test_an_abandoned_task_frees_its_slot_and_its_thread_leaves_after_it(runner):
    pool = TaskThreads(1, runner, "t")
    slow = pool.submit(msg("a", "slow"))
    deadline = time.monotonic() + 10
    while runner.running < 1:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert pool.abandon("a") is True
    assert pool.abandon("a") is False  # once
    assert pool.submit(msg("b", "quick")).result(timeout=5).status == OK
    assert runner.peak == 2  # the quick task ran beside the abandoned one
    runner.release.set()
    assert slow.result(timeout=5).status == OK
    while pool.counts != {"threads": 1, "idle": 1, "blocked": 0, "queued": 0}:
        assert time.monotonic() < deadline, pool.counts
        time.sleep(0.005)
    assert pool.abandon("a") is False  # ended: nothing to abandon
    pool.shutdown()
