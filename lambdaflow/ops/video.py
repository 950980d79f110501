"""Video sources, keyframe index, chunk plans and exact-range decoding (PyAV).

Flow::

    source ──videosource──> path | S3File (ranged GETs) | file-like → av container
           ──probe────────> VideoIndex: every packet's pts sorted (rank = frame number in
                            presentation order) + keyframes (frame, pts, byte pos); demux only
           ──plan_chunks──> ChunkPlan: Chunk(start, stop, keyframe, seek_pts, frame_pts)
                            ranges that start on keyframes, ~batch frames each
           ──iter_frames──> seek to chunk.seek_pts (the keyframe at or before start), decode,
                            drop frames whose pts rank < start, stop at the pts of `stop`
           ──decode───────> numpy arrays of exactly frames [start, stop)

A ``Chunk`` is small and self-contained (it carries the pts of its frames), so a worker
decodes it without probing the whole file again. Frame numbers come from pts ranks, never
from counting decoder output, so B-frame reordering and mid-GOP starts give the same frames
as one sequential decode. Frames the decoder cannot produce are reported by number through
a caller-supplied ``failed`` list. Bad input raises ``VideoError`` (a ``ValueError``) naming
the source and the problem. Nothing here imports the lambdaflow runtime.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from lambdaflow.ops.videosource import (  # noqa: F401 - re-exported: sources live there
    S3_READAHEAD,
    S3File,
    Source,
    VideoError,
    acquire,
    close_cached,
    open_container,
    release,
    s3_client,
    source_name,
)

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------- index


@dataclass(frozen=True)
class Keyframe:
    frame: int  #: frame number (presentation order)
    pts: int  #: in the stream time_base
    pos: int  #: byte position of the packet in the file (-1 if unknown)


@dataclass(frozen=True)
class Chunk:
    """Frames ``[start, stop)``, decoded from the keyframe ``keyframe`` (<= start)."""

    start: int
    stop: int
    keyframe: int
    seek_pts: int | None  #: pts to seek to; None means decode from the beginning
    frame_pts: tuple[int, ...]  #: pts of frames start..stop-1
    stop_pts: int | None  #: pts of frame ``stop``; None when ``stop`` is the end

    @property
    def frames(self) -> int:
        return self.stop - self.start

    @property
    def decoded(self) -> int:
        """Frames decoded to produce this chunk (from its keyframe)."""
        return self.stop - self.keyframe


@dataclass(frozen=True)
class VideoIndex:
    source: str
    frame_count: int
    fps: Fraction | float
    width: int
    height: int
    codec: str
    time_base: Fraction
    keyframes: list[Keyframe]
    frame_pts: tuple[int, ...] = field(repr=False)  #: sorted pts; index = frame number

    def chunk(self, start: int, stop: int) -> Chunk:
        """The ``Chunk`` for frames ``[start, stop)``, from the keyframe at or before start."""
        if not (0 <= start < stop <= self.frame_count):
            raise ValueError(
                f"{self.source}: frame range [{start}, {stop}) is outside "
                f"the video's {self.frame_count} frames"
            )
        numbers = [k.frame for k in self.keyframes]
        i = bisect.bisect_right(numbers, start) - 1
        key = self.keyframes[i] if i >= 0 else None
        return Chunk(
            start,
            stop,
            key.frame if key else 0,
            key.pts if key else None,
            self.frame_pts[start:stop],
            self.frame_pts[stop] if stop < self.frame_count else None,
        )


def probe(source: Source, *, client: Any = None) -> VideoIndex:
    """Index a video by demuxing its first video stream (no decoding).

    Raises ``VideoError`` for a missing path or S3 key, a file that is not a video, a file
    without a video stream, a truncated file (fewer packets than the container header
    announces) and packets without timestamps.
    """
    import av

    name = source_name(source)
    container = open_container(source, client=client)
    try:
        stream = container.streams.video[0]
        pts: list[int] = []
        keys: list[tuple[int, int]] = []
        try:
            for packet in container.demux(stream):
                if packet.size == 0 and packet.pts is None:
                    continue  # the flush packet at the end
                if packet.pts is None:
                    raise VideoError(
                        f"{name}: video packets without timestamps (a raw "
                        "elementary stream?); remux it into mp4 or mkv"
                    )
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append((packet.pts, packet.pos if packet.pos is not None else -1))
        except av.FFmpegError as exc:
            raise VideoError(
                f"{name}: truncated or corrupt after {len(pts)} video "
                f"packets: {exc.strerror or exc}"
            ) from exc
        announced = stream.frames or 0
        if announced and len(pts) < announced:
            raise VideoError(
                f"{name}: truncated: the header announces {announced} frames "
                f"but only {len(pts)} are present"
            )
        if not pts:
            raise VideoError(f"{name}: the video stream has no frames")
        order = tuple(sorted(pts))
        rank = {p: i for i, p in enumerate(order)}
        if len(rank) != len(order):
            raise VideoError(f"{name}: duplicate frame timestamps; cannot number frames")
        cc = stream.codec_context
        return VideoIndex(
            source=name,
            frame_count=len(order),
            fps=stream.average_rate or stream.guessed_rate or 0.0,
            width=cc.width,
            height=cc.height,
            codec=cc.name,
            time_base=Fraction(stream.time_base),
            keyframes=[Keyframe(rank[p], p, pos) for p, pos in sorted(keys)],
            frame_pts=order,
        )
    finally:
        container.close()


# ------------------------------------------------------------------------------ chunks


@dataclass(frozen=True)
class ChunkPlan:
    chunks: list[Chunk]
    frame_count: int

    @property
    def decode_amplification(self) -> float:
        """Frames decoded / frames wanted (1.0 when every chunk starts on a keyframe)."""
        wanted = sum(c.frames for c in self.chunks)
        return sum(c.decoded for c in self.chunks) / wanted if wanted else 1.0

    def __len__(self) -> int:
        return len(self.chunks)

    def __iter__(self) -> Iterator[Chunk]:
        return iter(self.chunks)


def plan_chunks(index: VideoIndex, batch: int = 50, *, split_long_gops: bool = False) -> ChunkPlan:
    """Cut the video into frame ranges that start on keyframes, about ``batch`` frames each.

    Rule: from the current start (a keyframe), the chunk ends at the keyframe nearest to
    ``start + batch`` (ties go to the later one), but always takes at least one whole GOP;
    the last chunk ends at the end of the video. So every chunk is whole GOPs and decodes
    no frame it does not return: decode amplification is 1.0 (GOP 30, batch 50 → chunks of
    60 frames). Frames before the first keyframe, if any, join the first chunk.

    With ``split_long_gops=True`` a GOP longer than ``2 * batch`` is cut into pieces of
    ``batch`` frames; each piece decodes from the GOP's keyframe, which costs
    amplification (about (gop/batch + 1) / 2 for that GOP) in exchange for parallelism.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1 frame, got {batch}")
    starts = [k.frame for k in index.keyframes if k.frame > 0]
    bounds = [0] + starts + [index.frame_count]  # GOP boundaries
    chunks: list[Chunk] = []
    start = 0
    while start < index.frame_count:
        i = bisect.bisect_right(bounds, start)  # bounds[i] = first boundary after start
        target = start + batch
        j = i
        while j + 1 < len(bounds) and abs(bounds[j + 1] - target) <= abs(bounds[j] - target):
            j += 1
        stop = bounds[j]
        gop_len = bounds[i] - start
        if split_long_gops and j == i and gop_len > 2 * batch:
            for piece in range(start, stop, batch):
                chunks.append(index.chunk(piece, min(piece + batch, stop)))
        else:
            chunks.append(index.chunk(start, stop))
        start = stop
    return ChunkPlan(chunks, index.frame_count)


# ----------------------------------------------------------------------------- decode


def iter_frames(
    source: Source,
    chunk: Chunk,
    failed: list[int] | None = None,
    *,
    client: Any = None,
    threads: int = 1,
    keep_open: bool = False,
) -> Iterator[tuple[int, Any]]:
    """Yield ``(frame_number, av.VideoFrame)`` for the frames of ``chunk``, in order.

    Seeks to the chunk's keyframe, decodes, drops frames before ``start`` (by pts rank)
    and stops at the pts of ``stop``. Packets the decoder rejects are skipped; frame
    numbers of ``[start, stop)`` that never came out are appended to ``failed`` (if given)
    once the iterator is exhausted. ``threads`` > 1 (or 0 = auto) lets FFmpeg decode
    with frame threads; the frames are the same. ``keep_open`` keeps the container for
    the next chunk of the same source on this thread (``videosource.acquire``).
    """
    import av

    name = source_name(source)
    wanted = {p: chunk.start + i for i, p in enumerate(chunk.frame_pts)}
    got: set[int] = set()
    where = f"{name}: frames {chunk.start}-{chunk.stop - 1}"
    container, key = acquire(source, client=client, threads=threads, keep=keep_open)
    clean = False
    try:
        stream = container.streams.video[0]
        if chunk.seek_pts is not None:
            container.seek(chunk.seek_pts, stream=stream, backward=True, any_frame=False)
        elif key is not None:  # a reused container from before the first keyframe
            container.seek(0, backward=True)
        first = True
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.FFmpegError as exc:
                    log.warning("%s: decoder rejected packet pts %s: %s", where, packet.pts, exc)
                    continue
                for frame in frames:
                    pts = frame.pts
                    if first and pts is not None and pts > chunk.frame_pts[0]:
                        log.warning("%s: seek to pts %s landed too late", where, chunk.seek_pts)
                    first = False
                    if chunk.stop_pts is not None and pts is not None and pts >= chunk.stop_pts:
                        clean = True
                        return
                    number = wanted.get(pts)
                    if number is not None and number not in got:
                        got.add(number)
                        yield number, frame
            clean = True
        except av.FFmpegError as exc:
            log.warning("%s: demuxing stopped: %s", where, exc)
    finally:
        release(container, key, reusable=clean)
        if failed is not None:
            failed.extend(n for n in range(chunk.start, chunk.stop) if n not in got)


def frame_to_array(frame: Any, format: str = "rgb24") -> np.ndarray:
    """rgb24 → (H, W, 3) uint8; yuv420p → one (H*3//2, W) uint8 array: the Y plane, then
    U and V (each H/2 x W/2) packed row after row (PyAV's layout)."""
    if format not in ("rgb24", "yuv420p"):
        raise ValueError(f"unsupported frame format {format!r}; use 'rgb24' or 'yuv420p'")
    return frame.to_ndarray(format=format)


def decode(
    source: Source,
    start: int,
    stop: int,
    format: str = "rgb24",
    *,
    index: VideoIndex | None = None,
    failed: list[int] | None = None,
    client: Any = None,
    threads: int = 1,
) -> list[np.ndarray]:
    """Exactly frames ``[start, stop)`` as numpy arrays (see ``frame_to_array``).

    The same pixels as a sequential decode of the whole file, also when ``start`` is
    between keyframes. ``index`` (from ``probe``) saves a probe. If frames fail to decode
    and a ``failed`` list is given, their numbers go there and the list returned holds
    the other frames in order; without ``failed`` a failure raises ``VideoError``.
    """
    if format not in ("rgb24", "yuv420p"):
        raise ValueError(f"unsupported frame format {format!r}; use 'rgb24' or 'yuv420p'")
    index = index if index is not None else probe(source, client=client)
    chunk = index.chunk(start, stop)
    lost: list[int] = []
    out = [
        frame_to_array(f, format)
        for _, f in iter_frames(source, chunk, lost, client=client, threads=threads)
    ]
    if lost and failed is None:
        raise VideoError(
            f"{source_name(source)}: {len(lost)} frame(s) failed to decode: {_ranges(lost)}"
        )
    if failed is not None:
        failed.extend(lost)
    return out


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 7] → '1-3, 7'."""
    parts, nums = [], sorted(numbers)
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        parts.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ", ".join(parts)
