"""process_proc: a worker process's record and its faults, driven without the backend: a
real worker process is killed, and what ``Workers`` does is seen through the callbacks
it is given (the interface processes.py implements)."""

from __future__ import annotations

import os
import signal
import time

import msgpack
import pytest

from lambdaflow.runtime.backends.process_proc import Callbacks, Entry, Workers, describe_exit
from lambdaflow.runtime.task import CRASH, OK, TIMEOUT, TaskMessage, TaskResult


@pytest.mark.parametrize("code,expect", [
    (None, "exit status unknown"),
    (3, "exit code 3"),
    (-signal.SIGKILL, "killed by SIGKILL; the OOM killer sends SIGKILL"),
    (-signal.SIGTERM, "killed by SIGTERM"),
    (-200, "killed by signal 200"),
])
def test_describe_exit_names_the_signal(code, expect):
    assert describe_exit(code) == expect


class Recorder:
    """The backend's side of the interface, recording each call in order."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def complete(self, p, items) -> None:
        """As the backend does: each result completes (and leaves) its task."""
        self.calls.append(("complete", p, items))
        for seq, fields in items:
            p.inflight.pop(seq).set_result(TaskResult.from_list(fields))

    def callbacks(self) -> Callbacks:
        return Callbacks(
            take_in=lambda p: self.calls.append(("take_in", p)) or False,
            complete=self.complete,
            requeue=lambda entries: self.calls.append(("requeue", entries)),
            forget=lambda p: self.calls.append(("forget", p)),
            call=lambda fn: self.calls.append(("call", fn)))


def _entry(task_id: str, **options) -> Entry:
    e = Entry(TaskMessage(job_id="j", task_id=task_id, name="n", fn_key="k",
                          options=options), None)
    e.set_running_or_notify_cancel()
    return e


@pytest.fixture
def workers(tmp_path):
    rec = Recorder()
    w = Workers(str(tmp_path), rec.callbacks())
    w.procs.append(w.spawn(temporary=False))
    yield w, rec
    w.closing = True
    for p in w.procs:
        p.close(kill=True)


def _three_tasks(p):
    """In ``p``: seq 1 finished (its result logged), 2 running (on the stack), 3 queued."""
    done, running, queued = _entry("t1"), _entry("t2"), _entry("t3")
    p.inflight.update({1: done, 2: running, 3: queued})
    p.stack.push(2, time.time())
    result = TaskResult("t1", 0, OK, values=[{"inline": b"x", "size": 1}])
    p.log.append(msgpack.packb([1, result.to_list()], use_bin_type=True))
    return done, running, queued


def test_a_killed_worker_completes_fails_requeues_and_is_replaced(workers):
    w, rec = workers
    p = w.procs[0]
    done, running, queued = _three_tasks(p)
    os.kill(p.popen.pid, signal.SIGKILL)
    w.exited(p)
    assert p.dead and w.procs[0] is not p and w.started == 2
    assert not os.path.exists(p.stack.path) and not os.path.exists(p.log.path)
    kinds = [c[0] for c in rec.calls]
    assert kinds == ["take_in", "complete", "forget", "requeue"], kinds
    assert rec.calls[1][2][0][0] == 1  # the logged result, by its seq
    failed = running.result()
    assert failed.status == CRASH
    assert f"worker process {p.popen.pid} died (killed by SIGKILL" in failed.error["message"]
    assert rec.calls[3][1] == [queued] and not queued.done()
    assert done.result().status == OK  # finished before the crash: not run again


def test_a_task_past_its_timeout_kills_its_worker(workers):
    w, rec = workers
    p = w.procs[0]
    slow = _entry("slow", timeout_s=0.5)
    p.inflight[1] = slow
    p.stack.push(1, time.time() - 2)
    pid = p.popen.pid
    w.check_timeouts()
    assert slow.result().status == TIMEOUT
    assert "timeout_s=0.5" in slow.result().error["message"]
    assert p.popen.returncode == -signal.SIGKILL, f"worker {pid} was not killed"
    assert w.procs[0] is not p


def test_nothing_is_replaced_while_closing_nor_a_temporary_worker(workers):
    w, rec = workers
    w.procs.append(w.spawn(temporary=True))
    temp = w.procs[1]
    w.replace(temp, "gone")
    assert w.procs == [w.procs[0]] and temp.dead
    w.closing = True
    first = w.procs[0]
    w.replace(first, "gone")
    assert w.procs == [] and w.started == 2
