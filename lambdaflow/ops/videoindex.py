"""The frame index of a video: which frames a sequential decode shows, and where to enter.

Flow (one pass over the file, no decoding beyond the first GOP)::

    open_container ─ video_stream (cover art is not video)
      demux every stream ──> video packets in decode order: pts, keyframe, discard, pos
            │                 the end of every stream's data (audio may outlast video)
            ├─ head decode: the packets up to the first keyframe's frame are decoded, to
            │  learn which leading frames the decoder drops (a file cut mid-GOP)
            ├─ a demux error or a packet cut short ends the data: ``truncated``
      shown frames = packets not hidden by an mp4 edit list (``is_discard``) and not
                     dropped at the head; numbered by pts rank (presentation order)
      entry points = keyframes (+ the stream's first packet when frames before the first
                     keyframe are shown), each with the first frame it can produce
      duration check: the shown frames end well before the header's duration: truncated

So frame numbers are what one ``for frame in container.decode(video=0)`` would count, for
B-frames, open GOPs, edit lists and mid-GOP starts alike. A truncated file is described
by one line in ``VideoIndex.truncated`` (file, last frame read, expected length);
``probe(strict=True)`` raises it as ``VideoError``, ``strict=False`` indexes the frames
there are so that a job can keep them and report the rest.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from lambdaflow.ops.videosource import Source, VideoError, open_container, source_name, video_stream

log = logging.getLogger(__name__)

#: Packets decoded past the first keyframe while looking for its frame (decoder delay).
HEAD_PACKETS = 64


@dataclass(frozen=True)
class Keyframe:
    """A packet decoding can start from: a keyframe, or the stream's first packet."""

    frame: int  #: first frame (presentation order) decodable from here
    pts: int  #: of the packet, in the stream time_base
    pos: int  #: byte position of the packet in the file (-1 if unknown)
    key: bool = True  #: a keyframe (False: the stream's first packet)


@dataclass(frozen=True)
class Chunk:
    """Frames ``[start, stop)``, decoded from the entry point ``keyframe`` (<= start)."""

    start: int
    stop: int
    keyframe: int  #: frame number of the entry point
    seek_pts: int  #: pts of the entry packet (a keyframe, or the stream's first packet)
    frame_pts: tuple[int, ...]  #: pts of frames start..stop-1
    stop_pts: int | None  #: pts of frame ``stop``; None when ``stop`` is the end
    seek_pos: int = -1  #: byte position of the entry packet (-1: unknown)
    seek_key: bool = True  #: the entry packet is flagged keyframe
    back_pts: int | None = None  #: pts of the entry point before (to seek earlier)

    @property
    def frames(self) -> int:
        return self.stop - self.start

    @property
    def decoded(self) -> int:
        """Frames the plan expects to decode for this chunk (from its entry point)."""
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
    pix_fmt: str = ""
    #: one line (file, last frame read, expected length) when the data ends early
    truncated: str | None = None

    def chunk(self, start: int, stop: int) -> Chunk:
        """The ``Chunk`` for frames ``[start, stop)``, from the entry point at or before
        start."""
        if not (0 <= start < stop <= self.frame_count):
            raise ValueError(
                f"{self.source}: frame range [{start}, {stop}) is outside "
                f"the video's {self.frame_count} frames"
            )
        numbers = [k.frame for k in self.keyframes]
        i = max(bisect.bisect_right(numbers, start) - 1, 0)
        key = self.keyframes[i]
        return Chunk(
            start,
            stop,
            key.frame,
            key.pts,
            self.frame_pts[start:stop],
            self.frame_pts[stop] if stop < self.frame_count else None,
            key.pos,
            key.key,
            self.keyframes[i - 1].pts if i > 0 else None,
        )


@dataclass
class _Packets:
    """What one demux pass learns about the video stream."""

    pts: list[int] = field(default_factory=list)  #: decode order
    keys: list[tuple[int, int]] = field(default_factory=list)  #: (pts, pos), decode order
    hidden: set[int] = field(default_factory=set)  #: pts of edit-list discarded packets
    first_pos: int = -1
    last_duration: int = 0
    end_pts: int | None = None  #: max over video packets of pts + duration
    ends: dict[int, float] = field(default_factory=dict)  #: stream -> end of its data (s)
    cut: str | None = None  #: how the data ended early, if it did
    untimed: int = 0  #: packets without a pts (MPEG-PS packs small frames into one PES)


class _Head:
    """Decode the start of the stream until the first keyframe's frame comes out; the
    frames seen before it are the leading frames the decoder shows."""

    def __init__(self, stream: Any) -> None:
        self.cc = stream.codec_context
        self.cc.thread_count = 1
        self.key_pts: int | None = None
        self.after_key = 0
        self.shown: set[int] = set()
        self.done = False

    def feed(self, packet: Any, is_key: bool) -> None:
        import av

        if self.done:
            return
        if is_key and self.key_pts is None:
            self.key_pts = packet.pts
        if self.key_pts is not None:
            self.after_key += 1
            if self.after_key > HEAD_PACKETS:
                self.done = True  # a decoder that never shows the keyframe: give up
                return
        try:
            frames = self.cc.decode(packet)
        except av.FFmpegError:
            return
        for frame in frames:
            if frame.pts is None:
                continue
            if self.key_pts is not None and frame.pts >= self.key_pts:
                self.done = True
            else:
                self.shown.add(frame.pts)


def _demux(container: Any, stream: Any, name: str) -> _Packets:
    import av

    out = _Packets()
    head = _Head(stream)
    # Per stream, the largest pts + duration in its own ticks; converted to seconds once
    # at the end (the same maximum: seconds grow with ticks), not per packet.
    last_tick: dict[int, int] = {}
    try:
        for packet in container.demux():
            idx = packet.stream.index
            if packet.pts is not None:
                end_tick = packet.pts + (packet.duration or 0)
                if end_tick > last_tick.get(idx, end_tick - 1):
                    last_tick[idx] = end_tick
            if idx != stream.index:
                continue
            if packet.size == 0 and packet.pts is None:
                continue  # the flush packet at the end
            if packet.is_corrupt:
                out.cut = "inside"
                break
            if packet.pts is None:
                out.untimed += 1
                head.feed(packet, False)
                continue
            is_key = bool(packet.is_keyframe)
            if not out.pts:
                out.first_pos = packet.pos if packet.pos is not None else -1
            out.pts.append(packet.pts)
            if is_key:
                out.keys.append((packet.pts, packet.pos if packet.pos is not None else -1))
            if packet.is_discard:
                out.hidden.add(packet.pts)
            out.last_duration = packet.duration or out.last_duration
            end = packet.pts + (packet.duration or 0)
            out.end_pts = end if out.end_pts is None else max(out.end_pts, end)
            head.feed(packet, is_key)
    except av.FFmpegError as exc:
        out.cut = f"error: {exc.strerror or exc}"
    streams = {s.index: s for s in container.streams}
    for idx, tick in last_tick.items():
        tb = streams[idx].time_base if idx in streams else None
        if tb is not None:
            out.ends[idx] = float(tick * tb)
    if out.untimed and not out.pts:
        raise VideoError(
            f"{name}: video packets without timestamps (a raw "
            "elementary stream?); remux it into mp4 or mkv"
        )
    out.hidden |= _dropped_at_head(out, head)
    return out


def _fill_untimed(shown: list[int], untimed: int, name: str) -> list[int]:
    """The pts of frames whose packets carry none: the gaps in the frame grid.

    MPEG-PS puts several small frames in one PES packet and only the first gets a
    timestamp; the decoder still shows the others, in order. At a constant frame rate
    they are the missing steps of the grid (or follow the last timed frame); if the gaps
    number more than the untimed packets, the frames cannot be numbered.
    """
    steps = [b - a for a, b in zip(shown, shown[1:])]
    step = min(steps) if steps else 0
    gaps = [
        a + k * step
        for a, b in zip(shown, shown[1:])
        if step
        for k in range(1, (b - a) // step)
        if (b - a) % step == 0
    ]
    # Untimed packets after the last timed one are the frames after it.
    gaps += [shown[-1] + k * step for k in range(1, untimed - len(gaps) + 1)] if step else []
    if step <= 0 or len(gaps) != untimed:
        raise VideoError(
            f"{name}: {untimed} video packets without timestamps that cannot be placed; "
            "remux it into mp4 or mkv"
        )
    return sorted(shown + gaps)


def _dropped_at_head(packets: _Packets, head: _Head) -> set[int]:
    """pts of packets before the first keyframe (presentation order) the decoder hid."""
    if head.key_pts is None:
        return set()  # no keyframe flagged at all: assume every frame is shown
    return {p for p in packets.pts if p < head.key_pts and p not in head.shown}


def probe(source: Source, *, client: Any = None, strict: bool = True) -> VideoIndex:
    """Index a video's frames as a sequential decode shows them (see the module doc).

    Raises ``VideoError`` for a missing path or S3 key, a file that is not a video, a
    file without a video stream (or with only cover art), packets without timestamps,
    and, when ``strict``, a truncated file. With ``strict=False`` a truncated file is
    indexed up to where its data ends and ``VideoIndex.truncated`` says so.
    """
    name = source_name(source)
    container = open_container(source, client=client)
    try:
        stream = video_stream(container, name)
        packets = _demux(container, stream, name)
        shown = sorted(p for p in packets.pts if p not in packets.hidden)
        if packets.untimed:
            shown = _fill_untimed(shown, packets.untimed, name)
        if not shown:
            raise VideoError(f"{name}: the video stream has no frames")
        if len(set(shown)) != len(shown):
            raise VideoError(f"{name}: duplicate frame timestamps; cannot number frames")
        cc = stream.codec_context
        fps = stream.average_rate or stream.guessed_rate or 0.0
        tb = Fraction(stream.time_base)
        index = VideoIndex(
            source=name,
            frame_count=len(shown),
            fps=fps,
            width=cc.width,
            height=cc.height,
            codec=cc.name,
            time_base=tb,
            keyframes=_entry_points(packets, shown),
            frame_pts=tuple(shown),
            pix_fmt=cc.format.name if cc.format is not None else "",
            truncated=_truncation(container, stream, packets, shown, name, fps),
        )
    finally:
        container.close()
    if strict and index.truncated:
        raise VideoError(index.truncated)
    return index


def _entry_points(packets: _Packets, shown: list[int]) -> list[Keyframe]:
    """Keyframes by the first shown frame they decode; the stream start when frames come
    before the first keyframe. One entry per frame number (the latest in the file)."""
    by_frame: dict[int, Keyframe] = {}
    first_key = packets.keys[0][0] if packets.keys else None
    if first_key is None or shown[0] < first_key:
        by_frame[0] = Keyframe(0, packets.pts[0], packets.first_pos, key=False)
    for pts, pos in packets.keys:
        frame = bisect.bisect_left(shown, pts)
        if frame < len(shown):
            by_frame[frame] = Keyframe(frame, pts, pos)
    return [by_frame[f] for f in sorted(by_frame)]


def _truncation(
    container: Any, stream: Any, packets: _Packets, shown: list[int], name: str, fps: Any
) -> str | None:
    """One line if the data ends early: cut inside a packet or by a demux error (the end
    of data), or the frames end well before the duration the header announces."""
    tb = Fraction(stream.time_base)
    rate = float(fps) if fps else 0.0
    frame_s = 1 / rate if rate else float(packets.last_duration * tb)
    video_end = float((shown[-1] - shown[0]) * tb) + frame_s
    start_pts = stream.start_time if stream.start_time is not None else min(packets.pts)
    expected_s = None
    if stream.duration:
        expected_s = float(stream.duration * tb)
        last_end = packets.end_pts if packets.end_pts is not None else max(packets.pts)
        data_s = float((max(last_end, max(packets.pts) + 1) - start_pts) * tb)
        if not packets.last_duration:
            data_s += frame_s  # no packet durations: count the last frame's
    elif container.duration:
        # Containers disagree on whether the duration counts from the start time (TS) or
        # from zero (Matroska writes the end timestamp): take the data end from zero, so
        # a late start is never taken for a missing end.
        expected_s = container.duration / 1_000_000
        data_s = max(packets.ends.values(), default=video_end)
    expected = (
        f"the header announces {expected_s:.2f} s (about {round(expected_s * rate)} frames)"
        if expected_s and rate
        else f"the header announces {expected_s:.2f} s"
        if expected_s
        else "the header gives no length"
    )
    last = f"the data ends after frame {len(shown) - 1} ({video_end:.2f} s)"
    if packets.cut == "inside":
        return f"{name}: truncated: {last}, inside the next frame's packet; {expected}"
    if packets.cut:
        return f"{name}: truncated or corrupt: {last} ({packets.cut[len('error: ') :]}); {expected}"
    if expected_s and expected_s - data_s > max(2 * frame_s, 0.02 * expected_s):
        return f"{name}: truncated: {last} but {expected}"
    return None
