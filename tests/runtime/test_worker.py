"""run_task (runtime/worker.py): the universal handler, with a real memory store and
functions pickled the way the driver pickles them."""

from __future__ import annotations

import pytest

from lambdaflow import serialization
from lambdaflow.runtime import keys
from lambdaflow.runtime.context import StoredError, current_context, stored_error_frame
from lambdaflow.runtime.store.memory import MemoryStore
from lambdaflow.runtime.task import ERROR, LOST, OK, DepSlot, TaskMessage
from lambdaflow.runtime.worker import capture_error, run_task

JOB = "job-w"


class Picky(Exception):
    def __init__(self, a, b):  # args do not match the signature: pickling needs help
        super().__init__(f"{a}/{b}")


def message(store, fn, args=(), kwargs=None, deps=(), **kw):
    digest, data = serialization.dumps_function(fn)
    key = keys.function_key(JOB, digest)
    store.put(key, data)
    frame = serialization.dumps_bytes((tuple(args), kwargs or {}))
    return TaskMessage(job_id=JOB, task_id="t1", name="f", fn_key=key, args=frame,
                       deps=list(deps), store_uri=store.uri, inline_limit=1024, **kw)


def test_ok_inline_and_in_the_store():
    store = MemoryStore()
    r = run_task(message(store, lambda x: x * 2, (21,)), store)
    assert r.status == OK and serialization.loads(r.values[0]["inline"]) == 42
    r = run_task(message(store, lambda: b"x" * 5000), store)
    assert r.values[0]["key"] == keys.object_key(JOB, "t1")
    assert serialization.loads(store.get(r.values[0]["key"])) == b"x" * 5000
    assert r.stats["bytes_out"] >= 5000 and r.stats["blocked_s"] == 0.0


def test_dependencies_fill_their_slots():
    store = MemoryStore()
    dep = {"inline": serialization.dumps_bytes(5), "size": 10}
    store.put("job-w/obj/d", serialization.dumps(b"y" * 3000))
    m = message(store, lambda a, b=None: (a, len(b)), (DepSlot(0),), {"b": DepSlot(1)},
                deps=[dep, {"key": "job-w/obj/d", "size": 3000}])
    assert serialization.loads(run_task(m, store).values[0]["inline"]) == (5, 3000)


def test_exception_becomes_an_error_result_with_its_traceback():
    store = MemoryStore()

    def fails():
        raise Picky(1, 2)

    r = run_task(message(store, fails), store)
    assert r.status == ERROR
    assert "Picky" in r.error["type"] and "raise Picky(1, 2)" in r.error["traceback"]
    assert r.error["exc"] is not None  # rebuilt by class, args and __dict__
    assert str(capture_error(ValueError("v"))["message"]) == "v"


@pytest.mark.parametrize("missing", ["fn", "args", "dep"])
def test_a_missing_input_is_a_lost_result_naming_its_key(missing):
    store = MemoryStore()
    m = message(store, lambda *a: a, (DepSlot(0),), deps=[{"key": "job-w/obj/gone"}])
    if missing == "fn":
        store.delete(m.fn_key)
        expect = m.fn_key
    elif missing == "args":
        m.args, m.args_key = None, "job-w/args/t1"
        expect = "job-w/args/t1"
    else:
        expect = "job-w/obj/gone"
    if missing != "dep":
        store.put("job-w/obj/gone", serialization.dumps(1))
    r = run_task(m, store)
    assert r.status == LOST and r.error["key"] == expect


def test_system_exit_ends_the_worker():
    store = MemoryStore()

    def leaves():
        raise SystemExit(4)

    with pytest.raises(SystemExit):
        run_task(message(store, leaves), store)


def test_num_returns_mismatch_is_the_tasks_error():
    store = MemoryStore()
    r = run_task(message(store, lambda: (1, 2, 3), num_returns=2), store)
    assert r.status == ERROR and "num_returns=2" in r.error["message"]


def test_refs_nested_in_results_are_reported():
    from lambdaflow.runtime.refs import ObjectRef

    store = MemoryStore()
    inner = ObjectRef("p7", JOB)
    r = run_task(message(store, lambda: [inner, ObjectRef("x", "other-job")]), store)
    assert r.nested == [["p7"]]  # only this job's refs are counted


def test_the_task_context_is_set_while_it_runs_and_restored():
    store = MemoryStore()
    r = run_task(message(store, lambda: current_context().message.task_id), store)
    assert serialization.loads(r.values[0]["inline"]) == "t1"
    assert current_context() is None


def test_stored_error_frames():
    err = serialization.loads(b"".join(stored_error_frame(KeyError("k"))))
    assert isinstance(err, StoredError) and isinstance(err.error, KeyError)

    class Unpicklable(Exception):
        def __reduce__(self):
            raise TypeError("no")

    err = serialization.loads(b"".join(stored_error_frame(Unpicklable("u"))))
    assert "u" in str(err.error)


# ------------------------------------------- duplicates fenced, closed jobs (14.10, 14.11)


def _random_value_with_a_ref():
    """Non-deterministic: every attempt returns other bytes and a ref to another object."""
    import os as os_

    from lambdaflow.runtime.refs import ObjectRef

    return {"bytes": os_.urandom(5000), "ref": ObjectRef("o" + os_.urandom(4).hex(), JOB, None)}


@pytest.mark.parametrize("kind", ["memory", "localdir"])
def test_a_duplicate_attempt_reports_the_committed_object(kind, tmp_path):
    """The same message run twice (Lambda's at-least-once delivery): the second run
    does not overwrite the first one's result; it reports the committed object and
    the refs nested in *that* object, so whichever report the owner accepts, the value
    is the one in the store."""
    from lambdaflow.runtime.store.localdir import LocalDirStore

    store = MemoryStore() if kind == "memory" else LocalDirStore(str(tmp_path))
    m = message(store, _random_value_with_a_ref)
    first, second = run_task(m, store), run_task(m, store)
    assert first.status == second.status == OK
    key = keys.object_key(JOB, "t1")
    assert first.values[0]["key"] == second.values[0]["key"] == key
    stored = serialization.loads(store.get(key))
    assert first.nested == second.nested == [[stored["ref"].id]]
    # the first attempt's value is what stays: the second's random bytes never landed
    assert stored["ref"].id == first.nested[0][0]


def test_a_rebuild_after_a_loss_writes_again():
    store = MemoryStore()
    m = message(store, _random_value_with_a_ref)
    first = run_task(m, store)
    store.delete(first.values[0]["key"])  # the object was lost
    again = run_task(m, store)  # lineage reconstruction: the same task, the same key
    stored = serialization.loads(store.get(again.values[0]["key"]))
    assert again.nested == [[stored["ref"].id]] and again.nested != first.nested


def test_a_task_that_ends_after_its_job_closed_deletes_its_writes():
    """The driver wrote the job's closed marker (it is shutting down): a task that
    finishes now deletes what it wrote, and its result says why; the rest (the
    driver's function blob, another job's objects) is the driver's to delete."""
    store = MemoryStore()
    store.put("job-other/obj/x", b"keep")
    m = message(store, lambda: b"z" * 5000)
    store.put(keys.closed_key(JOB), b"")
    r = run_task(m, store)
    assert r.status == "cancelled" and "shut down" in r.error["message"]
    assert not store.exists(keys.object_key(JOB, "t1")) and store.exists(m.fn_key)
    assert store.exists("job-other/obj/x") and store.exists(keys.closed_key(JOB))
