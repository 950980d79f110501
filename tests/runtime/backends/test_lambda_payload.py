"""lambda_payload: each spill path of a task's invoke payload, directly (issue 10: no
test reached them, since values over 64 KiB never travel inline), with a real local
store; sizes checked against limits.SYNC_REQUEST_BYTES on the JSON that would be sent."""

from __future__ import annotations

import base64
import json

import pytest

from lambdaflow import limits
from lambdaflow.errors import BackendError
from lambdaflow.runtime import keys
from lambdaflow.runtime.backends.lambda_payload import payload
from lambdaflow.runtime.store.localdir import LocalDirStore
from lambdaflow.runtime.task import TaskMessage


@pytest.fixture
def store(tmp_path):
    return LocalDirStore(str(tmp_path))


def _task(store, task_id: str, deps=(), args: bytes = b"a") -> TaskMessage:
    return TaskMessage(job_id="job-p", task_id=task_id, name="t", fn_key="fn/x", args=args,
                       deps=list(deps), store_uri=store.uri)


def _sent(data: bytes) -> TaskMessage:
    return TaskMessage.unpack(base64.b64decode(json.loads(data)["task"]))


def _value(store, dep: dict) -> bytes:
    return bytes(store.get(dep["key"])) if "key" in dep else dep["inline"]


def test_a_small_message_is_sent_as_is(store):
    data = payload(_task(store, "s", [{"inline": b"x" * 100, "size": 100}]), store)
    assert _sent(data).deps == [{"inline": b"x" * 100, "size": 100}]


def test_inline_values_that_together_exceed_the_limit(store):
    """100 inline values of ~70 kB are 7 MB together: the largest move until it fits."""
    values = [bytes([i]) * (70_000 + i) for i in range(100)]
    data = payload(_task(store, "big", [{"inline": v, "size": len(v)} for v in values]), store)
    assert len(data) <= limits.SYNC_REQUEST_BYTES
    sent = _sent(data)
    moved = [i for i, d in enumerate(sent.deps) if "key" in d]
    assert moved and min(moved) > max(i for i, d in enumerate(sent.deps) if "inline" in d)
    assert sent.deps[moved[0]]["key"] == keys.object_key("job-p", f"big-dep{moved[0]}")
    assert [_value(store, d) for d in sent.deps] == values


def test_many_small_dependencies(store):
    values = [i.to_bytes(4, "big") * 300 for i in range(6000)]  # 6,000 x 1.2 kB = 7.2 MB
    data = payload(_task(store, "many", [{"inline": v, "size": len(v)} for v in values]),
                   store, threads=8)
    assert len(data) <= limits.SYNC_REQUEST_BYTES
    sent = _sent(data)
    moved = sum("key" in d for d in sent.deps)
    assert 0 < moved < len(values)  # only as many as needed
    assert [_value(store, d) for d in sent.deps] == values


def test_the_arguments_move_last(store):
    args = b"z" * (7 * 1024 * 1024)
    sent = _sent(payload(_task(store, "args", args=args), store))
    assert sent.args is None and sent.args_key == keys.args_key("job-p", "args")
    assert bytes(store.get(sent.args_key)) == args


def test_too_many_dependencies_is_a_clear_error(store):
    deps = [{"key": f"job-p/obj/k{i:07d}-with-a-long-name" * 2, "size": 1} for i in range(90_000)]
    with pytest.raises(BackendError, match="fewer dependencies"):
        payload(_task(store, "huge", deps), store)
