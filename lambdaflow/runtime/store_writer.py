"""StoreWriter: a scheduler's store writes and deletes, in order, on a thread of their own
(a store may be S3: no command under the scheduler's lock may wait for the network)."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from lambdaflow.runtime.store.base import Store

log = logging.getLogger(__name__)


class StoreWriter:
    """Writes and deletes on behalf of a scheduler, in order, off the callers' threads."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def put(self, key: str, data: Any) -> None:
        self._submit(self._store.put, key, data)

    def delete(self, key: str) -> None:
        self._submit(self._store.delete, key)

    def _submit(self, fn: Callable, *args: Any) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lambdaflow-store",
                                            daemon=True)
            self._thread.start()
        self._queue.put((fn, args))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
            except Exception as exc:  # freed bytes are garbage: never fail for them
                log.debug("store %s%s failed: %s", fn.__name__, args[:1], exc)

    def barrier(self, timeout: float | None) -> bool:
        """Wait until every write and delete submitted so far is done."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue.put((done.set, ()))
        return done.wait(timeout)

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
