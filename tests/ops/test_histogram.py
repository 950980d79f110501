"""lambdaflow.ops.histogram and the native kernel: native == numpy, the fused chunk op."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lambdaflow.ops import histogram as H
from lambdaflow.ops.histogram import (
    histogram_chunk,
    rgb_histograms,
    use_native,
    yuv_histograms,
)
from lambdaflow.ops.samplevideo import write_sample_video
from lambdaflow.ops.video import decode, plan_chunks, probe

native = pytest.importorskip("lambdaflow._native")
BINS = [1, 2, 3, 7, 8, 16, 17, 64, 255, 256]


def reference(plane: np.ndarray, bins: int) -> np.ndarray:
    """The definition, written out: bin = value * bins // 256."""
    out = np.zeros(bins, np.int64)
    for v, n in enumerate(np.bincount(plane.ravel(), minlength=256)):
        out[v * bins // 256] += n
    return out


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_video(
        tmp_path_factory.mktemp("hist") / "v.mp4", seconds=3, width=176, height=120
    )  # 176: not a multiple of 32


@pytest.mark.parametrize("shape", [(120, 160, 3), (1, 1, 3), (7, 33, 3), (64, 1000, 3)])
@pytest.mark.parametrize("bins", BINS)
def test_rgb_native_equals_numpy_on_random_frames(shape, bins):
    frames = np.random.default_rng(bins).integers(0, 256, (2, *shape), dtype=np.uint8)
    fast = rgb_histograms(frames, bins, native=True)
    slow = rgb_histograms(frames, bins, native=False)
    assert fast.shape == (2, 3, bins) and fast.dtype == np.int64
    assert np.array_equal(fast, slow)
    assert np.array_equal(slow[1, 2], reference(frames[1, :, :, 2], bins))


def test_rgb_accepts_one_frame_lists_and_strided_views():
    big = np.random.default_rng(1).integers(0, 256, (50, 90, 3), dtype=np.uint8)
    view = big[5:45:2, 10:80]  # strided rows and columns
    assert np.array_equal(rgb_histograms(view, native=True), rgb_histograms(view, native=False))
    assert rgb_histograms([view, big], native=True).shape == (2, 3, 16)
    assert rgb_histograms(big).sum() == 3 * 50 * 90


@pytest.mark.parametrize("path", ["auto", "avx2", "sse2", "scalar"])
@pytest.mark.parametrize("bins", BINS)
def test_every_kernel_path_matches_the_definition(path, bins):
    if (
        path != "auto"
        and path != "scalar"
        and {"avx2": ("avx2",), "sse2": ("avx2", "sse2")}[path].count(native.simd()) == 0
    ):
        pytest.skip(f"{path} not available here ({native.simd()})")
    rng = np.random.default_rng(bins)
    planes = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(31, 1000), (5, 9000), (3, 3)]]
    # Constant planes overflow 8-bit lane counters if they are not flushed in time.
    planes += [np.full((300, 512), v, np.uint8) for v in (0, 15, 16, 255)]
    out = np.zeros(len(planes) * bins, np.int64)
    native.hist_planes([(p, *p.shape, p.shape[1]) for p in planes], bins, out, path=path)
    for got, p in zip(out.reshape(-1, bins), planes):
        assert np.array_equal(got, reference(p, bins))


@pytest.mark.parametrize("path", ["auto", "avx2", "scalar"])
@pytest.mark.parametrize("bins", BINS)
def test_every_interleaved_kernel_path_matches_the_definition(path, bins):
    if path == "avx2" and native.simd() != "avx2":
        pytest.skip(f"avx2 not available here ({native.simd()})")
    rng = np.random.default_rng(bins)
    # Widths around the kernel's 32-pixel groups and its blocks of 14/15 groups (a row's
    # leftover pixels are a masked group overlapping the last whole one), padded rows, and
    # constant images big enough to overflow lane counters that are not flushed in time.
    sizes = [(1, 1, 0), (3, 31, 0), (5, 32, 7), (7, 33, 0), (9, 854, 16), (4, 1366, 2)]
    sizes += [(3, 14 * 32 + 5, 0), (3, 15 * 32 + 1, 3), (2, 28 * 32 + 31, 0), (2, 63, 1)]
    images = [rng.integers(0, 256, (h, w * 3 + pad), dtype=np.uint8) for h, w, pad in sizes]
    images.append(np.full((900, 3 * 1000), 77, np.uint8))
    images.append(np.full((700, 3 * (28 * 32 + 5)), 250, np.uint8))
    images.append(np.full((300, 3 * 853), 3, np.uint8))
    for img in images:
        h, w = img.shape[0], img.shape[1] // 3
        out = np.zeros(3 * bins, np.int64)
        native.hist_interleaved(img, h, w, img.shape[1], 3, bins, out, path=path)
        pixels = img[:, : 3 * w].reshape(h, w, 3)
        for c in range(3):
            assert np.array_equal(out[c * bins : (c + 1) * bins], reference(pixels[:, :, c], bins))


def test_fused_chunk_equals_a_sequential_rgb24_decode_at_854x480(tmp_path):
    """The size of issue 11: gbrp/POINT differed from to_ndarray's rgb24 here."""
    import av

    path = write_sample_video(tmp_path / "w.mp4", seconds=0.5, width=854, height=480)
    with av.open(str(path)) as c:
        ref = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    edges = np.arange(0, 257, 16)
    want = np.array([[np.histogram(f[:, :, c], bins=edges)[0] for c in range(3)] for f in ref])
    for use in (True, False):
        res = histogram_chunk(path, 0, len(ref), native=use)
        assert np.array_equal(res.hist, want)
        assert res.packets == len(ref)  # one GOP, decoded once


def test_yuv_native_equals_numpy_on_decoded_frames(video):
    frames = decode(video, 0, 30, format="yuv420p")
    for bins in (16, 5, 256):
        fast = yuv_histograms(frames, bins, native=True)
        assert np.array_equal(fast, yuv_histograms(frames, bins, native=False))
        assert fast.shape == (30, 3, bins)
        assert fast[0, 0].sum() == 176 * 120 and fast[0, 1].sum() == 88 * 60
    y, u, v = frames[3][:120], frames[3][120:150], frames[3][150:]
    assert np.array_equal(yuv_histograms((y, u, v))[0], yuv_histograms(frames[3])[0])


def test_rgb_native_equals_numpy_on_decoded_frames(video):
    frames = decode(video, 20, 50)
    for bins in (16, 10):
        assert np.array_equal(
            rgb_histograms(frames, bins, native=True),
            rgb_histograms(frames, bins, native=False),
        )


@pytest.mark.parametrize("use", [True, False])
def test_fused_chunk_equals_decode_then_histogram(video, use):
    index = probe(video)
    for start, stop in [(0, 30), (37, 60), (61, 90)]:
        hist, failed = histogram_chunk(video, start, stop, native=use)
        assert failed == []
        expected = rgb_histograms(decode(video, start, stop, index=index), native=False)
        assert np.array_equal(hist, expected)


def test_fused_chunk_from_a_plan_and_other_bins(video):
    index = probe(video)
    chunk = plan_chunks(index, 20).chunks[1]
    res = histogram_chunk(video, chunk.start, chunk.stop, bins=8, chunk=chunk)
    assert res.hist.shape == (chunk.frames, 3, 8) and (res.start, res.stop) == (30, 60)
    assert np.array_equal(res.hist, rgb_histograms(decode(video, 30, 60), 8))
    with pytest.raises(ValueError, match="chunk covers"):
        histogram_chunk(video, 0, 10, chunk=chunk)


def test_fused_chunk_reports_failed_frames_and_keeps_the_rest(tmp_path):
    full = write_sample_video(tmp_path / "f.mp4", seconds=3, width=160, height=120, faststart=True)
    cut = tmp_path / "cut.mp4"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) * 3 // 4])
    chunk = probe(full).chunk(60, 90)
    hist, failed = histogram_chunk(cut, 60, 90, chunk=chunk)
    assert failed and failed[-1] == 89
    good = [n for n in range(60, 90) if n not in failed]
    expected = rgb_histograms(decode(full, 60, 90))
    assert np.array_equal(hist[[n - 60 for n in good]], expected[[n - 60 for n in good]])
    assert not hist[[n - 60 for n in failed]].any()


def test_forcing_the_numpy_fallback(monkeypatch):
    monkeypatch.setenv(H.NATIVE_ENV, "0")
    assert use_native() is False and use_native(True) is True
    monkeypatch.setenv(H.NATIVE_ENV, "1")
    assert use_native() is True and use_native(False) is False
    monkeypatch.setattr(H, "_native", None)
    assert use_native() is False
    with pytest.raises(RuntimeError, match="build_ext"):
        use_native(True)


def test_bad_arguments_are_clear_errors():
    frame = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="bins"):
        rgb_histograms(frame, 0)
    with pytest.raises(ValueError, match="bins"):
        rgb_histograms(frame, 257)
    with pytest.raises(TypeError, match="uint8"):
        rgb_histograms(frame.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        rgb_histograms(np.zeros((2, 4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="yuv420p"):
        yuv_histograms(np.zeros((5, 4), np.uint8))
    out = np.zeros(16, np.int64)
    with pytest.raises(ValueError, match="buffer holds"):
        native.hist_planes([(b"\0" * 10, 4, 4, 4)], 16, out)
    with pytest.raises(TypeError, match="int64"):
        native.hist_planes([(b"\0" * 16, 4, 4, 4)], 16, np.zeros(16, np.int32))
    with pytest.raises(ValueError, match="16 int64 items"):
        native.hist_planes([(b"\0" * 16, 4, 4, 4)], 16, np.zeros(15, np.int64))
    with pytest.raises(ValueError, match="stride"):
        native.hist_interleaved(b"\0" * 48, 4, 4, 4, 3, 16, out[:0].copy())
    with pytest.raises(ValueError, match="path"):
        native.hist_planes([(b"\0" * 16, 4, 4, 4)], 16, out, path="neon9")


def test_kernel_releases_the_gil():
    """With a huge switch interval a thread keeps the GIL until it blocks or releases it,
    so the main thread can only see the worker between "entered" and "done" if the
    kernel calls let go of the GIL (no timing involved)."""
    planes = [(np.zeros(4_000_000, np.uint8), 1, 4_000_000, 4_000_000)]
    out = np.zeros(16, np.int64)
    state = {"entered": False, "done": False}
    seen: list[tuple[bool, bool]] = []

    def work() -> None:
        state["entered"] = True
        for _ in range(50):
            native.hist_planes(planes, 16, out)
        state["done"] = True

    old = sys.getswitchinterval()
    sys.setswitchinterval(1000)
    try:
        t = threading.Thread(target=work)
        t.start()
        while not state["entered"]:
            time.sleep(0.001)
        seen.append((state["entered"], state["done"]))
        t.join()
    finally:
        sys.setswitchinterval(old)
    assert seen == [(True, False)]
    assert out[0] == 4_000_000
