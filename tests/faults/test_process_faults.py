"""Worker faults on the ``processes`` backend (issue 14 items 9, 12): SIGKILL and real
segfaults, repeated beyond ``max_retries``, at random in a 200-task run, and a worker
that leaves a helper holding its pipe. Attempts are counted independently of the
runtime (each attempt writes a file first); results are checked against ``i * i``;
every wait is bounded (``get(timeout=...)``); nothing is left behind (worker processes
and the run directory, checked after ``shutdown``)."""

from __future__ import annotations

import os
import signal

import psutil
import pytest

import lambdaflow as lf
from lambdaflow.runtime.backends import process_life

from .tasks import always_crash, count, leave_helper_then_crash, square, square_or_crash

pytestmark = pytest.mark.slow
LIMIT_S = 60


def _workers() -> list[psutil.Process]:
    return [c for c in psutil.Process().children(recursive=True)
            if "process_worker" in " ".join(c.cmdline())]


@pytest.fixture
def marks(tmp_path):
    path = tmp_path / "marks"
    path.mkdir()
    return str(path)


@pytest.fixture
def procs(fresh):
    rt = lf.init(backend="processes", num_workers=2)
    root = rt.backend.store.root
    yield rt
    workers = _workers()
    rt.shutdown()
    _, alive = psutil.wait_procs(workers, timeout=LIMIT_S)
    assert not alive, f"workers left after shutdown: {alive}"
    assert not os.path.exists(root), f"run directory left after shutdown: {root}"


@pytest.mark.parametrize("how,signame", [
    ("sigkill", "SIGKILL"), ("sigsegv", "SIGSEGV"), ("segfault", "SIGSEGV")])
def test_a_crash_on_every_attempt_is_worker_crashed_error_after_max_retries_plus_one(
        procs, marks, how, signame):
    others = [square.remote(i) for i in range(30)]
    bad = always_crash.remote(marks, how)  # max_retries=2
    others += [square.remote(i) for i in range(30, 60)]
    with pytest.raises(lf.WorkerCrashedError, match=f"killed by {signame}"):
        lf.get(bad, timeout=LIMIT_S)
    assert count(marks, "start") == {0: 3}, "exactly max_retries + 1 attempts"
    assert lf.get(others, timeout=LIMIT_S) == [i * i for i in range(60)]
    assert lf.get(square.remote(7), timeout=LIMIT_S) == 49  # the pool recovered


def test_random_crashes_lose_and_duplicate_no_result(procs, marks):
    n, seed, rate = 200, 14, 0.03
    refs = [square_or_crash.remote(marks, i, seed, rate) for i in range(n)]
    assert lf.get(refs, timeout=4 * LIMIT_S) == [i * i for i in range(n)]
    starts, done = count(marks, "start"), count(marks, "done")
    crashes = {i: starts[i] - 1 for i in range(n) if starts[i] > 1}
    attempts = sum(starts.values())
    assert 0.01 <= sum(crashes.values()) / attempts <= 0.05, (crashes, attempts)
    assert done == {i: 1 for i in range(n)}, "every task completed exactly once"
    records = [r for r in procs.scheduler.stats_records()
               if r["name"].endswith("square_or_crash")]
    assert len(records) == attempts  # the runtime saw each attempt, and no other
    assert sum(r["status"] == "crash" for r in records) == sum(crashes.values())


@pytest.mark.parametrize("hold_pipe", [False, True], ids=["forked", "holds-pipe"])
@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "waiter-thread"])
def test_a_helper_holding_the_pipe_does_not_hide_the_crash(
        fresh, marks, monkeypatch, hold_pipe, pidfd):
    if not pidfd:
        monkeypatch.setattr(process_life, "exit_fd", lambda pid: None)
    with lf.init(backend="processes", num_workers=1):
        ref = leave_helper_then_crash.remote(marks, hold_pipe)
        try:
            with pytest.raises(lf.WorkerCrashedError, match="SIGKILL"):
                lf.get(ref, timeout=LIMIT_S)  # on the pipe alone: GetTimeoutError
            (helper,) = count(marks, "helper")
            assert psutil.pid_exists(helper), "the helper still lives (and holds the pipe)"
            assert lf.get(square.remote(3), timeout=LIMIT_S) == 9
        finally:
            for helper in count(marks, "helper"):
                try:
                    os.kill(helper, signal.SIGKILL)
                except ProcessLookupError:
                    pass
