"""Every storage key lambdaflow uses, in one pure module.

Layout under a store (the S3 store adds its bucket and configured prefix in front)::

    <job>/fn/<sha256>          a cloudpickled function, content-addressed, once per job
    <job>/obj/<object-id>      a value: a task result, a put() value, or a spilled argument
    <job>/args/<task-id>       a task's serialized arguments when too big to send inline
    closed/<job>               the job's closed marker: its driver shut down (outside the
                               job's prefix, so deleting that prefix leaves it)

Result keys are deterministic in (job, task) and written only if absent (``create``):
of all the attempts of a task (retries, duplicated or late invocations) the first to
commit wins and the others report its object, so at-least-once delivery never
duplicates, loses or overwrites a result.
"""

from __future__ import annotations


def job_prefix(job: str) -> str:
    return f"{job}/"


def closed_key(job: str) -> str:
    """The marker a driver writes before deleting its job's objects at shutdown."""
    return f"closed/{job}"


def function_key(job: str, digest: str) -> str:
    return f"{job}/fn/{digest}"


def object_key(job: str, object_id: str) -> str:
    return f"{job}/obj/{object_id}"


def result_object_id(task_id: str, index: int | None = None) -> str:
    """The object id of a task's return value (``index`` for ``num_returns > 1``)."""
    return task_id if index is None else f"{task_id}.{index}"


def args_key(job: str, task_id: str) -> str:
    return f"{job}/args/{task_id}"


def task_of(object_id: str) -> str:
    """The id of the task whose return value ``object_id`` is (inverse of
    ``result_object_id``; task ids never contain a dot)."""
    head, dot, tail = object_id.rpartition(".")
    return head if dot and tail.isdigit() else object_id


def function_digest(key: str) -> str | None:
    """The SHA-256 hex digest a function key names (``<job>/fn/<sha256>``), or None."""
    _, sep, digest = key.rpartition("/fn/")
    if not sep or len(digest) != 64 or digest.strip("0123456789abcdef"):
        return None
    return digest
