"""Deterministic sample videos with moving content, for tests, benchmarks and demos.

``write_sample_video(path, ...)`` renders frames with numpy and encodes them with PyAV
(libx264 by default) into an mp4:

    frame t ──> scene = t // scene_len ──> background gradient (scene palette, scrolling)
                                       ──> two moving boxes + a bouncing disc
            ──> av.VideoFrame (rgb24) ──> encoder (yuv420p, fixed GOP) ──> mp4 muxer

The content changes smoothly inside a scene and abruptly at scene changes (new palette
and gradient direction), so per-frame colour histograms move over time and jump at cuts.
Keyframes come every ``gop`` frames exactly (x264 scene-cut detection is off), so chunk
planning and seeking can be tested against a known layout. The same arguments give the
same bytes on every machine with the same PyAV build: the encoder's thread count is fixed
(``threads``), because x264's output depends on it (FFmpeg's default is one slice-thread
per CPU, and each thread encodes its own slice of every frame).
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: (top-left RGB, bottom-right RGB) of the background gradient, one per scene.
_PALETTES = (
    ((20, 40, 160), (240, 200, 40)),
    ((200, 20, 40), (10, 220, 120)),
    ((250, 250, 250), (30, 30, 30)),
    ((60, 0, 90), (255, 140, 0)),
    ((0, 120, 120), (250, 60, 200)),
)


def _render(
    t: int, width: int, height: int, fps: float, scene_len: int, out: np.ndarray
) -> np.ndarray:
    """Draw frame ``t`` into ``out`` (height, width, 3) uint8 and return it.

    The background is a periodic triangle-wave gradient along a diagonal: every row is a
    shifted window of one precomputed colour line, so a frame costs ``height`` slice copies.
    """
    scene = t // scene_len
    lo, hi = (np.asarray(c, dtype=np.float32) for c in _PALETTES[scene % len(_PALETTES)])
    period = max(width, height) + 2
    ramp = np.abs(np.arange(period, dtype=np.float32) / period * 2.0 - 1.0)
    line = (lo + (hi - lo) * ramp[:, None]).astype(np.uint8)
    line = np.concatenate([line] * (width // period + 2))  # periodic, longer than a row
    slope = 1 if scene % 2 == 0 else 3  # gradient direction changes with the scene
    shift = int(t * period / (fps * 6))  # scrolls one period every 6 seconds
    for y in range(height):
        off = (slope * y + shift) % period
        out[y] = line[off : off + width]

    # Two boxes moving across, a disc bouncing vertically.
    bw, bh = max(width // 8, 2), max(height // 6, 2)
    for k, colour in enumerate(((255, 255, 255), (0, 0, 0))):
        x0 = int(((t * (3 + 2 * k) * width / 320) + k * width / 2) % max(width - bw, 1))
        y0 = int((height - bh) * (0.25 + 0.5 * k))
        out[y0 : y0 + bh, x0 : x0 + bw] = colour
    radius = max(min(width, height) // 10, 1)
    cy = radius + abs(((t * 4) % (2 * max(height - 2 * radius, 1))) - (height - 2 * radius))
    cx = int(width * (0.5 + 0.3 * np.sin(t / fps)))
    y_lo, y_hi = max(cy - radius, 0), min(cy + radius, height)
    x_lo, x_hi = max(cx - radius, 0), min(cx + radius, width)
    yy, xx = np.ogrid[y_lo:y_hi, x_lo:x_hi]
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius * radius
    out[y_lo:y_hi, x_lo:x_hi][mask] = (255, 32 + (scene * 60) % 200, 0)
    return out


def write_sample_video(
    path: str | os.PathLike,
    seconds: float = 10,
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    gop: int = 30,
    codec: str = "libx264",
    bframes: bool = True,
    scene_seconds: float = 3.0,
    preset: str = "veryfast",
    crf: int = 23,
    faststart: bool = False,
    threads: int = 1,
    slices: int = 1,
    pix_fmt: str = "yuv420p",
) -> Path:
    """Write an mp4 with moving content and a scene change every ``scene_seconds``.

    ``gop`` is the exact keyframe interval in frames; ``bframes`` turns on 2 B-frames
    (packets then arrive in decode order, not presentation order). Width and height must
    be even (yuv420p). ``faststart`` puts the index (moov) before the frames, as web
    videos do; by default it follows them. ``threads`` is the encoder's thread count (the
    bytes depend on it, not on the machine); ``slices`` > 1 makes libx264 code every frame
    as that many slices (as broadcast encoders do). ``pix_fmt`` is the coded pixel format
    (e.g. ``yuv420p10le`` for 10-bit). Returns the path written.
    """
    import av  # optional dependency (extra "video")
    from av.video.stream import VideoStream

    path = Path(path)
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(
            f"sample video {path}: width and height must be positive and even "
            f"(yuv420p), got {width}x{height}"
        )
    if fps <= 0 or gop <= 0 or seconds <= 0:
        raise ValueError(
            f"sample video {path}: seconds, fps and gop must be positive, "
            f"got seconds={seconds} fps={fps} gop={gop}"
        )
    n_frames = max(round(seconds * fps), 1)
    scene_len = max(round(scene_seconds * fps), 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")

    buf = np.empty((height, width, 3), dtype=np.uint8)

    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(tmp), mode="w", format="mp4", options=options) as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        if not isinstance(stream, VideoStream):
            raise ValueError(f"sample video {path}: {codec!r} is not a video codec")
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.gop_size = gop
        stream.codec_context.max_b_frames = 2 if bframes else 0
        stream.codec_context.thread_count = threads
        if codec == "libx264":
            stream.options = {
                "preset": preset,
                "crf": str(crf),
                # Fixed GOP: a keyframe every `gop` frames and nowhere else.
                "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:"
                f"bframes={2 if bframes else 0}:open-gop=0:slices={slices}",
            }
        for t in range(n_frames):
            frame = av.VideoFrame.from_ndarray(
                _render(t, width, height, fps, scene_len, buf), format="rgb24"
            )
            frame.pts = t
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
    log.debug(
        "wrote %s: %d frames %dx%d @%d fps gop=%d bframes=%s",
        path,
        n_frames,
        width,
        height,
        fps,
        gop,
        bframes,
    )
    return path
