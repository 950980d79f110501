"""The AWS Lambda entry point of the universal worker image:
``lambdaflow.runtime.lambda_entry.lambda_handler``.

A few lines around ``worker.run_task``. The event is one of:

* a task: ``{"lf": 1, "task": <base64 msgpack TaskMessage>}`` → ``{"lf": 1, "result":
  <base64 msgpack TaskResult>}`` with per-task stats (start / end, cold start, duration,
  bytes in / out, peak memory, execution environment, memory size);
* the version ping ``{"lambdaflow": "ping"}`` → ``variants.runtime_versions()``
  (lambdaflow, Python, cloudpickle, image variant), which the driver compares with its own;
* an S3 / SQS event (``"Records"``) → routed to the handler registered with
  ``lambdaflow.on_upload`` (``lambdaflow.events.dispatch``).

A task with ``timeout_s`` runs under a :class:`~lambdaflow.runtime.lambda_deadline.Deadline`:
past ``timeout_s`` it is interrupted and answered TIMEOUT; if it does not come back to
Python within the grace period, the watchdog posts the TIMEOUT result to the Runtime API
itself and ends this execution environment.

Every reply fits Lambda's response limit (``limits``): inline return values move to the
store first (largest first, under their deterministic keys, fenced as every result
write: an object another attempt committed there stays, and the reply names it); an error's message and
traceback are then cut, with a note saying so, and its exception is re-pickled with the
shortened text so the user's exception class still reaches the driver.

Module state survives warm invocations: functions, stores (and their S3 connections)
and whatever ops cache. Each task runs with ``TMPDIR`` pointing at a fresh directory
under /tmp that is removed afterwards, so /tmp does not fill up across invocations.
"""

from __future__ import annotations

import base64
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from typing import Any

import cloudpickle

from lambdaflow import limits, variants
from lambdaflow.runtime import integrity, keys, values
from lambdaflow.runtime.lambda_deadline import HARD_STOP_GRACE_S, Deadline
from lambdaflow.runtime.task import TIMEOUT, TaskMessage, TaskResult, failure
from lambdaflow.runtime.worker import drop_if_closed, run_task

#: The packed result may be this big before base64 + JSON fill Lambda's response limit.
RESPONSE_BUDGET = limits.base64_budget(limits.SYNC_RESPONSE_BYTES)
#: An error's message and the string fields of its exception keep this many characters;
#: its traceback keeps a head and a tail of these sizes.
MESSAGE_KEEP = 64 * 1024
TRACEBACK_HEAD, TRACEBACK_TAIL = 96 * 1024, 16 * 1024
_INIT_TIME = time.time()
_state: dict = {"cold": True, "init_s": 0.0}


def lambda_handler(event: dict, context: Any) -> dict:
    if _state["cold"] and not _state.get("seen"):
        _state["seen"] = True  # the first invocation of any kind ends the cold start
        _state["init_s"] = round(time.time() - _INIT_TIME, 3)
    else:
        _state["cold"] = False
    if "task" in event:
        return _run(event, context)
    if event.get("lambdaflow") == "ping":
        return version_info()
    if "Records" in event:
        from lambdaflow import events

        return events.dispatch(event, context)
    raise ValueError(
        "lambdaflow worker got an event it does not understand: expected a lambdaflow "
        "task, a version ping or S3/SQS records; keys: " + ", ".join(sorted(event))
    )


def version_info() -> dict:
    """What the version ping answers (see ``variants.runtime_versions``)."""
    return variants.runtime_versions()


def _run(event: dict, context: Any) -> dict:
    cold, _state["cold"] = _state["cold"], False
    message = TaskMessage.unpack(base64.b64decode(event["task"]))
    workdir = tempfile.mkdtemp(prefix="lambdaflow-task-", dir="/tmp" if os.path.isdir("/tmp") else None)
    previous_tmp = tempfile.tempdir
    tempfile.tempdir = workdir
    os.environ["TMPDIR"] = workdir
    extra = {
        "cold_start": cold,
        "init_s": _state["init_s"] if cold else 0.0,
        "memory_mb": int(getattr(context, "memory_limit_in_mb", 0) or 0) or None,
        "env_id": getattr(context, "log_stream_name", None),
        "backend": "lambda",
    }
    try:
        result = _run_with_deadline(message, context, extra)
    finally:
        tempfile.tempdir = previous_tmp
        os.environ.pop("TMPDIR", None)
        shutil.rmtree(workdir, ignore_errors=True)
    return _reply(message, result, extra)


def _run_with_deadline(message: TaskMessage, context: Any, extra: dict) -> TaskResult:
    timeout = message.options.get("timeout_s")
    if not timeout:
        return run_task(message)
    start = time.time()
    deadline = Deadline(float(timeout), lambda: _hard_stop(message, context, extra, start))
    result: TaskResult | None = None
    try:
        deadline.start()
        result = run_task(message)
    except BaseException:  # TaskDeadline between run_task's return and cancel()
        if not deadline.fired:
            raise
    finally:
        deadline.cancel()
    if deadline.fired or result is None:
        where = (result.error or {}).get("traceback", "") if result is not None else ""
        return _timed_out(message, start, f"timed out after {timeout:g} s (timeout_s={timeout:g})",
                          where)
    return result


def _timed_out(message: TaskMessage, start: float, text: str, where: str = "") -> TaskResult:
    """A TIMEOUT result; ``where`` (the traceback of the interrupted task) goes in its log."""
    extra = {"log": cut(where, TRACEBACK_HEAD // 4, TRACEBACK_TAIL)} if where else {}
    result = failure(message.task_id, message.attempt, TIMEOUT, text, **extra)
    result.stats.update(start=start, end=time.time(), duration_s=time.time() - start)
    return result


def _hard_stop(message: TaskMessage, context: Any, extra: dict, start: float) -> None:
    """The task ignored its deadline: answer TIMEOUT through the Runtime API, then end
    this execution environment (Lambda discards it and starts a fresh one)."""
    timeout = message.options.get("timeout_s")
    result = _timed_out(message, start, (
        f"timed out after {timeout:g} s (timeout_s={timeout:g}); the task did not return to "
        f"Python within {HARD_STOP_GRACE_S:g} s more (a C call?), so its execution "
        "environment was ended"))
    body = _reply_bytes(message, result, extra)
    api = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    request_id = getattr(context, "aws_request_id", None)
    print(f"lambdaflow: task {message.name}[{message.task_id}] ran past timeout_s={timeout} "
          f"+ {HARD_STOP_GRACE_S:g} s; ending this execution environment", file=sys.stderr,
          flush=True)
    if api and request_id:
        try:
            url = f"http://{api}/2018-06-01/runtime/invocation/{request_id}/response"
            req = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=10).close()
        except OSError as exc:
            print(f"lambdaflow: could not post the TIMEOUT result: {exc}", file=sys.stderr,
                  flush=True)
    os._exit(0)


def _reply(message: TaskMessage, result: TaskResult, extra: dict) -> dict:
    extra = dict(extra, env_id=extra.get("env_id") or result.stats.get("env_id"))
    result.stats.update(extra)
    packed = result.pack()
    if len(packed) > RESPONSE_BUDGET:
        packed = _spill(message, result)
        if any("key" in loc for loc in result.values) and drop_if_closed(
                message, integrity.task_store(message), result):
            packed = result.pack()
    return {"lf": 1, "result": base64.b64encode(packed).decode("ascii")}


def _reply_bytes(message: TaskMessage, result: TaskResult, extra: dict) -> bytes:
    import json

    return json.dumps(_reply(message, result, extra)).encode()


# --------------------------------------------------------------------- fitting a reply


def _spill(message: TaskMessage, result: TaskResult) -> bytes:
    """Make the reply fit Lambda's limit: inline return values move to the store
    (largest first; signed as every stored value); an error's text is cut (see
    :func:`fit_error`)."""
    n = len(result.values)
    order = sorted(range(n), key=lambda i: -len(result.values[i].get("inline") or b""))
    store = integrity.task_store(message) if order else None
    for i in order:
        value = result.values[i]
        if "inline" in value and store is not None:
            oid = keys.result_object_id(message.task_id, None if n == 1 else i)
            key = keys.object_key(message.job_id, oid)
            committed = values.commit_frame(store, key, value["inline"], message.job_id)
            if committed is not None and i < len(result.nested):  # another attempt's
                result.nested[i] = committed
            result.values[i] = {"key": key, "size": value["size"]}
        packed = result.pack()
        if len(packed) <= RESPONSE_BUDGET:
            return packed
    if result.error:
        result.error = fit_error(result.error, RESPONSE_BUDGET - len(result.pack()) + _size(result.error))
    return result.pack()


def _size(error: dict) -> int:
    return sum(len(v) for v in error.values() if isinstance(v, (str, bytes)))


def cut(text: str, keep: int, tail: int = 0) -> str:
    """``text`` shortened to about ``keep`` characters (+ ``tail`` from its end), with a
    note saying how much was cut."""
    if len(text) <= keep + tail:
        return text
    note = (f"\n[... {len(text) - keep - tail:,} of {len(text):,} characters cut by lambdaflow: "
            f"the error must fit Lambda's {limits.SYNC_RESPONSE_BYTES:,}-byte response ...]\n")
    return text[:keep] + note + (text[-tail:] if tail else "")


def fit_error(error: dict, budget: int) -> dict:
    """An ERROR result's ``error`` dict that takes at most ``budget`` bytes: message and
    traceback cut with a note; the pickled exception rebuilt with its string fields cut
    (same class), or dropped when even that does not fit (type and message remain)."""
    out = dict(error)
    for keep in (MESSAGE_KEEP, MESSAGE_KEEP // 16):
        out["message"] = cut(str(error.get("message", "")), keep)
        head = TRACEBACK_HEAD if keep == MESSAGE_KEEP else TRACEBACK_HEAD // 16
        tail = TRACEBACK_TAIL if keep == MESSAGE_KEEP else TRACEBACK_TAIL // 16
        out["traceback"] = cut(str(error.get("traceback", "")), head, tail)
        if error.get("exc") is not None:
            out["exc"] = _shrunk_exception(error["exc"], keep)
        if _size(out) <= budget:
            return out
    out["exc"] = None
    return out


def _shrunk_exception(blob: bytes, keep: int) -> bytes | None:
    """The pickled exception ``blob`` with every long string in its args and attributes
    cut to ``keep`` characters; None if it cannot be rebuilt."""
    try:
        exc = cloudpickle.loads(blob)
        args = tuple(_cut_value(a, keep) for a in getattr(exc, "args", ()))
        state = {k: _cut_value(v, keep) for k, v in getattr(exc, "__dict__", {}).items()}
        shrunk = cloudpickle.dumps(_Rebuild(type(exc), args, state), protocol=5)
        cloudpickle.loads(shrunk)  # must unpickle on the driver too
        return shrunk
    except Exception:
        return None


def _cut_value(value: Any, keep: int) -> Any:
    if isinstance(value, str):
        return cut(value, keep)
    if isinstance(value, (bytes, bytearray)) and len(value) > keep:
        return bytes(value[:keep])
    return value


class _Rebuild:
    """Pickles as "an instance of ``cls`` with these args and attributes", bypassing an
    ``__init__`` whose signature does not take its ``args`` back."""

    def __init__(self, cls: type[BaseException], args: tuple, state: dict) -> None:
        self.cls, self.args, self.state = cls, args, state

    def __reduce__(self) -> tuple:
        return (rebuild_exception, (self.cls, self.args, self.state))


def rebuild_exception(cls: type[BaseException], args: tuple, state: dict) -> BaseException:
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc
