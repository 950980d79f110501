"""runtime/integrity.py: job keys, the worker's store, and function blobs checked against
their content address (hashlib's SHA-256 of the blob, computed here independently).
The cross-job attacks on every backend are in tests/attacks/."""

from __future__ import annotations

import hashlib
import os
import pickle

import cloudpickle
import pytest

from lambdaflow import serialization
from lambdaflow.errors import IntegrityError, TaskError
from lambdaflow.runtime import integrity, keys
from lambdaflow.runtime.store.localdir import LocalDirStore
from lambdaflow.runtime.store.signed import SignedStore
from lambdaflow.runtime.task import ERROR, OK, TaskMessage
from lambdaflow.runtime.worker import run_task


class Creates:
    """Unpickling this creates ``path``: proof that a pickle ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def add(a, b):
    return a + b


def message(fn_key: str, store, job_key: bytes | None, **extra) -> TaskMessage:
    return TaskMessage(fn_key.split("/")[0], "t0", "add", fn_key, store_uri=store.uri,
                       args=serialization.dumps_bytes(((2, 3), {})), job_key=job_key, **extra)


def test_job_keys_are_32_fresh_random_bytes():
    ks = {integrity.new_job_key() for _ in range(100)}
    assert len(ks) == 100 and {len(k) for k in ks} == {32}


def test_check_function_accepts_only_the_named_digest():
    data = cloudpickle.dumps(add)
    good = keys.function_key("job", hashlib.sha256(data).hexdigest())
    integrity.check_function(good, data)
    with pytest.raises(IntegrityError, match="does not hash") as info:
        integrity.check_function(good, data + b"\0")
    assert info.value.key == good
    with pytest.raises(IntegrityError, match="not a content address"):
        integrity.check_function("job/fn/latest", data)


def test_a_worker_refuses_a_message_without_a_job_key(tmp_path):
    store = LocalDirStore(str(tmp_path))
    result = run_task(message("job-i/fn/" + "0" * 64, store, None))
    assert result.status == ERROR and "carries no job key" in result.error["message"]
    assert result.error["type"] == "lambdaflow.errors.IntegrityError"


def test_a_worker_opens_the_message_store_signed(tmp_path):
    job_key = integrity.new_job_key()
    signed = SignedStore(LocalDirStore(str(tmp_path)), job_key)
    digest, data = serialization.dumps_function(add)
    fn_key = keys.function_key("job-i", digest)
    signed.put(fn_key, data)
    result = run_task(message(fn_key, signed, job_key))
    assert result.status == OK, result.error
    assert serialization.loads(result.values[0]["inline"]) == 5
    opened = integrity.task_store(message(fn_key, signed, job_key))
    assert isinstance(opened, SignedStore) and opened.job_key == job_key
    assert integrity.task_store(message(fn_key, signed, None), signed) is signed


def test_an_inline_function_with_a_wrong_digest_never_runs(tmp_path):
    """A message naming another job's function digest but carrying other bytes (the way
    to plant code in a warm worker's function cache) is refused before unpickling."""
    marker = str(tmp_path / "ran")
    evil = pickle.dumps(Creates(marker))
    pickle.loads(evil)  # control: this payload does run code when unpickled
    assert os.path.exists(marker)
    os.unlink(marker)
    job_key = integrity.new_job_key()
    store = SignedStore(LocalDirStore(str(tmp_path / "s")), job_key)
    digest, _ = serialization.dumps_function(add)
    fn_key = keys.function_key("job-evil", digest)  # not in this process's function cache
    result = run_task(message(fn_key, store, job_key, fn_bytes=evil))
    assert result.status == ERROR and "does not hash" in result.error["message"]
    assert not os.path.exists(marker)


def test_integrity_error_pickles_with_its_key():
    err = IntegrityError("bad blob", key="j/obj/x")
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, IntegrityError) and back.key == "j/obj/x"
    derived = TaskError.as_instanceof_cause(err, "tb", "f[t0]")
    assert isinstance(derived, IntegrityError) and derived.key == "j/obj/x"


@pytest.fixture
def on_lambda(request):
    from tests.conftest import BACKENDS, start_runtime

    if "lambda" not in BACKENDS:
        pytest.skip("the lambda backend's local stand-ins are not installed")
    with start_runtime("lambda", request) as rt:
        yield rt


def chunk(i):
    return bytes([i]) * 60_000  # under the 64 KiB inline limit: travels inline


def chunks(n):
    return tuple(chunk(i) for i in range(n))


def count(*parts):
    return sum(len(p) for p in parts)


@pytest.mark.slow
def test_lambda_spills_are_signed(on_lambda):
    """Inline values that overflow Lambda's 6 MB payload go to S3 (the backend's
    argument spill, the handler's result spill): both are written signed, or the reader
    would refuse them."""
    import lambdaflow as lf

    parts = lf.remote(num_returns=100)(chunks).remote(100)  # 6 MB reply: spilled
    assert lf.get(parts[99]) == chunk(99)
    singles = [lf.remote(chunk).remote(i) for i in range(100)]  # 100 inline results
    total = lf.remote(count).remote(*singles)  # a 6 MB payload: dependencies spilled
    assert lf.get(total) == 6_000_000
    inner, job = on_lambda.backend.store.inner, on_lambda.job_id
    task = parts[0].id.split(".")[0]
    assert any(inner.exists(keys.object_key(job, f"{task}.{i}")) for i in range(100))
    assert any(inner.exists(keys.object_key(job, f"{total.id}-dep{i}")) for i in range(100))
