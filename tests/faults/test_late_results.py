"""Results that arrive after shutdown leave nothing behind (issue 14 item 10).

A task signals that it runs (a file the test watches), sleeps, then returns a value over
the inline limit, so its worker writes it to the store. The driver shuts down while it
sleeps; the task finishes afterwards. Then the store is listed: nothing of the job may
be there. On lambda the invocation is still running on the emulator when ``shutdown``
returns (its wait for in-flight invokes is set to 0 here), so the worker itself must
see the job's closed marker and delete what it wrote; with the default wait the driver
gets the late reply and deletes it with the job's prefix."""

from __future__ import annotations

import os
import time
import uuid

import numpy as np
import pytest

import lambdaflow as lf
from lambdaflow.runtime import keys

from ..conftest import BACKENDS, start_runtime


@lf.remote(max_retries=0)
def sleepy(ready: str, hold_s: float) -> np.ndarray:
    with open(ready, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(hold_s)
    return np.arange(50_000, dtype=np.int64)  # 400 kB: stored, never inline


def _wait(cond, what: str, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _listing(rt) -> list[str]:
    """Every key of the job left in the store, and its closed marker, found
    independently of the store's own code (S3 listing, the directory tree)."""
    store = rt.store.inner
    job = rt.job_id
    if rt.config.backend == "lambda":
        import boto3

        s3 = boto3.client("s3", **_moto_kwargs(rt))
        out = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=store.bucket,
                                                                 Prefix=store.prefix):
            out += [o["Key"][len(store.prefix):] for o in page.get("Contents", [])]
        return sorted(k for k in out if k.startswith(job) or k == keys.closed_key(job))
    if rt.config.backend == "processes":
        found = []
        for root, _, files in os.walk(store.root):
            found += [os.path.relpath(os.path.join(root, f), store.root) for f in files]
        return sorted(k for k in found if job in k)
    return sorted(k for k in store._data if job in k)  # the memory store's dict


def _moto_kwargs(rt) -> dict:
    c = rt.config
    return {"endpoint_url": c.s3_endpoint_url, "region_name": c.region,
            "aws_access_key_id": c.aws_access_key_id,
            "aws_secret_access_key": c.aws_secret_access_key,
            "aws_session_token": c.aws_session_token}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_result_finished_after_shutdown_is_deleted(backend, request, tmp_path_factory,
                                                     fresh):
    ready = str(tmp_path_factory.getbasetemp() / f"late-{uuid.uuid4().hex}")
    rt = start_runtime(backend, request)
    if backend == "lambda":
        rt.backend.shutdown_wait_s = 0.0  # return while the invocation still runs
    ref = sleepy.remote(ready, 3.0)
    _wait(lambda: os.path.exists(ready), "the task to start")
    rt.shutdown()
    if backend == "lambda":
        assert rt.backend.in_flight() == 1  # it really is still running on the emulator
        assert _listing(rt) == [keys.closed_key(rt.job_id)]
        _wait(lambda: rt.backend.in_flight() == 0, "the late reply", 120)
        # the worker wrote its result, saw the marker and deleted it; only the marker
        # (which the driver could not delete while the task ran) is left
        assert _listing(rt) == [keys.closed_key(rt.job_id)]
    else:
        time.sleep(4.0)  # past the task's end (processes: its worker was killed)
        assert _listing(rt) == []
    with pytest.raises(lf.LambdaflowError, match="shut down"):
        lf.get(ref, timeout=1)


@pytest.mark.skipif("lambda" not in BACKENDS, reason="LAMBDAFLOW_TEST_LAMBDA=0")
def test_shutdown_waits_for_an_invocation_in_flight_then_deletes_all(request,
                                                                       tmp_path_factory,
                                                                       fresh):
    """The default: shutdown waits (up to ``shutdown_wait_s``) for the late reply, then
    deletes the job's prefix, its late result included, and the marker."""
    ready = str(tmp_path_factory.getbasetemp() / f"late-{uuid.uuid4().hex}")
    rt = start_runtime("lambda", request)
    sleepy.remote(ready, 1.5)
    _wait(lambda: os.path.exists(ready), "the task to start")
    rt.shutdown()
    assert rt.backend.in_flight() == 0
    assert _listing(rt) == []
