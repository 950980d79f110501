"""lambdaflow.ops.videosource: opening sources and the per-thread container cache.

(S3 sources are exercised against a moto server in test_video.py.)
"""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest

from lambdaflow.ops import videosource
from lambdaflow.ops.histogram import histogram_chunk, rgb_histograms
from lambdaflow.ops.samplevideo import write_sample_video
from lambdaflow.ops.video import decode, iter_frames, plan_chunks, probe
from lambdaflow.ops.videosource import VideoError, acquire, close_cached, release


@pytest.fixture(autouse=True)
def _empty_cache():
    close_cached()
    yield
    close_cached()


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    path = write_sample_video(
        tmp_path_factory.mktemp("src") / "v.mp4", seconds=3, width=160, height=120
    )
    return path, rgb_histograms(decode(path, 0, 90))


def test_consecutive_chunks_reuse_one_container(sample):
    path, expected = sample
    plan = plan_chunks(probe(path), 20)
    seen = set()
    # Out of order, so the reused decoder has to seek back as well as forward.
    for chunk in [plan.chunks[2], plan.chunks[0], plan.chunks[1], plan.chunks[0]]:
        hist, failed = histogram_chunk(path, chunk.start, chunk.stop, chunk=chunk)
        assert failed == [] and np.array_equal(hist, expected[chunk.start : chunk.stop])
        seen.add(id(videosource._slot.entry[1]))
    assert len(seen) == 1


def test_a_changed_file_is_reopened(sample, tmp_path):
    path = tmp_path / "v.mp4"
    path.write_bytes(sample[0].read_bytes())
    chunk = probe(path).chunk(0, 30)
    histogram_chunk(path, 0, 30, chunk=chunk)
    first = videosource._slot.entry[1]
    other = write_sample_video(
        tmp_path / "o.mp4", seconds=3, width=160, height=120, scene_seconds=0.5
    )
    path.write_bytes(other.read_bytes())
    hist, _ = histogram_chunk(path, 0, 30, chunk=probe(path).chunk(0, 30))
    assert videosource._slot.entry[1] is not first
    assert np.array_equal(hist, rgb_histograms(decode(other, 0, 30)))


def test_only_paths_are_cached_and_only_when_asked(sample):
    path, _ = sample
    container, key = acquire(path)  # keep=False
    assert key is None
    release(container, key)
    data = io.BytesIO(path.read_bytes())
    container, key = acquire(data, keep=True)
    assert key is None
    release(container, key)
    assert getattr(videosource._slot, "entry", None) is None


def test_an_abandoned_iteration_is_not_cached(sample):
    path, _ = sample
    frames = iter_frames(path, probe(path).chunk(0, 30), keep_open=True)
    next(frames)
    frames.close()
    assert getattr(videosource._slot, "entry", None) is None


def test_the_cache_is_per_thread(sample):
    path, _ = sample
    histogram_chunk(path, 0, 30, chunk=probe(path).chunk(0, 30))
    seen = []
    t = threading.Thread(target=lambda: seen.append(getattr(videosource._slot, "entry", None)))
    t.start()
    t.join()
    assert seen == [None] and videosource._slot.entry is not None


def test_open_errors_name_the_source(tmp_path):
    with pytest.raises(VideoError, match="missing.mp4: no such file"):
        acquire(tmp_path / "missing.mp4", keep=True)
