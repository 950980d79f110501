"""The processes backend's worker process (backends/process_worker.py): when its batched
results are sent, and how frames larger than one read of a pipe cross both ways."""

from __future__ import annotations

import os
import time

import psutil
import pytest

import lambdaflow as lf
from lambdaflow.runtime import keys
from lambdaflow.runtime.backends import process_wire as wire


@lf.remote
def quick(i):
    return i


@lf.remote
def gate(path, limit_s=60.0):
    """Return once ``path`` exists (the test creates it; ``limit_s`` keeps a broken test
    from hanging)."""
    end = time.monotonic() + limit_s
    while not os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.005)
    return os.path.exists(path)


@lf.remote
def echo(blob):
    return blob


@pytest.fixture
def one_worker(fresh):
    rt = lf.init(backend="processes", num_workers=1)
    yield rt
    rt.shutdown()


def test_results_are_sent_while_the_next_task_runs(one_worker, tmp_path):
    # Results are logged and sent in batches; a chain of dependent tasks sends each at
    # once and never wakes the flusher. When another task starts while results wait,
    # the flusher must send them: here the next task waits until the test has got
    # them, so a result held back until that task ends would never arrive.
    path = str(tmp_path / "open")
    lf.get([quick.remote(i) for i in range(3)] + [gate.remote(path, 0.0)])  # both timed
    refs = [quick.remote(i) for i in range(20)]
    waiting = gate.remote(path)  # sent to the one worker behind them (timed as quick)
    assert lf.get(refs, timeout=30) == list(range(20))
    open(path, "w").close()
    assert lf.get(waiting, timeout=30) is True


def test_a_chain_of_dependent_tasks_gets_each_result(one_worker):
    ref = quick.remote(0)
    for _ in range(200):
        ref = quick.remote(ref)
    assert lf.get(ref, timeout=60) == 0


def test_frames_larger_than_one_read_cross_both_ways(one_worker):
    # A batch of tasks with inline arguments near the inline limit, and their results
    # inline too: the TASKS and RESULTS frames are several times READ_SIZE, so each is
    # read in pieces on both ends and must be put back together byte for byte.
    lf.get([echo.remote(b"warm") for _ in range(3)])  # timed: the batch goes at once
    size = 60 * 1024
    blobs = [os.urandom(size) for _ in range(64)]
    assert 64 * size > 3 * wire.READ_SIZE
    assert lf.get([echo.remote(b) for b in blobs], timeout=60) == blobs


def _worker_switches() -> int:
    """Voluntary context switches (a thread blocked, then woke) of every thread of every
    worker process of this driver, summed (Linux /proc)."""
    total = 0
    for child in psutil.Process().children():
        if "process_worker" not in " ".join(child.cmdline()):
            continue
        for tid in os.listdir(f"/proc/{child.pid}/task"):
            try:
                status = open(f"/proc/{child.pid}/task/{tid}/status").read()
            except OSError:
                continue
            total += int(status.split("voluntary_ctxt_switches:")[1].split()[0])
    return total


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads /proc (Linux)")
def test_a_chain_wakes_one_thread_of_the_worker_per_task(one_worker):
    # A task sent to an idle worker is read by the thread that runs it (the main thread
    # reads the tasks pipe itself when it has nothing to run): one wake-up per hop.
    # When a reader thread took every frame and handed tasks on to the main thread,
    # each hop woke both: two voluntary switches per hop (2.0-2.2 measured).
    hops = 150
    assert lf.get(quick.remote(0)) == 0  # the worker started, the function known
    before = _worker_switches()
    ref = quick.remote(0)
    for _ in range(hops - 1):
        ref = quick.remote(ref)
    assert lf.get(ref, timeout=60) == 0
    per_hop = (_worker_switches() - before) / hops
    assert per_hop < 1.5, f"the worker's threads woke {per_hop:.2f} times per hop"


@lf.remote
def hold(started, path, limit_s=60.0):
    """Note that it runs (``started``), then wait for ``path`` like ``gate``."""
    open(started, "w").close()
    end = time.monotonic() + limit_s
    while not os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.005)
    return os.path.exists(path)


def _wait_for(path, limit_s=60.0):
    end = time.monotonic() + limit_s
    while not os.path.exists(path):
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.01)


def test_tasks_queued_unread_behind_a_long_task_are_given_back(fresh, tmp_path):
    # A worker's main thread reads its tasks pipe only when it has nothing to run, so
    # tasks sent while it runs a long one wait unread in the pipe. When another worker
    # is free the driver asks for them back (REVOKE): the reader thread must drain the
    # pipe and hand them back (YIELD), or they would wait for the long task to end.
    with lf.init(backend="processes", num_workers=2) as rt:
        opened = str(tmp_path / "open")
        open(opened, "w").close()
        # Both functions measured quick, so tasks are queued behind them.
        lf.get([quick.remote(i) for i in range(50)]
               + [hold.remote(str(tmp_path / f"warm{i}"), opened) for i in range(8)])
        gates = {w: (str(tmp_path / f"{w}.started"), str(tmp_path / f"{w}.open"))
                 for w in "ab"}
        longs = {w: hold.remote(s, o) for w, (s, o) in gates.items()}
        for started, _ in gates.values():
            _wait_for(started)  # both workers busy, each inside its long task
        quicks = [quick.remote(i) for i in range(12)]
        backend = rt.backend

        def holder(w):  # the worker running long task ``w``
            tid = keys.task_of(longs[w].id)
            return next(p for p in backend._procs
                        if any(e.msg.task_id == tid for e in p.inflight.values()))

        end = time.monotonic() + 30
        while sum(len(p.inflight) for p in backend._procs) < 14:  # all sent
            assert time.monotonic() < end
            time.sleep(0.01)
        behind = max("ab", key=lambda w: len(holder(w).inflight))
        free = "b" if behind == "a" else "a"
        assert len(holder(behind).inflight) > 1, "no task was queued behind a long one"
        open(gates[free][1], "w").close()  # that worker ends its task and idles
        assert lf.get(quicks, timeout=45) == list(range(12))  # its gate is still closed
        assert not os.path.exists(gates[behind][1])
        open(gates[behind][1], "w").close()
        assert lf.get(list(longs.values()), timeout=60) == [True, True]
