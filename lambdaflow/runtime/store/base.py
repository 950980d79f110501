"""The object-store protocol: bytes behind string keys.

Every store implements the same five operations. Keys are built only by
``lambdaflow.runtime.keys``; a store never invents key names. A missing key raises
``ObjectLostError`` naming the key. ``put`` accepts ``bytes``-like data or a list of
buffers (written back to back, so serialized values with out-of-band buffers are not
joined in memory first). ``get`` returns a writable buffer (``bytearray``, a memory map
or a 64-byte aligned ``memoryview``: numpy arrays unpickled from it are writable, and
aligned when the store aligns it) or, for ranged reads, the requested bytes.
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
