"""Face recognition over video: sample frames, encode faces, match against known people.

This is face_recognition's API (detector, 5-point landmarks, ResNet encoder, L2
distance, tolerance 0.6) reimplemented directly on dlib, so the prebuilt ``dlib-bin``
wheel is enough and the 12-minute dlib compile of the ``face-recognition`` package is
avoided. The numbers match face_recognition's defaults: HOG detector with one upsample,
``model="small"`` (5-point) landmarks, ``num_jitters=1``.

Flow of :func:`recognize_video`::

    source (path | bytes | file-like)
      └─ sample_frames ── index (videoindex.probe) + one sequential decode (iter_frames)
           │              in memory, keep one frame per ``every_s``; a truncated file's
           │              line goes to ``Recognition.problem``
           └─ face_encodings(frame) ── detector -> 5-point shape -> 128-d descriptor
                └─ match(encoding, known) ── smallest L2 distance, accepted if <= tolerance
                     └─ strategy "first": stop at the first match
                        strategy "majority": vote over every sampled frame

State (per process, i.e. per warm Lambda worker), all guarded by ``_LOCK``:
- ``_MODELS``: the dlib detector / shape predictor / encoder, loaded on first use. The
  detector keeps its image pyramid and the encoder its network buffers in the model
  object, so calls are serialised by ``_DLIB_LOCK`` (dlib's bindings hold the GIL anyway;
  parallelism comes from processes: one per Lambda environment).

Known faces (the seed's ``encoding`` pickle, loaded safely and cached per warm worker)
and matching live in ``face_encodings`` and are re-exported here. This module imports
nothing from the runtime.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import warnings
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from lambdaflow.ops import video
from lambdaflow.ops.face_encodings import (  # re-exported: the public API is here
    DEFAULT_TOLERANCE,
    EncodingFileError,
    KnownFaces,
    Match,
    face_distance,
    load_encodings,
    match,
)
from lambdaflow.ops.videosource import VideoError

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

Source = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes]

_LOCK = threading.Lock()
_DLIB_LOCK = threading.Lock()  # dlib's models keep per-call buffers in the object
_MODELS: dict[str, Any] = {}


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
    problems: list[str] | None = None,
) -> Generator[SampledFrame, None, None]:
    """Yield one decoded RGB frame per ``every_s`` seconds (the first frame at or after
    0, every_s, 2*every_s, ...), all in memory.

    The frames are the ones the histogram and inference jobs read: the video is indexed
    (``videoindex.probe(strict=False)``: edit lists, mid-GOP starts and truncation as a
    sequential decode shows them), then decoded once from the start as one chunk of the
    whole file (``video.iter_frames``); only the kept frames are converted to RGB (the
    ``video.RGB24`` conversion, ``to_ndarray(format="rgb24")``'s pixels). Seeking to each
    sample instead would decode from the preceding keyframe every time; with x264's
    default GOP (250 frames) that re-decodes most of the video once per sample, while a
    sequential pass decodes each frame once and, being a generator, stops decoding as
    soon as the caller stops (recognize_video's "first" strategy).

    Raises :class:`VideoDecodeError` (naming ``name`` or the source) if the input has no
    decodable video stream. A truncated file (the index's one line: file, last frame
    read, expected length) and frames that do not decode are reported after the frames
    that could be read were yielded: appended to ``problems`` when it is given (the
    truncation line before the first frame), else raised as ``VideoDecodeError`` at the
    end.
    """
    if every_s <= 0:
        raise ValueError(f"every_s must be > 0, got {every_s}")
    name = name or _describe(source)
    opened = _as_file(source)
    try:
        index = video.probe(opened, strict=False)
    except VideoError as exc:
        detail = str(exc).removeprefix(f"{video.source_name(opened)}: ")
        raise VideoDecodeError(f"{name}: {detail}; upload an MP4/H.264 video file") from exc
    found: list[str] = [] if problems is None else problems
    if index.truncated:
        found.append(index.truncated.replace(index.source, name, 1))
    tb = float(index.time_base)
    next_t, kept = 0.0, 0
    lost: list[int] = []
    rgb24 = video.RGB24()
    for number, frame in video.iter_frames(
        opened, index.chunk(0, index.frame_count), lost, threads=0
    ):
        t = index.frame_pts[number] * tb
        if t + 1e-6 < next_t:
            continue
        yield SampledFrame(kept, t, rgb24.array(frame))
        kept += 1
        if max_samples is not None and kept >= max_samples:
            return
        while next_t <= t + 1e-6:
            next_t += every_s
    if lost:
        found.append(
            f"{name}: {len(lost)} of {index.frame_count} frame(s) could not be decoded: "
            f"{video.frame_ranges(lost)}"
        )
    if kept == 0 and not found:
        found.append(f"{name}: the video stream has no decodable frames")
    if found and problems is None:
        raise VideoDecodeError("; ".join(found))


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
    #: the source could not be read whole (truncated, frames that do not decode): one
    #: line naming it; the outcome is that of the frames that were read
    problem: str | None = None


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
    is not a decodable video or no frame of it can be read. A truncated file, or frames
    that do not decode, still give the outcome of the frames that could be read; the
    problem is ``Recognition.problem`` (one line naming the source) and ends ``reason``.
    ``name`` labels the source in errors (e.g. its S3 URI).
    """
    if strategy not in ("first", "majority"):
        raise ValueError(f"strategy must be 'first' or 'majority', got {strategy!r}")
    if len(known) == 0:
        raise ValueError("known faces are empty; load an encoding file with people in it")
    examined = with_faces = 0
    votes: Counter[str] = Counter()
    best: dict[str, float] = {}
    nearest: Match | None = None
    problems: list[str] = []
    frames = sample_frames(
        source, every_s, max_samples=max_samples, name=name, problems=problems
    )
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
                problem = "; ".join(problems) or None
                return Recognition(
                    frame_best.name,
                    f"matched {frame_best.name} at t={sample.time_s:.1f}s "
                    f"(distance {frame_best.distance:.3f} <= {tolerance})"
                    + (f"; {problem}" if problem else ""),
                    examined,
                    frame_best.distance,
                    "matched",
                    problem,
                )
    finally:
        frames.close()
    problem = "; ".join(problems) or None
    if problem:
        log.warning("%s", problem)
        if examined == 0:
            raise VideoDecodeError(problem)
    note = f"; {problem}" if problem else ""
    if votes:
        winner = max(votes, key=lambda n: (votes[n], -best[n]))
        return Recognition(
            winner,
            f"matched {winner} in {votes[winner]} of {with_faces} frames with faces "
            f"(best distance {best[winner]:.3f}){note}",
            examined,
            best[winner],
            "matched",
            problem,
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
            problem,
        )
    return Recognition(
        None,
        f"no face found in {examined} sampled frames{note}",
        examined,
        None,
        "no_face",
        problem,
    )
