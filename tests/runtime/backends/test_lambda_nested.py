"""Tasks that submit tasks on Lambda (backends/lambda_nested.py): what a task may read of
its caller's objects, the nesting-depth limit, and, against the emulator, the error
instead of a hang when subtasks stay throttled while their parents hold every
environment."""

from __future__ import annotations

import os

import pytest

import lambdaflow as lf
from lambdaflow.errors import ConcurrencyLimitError, ObjectLostError
from lambdaflow.runtime import refs
from lambdaflow.runtime.backends.lambda_nested import NestedClient, _NestedOwner
from lambdaflow.runtime.store.memory import MemoryStore
from lambdaflow.runtime.task import TaskMessage

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def message(**nested) -> TaskMessage:
    return TaskMessage(job_id="job-n", task_id="t5", name="parent", fn_key="k",
                       nested={"depth": 0, "lambda": {"max_concurrency": 4}, **nested},
                       refs={"t1": "pending", "t2": "lost"})


def test_refs_of_the_caller_are_remote_and_checked():
    client = NestedClient(message(), MemoryStore())
    try:
        known = refs._rebuild("t1", "job-n")  # unpickled while the task runs
        assert known._rt is None and client.known["t1"] == "pending"
        from_value = refs._rebuild("t9", "job-n")
        assert client.known["t9"] == "pending"  # came inside a value: trusted, polled
        client._check_remote(known)
        client._check_remote(from_value)
        for bad in (lf.ObjectRef("t2", "job-n"),  # listed as lost by the owner
                    lf.ObjectRef("t1", "job-other"),  # another job
                    lf.ObjectRef("t404", "job-n")):  # never heard of
            with pytest.raises(ObjectLostError):
                client._check_remote(bad)
    finally:
        client.close()
    assert "job-n" not in refs.LIVE_JOBS  # restored when the task ends


def test_a_chain_deeper_than_max_concurrency_is_refused_at_submit():
    client = NestedClient(message(depth=2), MemoryStore())
    owner = _NestedOwner.__new__(_NestedOwner)  # only the limit check, no runtime
    owner.depth, owner.max_concurrency, owner._name = 2, 4, "parent[t5]"
    owner.before_submit()  # a 4th task in a chain of 4 environments: fits
    owner.depth = 3
    with pytest.raises(ConcurrencyLimitError, match="chain of 5 tasks.*max_concurrency=4"):
        owner.before_submit()
    client.close()


@lf.remote
def grandchild():
    return 1


@lf.remote
def child():
    # Two subtasks: one is invoked (the only slot at depth 1), the other runs inline;
    # the invoked one cannot start while every environment is held.
    return sum(lf.get([grandchild.remote(), grandchild.remote()]))


@lf.remote(max_retries=0)
def parent():
    return sum(lf.get([child.remote(), child.remote()]))


@pytest.mark.slow
def test_throttled_subtasks_of_blocked_parents_raise_instead_of_hanging(fresh):
    from lambdaflow.testing.aws_local import local_aws
    from lambdaflow.testing.moto_server import FAKE_CREDENTIALS

    saved = {k: os.environ.get(k) for k in FAKE_CREDENTIALS}
    os.environ.update(FAKE_CREDENTIALS)
    try:
        with local_aws(concurrency=3, timeout_s=120, python_path=[ROOT]) as aws:
            # parent + 2 children hold the 3 environments; grandchildren are throttled
            with lf.init(backend="lambda", **dict(aws.config, nested_patience_s=3)):
                with pytest.raises(ConcurrencyLimitError, match="throttled"):
                    lf.get(parent.remote(), timeout=300)
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
