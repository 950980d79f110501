"""The conformance suite: the whole public API and its error semantics, run on every
backend (the ``rt`` fixture is parametrized over them in conftest.py)."""

from __future__ import annotations

import inspect
import threading

import numpy as np
import pytest

import lambdaflow as lf
from tests.conformance import helpers as h


def test_remote_returns_ref_and_get_value(rt):
    ref = h.add.remote(1, 2)
    assert isinstance(ref, lf.ObjectRef)
    assert lf.get(ref) == 3


def test_get_list_keeps_order(rt):
    refs = [h.add.remote(i, 1) for i in range(20)]
    assert lf.get(refs) == [i + 1 for i in range(20)]
    assert lf.get(tuple(refs[:2])) == [1, 2]
    assert lf.get([]) == []


def test_keyword_and_positional_refs_are_dependencies(rt):
    a = h.add.remote(1, 1)
    b = h.add.remote(a, b=a)
    c = h.add.remote(b, b=h.add.remote(a, 10))
    assert lf.get([a, b, c]) == [2, 4, 16]


def test_nested_refs_pass_through_as_refs(rt):
    x = h.add.remote(1, 2)
    y = lf.put(10)
    assert lf.get(h.is_ref.remote([x])) is True
    assert lf.get(h.is_ref.remote(x)) is False
    # get() inside a task resolves nested refs, also of tasks still running
    slow = h.sleep_then.remote(5, 0.3)
    assert lf.get(h.nested_get.remote([x, y, slow])) == 18


def test_map(rt):
    refs = h.identity.map(range(5))
    assert lf.get(refs) == list(range(5))


def test_options_view_and_num_returns(rt):
    a, b = h.split.remote(21)
    assert lf.get([a, b]) == [21, 42]
    view = h.add.options(max_retries=0, name="plus")
    assert lf.get(view.remote(2, 3)) == 5
    with pytest.raises(TypeError, match="valid options"):
        h.add.options(bogus=1)


def test_direct_call_is_type_error_naming_remote(rt):
    with pytest.raises(TypeError, match=r"add\.remote\(\)"):
        h.add(1, 2)


def test_put_and_large_values(rt):
    arr = np.arange(300_000, dtype=np.float64)  # 2.4 MB: goes through the store
    ref = lf.put(arr)
    assert lf.get(h.array_sum.remote(ref)) == float(arr.sum())
    big = lf.get(h.make_array.remote(200_000, 3.0))
    assert big.shape == (200_000,) and big[0] == 3.0
    if rt.backend_name == "threads":
        # Values are shared in memory, never copied: arrays are read-only, as in Ray.
        assert not big.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            lf.get(h.writable.remote(ref))
    else:
        assert big.flags.writeable
        out = lf.get(h.writable.remote(ref))
        assert out[0] == 1.0
    assert lf.get(ref)[0] == 0.0  # the task got its own copy, or could not write
    arr[0] = 5.0
    assert lf.get(ref)[0] == 0.0  # put() took a copy: later writes do not show


def test_array_dependencies_and_reduce(rt):
    parts = [h.make_array.remote(50_000, float(i)) for i in range(6)]
    while len(parts) > 1:
        pairs = [h.add_arrays.remote(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
        parts = pairs + ([parts[-1]] if len(parts) % 2 else [])
    assert lf.get(parts[0])[0] == sum(range(6))


def test_task_exception_is_taskerror_and_original_class(rt):
    ref = h.fail.remote("kaput")
    with pytest.raises(h.CustomError) as info:
        lf.get(ref)
    err = info.value
    assert isinstance(err, lf.TaskError)
    assert isinstance(err.cause, h.CustomError)
    text = str(err)
    assert "kaput" in text and "Traceback" in text
    # The user's file, line and source line, on every backend (Lambda has no such file).
    src, first = inspect.getsourcelines(h.fail._fn)
    line = first + next(i for i, s in enumerate(src) if "raise CustomError" in s)
    assert f'helpers.py", line {line}, in fail' in text
    assert "raise CustomError(message)" in text
    with pytest.raises(ValueError, match="bad value"):
        lf.get(h.raise_value_error.remote())


def test_exception_with_unusual_constructor(rt):
    with pytest.raises(lf.TaskError) as info:
        lf.get(h.fail_weird.remote())
    assert isinstance(info.value, h.WeirdArgsError)
    assert info.value.cause.code == 7


def test_dependents_of_failed_task_fail_without_running(rt, tmp_path):
    marker = tmp_path / "ran"
    bad = h.fail.remote("upstream")
    child = h.record_run.remote(str(marker), bad)
    grandchild = h.add.remote(child, 1)
    for ref in (child, grandchild):
        with pytest.raises(h.CustomError, match="upstream"):
            lf.get(ref)
    assert not marker.exists()
    # a dependent submitted after the failure also fails at once
    with pytest.raises(lf.TaskError):
        lf.get(h.add.remote(bad, 1))


def test_retry_exceptions(rt, tmp_path):
    path = str(tmp_path / "count")
    ok = h.flaky.options(max_retries=2, retry_exceptions=True).remote(path, 2)
    assert lf.get(ok) == 2
    path2 = str(tmp_path / "count2")
    listed = h.flaky.options(max_retries=3, retry_exceptions=[h.CustomError]).remote(path2, 1)
    assert lf.get(listed) == 1
    path3 = str(tmp_path / "count3")
    with pytest.raises(h.CustomError):  # exceptions are not retried by default
        lf.get(h.flaky.remote(path3, 1))
    assert open(path3).read() == "x"
    path4 = str(tmp_path / "count4")
    with pytest.raises(h.CustomError):  # a non-matching class is not retried
        lf.get(h.flaky.options(max_retries=3, retry_exceptions=[KeyError]).remote(path4, 1))
    assert open(path4).read() == "x"


def test_get_timeout(rt):
    ref = h.sleep_then.remote(1, 1.5)
    with pytest.raises(lf.GetTimeoutError) as info:
        lf.get(ref, timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert lf.get(ref) == 1


def test_wait(rt):
    fast = h.add.remote(1, 1)
    slow = h.sleep_then.remote(2, 1.0)
    lf.get(fast)
    ready, not_ready = lf.wait([slow, fast], num_returns=1, timeout=5)
    assert ready == [fast] and not_ready == [slow]
    ready, not_ready = lf.wait([slow, fast], num_returns=2)
    assert ready == [slow, fast] and not_ready == []
    s2 = h.sleep_then.remote(3, 1.0)
    ready, not_ready = lf.wait([s2], timeout=0.01)
    assert ready == [] and not_ready == [s2]
    failed = h.fail.remote()
    ready, _ = lf.wait([failed])
    assert ready == [failed]  # a failed task counts as finished


def test_wait_bad_input(rt):
    a = h.add.remote(1, 1)
    with pytest.raises(ValueError, match="duplicate"):
        lf.wait([a, a])
    with pytest.raises(ValueError):
        lf.wait([a], num_returns=0)
    with pytest.raises(ValueError):
        lf.wait([a], num_returns=2)
    with pytest.raises(TypeError):
        lf.wait(a)


def test_get_of_non_ref_is_type_error(rt):
    with pytest.raises(TypeError, match="ObjectRef"):
        lf.get(3)
    with pytest.raises(TypeError):
        lf.get([h.add.remote(1, 1), "x"])


def test_cancel_queued_task(rt, tmp_path):
    marker = tmp_path / "ran"
    gate = h.sleep_then.remote(0, 1.0)
    queued = h.record_run.remote(str(marker), gate)  # waits for gate: still queued
    assert lf.cancel(queued) is True
    with pytest.raises(lf.TaskCancelledError):
        lf.get(queued)
    with pytest.raises(lf.TaskCancelledError):
        lf.get(h.add.remote(queued, 1))
    lf.get(gate)
    assert not marker.exists()
    assert lf.cancel(gate) is False  # already finished


def test_unpicklable_closure_fails_at_remote(rt):
    lock = threading.Lock()

    @lf.remote
    def uses_lock(x):
        with lock:
            return x

    with pytest.raises(TypeError) as info:
        uses_lock.remote(1)
    assert "uses_lock" in str(info.value) and "lock" in str(info.value)


def test_unpicklable_argument_fails_at_remote(rt):
    with pytest.raises(TypeError, match="argument #0"):
        h.identity.remote(threading.Lock())


def test_closures_and_lambdas_ship(rt):
    k = 5

    @lf.remote
    def scaled(x):
        return x * k

    assert lf.get(scaled.remote(2)) == 10
    f = lf.remote(lambda x: x - 1)
    assert lf.get(f.remote(1)) == 0


def test_many_tasks_and_chain(rt):
    ref = h.add.remote(0, 0)
    for _ in range(50):
        ref = h.add.remote(ref, 1)
    assert lf.get(ref) == 50
    assert sum(lf.get([h.add.remote(i) for i in range(300)])) == sum(range(300))
