"""Tasks that call the API (issue 12, items 1, 2 and 4): recursion, fan-out, wait on the
first of several subtasks, put, borrowed refs, and slot release so that nesting wider or
deeper than the pool never deadlocks. Run on every backend (lambda: against the
emulator, where a task's subtasks are invoked by the task itself)."""

from __future__ import annotations

import gc

import pytest

import lambdaflow as lf
from tests.conformance import helpers as h

LONG = 180  # seconds: a generous bound for get(), so a deadlock fails instead of hanging


def fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def test_recursive_tasks(rt):
    n = 4 if rt.backend_name == "lambda" else 9  # 9: 109 tasks on 2 workers
    assert lf.get(h.fib.remote(n), timeout=LONG) == fib(n)


def test_nesting_deeper_than_the_pool(rt):
    # A chain of 7 tasks, each blocked on the next, on 2 workers (8 environments).
    assert lf.get(h.depth_chain.remote(6), timeout=LONG) == 6


def test_dynamic_fan_out(rt):
    assert lf.get(h.fan_out.remote(20), timeout=LONG) == sum(range(1, 21))


def test_wait_for_the_first_of_several_inside_a_task(rt):
    value, ready, not_ready = lf.get(h.first_of.remote([5.0, 0.0, 5.0]), timeout=LONG)
    assert (value, ready, not_ready) == (1, 1, 2)


def test_put_inside_a_task_outlives_the_task(rt):
    box = lf.get(h.put_inside.remote({"answer": 41}), timeout=LONG)
    gc.collect()
    assert lf.get(box[0], timeout=LONG) == {"answer": 41}


def test_refs_to_subtasks_returned_by_a_task(rt):
    refs = lf.get(h.submit_inside.remote(10), timeout=LONG)
    assert lf.get(refs, timeout=LONG) == [11, 12]


def test_fair_queueing_of_nested_tasks(rt):
    # Each top() waits for middle(), which waits for leaf(): with every slot taken by
    # top()s, nothing would ever finish unless blocked tasks give their slots back.
    n = 6 if rt.backend_name == "lambda" else 60
    ready, not_ready = lf.wait([h.top.remote() for _ in range(n)], num_returns=n,
                               timeout=LONG)
    assert len(ready) == n and not_ready == []


def test_a_ref_inside_a_result_keeps_its_object(rt):
    x = lf.put(1)
    r = h.identity.remote([x])
    del x
    gc.collect()
    assert lf.get(lf.get(r, timeout=LONG)[0], timeout=LONG) == 1
    y = h.add.remote(1, 1)
    r2 = h.identity.remote([y])
    del y
    gc.collect()
    assert lf.get(lf.get(r2, timeout=LONG)[0], timeout=LONG) == 2


@pytest.mark.parametrize("which", ["stale", "foreign"])
def test_stale_or_foreign_ref_in_an_argument_fails_fast(rt, which):
    ref = (lf.ObjectRef("t-never-made", rt.job_id) if which == "stale"
           else lf.ObjectRef("t0", "job-of-someone-else"))
    # The task would wait 60 s for a ref that never comes; it must fail at once.
    out = lf.get(h.get_with_timeout.remote([ref], 60), timeout=LONG)
    assert out.startswith("ObjectLostError"), out


def test_blocked_time_is_counted(rt, tmp_path):
    path, started = str(tmp_path / "waiter-started"), str(tmp_path / "slow-started")
    # running elsewhere before the waiter starts (else the waiter may run it inline, and
    # is then never blocked), and cannot finish before the waiter starts
    slow = h.started_then_value_when.remote(started, path, "slow")
    h.wait_for_file(started)
    assert lf.get(h.mark_then_get.remote(path, [slow]), timeout=LONG) == "slow"
    records = [r for r in lf.stats().records if r["name"].endswith("mark_then_get")]
    assert records[-1]["blocked_s"] > 0
    assert lf.stats().summary()["blocked_s"] > 0


def test_deep_nesting_on_lambda_raises_concurrency_limit(rt):
    if rt.backend_name != "lambda":
        pytest.skip("only Lambda environments are held while their tasks wait")
    # max_concurrency is 8: a chain of 12 waiting tasks cannot hold 12 environments.
    with pytest.raises(lf.ConcurrencyLimitError, match="max_concurrency=8"):
        lf.get(h.depth_chain.remote(12), timeout=LONG)
