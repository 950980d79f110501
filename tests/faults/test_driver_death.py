"""The driver dies with busy workers (issue 14 items 8, 12): SIGKILL, SIGTERM, Ctrl-C
outside a ``with``, the end of the script without ``shutdown()``. Afterwards no worker
of it is left (checked in /proc, for the pids its processes had: the tasks announce
theirs, psutil lists the rest) and no run directory: the driver removes it itself
where it can, and after a SIGKILL the next ``init`` in another process sweeps it."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import lambdaflow as lf
from lambdaflow.runtime.store.localdir import default_root

from .tasks import count

pytestmark = pytest.mark.slow
ROOT = str(Path(__file__).resolve().parents[2])
LIMIT_S = 30  # every wait here is bounded by this


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_until(check, what: str) -> None:
    deadline = time.monotonic() + LIMIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"after {LIMIT_S} s: {what}")
        time.sleep(0.05)


def _start_driver(mode: str, ready: str, *extra: str
                  ) -> tuple[subprocess.Popen, list[int], list[str]]:
    """A driver with two busy workers; returns it, its workers' pids, its run dirs."""
    driver = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.driver", mode, ready, *extra], cwd=ROOT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group, as a shell gives a job
    )
    try:
        assert driver.stdout is not None
        line = driver.stdout.readline()  # bounded: the driver exits if tasks never start
        assert line.strip() == "ready", f"the driver failed to start (said {line!r})"
        workers = set(count(ready, "busy"))  # what the tasks say...
        workers |= {c.pid for c in psutil.Process(driver.pid).children(recursive=True)}
        assert len(workers) >= 2
        runs = glob.glob(os.path.join(default_root(), f"run-{driver.pid}-*"))
        assert len(runs) == 1, runs
    except BaseException:
        driver.kill()
        driver.wait()
        raise
    return driver, sorted(workers), runs


@pytest.fixture
def ready(tmp_path):
    path = tmp_path / "ready"
    path.mkdir()
    return str(path)


def _assert_no_workers(workers: list[int]) -> None:
    _wait_until(lambda: not any(_alive(p) for p in workers),
                f"workers still running: {[p for p in workers if _alive(p)]}")


def test_sigkilled_driver_leaves_no_worker_and_its_run_dir_is_swept(ready, fresh):
    driver, workers, runs = _start_driver("wait", ready)
    driver.kill()
    assert driver.wait(timeout=LIMIT_S) == -signal.SIGKILL
    _assert_no_workers(workers)
    assert os.path.isdir(runs[0]), "nothing could remove it yet: a SIGKILL runs no code"
    with lf.init(backend="processes", num_workers=1):  # the next init, in this process
        assert not os.path.exists(runs[0])


def test_without_pdeathsig_busy_workers_still_end_with_the_driver(ready, fresh):
    """Where PDEATHSIG is missing, the worker's watch on its pipe ends it: EOF (the
    driver is gone) while a task runs means no one will read the result."""
    driver, workers, runs = _start_driver("wait", ready, "nopdeathsig")
    driver.kill()
    driver.wait(timeout=LIMIT_S)
    _assert_no_workers(workers)


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c", "exit"])
def test_driver_ending_without_shutdown_cleans_up_itself(ready, how):
    driver, workers, runs = _start_driver("exit" if how == "exit" else "wait", ready)
    if how == "sigterm":
        driver.send_signal(signal.SIGTERM)
    elif how == "ctrl-c":
        os.killpg(driver.pid, signal.SIGINT)  # as a terminal does: the whole group
    else:
        driver.stdin.write("go\n")
        driver.stdin.flush()
    code = driver.wait(timeout=LIMIT_S)
    # Python ends an uncaught KeyboardInterrupt by dying of SIGINT, after atexit
    expected = {"sigterm": -signal.SIGTERM, "ctrl-c": -signal.SIGINT, "exit": 0}[how]
    assert code == expected
    _assert_no_workers(workers)
    _wait_until(lambda: not os.path.exists(runs[0]), f"{runs[0]} is still there")
