"""Task contexts and clients (runtime/context.py)."""

from __future__ import annotations

from lambdaflow.runtime.context import (
    TaskContext,
    current_client,
    current_context,
    enter,
    leave,
    set_process_client,
)
from lambdaflow.runtime.task import TaskMessage

MSG = TaskMessage(job_id="j", task_id="t", name="n", fn_key="k")


def test_contexts_nest_and_restore():
    outer, inner = TaskContext(MSG, None, "outer"), TaskContext(MSG, None, "inner")  # type: ignore[arg-type]
    prev = enter(outer)
    assert prev is None and current_client() == "outer"
    p2 = enter(inner)  # a task run inline while the outer one waits
    assert current_context() is inner and current_client() == "inner"
    leave(p2)
    assert current_context() is outer
    leave(prev)
    assert current_context() is None and current_client() is None


def test_the_process_client_serves_threads_without_a_task():
    set_process_client("worker-client")  # type: ignore[arg-type]
    try:
        assert current_client() == "worker-client"
        prev = enter(TaskContext(MSG, None, None))  # type: ignore[arg-type]
        assert current_client() == "worker-client"  # a task without its own client
        leave(prev)
    finally:
        set_process_client(None)
    assert current_client() is None
