"""Frame preprocessing for image classifiers: RGB uint8 frames -> NCHW float32 batches.

Flow: ``preprocess(frames, name, input_shape=(C, H, W))`` picks one rule by name and
returns an ``(N, C, H, W)`` float32 array ready for ``Model.predict``. There is no state;
every rule is a pure, deterministic function of its input.

Rules (``PREPROCESSORS``):

``this``
    THIS's exact rule: centre crop ``H x W`` of the RGB frame (no resize), HWC -> CHW,
    float32, raw 0-255 values, no normalisation. A frame smaller than the crop is an
    error (it is never padded or resized).

``imagenet``
    Resize the shorter side to ``round(256 * H / 224)`` (256 for a 224 input) with PIL's
    bilinear filter (``Image.BILINEAR``, which antialiases when downscaling; PIL is
    deterministic), centre crop ``H x W``, then ``(x - mean) / std`` with the ImageNet
    mean ``(0.485, 0.456, 0.406) * 255`` and std ``(0.229, 0.224, 0.225) * 255``.

Centre crop offsets are ``top = (frame_h - H) // 2``, ``left = (frame_w - W) // 2``.
Frames are ``H x W x 3`` uint8 (the layout ``ops.video.decode`` returns); the model must
take 3 channels. ``check_fits`` validates a frame size against a model input before any
work is launched, so pipelines can fail with one clear line up front.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

PREPROCESSORS = ("this", "imagenet")
DEFAULT_INPUT_SHAPE = (3, 224, 224)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255.0
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255.0
#: ``imagenet`` resizes the shorter side to ``RESIZE_RATIO * crop`` (256 for a 224 crop).
RESIZE_RATIO = 256.0 / 224.0

Frames = np.ndarray | Sequence[np.ndarray]


def check_preprocess(name: str) -> str:
    """Return ``name`` if it is a known rule, else raise ValueError listing the valid ones."""
    if name not in PREPROCESSORS:
        raise ValueError(f"unknown preprocess {name!r}: choose one of {', '.join(PREPROCESSORS)}")
    return name


def check_fits(
    name: str,
    frame_shape: Sequence[int],
    input_shape: Sequence[int] = DEFAULT_INPUT_SHAPE,
) -> None:
    """Raise ValueError unless frames of ``frame_shape`` (H, W[, C]) can feed a model
    whose input is ``input_shape`` (C, H, W) under rule ``name``."""
    check_preprocess(name)
    channels, crop_h, crop_w = (int(v) for v in input_shape)
    frame_h, frame_w = int(frame_shape[0]), int(frame_shape[1])
    frame_c = int(frame_shape[2]) if len(frame_shape) > 2 else 3
    if channels != 3:
        raise ValueError(
            f"the model takes {channels}-channel input {tuple(input_shape)} but video frames "
            "are RGB (3 channels): use a model whose input is (3, H, W)"
        )
    if frame_c != 3:
        raise ValueError(
            f"frames of shape {tuple(frame_shape)} are not RGB (H x W x 3): decode with "
            "format='rgb24'"
        )
    if name == "this" and (frame_h < crop_h or frame_w < crop_w):
        raise ValueError(
            f"frames of {frame_w}x{frame_h} are smaller than the model input "
            f"{crop_w}x{crop_h}: preprocess 'this' centre-crops without resizing; use "
            "--preprocess imagenet (resizes first) or a model with a smaller input"
        )


def preprocess(
    frames: Frames,
    name: str = "this",
    *,
    input_shape: Sequence[int] = DEFAULT_INPUT_SHAPE,
) -> np.ndarray:
    """Apply rule ``name`` to ``frames`` (a list of HxWx3 uint8 or an (N, H, W, 3) array);
    return an ``(N, C, H, W)`` float32 array with ``(C, H, W) = input_shape``."""
    fn = _RULES[check_preprocess(name)]
    arrays = _as_frame_list(frames)
    out = np.empty((len(arrays), *(int(v) for v in input_shape)), dtype=np.float32)
    for i, frame in enumerate(arrays):
        check_fits(name, frame.shape, input_shape)
        out[i] = fn(frame, (int(input_shape[1]), int(input_shape[2])))
    return out


def centre_crop(frame: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    """The centre ``crop = (h, w)`` window of an H x W x C frame (a view, no copy)."""
    crop_h, crop_w = crop
    frame_h, frame_w = frame.shape[:2]
    if frame_h < crop_h or frame_w < crop_w:
        raise ValueError(f"frame of {frame_w}x{frame_h} is smaller than the crop {crop_w}x{crop_h}")
    top, left = (frame_h - crop_h) // 2, (frame_w - crop_w) // 2
    return frame[top : top + crop_h, left : left + crop_w]


def this_rule(frame: np.ndarray, crop: tuple[int, int] = (224, 224)) -> np.ndarray:
    """THIS's rule for one frame: centre crop, CHW, float32, raw 0-255."""
    return centre_crop(frame, crop).transpose(2, 0, 1).astype(np.float32)


def imagenet_rule(frame: np.ndarray, crop: tuple[int, int] = (224, 224)) -> np.ndarray:
    """Resize the shorter side (PIL bilinear), centre crop, ImageNet mean/std, CHW."""
    from PIL import Image

    crop_h, crop_w = crop
    frame_h, frame_w = frame.shape[:2]
    target = max(round(RESIZE_RATIO * min(crop_h, crop_w)), crop_h, crop_w)
    scale = target / min(frame_h, frame_w)
    new_w = max(round(frame_w * scale), crop_w)
    new_h = max(round(frame_h * scale), crop_h)
    image = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8), mode="RGB")
    resized = np.asarray(image.resize((new_w, new_h), Image.Resampling.BILINEAR))
    window = centre_crop(resized, crop).astype(np.float32)
    return ((window - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


def _this_view(frame: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    """``this_rule`` as a uint8 CHW view: ``preprocess`` converts it to float32 while
    copying into the batch (one pass instead of two)."""
    return centre_crop(frame, crop).transpose(2, 0, 1)


#: name -> rule returning a CHW array (float32, or a uint8 view converted on copy).
_RULES: dict[str, Callable[[np.ndarray, tuple[int, int]], np.ndarray]] = {
    "this": _this_view,
    "imagenet": imagenet_rule,
}


def _as_frame_list(frames: Frames) -> list[np.ndarray]:
    if isinstance(frames, np.ndarray):
        if frames.ndim == 3:
            raise ValueError(
                f"got one frame of shape {frames.shape}; pass a list of frames or an "
                "(N, H, W, 3) array"
            )
        if frames.ndim != 4:
            raise ValueError(f"frames array has shape {frames.shape}; expected (N, H, W, 3)")
        return list(frames)
    out = []
    for i, frame in enumerate(frames):
        arr = np.asarray(frame)
        if arr.ndim != 3:
            raise ValueError(f"frame {i} has shape {arr.shape}; expected H x W x 3 uint8")
        out.append(arr)
    return out
