"""Tests for lambdaflow.ops.inference: loading (local, s3://, cache), prediction against a
direct MXNet run, input-shape inference, top-k, synsets and clear errors."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import NEEDS_MXNET

pytestmark = pytest.mark.mxnet
mx = pytest.importorskip("mxnet", reason=NEEDS_MXNET)

from lambdaflow.ops.inference import clear_cache, load_model, predict_frames, topk
from lambdaflow.ops.modelzoo import export_model
from lambdaflow.ops.preprocess import preprocess

CLASSES = 10


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory) -> str:
    return export_model("mobilenet0.25", CLASSES, tmp_path_factory.mktemp("m") / "mb", synset=True)


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def _frames(n: int, h: int = 240, w: int = 320, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.RandomState(seed)
    return [rng.randint(0, 256, size=(h, w, 3), dtype=np.uint8) for _ in range(n)]


def _direct_probs(prefix: str, batch: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # "Cannot decide type for ... data": harmless
        warnings.simplefilter("ignore", UserWarning)
        net = mx.gluon.SymbolBlock.imports(
            f"{prefix}-symbol.json", ["data"], f"{prefix}-0000.params"
        )
    return mx.nd.softmax(net(mx.nd.array(batch))).asnumpy()


def _export_tiny(prefix: Path, channels: int = 3, size: int = 32, flatten: bool = True) -> str:
    """A tiny conv net; with ``flatten`` its Dense layer fixes the input size."""
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Conv2D(4, 3, strides=2, in_channels=channels, activation="relu"))
    net.add(mx.gluon.nn.Flatten() if flatten else mx.gluon.nn.GlobalAvgPool2D())
    net.add(mx.gluon.nn.Dense(5))
    mx.random.seed(1)
    net.initialize()
    net.hybridize()
    net(mx.nd.zeros((1, channels, size, size)))
    net.export(str(prefix))
    return str(prefix)


def test_load_local_reads_shape_classes_and_synset(mobilenet):
    model = load_model(mobilenet)
    assert model.input_shape == (3, 224, 224)
    assert model.num_classes == CLASSES
    assert model.names == [f"class_{i}" for i in range(CLASSES)]
    assert model.output_op == "FullyConnected"  # logits: predict applies softmax


def test_cache_returns_the_same_object(mobilenet):
    first = load_model(mobilenet)
    assert load_model(Path(mobilenet)) is first
    assert load_model(mobilenet, epoch=0) is first
    clear_cache()
    assert load_model(mobilenet) is not first


def test_predict_equals_a_direct_symbolblock_run(mobilenet):
    batch = preprocess(_frames(5), "this")
    probs = load_model(mobilenet).predict(batch, batch_size=4)  # one full + one padded batch
    assert probs.shape == (5, CLASSES) and probs.dtype == np.float32
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(probs, _direct_probs(mobilenet, batch), rtol=1e-4, atol=1e-6)


def test_batch_size_does_not_change_results(mobilenet):
    model = load_model(mobilenet)
    batch = preprocess(_frames(7, seed=2), "imagenet")
    assert np.allclose(
        model.predict(batch, batch_size=16),
        model.predict(batch, batch_size=3),
        rtol=1e-5,
        atol=1e-7,
    )


def test_predict_frames_top_k_and_names(mobilenet):
    model = load_model(mobilenet)
    frames = _frames(3)
    results = predict_frames(model, frames, preprocess="this", top_k=3, batch_size=2)
    direct = _direct_probs(mobilenet, preprocess(frames, "this"))
    assert len(results) == 3
    for result, row in zip(results, direct):
        assert result["classes"] == list(np.argsort(-row, kind="stable")[:3])
        assert np.allclose(result["probs"], np.sort(row)[::-1][:3], rtol=1e-4)
        assert result["probs"] == sorted(result["probs"], reverse=True)
        assert result["names"] == [f"class_{c}" for c in result["classes"]]


def test_topk_orders_by_probability_then_index():
    probs = np.array([[0.1, 0.5, 0.2, 0.2], [0.25, 0.25, 0.25, 0.25]], dtype=np.float32)
    classes, top = topk(probs, 3)
    assert classes.tolist() == [[1, 2, 3], [0, 1, 2]]
    assert np.allclose(top, [[0.5, 0.2, 0.2], [0.25, 0.25, 0.25]])
    assert topk(probs, 10)[0].shape == (2, 4)  # capped at the class count
    with pytest.raises(ValueError, match="top_k must be positive"):
        topk(probs, 0)


def test_probe_finds_a_fixed_input_size(tmp_path):
    model = load_model(_export_tiny(tmp_path / "tiny", size=32, flatten=True))
    assert model.input_shape == (3, 32, 32)
    frames = _frames(3, 40, 48)
    batch = preprocess(frames, "this", input_shape=(3, 32, 32))
    results = predict_frames(model, frames, top_k=5)
    direct = _direct_probs(str(tmp_path / "tiny"), batch)
    assert np.allclose([r["probs"] for r in results], np.sort(direct, axis=1)[:, ::-1], rtol=1e-4)


def test_declared_shape_attribute_and_softmax_output_are_honoured(tmp_path):
    data = mx.sym.var("data", shape=(1, 3, 16, 16))
    fc = mx.sym.FullyConnected(mx.sym.flatten(data), num_hidden=4, name="fc")
    sym = mx.sym.softmax(fc, name="prob")
    rng = np.random.RandomState(0)
    params = {
        "arg:fc_weight": mx.nd.array(rng.randn(4, 768) * 0.01),
        "arg:fc_bias": mx.nd.array(rng.randn(4)),
    }
    sym.save(str(tmp_path / "sm-symbol.json"))
    mx.nd.save(str(tmp_path / "sm-0000.params"), params)
    model = load_model(tmp_path / "sm")
    assert model.input_shape == (3, 16, 16) and model.output_op == "softmax"
    batch = rng.uniform(0, 1, size=(2, 3, 16, 16)).astype(np.float32)
    logits = batch.reshape(2, -1) @ params["arg:fc_weight"].asnumpy().T
    logits += params["arg:fc_bias"].asnumpy()
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert np.allclose(model.predict(batch), expected, rtol=1e-4)  # not softmaxed twice


def test_wrong_channel_count_is_a_clear_error(tmp_path):
    model = load_model(_export_tiny(tmp_path / "gray", channels=1, size=224, flatten=False))
    assert model.input_shape == (1, 224, 224)
    with pytest.raises(ValueError, match=r"gray: the model takes 1-channel input.*RGB"):
        predict_frames(model, _frames(1))


def test_frames_smaller_than_the_input_are_a_clear_error(mobilenet):
    with pytest.raises(ValueError, match=r"mb: frames of 200x100 are smaller than .* 224x224"):
        predict_frames(load_model(mobilenet), _frames(1, 100, 200))


def test_batch_of_the_wrong_shape_is_named(mobilenet):
    with pytest.raises(ValueError, match=r"batch of shape \(1, 3, 32, 32\) does not match"):
        load_model(mobilenet).predict(np.zeros((1, 3, 32, 32), np.float32))


def test_unknown_preprocess_is_rejected(mobilenet):
    with pytest.raises(ValueError, match="unknown preprocess 'vgg'.*this, imagenet"):
        predict_frames(load_model(mobilenet), _frames(1), preprocess="vgg")


def test_missing_files_name_the_path(tmp_path, mobilenet):
    with pytest.raises(FileNotFoundError, match=r"nothing-symbol.json and .*nothing-0000.params"):
        load_model(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match=r"mb-0003.params;.*export-model"):
        load_model(mobilenet, epoch=3)


def test_synset_of_the_wrong_length_is_rejected(tmp_path):
    prefix = export_model("mobilenet0.25", 4, tmp_path / "m4")
    Path(f"{prefix}-synset.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match="synset has 2 names but the model outputs 4 classes"):
        load_model(prefix)


def test_without_mxnet_the_error_says_how_to_install():
    code = (
        "import sys; sys.modules['mxnet'] = None\n"
        "import lambdaflow.ops.inference as inf\n"
        "try:\n    inf.load_model('x')\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'lambdaflow[mxnet]'" in out.stdout


def test_import_is_lazy_and_threads_are_set_before_mxnet_loads():
    code = (
        "import os, sys\n"
        "os.environ.pop('OMP_NUM_THREADS', None)\n"
        "import lambdaflow.ops.inference as inf\n"
        "assert 'mxnet' not in sys.modules\n"
        "inf.configure_threads(3)\n"
        "import mxnet\n"
        "inf.configure_threads(1)  # too late: logged, not applied\n"
        "print(os.environ['OMP_NUM_THREADS'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "3"


# --- s3:// prefixes against a real moto server -------------------------------------------


@pytest.fixture(scope="module")
def moto():
    pytest.importorskip("boto3")
    from lambdaflow.testing.moto_server import MotoServer

    with MotoServer() as server:
        yield server


@pytest.fixture
def s3_model(moto, mobilenet, monkeypatch):
    import boto3

    from lambdaflow.testing.moto_server import FAKE_CREDENTIALS

    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", moto.region)
    s3 = boto3.client("s3", **moto.client_kwargs)
    s3.create_bucket(Bucket="models")
    for suffix in ("-symbol.json", "-0000.params", "-synset.txt"):
        s3.upload_file(mobilenet + suffix, "models", f"zoo/mb{suffix}")
    yield "s3://models/zoo/mb"
    moto.reset()


def test_load_from_s3_with_an_endpoint_parameter(s3_model, moto, mobilenet):
    model = load_model(s3_model, endpoint_url=moto.endpoint_url)
    assert model.prefix == s3_model and model.names[0] == "class_0"
    assert load_model(s3_model, endpoint_url=moto.endpoint_url) is model
    batch = preprocess(_frames(2), "this")
    assert np.allclose(model.predict(batch), _direct_probs(mobilenet, batch), rtol=1e-4)


def test_load_from_s3_honours_aws_endpoint_url_s3(s3_model, moto, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto.endpoint_url)
    assert load_model(s3_model).num_classes == CLASSES


def test_missing_s3_object_names_the_key(s3_model, moto):
    with pytest.raises(FileNotFoundError, match=r"missing s3://models/zoo/other-symbol.json"):
        load_model("s3://models/zoo/other", endpoint_url=moto.endpoint_url)
    with pytest.raises(ValueError, match="expected s3://bucket/key-prefix"):
        load_model("s3://models", endpoint_url=moto.endpoint_url)
