"""A growing pool of threads that run task messages from a queue.

Shared by the ``threads`` backend (threads run ``worker.run_task``) and the ``lambda``
backend (threads invoke the function). Threads start on demand, up to ``size``, only when
none is idle; each one takes ``(message, future)`` items from one ``SimpleQueue``, skips
futures cancelled while queued, and completes the others with ``run(message)`` (or with
the exception it raised: a backend failure, never the task's own).
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Callable

from lambdaflow.runtime.task import TaskMessage, TaskResult


class TaskThreads:
    def __init__(self, size: int, run: Callable[[TaskMessage], TaskResult], name: str) -> None:
        self.size = max(1, size)
        self._run = run
        self._name = name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads blocked on the queue (approximate; GIL-atomic updates)
        self.closed = False

    def submit(self, msg: TaskMessage) -> Future:
        fut: Future = Future()
        self._queue.put((msg, fut))
        if self._idle == 0 and len(self._threads) < self.size:
            t = threading.Thread(target=self._work, daemon=True,
                                 name=f"{self._name}-{len(self._threads)}")
            self._threads.append(t)
            t.start()
        return fut

    def _work(self) -> None:
        q = self._queue
        while True:
            self._idle += 1
            item = q.get()
            self._idle -= 1
            if item is None:
                return
            msg, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(self._run(msg))
            except BaseException as exc:
                fut.set_exception(exc)

    def shutdown(self) -> None:
        """Cancel what has not started and let every thread exit."""
        if self.closed:
            return
        self.closed = True
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[1].cancel()
        for _ in self._threads:
            self._queue.put(None)
