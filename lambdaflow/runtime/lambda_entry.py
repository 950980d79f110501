"""The AWS Lambda entry point of the universal worker image:
``lambdaflow.runtime.lambda_entry.lambda_handler``.

A few lines around ``worker.run_task``. The event is one of:

* a task: ``{"lf": 1, "task": <base64 msgpack TaskMessage>}`` → ``{"lf": 1, "result":
  <base64 msgpack TaskResult>}`` with per-task stats (start / end, cold start, duration,
  bytes in / out, peak memory, execution environment, memory size);
* the version ping ``{"lambdaflow": "ping"}`` → ``{"lambdaflow_version", "python_version"}``
  (``lambdaflow status`` and the backend use it to catch a stale worker image);
* an S3 / SQS event (``"Records"``) → routed to the handler registered with
  ``lambdaflow.on_upload`` (``lambdaflow.events.dispatch``).

Module state survives warm invocations: functions, stores (and their S3 connections)
and whatever ops cache. Each task runs with ``TMPDIR`` pointing at a fresh directory
under /tmp that is removed afterwards, so /tmp does not fill up across invocations.
"""

from __future__ import annotations

import base64
import os
import platform
import shutil
import tempfile
import time
from typing import Any

from lambdaflow import limits
from lambdaflow._version import __version__
from lambdaflow.runtime import integrity, keys
from lambdaflow.runtime.task import TaskMessage, TaskResult
from lambdaflow.runtime.worker import run_task

#: The packed result may be this big before base64 + JSON fill Lambda's response limit.
RESPONSE_BUDGET = limits.base64_budget(limits.SYNC_RESPONSE_BYTES)
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
    return {
        "lambdaflow_version": __version__,
        "python_version": platform.python_version(),
    }


def _run(event: dict, context: Any) -> dict:
    cold, _state["cold"] = _state["cold"], False
    message = TaskMessage.unpack(base64.b64decode(event["task"]))
    workdir = tempfile.mkdtemp(prefix="lambdaflow-task-", dir="/tmp" if os.path.isdir("/tmp") else None)
    previous_tmp = tempfile.tempdir
    tempfile.tempdir = workdir
    os.environ["TMPDIR"] = workdir
    try:
        result = run_task(message)
    finally:
        tempfile.tempdir = previous_tmp
        os.environ.pop("TMPDIR", None)
        shutil.rmtree(workdir, ignore_errors=True)
    result.stats.update(
        cold_start=cold,
        init_s=_state["init_s"] if cold else 0.0,
        memory_mb=int(getattr(context, "memory_limit_in_mb", 0) or 0) or None,
        env_id=getattr(context, "log_stream_name", None) or result.stats.get("env_id"),
        backend="lambda",
    )
    packed = result.pack()
    if len(packed) > RESPONSE_BUDGET:
        packed = _spill(message, result)
    return {"lf": 1, "result": base64.b64encode(packed).decode("ascii")}


def _spill(message: TaskMessage, result: TaskResult) -> bytes:
    """Move inline return values to the store until the reply fits Lambda's limit."""
    store = integrity.task_store(message)
    n = len(result.values)
    order = sorted(range(n), key=lambda i: -len(result.values[i].get("inline") or b""))
    for i in order:
        value = result.values[i]
        if "inline" in value:
            oid = keys.result_object_id(message.task_id, None if n == 1 else i)
            key = keys.object_key(message.job_id, oid)
            store.put(key, value["inline"])
            result.values[i] = {"key": key, "size": value["size"]}
        packed = result.pack()
        if len(packed) <= RESPONSE_BUDGET:
            return packed
    if result.error and len(result.pack()) > RESPONSE_BUDGET:
        result.error["traceback"] = result.error.get("traceback", "")[-100_000:]
        result.error["exc"] = None
    return result.pack()
