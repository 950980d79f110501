"""``lambdaflow histogram`` and ``lambdaflow sample-video``, run through cli.main."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lambdaflow as lf
from lambdaflow.cli import main
from lambdaflow.ops.histogram import rgb_histograms
from lambdaflow.ops.video import decode, probe
from lambdaflow.pipelines.histogram import read_this_file


@pytest.fixture(autouse=True)
def _no_runtime():
    lf.shutdown()
    yield
    lf.shutdown()


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "sample.mp4"
    args = [
        "sample-video",
        str(out),
        "--seconds",
        "2",
        "--width",
        "160",
        "--height",
        "120",
    ]
    assert main([*args, "--gop", "15", "--fps", "30"]) == 0
    return out


def test_sample_video_follows_the_options(video):
    index = probe(video)
    assert (index.frame_count, index.width, index.height) == (60, 160, 120)
    assert [k.frame for k in index.keyframes] == [0, 15, 30, 45]


def test_histogram_writes_array_plot_and_this_files(video, tmp_path, capsys):
    out, png, this = tmp_path / "h.npy", tmp_path / "h.png", tmp_path / "this"
    rc = main(
        [
            "histogram",
            str(video),
            "--backend",
            "threads",
            "--batch",
            "30",
            "--out",
            str(out),
            "--plot",
            str(png),
            "--this-dir",
            str(this),
            "--no-progress",
        ]
    )
    assert rc == 0
    expected = rgb_histograms(decode(video, 0, 60))
    assert np.array_equal(np.load(out), expected)
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in this.iterdir()) == ["hist0-30.out", "hist30-30.out"]
    assert np.array_equal(read_this_file(this / "hist30-30.out"), expected[30:])
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("histogram: 60 frames, 2 chunks, ")
    assert "frames/s" in err[-1] and "decode amplification 1.00" in err[-1]


def test_histogram_on_processes_with_progress(video, tmp_path, capsys):
    out = tmp_path / "h.npy"
    rc = main(["histogram", str(video), "--workers", "2", "--bins", "8", "--out", str(out)])
    assert rc == 0
    assert np.array_equal(np.load(out), rgb_histograms(decode(video, 0, 60), 8))
    err = capsys.readouterr().err
    assert "60/60" in err and "backend processes" in err  # the bar reached the end


def test_bad_inputs_give_one_line_and_exit_1(video, tmp_path, capsys):
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video\n" * 100)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(video.read_bytes()[:5000])
    cases = {
        tmp_path / "missing.mp4": "no such file",
        junk: "not a readable video",
        cut: "not a readable video",
    }
    for path, problem in cases.items():
        assert main(["histogram", str(path), "--backend", "threads"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(path) in err[0] and problem in err[0], err
    assert main(["histogram", str(video), "--backend", "lambda"]) == 1
    assert "s3://" in capsys.readouterr().err
    assert main(["histogram", str(video), "--bins", "0", "--backend", "threads"]) == 1
    assert "bins" in capsys.readouterr().err
    with pytest.raises(Exception, match="no such file"):
        main(["--debug", "histogram", str(tmp_path / "missing.mp4")])


def test_undecodable_frames_are_listed_and_exit_1(video, tmp_path, capsys):
    import av

    key = probe(video).keyframes[2]  # frame 30
    with av.open(str(video)) as c:
        size = next(p.size for p in c.demux(video=0) if p.pts == key.pts)
    data = bytearray(video.read_bytes())
    data[key.pos : key.pos + size] = bytes(size)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    out = tmp_path / "h.npy"
    rc = main(
        [
            "histogram",
            str(bad),
            "--backend",
            "threads",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "frames failed" in err[0]  # the summary line still comes
    # How many frames after the bad keyframe the decoder drops is its business; frame 30
    # is among them, they are listed, their rows are zero, the rest is kept.
    assert str(bad) in err[-1] and "could not be decoded" in err[-1]
    assert err[-1].split(": ")[-1].startswith("30")
    hist = np.load(out)
    expected = rgb_histograms(decode(video, 0, 60))
    assert not hist[30].any()
    assert np.array_equal(hist[:30], expected[:30])
    assert np.array_equal(hist[45:], expected[45:])


def test_truncated_video_keeps_its_frames_reports_one_line_and_exits_1(tmp_path, capsys):
    """A Matroska file has no frame count: truncation is found by its duration."""
    import av

    from tests.ops import corpus

    whole = corpus.x264(tmp_path / "whole.mkv", "matroska", "yuv420p", 160, 120, n=40)
    cut = corpus.cut(whole, tmp_path / "cut.mkv", 0.6)
    with av.open(str(cut)) as c:  # the reference: what a sequential decode reads
        ref = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    out = tmp_path / "h.npy"
    rc = main(
        [
            "histogram",
            str(cut),
            "--backend",
            "threads",
            "--batch",
            "8",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "source truncated" in err[0]  # the summary line
    assert len(err) == 2 and str(cut) in err[1] and "truncated" in err[1]
    assert f"after frame {len(ref) - 1} " in err[1] and "about 40 frames" in err[1]
    edges = np.arange(0, 257, 16)
    want = [[np.histogram(f[:, :, c], bins=edges)[0] for c in range(3)] for f in ref]
    assert np.array_equal(np.load(out), np.array(want))
