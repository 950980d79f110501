"""Chunk plans and exact-range decoding (PyAV); the index lives in ``videoindex``.

Flow::

    source ──videosource──> path | S3File (ranged GETs) | file-like → av container
           ──probe────────> VideoIndex (videoindex): the frames a sequential decode shows,
                            numbered by pts rank, + entry points (keyframe pts, byte pos)
           ──plan_chunks──> ChunkPlan: Chunk(start, stop, keyframe, seek_pts, seek_pos,
                            frame_pts) ranges that start on entry points, ~batch frames each
                            (``halve`` cuts one in two whole-GOP pieces)
           ──iter_frames──> enter at the chunk's keyframe packet (seek by pts; if that lands
                            past it, by byte position; else re-open and read from the
                            start), skip packets before it undecoded, decode until every
                            wanted frame's packet is sent, drain the decoder
           ──decode───────> numpy arrays of exactly frames [start, stop)
           ──RGB24────────> the one RGB conversion every pipeline uses (``to_rgb24``)

A ``Chunk`` is small and self-contained (it carries the pts of its frames), so a worker
decodes it without probing the whole file again. Frame numbers come from pts ranks, never
from counting decoder output, so B-frame reordering, edit lists and mid-GOP starts give
the same frames as one sequential decode. Frames the decoder cannot produce, or produces
from damaged data (a packet cut short, a frame the decoder flags corrupt), are reported
by number through a caller-supplied ``failed`` list, never yielded. Bad input raises
``VideoError`` (a ``ValueError``) naming the source and the problem. Nothing here imports
the lambdaflow runtime.
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lambdaflow.ops.videoindex import Chunk, Keyframe, VideoIndex, probe  # noqa: F401 - re-exported
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
    video_stream,
)

log = logging.getLogger(__name__)


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


def halve(index: VideoIndex, chunk: Chunk) -> list[Chunk]:
    """``chunk`` cut in two at the entry point nearest its middle (ties go to the
    earlier), so each piece is whole GOPs and starts on its own entry point (decode
    amplification stays that of ``chunk``); ``[chunk]`` when no entry point lies inside
    it (one GOP, or a piece of a long GOP)."""
    inside = [k.frame for k in index.keyframes if chunk.start < k.frame < chunk.stop]
    if not inside:
        return [chunk]
    middle = (chunk.start + chunk.stop) / 2
    cut = min(inside, key=lambda frame: abs(frame - middle))
    return [index.chunk(chunk.start, cut), index.chunk(cut, chunk.stop)]


# ----------------------------------------------------------------------------- decode


@dataclass
class DecodeStats:
    """What decoding chunks cost: packets sent to the decoder (the measured decode
    amplification is ``packets / frames wanted``) and how the entry packet was reached."""

    packets: int = 0
    seeks: int = 0  #: entry attempts (1 when the first seek landed on the keyframe)
    entered_by: list[str] = field(default_factory=list)  #: "pts", "byte" or "start"

    def add(self, other: DecodeStats) -> None:
        self.packets += other.packets
        self.seeks += other.seeks
        self.entered_by.extend(other.entered_by)


#: How to reach a chunk's entry packet, in order: seek to its pts (backward); seek to the
#: entry point before it (MPEG-TS/PS seek by dts, landing after keyframes with reordered
#: frames, and their parsers need a few packets to put frame boundaries and timestamps
#: back where a sequential read has them); seek to its byte position; re-open the
#: container and read from the start (always reaches it).
ENTRY_METHODS = ("pts", "earlier", "byte", "start")


def _enter(container: Any, stream: Any, chunk: Chunk, method: str) -> Iterator[Any] | None:
    """Position ``container`` so that the next packet demuxed is the chunk's entry packet;
    return the packet iterator starting with it, or None if ``method`` landed past it."""
    import av

    try:
        if method == "pts":
            container.seek(chunk.seek_pts, stream=stream, backward=True, any_frame=False)
        elif method == "earlier":
            if chunk.back_pts is None:
                return None
            container.seek(chunk.back_pts, stream=stream, backward=True, any_frame=False)
        elif method == "byte":
            if chunk.seek_pos < 0:
                return None
            container.seek(chunk.seek_pos, unsupported_byte_offset=True)
    except av.FFmpegError as exc:
        log.debug("%s: seek by %s failed: %s", container.name, method, exc)
        return None
    packets = container.demux(stream)
    for packet in packets:
        if packet.pts is None:
            continue
        if packet.pts == chunk.seek_pts and (packet.is_keyframe or not chunk.seek_key):
            return itertools.chain([packet], packets)
        if packet.pts > chunk.seek_pts:  # every packet before the entry has a smaller pts
            return None
    return None


class _Collector:
    """Which decoded frames are the chunk's, as they come out of the decoder.

    A frame is numbered by its pts; one without a pts (its packet carried none) takes the
    number after the frame before it, since frames come out in presentation order. A
    frame from a packet cut short, or flagged corrupt by the decoder, is set aside as
    damaged. Once a frame at or past ``stop`` came out, no further packet is needed.
    """

    def __init__(self, chunk: Chunk, got: set[int]) -> None:
        self.chunk = chunk
        self.wanted = {p: chunk.start + i for i, p in enumerate(chunk.frame_pts)}
        self.got = got  #: numbers yielded (the caller's set: read after an early close)
        self.damaged: set[int] = set()
        self.damaged_pts: set[int] = set()  #: pts of packets cut short
        self.last = -1  #: number of the previous frame out (chunk.start - 1: before it)
        self.passed = False

    def complete(self, unsent: set[int]) -> bool:
        """No more packets needed: every wanted packet sent, or a later frame came out."""
        return not unsent or self.passed

    def frames(self, frames: Any) -> Iterator[tuple[int, Any]]:
        chunk = self.chunk
        for frame in frames:
            if frame.pts is None:
                number = self.last + 1 if self.last >= chunk.start - 1 else None
            else:
                number = self.wanted.get(frame.pts)
                if number is None and frame.pts < chunk.frame_pts[0]:
                    self.last = chunk.start - 1
                if chunk.stop_pts is not None and frame.pts >= chunk.stop_pts:
                    self.passed = True
            if number is None or number >= chunk.stop:
                continue
            self.last = number
            if number in self.got or number in self.damaged:
                continue
            if frame.is_corrupt or frame.pts in self.damaged_pts:
                self.damaged.add(number)
                continue
            self.got.add(number)
            yield number, frame


def iter_frames(
    source: Source,
    chunk: Chunk,
    failed: list[int] | None = None,
    *,
    client: Any = None,
    threads: int = 1,
    keep_open: bool = False,
    stats: DecodeStats | None = None,
) -> Iterator[tuple[int, Any]]:
    """Yield ``(frame_number, av.VideoFrame)`` for the frames of ``chunk``, in order.

    Enters at the chunk's entry packet (``ENTRY_METHODS``), decodes from there, yields the
    frames whose pts are the chunk's, and stops sending packets once every one of them has
    been sent (then drains the decoder), so a chunk of whole GOPs decodes each packet
    once. Frames that never come out, that the decoder rejects, or that come from damaged
    data (a packet cut short, a frame flagged corrupt) are not yielded; their numbers go
    to ``failed`` (if given) when the iterator is exhausted. ``threads`` > 1 (or 0 = auto)
    lets FFmpeg decode with frame threads; the frames are the same. ``keep_open`` keeps the
    container for the next chunk of the same source on this thread. ``stats`` (if given)
    is added the packets decoded and the seeks made.
    """
    import av

    name = source_name(source)
    unsent = set(chunk.frame_pts)  # pts of the chunk's packets not sent to the decoder yet
    got: set[int] = set()
    where = f"{name}: frames {chunk.start}-{chunk.stop - 1}"
    local = DecodeStats()
    container, key = acquire(source, client=client, threads=threads, keep=keep_open)
    clean = False
    try:
        stream = video_stream(container, name)
        packets = None
        for method in ENTRY_METHODS:
            local.seeks += 1
            if method == "start":
                container.close()
                container, _ = acquire(source, client=client, threads=threads, keep=False)
                stream = video_stream(container, name)
            packets = _enter(container, stream, chunk, method)
            if packets is not None:
                local.entered_by.append(method)
                break
            log.debug("%s: entering by %s landed past pts %s", where, method, chunk.seek_pts)
        if packets is None:
            log.warning("%s: the entry packet (pts %s) was not found", where, chunk.seek_pts)
            return

        take = _Collector(chunk, got)
        try:
            for packet in packets:
                if take.complete(unsent):
                    break
                if packet.size == 0 and packet.pts is None:
                    continue
                local.packets += 1
                unsent.discard(packet.pts)
                if packet.is_corrupt:
                    take.damaged_pts.add(packet.pts)
                try:
                    frames = packet.decode()
                except av.FFmpegError as exc:
                    log.warning("%s: decoder rejected packet pts %s: %s", where, packet.pts, exc)
                    continue
                yield from take.frames(frames)
            yield from take.frames(stream.codec_context.decode(None))
            clean = True
        except av.FFmpegError as exc:
            log.warning("%s: demuxing stopped: %s", where, exc)
    finally:
        release(container, key, reusable=clean)
        if stats is not None:
            stats.add(local)
        if failed is not None:
            failed.extend(n for n in range(chunk.start, chunk.stop) if n not in got)


class RGB24:
    """The RGB conversion of every pipeline: exactly ``frame.to_ndarray(format="rgb24")``.

    It is the call PyAV's ``to_ndarray`` makes (``VideoReformatter.reformat(frame,
    format="rgb24")`` with PyAV's defaults) with two differences that do not change a
    pixel: one reformatter (one swscale context) serves every frame instead of one per
    frame, and swscale gets one slice thread where PyAV lets us say so (its slices give
    the same output; the worker's core is not shared with a thread pool). What the
    conversion is: swscale with ``SWS_BILINEAR``; the matrix from the frame's colorspace
    tag (BT.601 when untagged); the range from the frame's tag (limited when untagged,
    full for yuvj* and ``color_range=pc``); chroma upsampled by swscale's unscaled
    converters as they site it for the pixel format; 10-bit sources reduced to 8 bits by
    swscale (with its dither). The code path swscale takes depends on the width, which is
    why only this one call is used: the corpus tests hold it equal to ``to_ndarray`` on
    every frame, at 854x480, odd sizes, 10-bit, 4:2:2, 4:4:4, gray and full range.
    """

    _threads_kw = True  # PyAV >= 17 takes threads=; older releases do not

    def __init__(self) -> None:
        from av.video.reformatter import VideoReformatter

        self._reformatter = VideoReformatter()

    def frame(self, frame: Any) -> Any:
        """The rgb24 ``av.VideoFrame`` (its one plane may have row padding)."""
        if RGB24._threads_kw:
            try:
                return self._reformatter.reformat(frame, format="rgb24", threads=1)
            except TypeError:
                RGB24._threads_kw = False
        return self._reformatter.reformat(frame, format="rgb24")

    def array(self, frame: Any) -> np.ndarray:
        """(H, W, 3) uint8, as ``frame.to_ndarray(format="rgb24")``."""
        return self.frame(frame).to_ndarray()


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
    rgb = RGB24() if format == "rgb24" else None
    out = [
        rgb.array(f) if rgb is not None else frame_to_array(f, format)
        for _, f in iter_frames(source, chunk, lost, client=client, threads=threads)
    ]
    if lost and failed is None:
        raise VideoError(
            f"{source_name(source)}: {len(lost)} frame(s) failed to decode: {frame_ranges(lost)}"
        )
    if failed is not None:
        failed.extend(lost)
    return out


def frame_ranges(numbers: list[int]) -> str:
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
