"""Video classification on the current runtime: fuse and split pipelines (DESIGN.md §5).

Flow::

    prepare_inference (driver, no runtime needed): check options ─ load_model(prefix)
        ─ probe(source, strict=False) ─ model.check_fits(frame) ─ plan_chunks(index, batch)
        -> InferenceJob                  (every bad input fails here, before any task; a
                                          truncated file is planned up to where its data
                                          ends, as the histogram job does, and reported)

    run_inference(job), on the current runtime:
    fuse:   chunk ──> fuse_chunk(source, chunk, opts) ──> Predicted(predictions, failed)
                      (one task: a thread decodes while the task thread preprocesses
                       and predicts, infer_batch frames at a time)

    split:  chunk ──> decode_chunk(source, chunk) ──> ObjectRef[Decoded: numbers, HxWx3
                      uint8 frames, failed]
            k refs ──> infer_frames(opts, *decoded_refs) ──> Predicted
                      (refs are top-level arguments: the task runs when all k are ready
                       and gets the arrays; on Lambda they travel through S3)

Both modes run the same ``predict_frames`` over the same decoded frames in the same
groups of ``infer_batch`` (the chunk's frames that decoded, counted from its start), so
their predictions are identical. Every prediction carries the number of its frame from the
index (a sequential decode's numbering); a frame that does not decode has none and is
listed in ``failed``, the chunk's other frames are still predicted. A truncated source's
one-line report (``VideoIndex.truncated``) is the result's ``problem``. Tasks receive the model prefix, not
the model: each worker process loads it once (``load_model``'s per-process cache), so a
warm worker or Lambda pays the load once. On the ``lambda`` backend the model prefix and
the source must be ``s3://`` URIs the function can read.

State: none beyond one call; the result is an ``InferenceResult`` (per-frame predictions
in frame order plus counts and wall time).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import lambdaflow as lf
from lambdaflow.ops import inference as inf
from lambdaflow.ops import video
from lambdaflow.ops.preprocess import check_preprocess

log = logging.getLogger(__name__)

MODES = ("fuse", "split")


@dataclass
class InferenceResult:
    """Per-frame predictions, in frame order, and how the job ran."""

    source: str
    model: str
    mode: str
    predictions: list[dict] = field(repr=False)
    chunks: int = 0  #: decode chunks (= tasks in fuse mode)
    tasks: int = 0  #: tasks launched
    seconds: float = 0.0  #: wall time from the first task to the last result
    #: tasks that failed, as (first frame, stop frame, error line); their frames have no
    #: predictions, every other task's predictions are kept
    failures: list[tuple[int, int, str]] = field(default_factory=list)
    #: frames that did not decode in tasks that ran (the rest of their chunk is predicted)
    undecoded: list[int] = field(default_factory=list)
    problem: str | None = None  #: the source is truncated: file, last frame, length

    @property
    def failed_frames(self) -> list[int]:
        """Every frame without a prediction: failed tasks' and undecoded frames."""
        lost = {n for start, stop, _ in self.failures for n in range(start, stop)}
        return sorted(lost.union(self.undecoded))

    @property
    def ok(self) -> bool:
        return not self.failures and not self.undecoded and self.problem is None

    @property
    def frames(self) -> int:
        return len(self.predictions)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One line: frames, chunks, tasks, seconds, frames/s, mode, failures."""
        lost = self.failed_frames
        failed = f", {len(lost)} frames failed" if lost else ""
        truncated = ", source truncated" if self.problem else ""
        return (
            f"{self.frames} frames, {self.chunks} chunks, {self.tasks} tasks, "
            f"{self.seconds:.2f} s, {self.frames_per_second:.1f} frames/s, mode {self.mode}"
            f"{failed}{truncated}"
        )


@dataclass
class Decoded:
    """Split, stage 1's output: the frames of ``[start, stop)`` that decoded, in order,
    with their numbers; the others' numbers are in ``failed``."""

    start: int
    stop: int
    numbers: list[int]
    frames: list = field(repr=False)  #: HxWx3 uint8 arrays
    failed: list[int] = field(default_factory=list)


@dataclass
class Predicted:
    """What one inference task returns: predictions (with "frame") and undecoded frames."""

    predictions: list[dict]
    failed: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Options:
    """What every inference task needs besides frames (small: travels inline)."""

    model: str
    epoch: int
    preprocess: str
    top_k: int
    infer_batch: int
    mxnet_threads: int | None


@dataclass(frozen=True)
class InferenceJob:
    """A validated job: ``prepare_inference`` made it, ``run_inference`` runs it."""

    source: str
    mode: str
    plan: video.ChunkPlan = field(repr=False)
    opts: _Options
    refs_per_task: int
    model: Any = field(repr=False)  #: the driver's loaded ``inf.Model`` (input shape, names)
    index: video.VideoIndex = field(repr=False)


def video_inference(
    source: str | os.PathLike,
    model: str | os.PathLike,
    mode: str = "fuse",
    batch: int = 50,
    preprocess: str = "this",
    top_k: int = 5,
    infer_batch: int = 16,
    *,
    refs_per_task: int = 1,
    epoch: int = 0,
    mxnet_threads: int | None = None,
) -> InferenceResult:
    """Classify every frame of ``source`` with the MXNet model at prefix ``model``.

    ``batch`` is the target decode chunk (frames, cut on keyframes); ``infer_batch`` the
    MXNet batch size. ``refs_per_task`` (split only) is how many decode chunks one
    inference task takes. ``mxnet_threads`` sets ``OMP_NUM_THREADS`` in worker processes
    that have not imported MXNet yet (e.g. 1 when one worker per core). Raises ValueError
    / FileNotFoundError / ``video.VideoError`` naming the bad input before launching any
    task. A truncated source is planned up to where its data ends: its frames are
    predicted and ``result.problem`` says what is missing.
    """
    job = prepare_inference(
        source,
        model,
        mode,
        batch,
        preprocess,
        top_k,
        infer_batch,
        refs_per_task=refs_per_task,
        epoch=epoch,
        mxnet_threads=mxnet_threads,
    )
    return run_inference(job)


def prepare_inference(
    source: str | os.PathLike,
    model: str | os.PathLike,
    mode: str = "fuse",
    batch: int = 50,
    preprocess: str = "this",
    top_k: int = 5,
    infer_batch: int = 16,
    *,
    refs_per_task: int = 1,
    epoch: int = 0,
    mxnet_threads: int | None = None,
) -> InferenceJob:
    """Check every input (options, model files, video, model input vs frame size) and
    plan the chunks; no task is launched and no runtime is needed. A truncated file is
    planned up to where its data ends (``job.index.truncated`` says so), as
    ``prepare_histogram`` does."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
    check_preprocess(preprocess)
    for name, value in (
        ("batch", batch),
        ("top_k", top_k),
        ("infer_batch", infer_batch),
        ("refs_per_task", refs_per_task),
    ):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    model, source = os.fspath(model), os.fspath(source)
    loaded = inf.load_model(model, epoch=epoch)  # missing / unreadable files fail here
    index = video.probe(source, strict=False)
    loaded.check_fits((index.height, index.width, 3), preprocess)
    plan = video.plan_chunks(index, batch)
    opts = _Options(model, epoch, preprocess, int(top_k), int(infer_batch), mxnet_threads)
    return InferenceJob(source, mode, plan, opts, int(refs_per_task), loaded, index)


def run_inference(
    job: InferenceJob, progress: Callable[[int, int], None] | None = None
) -> InferenceResult:
    """Launch the job's tasks on the current runtime and gather per-frame predictions;
    ``progress(frames_done, frames_total)`` is called as results arrive. A task that
    fails (say, frames that do not decode) is reported in ``result.failures`` with its
    frame range; the other tasks' predictions are kept. Frames that do not decode are in
    ``result.undecoded`` (their chunk's other frames are predicted), and a truncated
    source's one-line report is ``result.problem``."""
    plan, opts, source = job.plan, job.opts, job.source
    log.info(
        "video_inference %s: %d frames, %d chunks, mode %s, model %r",
        source,
        plan.frame_count,
        len(plan),
        job.mode,
        job.model,
    )
    started = time.perf_counter()
    span: dict[lf.ObjectRef, tuple[int, int]] = {}  # the frames each task covers
    if job.mode == "fuse":
        refs = [fuse_chunk.remote(source, chunk, opts) for chunk in plan]
        span.update((r, (c.start, c.stop)) for r, c in zip(refs, plan))
    else:
        decoded = [decode_chunk.remote(source, chunk) for chunk in plan]
        refs = []
        k = job.refs_per_task
        for i in range(0, len(plan), k):
            group = plan.chunks[i : i + k]
            ref = infer_frames.remote(opts, *decoded[i : i + k])
            refs.append(ref)
            span[ref] = (group[0].start, group[-1].stop)
    predictions: list[dict] = []
    failures: list[tuple[int, int, str]] = []
    undecoded: list[int] = []
    done = 0
    pending = list(refs)
    if progress:
        progress(0, plan.frame_count)
    while pending:
        ready, pending = lf.wait(pending, num_returns=1)
        for ref in ready:
            start, stop = span[ref]
            try:
                part = lf.get(ref)
            except lf.LambdaflowError as exc:  # keep the other tasks' predictions
                line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                log.warning("%s: frames %d-%d failed: %s", source, start, stop - 1, line)
                failures.append((start, stop, line))
            else:
                predictions.extend(part.predictions)
                undecoded.extend(part.failed)
            done += stop - start
        if progress:
            progress(done, plan.frame_count)
    seconds = time.perf_counter() - started
    predictions.sort(key=lambda p: p["frame"])
    tasks = len(refs) + (len(plan) if job.mode == "split" else 0)
    if job.index.truncated:
        log.warning("%s", job.index.truncated)
    return InferenceResult(
        source,
        opts.model,
        job.mode,
        predictions,
        len(plan),
        tasks,
        seconds,
        sorted(failures),
        sorted(undecoded),
        job.index.truncated,
    )


def decode_frames(
    source: str,
    chunk: video.Chunk,
    failed: list[int] | None = None,
    stop: threading.Event | None = None,
) -> Iterator[tuple[int, Any]]:
    """Yield ``(frame number, HxWx3 uint8)`` for the frames of ``chunk`` that decode, in
    order; the numbers of the others go to ``failed`` (if given) at the end, and a
    warning names them. ``stop`` set: end early.

    The pixels are PyAV ``to_ndarray(format="rgb24")``'s, through ``video.RGB24``: one
    swscale context serves the whole chunk, where ``to_ndarray`` builds a new one per
    frame (measured 2x faster decode + convert at 640x360).
    """
    rgb24 = video.RGB24()
    lost: list[int] = []
    for number, frame in video.iter_frames(source, chunk, lost):
        if stop is not None and stop.is_set():
            return
        yield number, rgb24.array(frame)
    if lost:
        log.warning(
            "%s: frames %d-%d: %d frame(s) failed to decode: %s",
            source,
            chunk.start,
            chunk.stop - 1,
            len(lost),
            video.frame_ranges(lost),
        )
        if failed is not None:
            failed.extend(lost)


def predict_numbered(opts: _Options, numbers: Sequence[int], frames: Sequence[Any]) -> list[dict]:
    """``predict_frames`` over ``frames``; each dict gets "frame" from ``numbers``."""
    inf.configure_threads(opts.mxnet_threads)
    model = inf.load_model(opts.model, epoch=opts.epoch)
    results = inf.predict_frames(model, frames, opts.preprocess, opts.top_k, opts.infer_batch)
    return [{"frame": n, **r} for n, r in zip(numbers, results)]


@lf.remote
def fuse_chunk(source: str, chunk: video.Chunk, opts: _Options) -> Predicted:
    """Fuse: decode one chunk and classify its frames in the same task.

    A thread decodes while this one predicts (PyAV and MXNet both release the GIL), in
    groups of ``infer_batch`` of the chunk's decoded frames, the same groups split mode
    uses, so the predictions are bit-identical.
    """
    inf.configure_threads(opts.mxnet_threads)  # before decode: MXNet not imported yet
    model = inf.load_model(opts.model, epoch=opts.epoch)
    frames: queue.Queue = queue.Queue(maxsize=2 * opts.infer_batch)
    done = object()
    errors: list[BaseException] = []
    failed: list[int] = []
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in decode_frames(source, chunk, failed, stop):
                frames.put(item)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the task thread
            errors.append(exc)
        finally:
            frames.put(done)

    producer = threading.Thread(target=produce, name=f"decode-{chunk.start}", daemon=True)
    producer.start()
    out: list[dict] = []
    group: list = []
    try:
        while True:
            item = frames.get()
            if item is not done:
                group.append(item)
            if group and (len(group) == opts.infer_batch or item is done):
                results = inf.predict_frames(
                    model, [f for _, f in group], opts.preprocess, opts.top_k, opts.infer_batch
                )
                out.extend({"frame": n, **r} for (n, _), r in zip(group, results))
                group = []
            if item is done:
                break
    finally:
        stop.set()
        while producer.is_alive():  # unblock a producer waiting on a full queue
            try:
                frames.get_nowait()
            except queue.Empty:
                producer.join(0.01)
    if errors:
        raise errors[0]
    return Predicted(out, sorted(failed))


@lf.remote
def decode_chunk(source: str, chunk: video.Chunk) -> Decoded:
    """Split, stage 1: the chunk's frames as uint8 arrays (an object in the store)."""
    failed: list[int] = []
    pairs = list(decode_frames(source, chunk, failed))
    return Decoded(
        chunk.start, chunk.stop, [n for n, _ in pairs], [f for _, f in pairs], sorted(failed)
    )


@lf.remote
def infer_frames(opts: _Options, *decoded: Decoded) -> Predicted:
    """Split, stage 2: classify the frames of ``len(decoded)`` decoded chunks."""
    out: list[dict] = []
    failed: list[int] = []
    for part in decoded:
        out.extend(predict_numbered(opts, part.numbers, part.frames))
        failed.extend(part.failed)
    return Predicted(out, failed)
