"""Tests for lambdaflow.pipelines.inference: fuse and split against a direct MXNet run."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import NEEDS_MXNET

pytestmark = pytest.mark.mxnet
mx = pytest.importorskip("mxnet", reason=NEEDS_MXNET)

import lambdaflow as lf
from lambdaflow import api
from lambdaflow.ops import video
from lambdaflow.ops.inference import topk
from lambdaflow.ops.modelzoo import export_model
from lambdaflow.ops.preprocess import preprocess
from lambdaflow.ops.samplevideo import write_sample_video
from lambdaflow.pipelines.inference import (
    decode_frames,
    prepare_inference,
    run_inference,
    video_inference,
)

FRAMES = 40  # 320x240, GOP 10, batch 10: 4 chunks


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("vi")
    source = str(
        write_sample_video(
            root / "v.mp4",
            seconds=FRAMES / 20,
            width=320,
            height=240,
            fps=20,
            gop=10,
            scene_seconds=1.0,
        )
    )
    model = export_model("mobilenet0.25", 6, root / "mb", synset=True)
    return source, model, root


@pytest.fixture(scope="module")
def direct(assets):
    """Top-5 from MXNet alone (Gluon SymbolBlock) over the same decoded frames."""
    source, model, _ = assets

    def run(rule: str) -> tuple[np.ndarray, np.ndarray]:
        frames = video.decode(source, 0, FRAMES)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            net = mx.gluon.SymbolBlock.imports(
                f"{model}-symbol.json", ["data"], f"{model}-0000.params"
            )
        probs = mx.nd.softmax(net(mx.nd.array(preprocess(frames, rule)))).asnumpy()
        return topk(probs, 5)

    return run


@pytest.fixture(autouse=True)
def _no_runtime():
    lf.shutdown()
    yield
    lf.shutdown()


def _check_against_direct(result, classes, probs):
    assert [p["frame"] for p in result.predictions] == list(range(FRAMES))
    assert [p["classes"] for p in result.predictions] == classes.tolist()
    assert np.allclose([p["probs"] for p in result.predictions], probs, rtol=1e-4, atol=1e-6)
    assert result.predictions[0]["names"] == [f"class_{c}" for c in classes[0]]


@pytest.mark.parametrize("rule", ["this", "imagenet"])
def test_fuse_and_split_equal_direct_mxnet_on_threads(assets, direct, rule):
    source, model, _ = assets
    classes, probs = direct(rule)
    with lf.init(backend="threads", num_workers=4):
        fuse = video_inference(source, model, "fuse", batch=10, preprocess=rule)
        split = video_inference(
            source,
            model,
            "split",
            batch=10,
            preprocess=rule,
            infer_batch=3,
            refs_per_task=3,
        )
    _check_against_direct(fuse, classes, probs)
    _check_against_direct(split, classes, probs)
    assert fuse.chunks == split.chunks == 4
    assert (fuse.tasks, split.tasks) == (4, 4 + 2)
    for a, b in zip(fuse.predictions, split.predictions):
        assert a["classes"] == b["classes"]
        assert np.allclose(a["probs"], b["probs"], rtol=1e-5, atol=1e-7)


def test_fuse_and_split_on_processes_are_identical(assets, direct):
    source, model, _ = assets
    classes, probs = direct("this")
    with lf.init(backend="processes", num_workers=2):
        fuse = video_inference(source, model, "fuse", batch=10, top_k=5, mxnet_threads=1)
        split = video_inference(source, model, "split", batch=10, top_k=5, refs_per_task=2)
    _check_against_direct(fuse, classes, probs)
    assert fuse.predictions == split.predictions  # same frames, same batches: same bits
    assert fuse.frames == FRAMES and fuse.frames_per_second > 0


def test_progress_counts_frames(assets):
    source, model, _ = assets
    calls: list[tuple[int, int]] = []
    job = prepare_inference(source, model, "split", batch=10)
    with lf.init(backend="threads", num_workers=2):
        result = run_inference(job, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, FRAMES) and calls[-1] == (FRAMES, FRAMES)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert "40 frames, 4 chunks, 8 tasks" in result.summary()


def test_decode_frames_gives_exactly_the_decode_pixels(assets):
    source, _, _ = assets
    index = video.probe(source)
    chunk = index.chunk(13, 27)  # starts between keyframes
    got = list(decode_frames(source, chunk))
    expected = video.decode(source, 13, 27, index=index)
    assert [n for n, _ in got] == list(range(13, 27))
    assert all(np.array_equal(a, b) for (_, a), b in zip(got, expected))


def _assert_fails_before_any_task(match, *args, **kwargs):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        video_inference(*args, **kwargs)
    assert api._runtime is None  # no task was submitted (that would auto-start threads)


def test_bad_inputs_fail_before_any_task(assets, tmp_path):
    source, model, _ = assets
    _assert_fails_before_any_task(r"missing .*nothing-symbol.json", source, tmp_path / "nothing")
    _assert_fails_before_any_task("unknown preprocess 'vgg'", source, model, preprocess="vgg")
    _assert_fails_before_any_task("unknown mode 'both'", source, model, mode="both")
    _assert_fails_before_any_task("batch must be >= 1", source, model, batch=0)
    _assert_fails_before_any_task("no such file", tmp_path / "none.mp4", model)


def test_frames_smaller_than_the_model_input_fail_before_any_task(assets, tmp_path):
    _, model, _ = assets
    small = write_sample_video(
        tmp_path / "small.mp4", seconds=0.5, width=160, height=120, fps=10, gop=5
    )
    _assert_fails_before_any_task(
        r"frames of 160x120 are smaller than the model input 224x224", small, model
    )
    job = prepare_inference(small, model, preprocess="imagenet")  # resizes first: fits
    assert job.plan.frame_count == 5


def test_model_with_wrong_channels_fails_before_any_task(assets, tmp_path):
    source, _, _ = assets
    net = mx.gluon.nn.HybridSequential()
    net.add(
        mx.gluon.nn.Conv2D(4, 3, in_channels=1),
        mx.gluon.nn.GlobalAvgPool2D(),
        mx.gluon.nn.Dense(3),
    )
    net.initialize()
    net.hybridize()
    net(mx.nd.zeros((1, 1, 224, 224)))
    net.export(str(tmp_path / "gray"))
    _assert_fails_before_any_task("1-channel input", source, tmp_path / "gray")


@pytest.mark.slow
def test_fuse_and_split_on_the_lambda_emulator_through_s3(assets, direct, request, monkeypatch):
    """Model and video in (moto) S3; split's frames pass through S3 between functions."""
    pytest.importorskip("lambdaflow.testing.aws_local")
    aws = request.getfixturevalue("local_aws_env")
    source, model, _ = assets
    bucket = aws.config["bucket"]
    for name, value in aws.env.items():  # what `lambdaflow local-aws` prints: the driver
        monkeypatch.setenv(name, value)  # reads the same S3 as the functions
    from lambdaflow import aws as lf_aws

    lf_aws.clear_shared_clients()  # the driver's probe builds its client from these
    monkeypatch.setattr(lf_aws, "_SHARED", {})
    s3 = aws.client("s3")
    for suffix in ("-symbol.json", "-0000.params", "-synset.txt"):
        s3.upload_file(model + suffix, bucket, f"inputs/test-models/mb{suffix}")
    s3.upload_file(source, bucket, "inputs/test-videos/v.mp4")
    s3_source, s3_model = (
        f"s3://{bucket}/inputs/test-videos/v.mp4",
        f"s3://{bucket}/inputs/test-models/mb",
    )
    classes, probs = direct("this")
    with lf.init(backend="lambda", **aws.config):
        fuse = video_inference(s3_source, s3_model, "fuse", batch=20)  # 2 chunks
        split = video_inference(s3_source, s3_model, "split", batch=20, refs_per_task=2)
    _check_against_direct(fuse, classes, probs)
    assert fuse.predictions == split.predictions


@pytest.mark.parametrize("mode", ["fuse", "split"])
def test_a_failed_chunk_is_reported_and_the_rest_kept(assets, mode, tmp_path):
    from tests.pipelines.test_histogram import corrupt_keyframe

    source, model, _ = assets
    bad = corrupt_keyframe(Path(source), tmp_path / "bad.mp4", which=1)  # frame 10
    with lf.init(backend="threads", num_workers=2):
        result = video_inference(str(bad), model, mode, batch=10)
    assert not result.ok and 10 in result.failed_frames
    assert result.undecoded == result.failed_frames and not result.failures  # tasks ran
    kept = [p["frame"] for p in result.predictions]
    assert kept and sorted(kept + result.failed_frames) == list(range(FRAMES))
    assert f"{len(result.failed_frames)} frames failed" in result.summary()


# ------------------------------------------------- the corpus: a sequential reference


@pytest.fixture(scope="module")
def corpus_model(tmp_path_factory):
    """A small Gluon net exported as files (the zoo cannot download): 8 classes."""
    root = tmp_path_factory.mktemp("corpus-model")
    return export_model("mobilenet0.25", 8, root / "mb", synset=False)


def _direct(model: str, frames: list, rule: str = "this") -> tuple[np.ndarray, np.ndarray]:
    """Top-5 of MXNet alone (SymbolBlock) over frames from the reference decode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net = mx.gluon.SymbolBlock.imports(f"{model}-symbol.json", ["data"], f"{model}-0000.params")
    probs = mx.nd.softmax(net(mx.nd.array(preprocess(frames, rule)))).asnumpy()
    return topk(probs, 5)


def _check_against_reference(result, model, ref):
    """Predictions for exactly the frames the sequential decode reads, numbered as it
    numbers them, each equal to MXNet's own prediction on that reference frame."""
    assert [p["frame"] for p in result.predictions] == list(range(len(ref)))
    classes, probs = _direct(model, ref)
    assert [p["classes"] for p in result.predictions] == classes.tolist()
    assert np.allclose([p["probs"] for p in result.predictions], probs, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mode", ["fuse", "split"])
@pytest.mark.parametrize("name", ["trunc.mkv", "trunc-frag.mp4"])
def test_a_truncated_video_keeps_every_frame_it_has(corpus_model, name, mode):
    """Before: prepare_inference probed strictly and refused the file, no frame kept."""
    from tests.ops import corpus

    path = corpus.corpus_file(name)
    ref = corpus.reference(path)
    with lf.init(backend="threads", num_workers=2):
        result = video_inference(str(path), corpus_model, mode, batch=8, infer_batch=4)
    _check_against_reference(result, corpus_model, ref)
    assert not result.ok and result.problem == video.probe(path, strict=False).truncated
    assert str(path) in result.problem and "truncated" in result.problem
    assert result.summary().endswith("source truncated")


@pytest.mark.parametrize("name", ["bikes-midgop.ts", "bikes-trim.mp4", "x264-opengop.ts"])
def test_corpus_frames_reach_inference_numbered_as_a_sequential_decode(corpus_model, name):
    """A TS that starts mid-GOP, an mp4 trimmed with an edit list, an open-GOP TS."""
    from tests.ops import corpus

    path = corpus.corpus_file(name)
    ref = corpus.reference(path)
    with lf.init(backend="threads", num_workers=2):
        result = video_inference(str(path), corpus_model, "fuse", batch=30)
    assert result.ok
    _check_against_reference(result, corpus_model, ref)
