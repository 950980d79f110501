"""lambdaflow.ops.banded: band-by-band rgb24 conversion + histograms against PyAV.

The reference is PyAV's own ``frame.to_ndarray(format="rgb24")`` of the same frames and
``np.histogram`` with 16 bins over [0, 256), written here. Checked: the pixels of the
banded conversion for every band size from 2 rows up (last band shorter or not), the
histograms for every pixel format and size the corpus has (the formats banding refuses
fall back with the same numbers), that banding really is used where it is meant to be,
and that a wrong band geometry is caught by the first-frame check, not histogrammed.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from lambdaflow.ops import banded
from lambdaflow.ops.histogram import BANDED_ENV, FUSED_ENV, histogram_chunk
from lambdaflow.ops.video import RGB24, plan_chunks, probe
from tests.ops import corpus

native = pytest.importorskip("lambdaflow._native")
LINUX = sys.platform.startswith("linux")


def ref_hist(rgb: np.ndarray) -> np.ndarray:
    """16 bins over [0, 256): numpy's uniform-bin path, the counts of the edges
    ``np.arange(0, 257, 16)`` for integer pixels without sorting each channel."""
    return np.array(
        [np.histogram(rgb[:, :, c], bins=16, range=(0, 256))[0] for c in range(3)], np.int64
    )


def frames_of(path: Path, n: int = 6) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return [f for _, f in zip(range(n), container.decode(video=0))]


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test proves its geometries itself (no verdict or converter carried over)."""
    monkeypatch.setattr(banded, "_proven", {})
    monkeypatch.setattr(banded, "_local", threading.local())


def banded_pixels(frame: av.VideoFrame) -> np.ndarray | None:
    """The banded conversion of ``frame`` as (H, W, 3), or None if banding refused it."""
    b = banded.BandedRGB(native)
    out = np.zeros((3, 16), np.int64)
    if not b.hist(frame, RGB24(), 16, out):
        return None
    [key] = banded._proven
    linesize = banded._proven[key]
    conv = b._converter(key, linesize, banded.CHROMA_SHIFT[frame.format.name])
    buf = np.empty(frame.height * linesize, np.uint8)
    native.banded_convert(conv, [(p, p.line_size) for p in frame.planes], buf)
    rgb = buf.reshape(frame.height, linesize)[:, : 3 * frame.width]
    return rgb.reshape(frame.height, frame.width, 3)


@pytest.mark.skipif(not LINUX, reason="banding finds PyAV's libswscale in /proc/self/maps")
@pytest.mark.parametrize("band", [2, 4, 6, 30, 32, 64, 238])
@pytest.mark.parametrize(
    "name",
    [
        "x264-854x480.mp4",
        "x264-852x480.mp4",
        "x264-422.mkv",
        "x264-444-odd.mkv",
        "x264-fullrange.mp4",
        "bikes.ts",
    ],
)
def test_every_band_size_gives_pyav_pixels_and_histograms(name, band, monkeypatch):
    """Band boundaries anywhere (a last band shorter than the others, or none), odd
    widths, 4:2:0 / 4:2:2 / 4:4:4, limited and full range: PyAV's pixels exactly."""
    monkeypatch.setattr(banded, "BAND", band)
    for frame in frames_of(corpus.corpus_file(name), 3):
        want = frame.to_ndarray(format="rgb24")
        got = banded_pixels(frame)
        if frame.height <= band:  # one band would be the whole frame: not banded
            assert got is None
            continue
        assert got is not None, f"{name}: banding was not used ({frame.format.name})"
        assert np.array_equal(got, want), f"{name}, bands of {band}: pixels differ"
        out = np.zeros((3, 16), np.int64)
        assert banded.BandedRGB(native).hist(frame, RGB24(), 16, out)
        assert np.array_equal(out, ref_hist(want))


#: Every size and pixel format of the corpus once (the real clips' remuxes into other
#: containers are the same frames; test_video_corpus runs the fused op on all of them).
FORMATS = corpus.names("good", real=False) + ["bbb-head.mp4", "carphone.mp4", "bikes.ts"]


@pytest.mark.parametrize("name", FORMATS)
def test_fused_histograms_with_and_without_banding_equal_the_reference(name, monkeypatch):
    """Every corpus format (10-bit, odd heights, gray, VP9, ProRes: banded or not) and
    small bands (many boundaries): the reference histograms, chunk by chunk."""
    monkeypatch.setattr(banded, "BAND", 8)
    path = corpus.corpus_file(name)
    want = np.array([ref_hist(f) for f in corpus.reference(path)])
    index = probe(path)
    monkeypatch.setenv(FUSED_ENV, "0")  # the in-register path (tests/ops/test_yuvrgb.py) off
    for setting in ("1", "0"):
        monkeypatch.setenv(BANDED_ENV, setting)
        for chunk in plan_chunks(index, 16):
            got = histogram_chunk(path, chunk.start, chunk.stop, chunk=chunk)
            assert np.array_equal(got.hist, want[chunk.start : chunk.stop]), (
                f"{name} (LAMBDAFLOW_BANDED={setting}): frames {chunk.start}-{chunk.stop - 1}"
            )


@pytest.mark.skipif(not LINUX, reason="banding finds PyAV's libswscale in /proc/self/maps")
def test_banding_is_used_for_8bit_420_and_refused_where_unproven():
    """Used: 8-bit 4:2:0 of even height. Refused (the whole-frame path): 10-bit, an odd
    height with 4:2:0 chroma (swscale converts that frame another way)."""
    b = banded.BandedRGB(native)
    out = np.zeros((3, 16), np.int64)
    assert b.hist(frames_of(corpus.corpus_file("bbb-head.mp4"), 1)[0], RGB24(), 16, out)
    for name in ("x264-10bit.mkv", "vp9-odd.webm"):
        frame = frames_of(corpus.corpus_file(name), 1)[0]
        assert not b.hist(frame, RGB24(), 16, out), name


@pytest.mark.skipif(not LINUX, reason="banding finds PyAV's libswscale in /proc/self/maps")
def test_a_wrong_band_geometry_is_caught_by_the_first_frame_check(monkeypatch):
    """Fault injected: 4:2:0 chroma treated as full height (each band then reads the wrong
    chroma rows). The first frame's pixel comparison must refuse banding for that
    geometry, and the fused op must still give the reference numbers."""
    monkeypatch.setitem(banded.CHROMA_SHIFT, "yuv420p", 0)
    path = corpus.corpus_file("x264-640x360.mp4")
    frame = frames_of(path, 1)[0]
    out = np.zeros((3, 16), np.int64)
    assert not banded.BandedRGB(native).hist(frame, RGB24(), 16, out)
    assert list(banded._proven.values()) == [None]
    want = np.array([ref_hist(f) for f in corpus.reference(path)])
    got = histogram_chunk(path, 0, len(want))
    assert np.array_equal(got.hist, want)


def test_threads_histogramming_at_once_get_the_reference():
    """One converter (one band buffer) per thread: concurrent chunks do not mix bands."""
    path = corpus.corpus_file("x264-854x480.mp4")
    want = np.array([ref_hist(f) for f in corpus.reference(path)])
    plan = list(plan_chunks(probe(path), 4))
    results: dict[int, np.ndarray] = {}

    def work(k: int) -> None:
        for _ in range(3):
            for i, c in enumerate(plan):
                if i % 2 == k:
                    results[i] = histogram_chunk(path, c.start, c.stop, chunk=c).hist

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, c in enumerate(plan):
        assert np.array_equal(results[i], want[c.start : c.stop])


def test_native_arguments_are_checked():
    frame = frames_of(corpus.corpus_file("bikes.ts"), 1)[0]
    symbols = banded._swscale()
    if symbols is None:
        pytest.skip("PyAV's libswscale not found in this process")
    addresses, get_pix_fmt = symbols
    fmt = get_pix_fmt(b"yuv420p")
    with pytest.raises(ValueError, match="bad geometry"):
        native.banded_new(
            addresses, frame.width, frame.height, fmt, get_pix_fmt(b"rgb24"), 2, 2, 0, 10, 32, 1
        )  # linesize shorter than a row
    conv = native.banded_new(
        addresses,
        frame.width,
        frame.height,
        fmt,
        get_pix_fmt(b"rgb24"),
        2,
        2,
        0,
        3 * frame.width,
        32,
        1,
    )
    with pytest.raises(ValueError, match="plane 0"):
        native.banded_hist(conv, [(b"\0" * 10, frame.width)], 16, np.zeros(48, np.int64))
    with pytest.raises(ValueError, match="out"):
        native.banded_hist(
            conv, [(p, p.line_size) for p in frame.planes], 16, np.zeros(47, np.int64)
        )


@pytest.mark.skipif(not LINUX, reason="banding finds PyAV's libswscale in /proc/self/maps")
def test_planes_at_another_alignment_than_the_compared_frame_are_not_banded():
    """swscale picks vector paths by address alignment: the same pixels at plane
    addresses shifted by one byte are refused (False, out untouched), not converted."""
    frame = frames_of(corpus.corpus_file("bikes.ts"), 1)[0]
    b = banded.BandedRGB(native)
    out = np.zeros((3, 16), np.int64)
    assert b.hist(frame, RGB24(), 16, out)
    [key] = banded._proven
    conv = b._converter(key, banded._proven[key], 1)
    shifted = []
    for p in frame.planes:
        raw = np.zeros(p.buffer_size + 64, np.uint8)
        at = (-raw.ctypes.data) % 64 + 1  # one byte past a 64-byte boundary
        raw[at : at + p.buffer_size] = np.frombuffer(p, np.uint8)
        shifted.append((raw[at : at + p.buffer_size], p.line_size))
    untouched = np.full(48, -1, np.int64)
    assert native.banded_hist(conv, shifted, 16, untouched) is False
    assert (untouched == -1).all()
    assert native.banded_hist(conv, [(p, p.line_size) for p in frame.planes], 16, untouched)
    assert np.array_equal(untouched.reshape(3, 16), ref_hist(frame.to_ndarray(format="rgb24")))
