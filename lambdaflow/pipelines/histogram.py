"""Per-frame colour histograms of a whole video on the current runtime (the fuse model).

Flow::

    driver: probe(source) ─ plan_chunks(index, batch)      (bad input fails here, no task;
            a truncated file is indexed up to where its data ends and reported after)
            one task per chunk: histogram_task(source, chunk, bins); the chunks of the
            last quarter of the video run as halves (``tasks_of``: the tail)
                └─ worker: ops.histogram.histogram_chunk  (decode + native kernel, one
                           frame held at a time) -> ChunkHistogram (rows + failed frames)
            lf.wait as tasks finish: copy rows into the (frames, 3, bins) array, add up
            the packets each task decoded (the measured decode amplification), count
            progress; a chunk whose task failed is recorded and its rows stay zero,
            the other chunks' rows are kept
    -> HistogramResult: the array plus failures and stats

State: none beyond one call. Afterwards, on the result: ``scene_changes`` (frames where
the histograms jump), ``write_this_files`` (THIS-compatible per-chunk files) and
``plot_histograms`` (heat maps over time; matplotlib imported only there).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import lambdaflow as lf
from lambdaflow.ops import video
from lambdaflow.ops.histogram import ChunkHistogram, histogram_chunk

log = logging.getLogger(__name__)

#: progress(frames_done, frames_total) after every finished chunk.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ChunkFailure:
    """A chunk whose task failed as a whole (its frames are also in ``failed_frames``);
    in the tail, where a chunk runs as two tasks (``tasks_of``), one half of it."""

    start: int
    stop: int
    error: str  #: first line of the task's error


@dataclass
class HistogramResult:
    """Histograms of every frame (rows R, G, B) and how the job went.

    Rows of frames that could not be decoded are zero; their numbers are in
    ``failed_frames`` (and whole failed chunks in ``chunk_failures``). ``problem`` is the
    one-line report of a truncated source (its frames there are are all in ``hist``).
    """

    source: str
    hist: np.ndarray = field(repr=False)  #: int64 (frames, 3, bins)
    chunks: int
    seconds: float  #: wall time from the first task to the last result
    decode_amplification: float  #: measured: packets decoded / frames wanted
    failed_frames: list[int] = field(default_factory=list)
    chunk_failures: list[ChunkFailure] = field(default_factory=list)
    fps: float = 0.0  #: of the video (for plots), not of the job
    bounds: list[tuple[int, int]] = field(default_factory=list, repr=False)  #: chunks
    problem: str | None = None  #: the source is truncated: file, last frame, length
    planned_amplification: float = 1.0  #: what the chunk plan expected

    @property
    def frames(self) -> int:
        return len(self.hist)

    @property
    def bins(self) -> int:
        return self.hist.shape[2]

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return not self.failed_frames and self.problem is None

    def __array__(self, dtype: Any = None) -> np.ndarray:
        return self.hist if dtype is None else self.hist.astype(dtype)

    def summary(self) -> str:
        """One line: frames, chunks, seconds, frames/s, decode amplification, failures."""
        text = (
            f"{self.frames} frames, {self.chunks} chunks, {self.seconds:.2f} s, "
            f"{self.frames_per_second:.1f} frames/s, "
            f"decode amplification {self.decode_amplification:.2f}"
        )
        if self.failed_frames:
            text += f", {len(self.failed_frames)} frames failed"
        if self.problem:
            text += ", source truncated"
        return text


@lf.remote
def histogram_task(source: str, chunk: video.Chunk, bins: int) -> ChunkHistogram:
    """One chunk on a worker: the fused decode + histogram op."""
    return histogram_chunk(source, chunk.start, chunk.stop, bins, chunk=chunk)


def _task_source(source: str | os.PathLike) -> str:
    """Workers may run elsewhere (another cwd, another process): absolute paths."""
    text = os.fspath(source)
    return text if text.startswith("s3://") else os.path.abspath(text)


@dataclass(frozen=True)
class HistogramJob:
    """A checked, planned job: ``prepare_histogram`` makes it, ``run_histogram`` runs it."""

    source: str  #: absolute path or s3:// URI, as the workers will open it
    bins: int
    index: video.VideoIndex = field(repr=False)
    plan: video.ChunkPlan = field(repr=False)


def prepare_histogram(source: str | os.PathLike, batch: int = 50, bins: int = 16) -> HistogramJob:
    """Check the arguments, probe the video and plan the chunks; no runtime needed.

    Raises ``ValueError`` for bad ``batch``/``bins`` and ``VideoError`` for a missing file
    or S3 key, a file that is not a video or has no video stream. A truncated file is
    planned up to where its data ends (``index.truncated`` says so; the result reports it).
    """
    if not isinstance(bins, int) or not 1 <= bins <= 256:
        raise ValueError(f"bins must be an integer in 1..256, got {bins!r}")
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a whole number of frames >= 1, got {batch!r}")
    src = _task_source(source)
    index = video.probe(src, strict=False)
    return HistogramJob(src, bins, index, video.plan_chunks(index, batch))


def video_histogram(
    source: str | os.PathLike,
    batch: int = 50,
    bins: int = 16,
    progress: Progress | None = None,
) -> HistogramResult:
    """Histograms (frames, 3, bins) of every frame of ``source`` on the current runtime.

    One task per chunk of ``plan_chunks(index, batch)`` (whole GOPs, about ``batch``
    frames). Bad input raises before any task starts (``prepare_histogram``); a chunk
    that fails later is reported in the result and the other chunks are kept.
    ``progress(frames_done, frames_total)`` is called as chunks finish.
    """
    return run_histogram(prepare_histogram(source, batch, bins), progress)


#: The plan's chunks that start in this last share of the frames (at least the last
#: TAIL_MIN_CHUNKS) run as two tasks each, whole GOPs (``video.halve``).
TAIL_SHARE = 0.25
TAIL_MIN_CHUNKS = 2


def tasks_of(index: video.VideoIndex, plan: video.ChunkPlan) -> list[video.Chunk]:
    """The chunks the tasks run: the plan's, with the tail's chunks halved.

    Workers take tasks as they free up, so the job ends when the worker that started
    the last task finishes it: with equal chunks, the others idle for up to one chunk
    (15 chunks of 60 frames on 2 workers: 8 against 7, 9 % of the wall time measured).
    Shorter tasks at the end let them finish together; the pieces are whole GOPs, so
    nothing more is decoded. The result still reports the plan's chunks (``bounds``).
    """
    chunks, n = plan.chunks, len(plan.chunks)
    tail = (1 - TAIL_SHARE) * index.frame_count
    first = next((i for i, c in enumerate(chunks) if c.start >= tail), n)
    tail_from = max(min(first, n - TAIL_MIN_CHUNKS), 0)
    return chunks[:tail_from] + [p for c in chunks[tail_from:] for p in video.halve(index, c)]


def _merge_failures(
    failures: list[ChunkFailure], plan: video.ChunkPlan
) -> list[ChunkFailure]:
    """A plan chunk whose pieces all failed is reported as that chunk (first error)."""
    out: list[ChunkFailure] = []
    for chunk in plan:
        parts = [f for f in failures if chunk.start <= f.start and f.stop <= chunk.stop]
        if parts and sum(f.stop - f.start for f in parts) == chunk.frames:
            out.append(ChunkFailure(chunk.start, chunk.stop, parts[0].error))
        else:
            out.extend(parts)
    return sorted(out, key=lambda f: f.start)


def run_histogram(job: HistogramJob, progress: Progress | None = None) -> HistogramResult:
    """Run a prepared job on the current runtime (see ``video_histogram``)."""
    src, bins, index, plan = job.source, job.bins, job.index, job.plan
    hist = np.zeros((index.frame_count, 3, bins), dtype=np.int64)
    failed: list[int] = []
    failures: list[ChunkFailure] = []
    packets = 0

    t0 = time.perf_counter()
    tasks = tasks_of(index, plan)
    refs = [histogram_task.remote(src, chunk, bins) for chunk in tasks]
    chunk_of = {ref: chunk for ref, chunk in zip(refs, tasks)}
    pending, done = list(refs), 0
    if progress:
        progress(0, index.frame_count)
    while pending:
        ready, pending = lf.wait(pending, num_returns=1)
        for ref in ready:
            chunk = chunk_of[ref]
            try:
                part = lf.get(ref)
            except lf.LambdaflowError as exc:  # the task failed: keep the other chunks
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                log.warning(
                    "%s: frames %d-%d failed: %s",
                    src,
                    chunk.start,
                    chunk.stop - 1,
                    first,
                )
                failures.append(ChunkFailure(chunk.start, chunk.stop, first))
                failed.extend(range(chunk.start, chunk.stop))
            else:
                hist[part.start : part.stop] = part.hist
                failed.extend(part.failed)
                packets += part.packets
            done += chunk.frames
            if progress:
                progress(done, index.frame_count)
    return HistogramResult(
        source=src,
        hist=hist,
        chunks=len(plan),
        seconds=time.perf_counter() - t0,
        decode_amplification=packets / index.frame_count if index.frame_count else 1.0,
        failed_frames=sorted(failed),
        chunk_failures=_merge_failures(failures, plan),
        fps=float(index.fps or 0.0),
        bounds=[(c.start, c.stop) for c in plan],
        problem=index.truncated,
        planned_amplification=plan.decode_amplification,
    )


# ----------------------------------------------------------------------- afterwards


def change_scores(hist: np.ndarray) -> np.ndarray:
    """Per frame, how much its histogram differs from the previous frame's: half the L1
    distance of the normalized histograms, averaged over channels (0 = same, 1 = disjoint);
    frame 0 scores 0."""
    counts = np.asarray(hist, dtype=np.float64)
    totals = counts.sum(axis=2, keepdims=True)
    norm = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    scores = np.zeros(len(counts))
    if len(counts) > 1:
        scores[1:] = np.abs(np.diff(norm, axis=0)).sum(axis=2).mean(axis=1) / 2
    return scores


def scene_changes(hist: np.ndarray, threshold: float | None = None) -> list[int]:
    """Frames that start a new scene: change score above ``threshold`` (default: the
    larger of 0.1 and median + 12 x MAD of the scores, i.e. far outside normal motion)."""
    scores = change_scores(hist)
    if len(scores) < 2:
        return []
    if threshold is None:
        body = scores[1:]
        med = float(np.median(body))
        mad = float(np.median(np.abs(body - med)))
        threshold = max(0.1, med + 12 * mad)
    return [int(i) for i in np.flatnonzero(scores > threshold) if i > 0]


def write_this_files(result: HistogramResult, directory: str | os.PathLike) -> list[Path]:
    """THIS-compatible output: one ``hist<start>-<n>.out`` per chunk of the job, raw
    little-endian int32 of shape (n, 3, bins): R, G, B rows of ``bins`` per frame."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for start, stop in result.bounds or [(0, result.frames)]:
        path = out / f"hist{start}-{stop - start}.out"
        result.hist[start:stop].astype("<i4").tofile(path)
        paths.append(path)
    return paths


def read_this_file(path: str | os.PathLike, bins: int = 16) -> np.ndarray:
    """Read one ``hist<start>-<n>.out`` back as int32 (n, 3, bins)."""
    return np.fromfile(path, dtype="<i4").reshape(-1, 3, bins)


def plot_histograms(
    result: HistogramResult, path: str | os.PathLike, title: str | None = None
) -> Path:
    """A PNG: one heat map per channel (time across, bins up, colour = share of the
    frame's pixels, log scale), the change score below, dashed lines at scene changes and
    red ticks at frames that failed to decode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    hist = np.asarray(result.hist, dtype=np.float64)
    frames, _, bins = hist.shape
    totals = hist.sum(axis=2, keepdims=True)
    share = np.divide(hist, totals, out=np.zeros_like(hist), where=totals > 0)
    fps = result.fps or 1.0
    seconds = frames / fps
    cuts = scene_changes(result.hist)
    scores = change_scores(result.hist)

    fig, axes = plt.subplots(
        4,
        1,
        figsize=(12, 8),
        sharex=True,
        gridspec_kw={"height_ratios": [3, 3, 3, 1.6]},
        constrained_layout=True,
    )
    extent = (0, seconds, 0, 256)
    norm = LogNorm(vmin=1e-4, vmax=1.0)
    image = None
    for c, (ax, name, cmap) in enumerate(
        zip(axes, ("red", "green", "blue"), ("Reds", "Greens", "Blues"))
    ):
        image = ax.imshow(
            np.clip(share[:, c, :].T, 1e-4, None),
            aspect="auto",
            origin="lower",
            extent=extent,
            cmap=cmap,
            norm=norm,
            interpolation="nearest",
        )
        ax.set_ylabel(f"{name}\nvalue")
        ax.set_yticks([0, 64, 128, 192, 256])
        fig.colorbar(image, ax=ax, pad=0.01, label="share of pixels")
    ax = axes[3]
    ax.plot(np.arange(frames) / fps, scores, color="0.2", lw=1)
    ax.set_ylabel("change")
    ax.set_xlabel("time (s)" if result.fps else "frame")
    ax.set_ylim(0, max(0.3, float(scores.max(initial=0)) * 1.1))
    for cut in cuts:
        for a in axes:
            a.axvline(cut / fps, color="black", ls="--", lw=1, alpha=0.8)
        axes[0].annotate(
            f"scene {cut}",
            (cut / fps, 256),
            xytext=(3, -12),
            textcoords="offset points",
            fontsize=8,
        )
    for n in result.failed_frames:
        axes[3].axvline(n / fps, color="red", lw=0.8, alpha=0.5)
    fig.suptitle(
        title
        or f"{Path(result.source).name}: per-channel histograms over time "
        f"({frames} frames, {bins} bins, {len(cuts)} scene change{'' if len(cuts) == 1 else 's'})"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
