"""Face recognition over video: sample frames, encode faces, match against known people.

This is face_recognition's API (detector, 5-point landmarks, ResNet encoder, L2
distance, tolerance 0.6) reimplemented directly on dlib, so the prebuilt ``dlib-bin``
wheel is enough and the 12-minute dlib compile of the ``face-recognition`` package is
avoided. The numbers match face_recognition's defaults: HOG detector with one upsample,
``model="small"`` (5-point) landmarks, ``num_jitters=1``.

Flow of :func:`recognize_video`::

    source (path | bytes | file-like)
      └─ sample_frames ── PyAV demux+decode in memory, keep one frame per ``every_s``
           └─ face_encodings(frame) ── detector -> 5-point shape -> 128-d descriptor
                └─ match(encoding, known) ── smallest L2 distance, accepted if <= tolerance
                     └─ strategy "first": stop at the first match
                        strategy "majority": vote over every sampled frame

State (per process, i.e. per warm Lambda worker), all guarded by ``_LOCK``:
- ``_MODELS``: the dlib detector / shape predictor / encoder, loaded on first use. The
  detector keeps its image pyramid and the encoder its network buffers in the model
  object, so calls are serialised by ``_DLIB_LOCK`` (dlib's bindings hold the GIL anyway;
  parallelism comes from processes: one per Lambda environment);
- ``_ENCODINGS_CACHE``: parsed ``encoding`` files keyed by (path, mtime, size) or by the
  sha256 of the bytes, so a warm worker parses the file once.

The ``encoding`` file is the seed's pickle ``{'name': [...], 'encoding': [128-d arrays]}``.
It is unpickled with a restricted unpickler that accepts only builtins and numpy arrays,
so a hostile file cannot run code. This module imports nothing from the runtime.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import threading
import warnings
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple, Union

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TOLERANCE",
    "EncodingFileError",
    "KnownFaces",
    "Match",
    "Recognition",
    "SampledFrame",
    "VideoDecodeError",
    "encode_image",
    "face_distance",
    "face_encodings",
    "face_locations",
    "load_encodings",
    "load_image",
    "match",
    "recognize_video",
    "sample_frames",
]

DEFAULT_TOLERANCE = 0.6
ENCODING_SIZE = 128
Source = Union[str, os.PathLike, bytes, bytearray, memoryview, IO[bytes]]  # noqa: UP007 (3.9)

_LOCK = threading.Lock()
_DLIB_LOCK = threading.Lock()  # dlib's models keep per-call buffers in the object
_MODELS: dict[str, Any] = {}
_ENCODINGS_CACHE: OrderedDict[tuple, KnownFaces] = OrderedDict()
_ENCODINGS_CACHE_SIZE = 8


class EncodingFileError(ValueError):
    """The known-faces ``encoding`` file is missing, unreadable or malformed."""


class VideoDecodeError(ValueError):
    """The input is not a video PyAV can decode (not a video, or corrupt)."""


# --------------------------------------------------------------------------- models


def _load_models() -> dict[str, Any]:
    with _LOCK:
        if _MODELS:
            return _MODELS
        try:
            import dlib
        except ImportError as exc:
            raise ImportError(
                "lambdaflow.ops.faces needs dlib; install the prebuilt wheel with "
                "pip install 'lambdaflow[faces]' (dlib-bin, face-recognition-models)"
            ) from exc
        try:
            with warnings.catch_warnings():  # its pkg_resources import warns
                warnings.simplefilter("ignore")
                import face_recognition_models as frm
        except ImportError as exc:
            raise ImportError(
                "lambdaflow.ops.faces needs the model files of face_recognition_models "
                "(and setuptools<82 for its pkg_resources import); install them with "
                "pip install 'lambdaflow[faces]'"
            ) from exc
        _MODELS.update(
            detector=dlib.get_frontal_face_detector(),
            shape5=dlib.shape_predictor(frm.pose_predictor_five_point_model_location()),
            encoder=dlib.face_recognition_model_v1(frm.face_recognition_model_location()),
        )
        log.info("loaded dlib face models")
        return _MODELS


def face_locations(rgb: np.ndarray, *, upsample: int = 1) -> list:
    """dlib rectangles of the faces in an RGB ``uint8`` image (HOG detector)."""
    models, rgb = _load_models(), _check_image(rgb)
    with _DLIB_LOCK:
        return list(models["detector"](rgb, upsample))


def face_encodings(rgb: np.ndarray, *, upsample: int = 1, num_jitters: int = 1) -> list[np.ndarray]:
    """One 128-d encoding per face found in ``rgb`` (HxWx3 uint8), as face_recognition's
    ``face_encodings(img)`` with its defaults (5-point landmarks)."""
    models = _load_models()
    rgb = _check_image(rgb)
    with _DLIB_LOCK:
        return [
            _describe_face(models, rgb, rect, num_jitters)
            for rect in models["detector"](rgb, upsample)
        ]


def _describe_face(models: dict[str, Any], rgb: np.ndarray, rect: Any, jitters: int) -> np.ndarray:
    """The encoding of the face in ``rect``; call with ``_DLIB_LOCK`` held."""
    shape = models["shape5"](rgb, rect)
    return np.array(models["encoder"].compute_face_descriptor(rgb, shape, jitters))


def face_distance(known: np.ndarray, encoding: np.ndarray) -> np.ndarray:
    """L2 distance from ``encoding`` to each row of ``known`` (N x 128)."""
    known = np.asarray(known, dtype=np.float64)
    if len(known) == 0:
        return np.empty((0,))
    return np.linalg.norm(known - np.asarray(encoding, dtype=np.float64), axis=1)


def _check_image(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", type(rgb).__name__)
        raise ValueError(
            f"expected an HxWx3 RGB image array, got {shape}; convert with "
            "frame.to_ndarray(format='rgb24') or load_image(path)"
        )
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def load_image(source: Source) -> np.ndarray:
    """An image file (path, bytes or file-like) as an RGB uint8 array."""
    from PIL import Image

    with Image.open(_as_file(source)) as im:
        return np.array(im.convert("RGB"))


def encode_image(source: Source | np.ndarray) -> np.ndarray:
    """The encoding of the single (largest) face in an image; for enrolling people."""
    rgb = _check_image(source if isinstance(source, np.ndarray) else load_image(source))
    models = _load_models()
    with _DLIB_LOCK:
        rects = list(models["detector"](rgb, 1))
        if rects:
            return _describe_face(models, rgb, max(rects, key=lambda r: r.area()), 1)
    raise ValueError(f"no face found in {_describe(source)}; use a frontal photo")


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
        data = Path(source).read_bytes()
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


# ------------------------------------------------------------------------- video


@dataclass(frozen=True)
class SampledFrame:
    index: int  # sample number, 0-based
    time_s: float  # presentation time of the frame
    rgb: np.ndarray


def _as_file(source: Source) -> Any:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source))
    if isinstance(source, os.PathLike):
        return os.fspath(source)
    return source


def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, np.ndarray):
        return f"<image {source.shape}>"
    return getattr(source, "name", None) or f"<{type(source).__name__}>"


def sample_frames(
    source: Source,
    every_s: float = 1.0,
    *,
    max_samples: int | None = None,
    name: str | None = None,
) -> Iterator[SampledFrame]:
    """Yield one decoded RGB frame per ``every_s`` seconds (the first frame at or after
    0, every_s, 2*every_s, ...), all in memory.

    Frames are decoded sequentially and only the kept ones are converted to RGB. Seeking
    to each sample instead would decode from the preceding keyframe every time; with
    x264's default GOP (250 frames) that re-decodes most of the video once per sample,
    while a sequential pass decodes each frame once and, being a generator, stops
    decoding as soon as the caller stops (recognize_video's "first" strategy).

    Raises :class:`VideoDecodeError` (naming ``name`` or the source) if the input has no
    decodable video stream; an error part-way through also raises it (after the frames
    already yielded).
    """
    if every_s <= 0:
        raise ValueError(f"every_s must be > 0, got {every_s}")
    import av

    name = name or _describe(source)
    try:
        container = av.open(_as_file(source), mode="r")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise VideoDecodeError(
            f"{name}: not a readable video ({exc}); upload an MP4/H.264 file"
        ) from exc
    with container:
        if not container.streams.video:
            raise VideoDecodeError(f"{name}: has no video stream; upload a video file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = float(stream.time_base) if stream.time_base else None
        rate = float(stream.average_rate) if stream.average_rate else 25.0
        next_t, kept, n = 0.0, 0, 0
        try:
            for frame in container.decode(stream):
                if frame.pts is not None and tb is not None:
                    t = frame.pts * tb
                else:
                    t = n / rate
                n += 1
                if t + 1e-6 < next_t:
                    continue
                yield SampledFrame(kept, t, frame.to_ndarray(format="rgb24"))
                kept += 1
                if max_samples is not None and kept >= max_samples:
                    return
                while next_t <= t + 1e-6:
                    next_t += every_s
        except av.FFmpegError as exc:
            raise VideoDecodeError(
                f"{name}: decoding failed after {n} frames ({exc}); the file is corrupt or "
                "truncated, re-encode or re-upload it"
            ) from exc
        if n == 0:
            raise VideoDecodeError(f"{name}: the video stream has no decodable frames")


# ------------------------------------------------------------------- recognition


@dataclass(frozen=True)
class Recognition:
    """Outcome for one video. ``status`` is "matched", "unknown_face" or "no_face";
    ``reason`` says the same in words; ``distance`` is the best (smallest) distance seen."""

    name: str | None
    reason: str
    frames_examined: int
    distance: float | None
    status: str = "matched"


def recognize_video(
    source: Source,
    known: KnownFaces,
    *,
    every_s: float = 1.0,
    tolerance: float = DEFAULT_TOLERANCE,
    strategy: str = "first",
    max_samples: int | None = None,
    name: str | None = None,
) -> Recognition:
    """Who is in the video? See the module docstring for the flow.

    ``strategy="first"`` stops at the first sampled frame with a face within tolerance;
    ``"majority"`` examines every sample and returns the name matched in most frames
    (ties broken by the smaller distance). Raises :class:`VideoDecodeError` when the input
    is not a decodable video; a decode error after some frames ends the scan and is
    mentioned in ``reason``. ``name`` labels the source in errors (e.g. its S3 URI).
    """
    if strategy not in ("first", "majority"):
        raise ValueError(f"strategy must be 'first' or 'majority', got {strategy!r}")
    if len(known) == 0:
        raise ValueError("known faces are empty; load an encoding file with people in it")
    examined = with_faces = 0
    votes: Counter[str] = Counter()
    best: dict[str, float] = {}
    nearest: Match | None = None
    note = ""
    frames = sample_frames(source, every_s, max_samples=max_samples, name=name)
    try:
        for sample in frames:
            examined += 1
            encs = face_encodings(sample.rgb)
            if not encs:
                continue
            with_faces += 1
            frame_best = min((match(e, known, tolerance) for e in encs), key=lambda m: m.distance)
            if nearest is None or frame_best.distance < nearest.distance:
                nearest = frame_best
            if frame_best.name is None:
                continue
            votes[frame_best.name] += 1
            best[frame_best.name] = min(best.get(frame_best.name, 9.0), frame_best.distance)
            if strategy == "first":
                return Recognition(
                    frame_best.name,
                    f"matched {frame_best.name} at t={sample.time_s:.1f}s "
                    f"(distance {frame_best.distance:.3f} <= {tolerance})",
                    examined,
                    frame_best.distance,
                    "matched",
                )
    except VideoDecodeError as exc:
        if examined == 0:
            raise
        note = f"; decoding stopped early: {exc}"
        log.warning("%s", exc)
    finally:
        frames.close()
    if votes:
        winner = max(votes, key=lambda n: (votes[n], -best[n]))
        return Recognition(
            winner,
            f"matched {winner} in {votes[winner]} of {with_faces} frames with faces "
            f"(best distance {best[winner]:.3f}){note}",
            examined,
            best[winner],
            "matched",
        )
    if nearest is not None:
        return Recognition(
            None,
            f"unknown face: {with_faces} of {examined} sampled frames had faces, none "
            f"within tolerance {tolerance} (nearest {nearest.nearest} at "
            f"{nearest.distance:.3f}){note}",
            examined,
            nearest.distance,
            "unknown_face",
        )
    return Recognition(
        None, f"no face found in {examined} sampled frames{note}", examined, None, "no_face"
    )
