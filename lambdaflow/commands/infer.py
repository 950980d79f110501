"""``lambdaflow infer`` and ``lambdaflow export-model``.

``infer VIDEO --model PREFIX``: checks every input first (``prepare_inference``: mode,
preprocess, model files, video, model input vs frame size; one clear error line, no task
launched), then starts the runtime, runs ``run_inference`` and writes one JSON object per
frame and line, ``{"frame", "classes", "probs"[, "names"]}``, to ``--out`` (stdout when
omitted or ``-``), then a summary line on stderr (as ``histogram`` does). Failed tasks,
frames that did not decode and a truncated source (one line: file, last frame read,
expected length) are reported on stderr and make the exit code 1; the predictions of
every frame that was read are still written. A tqdm bar on stderr counts frames done;
``--no-progress`` turns it off.

``export-model --arch ARCH --classes N OUT_PREFIX``: a model-zoo architecture with random,
seeded weights (no download) exported as ``OUT_PREFIX-symbol.json`` + ``-0000.params``
(+ ``-synset.txt`` with ``--synset``); see ``lambdaflow.ops.modelzoo`` for using a real
pretrained model instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from contextlib import nullcontext
from typing import IO

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "infer",
        help="classify every frame of a video with an MXNet model",
        description="Classify every frame of VIDEO with the MXNet model exported at PREFIX "
        "(PREFIX-symbol.json + PREFIX-0000.params [+ PREFIX-synset.txt]); local paths or "
        "s3:// URIs. Writes one JSON object per frame and line.",
    )
    p.add_argument("video", metavar="VIDEO", help="video file or s3://bucket/key")
    p.add_argument(
        "--model",
        required=True,
        metavar="PREFIX",
        help="model prefix (path or s3://bucket/prefix)",
    )
    p.add_argument(
        "--mode",
        default="fuse",
        metavar="fuse|split",
        help="fuse: decode and predict in one task per chunk; split: decode "
        "tasks pass frames to inference tasks (default: fuse)",
    )
    p.add_argument(
        "--preprocess",
        default="this",
        metavar="this|imagenet",
        help="this: centre crop, raw 0-255 (default); imagenet: resize 256, crop, mean/std",
    )
    p.add_argument("--batch", type=int, default=50, help="frames per decode chunk (target)")
    p.add_argument("--top-k", type=int, default=5, help="classes per frame (default 5)")
    p.add_argument("--infer-batch", type=int, default=16, help="MXNet batch size (default 16)")
    p.add_argument(
        "--refs-per-task",
        type=int,
        default=1,
        help="split: decode chunks per inference task (default 1)",
    )
    p.add_argument(
        "--mxnet-threads",
        type=int,
        default=None,
        help="OMP_NUM_THREADS for MXNet in worker processes (default: unchanged)",
    )
    p.add_argument("--epoch", type=int, default=0, help="params epoch (PREFIX-%%04d.params)")
    p.add_argument(
        "--backend",
        default="processes",
        metavar="threads|processes|lambda",
        help="where tasks run (default: processes)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker threads/processes (default: the backend's)",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="PATH",
        help="JSON lines output (default: stdout)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)

    e = subparsers.add_parser(
        "export-model",
        help="export a model-zoo architecture with random weights (offline)",
        description="Build a Gluon model-zoo architecture with random, seeded weights (no "
        "download) and export OUT_PREFIX-symbol.json + OUT_PREFIX-0000.params. For a real "
        "pretrained model, export one with pretrained=True on a machine with internet "
        "access (see lambdaflow.ops.modelzoo).",
    )
    e.add_argument("out_prefix", metavar="OUT_PREFIX")
    e.add_argument("--arch", default="mobilenet0.25", help="e.g. mobilenet0.25, resnet18_v1")
    e.add_argument("--classes", type=int, required=True, help="number of output classes")
    e.add_argument("--seed", type=int, default=0, help="random seed (same seed, same weights)")
    e.add_argument("--input-size", type=int, default=224, help="input side (default 224)")
    e.add_argument(
        "--synset",
        action="store_true",
        help="also write OUT_PREFIX-synset.txt with class_0 .. class_{N-1}",
    )
    e.add_argument(
        "--preprocess",
        default="this",
        metavar="this|imagenet",
        help="input scale the output layer is calibrated for (default: this)",
    )
    e.set_defaults(func=run_export)


def run(args: argparse.Namespace) -> int:
    import lambdaflow as lf
    from lambdaflow.pipelines.inference import prepare_inference, run_inference

    if args.backend == "lambda":
        for what, value in (("VIDEO", args.video), ("--model", args.model)):
            if not str(value).startswith("s3://"):
                raise ValueError(
                    f"with --backend lambda, {what} must be an s3:// URI the function can "
                    f"read, got {value!r}; upload it first"
                )
    job = prepare_inference(
        args.video,
        args.model,
        args.mode,
        args.batch,
        args.preprocess,
        args.top_k,
        args.infer_batch,
        refs_per_task=args.refs_per_task,
        epoch=args.epoch,
        mxnet_threads=args.mxnet_threads,
    )
    config: dict = {}
    if args.workers is not None:
        config["num_workers"] = args.workers
    progress, close_bar = _progress_bar(not args.no_progress)
    with lf.init(backend=args.backend, **config):
        try:
            result = run_inference(job, progress=progress)
        finally:
            close_bar()
    to_stdout = args.out in (None, "-")
    with nullcontext(sys.stdout) if to_stdout else open(args.out, "w") as out:
        write_jsonl(result.predictions, out)
    from lambdaflow.commands.outcome import report

    report(
        "infer", f"{result.summary()}, backend {args.backend}", video=args.video,
        written=() if to_stdout else (args.out,), failures=result.failures,
        problem=result.problem, undecoded=result.undecoded,
        undecoded_means="no prediction",
    )
    return 0 if result.ok else 1


def _progress_bar(
    enabled: bool,
) -> tuple[Callable[[int, int], None] | None, Callable[[], None]]:
    """A ``progress(done, total)`` callback drawing a tqdm bar in frames, and a closer."""
    if not enabled:
        return None, lambda: None
    from tqdm.auto import tqdm

    state: dict = {}

    def progress(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(
                total=total, desc="infer", unit="frame", dynamic_ncols=True, file=sys.stderr
            )
        bar.update(done - bar.n)

    return progress, lambda: state["bar"].close() if "bar" in state else None


def write_jsonl(predictions: list[dict], out: IO[str]) -> None:
    """One compact JSON object per line: frame, classes, probs[, names]."""
    for p in predictions:
        out.write(json.dumps(p, separators=(",", ":")) + "\n")


def run_export(args: argparse.Namespace) -> int:
    from lambdaflow.ops.modelzoo import export_model

    prefix = export_model(
        args.arch,
        args.classes,
        args.out_prefix,
        seed=args.seed,
        input_size=args.input_size,
        synset=True if args.synset else None,
        preprocess=args.preprocess,
    )
    files = [f"{prefix}-symbol.json", f"{prefix}-0000.params"]
    if args.synset:
        files.append(f"{prefix}-synset.txt")
    print(
        f"export-model: {args.arch} ({args.classes} classes, seed {args.seed}, random "
        f"weights) -> {', '.join(files)}"
    )
    return 0
