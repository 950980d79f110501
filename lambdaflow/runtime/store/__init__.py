"""Object stores: bytes behind keys (see ``base.Store``).

``open_store(uri)`` rebuilds a store from the URI a task message carries:
``memory://<id>``, ``file:///path`` or ``s3://bucket/prefix``.
"""

from __future__ import annotations

from lambdaflow.runtime.store.base import Store

_OPEN: dict[str, Store] = {}


def open_store(uri: str) -> Store:
    """The store behind ``uri``, cached per process (a warm worker reuses clients)."""
    store = _OPEN.get(uri)
    if store is not None:
        return store
    if uri.startswith("memory://"):
        from lambdaflow.runtime.store.memory import MemoryStore

        return MemoryStore.from_uri(uri)  # not cached: its lifetime is the runtime's
    if uri.startswith("file://"):
        from lambdaflow.runtime.store.localdir import LocalDirStore

        store = LocalDirStore.from_uri(uri)
    elif uri.startswith("s3://"):
        from lambdaflow.runtime.store.s3 import S3Store

        store = S3Store.from_uri(uri)
    else:
        raise ValueError(f"unknown store URI {uri!r} (expected memory://, file:// or s3://)")
    _OPEN[uri] = store
    return store


__all__ = ["Store", "open_store"]
