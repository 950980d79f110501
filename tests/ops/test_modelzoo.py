"""Tests for lambdaflow.ops.modelzoo: offline, seeded, deterministic exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import NEEDS_MXNET

pytestmark = pytest.mark.mxnet
pytest.importorskip("mxnet", reason=NEEDS_MXNET)

from lambdaflow.ops.inference import clear_cache, load_model, predict_frames
from lambdaflow.ops.modelzoo import export_model


def _files(prefix: str) -> dict[str, bytes]:
    return {s: Path(prefix + s).read_bytes() for s in ("-symbol.json", "-0000.params")}


def test_export_writes_a_loadable_model(tmp_path):
    prefix = export_model("mobilenet0.25", 7, tmp_path / "sub" / "mb")
    assert prefix == str(tmp_path / "sub" / "mb")
    assert not Path(prefix + "-synset.txt").exists()
    clear_cache()
    model = load_model(prefix)
    assert model.num_classes == 7 and model.input_shape == (3, 224, 224)
    assert model.names is None


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path):
    a = export_model("mobilenet0.25", 5, tmp_path / "a", seed=3)
    b = export_model("mobilenet0.25", 5, tmp_path / "b", seed=3)
    c = export_model("mobilenet0.25", 5, tmp_path / "c", seed=4)
    assert _files(a) == _files(b)
    assert _files(a)["-0000.params"] != _files(c)["-0000.params"]


def test_probabilities_are_neither_one_hot_nor_uniform(tmp_path):
    prefix = export_model("mobilenet0.25", 10, tmp_path / "mb")
    clear_cache()
    rng = np.random.RandomState(0)
    frames = [rng.randint(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(2)]
    for result in predict_frames(load_model(prefix), frames, top_k=10):
        assert 0.15 < result["probs"][0] < 0.99
        assert result["probs"][-1] > 1e-6


def test_synset_true_and_explicit_names(tmp_path):
    prefix = export_model("mobilenet0.25", 3, tmp_path / "a", synset=True)
    assert Path(prefix + "-synset.txt").read_text() == "class_0\nclass_1\nclass_2\n"
    prefix = export_model("mobilenet0.25", 2, tmp_path / "b", synset=["cat", "dog"])
    clear_cache()
    assert load_model(prefix).names == ["cat", "dog"]
    with pytest.raises(ValueError, match="synset must hold 3 non-empty one-line names, got 2"):
        export_model("mobilenet0.25", 3, tmp_path / "c", synset=["cat", "dog"])


def test_bad_arguments_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown architecture 'nonet'.*mobilenet0.25"):
        export_model("nonet", 3, tmp_path / "x")
    with pytest.raises(ValueError, match="classes must be positive"):
        export_model("mobilenet0.25", 0, tmp_path / "x")
    with pytest.raises(ValueError, match="unknown preprocess"):
        export_model("mobilenet0.25", 3, tmp_path / "x", preprocess="caffe")
