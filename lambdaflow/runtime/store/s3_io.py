"""Byte plumbing for the S3 store: reading a streaming body into one preallocated
buffer, and presenting a list of buffers (a serialized value's frame) as one seekable
file so boto3 can send it without the buffers being joined first."""

from __future__ import annotations

import io
from typing import Any


class BodyError(Exception):
    """A response body shorter or longer than its Content-Length (retried)."""


def read_body(body: Any, length: int) -> bytearray:
    """Read exactly ``length`` bytes of a streaming body into one new bytearray."""
    out = bytearray(length)
    view = memoryview(out)
    got = 0
    try:
        while got < length:
            n = body.readinto(view[got:])
            if not n:
                raise BodyError(f"response body ended after {got} of {length} bytes")
            got += n
        # One more read lets botocore verify length and checksum at the end of stream.
        if body.readinto(bytearray(1)):
            raise BodyError(
                f"response body is longer than its Content-Length {length}"
            )
    finally:
        body.close()
    return out


class BuffersReader(io.RawIOBase):
    """A seekable read-only file over bytes ``[start, end)`` of a list of buffers, so a
    request body is sent from the caller's buffers without joining them."""

    def __init__(self, views: list[memoryview], start: int, end: int) -> None:
        super().__init__()
        self._views, self._start, self._end, self._pos = views, start, end, 0

    def __len__(self) -> int:
        return self._end - self._start

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = (0, self._pos, len(self))[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, b: Any) -> int:
        out = memoryview(b).cast("B")
        want = max(0, min(len(out), len(self) - self._pos))
        at, written, base = self._start + self._pos, 0, 0
        for view in self._views:
            if written >= want:
                break
            if at < base + view.nbytes:
                lo = at - base
                take = min(view.nbytes - lo, want - written)
                out[written : written + take] = view[lo : lo + take]
                written += take
                at += take
            base += view.nbytes
        self._pos += written
        return written

    def read(self, size: int | None = -1) -> bytes:
        remaining = max(0, len(self) - self._pos)
        size = remaining if size is None or size < 0 else min(size, remaining)
        at, base = self._start + self._pos, 0
        for view in self._views:  # the common case: one copy out of a single buffer
            if at < base + view.nbytes:
                if at + size <= base + view.nbytes:
                    self._pos += size
                    return view[at - base : at - base + size].tobytes()
                break
            base += view.nbytes
        buf = bytearray(size)
        return bytes(buf[: self.readinto(buf)])


