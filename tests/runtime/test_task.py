"""Task messages, results and specs (runtime/task.py): wire round trips, the version
check, and readers of shorter (older) lists."""

from __future__ import annotations

import pytest

from lambdaflow.runtime.options import TaskOptions
from lambdaflow.runtime.task import (
    PROTOCOL_VERSION,
    TaskMessage,
    TaskResult,
    TaskSpec,
    failure,
)


def test_message_round_trip():
    m = TaskMessage(job_id="j", task_id="t", name="n", fn_key="k", attempt=2, args=b"a",
                    deps=[{"inline": b"x", "size": 1}], num_returns=2,
                    options={"timeout_s": 3}, store_uri="memory://s",
                    nested={"depth": 1}, refs={"o": "pending"})
    assert TaskMessage.unpack(m.pack()) == m


def test_version_mismatch_is_explained():
    fields = TaskMessage(job_id="j", task_id="t", name="n", fn_key="k").to_list()
    fields[0] = PROTOCOL_VERSION + 1
    with pytest.raises(ValueError, match="redeploy the worker"):
        TaskMessage.from_list(fields)


def test_older_lists_get_defaults_for_new_fields():
    fields = TaskMessage(job_id="j", task_id="t", name="n", fn_key="k").to_list()[:14]
    m = TaskMessage.from_list(fields)
    assert m.nested == {} and m.refs == {}
    r = TaskResult.from_list(["t", 0, "ok", [], None, {}])
    assert r.nested == []


def test_result_round_trip_and_keepalive_never_travels():
    r = TaskResult("t", 1, "ok", [{"inline": b"v", "size": 1}], None, {"x": 1}, [["p1"]],
                   keepalive=object())
    back = TaskResult.unpack(r.pack())
    assert back.nested == [["p1"]] and back.keepalive is None and back.values == r.values


def test_spec_round_trip_keeps_exception_classes():
    spec = TaskSpec("t", "k", TaskOptions("f", 2, (KeyError, OSError), 1, 5.0, 512),
                    b"a", None, ["d"], ["n"])
    back = TaskSpec.from_list(spec.to_list())
    assert back.options.retry_exceptions == (KeyError, OSError)
    assert back.deps == ["d"] and back.nested == ["n"] and back.lineage_bytes > 600


def test_failure_helper():
    r = failure("t", 0, "crash", "boom", log="tail")
    assert r.error == {"message": "boom", "log": "tail"} and r.values == []
