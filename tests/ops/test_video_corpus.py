"""The video corpus (tests/ops/corpus.py) against a plain sequential PyAV decode.

The reference is written here, independent of lambdaflow: ``for f in
container.decode(video=0): f.to_ndarray(format="rgb24")`` and ``np.histogram`` with 16
bins per channel over [0, 256). Every good case must give the same frames, in the same
order, with exactly equal pixels and histograms, through ``decode``, the fused
``histogram_chunk``, the histogram pipeline, inference's frame decoding and the classroom
app's frame sampling. Bad cases (truncated files, music with cover art) must be reported
in one line naming the file, and keep what can be read.
"""

from __future__ import annotations

import logging

import av
import numpy as np
import pytest

from lambdaflow.ops import faces
from lambdaflow.ops.histogram import histogram_chunk
from lambdaflow.ops.video import VideoError, decode, plan_chunks, probe
from tests.ops import corpus
from tests.ops.corpus import reference

# 16 bins of 16 values (the project's bin = value * 16 // 256). An int ``bins`` with a
# ``range`` takes numpy's uniform-bin path: the same counts as the edges
# ``np.arange(0, 257, 16)`` for integer pixels (bins / 256 is a power of two, exact in
# float), without sorting every channel (3x less CPU; most of the slow cases' time).
BINS, RANGE = 16, (0, 256)


def reference_hist(frames: list[np.ndarray]) -> np.ndarray:
    return np.array(
        [[np.histogram(f[:, :, c], bins=BINS, range=RANGE)[0] for c in range(3)] for f in frames],
        dtype=np.int64,
    ).reshape(len(frames), 3, 16)


@pytest.fixture(scope="module")
def refs() -> dict:
    return {}


def case(name: str, refs: dict):
    if name not in refs:
        path = corpus.corpus_file(name)
        refs[name] = (path, reference(path))
    return refs[name]


def test_reference_hist_counts_what_the_edges_count():
    """The uniform-bin reference against np.histogram over the explicit edges, on every
    value 0..255 (each bin's both ends) and a real frame."""
    every = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    frame = reference(corpus.corpus_file("bikes.ts"))[0]
    edges = np.arange(0, 257, 16)
    for img in (every, frame):
        want = [[np.histogram(img[:, :, c], bins=edges)[0] for c in range(3)]]
        assert np.array_equal(reference_hist([img]), np.array(want))


GOOD = corpus.names("good")


@pytest.mark.parametrize("name", GOOD)
def test_decode_and_fused_histograms_equal_the_sequential_reference(name, refs):
    path, ref = case(name, refs)
    index = probe(path)
    assert index.truncated is None
    assert index.frame_count == len(ref), "frame numbering differs from a sequential decode"
    want = reference_hist(ref)
    packets = 0
    plan = plan_chunks(index, 8)  # small chunks: many seeks
    for chunk in plan:
        failed: list[int] = []
        got = decode(path, chunk.start, chunk.stop, index=index, failed=failed)
        assert not failed, f"frames {failed} failed"
        for n, frame in enumerate(got, chunk.start):
            assert np.array_equal(frame, ref[n]), f"frame {n} differs"
        fused = histogram_chunk(path, chunk.start, chunk.stop, chunk=chunk)
        assert not fused.failed
        assert np.array_equal(fused.hist, want[chunk.start : chunk.stop]), (
            f"fused histograms of frames {chunk.start}-{chunk.stop - 1} differ"
        )
        packets += fused.packets
    # Each packet of the file is decoded about once (chunks are whole GOPs): the measured
    # count against the file's packets (edit lists hide packets that must be decoded; an
    # open GOP's leading frames need the next keyframe, up to 3 packets per chunk).
    with av.open(str(path)) as container:
        in_file = sum(1 for p in container.demux(video=0) if p.size)
    assert packets <= in_file + 3 * len(plan)


@pytest.mark.parametrize(
    "name",
    ["bikes.ts", "mpeg2.mpg", "x264.mpg", "bikes-midgop.ts", "bikes-trim.mp4", "x264-opengop.ts"],
)
def test_a_range_between_keyframes_decodes_exactly(name, refs):
    path, ref = case(name, refs)
    index = probe(path)
    start, stop = index.frame_count // 3 + 1, index.frame_count // 3 + 6
    got = decode(path, start, stop, index=index)
    assert all(np.array_equal(a, ref[n]) for n, a in zip(range(start, stop), got))


@pytest.mark.parametrize(
    "name",
    [
        "bikes.ts",
        "mpeg2.mpg",
        "bikes-trim.mp4",
        "bikes-midgop.ts",
        "x264-854x480.mp4",
        "x264-10bit.mkv",
    ],
)
def test_every_pipeline_reads_the_same_frames(name, refs):
    """Histogram job (threads backend), inference's frame decoding, the classroom app's
    frame sampling: the frames of the sequential reference."""
    import lambdaflow as lf
    from lambdaflow.pipelines import histogram
    from lambdaflow.pipelines.inference import decode_frames

    path, ref = case(name, refs)
    with lf.init(backend="threads", num_workers=2):
        result = histogram.video_histogram(path, batch=8)
    assert result.ok and result.problem is None
    assert np.array_equal(result.hist, reference_hist(ref))
    # Measured (packets decoded / frames), not the plan's figure: at least every frame.
    assert result.decode_amplification >= 1.0

    index = probe(path)
    failed: list[int] = []
    pairs = [p for c in plan_chunks(index, 8) for p in decode_frames(str(path), c, failed)]
    assert not failed
    assert [n for n, _ in pairs] == list(range(len(ref)))  # numbered as the reference
    assert all(np.array_equal(a, b) for (_, a), b in zip(pairs, ref))

    samples = list(faces.sample_frames(path, every_s=0.001))  # every frame
    assert len(samples) == len(ref)
    assert all(np.array_equal(s.rgb, b) for s, b in zip(samples, ref))


@pytest.mark.parametrize("name", corpus.names("truncated"))
def test_truncation_is_one_line_naming_file_last_frame_and_length(name, refs, caplog):
    path, ref = case(name, refs)
    with pytest.raises(VideoError, match="truncated") as err:
        probe(path)
    line = str(err.value)
    assert "\n" not in line and str(path) in line
    index = probe(path, strict=False)
    assert index.truncated == line
    assert f"after frame {index.frame_count - 1} " in line
    assert "header" in line  # the expected length, or that the header gives none
    # The frames there are: every one a sequential decode reads intact.
    assert index.frame_count == len(ref)
    with caplog.at_level(logging.ERROR):
        got = decode(path, 0, index.frame_count, index=index)
    assert all(np.array_equal(a, b) for a, b in zip(got, ref))


def test_truncated_job_keeps_the_frames_and_reports(refs):
    import lambdaflow as lf
    from lambdaflow.pipelines import histogram

    path, ref = case("trunc.mkv", refs)
    with lf.init(backend="threads", num_workers=2):
        result = histogram.video_histogram(path, batch=8)
    assert not result.ok and "truncated" in result.problem and str(path) in result.problem
    assert np.array_equal(result.hist, reference_hist(ref))


@pytest.mark.parametrize("name", ["trunc.mkv", "trunc-frag.mp4", "trunc.flv"])
def test_truncated_file_gives_the_classroom_app_the_frames_there_are(name, refs):
    """The classroom app's sampling reads every frame the reference reads, then reports
    the truncation (the index's line, naming the file) instead of passing in silence."""
    path, ref = case(name, refs)
    line = probe(path, strict=False).truncated
    problems: list[str] = []
    samples = list(faces.sample_frames(path, every_s=0.001, problems=problems))
    assert len(samples) == len(ref)
    assert all(np.array_equal(s.rgb, b) for s, b in zip(samples, ref))
    assert problems and problems[0] == line
    with pytest.raises(faces.VideoDecodeError, match="truncated") as err:
        list(faces.sample_frames(path.read_bytes(), every_s=0.001, name="s3://in/v.mkv"))
    assert "s3://in/v.mkv: truncated" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", corpus.names("cover-art"))
def test_cover_art_is_not_video(name, refs):
    path = corpus.corpus_file(name)
    with pytest.raises(VideoError, match=r"no video stream \(only cover art") as err:
        probe(path)
    assert str(path) in str(err.value)
    with pytest.raises(faces.VideoDecodeError, match="only cover art"):
        list(faces.sample_frames(path))
