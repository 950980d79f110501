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
