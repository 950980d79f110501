"""Nesting against pools of one worker (issue 12 item 2): a getter waiting for a ref
queued behind it, and recursion deeper than the pool. Each test starts its own runtime
(the shared ``rt`` has two workers)."""

from __future__ import annotations

import pytest

import lambdaflow as lf
from tests.conformance import helpers as h
from tests.conformance.test_nested import LONG, fib
from tests.conftest import start_runtime


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_getter_waiting_for_a_ref_queued_behind_it(backend, request, fresh):
    # One worker: gate runs first; getter is queued behind it; x becomes ready only
    # after gate, so it is queued behind the getter, which is waiting for it.
    with start_runtime(backend, request, num_workers=1):
        gate = h.sleep_then.remote(1, 0.3)
        x = h.add.remote(gate, 1)
        getter = h.get_behind.remote([x])
        assert lf.get(getter, timeout=LONG) == 2


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_recursion_deeper_than_a_small_pool(backend, request, fresh):
    with start_runtime(backend, request, num_workers=1):
        assert lf.get(h.depth_chain.remote(6), timeout=LONG) == 6
        assert lf.get(h.fib.remote(7), timeout=LONG) == fib(7)
