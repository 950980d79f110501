"""Per-frame, per-channel colour histograms: native kernel, numpy fallback, fused chunk op.

    frames (numpy) ──rgb_histograms / yuv_histograms──> (n, 3, bins) int64
    source + chunk ──histogram_chunk──> decode one frame ─> video.RGB24 (to_ndarray's
                                        rgb24 conversion, one reused swscale context) ─>
                                        native kernel reads the interleaved pixels in place
                                        ─> row of the result (the frame is dropped before
                                        the next is decoded); where ops.banded proved it
                                        exact, the same conversion and kernel run band by
                                        band in L2 (``LAMBDAFLOW_BANDED=0``: never);
                                        before both, where ops.yuvrgb proved it exact,
                                        swscale's arithmetic runs in registers and the
                                        rgb24 image is never written
                                        (``LAMBDAFLOW_FUSED_RGB=0``: never)

Bins split [0, 256) evenly: ``bin = value * bins // 256``; rows are R, G, B (or Y, U, V).
The native kernel (``lambdaflow._native``, built from native/histogram.c) releases the GIL;
the numpy path (``np.bincount``) gives identical numbers. Choose with ``native=``:
``None`` (default) uses the kernel when it is importable unless the environment variable
``LAMBDAFLOW_NATIVE=0`` is set; ``False`` forces numpy; ``True`` requires the kernel.

The RGB that ``histogram_chunk`` histograms is the conversion ``decode(format="rgb24")``
and ``frame.to_ndarray(format="rgb24")`` make (``video.RGB24``: same call, same
defaults), so the fused op gives exactly the numbers of a sequential rgb24 decode plus
``np.histogram``, for every pixel format and size, without materializing the chunk (the
corpus tests hold them equal).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lambdaflow.ops.banded import BandedRGB
from lambdaflow.ops.video import RGB24, Chunk, DecodeStats, Source, iter_frames, probe
from lambdaflow.ops.yuvrgb import FusedRGB

log = logging.getLogger(__name__)

try:
    from lambdaflow import _native  # type: ignore[attr-defined]  # C extension, no stub
except ImportError as _exc:  # not built: `python setup.py build_ext --inplace`
    _native = None
    _NATIVE_IMPORT_ERROR: Exception | None = _exc
else:
    _NATIVE_IMPORT_ERROR = None

#: Set to "0" to make ``native=None`` mean numpy everywhere.
NATIVE_ENV = "LAMBDAFLOW_NATIVE"
#: Set to "0" to make the native fused op convert whole frames (no banding; same numbers).
BANDED_ENV = "LAMBDAFLOW_BANDED"
#: Set to "0" to turn off the in-register conversion (ops.yuvrgb; same numbers).
FUSED_ENV = "LAMBDAFLOW_FUSED_RGB"


def use_native(native: bool | None = None) -> bool:
    """Resolve the ``native=`` argument: whether the C kernel will be used."""
    if native is None:
        return _native is not None and os.environ.get(NATIVE_ENV, "1") != "0"
    if native and _native is None:
        raise RuntimeError(
            f"the native histogram kernel lambdaflow._native is not built "
            f"({_NATIVE_IMPORT_ERROR}); run `python setup.py build_ext --inplace` "
            "or pass native=None to fall back to numpy"
        )
    return bool(native)


def _check_bins(bins: int) -> int:
    if not isinstance(bins, (int, np.integer)) or not 1 <= bins <= 256:
        raise ValueError(f"bins must be an integer in 1..256, got {bins!r}")
    return int(bins)


def _numpy_plane(plane: np.ndarray, bins: int) -> np.ndarray:
    """Histogram of one uint8 plane (any shape) with numpy: counts of the 256 values,
    folded into bins."""
    counts = np.bincount(plane.reshape(-1), minlength=256)
    lut = (np.arange(256) * bins) // 256
    return np.bincount(lut, weights=counts, minlength=bins).astype(np.int64)


def _as_uint8(frame: Any, what: str) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.dtype != np.uint8:
        raise TypeError(f"{what}: expected uint8 pixels, got dtype {arr.dtype}")
    return arr


def _frames_list(frames: Any, ndim: int) -> Sequence[Any] | np.ndarray:
    """One frame (ndim dims) or a batch (ndim + 1 dims, or a sequence) → a sequence."""
    if isinstance(frames, np.ndarray):
        if frames.ndim == ndim:
            return [frames]
        if frames.ndim == ndim + 1:
            return frames
        raise ValueError(
            f"expected one frame with {ndim} dimensions or a batch with "
            f"{ndim + 1}, got an array of shape {frames.shape}"
        )
    return list(frames)


def rgb_histograms(frames: Any, bins: int = 16, *, native: bool | None = None) -> np.ndarray:
    """Histograms of RGB24 frames: one (H, W, 3) uint8 array, an (n, H, W, 3) array or a
    sequence of (H, W, 3) arrays → int64 array (n, 3, bins), rows R, G, B."""
    bins = _check_bins(bins)
    fast = use_native(native)
    items = _frames_list(frames, 3)
    out = np.zeros((len(items), 3, bins), dtype=np.int64)
    for i, frame in enumerate(items):
        arr = _as_uint8(frame, f"frame {i}")
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"frame {i}: expected shape (H, W, 3) RGB24, got {arr.shape}")
        if fast:
            arr = np.ascontiguousarray(arr)
            h, w = arr.shape[:2]
            _native.hist_interleaved(arr, h, w, w * 3, 3, bins, out[i].reshape(-1))
        else:
            for c in range(3):
                out[i, c] = _numpy_plane(arr[:, :, c], bins)
    return out


def _yuv_planes(frame: Any, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(frame, (tuple, list)):
        if len(frame) != 3:
            raise ValueError(f"frame {i}: expected (Y, U, V) planes, got {len(frame)} items")
        y, u, v = (_as_uint8(p, f"frame {i} plane {k}") for k, p in enumerate(frame))
        return y, u, v
    arr = _as_uint8(frame, f"frame {i}")
    if arr.ndim != 2 or arr.shape[0] % 3 or arr.shape[1] % 2:
        raise ValueError(
            f"frame {i}: expected a yuv420p array of shape (H*3/2, W) with even W, got {arr.shape}"
        )
    h, w = arr.shape[0] * 2 // 3, arr.shape[1]
    flat = arr.reshape(-1)
    q = (h // 2) * (w // 2)
    return arr[:h], flat[h * w : h * w + q], flat[h * w + q : h * w + 2 * q]


def yuv_histograms(frames: Any, bins: int = 16, *, native: bool | None = None) -> np.ndarray:
    """Histograms of YUV420p frames → int64 (n, 3, bins), rows Y, U, V.

    A frame is either PyAV's single (H*3/2, W) yuv420p array (as ``decode(...,
    format="yuv420p")`` returns) or a (Y, U, V) tuple of planes of any shapes. A bare
    2-D array is one frame; pass a list for several.
    """
    bins = _check_bins(bins)
    fast = use_native(native)
    items = [frames] if isinstance(frames, (np.ndarray, tuple)) else list(frames)
    out = np.zeros((len(items), 3, bins), dtype=np.int64)
    for i, frame in enumerate(items):
        planes = _yuv_planes(frame, i)
        if fast:
            specs = []
            for p in planes:
                p = np.ascontiguousarray(p)
                h, w = p.shape if p.ndim == 2 else (1, p.size)
                specs.append((p, h, w, w))
            _native.hist_planes(specs, bins, out[i].reshape(-1))
        else:
            for c, p in enumerate(planes):
                out[i, c] = _numpy_plane(p, bins)
    return out


# ------------------------------------------------------------------------- fused op


@dataclass
class ChunkHistogram:
    """Result of ``histogram_chunk``: rows for frames [start, stop); rows of frames that
    failed to decode are zero and their numbers are in ``failed``."""

    start: int
    stop: int
    hist: np.ndarray  #: int64 (stop - start, 3, bins), R, G, B
    failed: list[int] = field(default_factory=list)
    packets: int = 0  #: packets decoded to produce the chunk (measured amplification)

    def __iter__(self) -> Iterator[Any]:  # `hist, failed = histogram_chunk(...)`
        return iter((self.hist, self.failed))


def _frame_rgb_hist(
    frame: Any,
    rgb24: RGB24,
    bins: int,
    fast: bool,
    out: np.ndarray,
    banded: BandedRGB | None,
    fused: FusedRGB | None = None,
) -> None:
    """Histogram one decoded av.VideoFrame into ``out`` (3, bins) without keeping it."""
    if fused is not None and fused.hist(frame, rgb24, bins, out):
        return
    if banded is not None and banded.hist(frame, rgb24, bins, out):
        return
    rgb = rgb24.frame(frame)
    plane = rgb.planes[0]
    h, w = rgb.height, rgb.width
    if fast:
        _native.hist_interleaved(plane, h, w, plane.line_size, 3, bins, out.reshape(-1))
    else:
        rows = np.frombuffer(plane, np.uint8).reshape(h, plane.line_size)[:, : 3 * w]
        pixels = rows.reshape(h, w, 3)
        for c in range(3):
            out[c] = _numpy_plane(np.ascontiguousarray(pixels[:, :, c]), bins)
    del rgb, plane  # free the converted frame before the next one is allocated


def histogram_chunk(
    source: Source,
    start: int,
    stop: int,
    bins: int = 16,
    *,
    chunk: Chunk | None = None,
    native: bool | None = None,
    client: Any = None,
    threads: int = 1,
) -> ChunkHistogram:
    """Decode frames [start, stop) and histogram each as it comes (the fuse model).

    Holds at most one decoded frame (plus its planar RGB conversion) at a time and keeps
    the container open for the next chunk of the same source on this thread. ``chunk``
    (from ``plan_chunks`` / ``VideoIndex.chunk``) saves probing the source; without it the
    source is probed first. Frames that fail to decode are listed in ``failed``; the
    others are still histogrammed. Unpack as ``hist, failed = histogram_chunk(...)``.
    """
    bins = _check_bins(bins)
    fast = use_native(native)
    if chunk is None:
        chunk = probe(source, client=client).chunk(start, stop)
    elif (chunk.start, chunk.stop) != (start, stop):
        raise ValueError(
            f"chunk covers frames [{chunk.start}, {chunk.stop}) but [{start}, {stop}) was asked for"
        )
    hist = np.zeros((stop - start, 3, bins), dtype=np.int64)
    failed: list[int] = []
    rgb24 = RGB24()
    banded = BandedRGB(_native) if fast and os.environ.get(BANDED_ENV, "1") != "0" else None
    fused = FusedRGB(_native) if fast and os.environ.get(FUSED_ENV, "1") != "0" else None
    stats = DecodeStats()
    frames = iter_frames(
        source, chunk, failed, client=client, threads=threads, keep_open=True, stats=stats
    )
    for number, frame in frames:
        _frame_rgb_hist(frame, rgb24, bins, fast, hist[number - start], banded, fused)
        del frame
    if failed:
        log.warning(
            "%s: frames %d-%d: %d frame(s) failed to decode: %s",
            source,
            start,
            stop - 1,
            len(failed),
            failed[:20],
        )
    return ChunkHistogram(start, stop, hist, failed, stats.packets)
