"""The threads backend (backends/threads.py): values shared read-only without copies,
exit() as a crash of its thread, soft timeouts, and slot release while tasks wait."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

import lambdaflow as lf


@lf.remote
def make(n):
    return np.full(n, 7.0)


@lf.remote
def same(a):
    return a


@lf.remote
def address(a):
    return a.ctypes.data


@lf.remote
def leave():
    raise SystemExit(2)


@lf.remote
def nap(s):
    time.sleep(s)
    return s


@lf.remote
def wait_all(n):
    return sum(lf.get([nap.remote(0.2) for _ in range(n)]))


@pytest.fixture
def threads(fresh):
    with lf.init(backend="threads", num_workers=2) as rt:
        yield rt


def test_values_are_shared_not_copied(threads):
    a = make.remote(1_000_000)
    first = lf.get(a)
    assert not first.flags.writeable
    assert lf.get(address.remote(a)) == first.ctypes.data  # the task got the same memory
    assert lf.get(a).ctypes.data == first.ctypes.data
    with pytest.raises(ValueError, match="read-only"):
        first[0] = 1.0
    small = lf.get(make.remote(10))  # small values too: the same rule at every size
    assert not small.flags.writeable


def test_exit_is_a_crash_of_its_thread(threads):
    with pytest.raises(lf.WorkerCrashedError, match="exit"):
        lf.get(leave.options(max_retries=0).remote())
    assert lf.get(nap.remote(0)) == 0  # the pool replaced the thread


def test_timeout_is_soft(threads):
    with pytest.raises(lf.TaskTimeoutError, match="timeout_s=0.2"):
        lf.get(nap.options(timeout_s=0.2).remote(2))


def test_waiting_tasks_give_their_thread_back(threads):
    # Three tasks, each waiting for four subtasks, on two threads.
    refs = [wait_all.remote(4) for _ in range(3)]
    assert lf.get(refs, timeout=60) == [pytest.approx(0.8)] * 3
    pool = threads.backend.pool
    assert pool.counts["blocked"] == 0


@lf.remote(max_retries=0)
def spin_until(path):
    """Runs until ``path`` exists (a task that ignores cancellation)."""
    import os

    open(path + ".started", "w").close()
    while not os.path.exists(path):
        time.sleep(0.01)
    return "spun"


def test_force_cancel_of_a_running_task_gives_its_slot_back(fresh, tmp_path):
    """Before: the cancelled task's thread kept the pool's only slot until the task
    returned by itself, so every later task waited for it (Ray frees the CPU on
    cancel(force=True): a running-forever task must not starve the rest)."""
    gate = str(tmp_path / "gate")
    with lf.init(backend="threads", num_workers=1) as rt:
        pool = rt.backend.pool
        stuck = spin_until.remote(gate)
        deadline = time.monotonic() + 30
        while not (tmp_path / "gate.started").exists():
            assert time.monotonic() < deadline, "the task never started"
            time.sleep(0.01)
        assert lf.cancel(stuck, force=True) is True
        with pytest.raises(lf.TaskCancelledError):
            lf.get(stuck, timeout=30)
        # The stuck task still runs (a thread cannot be stopped), yet a later task runs.
        assert lf.get(nap.remote(0), timeout=30) == 0
        assert not (tmp_path / "gate").exists()
        assert pool.counts["blocked"] == 1  # the abandoned thread holds no slot
        open(gate, "w").close()  # let the stuck task end: its thread counts again
        while pool.counts["blocked"] or pool.counts["threads"] > 1:
            assert time.monotonic() < deadline, pool.counts
            time.sleep(0.01)
        with pytest.raises(lf.TaskCancelledError):  # its late result stays dropped
            lf.get(stuck, timeout=1)
        assert lf.get([nap.remote(0) for _ in range(4)], timeout=30) == [0] * 4


def test_force_cancel_of_a_queued_or_finished_task_abandons_nothing(threads):
    assert lf.get(nap.remote(0)) == 0
    pool = threads.backend.pool
    assert pool.abandon("no-such-task") is False
    assert pool.counts["blocked"] == 0


@lf.remote
def thread_after(x, gate_s=0.0):
    if gate_s:
        time.sleep(gate_s)
    import threading

    return threading.current_thread().name


@lf.remote
def native_id_after(seconds):
    import threading

    time.sleep(seconds)
    return threading.get_native_id()


@lf.remote
def spawn_and_watch(path):
    """Submit a subtask that writes ``path`` and, without waiting on its ref, watch for the
    file while this task still runs."""
    touch.remote(path)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.01)
    return False


@lf.remote
def touch(path):
    with open(path, "w"):
        pass


def _switches(tid: int) -> int:
    """The kernel's count of voluntary context switches (it blocked) of thread ``tid``."""
    with open(f"/proc/self/task/{tid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return int(fields["voluntary_ctxt_switches"])  # (blocking; not preemption)


def test_a_chain_runs_on_the_thread_that_finished_each_hop(threads):
    """The pool's hand-off to self: each hop is dispatched while the previous one's end is
    reported on its pool thread, which then runs it, and no other thread is woken
    (counted from the kernel's context switches of the pool's threads; without it the
    idle thread woke for every hop, >= 100 here). The first task waits, so the whole
    chain is submitted before any hop ends."""

    pool = set(lf.get([native_id_after.remote(0.2) for _ in range(2)]))  # both threads
    assert len(pool) == 2
    ref = thread_after.remote(0, 0.3)
    refs = [ref]
    for _ in range(100):
        ref = thread_after.remote(ref)
        refs.append(ref)
    lf.get(refs[0], timeout=30)  # the chain starts now
    before = sum(_switches(tid) for tid in pool)
    ran_on = lf.get(refs[1:], timeout=60)
    woke = sum(_switches(tid) for tid in pool) - before
    assert len(set(ran_on)) == 1, ran_on
    assert woke < 10, f"the pool's threads blocked {woke} times in a chain of 100 hops"


def test_a_fan_out_still_uses_every_thread(threads):
    """Only the first task queued by an end stays on its thread; the others wake idle
    threads as before."""
    gate = nap.remote(0.1)
    names = lf.get([thread_after.remote(gate, 0.3) for _ in range(2)], timeout=30)
    assert len(set(names)) == 2, names


def test_a_running_tasks_own_subtask_is_not_kept_for_its_thread(threads, tmp_path):
    """A subtask queued while its parent *runs* goes to an idle thread at once: the
    hand-off to self is only for tasks queued while an end is reported."""
    assert lf.get(spawn_and_watch.remote(str(tmp_path / "done")), timeout=30)
