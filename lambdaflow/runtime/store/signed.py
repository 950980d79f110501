"""A store wrapper that authenticates every blob: ``SignedStore(inner, job_key)``.

Layout of a stored blob, on any store (memory, local directory, S3)::

    data | tag        tag = HMAC-SHA256(job_key, DOMAIN | u32 len(key) | key | data)

``put`` appends the 32-byte tag as one more buffer (nothing is joined or copied; the
value's own 64-byte alignment is kept because the tag goes last). ``get`` reads the whole
blob, recomputes the tag and compares it in constant time; only then does it hand the
data (without the tag) to the caller, which unpickles it. A blob that fails raises
``IntegrityError`` naming the key, so bytes nobody authenticated are never unpickled.

The tag binds the storage key, so a blob of this job cannot be replayed under another
of its keys, and the job's key, so a blob of another job (or one written by anyone who
can write to the bucket or the directory, but does not hold this job's key) fails.
What it does not stop: deleting a blob (that is an ``ObjectLostError``, a loss of
availability), or putting back an earlier blob of the *same* key of the same job
(a value this job itself wrote there).

Ranged reads verify the whole blob and return the slice (no caller reads ranges of a
signed store today; per-chunk tags would be the way if one needs to). ``exists``,
``delete`` and ``delete_prefix`` pass through; ``create`` (the fenced write) tags as
``put`` does. Other attributes (``root``, ``bucket``,
``counters`` ...) are the inner store's.

The MAC is HMAC-SHA256 (hashlib, OpenSSL: SHA-NI / ARMv8 SHA2 instructions where the
CPU has them): a 256-bit key and a 256-bit tag, forgery bounded by 2^-128 per try.
``benchmarks/integrity.py`` measures it against keyed BLAKE2b (see docs/BENCHMARKS.md).
"""

from __future__ import annotations

import hmac
import struct
from typing import Any

from lambdaflow.errors import IntegrityError
from lambdaflow.runtime.store.base import Data, Readable, Store, buffers

TAG_SIZE = 32
KEY_SIZE = 32
DOMAIN = b"lambdaflow blob v1\0"
_KEY_LEN = struct.Struct("<I")


class SignedStore:
    """``inner`` with every value tagged and checked under ``job_key`` (32 bytes)."""

    def __init__(self, inner: Store, job_key: bytes) -> None:
        if not isinstance(job_key, (bytes, bytearray)) or len(job_key) != KEY_SIZE:
            raise ValueError(f"a job key is {KEY_SIZE} random bytes (lambdaflow.runtime."
                             "integrity.new_job_key())")
        self.inner = inner
        self.uri = inner.uri
        self._job_key = bytes(job_key)
        self._template: hmac.HMAC | None = None  # the keyed HMAC state, made on first use

    @property
    def job_key(self) -> bytes:
        return self._job_key

    def __getattr__(self, name: str) -> Any:  # root, bucket, counters...: the inner store's
        if name.startswith("_") or name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"SignedStore({self.inner!r})"  # never the key

    # ------------------------------------------------------------------ the MAC
    def tag(self, key: str, views: list[memoryview]) -> bytes:
        """The tag of ``views`` (the value's buffers, back to back) under ``key``."""
        template = self._template
        if template is None:
            template = hmac.new(self._job_key, DOMAIN, "sha256")
            self._template = template
        mac = template.copy()
        name = key.encode()
        mac.update(_KEY_LEN.pack(len(name)))
        mac.update(name)
        for view in views:
            mac.update(view)
        return mac.digest()

    # ---------------------------------------------------------------- the store
    def put(self, key: str, data: Data) -> int:
        views = buffers(data)
        views.append(memoryview(self.tag(key, views)))
        return self.inner.put(key, views) - TAG_SIZE

    def create(self, key: str, data: Data) -> int | None:
        views = buffers(data)
        views.append(memoryview(self.tag(key, views)))
        written = self.inner.create(key, views)
        return None if written is None else written - TAG_SIZE

    def get(self, key: str, start: int | None = None, end: int | None = None) -> Readable:
        blob = self.inner.get(key)
        with memoryview(blob) as whole:
            size = whole.nbytes - TAG_SIZE
            if size < 0:
                raise self._failed(key, "it is shorter than its tag")
            with whole[:size] as data, whole[size:] as tag:
                good = hmac.compare_digest(tag, self.tag(key, [data]))
        if not good:
            raise self._failed(key, "its MAC does not match")
        if start is not None or end is not None:
            return bytearray(memoryview(blob)[:size][start:end])
        if isinstance(blob, bytearray):
            del blob[size:]  # O(1): only the length changes
            return blob
        # A memory map or an aligned view (LocalDirStore): a view without the tag, still
        # writable and zero-copy. Readers take any buffer (serialization.loads).
        return memoryview(blob)[:size]

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def delete_prefix(self, prefix: str) -> int:
        return self.inner.delete_prefix(prefix)

    def _failed(self, key: str, why: str) -> IntegrityError:
        return IntegrityError(
            f"object {key!r} in {self.uri} failed its integrity check ({why}): this job did "
            "not write it, so it was not unpickled. Someone else can write to this store "
            "(another job's task, or anyone with write access to it) or the object is "
            "corrupt; see docs/SECURITY.md",
            key=key,
        )


__all__ = ["SignedStore", "TAG_SIZE", "KEY_SIZE"]
