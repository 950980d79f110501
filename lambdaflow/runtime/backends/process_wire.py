"""The pipe protocol between the processes backend and its worker processes, and the two
shared-memory files a worker keeps for the driver.

Frames, both ways: ``u32 length + msgpack [kind, ...]``. The driver writes TASKS on
one pipe (the worker's main thread reads it itself when it has nothing to run, so a
task wakes only the thread that runs it) and every other frame on a second, the control
pipe (the worker's reader thread's); the worker writes everything on one pipe back.

    driver -> worker                          worker -> driver
    TASKS   [[seq, message], ...]             RESULTS [[seq, result], ...]
    INLINE  req, [[seq, message], ...]        SUBMIT  spec                 (no reply)
            (tasks a blocked request waits    PUT     oid, loc, holds      (no reply)
            for: run them inline)             GET     req, oids, need, main, inline
    REPLY   req, payload                      (main: the task thread waits; inline: it
                                              may run what it waits for: a get)
                                              UNWATCH req                  (gave up waiting)
    BLOCKED req (the wait is real: give       YIELD   [seq, ...]           (queued tasks,
            back your queued tasks)                   given back by a blocked worker,
    REVOKE  (give back your queued tasks:             or on REVOKE)
            others are free, yours is long)
                                              BORROW  [oid, ...]; RELEASE [oid, ...]
                                              LOST    oid, loc; CANCEL req, oid, force

``RunningStack`` (``<dir>/worker-N.run``): the seq and start time of each task the worker
is running, innermost last (a task waiting in ``get`` may run another inline), so the
driver knows which tasks a dead worker was running and when each started.

``ResultLog`` (``<dir>/worker-N.log``): each result, packed, is appended here before it
is sent; a batch sent on the pipe is cleared from the log. After a crash the driver reads
the log, so a finished result is never lost with its worker and never runs again.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator

import msgpack

LEN = struct.Struct("<I")
#: most bytes one read of a pipe takes in (into a buffer kept for it: ``os.read(fd, n)``
#: allocates n bytes a call, and above glibc's mmap threshold maps and unmaps them)
READ_SIZE = 1 << 20

# driver -> worker
TASKS, INLINE, REPLY, BLOCKED, REVOKE = 0, 1, 2, 3, 4
# worker -> driver
RESULTS, SUBMIT, PUT, GET, UNWATCH, YIELD, BORROW, RELEASE, LOST, CANCEL = range(10)


def frame(*fields: object) -> bytes:
    body = msgpack.packb(list(fields), use_bin_type=True)
    return LEN.pack(len(body)) + body


class Framer:
    """``frame`` with a kept packer (one thread at a time: a Packer is not thread-safe);
    saves building a Packer per frame on a hot path."""

    def __init__(self) -> None:
        self._packer = msgpack.Packer(use_bin_type=True)

    def frame(self, *fields: object) -> bytes:
        body = self._packer.pack(list(fields))
        return LEN.pack(len(body)) + body


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def split_frames(buf: bytearray) -> Iterator[list]:
    """Complete frames at the start of ``buf`` (consumed from it), decoded."""
    while len(buf) >= LEN.size:
        n = LEN.unpack_from(buf, 0)[0]
        if len(buf) < LEN.size + n:
            return
        fields = msgpack.unpackb(memoryview(buf)[LEN.size:LEN.size + n], raw=False)
        del buf[:LEN.size + n]
        yield fields


def results_head(count: int) -> bytes:
    """The msgpack head of ``[RESULTS, [<count entries>]]``, its entries packed apart."""
    packer = msgpack.Packer()
    return packer.pack_array_header(2) + packer.pack(RESULTS) + packer.pack_array_header(count)


_RESULTS_HEAD = [results_head(n) for n in range(64)]  # the common counts, made once


def _map(path: str, size: int, create: bool) -> mmap.mmap:
    if create:
        with open(path, "wb") as f:
            f.truncate(size)
    with open(path, "r+b") as f:
        return mmap.mmap(f.fileno(), size)


class RunningStack:
    """``u32 depth`` then up to MAX_DEPTH ``(i64 seq, f64 start)`` entries."""

    MAX_DEPTH = 64
    _HEAD = struct.Struct("<I4x")
    _ENTRY = struct.Struct("<qd")
    SIZE = _HEAD.size + MAX_DEPTH * _ENTRY.size

    def __init__(self, path: str, create: bool = False) -> None:
        self.path = path
        self._mm = _map(path, self.SIZE, create)
        #: (the worker, its only writer) the depth it last wrote, not read back each time
        self._depth = self._HEAD.unpack_from(self._mm, 0)[0]

    def push(self, seq: int, start: float) -> bool:
        depth = self._depth
        if depth >= self.MAX_DEPTH:
            return False
        self._ENTRY.pack_into(self._mm, self._HEAD.size + depth * self._ENTRY.size, seq, start)
        self._HEAD.pack_into(self._mm, 0, depth + 1)
        self._depth = depth + 1
        return True

    def pop(self) -> None:
        self._depth = max(0, self._depth - 1)
        self._HEAD.pack_into(self._mm, 0, self._depth)

    def entries(self) -> list[tuple[int, float]]:
        depth = min(self._HEAD.unpack_from(self._mm, 0)[0], self.MAX_DEPTH)
        return [self._ENTRY.unpack_from(self._mm, self._HEAD.size + i * self._ENTRY.size)
                for i in range(depth)]

    def close(self) -> None:
        try:
            self._mm.close()
        except (BufferError, ValueError):
            pass


class ResultLog:
    """``u64 used`` then packed ``[seq, result]`` entries back to back."""

    SIZE = 8 * 1024 * 1024
    _USED = struct.Struct("<Q")

    def __init__(self, path: str, create: bool = False) -> None:
        self.path = path
        self._mm = _map(path, self.SIZE, create)
        self.count = 0
        #: (the worker, its only writer) the length it last committed
        self._used = self._USED.unpack_from(self._mm, 0)[0]

    @property
    def used(self) -> int:
        """The committed length, as the file says (the driver reads it after a crash)."""
        return self._USED.unpack_from(self._mm, 0)[0]

    def fits(self, n: int) -> bool:
        return self._USED.size + self._used + n <= self.SIZE

    def append(self, entry: bytes) -> None:
        used = self._used
        start = self._USED.size + used
        self._mm[start:start + len(entry)] = entry
        self._USED.pack_into(self._mm, 0, used + len(entry))  # the commit point
        self._used = used + len(entry)
        self.count += 1

    def results_frame(self) -> bytes:
        """A RESULTS frame holding every logged entry (without copying them twice)."""
        used = self._used
        head = _RESULTS_HEAD[self.count] if self.count < len(_RESULTS_HEAD) else (
            results_head(self.count))
        body = self._mm[self._USED.size:self._USED.size + used]
        return LEN.pack(len(head) + used) + head + body

    def clear(self) -> None:
        self._USED.pack_into(self._mm, 0, 0)
        self._used = self.count = 0

    def read(self) -> list[list]:
        """(Driver, after the worker died) the logged ``[seq, result]`` entries."""
        used = min(self.used, self.SIZE - self._USED.size)
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(self._mm[self._USED.size:self._USED.size + used])
        out = []
        try:
            for entry in unpacker:
                out.append(entry)
        except (ValueError, msgpack.ExtraData):  # a torn last entry: it was not committed
            pass
        return out

    def close(self) -> None:
        try:
            self._mm.close()
        except (BufferError, ValueError):
            pass
