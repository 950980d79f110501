"""A store in a local directory, for the ``processes`` backend.

Each key is a file under the root (``<root>/<job>/obj/<id>``). Writes go to a temporary
file that is renamed into place, so a key either holds a whole value or does not exist;
``get`` maps large objects copy-on-write (no copy; writable, page-aligned arrays) and
reads small ones into a 64-byte aligned buffer. The default
root is on ``/dev/shm`` (memory-backed) when it exists and has room, else the temp dir.
"""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile
import uuid

from lambdaflow.errors import ObjectLostError
from lambdaflow.runtime.store.base import Data, Readable, buffers
from lambdaflow.serialization import aligned_buffer

MMAP_MIN = 256 * 1024  # whole-object reads at least this big are memory-mapped


def default_root() -> str:
    shm = "/dev/shm"
    try:
        st = os.statvfs(shm)
        if st.f_bavail * st.f_frsize > 1 << 30 and os.access(shm, os.W_OK):
            return os.path.join(shm, "lambdaflow")
    except OSError:
        pass
    return os.path.join(tempfile.gettempdir(), "lambdaflow")


class LocalDirStore:
    def __init__(self, root: str | None = None) -> None:
        self.root = os.path.abspath(root or default_root())
        os.makedirs(self.root, exist_ok=True)
        self.uri = f"file://{self.root}"
        self._dirs: set[str] = set()

    @classmethod
    def from_uri(cls, uri: str) -> LocalDirStore:
        return cls(uri[len("file://") :])

    def _path(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"invalid store key {key!r}")
        return os.path.join(self.root, key)

    def put(self, key: str, data: Data) -> int:
        path = self._path(key)
        parent = os.path.dirname(path)
        if parent not in self._dirs:
            os.makedirs(parent, exist_ok=True)
            self._dirs.add(parent)
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
        bufs = buffers(data)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            total = sum(b.nbytes for b in bufs)
            written = 0
            while bufs:
                n = os.writev(fd, bufs[:1024])
                written += n
                # drop fully written buffers, keep the tail of a partial one
                while bufs and n >= bufs[0].nbytes:
                    n -= bufs[0].nbytes
                    bufs.pop(0)
                if n:
                    bufs[0] = bufs[0][n:]
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return total

    def get(self, key: str, start: int | None = None, end: int | None = None) -> Readable:
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise ObjectLostError(
                f"object {key!r} is missing from {self.uri}", key=key
            ) from None
        try:
            size = os.fstat(fd).st_size
            if start is None and end is None and size >= MMAP_MIN:
                # A private copy-on-write mapping: no copy, pages come straight from the
                # page cache (RAM on /dev/shm), and arrays unpickled from it are writable.
                return mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE,
                                 prot=mmap.PROT_READ | mmap.PROT_WRITE)
            lo = 0 if start is None else min(start, size)
            hi = size if end is None else min(end, size)
            whole = start is None and end is None
            out = aligned_buffer(max(0, hi - lo)) if whole else bytearray(max(0, hi - lo))
            view = memoryview(out)
            pos = 0
            while pos < len(out):
                n = os.preadv(fd, [view[pos:]], lo + pos)
                if n == 0:
                    raise ObjectLostError(f"object {key!r} was truncated in {self.uri}", key=key)
                pos += n
            return out
        finally:
            os.close(fd)

    def exists(self, key: str) -> bool:
        return os.path.exists(self._path(key))

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass

    def delete_prefix(self, prefix: str) -> int:
        path = self._path(prefix.rstrip("/")) if prefix else self.root
        if os.path.isdir(path):
            count = sum(len(files) for _, _, files in os.walk(path))
            shutil.rmtree(path, ignore_errors=True)
            self._dirs = {d for d in self._dirs if not d.startswith(path)}
            return count
        parent, stem = os.path.split(path)
        count = 0
        if os.path.isdir(parent):
            for name in os.listdir(parent):
                if name.startswith(stem):
                    full = os.path.join(parent, name)
                    if os.path.isdir(full):
                        shutil.rmtree(full, ignore_errors=True)
                    else:
                        os.unlink(full)
                    count += 1
        return count
