"""Turning ``f.remote(*args, **kwargs)`` into a submission, the same way for every client
(the driver's runtime, a worker process's pipe client, a Lambda task's nested runtime).

    FunctionHandle   the function, pickled once (content-addressed key per job) and its
                     call signature, checked at ``.remote()`` as a direct call would be
    encode_call      (args, kwargs) -> one frame, with top-level refs replaced by
                     ``DepSlot``s; returns the dependency refs and the nested refs
    place_args       the frame inline (small) or in the store under ``args/<task>``
"""

from __future__ import annotations

import inspect
import pickle
import threading
import types
from collections.abc import Callable, Sequence
from typing import Any

from lambdaflow import serialization
from lambdaflow.errors import BackendError
from lambdaflow.runtime import keys
from lambdaflow.runtime.refs import ObjectRef
from lambdaflow.runtime.store.base import Store
from lambdaflow.runtime.task import DepSlot

_EMPTY_ARGS = serialization.dumps_bytes(((), {}))
_ATOMS = frozenset({int, float, str, bytes, bool, type(None), complex})
_CO_VARARGS, _CO_VARKEYWORDS = inspect.CO_VARARGS, inspect.CO_VARKEYWORDS


class FunctionHandle:
    """One remote function's body, shared by all its ``.options()`` views."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn
        self.name: str = (getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
                          or "task")
        self._pickled: tuple[str, bytes] | None = None
        self._lock = threading.Lock()
        self._fast = _fast_arity(fn)
        self._signature: inspect.Signature | None = None
        #: (job, function key) last stored by ``key_for``
        self.stored_key: tuple[str, str] = ("", "")

    def pickled(self) -> tuple[str, bytes]:
        """(sha256 digest, cloudpickled bytes), computed once."""
        if self._pickled is None:
            with self._lock:
                if self._pickled is None:
                    self._pickled = serialization.dumps_function(self.fn)
        return self._pickled

    def key_for(self, job_id: str, store_once: Callable[[str, bytes], None]) -> str:
        """The function's key in ``job_id``, storing it (``store_once``) the first time."""
        job, key = self.stored_key
        if job != job_id:
            digest, data = self.pickled()
            key = keys.function_key(job_id, digest)
            store_once(key, data)
            self.stored_key = (job_id, key)
        return key

    def check_call(self, args: tuple, kwargs: dict) -> None:
        """TypeError when the arguments do not fit the function's signature, as calling
        it directly would raise (at ``.remote()``, not later at ``get``)."""
        fast = self._fast
        if fast is not None and not kwargs:
            lo, hi = fast
            if lo <= len(args) <= hi:
                return
        if self._signature is None:
            try:
                self._signature = inspect.signature(self.fn)
            except (TypeError, ValueError):  # builtins without a signature: the task says
                self._fast = (0, 1 << 30)
                return
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}.remote(): {exc}") from None


def _fast_arity(fn: Callable) -> tuple[int, int] | None:
    """(min, max) positional arguments when a positional-only call can be checked by
    counting (a plain function without required keyword-only parameters)."""
    if type(fn) is not types.FunctionType:
        return None
    code = fn.__code__
    kwdefaults = fn.__kwdefaults__ or {}
    required_kwonly = [n for n in code.co_varnames[code.co_argcount:
                                                  code.co_argcount + code.co_kwonlyargcount]
                       if n not in kwdefaults]
    if required_kwonly:
        return None
    hi = (1 << 30) if code.co_flags & _CO_VARARGS else code.co_argcount
    return code.co_argcount - len(fn.__defaults__ or ()), hi


def encode_call(name: str, args: tuple, kwargs: dict
                ) -> tuple[list, list[ObjectRef], list[ObjectRef]]:
    """(frame chunks, dependency refs in DepSlot order, refs nested in the arguments)."""
    if not args and not kwargs:
        return [_EMPTY_ARGS], [], []
    simple = serialization.simple_call_frame(args, kwargs)  # plain data: no refs inside
    if simple is not None:
        return simple, [], []
    deps: list[ObjectRef] = []
    if any(type(a) is ObjectRef for a in args):
        args = tuple(_slot(a, deps) if type(a) is ObjectRef else a for a in args)
        if not kwargs and _slots_and_atoms(args):  # f.remote(ref, 3): no refs left inside
            return [serialization.SIMPLE_MAGIC + pickle.dumps((args, kwargs), protocol=5)], deps, []
    if any(type(v) is ObjectRef for v in kwargs.values()):
        kwargs = {k: _slot(v, deps) if type(v) is ObjectRef else v for k, v in kwargs.items()}
    try:
        with serialization.collect_refs() as nested:
            chunks = serialization.dumps((args, kwargs))
    except Exception as exc:
        culprit = serialization.describe_unpicklable_args(args, kwargs)
        raise TypeError(
            f"cannot send the arguments of {name}.remote(): {exc}"
            + (f"; {culprit} cannot be pickled" if culprit else "")
        ) from exc
    return chunks, deps, nested.refs


def _slots_and_atoms(args: tuple) -> bool:
    """Whether ``args`` holds only DepSlots and atomic values: a plain pickle (DepSlot
    is importable on every worker), no refs nested, nothing to collect."""
    if len(args) > 16:
        return False
    for a in args:
        if type(a) is not DepSlot and type(a) not in _ATOMS:
            return False
    return True


def _slot(ref: ObjectRef, deps: list) -> DepSlot:
    deps.append(ref)
    return DepSlot(len(deps) - 1)


def place_args(chunks: Sequence, store: Store, job_id: str, task_id: str,
               inline_limit: int, name: str) -> tuple[bytes | None, str | None]:
    """(inline frame, None) for small arguments, else (None, store key) after writing
    them to the store."""
    if len(chunks) == 1 and type(chunks[0]) is bytes and len(chunks[0]) <= inline_limit:
        return chunks[0], None  # the common case: one bytes chunk (no buffers), small
    size = serialization.chunks_len(chunks)
    if size <= inline_limit:
        return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), None
    key = keys.args_key(job_id, task_id)
    try:
        store.put(key, chunks)
    except Exception as exc:
        raise BackendError(
            f"cannot store the {size}-byte arguments of {name}.remote() (task {task_id}): "
            f"{exc}"
        ) from exc
    return None, key


def refs_of(refs: Sequence[Any]) -> list[str]:
    return [r.id for r in refs]
