"""The worker process of the ``processes`` backend.

    python -m lambdaflow.runtime.backends.process_worker RFD WFD SHM_PATH

Reads frames (u32 length + msgpack ``[[seq, message-list], ...]``) from RFD, runs each
message with ``worker.run_task`` and writes ``[[seq, result-list], ...]`` frames to WFD.
Before running task ``seq`` it writes (seq, start time) into the shared-memory file
SHM_PATH, so the driver knows exactly which task was running if this process dies or
overruns its timeout, with no message on the pipe. Results of fast tasks are batched
(written after at most 2 ms, or when no work is left) so no-op tasks are not a write
each.
"""

from __future__ import annotations

import collections
import mmap
import os
import struct
import sys
import threading
import time

import msgpack

LEN = struct.Struct("<I")
SHM = struct.Struct("<qd")  # seq of the running task, its start time (epoch s)
FLUSH_AFTER_S = 0.002


def read_exact(fd: int, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Results:
    """Results waiting to be written. Fast tasks' results are batched; a flusher thread
    writes any result older than FLUSH_AFTER_S, so a result never waits behind a long
    (or blocked) next task: a task that ``get``s a ref computed just before it on the
    same worker must see that value arrive at the driver."""

    def __init__(self, wfd: int) -> None:
        self.wfd = wfd
        self.items: list = []
        self.first = 0.0
        self.cond = threading.Condition()
        threading.Thread(target=self._flusher, daemon=True, name="flusher").start()

    def add(self, item: list) -> None:
        with self.cond:
            if not self.items:
                self.first = time.monotonic()
                self.cond.notify()
            self.items.append(item)

    def flush(self) -> None:
        with self.cond:
            if self.items:
                write_all(self.wfd, _frame(self.items))
                self.items = []

    def _flusher(self) -> None:
        with self.cond:
            while True:
                while not self.items:
                    self.cond.wait()
                left = self.first + FLUSH_AFTER_S - time.monotonic()
                if left > 0:
                    self.cond.wait(left)
                    continue
                write_all(self.wfd, _frame(self.items))
                self.items = []


def main(rfd: int, wfd: int, shm_path: str) -> None:
    from lambdaflow.runtime.task import TaskMessage
    from lambdaflow.runtime.worker import run_task

    with open(shm_path, "r+b") as f:
        shm = mmap.mmap(f.fileno(), SHM.size)
    pending: collections.deque = collections.deque()
    results = _Results(wfd)
    while True:
        if not pending:
            results.flush()
            head = read_exact(rfd, LEN.size)
            if head is None:
                return  # the driver closed the pipe: shut down
            body = read_exact(rfd, LEN.unpack(head)[0])
            if body is None:
                return
            pending.extend(msgpack.unpackb(body, raw=False))
        seq, fields = pending.popleft()
        msg = TaskMessage.from_list(fields)
        SHM.pack_into(shm, 0, seq, time.time())
        result = run_task(msg)
        result.stats["backend"] = "processes"
        results.add([seq, result.to_list()])


def _frame(items: list) -> bytes:
    body = msgpack.packb(items, use_bin_type=True)
    return LEN.pack(len(body)) + body


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
