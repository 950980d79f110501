"""The object-store protocol: bytes behind string keys.

Every store implements the same six operations. Keys are built only by
``lambdaflow.runtime.keys``; a store never invents key names. A missing key raises
``ObjectLostError`` naming the key. ``put`` accepts ``bytes``-like data or a list of
buffers (written back to back, so serialized values with out-of-band buffers are not
joined in memory first). ``get`` returns a writable buffer (``bytearray``, a memory map
or a 64-byte aligned ``memoryview``: numpy arrays unpickled from it are writable, and
aligned when the store aligns it) or, for ranged reads, the requested bytes.

``create`` is the fenced write of a task's result (DESIGN.md §3): it writes only when
the key holds nothing, atomically (S3 ``If-None-Match: *``, a hard link in a local
directory, a check under the lock in memory), so of two attempts of one task that write
the same deterministic key the first wins and the other leaves the object alone.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence
from typing import Protocol, Union, runtime_checkable

Buffer = Union[bytes, bytearray, memoryview]
Data = Union[Buffer, Sequence[Buffer]]
#: what ``get`` returns: writable bytes-like memory
Readable = Union[bytearray, memoryview, mmap.mmap]


@runtime_checkable
class Store(Protocol):
    #: A URI from which a worker rebuilds an equivalent store
    #: (``memory://<id>``, ``file:///path``, ``s3://bucket/prefix``).
    uri: str

    def put(self, key: str, data: Data) -> int:
        """Write ``data`` under ``key`` (overwriting); return the number of bytes."""

    def create(self, key: str, data: Data) -> int | None:
        """Write ``data`` under ``key`` only if ``key`` holds no value (the first writer
        wins); the number of bytes written, or None when a value was already there (it
        is left as it was)."""

    def get(self, key: str, start: int | None = None, end: int | None = None) -> Readable:
        """Read the value, or bytes ``[start, end)`` of it. Missing → ObjectLostError."""

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a value."""

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""

    def delete_prefix(self, prefix: str) -> int:
        """Remove every key under ``prefix``; return how many were removed."""


def buffers(data: Data) -> list[memoryview]:
    """``data`` as a list of flat byte memoryviews."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return [memoryview(data).cast("B")]
    return [memoryview(b).cast("B") for b in data]
