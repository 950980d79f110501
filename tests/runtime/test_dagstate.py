"""The scheduler's records refuse transitions from the wrong state (runtime/dagstate.py)."""

from __future__ import annotations

import pytest

from lambdaflow.runtime.dagstate import InvalidTransition, Obj, ObjState, Reply, Task, TaskState
from lambdaflow.runtime.options import TaskOptions
from lambdaflow.runtime.task import TaskSpec


def task() -> Task:
    return Task(TaskSpec("t1", "k", TaskOptions("f", 3)), [], [], 0.0)


def test_object_life():
    o = Obj("a", None)
    o.resolve({"inline": b""}, ["b"])
    assert o.state is ObjState.READY and o.holds == ["b"]
    with pytest.raises(InvalidTransition, match="resolve"):
        o.resolve({}, None)
    o.lose()
    assert o.state is ObjState.PENDING and o.loc is None
    o.fail(KeyError("x"))
    with pytest.raises(InvalidTransition, match="lose"):
        o.lose()
    o.release()
    assert o.state is ObjState.RELEASED and o.error is None
    with pytest.raises(InvalidTransition):
        o.release()
    o.revive()
    assert o.state is ObjState.PENDING
    with pytest.raises(InvalidTransition, match="revive"):
        o.revive()


def test_task_life_and_retries():
    t = task()
    with pytest.raises(InvalidTransition, match="finish"):
        t.finish()
    t.dispatch()
    t.retry()
    assert t.state is TaskState.WAITING and t.attempt == 1
    t.dispatch()
    t.requeue()  # an input was lost: same attempt
    assert t.attempt == 1
    t.dispatch()
    t.finish()
    with pytest.raises(InvalidTransition, match="fail"):
        t.fail()
    t.rerun()  # lineage: run again to rebuild a lost object
    assert t.state is TaskState.WAITING and t.attempt == 2
    t.fail()
    for bad in (t.dispatch, t.finish, t.rerun, t.retry):
        with pytest.raises(InvalidTransition):
            bad()


def test_reply_calls_its_hook_after_setting():
    r = Reply()
    seen = []
    r.on_set = lambda: seen.append(r.value)
    r.set(5)
    assert r.event.is_set() and seen == [5]
