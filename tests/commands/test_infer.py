"""Tests for ``lambdaflow infer`` and ``lambdaflow export-model`` (run through cli.main)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import NEEDS_MXNET

pytestmark = pytest.mark.mxnet
pytest.importorskip("mxnet", reason=NEEDS_MXNET)

import lambdaflow as lf
from lambdaflow.cli import main
from lambdaflow.ops.samplevideo import write_sample_video


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    source = write_sample_video(root / "v.mp4", seconds=1.2, width=256, height=240, fps=20, gop=8)
    assert (
        main(
            [
                "export-model",
                "--arch",
                "mobilenet0.25",
                "--classes",
                "4",
                "--synset",
                str(root / "m" / "mb"),
            ]
        )
        == 0
    )
    return str(source), str(root / "m" / "mb"), root


@pytest.fixture(autouse=True)
def _no_runtime():
    lf.shutdown()
    yield
    lf.shutdown()


def test_export_model_writes_the_files(assets, capsys):
    _, model, _ = assets
    for suffix in ("-symbol.json", "-0000.params", "-synset.txt"):
        assert Path(model + suffix).is_file()
    assert Path(model + "-synset.txt").read_text().splitlines() == [f"class_{i}" for i in range(4)]


@pytest.mark.parametrize("mode", ["fuse", "split"])
def test_infer_writes_one_json_line_per_frame(assets, tmp_path, capsys, mode):
    source, model, _ = assets
    out = tmp_path / "preds.jsonl"
    rc = main(
        [
            "infer",
            source,
            "--model",
            model,
            "--mode",
            mode,
            "--batch",
            "8",
            "--top-k",
            "3",
            "--backend",
            "threads",
            "--workers",
            "2",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [p["frame"] for p in lines] == list(range(24))
    assert set(lines[0]) == {"frame", "classes", "probs", "names"}
    assert len(lines[0]["classes"]) == 3 and lines[0]["names"][0].startswith("class_")
    err = capsys.readouterr().err
    assert "infer: 24 frames, 3 chunks," in err
    assert f"frames/s, mode {mode}, backend threads -> {out}" in err


def test_infer_to_stdout_matches_the_file(assets, tmp_path, capsys):
    source, model, _ = assets
    out = tmp_path / "a.jsonl"
    common = [
        "infer",
        source,
        "--model",
        model,
        "--backend",
        "threads",
        "--no-progress",
    ]
    assert main(common + ["--out", str(out)]) == 0
    capsys.readouterr()
    assert main(common + ["--mode", "split"]) == 0
    assert capsys.readouterr().out == out.read_text()


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--preprocess", "vgg"],
            "unknown preprocess 'vgg': choose one of this, imagenet",
        ),
        (["--mode", "both"], "unknown mode 'both': choose one of fuse, split"),
        (["--top-k", "0"], "top_k must be >= 1"),
        (["--backend", "lambda"], "with --backend lambda, VIDEO must be an s3:// URI"),
    ],
)
def test_bad_options_are_one_clear_line(assets, capsys, extra, message):
    source, model, _ = assets
    assert main(["infer", source, "--model", model, *extra]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lambdaflow infer: error: {message}")


def test_missing_model_is_one_clear_line(assets, tmp_path, capsys):
    source, _, _ = assets
    assert main(["infer", source, "--model", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope-symbol.json" in err[0] and "export-model" in err[0]


def test_frames_smaller_than_the_model_are_one_clear_line(tmp_path, capsys, assets):
    _, model, _ = assets
    small = write_sample_video(tmp_path / "s.mp4", seconds=0.5, width=128, height=96, fps=10)
    assert main(["infer", str(small), "--model", model]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "frames of 128x96 are smaller than the model input" in err[0]


def test_export_model_bad_arch_is_one_clear_line(tmp_path, capsys):
    assert main(["export-model", "--arch", "nonet", "--classes", "3", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown architecture 'nonet'" in err[0]


def test_a_truncated_video_writes_its_frames_and_exits_1(assets, tmp_path, capsys):
    """One line names the file, the last frame read and the expected length; the
    predictions of every frame a sequential decode reads are written."""
    from lambdaflow.ops.video import probe
    from tests.ops import corpus

    _, model, _ = assets
    path = corpus.corpus_file("trunc.mkv")
    out = tmp_path / "p.jsonl"
    args = ["infer", str(path), "--model", model, "--batch", "8", "--backend", "threads"]
    assert main(args + ["--out", str(out), "--no-progress"]) == 1
    frames = [json.loads(line)["frame"] for line in out.read_text().splitlines()]
    assert frames == list(range(len(corpus.reference(path))))
    err = capsys.readouterr().err.splitlines()
    assert f"infer: {probe(path, strict=False).truncated}" in err
    assert any(line.startswith(f"infer: {len(frames)} frames,") for line in err)
