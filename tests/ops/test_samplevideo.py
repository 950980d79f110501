"""lambdaflow.ops.samplevideo: layout, determinism and content of generated videos."""

from __future__ import annotations

import av
import numpy as np
import pytest

from lambdaflow.ops.histogram import rgb_histograms
from lambdaflow.ops.samplevideo import write_sample_video
from lambdaflow.ops.video import decode, probe


def test_layout_follows_the_arguments(tmp_path):
    path = write_sample_video(
        tmp_path / "out" / "v.mp4",
        seconds=2,
        width=96,
        height=64,
        fps=25,
        gop=10,
        bframes=False,
    )
    index = probe(path)
    assert (index.frame_count, index.width, index.height, index.fps) == (50, 96, 64, 25)
    assert [k.frame for k in index.keyframes] == list(range(0, 50, 10))
    assert not (tmp_path / "out" / "v.mp4.partial").exists()
    with av.open(str(path)) as c:
        pts = [p.pts for p in c.demux(video=0) if p.pts is not None]
    assert pts == sorted(pts)  # no B-frames: decode order is presentation order


def test_bframes_reorder_packets(tmp_path):
    path = write_sample_video(tmp_path / "b.mp4", seconds=1, width=64, height=48)
    with av.open(str(path)) as c:
        pts = [p.pts for p in c.demux(video=0) if p.pts is not None]
    assert pts != sorted(pts)


def test_same_arguments_same_pixels(tmp_path):
    a = write_sample_video(tmp_path / "a.mp4", seconds=1, width=64, height=48)
    b = write_sample_video(tmp_path / "b.mp4", seconds=1, width=64, height=48)
    assert all(np.array_equal(x, y) for x, y in zip(decode(a, 0, 30), decode(b, 0, 30)))


def test_content_moves_and_scene_changes_jump(tmp_path):
    path = write_sample_video(
        tmp_path / "s.mp4", seconds=3, width=160, height=120, scene_seconds=1.0
    )
    hist = rgb_histograms(decode(path, 0, 90)).astype(float)
    step = np.abs(np.diff(hist, axis=0)).sum(axis=(1, 2))  # change from frame i to i+1
    cuts = {29, 59}  # frames 30 and 60 start new scenes
    inside = [step[i] for i in range(89) if i not in cuts]
    assert min(step[i] for i in cuts) > 3 * max(inside)
    frames = decode(path, 0, 3)
    assert not np.array_equal(frames[0], frames[2])  # moving content


def test_bad_sizes_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_sample_video(tmp_path / "x.mp4", width=101, height=64)
    with pytest.raises(ValueError, match="positive"):
        write_sample_video(tmp_path / "x.mp4", seconds=0, width=64, height=64)
