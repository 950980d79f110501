"""Serialization of values and functions.

Values: pickle protocol 5 with out-of-band buffers, so a numpy array's memory is written
to the store (or a pipe) as-is instead of being copied into the pickle stream. A
serialized value is a *frame*, a list of buffers written back to back::

    b"LFv1" | u32 nbuf | u64 len(body) | u64 len(buf_i)... | pad | body | pad | buf_0 | pad ...

Every buffer starts on a 64-byte boundary of the frame, and ``loads`` makes sure the
frame itself starts on one in memory (the local stores hand out 64-byte aligned buffers;
any other input with buffers is copied once into aligned memory), so arrays unpickled in
place are 64-byte aligned. ``loads`` slices the frame with memoryviews (no copy); given a
writable buffer the arrays it returns are writable.

Shared frames (the threads backend, ``dumps(value, share=...)``): the chunks are kept in
memory as they are and read with ``loads_chunks``, so large buffers are never copied.
Their buffers are read-only: ``share="move"`` (a task's return value, which the task gives
up) freezes an array that owns its memory in place and copies any other writable array;
``share="copy"`` (``put``) copies every array. Arrays loaded from a shared frame are
read-only, as Ray's are; an array that shares its producer's memory keeps that memory's
alignment.

Functions: cloudpickle, with code objects pickled by ``marshal`` so that they keep their
file name, and their source lines shipped beside them (remote tracebacks show the
user's file, line and source line, also where that file does not exist). Functions defined in modules that are not installed (the user's
own scripts and modules: not under site-packages nor the standard library) are pickled
by value, so a worker needs only the installed packages. An unpicklable closure raises a
``TypeError`` naming the function and the offending object.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import linecache
import marshal
import mmap
import os
import pickle
import struct
import sys
import sysconfig
import threading
import types
from collections import ChainMap
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import cloudpickle

MAGIC = b"LFv1"
SIMPLE_MAGIC = b"LFv0"  # a plain pickle with no out-of-band buffers follows
ALIGN = 64
_HEAD = struct.Struct("<4sI")
_LEN = struct.Struct("<Q")
_ZEROS = bytes(ALIGN)

_local = threading.local()


def _pad(n: int) -> int:
    return (-n) % ALIGN


def _code_reduce(code: types.CodeType) -> tuple:
    """Pickle a code object with its real ``co_filename`` and its source lines.

    cloudpickle (3.1.3 and later) writes ``co_filename = "<dynamic-code>"``, which would
    make a remote traceback read ``File "<dynamic-code>"``. ``marshal`` keeps every field
    of the code object (nested code objects included); driver and worker run the same
    Python minor version (the lambda backend's version ping checks it), as bytecode
    needs anyway. The source lines the code spans travel with it, so a worker where the
    file does not exist (Lambda) still prints them (see :func:`_load_code`).
    """
    return _load_code, (marshal.dumps(code), code.co_filename, *_source_span(code))


def _source_span(code: types.CodeType) -> tuple[int, tuple[str, ...]]:
    """(first line number, the source lines of ``code`` and its nested code objects)."""
    numbers = [n for c in _walk_code(code) for _, _, n in c.co_lines() if n]
    first = min(numbers, default=code.co_firstlineno)
    last = max(numbers, default=first)
    lines = linecache.getlines(code.co_filename)
    return first, tuple(lines[first - 1 : last])


def _walk_code(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _walk_code(const)


def _load_code(data: bytes, filename: str, first: int, lines: tuple[str, ...]) -> types.CodeType:
    """Rebuild a code object; where its file does not exist here, register the shipped
    source lines with ``linecache`` so tracebacks show them (files that do exist are
    read by ``linecache`` as usual, so the driver's own tracebacks are untouched)."""
    code = marshal.loads(data)
    if lines and not os.path.exists(filename):
        with _linecache_lock:
            entry: Any = linecache.cache.get(filename)
            known = list(entry[2]) if entry and entry[1] is None else []
            if len(known) < first - 1 + len(lines):
                known.extend("\n" for _ in range(first - 1 + len(lines) - len(known)))
            known[first - 1 : first - 1 + len(lines)] = lines
            # mtime None: linecache.checkcache keeps the entry (no file to compare with).
            linecache.cache[filename] = (sum(map(len, known)), None, known, filename)
    return code


_linecache_lock = threading.Lock()


class _Pickler(cloudpickle.Pickler):
    """cloudpickle (handles lambdas and closures in values too) with OOB buffers, and
    code objects that keep their file name and source lines (:func:`_code_reduce`)."""

    dispatch_table = ChainMap({types.CodeType: _code_reduce}, cloudpickle.Pickler.dispatch_table)


class _SharePickler(_Pickler):
    """``_Pickler`` whose numpy arrays go out of band read-only (see the module
    docstring): frozen in place when ``move`` and the array owns its memory, else
    copied into aligned memory (unless already read-only and not a view of writable
    memory)."""

    def __init__(self, file: io.BytesIO, move: bool, buffer_callback: Callable) -> None:
        super().__init__(file, protocol=5, buffer_callback=buffer_callback)
        self._move = move

    def reducer_override(self, obj: Any) -> Any:
        t = type(obj)
        if t.__name__ == "ndarray" and t.__module__ == "numpy" and not obj.dtype.hasobject \
                and (obj.flags.c_contiguous or obj.flags.f_contiguous):
            arr = obj
            if arr.flags.writeable:
                if self._move and arr.base is None:
                    arr.flags.writeable = False  # the task gave it up: share, never copy
                else:
                    arr = _aligned_copy(arr)
            elif not self._move and _writable_base(arr):
                arr = _aligned_copy(arr)
            return arr.__reduce_ex__(5)
        return super().reducer_override(obj)


def _writable_base(arr: Any) -> bool:
    base = arr.base
    while base is not None:
        if getattr(getattr(base, "flags", None), "writeable", False):
            return True
        if isinstance(base, (bytearray, memoryview)) and not memoryview(base).readonly:
            return True
        base = getattr(base, "base", None)
    return False


def _aligned_copy(arr: Any) -> Any:
    """A read-only C-ordered copy of ``arr`` starting on a 64-byte boundary."""
    import numpy as np

    raw = aligned_buffer(arr.nbytes)
    out = np.frombuffer(raw, dtype=np.uint8).view(arr.dtype).reshape(arr.shape)
    out[...] = arr
    out.flags.writeable = False
    return out


def aligned_buffer(n: int) -> memoryview:
    """A writable, zeroed ``n``-byte buffer whose first byte is 64-byte aligned."""
    block = bytearray(n + ALIGN)
    offset = (-_address(block)) % ALIGN
    return memoryview(block)[offset : offset + n]


def _address(buf: Any) -> int:
    """The memory address of a buffer's first byte."""
    view = memoryview(buf)
    if not view.nbytes:
        return 0
    if not view.readonly:
        return ctypes.addressof(ctypes.c_char.from_buffer(view))
    import numpy as np  # read-only buffers: ctypes will not export them

    return int(np.frombuffer(view, dtype=np.uint8).ctypes.data)


def _pickle_function(fn: Callable) -> bytes:
    f = io.BytesIO()
    _Pickler(f, protocol=5).dump(fn)
    return f.getvalue()


_SIMPLE = frozenset({int, float, str, bytes, bool, type(None), complex})
#: more types the C pickler may write (importable by reference wherever lambdaflow is)
_PLAIN: set[type] = set()


def register_plain(cls: type) -> type:
    """Let ``cls`` (a lambdaflow type, importable on every worker) take the C pickler's
    fast path in ``dumps``. Used as a class decorator."""
    _PLAIN.add(cls)
    return cls


def _simple(value: Any, depth: int = 0) -> bool:
    """Plain data that the C pickler handles identically to cloudpickle (fast path)."""
    t = type(value)
    if t in _SIMPLE:
        return True
    if depth > 3:
        return False
    if t is tuple or t is list:
        if len(value) > 64:
            return False
        for v in value:
            if type(v) not in _SIMPLE and not _simple(v, depth + 1):
                return False
        return True
    if t is dict:
        if len(value) > 64:
            return False
        for k, v in value.items():
            if type(k) not in _SIMPLE or (type(v) not in _SIMPLE and not _simple(v, depth + 1)):
                return False
        return True
    return False


def simple_call_frame(args: tuple, kwargs: dict) -> list | None:
    """``simple_frame((args, kwargs))`` with the common case (a few plain positional
    arguments, no keywords) checked without recursion."""
    if not kwargs and len(args) <= 16:
        simple = _SIMPLE
        for a in args:
            if type(a) not in simple:
                break
        else:
            return [SIMPLE_MAGIC + pickle.dumps((args, kwargs), protocol=5)]
    return simple_frame((args, kwargs))


def simple_frame(value: Any) -> list | None:
    """The frame of ``value`` when it is plain data (no refs, no buffers, no functions
    inside: nothing to collect), else None. The fast path for small arguments and
    results."""
    if type(value) in _SIMPLE or _simple(value):
        return [SIMPLE_MAGIC + pickle.dumps(value, protocol=5)]
    return None


def _plain_arrays(value: Any, arrays: list, depth: int = 0) -> bool:
    """Whether ``value`` is plain data and plain numpy arrays (no object dtype, no
    subclass): what the C pickler writes exactly as cloudpickle would (numpy's own
    reconstructors go by reference either way), many times faster. Collects the arrays."""
    t = type(value)
    if t in _SIMPLE or t in _PLAIN:
        return True
    if t.__name__ == "ndarray" and t.__module__ == "numpy":
        if value.dtype.hasobject:
            return False
        arrays.append(value)
        return True
    if depth > 3:
        return False
    if t is tuple or t is list:
        return len(value) <= 256 and all(_plain_arrays(v, arrays, depth + 1) for v in value)
    if t is dict:
        return len(value) <= 256 and all(
            type(k) in _SIMPLE and _plain_arrays(v, arrays, depth + 1) for k, v in value.items())
    return False


def _movable(arrays: list) -> bool:
    """``share="move"`` can take these arrays as they are (freezing the task's own):
    each owns its memory, or is read-only over read-only memory."""
    return all(a.base is None or (not a.flags.writeable and not _writable_base(a))
               for a in arrays)


def dumps(value: Any, *, share: str | None = None) -> list:
    """Serialize ``value`` to a frame: a list of bytes-like chunks to write in order.
    ``share`` ("move" | "copy"): a frame to keep in memory (see the module docstring)."""
    if _simple(value):
        return [SIMPLE_MAGIC + pickle.dumps(value, protocol=5)]
    oob: list[pickle.PickleBuffer] = []
    f = io.BytesIO()
    arrays: list = []
    if _plain_arrays(value, arrays) and (share is None or (share == "move" and _movable(arrays))):
        for a in arrays:
            if share is not None and a.flags.writeable:
                a.flags.writeable = False  # the task gave it up: share, never copy
        pickle.Pickler(f, protocol=5, buffer_callback=oob.append).dump(value)
    elif share is None:
        _Pickler(f, protocol=5, buffer_callback=oob.append).dump(value)
    else:
        _SharePickler(f, share == "move", oob.append).dump(value)
    # getvalue(), not getbuffer(): CPython hands over its buffer without a copy, and a
    # view exported from the BytesIO would make its close() fail (BufferError) when a
    # garbage-collected cycle finalizes it while the frame is still being written
    body = f.getvalue()
    raws = [b.raw() for b in oob]
    header = bytearray(_HEAD.pack(MAGIC, len(raws)))
    header += _LEN.pack(len(body))
    for raw in raws:
        header += _LEN.pack(raw.nbytes)
    header += _ZEROS[: _pad(len(header))]
    chunks: list = [bytes(header), body]
    for raw in raws:
        pad = _pad(chunks_len(chunks))
        if pad:
            chunks.append(_ZEROS[:pad])
        chunks.append(raw)
    return chunks


def chunks_len(chunks: Sequence) -> int:
    if len(chunks) == 1 and type(chunks[0]) is bytes:
        return len(chunks[0])
    return sum(memoryview(c).nbytes for c in chunks)


def dumps_bytes(value: Any) -> bytes:
    """``dumps`` joined into one ``bytes`` (for small values sent inline)."""
    return b"".join(dumps(value))


def loads(data: bytes | bytearray | memoryview | mmap.mmap) -> Any:
    """Inverse of ``dumps`` (accepts the joined frame). Arrays come back writable and
    64-byte aligned (a read-only or misaligned input with buffers is copied once)."""
    if data[:4] == SIMPLE_MAGIC:
        return pickle.loads(memoryview(data)[4:])
    view = memoryview(data).cast("B")
    lens, pos = _header(view)
    if len(lens) > 1 and (view.readonly or _address(view) % ALIGN):
        copy = aligned_buffer(view.nbytes)
        copy[:] = view
        view = copy
    body = view[pos : pos + lens[0]]
    pos += lens[0]
    bufs = []
    for n in lens[1:]:
        pos += _pad(pos)
        bufs.append(view[pos : pos + n])
        pos += n
    return pickle.loads(body, buffers=bufs)


def loads_chunks(chunks: list) -> Any:
    """Inverse of ``dumps`` on the chunk list itself (a shared frame: no join, no copy;
    its buffers stay read-only)."""
    first = chunks[0]
    if first[:4] == SIMPLE_MAGIC:
        return pickle.loads(memoryview(first)[4:])
    lens, pos = _header(memoryview(first).cast("B"))
    pos += lens[0]
    bufs, i = [], 2
    for n in lens[1:]:
        pad = _pad(pos)
        if pad:
            i += 1  # the padding chunk
        bufs.append(chunks[i])
        i += 1
        pos += pad + n
    return pickle.loads(chunks[1], buffers=bufs)


def _header(view: memoryview) -> tuple[list[int], int]:
    """(body length and buffer lengths, offset of the body)."""
    magic, nbuf = _HEAD.unpack_from(view, 0)
    if magic != MAGIC:
        raise ValueError("not a lambdaflow value frame (bad magic); the object is corrupt")
    pos = _HEAD.size
    lens = [_LEN.unpack_from(view, pos + 8 * i)[0] for i in range(nbuf + 1)]
    pos += 8 * (nbuf + 1)
    return lens, pos + _pad(pos)


# --------------------------------------------------------------------- nested refs


class collect_refs:
    """Context manager: ObjectRefs pickled inside it are recorded in ``.refs``.

    ``ObjectRef.__reduce__`` calls :func:`note_pickled_ref`; the runtime uses this to
    keep nested refs (and their values) alive while a task that carries them runs.
    """

    def __enter__(self) -> collect_refs:
        self.refs: list = []
        self._prev = getattr(_local, "collector", None)
        _local.collector = self.refs
        return self

    def __exit__(self, *exc: object) -> None:
        _local.collector = self._prev


class _RefIdUnpickler(pickle.Unpickler):
    """Unpickles a frame but records each ObjectRef in it as (id, job) instead of
    rebuilding it (no owner is asked, nothing is counted)."""

    def __init__(self, file: Any, buffers: list) -> None:
        super().__init__(file, buffers=buffers)
        self.found: list[tuple[str, str]] = []

    def find_class(self, module: str, name: str) -> Any:
        if module == "lambdaflow.runtime.refs" and name == "_rebuild":
            return self._note
        return super().find_class(module, name)

    def _note(self, object_id: str, job: str) -> None:
        self.found.append((object_id, job))


def ref_ids(data: bytes | bytearray | memoryview | mmap.mmap) -> list[tuple[str, str]]:
    """(id, job) of every ObjectRef pickled inside the frame ``data`` (``dumps``' output,
    joined), without rebuilding the refs: what a value stored by someone else holds."""
    view = memoryview(data).cast("B")
    if view[:4] == SIMPLE_MAGIC:
        return []  # plain data: never holds a ref
    lens, pos = _header(view)
    body = view[pos : pos + lens[0]]
    pos += lens[0]
    bufs = []
    for n in lens[1:]:
        pos += _pad(pos)
        bufs.append(view[pos : pos + n])
        pos += n
    unpickler = _RefIdUnpickler(io.BytesIO(body), bufs)
    unpickler.load()
    return unpickler.found


def note_pickled_ref(ref: Any) -> None:
    collector = getattr(_local, "collector", None)
    if collector is not None:
        collector.append(ref)


# ----------------------------------------------------------------------- functions

_STD_PATHS = tuple(
    os.path.realpath(p)
    for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
)
_SITE_MARKERS = (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep)
_by_value_checked: set[str] = set()


def _installed(module: types.ModuleType) -> bool:
    """Whether a worker can import ``module`` itself (stdlib, site-packages, builtins)."""
    file = getattr(module, "__file__", None)
    if file is None:
        return True  # builtin or namespace package
    path = os.path.realpath(file)
    if any(m in path for m in _SITE_MARKERS):
        return True
    if path.startswith(_STD_PATHS):
        return True
    name = module.__name__.split(".")[0]
    return name == "lambdaflow"


def register_by_value(fn: Callable) -> None:
    """Make cloudpickle pickle ``fn``'s module by value when it is the user's own."""
    modname = getattr(fn, "__module__", None)
    if not modname or modname == "__main__" or modname in _by_value_checked:
        return
    _by_value_checked.add(modname)
    module = sys.modules.get(modname)
    if module is None or _installed(module):
        return
    top = modname.split(".")[0]
    try:
        cloudpickle.register_pickle_by_value(sys.modules.get(top, module))
    except (ValueError, KeyError):  # pragma: no cover - odd module setups
        pass


def dumps_function(fn: Callable) -> tuple[str, bytes]:
    """cloudpickle ``fn``; return (sha256 hex digest, bytes).

    Raises TypeError naming ``fn`` and the first object it captures that cannot be
    pickled (a lock, a socket, an open file, a client...).
    """
    register_by_value(fn)
    try:
        data = _pickle_function(fn)
    except Exception as exc:
        culprit = find_unpicklable(fn)
        name = getattr(fn, "__qualname__", repr(fn))
        where = f" It captures {culprit}, which cannot be pickled." if culprit else ""
        raise TypeError(
            f"cannot ship remote function {name!r} to workers: {exc}.{where} "
            "Create such objects inside the function (or cache them per worker) "
            "instead of capturing them."
        ) from exc
    return hashlib.sha256(data).hexdigest(), data


def find_unpicklable(fn: Callable) -> str | None:
    """Describe the first captured object of ``fn`` (closure cell, global, default)
    that cannot be pickled, or None."""
    code = getattr(fn, "__code__", None)
    candidates: list[tuple[str, Any]] = []
    if code is not None and fn.__closure__:
        for name, cell in zip(code.co_freevars, fn.__closure__):
            try:
                candidates.append((f"closure variable {name!r}", cell.cell_contents))
            except ValueError:
                continue
    if code is not None:
        g = getattr(fn, "__globals__", {})
        for name in _global_names(code):
            if name in g:
                candidates.append((f"global {name!r}", g[name]))
    for i, d in enumerate(getattr(fn, "__defaults__", None) or ()):
        candidates.append((f"default argument #{i}", d))
    for label, obj in candidates:
        if isinstance(obj, types.ModuleType):
            continue
        try:
            cloudpickle.dumps(obj, protocol=5)
        except Exception:
            return f"{label} = {_short_repr(obj)} ({type(obj).__module__}.{type(obj).__qualname__})"
    return None


def _global_names(code: types.CodeType) -> list[str]:
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.extend(_global_names(const))
    return names


def _short_repr(obj: Any) -> str:
    try:
        text = repr(obj)
    except Exception:
        text = object.__repr__(obj)
    return text if len(text) <= 80 else text[:77] + "..."


def describe_unpicklable_args(args: tuple, kwargs: dict) -> str | None:
    """Name the first argument of a call that cannot be pickled, or None."""
    items = [(f"argument #{i}", a) for i, a in enumerate(args)]
    items += [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]
    for label, obj in items:
        try:
            cloudpickle.dumps(obj, protocol=5)
        except Exception:
            return f"{label} = {_short_repr(obj)}"
    return None
