"""Tests for lambdaflow.ops.preprocess: exact crops, ImageNet resize/normalise, errors."""

from __future__ import annotations

import numpy as np
import pytest

from lambdaflow.ops.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PREPROCESSORS,
    check_fits,
    check_preprocess,
    preprocess,
)


def _frames(n: int, h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.RandomState(seed)
    return [rng.randint(0, 256, size=(h, w, 3), dtype=np.uint8) for _ in range(n)]


def test_this_is_the_centre_slice_as_chw_float32():
    frames = _frames(3, 241, 321)
    out = preprocess(frames, "this")
    assert out.shape == (3, 3, 224, 224) and out.dtype == np.float32
    top, left = (241 - 224) // 2, (321 - 224) // 2
    for frame, got in zip(frames, out):
        expected = frame[top : top + 224, left : left + 224].transpose(2, 0, 1)
        assert np.array_equal(got, expected.astype(np.float32))
    assert out.max() <= 255 and out.max() > 200  # raw 0-255, not normalised


def test_this_exact_size_frame_is_unchanged():
    (frame,) = _frames(1, 224, 224)
    assert np.array_equal(preprocess([frame], "this")[0], frame.transpose(2, 0, 1))


def test_array_and_list_inputs_agree():
    frames = _frames(2, 230, 250)
    assert np.array_equal(preprocess(np.stack(frames), "this"), preprocess(frames, "this"))
    assert np.array_equal(preprocess(np.stack(frames), "imagenet"), preprocess(frames, "imagenet"))


def test_crop_follows_the_model_input_size():
    frames = _frames(1, 40, 50)
    out = preprocess(frames, "this", input_shape=(3, 32, 32))
    assert np.array_equal(out[0], frames[0][4:36, 9:41].transpose(2, 0, 1))


def test_this_frame_smaller_than_crop_is_a_clear_error():
    with pytest.raises(ValueError, match=r"smaller than the model input 224x224.*imagenet"):
        preprocess(_frames(1, 200, 300), "this")


def test_imagenet_constant_frame_is_mean_std_normalised():
    frame = np.empty((300, 400, 3), dtype=np.uint8)
    frame[...] = (10, 128, 250)
    out = preprocess([frame], "imagenet")
    assert out.shape == (1, 3, 224, 224) and out.dtype == np.float32
    expected = (np.array([10, 128, 250], np.float32) - IMAGENET_MEAN) / IMAGENET_STD
    for channel in range(3):
        assert np.allclose(out[0, channel], expected[channel], atol=1e-6)


def test_imagenet_resizes_shorter_side_to_256_then_crops():
    # 448x448, left half black, right half white: resized to 256x256 the edge is at
    # column 128, and the centre crop (offset 16) puts it at column 112.
    frame = np.zeros((448, 448, 3), dtype=np.uint8)
    frame[:, 224:] = 255
    out = preprocess([frame], "imagenet")[0]
    black = (0 - IMAGENET_MEAN) / IMAGENET_STD
    white = (255 - IMAGENET_MEAN) / IMAGENET_STD
    assert np.allclose(out[:, :, :110], black[:, None, None], atol=1e-5)
    assert np.allclose(out[:, :, 114:], white[:, None, None], atol=1e-5)


def test_imagenet_upscales_small_frames():
    out = preprocess(_frames(2, 100, 150), "imagenet")
    assert out.shape == (2, 3, 224, 224)
    assert np.isfinite(out).all()


def test_imagenet_is_deterministic():
    frames = _frames(2, 360, 480, seed=3)
    assert np.array_equal(preprocess(frames, "imagenet"), preprocess(frames, "imagenet"))


def test_unknown_preprocess_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown preprocess 'caffe'.*this, imagenet"):
        preprocess(_frames(1, 224, 224), "caffe")
    with pytest.raises(ValueError, match="this, imagenet"):
        check_preprocess("")
    assert PREPROCESSORS == ("this", "imagenet")


def test_check_fits_rejects_non_rgb_models_and_frames():
    with pytest.raises(ValueError, match="1-channel input"):
        check_fits("this", (480, 640, 3), (1, 224, 224))
    with pytest.raises(ValueError, match="not RGB"):
        check_fits("imagenet", (480, 640, 4))
    check_fits("imagenet", (100, 100, 3))  # resized first: fits
    check_fits("this", (224, 224))


def test_bad_frame_shapes_are_named():
    with pytest.raises(ValueError, match="frame 1 has shape"):
        preprocess([np.zeros((224, 224, 3), np.uint8), np.zeros((224, 224), np.uint8)])
    with pytest.raises(ValueError, match="one frame"):
        preprocess(np.zeros((224, 224, 3), np.uint8))
