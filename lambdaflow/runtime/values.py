"""Values in transit: where one is (a *location*), and reading or placing it.

A location is a small dict, made where the value was serialized:

    {"inline": frame bytes, "size": n}   small values, carried in messages
    {"key": store key, "size": n}        large values, in the store
    {"frame": chunks, "size": n}         threads backend only: a frame kept in memory,
                                         its large buffers shared with the producer's
                                         (read-only) arrays, never copied or packed
    {"value": v, "size": n}              threads backend only: an immutable atomic value
                                         (None, bool, int, float, complex, str, bytes, or
                                         a short tuple of these) shared as it is: no
                                         pickling, and nobody can change it in place;
                                         ``n`` is its in-memory size (sys.getsizeof)

``load`` turns a location into the value (``StoredError`` values re-raise their error);
``place`` serializes a value and picks its location, collecting the ids of the refs
nested inside it so the owner can count them without unpickling.
"""

from __future__ import annotations

import sys
from typing import Any

from lambdaflow import serialization
from lambdaflow.runtime import keys
from lambdaflow.runtime.context import StoredError
from lambdaflow.runtime.store.base import Store

#: types whose values are shared, not serialized, between threads (immutable, and
#: holding no other object: no ref inside, nothing a task could mutate)
_ATOMIC = frozenset({type(None), bool, int, float, complex, str, bytes})
_MAX_SHARED_TUPLE = 16
_NOT_SHARED = object()


def shareable(value: Any) -> bool:
    """Whether ``value`` can be shared as it is (see ``{"value": ...}`` above)."""
    t = type(value)
    if t in _ATOMIC:
        return True
    if t is tuple and len(value) <= _MAX_SHARED_TUPLE:
        atomic = _ATOMIC
        for v in value:
            if type(v) not in atomic:
                return False
        return True
    return False


def load(store: Store, loc: dict) -> Any:
    """The value at ``loc``; ObjectLostError (from the store) when its bytes are gone."""
    frame = loc.get("frame")
    if frame is not None:
        value = serialization.loads_chunks(frame)
    elif (value := loc.get("value", _NOT_SHARED)) is not _NOT_SHARED:
        return value  # (never a StoredError: only atomic values are shared)
    else:
        data = loc.get("inline")
        value = serialization.loads(store.get(loc["key"]) if data is None else data)
    if type(value) is StoredError:
        raise value.error
    return value


def load_size(loc: dict) -> int:
    return int(loc.get("size") or 0)


def place(store: Store, job_id: str, oid: str, value: Any, inline_limit: int, *,
          share: str | None = None, commit: bool = False) -> tuple[dict, list[str]]:
    """Serialize ``value`` (object id ``oid``) and place it: with ``share`` ("move" for
    a task's result, "copy" for ``put``: the threads backend) as a frame kept in memory;
    else inline when small, or in the store under its object key. Returns (location,
    ids of the refs nested in it, in ``job_id``).

    ``commit`` (a task's result): the store write is fenced (``store.create``): when
    another attempt of the task already committed the key, that object stays and is
    what this returns, with the refs nested in *it* (see :func:`commit_frame`)."""
    if share is not None and shareable(value):  # immutable: "copy" needs no copy either
        return {"value": value, "size": sys.getsizeof(value)}, []
    chunks = serialization.simple_frame(value)
    if chunks is not None:  # plain data: no refs inside, small
        first = chunks[0]
        size = len(first)
        if share is not None:
            return {"frame": chunks, "size": size}, []
        if size <= inline_limit:
            return {"inline": first, "size": size}, []
    with serialization.collect_refs() as nested:
        chunks = serialization.dumps(value, share=share)
    size = serialization.chunks_len(chunks)
    if share is not None:
        loc = {"frame": chunks, "size": size}
    elif size <= inline_limit:
        loc = {"inline": chunks[0] if len(chunks) == 1 else b"".join(chunks), "size": size}
    else:
        key = keys.object_key(job_id, oid)
        loc = {"key": key, "size": size}
        if not commit:
            store.put(key, chunks)
        else:
            committed = commit_frame(store, key, chunks, job_id)
            if committed is not None:
                return loc, committed
    return loc, [r.id for r in nested.refs if r.job == job_id]


def commit_frame(store: Store, key: str, data: Any, job_id: str) -> list[str] | None:
    """Write a task's result frame ``data`` under ``key`` unless an attempt of the same
    task committed one there first; None when this write won, else the ids (in
    ``job_id``) of the refs nested in the committed object, which then stands for both."""
    if store.create(key, data) is not None:
        return None
    return stored_refs(store, key, job_id)


def stored_refs(store: Store, key: str, job_id: str) -> list[str]:
    """Ids (in ``job_id``) of the refs nested in the object stored under ``key``."""
    return [oid for oid, job in serialization.ref_ids(store.get(key)) if job == job_id]
