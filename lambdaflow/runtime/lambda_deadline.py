"""A task's ``timeout_s``, enforced inside a Lambda execution environment.

    deadline = Deadline(timeout_s, hard_stop)
    deadline.start()               ARMED
    ... run_task(message) ...        │ timeout_s passes
    deadline.cancel()                ├──> SOFT: SIGALRM; its handler raises TaskDeadline in
                                     │    the task's Python code (BaseException, so
                                     │    ``except Exception`` in the task does not swallow
                                     │    it); blocking calls (sleep, sockets, select) are
                                     │    interrupted too. The worker answers TIMEOUT and
                                     │    the environment stays warm.
                                     │ timeout_s + HARD_STOP_GRACE_S passes, still running
                                     └──> HARD: a watchdog thread calls ``hard_stop()``,
                                          which answers TIMEOUT itself and ends the process
                                          (lambda_entry posts the result to the Runtime API,
                                          then ``os._exit``): Lambda discards the stuck
                                          environment, the caller gets its answer on time.

States: ARMED -> SOFT -> HARD, and ARMED or SOFT -> FINISHED (``cancel``). The watchdog
thread and ``cancel`` take one lock, so a task that finishes just as the hard stop
begins is answered exactly once. The signal handler runs in the main thread between two
bytecodes of the task (or of ``cancel``), so it takes no lock: it only acts while the
soft stop is armed, and ``cancel`` disarms it with its first statement.

What cannot be stopped here: code that neither returns to the interpreter nor releases
the GIL (a C extension looping while it holds the GIL). The signal handler and the
watchdog thread both need the interpreter, so neither runs; the function's own Lambda
timeout ends it (``Task timed out``), and the driver, which waits at most ``timeout_s``
+ grace + margins for a task with ``timeout_s``, reports TaskTimeoutError before that.
The environment is billed until Lambda's timeout. C code that releases the GIL (numpy,
BLAS, FFmpeg decoding, I/O) is covered by the hard stop.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

#: How long after ``timeout_s`` the watchdog ends a task that did not stop.
HARD_STOP_GRACE_S = 5.0

ARMED, SOFT, HARD, FINISHED = "armed", "soft", "hard", "finished"


class TaskDeadline(BaseException):
    """Raised in a task that ran past its ``timeout_s`` (not an ``Exception``, so the
    task's own ``except Exception`` does not swallow it)."""


class Deadline:
    def __init__(self, seconds: float, hard_stop: Callable[[], None],
                 grace_s: float = HARD_STOP_GRACE_S) -> None:
        self.seconds = float(seconds)
        self.grace_s = grace_s
        self._hard_stop = hard_stop
        self._lock = threading.Lock()
        self.state = ARMED
        self._fired = False
        self._soft_armed = False
        self._previous: object = None
        self._previous_timer = (0.0, 0.0)  # another SIGALRM timer, restored by cancel
        self._started = 0.0
        self._signal = False
        self._done = threading.Event()

    @property
    def fired(self) -> bool:
        """The deadline passed before the task returned."""
        return self._fired

    def start(self) -> None:
        try:  # signals work only in the main thread (where awslambdaric runs handlers)
            self._previous = signal.signal(signal.SIGALRM, self._on_alarm)
            self._soft_armed = self._signal = True
            self._started = time.monotonic()
            self._previous_timer = signal.setitimer(signal.ITIMER_REAL, self.seconds)
        except (ValueError, AttributeError, OSError):
            self._soft_armed = self._signal = False
        threading.Thread(target=self._watch, name="lambdaflow-deadline", daemon=True).start()

    def _watch(self) -> None:
        if hasattr(signal, "pthread_sigmask"):  # SIGALRM is for the task's (main) thread
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        if not self._done.wait(self.seconds + self.grace_s):
            self._on_watchdog()

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if not self._soft_armed:
            return
        self._soft_armed = False
        self._fired, self.state = True, SOFT
        raise TaskDeadline(f"the task ran past its timeout_s={self.seconds:g}")

    def _on_watchdog(self) -> None:
        with self._lock:
            if self.state == FINISHED:
                return
            self._fired, self.state = True, HARD
            self._hard_stop()  # ends the process; the lock is never released

    def cancel(self) -> None:
        """The task returned: disarm both stops (``fired`` stays True if it had)."""
        self._soft_armed = False
        if self._signal:
            signal.setitimer(signal.ITIMER_REAL, 0)
        with self._lock:
            self.state = FINISHED
        self._done.set()
        if self._signal:
            signal.signal(signal.SIGALRM, self._previous)  # type: ignore[arg-type]
            self._signal = False
            delay, interval = self._previous_timer
            if delay > 0:  # someone else's alarm (a test timeout, user code): keep it
                left = delay - (time.monotonic() - self._started)
                signal.setitimer(signal.ITIMER_REAL, max(left, 0.001), interval)


__all__ = ["Deadline", "HARD_STOP_GRACE_S", "TaskDeadline"]
