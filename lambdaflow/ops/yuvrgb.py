"""rgb24 histograms computed in registers: swscale's own arithmetic, never the rgb24 image.

    av.VideoFrame ──FusedRGB.hist──> eligible? (yuv420p, yuvj420p, yuv422p, yuvj422p of
                                     even height; bins dividing 16; AVX2; PyAV's swscale)
                                     └ no ──> False (the caller takes the banded or the
                                       whole-frame path)
                                     └ yes ─> calibrated for (format, width, colorspace,
                                              range) in this process?
                                              └ first time: every (Y, U, V) triple at that
                                                width, converted by PyAV and by native
                                                yuv_rgb, compared byte for byte
                                              └ proven for this frame's key (+ height,
                                                strides, plane alignment mod 64)?
                                                └ first time: this frame both ways, every
                                                  byte, and its histograms
                                              └ equal ─> native yuv_hist (no rgb24 image)

What is computed: on x86 with SSSE3, PyAV's ``to_ndarray(format="rgb24")`` of 8-bit
yuv420p / yuv422p (and their yuvj forms) of even height (an odd one takes swscale's
general scaler: measured, the first-frame check refuses it) goes through libswscale's unscaled SSSE3
converter (``ff_yuv_420_rgb24_ssse3``: 16-bit lanes, ``pmulhw`` products of the
pre-shifted samples with six 16-bit coefficients, saturating adds, ``packuswb``). Each
pixel is a pure function of its own (Y, U, V): no dither, no neighbour. native/yuv_hist.c
does the same arithmetic with AVX2 and counts the bytes of a band of rows from an L1
scratch; ``coefficients`` derives the six values from the colorspace matrix swscale
itself returns (``sws_getCoefficients``) and the range, as swscale's table setup does.

Why it is trusted only where proven: another FFmpeg, another CPU (no SSSE3: the C table
path, which rounds differently) or another width condition (swscale leaves the last
pixels of a row to its destination stride rule) could give other bytes. So the first use
of each (format, width, colorspace, range) in a process converts a calibration image
holding every (Y, U, V) triple (2^24 pixels, in strips of ~2^18 pixels; about 0.12 s
of one core for 4:2:0, 0.24 s for 4:2:2, once) both ways, and the first frame of each
full key (+ height, plane strides and addresses mod 64) again, histograms included. Any difference turns the path
off for that key (logged once at debug); the caller then gives the same numbers from the
banded or whole-frame path. Linux only (PyAV's libswscale is found in /proc/self/maps).
"""

from __future__ import annotations

import ctypes
import logging
from functools import cache
from typing import Any

import numpy as np

from lambdaflow.ops import banded

log = logging.getLogger(__name__)

#: format -> vertical chroma shift (the horizontal one is 1 for all of them)
VSHIFT = {"yuv420p": 1, "yuvj420p": 1, "yuv422p": 0, "yuvj422p": 0}
AVCOL_RANGE_JPEG = 2


def cal_rows(width: int) -> int:
    """Luma rows per calibration strip: about 2^18 pixels (even, 16..8192)."""
    return min(max(((1 << 18) // width) & ~1, 16), 8192)


#: (format, width, colorspace, range) -> every triple equal (calibration done)
_calibrated: dict[tuple[Any, ...], bool] = {}
#: full key -> the first frame was equal too
_proven: dict[tuple[Any, ...], bool] = {}


def _round16(f: int) -> int:
    """swscale's roundToInt16: (f + 2^15) >> 16, clamped to int16."""
    r = (f + (1 << 15)) >> 16
    return -0x8000 if r < -0x7FFF else min(r, 0x7FFF)


def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def coefficients(inverse: tuple[int, int, int, int], full: bool) -> tuple[int, ...]:
    """(ycoef, yoff, vr, ub, vg, ug) of swscale's SIMD yuv2rgb for the inverse matrix
    ``sws_getCoefficients`` returns (crv, cbu, cgu, cgv in 16.16) and the source range,
    contrast and saturation 1, brightness 0 (PyAV's settings)."""
    crv, cbu, cgu, cgv = inverse[0], inverse[1], -inverse[2], -inverse[3]
    cy, oy = 1 << 16, 0
    if full:
        crv, cbu, cgu, cgv = (_cdiv(x * 224, 255) for x in (crv, cbu, cgu, cgv))
    else:
        cy, oy = _cdiv(cy * 255, 219), 16 << 16
    return (
        _round16(cy * 8192),
        _round16(oy * 8),
        _round16(crv * 8192),
        _round16(cbu * 8192),
        _round16(cgv * 8192),
        _round16(cgu * 8192),
    )


@cache
def _get_coefficients() -> Any:
    """PyAV's ``sws_getCoefficients`` as a ctypes function, or None."""
    symbols = banded._swscale()
    if symbols is None:
        return None
    proto = ctypes.CFUNCTYPE(ctypes.POINTER(ctypes.c_int), ctypes.c_int)
    return proto(symbols[0][2])


def calibration_planes(
    fmt: str, width: int, strip: int, rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y, U, V (C-contiguous, unpadded) of calibration strip ``strip``: ``rows`` luma rows
    in which chroma sample k (counted over all strips, row-major over the width // 2
    whole chroma columns) has U, V = divmod(k // n % 65536, 256) and its n = 4 (4:2:0) or
    2 (4:2:2) luma pixels the Y values n * (k % (256 // n)) + 0..n-1: the strips together
    hold every (Y, U, V) triple once."""
    vshift = VSHIFT[fmt]
    per = 2 << vshift  # luma pixels per chroma sample
    cw, ch = (width + 1) // 2, rows >> vshift
    full = max(width // 2, 1)
    col = np.minimum(np.arange(cw, dtype=np.uint32), full - 1)
    k = (strip * ch * full + np.arange(ch, dtype=np.uint32)[:, None] * full) + col
    pair = (k // (256 // per)) & 0xFFFF
    u, v = (pair >> 8).astype(np.uint8), (pair & 255).astype(np.uint8)
    base = (per * (k % (256 // per))).astype(np.uint8)  # < 256: per * (256 // per)
    # luma (2 * i + dy, 2 * j + dx) of chroma (i, j) is base + 2 * dy + dx (repeats and
    # 2-D adds: a 4-D broadcast of the same sum was 10x slower)
    y = np.repeat(base, 2, axis=1)
    y += np.tile(np.array([0, 1], np.uint8), cw)
    if vshift:
        y = np.repeat(y, 2, axis=0)
        y[1::2] += 2
    return np.ascontiguousarray(y[:, :width]), u, v


def calibration_strips(fmt: str, width: int) -> int:
    """Strips of ``cal_rows(width)`` rows that hold every (Y, U, V) triple at ``width``."""
    samples = (cal_rows(width) >> VSHIFT[fmt]) * max(width // 2, 1)
    return -(-(1 << 24) // (2 << VSHIFT[fmt]) // samples)


@cache
def _coeffs_for(fmt: str, colorspace: int, color_range: int) -> tuple[int, ...]:
    """``coefficients`` of PyAV's swscale matrix for a format, colorspace and range."""
    table = _get_coefficients()(colorspace)
    full = color_range == AVCOL_RANGE_JPEG or fmt.startswith("yuvj")
    return coefficients((table[0], table[1], table[2], table[3]), full)


class FusedRGB:
    """Histograms of ``rgb24.frame(frame)``'s pixels, computed without the rgb24 image
    where that was proven to give the same bytes (see the module)."""

    def __init__(self, native: Any) -> None:
        self._native = native

    def hist(self, frame: Any, rgb24: Any, bins: int, out: np.ndarray) -> bool:
        """Write the (3, bins) histogram into ``out`` and return True, or return False
        (nothing written) where this path does not apply or was not proven."""
        fmt = frame.format.name
        vshift = VSHIFT.get(fmt)
        width, height = frame.width, frame.height
        colorspace = getattr(frame, "colorspace", None)
        color_range = getattr(frame, "color_range", None)
        if vshift is None or 16 % bins or height & 1:  # odd: swscale's general scaler
            return False
        if colorspace is None or color_range is None or not hasattr(self._native, "yuv_hist"):
            return False
        planes = [(p, p.line_size) for p in frame.planes]
        key = (
            fmt,
            width,
            height,
            int(colorspace),
            int(color_range),
            tuple(s for _, s in planes),
            tuple(p.buffer_ptr % 64 for p, _ in planes),
        )
        proven = _proven.get(key)
        if proven is None:
            proven = _proven[key] = self._prove(key, frame, planes, rgb24, bins)
        if not proven:
            return False
        return bool(
            self._native.yuv_hist(
                planes, width, height, 1, vshift, self._coeffs(key), bins, out.reshape(-1)
            )
        )

    @staticmethod
    def _coeffs(key: tuple[Any, ...]) -> tuple[int, ...]:
        """The six coefficients for the format, colorspace and range of ``key``."""
        return _coeffs_for(key[0], key[3], key[4])

    def _prove(
        self, key: tuple[Any, ...], frame: Any, planes: list[Any], rgb24: Any, bins: int
    ) -> bool:
        """Calibrate (once per format, width, colorspace, range) and compare ``frame``."""
        if _get_coefficients() is None:
            log.debug("fused rgb24 %s: PyAV's libswscale not found; not used", key)
            return False
        fmt, width, height, colorspace, color_range = key[:5]
        coeffs = self._coeffs(key)
        vshift = VSHIFT[fmt]
        cal_key = key[:2] + key[3:5]
        try:
            if cal_key not in _calibrated:
                _calibrated[cal_key] = self._calibrate(fmt, width, colorspace, color_range, rgb24)
            if not _calibrated[cal_key]:
                log.debug("fused rgb24 %s: calibration differs from PyAV; not used", cal_key)
                return False
            ref = rgb24.frame(frame)
            want = _rgb_planes(ref)
            got = np.empty((3, height, width), np.uint8)
            self._native.yuv_rgb(planes, width, height, 1, vshift, coeffs, got)
            hist = np.zeros(3 * bins, np.int64)
            self._native.yuv_hist(planes, width, height, 1, vshift, coeffs, bins, hist)
        except (RuntimeError, ValueError) as exc:
            log.debug("fused rgb24 %s: %s; not used", key, exc)
            return False
        plane = ref.planes[0]
        ref_hist = np.zeros(3 * bins, np.int64)
        self._native.hist_interleaved(plane, height, width, plane.line_size, 3, bins, ref_hist)
        equal = np.array_equal(got, want) and np.array_equal(hist, ref_hist)
        if not equal:
            log.debug("fused rgb24 %s: first frame differs from PyAV; not used", key)
        return equal

    def _calibrate(
        self, fmt: str, width: int, colorspace: int, color_range: int, rgb24: Any
    ) -> bool:
        """Every (Y, U, V) triple at ``width``, converted by PyAV and natively: equal?"""
        import av

        coeffs = self._coeffs((fmt, width, 0, colorspace, color_range))
        vshift, rows = VSHIFT[fmt], cal_rows(width)
        got = np.empty((rows, 3 * width), np.uint8)  # rgb24 order: compared row by row
        for strip in range(calibration_strips(fmt, width)):
            y, u, v = calibration_planes(fmt, width, strip, rows)
            frame = av.VideoFrame(width, rows, fmt)
            frame.colorspace, frame.color_range = colorspace, color_range
            for plane, data in zip(frame.planes, (y, u, v)):
                view = np.frombuffer(memoryview(plane), np.uint8)
                stride = plane.line_size
                view[: data.shape[0] * stride].reshape(-1, stride)[:, : data.shape[1]] = data
            planes = [(p, p.line_size) for p in frame.planes]
            self._native.yuv_rgb(planes, width, rows, 1, vshift, coeffs, got, True)
            ref = rgb24.frame(frame).planes[0]
            want = np.frombuffer(ref, np.uint8)[: rows * ref.line_size]
            if not np.array_equal(got, want.reshape(rows, ref.line_size)[:, : 3 * width]):
                return False
        return True


def _rgb_planes(rgb: Any) -> np.ndarray:
    """(3, H, W) planar R, G, B of an rgb24 av.VideoFrame."""
    plane = rgb.planes[0]
    h, w = rgb.height, rgb.width
    rows = np.frombuffer(plane, np.uint8)[: h * plane.line_size].reshape(h, plane.line_size)
    return rows[:, : 3 * w].reshape(h, w, 3).transpose(2, 0, 1)
