"""TaskFuture (runtime/futures.py) behaves as concurrent.futures.Future does, including
with the module's own wait() and as_completed(), which reach into _condition/_waiters."""

from __future__ import annotations

import threading
from concurrent import futures

import pytest

from lambdaflow.runtime.futures import TaskFuture


def test_result_callbacks_and_states():
    f = TaskFuture()
    seen = []
    f.add_done_callback(lambda x: seen.append(x.result()))
    assert f.set_running_or_notify_cancel()
    f.set_result(5)
    assert f.result() == 5 and seen == [5] and f._cond is None  # nobody waited: no Condition
    assert f.done() and not f.running()
    f.add_done_callback(lambda x: seen.append("late"))  # runs at once
    assert seen == [5, "late"]
    with pytest.raises(futures.InvalidStateError):
        f.set_result(6)


def test_exception_cancel_and_timeout():
    f = TaskFuture()
    f.set_exception(KeyError("k"))
    with pytest.raises(KeyError):
        f.result()
    assert isinstance(f.exception(), KeyError)
    g = TaskFuture()
    assert g.cancel() and g.cancelled() and not g.set_running_or_notify_cancel()
    with pytest.raises(futures.CancelledError):
        g.result()
    h = TaskFuture()
    with pytest.raises(futures.TimeoutError):
        h.result(timeout=0.01)


def test_a_blocked_result_is_woken():
    f = TaskFuture()
    threading.Timer(0.05, lambda: f.set_result("late")).start()
    assert f.result(timeout=5) == "late"


def test_works_with_wait_and_as_completed():
    fs = [TaskFuture() for _ in range(3)]
    threading.Timer(0.05, lambda: fs[1].set_result(1)).start()
    done, not_done = futures.wait(fs, timeout=5, return_when=futures.FIRST_COMPLETED)
    assert done == {fs[1]} and len(not_done) == 2
    threading.Timer(0.05, lambda: (fs[0].set_result(0), fs[2].set_exception(OSError()))).start()
    assert sorted(id(f) for f in futures.as_completed(fs, timeout=5)) == sorted(map(id, fs))


def test_a_future_in_flight_allocates_no_lists_it_does_not_use():
    """Each GC-tracked object in flight is rescanned by every collection (a processes
    burst keeps ~20k futures queued): a future with one callback and no waiter is three
    (itself, its lock, its callbacks' list), not four: the waiters' list is made only by
    wait() / as_completed()."""
    import gc

    gc.collect()
    gc.disable()
    try:
        before = len(gc.get_objects())
        fs = []
        for _ in range(1000):
            f = TaskFuture()
            f.add_done_callback(len)
            fs.append(f)
        per_future = (len(gc.get_objects()) - before - 1) / len(fs)  # (-1: the list fs)
    finally:
        gc.enable()
    assert per_future <= 3.01, per_future
    for f in fs:
        f.set_result(1)
    assert all(f._cbs is None and f._w is None for f in fs)
    done, _ = futures.wait(fs[:3])  # wait() still reaches _waiters
    assert len(done) == 3
