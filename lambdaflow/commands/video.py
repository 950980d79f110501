"""``lambdaflow histogram`` (the main job) and ``lambdaflow sample-video``.

``histogram VIDEO``: probes the video and plans keyframe-aligned chunks on the driver
(bad input fails there, one line, before any task), starts the runtime, runs one fused
decode + histogram task per chunk (``pipelines.histogram.video_histogram``) with a
progress bar, then writes ``--out`` (.npy, int64 (frames, 3, bins), R G B), ``--plot``
(PNG heat maps with scene changes) and ``--this-dir`` (THIS ``hist<start>-<n>.out``
files) and prints one summary line (with the measured decode amplification: packets
decoded / frames). Frames that failed to decode, and a truncated source (one line: file,
last frame read, expected length), are reported on stderr and make the exit code 1; the
frames that were read are still written.

``sample-video OUT.mp4``: a test video with moving content and scene changes (libx264).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BACKENDS = ("processes", "threads", "lambda")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "histogram",
        help="per-frame colour histograms of a video (the main job)",
        description="Per-frame R, G, B histograms of VIDEO, one task per keyframe-aligned "
        "chunk (decode + native histogram fused in the task).",
    )
    p.add_argument("video", metavar="VIDEO", help="video file or s3://bucket/key")
    p.add_argument("--batch", type=int, default=50, help="frames per chunk (target; default 50)")
    p.add_argument("--bins", type=int, default=16, help="bins per channel, 1..256 (default 16)")
    p.add_argument(
        "--backend",
        default="processes",
        choices=BACKENDS,
        help="where tasks run (default: processes)",
    )
    p.add_argument("--workers", type=int, default=None, help="workers (default: the backend's)")
    p.add_argument("--out", metavar="PATH", help="write the array as .npy")
    p.add_argument("--plot", metavar="PNG", help="draw the histograms over time")
    p.add_argument(
        "--this-dir",
        metavar="DIR",
        help="also write THIS files hist<start>-<n>.out (int32)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=histogram_command)

    s = subparsers.add_parser(
        "sample-video",
        help="write a test video with moving content (libx264)",
        description="Write an mp4 with moving shapes over scrolling gradients and a scene "
        "change every 3 s; keyframes exactly every GOP frames.",
    )
    s.add_argument("out", metavar="OUT.mp4")
    s.add_argument("--seconds", type=float, default=10, help="length (default 10)")
    s.add_argument("--width", type=int, default=1280, help="even (default 1280)")
    s.add_argument("--height", type=int, default=720, help="even (default 720)")
    s.add_argument("--fps", type=int, default=30, help="frames per second (default 30)")
    s.add_argument("--gop", type=int, default=30, help="keyframe interval (default 30)")
    s.add_argument("--no-bframes", action="store_true", help="no B-frames")
    s.set_defaults(func=sample_video_command)


def _progress_bar(enabled: bool):
    """A ``progress(done, total)`` callback drawing a tqdm bar (frames), and a closer."""
    if not enabled:
        return None, lambda: None
    from tqdm.auto import tqdm

    state: dict = {}

    def progress(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(
                total=total,
                desc="histogram",
                unit="frame",
                dynamic_ncols=True,
                file=sys.stderr,
            )
        bar.update(done - bar.n)

    return progress, lambda: state["bar"].close() if "bar" in state else None


def histogram_command(args: argparse.Namespace) -> int:
    import lambdaflow as lf
    from lambdaflow.pipelines import histogram as pipeline

    if args.backend == "lambda" and not args.video.startswith("s3://"):
        raise ValueError(
            f"with --backend lambda, VIDEO must be an s3:// URI the function can read, "
            f"got {args.video!r}; upload it first"
        )
    # Bad input (arguments, file, S3 key): one clear line before the runtime starts.
    job = pipeline.prepare_histogram(args.video, batch=args.batch, bins=args.bins)
    config: dict = {}
    if args.workers is not None:
        config["num_workers"] = args.workers
    progress, close_bar = _progress_bar(not args.no_progress)
    with lf.init(backend=args.backend, **config):
        try:
            result = pipeline.run_histogram(job, progress=progress)
        finally:
            close_bar()

    written = []
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        import numpy as np

        np.save(out, result.hist)
        written.append(str(out))
    if args.plot:
        written.append(str(pipeline.plot_histograms(result, args.plot)))
    if args.this_dir:
        files = pipeline.write_this_files(result, args.this_dir)
        written.append(f"{len(files)} THIS files in {args.this_dir}")
    from lambdaflow.commands.outcome import report

    report(
        "histogram", f"{result.summary()}, backend {args.backend}", video=args.video,
        written=written,
        failures=[(f.start, f.stop, f.error) for f in result.chunk_failures],
        problem=result.problem, undecoded=result.failed_frames,
        undecoded_means="their rows are zero",
    )
    return 0 if result.ok else 1


def sample_video_command(args: argparse.Namespace) -> int:
    from lambdaflow.ops.samplevideo import write_sample_video

    path = write_sample_video(
        args.out,
        seconds=args.seconds,
        width=args.width,
        height=args.height,
        fps=args.fps,
        gop=args.gop,
        bframes=not args.no_bframes,
    )
    print(
        f"sample-video: {path} ({args.width}x{args.height}, {args.seconds:g} s at "
        f"{args.fps} fps, keyframe every {args.gop} frames)"
    )
    return 0
