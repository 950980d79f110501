"""Integrity of what lambdaflow unpickles: the job key, the worker's store, function blobs.

Threat (docs/SECURITY.md): a store is shared. Every job of an S3 deployment writes the
same bucket with the same role; on one machine every job of a user writes under the same
directory. Without a check, whoever can write a job's keys (another job's task, anyone
with write access to the bucket) runs code in that job's driver and workers, since they
unpickle what they read. So:

    driver                                  worker
    ──────                                  ──────
    job_key = new_job_key()                 store = task_store(message)
    backend.store = SignedStore(store,        = SignedStore(open_store(uri), message.job_key)
                                job_key)    every get() checks the blob's tag first
    TaskMessage(..., job_key=job_key) ───►  check_function(fn_key, data) before cloudpickle
      over the private channel only: the     (the digest in ``<job>/fn/<sha256>``)
      worker's pipe (processes), the TLS
      Invoke payload (lambda), memory (threads)

The key is 32 bytes from ``secrets``; it is never written to a store, a log or a repr.
Values that travel *inline* (small arguments, dependencies and results inside the task
message or the reply) carry no tag: they move only over the private channel, whose two
ends are the driver and the worker it sent the key to; a tag there would be made and
checked by the same two parties. Blobs in the store are the ones a third party can
reach, and each is tagged (``SignedStore``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

from lambdaflow.errors import IntegrityError
from lambdaflow.runtime import keys
from lambdaflow.runtime.store import Store, open_store
from lambdaflow.runtime.store.signed import KEY_SIZE, SignedStore

if TYPE_CHECKING:
    from lambdaflow.runtime.task import TaskMessage


def new_job_key() -> bytes:
    """A fresh random key for one job (driver side)."""
    return secrets.token_bytes(KEY_SIZE)


def task_store(message: TaskMessage, store: Store | None = None) -> Store:
    """The store a worker uses for ``message``: ``store`` when the backend hands one over
    (the threads backend passes the driver's own ``SignedStore``), else the store its
    URI names, checked under the message's job key. A message without a key is refused:
    a worker never reads unchecked blobs."""
    if store is not None:
        return store
    if not message.job_key:
        raise IntegrityError(
            f"task {message.name}[{message.task_id}] carries no job key, so its stored "
            "objects cannot be checked; the driver's lambdaflow is older than this "
            "worker's (upgrade the driver, or redeploy a matching worker)",
            key=message.fn_key,
        )
    return SignedStore(open_store(message.store_uri), message.job_key)


def check_function(fn_key: str, data: bytes | bytearray | memoryview) -> None:
    """Refuse a function blob whose SHA-256 is not the digest its key names
    (``<job>/fn/<sha256>``), wherever the blob came from (the store, or inline in the
    message), so a worker's function cache never holds a function under a wrong name."""
    digest = keys.function_digest(fn_key)
    if digest is None:
        raise IntegrityError(
            f"function key {fn_key!r} is not a content address (<job>/fn/<sha256>); "
            "refusing to load it", key=fn_key)
    if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), digest):
        raise IntegrityError(
            f"function blob {fn_key!r} does not hash to the SHA-256 its key names: it was "
            "replaced or is corrupt, so it was not unpickled; see docs/SECURITY.md",
            key=fn_key)


__all__ = ["new_job_key", "task_store", "check_function", "SignedStore"]
