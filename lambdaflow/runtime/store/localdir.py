"""A store in a local directory, for the ``processes`` backend.

Each key is a file under the root (``<root>/<job>/obj/<id>``). Writes go to a temporary
file that is renamed into place (``put``) or hard-linked to its name (``create``: the
first writer wins), so a key either holds a whole value or does not exist;
``get`` maps large objects copy-on-write (no copy; writable, page-aligned arrays) and
reads small ones into a 64-byte aligned buffer.

The default root is per user: ``/dev/shm/lambdaflow-<uid>`` (memory-backed) when /dev/shm
exists and has room, else ``<tempdir>/lambdaflow-<uid>``. Every directory lambdaflow
makes is 0700 and files are 0600. A root is checked before use (``private_dir``): it must
be a real directory owned by this user that no one else can write; one that another
user created first, or that is group/world-writable, is refused (``ConfigError``), since
whoever controls it could swap the files of every run under it. /dev/shm and /tmp are
sticky, so once the directory is ours no one else can rename or remove it.
"""

from __future__ import annotations

import mmap
import os
import shutil
import stat
import tempfile
import uuid

from lambdaflow.errors import ConfigError, ObjectLostError
from lambdaflow.runtime.store.base import Data, Readable, buffers
from lambdaflow.serialization import aligned_buffer

MMAP_MIN = 256 * 1024  # whole-object reads at least this big are memory-mapped
PRIVATE = 0o700
SHM_DIR = "/dev/shm"


def default_root() -> str:
    """The per-user base directory of local stores, created 0700 and checked."""
    base = tempfile.gettempdir()
    try:
        st = os.statvfs(SHM_DIR)
        if st.f_bavail * st.f_frsize > 1 << 30 and os.access(SHM_DIR, os.W_OK):
            base = SHM_DIR
    except OSError:
        pass
    return private_dir(os.path.join(base, f"lambdaflow-{os.geteuid()}"))


def private_dir(path: str) -> str:
    """Create ``path`` with mode 0700 if it is missing (its parents as needed) and check
    it: a directory, not a symlink, owned by this user, writable by no one else.
    Returns ``path``; raises ConfigError naming the problem and the fix."""
    make_dirs(os.path.dirname(path))
    try:
        os.mkdir(path, PRIVATE)
    except FileExistsError:
        pass
    st = os.lstat(path)
    fix = ("remove it (as its owner or root) or point lambdaflow elsewhere with "
           "store_dir=... / LAMBDAFLOW_STORE_DIR")
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ConfigError(
            f"local store directory {path} is not a plain directory (a symlink or a file "
            f"there could redirect every run's files); {fix}")
    if st.st_uid != os.geteuid():
        raise ConfigError(
            f"local store directory {path} belongs to uid {st.st_uid}, not to this user "
            f"(uid {os.geteuid()}): whoever owns it could swap the files of every run "
            f"under it, so lambdaflow will not use it; {fix}")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"local store directory {path} is writable by its group or by everyone (mode "
            f"{stat.S_IMODE(st.st_mode):04o}): others could swap its files; make it private "
            f"with `chmod 700 {path}`, or {fix}")
    return path


def make_dirs(path: str, below: str | None = None) -> None:
    """``os.makedirs(path, exist_ok=True)`` with every directory it creates 0700
    (``makedirs``' own mode reaches only the last one). With ``below``, only directories
    under ``below`` are made: if ``below`` itself is gone (the store was removed at
    shutdown) this raises FileNotFoundError rather than bring it back."""
    if not path or os.path.isdir(path):
        return
    if below is not None and path == below:
        raise FileNotFoundError(f"the store directory {below} is gone")
    make_dirs(os.path.dirname(path), below)
    try:
        os.mkdir(path, PRIVATE)
    except FileExistsError:
        pass


class LocalDirStore:
    def __init__(self, root: str | None = None) -> None:
        self.root = private_dir(os.path.realpath(root or default_root()))
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
        tmp, total = self._write_tmp(path, data)
        os.replace(tmp, path)
        return total

    def create(self, key: str, data: Data) -> int | None:
        """The temporary file is hard-linked to the key's name: ``link`` fails when the
        name exists, so the first writer wins atomically (``rename`` would overwrite)."""
        path = self._path(key)
        tmp, total = self._write_tmp(path, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return None
        finally:
            os.unlink(tmp)
        return total

    def _write_tmp(self, path: str, data: Data) -> tuple[str, int]:
        """Write ``data`` to a new temporary file next to ``path``: (its name, bytes)."""
        parent = os.path.dirname(path)
        if parent not in self._dirs:
            make_dirs(parent, below=self.root)
            self._dirs.add(parent)
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
        bufs = buffers(data)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            total = sum(b.nbytes for b in bufs)
            while bufs:
                n = os.writev(fd, bufs[:1024])
                # drop fully written buffers, keep the tail of a partial one
                while bufs and n >= bufs[0].nbytes:
                    n -= bufs[0].nbytes
                    bufs.pop(0)
                if n:
                    bufs[0] = bufs[0][n:]
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        return tmp, total

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
