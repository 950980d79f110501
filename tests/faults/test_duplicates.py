"""Duplicated and late attempts are fenced (issue 14 item 11), on every backend.

A backend wrapper delivers every task message a second time once the first attempt has
finished, as Lambda's at-least-once delivery or a re-sent invoke would: the duplicate
really runs (a worker process, an emulated Lambda environment) and really writes to
the store. The task is non-deterministic, so an overwrite would show: ``get`` before
and after the duplicate ran, and the stored object, must all be the first attempt's
value. On the lambda backend two invokes of one message also race concurrently."""

from __future__ import annotations

import base64
import json
import threading
from concurrent.futures import Future

import numpy as np
import pytest

import lambdaflow as lf
from lambdaflow import serialization
from lambdaflow.runtime import keys
from lambdaflow.runtime.task import OK, TaskMessage, TaskResult

from ..conftest import BACKENDS, start_runtime


@lf.remote
def noisy(n: int) -> np.ndarray:
    """Another value on every run, over the inline limit (stored)."""
    return np.random.default_rng().random(n)


class Redelivering:
    """Wraps a backend: each message is submitted again after its first attempt ends;
    the scheduler sees only the first future (as a driver sees one reply)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.duplicates: list[Future] = []
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def submit(self, msg: TaskMessage) -> Future:
        first = self.inner.submit(msg)
        later = _Later()
        with self._lock:
            self.duplicates.append(later)

        def again(_: Future) -> None:  # off the backend's thread: submit from a new one
            threading.Thread(target=lambda: later.attach(self.inner.submit(msg)),
                             daemon=True).start()

        first.add_done_callback(again)
        return first

    def settle(self, timeout: float = 120) -> list[TaskResult]:
        with self._lock:
            pending = list(self.duplicates)
        return [later.result(timeout) for later in pending]


class _Later:
    """The duplicate's future, once it is submitted."""

    def __init__(self) -> None:
        self._submitted = threading.Event()
        self._future: Future | None = None

    def attach(self, future: Future) -> None:
        self._future = future
        self._submitted.set()

    def result(self, timeout: float) -> TaskResult:
        assert self._submitted.wait(timeout), "the duplicate was never submitted"
        assert self._future is not None
        return self._future.result(timeout)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_late_duplicate_never_changes_a_committed_result(backend, request, fresh):
    rt = start_runtime(backend, request)
    wrapper = Redelivering(rt.backend)
    rt.scheduler.backend = wrapper
    try:
        ref = noisy.remote(40_000)  # 320 kB: stored (S3 on lambda, /dev/shm on processes)
        before = lf.get(ref, timeout=120)
        [dup] = wrapper.settle()
        assert dup.status == OK  # the duplicate ran to the end ...
        after = lf.get(ref, timeout=120)
        np.testing.assert_array_equal(after, before)  # ... and changed nothing
        if backend != "threads":  # (threads keeps values in memory, not in the store)
            key = keys.object_key(rt.job_id, ref.id)
            assert dup.values[0]["key"] == key  # it reports the committed object
            stored = serialization.loads(rt.store.get(key))
            np.testing.assert_array_equal(stored, before)
        assert [r["attempt"] for r in rt.stats_records()] == [0]  # one completion
    finally:
        rt.shutdown()


@pytest.mark.skipif("lambda" not in BACKENDS, reason="LAMBDAFLOW_TEST_LAMBDA=0")
def test_two_concurrent_invokes_of_one_message_commit_one_value(request, fresh):
    """The same task message invoked twice at once through the emulator (a duplicated
    delivery racing the original): both environments run the task, one object is
    committed, and both replies name it with the same nested refs."""
    rt = start_runtime("lambda", request)
    try:
        backend = rt.backend
        rt.scheduler.backend = _Holding(backend)  # capture the message, do not run it
        ref = noisy.remote(40_000)
        msg = rt.scheduler.backend.taken.result(30)
        payload = backend.payload(msg)
        fn = backend._function(backend.function_name)
        replies: list = [None, None]
        barrier = threading.Barrier(2)

        def invoke(i: int) -> None:
            barrier.wait()
            replies[i] = fn.invoker.invoke(payload, read_timeout=120)

        threads = [threading.Thread(target=invoke, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(150)
        results = [TaskResult.unpack(base64.b64decode(json.loads(r.body)["result"]))
                   for r in replies]
        assert [r.status for r in results] == [OK, OK]
        key = keys.object_key(rt.job_id, ref.id)
        assert [r.values[0]["key"] for r in results] == [key, key]
        assert results[0].nested == results[1].nested
        assert results[0].stats["env_id"] != results[1].stats["env_id"]  # both ran
        stored = serialization.loads(rt.store.get(key))
        assert stored.shape == (40_000,)
        # the store holds one of the two runs' values, and it stays: a third delivery
        again = fn.invoker.invoke(payload, read_timeout=120)
        assert TaskResult.unpack(base64.b64decode(json.loads(again.body)["result"])).status == OK
        np.testing.assert_array_equal(serialization.loads(rt.store.get(key)), stored)
    finally:
        rt.shutdown()


class _Holding:
    """A backend that runs nothing: it hands the first message it gets to the test."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.taken: Future = Future()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def submit(self, msg: TaskMessage) -> Future:
        if not self.taken.done():
            self.taken.set_result(msg)
        return Future()
