"""The ``threads`` backend: ``worker.run_task`` on a thread pool in the driver, with an
in-memory store. For tests and debugging: everything is serialized exactly as on the
other backends, so a function that works here ships the same way to processes and
Lambda.

``timeout_s`` is honoured softly: the task's future fails with a TIMEOUT result at the
deadline; the thread itself cannot be killed and runs on, its late result discarded.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future

from lambdaflow.runtime.backends.pool import TaskThreads
from lambdaflow.runtime.store.memory import MemoryStore
from lambdaflow.runtime.task import TIMEOUT, TaskMessage, TaskResult, failure
from lambdaflow.runtime.worker import run_task


class ThreadsBackend:
    name = "threads"
    eager_delete = True

    def __init__(self, num_workers: int | None = None) -> None:
        self.num_workers = num_workers or max(8, 2 * (os.cpu_count() or 1))
        self.store = MemoryStore()
        self._pool = TaskThreads(self.num_workers, self._run, "lambdaflow")

    def _run(self, msg: TaskMessage) -> TaskResult:
        result = run_task(msg, self.store, measure_memory=False)
        result.stats["env_id"] = threading.current_thread().name
        result.stats["backend"] = self.name
        return result

    def submit(self, msg: TaskMessage) -> Future:
        inner = self._pool.submit(msg)
        timeout = msg.options.get("timeout_s")
        if not timeout:
            return inner
        outer: Future = Future()
        lock = threading.Lock()

        def settle(result: TaskResult | None, exc: BaseException | None = None) -> None:
            with lock:
                if outer.done():
                    return
                if exc is not None:
                    outer.set_exception(exc)
                else:
                    outer.set_result(result)

        def on_inner(f: Future) -> None:
            if f.cancelled():
                with lock:
                    outer.cancel()
                return
            exc = f.exception()
            settle(None if exc else f.result(), exc)

        timer = threading.Timer(
            timeout,
            lambda: settle(failure(msg.task_id, msg.attempt, TIMEOUT,
                                   f"timed out after {timeout} s (timeout_s={timeout})")),
        )
        timer.daemon = True
        timer.start()
        inner.add_done_callback(lambda f: (timer.cancel(), on_inner(f)))
        outer.add_done_callback(lambda f: inner.cancel() if f.cancelled() else None)
        outer.set_running_or_notify_cancel()
        return outer

    def shutdown(self) -> None:
        self._pool.shutdown()
