"""Known faces: the seed's ``encoding`` pickle ({'name': [...], 'encoding': [128-d
arrays]}) loaded safely and cached per process, and matching by smallest face distance.

Loading uses an unpickler that only admits numpy arrays and plain containers, so a
hostile file cannot run code; a malformed file raises ``EncodingFileError`` naming the
file, the problem and the fix. Parsed files are cached (per warm worker) by path, mtime
and size, or by the bytes' sha256. Imports nothing from the runtime or dlib.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

DEFAULT_TOLERANCE = 0.6
ENCODING_SIZE = 128

log = logging.getLogger(__name__)
_LOCK = threading.Lock()
_ENCODINGS_CACHE: OrderedDict[tuple, KnownFaces] = OrderedDict()
_ENCODINGS_CACHE_SIZE = 8


class EncodingFileError(ValueError):
    """The known-faces ``encoding`` file is missing, unreadable or malformed."""


def face_distance(known: np.ndarray, encoding: np.ndarray) -> np.ndarray:
    """L2 distance from ``encoding`` to each row of ``known`` (N x 128)."""
    known = np.asarray(known, dtype=np.float64)
    if len(known) == 0:
        return np.empty((0,))
    return np.linalg.norm(known - np.asarray(encoding, dtype=np.float64), axis=1)


# ------------------------------------------------------------------ known encodings


@dataclass(frozen=True)
class KnownFaces:
    """Enrolled people: ``names[i]`` has encoding ``encodings[i]`` (a name may repeat)."""

    names: tuple[str, ...]
    encodings: np.ndarray  # (N, 128) float64
    source: str = "<memory>"

    def __len__(self) -> int:
        return len(self.names)


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles builtins and numpy arrays only; anything else is refused."""

    _NUMPY = frozenset({"_reconstruct", "scalar", "ndarray", "dtype", "_frombuffer", "frombuffer"})
    _BUILTINS = frozenset(
        {
            "list",
            "dict",
            "tuple",
            "set",
            "frozenset",
            "str",
            "bytes",
            "float",
            "int",
            "complex",
            "bytearray",
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("numpy") and name in self._NUMPY:
            if module.startswith("numpy._core"):  # pickled by numpy 2, read by numpy 1
                try:
                    return super().find_class(module, name)
                except ImportError:
                    module = module.replace("numpy._core", "numpy.core", 1)
            return super().find_class(module, name)
        if module in ("builtins", "__builtin__") and name in self._BUILTINS:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):  # protocol <= 2 spells bytes this way
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_encodings(source: str | os.PathLike | bytes, *, name: str | None = None) -> KnownFaces:
    """Parse and validate an ``encoding`` pickle (path or its bytes), cached per process.

    Raises :class:`EncodingFileError` naming the file (``name`` if given, e.g. the S3 URI
    the bytes came from) and what is wrong with it.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        key: tuple = ("sha256", hashlib.sha256(data).hexdigest())
        label = name or f"<{len(data)} bytes of encodings>"
    else:
        path = Path(source)
        label = name or str(path)
        try:
            st = path.stat()
        except OSError as exc:
            raise EncodingFileError(
                f"encoding file {label}: cannot read it ({exc.strerror}); pass the path of "
                "the pickle written by make_testdata.py or the seed's 'encoding' file"
            ) from exc
        key = ("path", str(path.resolve()), st.st_mtime_ns, st.st_size)
        data = None
    with _LOCK:
        if key in _ENCODINGS_CACHE:
            _ENCODINGS_CACHE.move_to_end(key)
            return _ENCODINGS_CACHE[key]
    if data is None:
        data = path.read_bytes()  # the path branch above set data = None
    known = _parse_encodings(data, label)
    with _LOCK:
        _ENCODINGS_CACHE[key] = known
        while len(_ENCODINGS_CACHE) > _ENCODINGS_CACHE_SIZE:
            _ENCODINGS_CACHE.popitem(last=False)
    log.info("loaded %d known encodings from %s", len(known), label)
    return known


def _parse_encodings(data: bytes, label: str) -> KnownFaces:
    def bad(problem: str) -> EncodingFileError:
        return EncodingFileError(
            f"encoding file {label}: {problem}; expected a pickle of "
            "{'name': [str, ...], 'encoding': [128-d numpy arrays, ...]} "
            "(regenerate it with examples/classroom/make_testdata.py)"
        )

    try:
        obj = _SafeUnpickler(io.BytesIO(data)).load()
    except Exception as exc:  # any unpickling failure means "not our format"
        raise bad(f"not a readable pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise bad(f"top level is a {type(obj).__name__}, not a dict")
    missing = [k for k in ("name", "encoding") if k not in obj]
    if missing:
        raise bad(f"missing key(s) {missing} (found {sorted(map(str, obj))})")
    names, encs = obj["name"], obj["encoding"]
    if not isinstance(names, (list, tuple)) or not isinstance(encs, (list, tuple, np.ndarray)):
        raise bad("'name' and 'encoding' must be lists")
    if len(names) != len(encs):
        raise bad(f"{len(names)} names but {len(encs)} encodings")
    if not names:
        raise bad("no people in it")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise bad(f"name #{i} is {name!r}, not a non-empty string")
    rows = []
    for i, enc in enumerate(encs):
        try:
            arr = np.asarray(enc, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise bad(f"encoding #{i} ({names[i]}) is not numeric") from exc
        if arr.shape != (ENCODING_SIZE,):
            raise bad(f"encoding #{i} ({names[i]}) has shape {arr.shape}, not (128,)")
        if not np.all(np.isfinite(arr)):
            raise bad(f"encoding #{i} ({names[i]}) contains NaN or infinity")
        rows.append(arr)
    return KnownFaces(tuple(names), np.stack(rows), label)


class Match(NamedTuple):
    """The nearest known person: ``name`` is None when ``distance`` > tolerance."""

    name: str | None
    distance: float
    nearest: str | None


def match(encoding: np.ndarray, known: KnownFaces, tolerance: float = DEFAULT_TOLERANCE) -> Match:
    """The known person with the smallest distance to ``encoding``, if within tolerance."""
    distances = face_distance(known.encodings, encoding)
    if len(distances) == 0:
        return Match(None, float("inf"), None)
    best = int(np.argmin(distances))
    dist = float(distances[best])
    return Match(known.names[best] if dist <= tolerance else None, dist, known.names[best])


