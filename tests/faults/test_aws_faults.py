"""Faults on the AWS side, injected into the local stand-ins (issue 14 item 12): an
execution environment killed mid-invoke, S3 errors for one request (a fault proxy in
front of moto), moto stopped mid-run. After each: every result is there exactly once
(executions counted with side-effect files), nothing hangs (bounded waits), nothing
leaks (processes), and what cannot be recovered is a typed error."""

from __future__ import annotations

import glob
import os
import signal
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

import lambdaflow as lf
from lambdaflow.errors import LambdaflowError, WorkerCrashedError
from lambdaflow.testing.aws_local import local_aws
from lambdaflow.testing.fault_proxy import FaultProxy

from .tasks import big_square, executions, slow_square

pytestmark = pytest.mark.slow
ROOT = str(Path(__file__).resolve().parents[2])


def _no_leaks(pids: list[int]) -> None:
    alive = [
        p for p in pids
        if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
    ]  # fmt: skip
    assert not alive, f"processes left behind: {alive}"


def _wait_for(pattern: str, limit_s: float = 60) -> list[str]:
    deadline = time.monotonic() + limit_s
    while not (found := glob.glob(pattern)):
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing matched {pattern} in {limit_s}s")
        time.sleep(0.05)
    return found


@pytest.fixture
def marks(tmp_path):
    path = tmp_path / "marks"
    path.mkdir()
    return str(path)


def test_s3_errors_for_one_request_each_are_absorbed(marks, fresh):
    """500, 503 SlowDown and reset connections, on worker PUTs and driver GETs."""
    with FaultProxy() as proxy, local_aws(
        concurrency=4, python_path=[ROOT], shared_paths=[marks],
        env={"AWS_ENDPOINT_URL_S3": proxy.endpoint_url,
             "LAMBDAFLOW_S3_ENDPOINT_URL": proxy.endpoint_url},
    ) as aws:  # fmt: skip
        proxy.target = aws.moto.endpoint_url
        is_obj = "/obj/"
        proxy.inject("503", lambda m, p: m == "PUT" and is_obj in p)
        proxy.inject("500", lambda m, p: m == "PUT" and is_obj in p)
        proxy.inject("reset", lambda m, p: m == "PUT" and is_obj in p)
        proxy.inject("reset-after", lambda m, p: m == "PUT" and is_obj in p)
        proxy.inject("503", lambda m, p: m == "GET" and is_obj in p)
        proxy.inject("reset", lambda m, p: m == "GET" and is_obj in p)
        config = dict(aws.config, s3_endpoint_url=proxy.endpoint_url)
        with lf.init(backend="lambda", **config):
            refs = [big_square.remote(marks, i) for i in range(8)]
            values = lf.get(refs, timeout=120)
        pids = [e["pid"] for e in aws.emulator.stats()["environments"]]
        assert proxy.pending() == 0, proxy.stats()  # every fault was hit
        assert len(proxy.stats()["injected"]) == 6
    for i, value in enumerate(values):
        assert value.shape == (20_000,) and np.all(value == i * i)
    assert executions(marks) == {i: 1 for i in range(8)}  # absorbed by S3 retries
    _no_leaks(pids)


def test_environment_killed_mid_invoke_is_retried_once(marks, tmp_path, fresh):
    ready = str(tmp_path / "ready")
    with local_aws(concurrency=4, python_path=[ROOT], shared_paths=[str(tmp_path)]) as aws:
        with lf.init(backend="lambda", **aws.config):
            refs = [slow_square.remote(marks, i, ready, 2.0) for i in range(3)]
            victim_file = _wait_for(f"{ready}-1-*")[0]
            os.kill(int(Path(victim_file).read_text()), signal.SIGKILL)
            assert lf.get(refs, timeout=120) == [0, 1, 4]
            # with no retries left the loss is a typed error, and the others survive
            doomed = slow_square.options(max_retries=0).remote(marks, 7, ready, 30.0)
            ok = slow_square.remote(marks, 8, ready, 0.0)
            os.kill(int(Path(_wait_for(f"{ready}-7-*")[0]).read_text()), signal.SIGKILL)
            with pytest.raises(WorkerCrashedError, match="exit|signal|killed"):
                lf.get(doomed, timeout=120)
            assert lf.get(ok, timeout=60) == 64
        stats = aws.emulator.stats()
        pids = [e["pid"] for e in stats["environments"]]
        assert stats["functions"][aws.config["function_name"]]["crashes"] >= 2
    assert executions(marks) == {0: 1, 1: 2, 2: 1, 7: 1, 8: 1}
    _no_leaks(pids)


def test_moto_stopped_mid_run_is_a_typed_error_not_a_hang(marks, tmp_path, fresh):
    ready = str(tmp_path / "ready")
    with local_aws(concurrency=2, python_path=[ROOT], shared_paths=[str(tmp_path)]) as aws:
        rt = lf.init(backend="lambda", **aws.config)
        try:
            done = big_square.remote(marks, 0)
            assert lf.get(done, timeout=60)[0] == 0
            ref = slow_square.remote(marks, 1, ready, 1.0)
            _wait_for(f"{ready}-1-*")
            aws.moto.stop()  # S3 is gone while the task runs and wants to commit
            started = time.monotonic()
            with pytest.raises(LambdaflowError):
                lf.get([ref, big_square.remote(marks, 2)], timeout=300)
            assert time.monotonic() - started < 300
        finally:
            rt.shutdown()
        pids = [e["pid"] for e in aws.emulator.stats()["environments"]]
    counts = executions(marks)
    assert counts.get(0) == 1 and counts.get(1) == 1  # nothing ran twice
    _no_leaks(pids)
