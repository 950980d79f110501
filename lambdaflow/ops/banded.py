"""Banded rgb24 histograms: convert a frame a band of rows at a time, histogram each band.

    av.VideoFrame ──BandedRGB.hist──> eligible? (8-bit planar YUV, even height for 4:2:0)
                                      └ no ──> False (the caller converts the whole frame)
                                      └ yes ─> proven for this geometry in this process?
                                               └ first time: convert once both ways and
                                                 compare every pixel with PyAV's rgb24
                                               └ equal ─> native banded_hist: swscale
                                                 converts BAND rows into one reused
                                                 buffer (it stays in L2), the kernel
                                                 counts them, next band

Why: the whole-frame path writes a 2.7 MB rgb24 frame (720p) and reads it back from
L3/RAM; a band of BAND rows is read back from L2. The conversion is PyAV's own
libswscale (the copy its wheel loaded, found in this process's memory map and called
through function addresses that ctypes resolves), with the settings of
``to_ndarray(format="rgb24")``: SWS_BILINEAR, the frame's colorspace matrix (BT.601 when
untagged), limited range unless the frame says full or the format is yuvj*, and the
row stride PyAV's own rgb24 frame has (swscale picks its vector paths by stride).

Each band is converted as an image of its own. That is exact where no output row reads
another band's source rows: planar 8-bit YUV with bands a multiple of the vertical chroma
subsampling (4:2:0 also needs an even height: with an odd one swscale takes another
path for the whole frame). Those are the only formats tried, and even there the first
frame of every (size, format, colorspace, range) is converted both ways and compared
byte for byte; any difference (another FFmpeg, another CPU path) turns banding off for
that geometry, with the same numbers from the whole-frame path. The key includes the
source planes' strides, and the native side only bands a frame whose plane addresses
have the alignment (mod 64) of the frame compared (swscale picks some vector paths by
alignment); another frame goes the whole-frame way. Linux only (the memory map);
anywhere else, or without the native kernel, ``hist`` returns False.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from functools import cache
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Rows per band: 32 rows of 720p rgb24 are 123 KB (plus their source rows), well
#: inside a 512 KB L2. Even, so 4:2:0 bands start on a chroma row.
BAND = 32
SWS_BILINEAR = 2  # swscale's flag value; PyAV's default interpolation
AVCOL_RANGE_JPEG = 2
#: format name -> log2 of the vertical chroma subsampling (the formats banding may use)
CHROMA_SHIFT = {
    "yuv420p": 1,
    "yuvj420p": 1,
    "yuv422p": 0,
    "yuvj422p": 0,
    "yuv444p": 0,
    "yuvj444p": 0,
}
_SWS_SYMBOLS = (
    "sws_getContext",
    "sws_setColorspaceDetails",
    "sws_getCoefficients",
    "sws_scale",
    "sws_freeContext",
)


def _loaded_library(stem: str) -> str | None:
    """Path of the shared library ``lib<stem>`` mapped into this process (PyAV's own)."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rstrip("\n").split(None, 5)[-1]
                name = path.rsplit("/", 1)[-1]
                if name.startswith(f"lib{stem}") and ".so" in name:
                    return path
    except OSError:
        return None
    return None


@cache
def _swscale() -> tuple[tuple[int, ...], Any] | None:
    """(addresses of _SWS_SYMBOLS, av_get_pix_fmt) from the libraries PyAV loaded, or
    None where they cannot be found."""
    import av  # noqa: F401 - loads libswscale / libavutil

    sws_path, avutil_path = _loaded_library("swscale"), _loaded_library("avutil")
    if sws_path is None or avutil_path is None:
        log.debug("banded rgb24: PyAV's libswscale is not in /proc/self/maps; not banding")
        return None
    try:
        sws, avutil = ctypes.CDLL(sws_path), ctypes.CDLL(avutil_path)
        addresses = tuple(
            ctypes.cast(getattr(sws, s), ctypes.c_void_p).value or 0 for s in _SWS_SYMBOLS
        )
        get_pix_fmt = avutil.av_get_pix_fmt
    except (OSError, AttributeError) as exc:
        log.debug("banded rgb24: %s; not banding", exc)
        return None
    get_pix_fmt.restype, get_pix_fmt.argtypes = ctypes.c_int, [ctypes.c_char_p]
    return addresses, get_pix_fmt


#: key -> PyAV's rgb24 stride if banding gave its pixels on the first frame, None if
#: not (shared by threads; a converter is per thread: it has one band buffer)
_proven: dict[tuple[Any, ...], int | None] = {}
_local = threading.local()  # .converters: key -> capsule (a converter has one buffer)


class BandedRGB:
    """Histograms of a frame's rgb24 conversion computed band by band (see the module)."""

    def __init__(self, native: Any) -> None:
        self._native = native

    def hist(self, frame: Any, rgb24: Any, bins: int, out: np.ndarray) -> bool:
        """Write the (3, bins) histogram of ``rgb24.frame(frame)``'s pixels into ``out``
        and return True, or return False (nothing written) where banding does not apply."""
        fmt = frame.format.name
        shift = CHROMA_SHIFT.get(fmt)
        height, width = frame.height, frame.width
        colorspace = getattr(frame, "colorspace", None)  # PyAV >= 13 has both
        color_range = getattr(frame, "color_range", None)
        if shift is None or height % (1 << shift) or height <= BAND:
            return False
        if colorspace is None or color_range is None:
            return False
        planes = [(p, p.line_size) for p in frame.planes]
        strides = tuple(s for _, s in planes)
        key = (width, height, fmt, int(colorspace), int(color_range), strides)
        linesize = _proven.get(key, 0)
        if linesize is None:
            return False
        if not linesize:
            linesize = self._prove(key, frame, planes, rgb24, shift)
            if linesize is None:
                return False
        conv = self._converter(key, linesize, shift)
        return bool(self._native.banded_hist(conv, planes, bins, out.reshape(-1)))

    def _converter(self, key: tuple[Any, ...], linesize: int, shift: int) -> Any:
        converters = getattr(_local, "converters", None)
        if converters is None:
            converters = _local.converters = {}
        conv = converters.get(key)
        if conv is None:
            symbols = _swscale()
            assert symbols is not None  # proven keys exist only when it was found
            addresses, get_pix_fmt = symbols
            width, height, fmt, colorspace, color_range, _ = key
            full = int(color_range == AVCOL_RANGE_JPEG or fmt.startswith("yuvj"))
            if len(converters) >= 8:  # sizes seen by one thread: few; keep it bounded
                converters.clear()
            conv = converters[key] = self._native.banded_new(
                addresses,
                width,
                height,
                get_pix_fmt(fmt.encode()),
                get_pix_fmt(b"rgb24"),
                SWS_BILINEAR,
                colorspace,
                full,
                linesize,
                BAND,
                shift,
            )
        return conv

    def _prove(
        self, key: tuple[Any, ...], frame: Any, planes: list[Any], rgb24: Any, shift: int
    ) -> int | None:
        """Convert ``frame`` both ways; record and return PyAV's rgb24 row stride if
        every pixel is equal, else record None (this geometry is never banded)."""
        if _swscale() is None:
            _proven[key] = None
            return None
        ref = rgb24.frame(frame)
        plane = ref.planes[0]
        linesize, width, height = plane.line_size, frame.width, frame.height
        try:
            conv = self._converter(key, linesize, shift)
            got = np.empty(height * linesize, np.uint8)
            self._native.banded_convert(conv, planes, got)
        except (RuntimeError, ValueError) as exc:
            log.debug("banded rgb24 %s: %s; not banding", key, exc)
            _proven[key] = None
            return None
        want = np.frombuffer(plane, np.uint8)[: height * linesize].reshape(height, linesize)
        equal = np.array_equal(got.reshape(height, linesize)[:, : 3 * width], want[:, : 3 * width])
        if not equal:
            log.debug("banded rgb24 %s: differs from PyAV's conversion; not banding", key)
        _proven[key] = linesize if equal else None
        return _proven[key]
