"""lambdaflow.ops.videoindex: which frames there are (as a sequential decode shows them),
entry points, cover art and truncation, on small files made here with PyAV.

The expectation is always PyAV's own sequential decode (``container.decode(video=0)``),
never the index itself. Real clips and more formats: test_video_corpus.py.
"""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from lambdaflow.ops.samplevideo import write_sample_video
from lambdaflow.ops.video import decode, plan_chunks
from lambdaflow.ops.videoindex import probe
from lambdaflow.ops.videosource import VideoError
from tests.ops import corpus

W, H = 160, 120


def shown_pts(path: Path) -> list[int]:
    with av.open(str(path)) as c:
        return [f.pts for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("index")
    return write_sample_video(d / "src.mp4", seconds=3, width=W, height=H, gop=30)


def test_edit_list_hides_frames_like_a_sequential_decode(src, tmp_path):
    # What `ffmpeg -ss 1.5 -c copy` writes: packets from the keyframe before 1.5 s with
    # negative times, hidden by an edit list (packet.is_discard).
    trim = corpus.remux(src, tmp_path / "trim.mp4", "mp4", shift_s=1.5)
    with av.open(str(trim)) as c:
        assert any(p.is_discard for p in c.demux(video=0))
    index = probe(trim)
    assert list(index.frame_pts) == sorted(shown_pts(trim))
    assert index.frame_count == 45 and index.keyframes[0].frame == 0
    assert index.truncated is None


def test_a_file_starting_mid_gop_starts_at_the_first_decodable_frame(src, tmp_path):
    mid = corpus.remux(src, tmp_path / "mid.ts", "mpegts", first_packet=10)
    index = probe(mid)
    assert list(index.frame_pts) == shown_pts(mid)  # the decoder drops the GOP's rest
    assert index.frame_count < 80 and index.keyframes[0].frame == 0
    got = decode(mid, 0, index.frame_count, index=index)
    assert len(got) == index.frame_count


@pytest.mark.parametrize("fmt", ["mpegts", "mpeg"])
def test_mpeg_ts_and_ps_with_b_frames_every_chunk_decodes(tmp_path, fmt):
    # Seeking by pts lands after the keyframe here (TS/PS seek by dts); never zero rows.
    path = corpus.x264(tmp_path / f"v.{fmt}", fmt, "yuv420p", W, H, n=40)
    index = probe(path)
    assert index.frame_count == len(shown_pts(path)) == 40
    for chunk in plan_chunks(index, 8):
        failed: list[int] = []
        frames = decode(path, chunk.start, chunk.stop, index=index, failed=failed)
        assert not failed and len(frames) == chunk.frames


def test_entry_points_carry_byte_positions_and_the_previous_entry(src):
    index = probe(src)
    assert [k.frame for k in index.keyframes] == [0, 30, 60]
    assert all(k.pos > 0 and k.key for k in index.keyframes)
    chunk = index.chunk(65, 70)
    assert (chunk.keyframe, chunk.seek_pts, chunk.seek_pos) == (
        60,
        index.keyframes[2].pts,
        index.keyframes[2].pos,
    )
    assert chunk.back_pts == index.keyframes[1].pts


def test_cover_art_is_not_video(tmp_path):
    mp3 = corpus.with_cover_art(tmp_path / "song.mp3", "mp3", "mp3")
    with av.open(str(mp3)) as c:
        assert c.streams.video  # FFmpeg lists the picture as a video stream
    with pytest.raises(VideoError, match=r"song\.mp3: no video stream \(only cover art"):
        probe(mp3)


def test_truncation_by_duration_is_reported_or_raised(tmp_path):
    whole = corpus.x264(tmp_path / "whole.mkv", "matroska", "yuv420p", W, H, n=40)
    cut = corpus.cut(whole, tmp_path / "cut.mkv", 0.6)  # Matroska: no frame count
    with pytest.raises(VideoError) as err:
        probe(cut)
    index = probe(cut, strict=False)
    assert index.truncated == str(err.value)
    assert index.frame_count == len(shown_pts(cut))
    assert str(cut) in index.truncated and "truncated" in index.truncated
    assert f"after frame {index.frame_count - 1} " in index.truncated
    assert "1.60 s (about 40 frames)" in index.truncated
    assert probe(whole).truncated is None


def test_truncation_inside_a_packet(tmp_path):
    whole = corpus.x264(tmp_path / "whole.flv", "flv", "yuv420p", W, H, n=40)
    cut = corpus.cut(whole, tmp_path / "cut.flv", 0.6)
    index = probe(cut, strict=False)
    assert "inside the next frame's packet" in index.truncated
    assert "\n" not in index.truncated
