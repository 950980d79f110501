"""In-memory store for the ``threads`` backend (large arguments; values themselves stay
in the scheduler as shared frames) and tests.

Stores are registered by id so a worker on the same process can reopen one from its URI
(``memory://<id>``), as ``open_store`` does for every store kind.
"""

from __future__ import annotations

import threading
import uuid
import weakref

from lambdaflow.errors import ObjectLostError
from lambdaflow.runtime.store.base import Data, Readable, buffers
from lambdaflow.serialization import aligned_buffer

_REGISTRY: weakref.WeakValueDictionary[str, MemoryStore] = weakref.WeakValueDictionary()


class MemoryStore:
    def __init__(self, store_id: str | None = None) -> None:
        self.id = store_id or uuid.uuid4().hex[:12]
        self.uri = f"memory://{self.id}"
        self._data: dict[str, bytes] = {}
        self._lock = threading.Lock()
        _REGISTRY[self.id] = self

    @classmethod
    def from_uri(cls, uri: str) -> MemoryStore:
        store_id = uri[len("memory://") :]
        store = _REGISTRY.get(store_id)
        if store is None:
            raise ObjectLostError(
                f"memory store {uri} is gone (its runtime was shut down)", key=uri
            )
        return store

    def put(self, key: str, data: Data) -> int:
        blob = b"".join(buffers(data))
        with self._lock:
            self._data[key] = blob
        return len(blob)

    def create(self, key: str, data: Data) -> int | None:
        blob = b"".join(buffers(data))
        with self._lock:
            if key in self._data:
                return None
            self._data[key] = blob
        return len(blob)

    def get(self, key: str, start: int | None = None, end: int | None = None) -> Readable:
        """A writable copy: 64-byte aligned for whole objects (``serialization.loads``
        then needs no second copy to align its arrays)."""
        try:
            blob = self._data[key]
        except KeyError:
            raise ObjectLostError(f"object {key!r} is not in {self.uri}", key=key) from None
        if start is not None or end is not None:
            return bytearray(blob[start:end])
        out = aligned_buffer(len(blob))
        out[:] = blob
        return out

    def exists(self, key: str) -> bool:
        return key in self._data

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def delete_prefix(self, prefix: str) -> int:
        with self._lock:
            doomed = [k for k in self._data if k.startswith(prefix)]
            for k in doomed:
                del self._data[k]
        return len(doomed)

    def __len__(self) -> int:
        return len(self._data)
