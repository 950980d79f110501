"""lambdaflow.pipelines.histogram on the threads and processes backends."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

import lambdaflow as lf
from lambdaflow.ops.histogram import rgb_histograms
from lambdaflow.ops.samplevideo import write_sample_video
from lambdaflow.ops.video import VideoError, decode, probe
from lambdaflow.pipelines.histogram import (
    HistogramResult,
    plot_histograms,
    prepare_histogram,
    read_this_file,
    run_histogram,
    scene_changes,
    tasks_of,
    video_histogram,
    write_this_files,
)
from tests.conftest import BACKENDS


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    path = write_sample_video(
        tmp_path_factory.mktemp("hist") / "v.mp4", seconds=4, width=160, height=120
    )
    return path, rgb_histograms(decode(path, 0, 120))


def corrupt_keyframe(src: Path, dst: Path, which: int) -> Path:
    """A copy whose ``which``-th keyframe packet is zeroed: that frame cannot be decoded
    (the index stays intact, so probing still succeeds)."""
    key = probe(src).keyframes[which]
    data = bytearray(src.read_bytes())
    import av

    with av.open(str(src)) as c:
        size = next(p.size for p in c.demux(video=0) if p.pts == key.pts)
    data[key.pos : key.pos + size] = bytes(size)
    dst.write_bytes(bytes(data))
    return dst


@pytest.fixture(scope="module", params=["threads", "processes"])
def runtime(request):
    lf.shutdown()
    with lf.init(backend=request.param, num_workers=2) as rt:
        yield rt


def test_whole_video_equals_sequential_decode(runtime, sample):
    path, expected = sample
    calls: list[tuple[int, int]] = []
    result = video_histogram(path, batch=20, progress=lambda d, t: calls.append((d, t)))
    assert isinstance(result, HistogramResult) and result.ok
    assert result.hist.shape == (120, 3, 16) and result.hist.dtype == np.int64
    assert np.array_equal(result.hist, expected)
    assert np.asarray(result) is result.hist
    assert result.chunks == 4 and result.bounds == [
        (0, 30),
        (30, 60),
        (60, 90),
        (90, 120),
    ]
    # Measured (packets decoded / frames): chunks of whole GOPs decode each packet once.
    assert result.decode_amplification == 1.0 and result.seconds > 0
    assert result.planned_amplification == 1.0
    assert calls[0] == (0, 120) and calls[-1] == (120, 120)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and len(calls) == 5
    text = result.summary()
    assert "120 frames, 4 chunks" in text and "decode amplification 1.00" in text


def test_measured_amplification_counts_what_was_decoded(runtime, tmp_path):
    """One 120-frame GOP cut into 20-frame pieces: each piece decodes from the keyframe,
    and the figure reported is the packets the workers decoded, not the plan's guess."""
    from lambdaflow.ops.samplevideo import write_sample_video
    from lambdaflow.ops.video import plan_chunks

    path = write_sample_video(
        tmp_path / "g.mp4", seconds=4, width=96, height=64, gop=120, bframes=False
    )
    job = prepare_histogram(path, batch=20)
    job = type(job)(
        job.source, job.bins, job.index, plan_chunks(job.index, 20, split_long_gops=True)
    )
    result = run_histogram(job)
    assert result.ok and result.chunks == 6
    # Piece k decodes frames 0 .. 20(k+1)-1 (no B-frames: no reorder delay).
    assert result.decode_amplification == pytest.approx(sum(range(20, 121, 20)) / 120)


def test_other_bins_and_batch(runtime, sample):
    path, _ = sample
    result = video_histogram(path, batch=50, bins=4)
    assert result.chunks == 2 and result.hist.shape == (120, 3, 4)
    assert result.bounds == [(0, 60), (60, 120)]  # the plan's, though its halves ran
    assert np.array_equal(result.hist, rgb_histograms(decode(path, 0, 120), 4))


def test_the_tail_runs_as_whole_gop_halves(runtime, tmp_path):
    """The chunks of the last quarter (at least the last two) run as halves, so that the
    workers finish together; the rows equal a sequential decode's (the reference)."""
    path = write_sample_video(tmp_path / "t.mp4", seconds=10, width=96, height=64)
    job = prepare_histogram(path, batch=50)
    tasks = [(c.start, c.stop) for c in tasks_of(job.index, job.plan)]
    assert tasks == [(0, 60), (60, 120), (120, 180), (180, 210), (210, 240), (240, 270),
                     (270, 300)]
    assert all(c.keyframe == c.start for c in tasks_of(job.index, job.plan))
    result = run_histogram(job)
    assert result.ok and result.chunks == 5 and result.decode_amplification == 1.0
    assert result.bounds == [(i, i + 60) for i in range(0, 300, 60)]
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert np.array_equal(result.hist, rgb_histograms(frames))


def test_undecodable_frame_is_reported_and_the_rest_kept(runtime, sample, tmp_path):
    bad = corrupt_keyframe(sample[0], tmp_path / "bad.mp4", which=1)  # frame 30
    result = video_histogram(bad, batch=20)
    assert result.failed_frames == [30] and not result.ok and not result.chunk_failures
    assert not result.hist[30].any()
    failed: list[int] = []
    frames = decode(bad, 0, 120, failed=failed)
    rows = [n for n in range(120) if n != 30]
    assert np.array_equal(result.hist[rows], rgb_histograms(frames))
    assert "1 frames failed" in result.summary()


def test_failed_chunks_are_reported_not_raised(runtime, sample, tmp_path):
    path = tmp_path / "v.mp4"
    path.write_bytes(sample[0].read_bytes())
    job = prepare_histogram(path, batch=50)
    path.write_bytes(b"replaced by something else" * 100)  # after planning
    result = run_histogram(job)
    assert [(f.start, f.stop) for f in result.chunk_failures] == [(0, 60), (60, 120)]
    assert all(str(path) in f.error for f in result.chunk_failures)
    assert result.failed_frames == list(range(120)) and not result.hist.any()


def test_bad_input_fails_before_any_task(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        prepare_histogram(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="bins"):
        prepare_histogram(tmp_path / "missing.mp4", bins=0)
    with pytest.raises(ValueError, match="batch"):
        prepare_histogram(tmp_path / "missing.mp4", batch=0)


def test_scene_changes_this_files_and_plot(sample, tmp_path):
    path, expected = sample
    assert scene_changes(expected) == [90]  # the sample cuts every 3 s
    result = HistogramResult(
        str(path),
        expected,
        chunks=2,
        seconds=1.0,
        decode_amplification=1.0,
        fps=30.0,
        bounds=[(0, 60), (60, 120)],
    )
    files = write_this_files(result, tmp_path / "this")
    assert [f.name for f in files] == ["hist0-60.out", "hist60-60.out"]
    assert files[1].stat().st_size == 60 * 3 * 16 * 4
    assert np.array_equal(read_this_file(files[1]), expected[60:].astype(np.int32))
    png = plot_histograms(result, tmp_path / "plot" / "h.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.skipif("lambda" not in BACKENDS, reason="LAMBDAFLOW_TEST_LAMBDA=0")
def test_lambda_backend_reads_the_video_from_s3(local_aws_env, sample, monkeypatch):
    """The driver probes and the Lambda workers decode ``s3://`` with ranged GETs."""
    path, expected = sample
    s3 = local_aws_env.client("s3")
    bucket = local_aws_env.config["bucket"]
    s3.upload_file(str(path), bucket, "inputs/v.mp4")
    for name, value in local_aws_env.env.items():  # what `lambdaflow local-aws` prints
        monkeypatch.setenv(name, value)
    from lambdaflow import aws

    aws.clear_shared_clients()  # the driver's probe builds its client from these
    monkeypatch.setattr(aws, "_SHARED", {})
    lf.shutdown()
    with lf.init(backend="lambda", **local_aws_env.config):
        result = video_histogram(f"s3://{bucket}/inputs/v.mp4", batch=50)
    assert result.ok and result.chunks == 2
    assert np.array_equal(result.hist, expected)
