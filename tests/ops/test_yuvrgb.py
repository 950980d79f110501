"""lambdaflow.ops.yuvrgb + native yuv_hist/yuv_rgb: in-register rgb24 histograms.

The reference is PyAV's own ``frame.to_ndarray(format="rgb24")`` (through
``video.RGB24``) and ``np.histogram`` with 16 bins over [0, 256), written here. Checked:
the native conversion's bytes and histograms at the sizes and formats it takes (tails of
every length, odd widths, both ranges, BT.601 / BT.709); that the calibration image
really holds every (Y, U, V) triple; that one differing byte in the calibration or in the
first frame, or one coefficient off by one, turns the path off with the same numbers
from the other paths; that it is used where it is meant to be; bad input.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import av
import numpy as np
import pytest

from lambdaflow.ops import yuvrgb
from lambdaflow.ops.histogram import FUSED_ENV, histogram_chunk
from lambdaflow.ops.video import RGB24, plan_chunks, probe
from tests.ops import corpus

native = pytest.importorskip("lambdaflow._native")
EDGES = np.arange(0, 257, 16)
AVX2 = native.simd() == "avx2"
LINUX = sys.platform.startswith("linux")
#: the libswscales whose SSSE3 converter yuv_hist.c matches (9: PyAV 18, 10: PyAV 19)
KNOWN_SWS = av.library_versions["libswscale"][0] in (9, 10) and AVX2 and LINUX
pytestmark = pytest.mark.skipif(not LINUX, reason="needs PyAV's libswscale in /proc/self/maps")


def ref_hist(rgb: np.ndarray, bins: int = 16) -> np.ndarray:
    """``bins`` (16, 8, 1: powers of two) over [0, 256) by numpy's uniform-bin path: the
    counts of the edges ``np.linspace(0, 256, bins + 1)`` for integer pixels (bins / 256
    is exact in float), without sorting each channel."""
    return np.array(
        [np.histogram(rgb[:, :, c], bins=bins, range=(0, 256))[0] for c in range(3)], np.int64
    )


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test calibrates and proves its geometries itself."""
    monkeypatch.setattr(yuvrgb, "_calibrated", {})
    monkeypatch.setattr(yuvrgb, "_proven", {})
    yuvrgb._coeffs_for.cache_clear()
    yield
    yuvrgb._coeffs_for.cache_clear()  # none computed with a patched `coefficients` stays


def random_frame(fmt: str, width: int, height: int, seed: int = 0) -> av.VideoFrame:
    rng = np.random.default_rng(seed)
    frame = av.VideoFrame(width, height, fmt)
    for plane in frame.planes:
        view = memoryview(plane)
        view[:] = rng.integers(0, 256, len(view), dtype=np.uint8).tobytes()
    return frame


def coeffs_of(frame: av.VideoFrame) -> tuple[int, ...]:
    key = (frame.format.name, frame.width, 0, int(frame.colorspace), int(frame.color_range))
    return yuvrgb.FusedRGB._coeffs(key)


@pytest.mark.skipif(not KNOWN_SWS, reason="the arithmetic is libswscale 9's SSSE3 path on x86")
@pytest.mark.parametrize("fmt", ["yuv420p", "yuvj420p", "yuv422p", "yuvj422p"])
@pytest.mark.parametrize(
    "size", [(854, 480), (1280, 720), (33, 20), (31, 2), (64, 4), (1, 2), (95, 6)]
)
@pytest.mark.parametrize("tags", [(2, 1), (1, 2), (5, 1)])  # (colorspace, range)
def test_native_conversion_equals_pyav(fmt, size, tags):
    width, height = size
    frame = random_frame(fmt, width, height, seed=width * height)
    frame.colorspace, frame.color_range = tags
    want = frame.to_ndarray(format="rgb24")
    planes = [(p, p.line_size) for p in frame.planes]
    vshift = yuvrgb.VSHIFT[fmt]
    got = np.empty((3, height, width), np.uint8)
    native.yuv_rgb(planes, width, height, 1, vshift, coeffs_of(frame), got)
    assert np.array_equal(got.transpose(1, 2, 0), want)
    for bins in (16, 8, 1):
        out = np.zeros(3 * bins, np.int64)
        assert native.yuv_hist(planes, width, height, 1, vshift, coeffs_of(frame), bins, out)
        assert np.array_equal(out.reshape(3, bins), ref_hist(want, bins))


@pytest.mark.parametrize("fmt", ["yuv420p", "yuv422p"])
def test_odd_heights_are_declined(fmt):
    """swscale converts an odd-height frame with its general scaler (other numbers)."""
    frame = random_frame(fmt, 64, 5)
    assert not yuvrgb.FusedRGB(native).hist(frame, RGB24(), 16, np.zeros((3, 16), np.int64))
    assert not yuvrgb._calibrated and not yuvrgb._proven


def test_bins_not_dividing_16_are_declined():
    frame = random_frame("yuv420p", 64, 4)
    out = np.full(3 * 10, 7, np.int64)
    planes = [(p, p.line_size) for p in frame.planes]
    assert not native.yuv_hist(planes, 64, 4, 1, 1, coeffs_of(frame), 10, out)
    assert (out == 7).all()  # untouched
    assert not yuvrgb.FusedRGB(native).hist(frame, RGB24(), 10, out.reshape(3, 10))


@pytest.mark.parametrize("fmt, width", [("yuv420p", 853), ("yuv420p", 1280), ("yuv422p", 854)])
def test_calibration_image_holds_every_triple(fmt, width):
    seen = np.zeros(1 << 24, bool)
    rows = yuvrgb.cal_rows(width)
    vs = yuvrgb.VSHIFT[fmt]
    for strip in range(yuvrgb.calibration_strips(fmt, width)):
        y, u, v = yuvrgb.calibration_planes(fmt, width, strip, rows)
        assert y.shape == (rows, width) and u.shape == (rows >> vs, (width + 1) // 2)
        uf = np.repeat(np.repeat(u, 1 << vs, 0), 2, 1)[:, :width].astype(np.int64)
        vf = np.repeat(np.repeat(v, 1 << vs, 0), 2, 1)[:, :width].astype(np.int64)
        seen[(y.astype(np.int64) << 16) | (uf << 8) | vf] = True
    assert seen.all(), f"{(~seen).sum()} (Y, U, V) triples never converted"


class OneByteOff(RGB24):
    """PyAV's rgb24, with one byte changed in the frames ``which`` selects."""

    def __init__(self, which) -> None:
        super().__init__()
        self.which, self.hits = which, 0

    def frame(self, frame):
        rgb = super().frame(frame)
        if self.which(frame):
            self.hits += 1
            plane = rgb.planes[0]
            view = np.frombuffer(plane, np.uint8)
            i = 5 * plane.line_size + 3 * 3 + 1  # row 5, pixel 3, green
            view[i] ^= 1
        return rgb


@pytest.mark.skipif(not KNOWN_SWS, reason="the path must be on to be turned off")
def test_one_byte_off_in_the_calibration_turns_the_path_off():
    frame = random_frame("yuv420p", 854, 480)
    out = np.zeros((3, 16), np.int64)
    rgb24 = OneByteOff(lambda f: f.height == yuvrgb.cal_rows(854))  # a calibration strip
    assert not yuvrgb.FusedRGB(native).hist(frame, rgb24, 16, out)
    assert rgb24.hits == 1 and list(yuvrgb._calibrated.values()) == [False]
    assert (out == 0).all()
    # the same frame, honest reference, fresh state: used (so the byte was what mattered)
    yuvrgb._calibrated.clear()
    yuvrgb._proven.clear()
    assert yuvrgb.FusedRGB(native).hist(frame, RGB24(), 16, out)
    assert np.array_equal(out, ref_hist(frame.to_ndarray(format="rgb24")))


@pytest.mark.skipif(not KNOWN_SWS, reason="the path must be on to be turned off")
def test_one_byte_off_in_the_first_frame_turns_that_key_off():
    frame = random_frame("yuv420p", 640, 360)
    out = np.zeros((3, 16), np.int64)
    rgb24 = OneByteOff(lambda f: f.height == 360)
    fused = yuvrgb.FusedRGB(native)
    assert not fused.hist(frame, rgb24, 16, out)
    assert rgb24.hits == 1 and list(yuvrgb._calibrated.values()) == [True]
    assert list(yuvrgb._proven.values()) == [False]
    assert not fused.hist(frame, RGB24(), 16, out)  # the verdict stays for that key


def test_a_coefficient_off_by_one_is_caught_and_the_numbers_stay(monkeypatch):
    """yuv_hist with a wrong coefficient would give other numbers: the calibration must
    catch it, and histogram_chunk must give the reference numbers from another path."""
    real = yuvrgb.coefficients

    def off_by_one(inverse, full):
        k = list(real(inverse, full))
        k[2] += 1  # vr
        return tuple(k)

    monkeypatch.setattr(yuvrgb, "coefficients", off_by_one)
    path = corpus.corpus_file("bbb-head.mp4")
    want = np.array([ref_hist(f) for f in corpus.reference(path)])
    index = probe(path)
    for chunk in plan_chunks(index, 16):
        got = histogram_chunk(path, chunk.start, chunk.stop, chunk=chunk)
        assert np.array_equal(got.hist, want[chunk.start : chunk.stop])
    if KNOWN_SWS:
        assert yuvrgb._calibrated and not any(yuvrgb._calibrated.values())


@pytest.mark.parametrize("name", ["bbb-head.mp4", "carphone.mp4", "bikes.ts"])
def test_used_on_8bit_420_clips_and_equal_to_the_reference(name, monkeypatch):
    path = corpus.corpus_file(name)
    want = np.array([ref_hist(f) for f in corpus.reference(path)])
    index = probe(path)
    calls = []
    real = yuvrgb.FusedRGB.hist

    def counted(self, *args):
        used = real(self, *args)
        calls.append(used)
        return used

    monkeypatch.setattr(yuvrgb.FusedRGB, "hist", counted)
    for setting in ("1", "0"):
        monkeypatch.setenv(FUSED_ENV, setting)
        for chunk in plan_chunks(index, 16):
            got = histogram_chunk(path, chunk.start, chunk.stop, chunk=chunk)
            assert np.array_equal(got.hist, want[chunk.start : chunk.stop]), setting
        if setting == "1" and KNOWN_SWS:
            assert calls and all(calls), "the in-register path was not used"
        if setting == "0":
            assert len(calls) == len(want), "LAMBDAFLOW_FUSED_RGB=0 still used it"


@pytest.mark.skipif(not AVX2, reason="yuv_rgb needs AVX2")
def test_bad_input_is_named():
    frame = random_frame("yuv420p", 64, 4)
    planes = [(p, p.line_size) for p in frame.planes]
    k = coeffs_of(frame)
    out = np.zeros(48, np.int64)
    with pytest.raises(ValueError, match="plane 0"):
        native.yuv_hist([(b"\0" * 10, 64)] + planes[1:], 64, 4, 1, 1, k, 16, out)
    with pytest.raises(ValueError, match="3 planes"):
        native.yuv_hist(planes[:2], 64, 4, 1, 1, k, 16, out)
    with pytest.raises(ValueError, match="yuv420p / yuv422p"):
        native.yuv_hist(planes, 64, 4, 0, 0, k, 16, out)
    with pytest.raises(ValueError, match="16-bit"):
        native.yuv_hist(planes, 64, 4, 1, 1, (1 << 16,) + k[1:], 16, out)
    with pytest.raises(ValueError, match="int64 items"):
        native.yuv_hist(planes, 64, 4, 1, 1, k, 16, np.zeros(47, np.int64))
    with pytest.raises(ValueError, match="3 x 4 x 64"):
        native.yuv_rgb(planes, 64, 4, 1, 1, k, np.zeros(10, np.uint8))


@pytest.fixture
def swscale_c_paths(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """libswscale with its x86 SIMD converters off (``av_force_cpu_flags(0)``): its C
    table path, which rounds otherwise. Contexts made meanwhile are not kept."""
    import ctypes
    import threading

    from lambdaflow.ops import banded

    path = banded._loaded_library("avutil")
    if path is None:
        pytest.skip("PyAV's libavutil is not in /proc/self/maps")
    avutil = ctypes.CDLL(path)
    monkeypatch.setattr(banded, "_proven", {})
    monkeypatch.setattr(banded, "_local", threading.local())
    avutil.av_force_cpu_flags(0)
    try:
        yield
    finally:
        avutil.av_force_cpu_flags(-1)  # back to the detected flags


@pytest.mark.skipif(not KNOWN_SWS, reason="the path must be on to be turned off")
def test_swscale_on_another_code_path_turns_it_off(swscale_c_paths):
    """A real other conversion (swscale's C path differs from its SSSE3 one by up to 3
    levels on most pixels): calibration refuses, histogram_chunk gives the reference."""
    frame = random_frame("yuv420p", 854, 480)
    out = np.zeros((3, 16), np.int64)
    assert not yuvrgb.FusedRGB(native).hist(frame, RGB24(), 16, out)
    assert list(yuvrgb._calibrated.values()) == [False]
    path = corpus.corpus_file("carphone.mp4")
    index = probe(path)
    chunk = next(iter(plan_chunks(index, 16)))
    with av.open(str(path)) as container:
        want = [
            ref_hist(f.to_ndarray(format="rgb24"))
            for _, f in zip(range(chunk.stop), container.decode(video=0))
        ]
    got = histogram_chunk(path, chunk.start, chunk.stop, chunk=chunk)
    assert chunk.start == 0 and np.array_equal(got.hist, np.array(want))
