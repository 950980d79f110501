"""The worker-side deadline: the soft stop interrupts Python code and blocking calls;
the hard stop runs when the task does not come back to Python (SIGALRM blocked stands in
for a C call that ignores signals); cancel disarms both."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from lambdaflow.runtime.lambda_deadline import Deadline, TaskDeadline


def test_soft_stop_interrupts_a_blocking_call():
    hard = []
    d = Deadline(0.2, lambda: hard.append(1), grace_s=5)
    d.start()
    with pytest.raises(TaskDeadline, match="timeout_s=0.2"):
        try:
            time.sleep(10)
        finally:
            d.cancel()
    assert d.fired and d.state == "finished" and hard == []
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL or callable(
        signal.getsignal(signal.SIGALRM))


def test_except_exception_does_not_swallow_it():
    d = Deadline(0.1, lambda: None, grace_s=5)
    d.start()
    caught = []
    try:
        try:
            time.sleep(5)
        except Exception as exc:  # what user code often does
            caught.append(exc)
    except TaskDeadline:
        pass
    finally:
        d.cancel()
    assert caught == [] and d.fired


def test_cancel_in_time_fires_nothing():
    hard = []
    d = Deadline(0.3, lambda: hard.append(1), grace_s=0.1)
    d.start()
    d.cancel()
    time.sleep(0.6)
    assert not d.fired and hard == []


def test_hard_stop_when_the_task_does_not_stop():
    """A task that swallows the soft stop (``except BaseException``) and goes on, like
    one stuck in a C call, still gets the hard stop at timeout + grace."""
    stopped = threading.Event()
    d = Deadline(0.1, stopped.set, grace_s=0.3)
    d.start()
    try:
        try:
            time.sleep(5)
        except TaskDeadline:
            pass  # swallowed: the task keeps running
        assert stopped.wait(5)
        assert d.state == "hard" and d.fired
    finally:
        d.cancel()


def test_another_alarm_survives_a_deadline():
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *a: fired.append("theirs"))
    signal.setitimer(signal.ITIMER_REAL, 0.4)
    try:
        d = Deadline(5, lambda: None)
        d.start()
        d.cancel()
        time.sleep(1.0)
        assert fired == ["theirs"]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_outside_the_main_thread_only_the_watchdog_works():
    stopped = threading.Event()
    box = {}

    def run():
        d = Deadline(0.1, stopped.set, grace_s=0.1)
        d.start()
        box["ok"] = stopped.wait(5)
        d.cancel()

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    assert box["ok"]
