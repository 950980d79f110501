"""lambda_entry, the Lambda handler, called in-process with real task messages and a
real local-directory store: pings, tasks, TMPDIR, timeout_s, and replies that must fit
Lambda's response limit (checked against limits.SYNC_RESPONSE_BYTES, which the emulator
and Lambda enforce on the JSON the handler returns)."""

from __future__ import annotations

import base64
import json
import os
import platform
import tempfile
import time
from types import SimpleNamespace

import cloudpickle
import pytest

from lambdaflow import limits, serialization
from lambdaflow.errors import TaskError
from lambdaflow.runtime import failures, integrity, keys, lambda_entry
from lambdaflow.runtime.store.localdir import LocalDirStore
from lambdaflow.runtime.task import ERROR, OK, TIMEOUT, TaskMessage, TaskResult

CONTEXT = SimpleNamespace(memory_limit_in_mb=1769, log_stream_name="2030/01/01/[$LATEST]abc",
                          aws_request_id="req-1")


JOB_KEY = integrity.new_job_key()


@pytest.fixture
def store(tmp_path):
    """The job's store as the worker sees it: a local directory, values signed."""
    return integrity.SignedStore(LocalDirStore(str(tmp_path / "store")), JOB_KEY)


def _message(fn, *args, store, task="t1", num_returns=1, **options) -> TaskMessage:
    digest, fn_bytes = serialization.dumps_function(fn)
    return TaskMessage(job_id="job-1", task_id=task, name=fn.__name__,
                       fn_key=keys.function_key("job-1", digest),
                       args=b"".join(serialization.dumps((args, {}))), fn_bytes=fn_bytes,
                       store_uri=store.uri, num_returns=num_returns, options=options,
                       inline_limit=64 * 1024, job_key=JOB_KEY)


def _call(msg: TaskMessage) -> tuple[TaskResult, int]:
    """Run the handler; the decoded result and the size of the JSON Lambda would send."""
    out = lambda_entry.lambda_handler({"lf": 1, "task": base64.b64encode(msg.pack()).decode()},
                                      CONTEXT)
    size = len(json.dumps(out).encode())
    return TaskResult.unpack(base64.b64decode(out["result"])), size


def add(a, b):
    return a + b


def test_ping_reports_versions_and_variant(monkeypatch):
    import cloudpickle as cp

    monkeypatch.setenv("LAMBDAFLOW_IMAGE_VARIANT", "py3.11-mxnet")
    info = lambda_entry.lambda_handler({"lambdaflow": "ping"}, CONTEXT)
    assert info["python_version"] == platform.python_version()
    assert info["cloudpickle_version"] == cp.__version__
    assert info["variant"] == "py3.11-mxnet"
    monkeypatch.delenv("LAMBDAFLOW_IMAGE_VARIANT")
    assert lambda_entry.version_info()["variant"] == "py" + ".".join(
        platform.python_version_tuple()[:2])


def test_unknown_event_names_its_keys():
    with pytest.raises(ValueError, match="keys: bogus"):
        lambda_entry.lambda_handler({"bogus": 1}, CONTEXT)


def test_task_runs_and_reports_lambda_stats(store):
    result, _ = _call(_message(add, 2, 3, store=store))
    assert result.status == OK
    assert serialization.loads(result.values[0]["inline"]) == 5
    assert result.stats["backend"] == "lambda" and result.stats["memory_mb"] == 1769
    assert result.stats["env_id"] == CONTEXT.log_stream_name


def where_is_tmp():
    return tempfile.gettempdir(), os.environ.get("TMPDIR")


def test_each_task_gets_a_fresh_tmpdir_that_is_removed(store):
    result, _ = _call(_message(where_is_tmp, store=store))
    tmp, env = serialization.loads(result.values[0]["inline"])
    assert tmp == env and os.path.basename(tmp).startswith("lambdaflow-task-")
    assert not os.path.exists(tmp) and os.environ.get("TMPDIR") != tmp


def big_values(n):
    return tuple(b"v%d" % i * (3 * 1024 * 1024 // 2) for i in range(n))


def test_inline_results_over_the_limit_spill_to_the_store(store):
    """_spill's value path: three 3 MiB inline values (inline_limit raised so the worker
    keeps them inline) make a 9 MiB reply; they move to the store under their keys."""
    msg = _message(big_values, 3, store=store, num_returns=3)
    msg.inline_limit = 16 * 1024 * 1024
    result, size = _call(msg)
    assert result.status == OK and size <= limits.SYNC_RESPONSE_BYTES
    moved = [v for v in result.values if "key" in v]
    assert moved and all(v["key"] == keys.object_key("job-1", keys.result_object_id("t1", i))
                         for i, v in enumerate(result.values) if "key" in v)
    for i, v in enumerate(result.values):
        data = store.get(v["key"]) if "key" in v else v["inline"]
        assert serialization.loads(data) == big_values(3)[i]


class BigError(ValueError):
    def __init__(self, text, code):
        super().__init__(text)
        self.code = code
        self.detail = text


def raise_huge(n):
    raise BigError("x" * n, code=7)


def test_a_7mb_error_fits_and_keeps_its_class(store):
    """Issue 13.4: a 7 MB message made the reply too large (a WorkerCrashedError, run 4
    times). Now the reply fits, and the driver re-raises the user's class."""
    result, size = _call(_message(raise_huge, 7 * 1024 * 1024, store=store))
    assert result.status == ERROR and size <= limits.SYNC_RESPONSE_BYTES
    assert "characters cut by lambdaflow" in result.error["message"]
    err = failures.error_for("raise_huge[t1]", result)
    assert isinstance(err, BigError) and isinstance(err, TaskError)
    assert err.code == 7 and len(str(err.cause)) < 100_000
    assert "raise_huge" in err.traceback_text  # the frames survive the cut


def test_fit_error_drops_the_exception_when_nothing_else_fits():
    huge = cloudpickle.dumps(ValueError(b"\0" * 100))  # bytes args are cut, not strings
    error = {"exc": huge, "type": "builtins.ValueError", "message": "m" * 10_000_000,
             "traceback": "t" * 10_000_000}
    fitted = lambda_entry.fit_error(error, 50_000)
    assert len(fitted["message"]) < 50_000 and len(fitted["traceback"]) < 50_000
    assert isinstance(cloudpickle.loads(fitted["exc"]), ValueError)
    tiny = lambda_entry.fit_error(error, 1_000)
    assert tiny["exc"] is None and tiny["type"] == "builtins.ValueError"


def test_cut_says_how_much_it_cut():
    text = lambda_entry.cut("a" * 100 + "z" * 10, 20, 10)
    assert text.startswith("a" * 20) and text.endswith("z" * 10)
    assert "80 of 110 characters cut" in text
    assert lambda_entry.cut("short", 20) == "short"


def sleepy(seconds):
    time.sleep(seconds)
    return "woke"


def test_timeout_s_interrupts_the_task_in_the_worker(store):
    """Issue 12.10: timeout_s was ignored on lambda. The worker now stops the task."""
    t0 = time.monotonic()
    result, _ = _call(_message(sleepy, 30, store=store, timeout_s=0.5))
    assert time.monotonic() - t0 < 20  # interrupted, not slept out
    assert result.status == TIMEOUT and "timeout_s=0.5" in result.error["message"]
    assert "sleepy" in result.error["log"]  # where it was when the deadline passed
    assert "TaskTimeoutError" == type(failures.error_for("sleepy[t1]", result)).__name__


def test_timeout_s_leaves_a_fast_task_alone(store):
    result, _ = _call(_message(sleepy, 0.01, store=store, timeout_s=5))
    assert result.status == OK and serialization.loads(result.values[0]["inline"]) == "woke"
