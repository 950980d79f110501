"""The threads backend (backends/threads.py): values shared read-only without copies,
exit() as a crash of its thread, soft timeouts, and slot release while tasks wait."""

from __future__ import annotations

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
