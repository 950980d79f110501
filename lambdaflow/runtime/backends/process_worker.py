"""The worker process of the ``processes`` backend.

    python -m lambdaflow.runtime.backends.process_worker RFD WFD SHM_PATH

Reads frames (u32 length + msgpack ``[[seq, message-list], ...]``) from RFD, runs each
message with ``worker.run_task`` and writes ``[[seq, result-list], ...]`` frames to WFD.
Before running task ``seq`` it writes (seq, start time) into the shared-memory file
SHM_PATH, so the driver knows exactly which task was running if this process dies or
overruns its timeout, with no message on the pipe. Results of fast tasks are batched
(flushed after 2 ms or when no work is left) so no-op tasks are not a write each.
"""

from __future__ import annotations

import collections
import mmap
import os
import struct
import sys
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


def main(rfd: int, wfd: int, shm_path: str) -> None:
    from lambdaflow.runtime.task import TaskMessage
    from lambdaflow.runtime.worker import run_task

    with open(shm_path, "r+b") as f:
        shm = mmap.mmap(f.fileno(), SHM.size)
    pending: collections.deque = collections.deque()
    out: list = []
    first_out = 0.0
    while True:
        if not pending:
            if out:
                write_all(wfd, _frame(out))
                out = []
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
        if not out:
            first_out = time.monotonic()
        out.append([seq, result.to_list()])
        if time.monotonic() - first_out > FLUSH_AFTER_S:
            write_all(wfd, _frame(out))
            out = []


def _frame(items: list) -> bytes:
    body = msgpack.packb(items, use_bin_type=True)
    return LEN.pack(len(body)) + body


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
