"""Benchmark MXNet video inference: fuse and split on ``processes`` vs MXNet alone.

    python benchmarks/video_inference.py [--video PATH] [--seconds 20] [--size 640x360]
        [--workers CPUS] [--mxnet-threads 1] [--batch 50] [--infer-batch 16]
        [--repeat 3] [--refs-per-task 1] [--model PREFIX] [--modes fuse,split]

Everything runs over the same video (default: a generated 640x360 30 fps sample, GOP 30)
and model (default: mobilenet0.25, 1000 classes, random weights). Every frame is decoded
once up front (not timed) for the MXNet-alone rows. Rows:

- MXNet alone: ``predict_frames`` (preprocess ``this`` + ``Model.predict``, batch
  ``--infer-batch``) over the decoded frames in this process, MXNet's default threads
  (all cores); also ``Model.predict`` alone and a plain hybridized Gluon ``SymbolBlock``.
- fuse and split on ``processes``: ``--workers`` worker processes with
  ``--mxnet-threads`` OpenMP threads each; wall time from the first task submitted to
  the last result (``InferenceResult.seconds``), decoding included.
- object passing: ``put`` of one chunk of frames plus a task that receives it (store
  write + read, what split adds per chunk), and split - fuse wall time.

One warm-up of everything first (each worker imports MXNet and loads the model once);
then ``--repeat`` rounds, each measuring every row once, interleaved so that load from
other processes hits all rows alike; the best round is kept per row.

Prints one table; results are recorded in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--video", help="video file (default: a generated sample video)")
    p.add_argument("--seconds", type=float, default=20.0, help="sample video length")
    p.add_argument("--size", default="640x360", help="sample video WxH")
    p.add_argument("--model", help="model prefix (default: export mobilenet0.25)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument(
        "--mxnet-threads",
        type=int,
        default=1,
        help="OMP threads per worker process (0: MXNet's default)",
    )
    p.add_argument("--batch", type=int, default=50, help="decode chunk (frames)")
    p.add_argument("--infer-batch", type=int, default=16)
    p.add_argument("--refs-per-task", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--modes", default="fuse,split")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import lambdaflow as lf
    from lambdaflow.ops import inference as inf
    from lambdaflow.ops import video
    from lambdaflow.ops.modelzoo import export_model
    from lambdaflow.ops.samplevideo import write_sample_video
    from lambdaflow.pipelines.inference import prepare_inference, run_inference

    tmp = Path(tempfile.mkdtemp(prefix="lf-bench-inference-"))
    if args.video:
        source = args.video
    else:
        width, height = (int(v) for v in args.size.lower().split("x"))
        source = str(
            write_sample_video(
                tmp / "sample.mp4",
                seconds=args.seconds,
                width=width,
                height=height,
                fps=30,
                gop=30,
            )
        )
    model_prefix = args.model or export_model("mobilenet0.25", 1000, tmp / "mobilenet0.25")
    index = video.probe(source)
    frames = video.decode(source, 0, index.frame_count, index=index)
    n = len(frames)
    frame_mb = frames[0].nbytes / 1e6
    print(
        f"video: {source} {index.width}x{index.height}, {n} frames ({frame_mb:.2f} MB each)"
        f"; model {model_prefix}; cores {os.cpu_count()}; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} in the driver"
    )

    model = inf.load_model(model_prefix)
    batch = inf.preprocess_batch(frames, "this", model)
    threads = args.mxnet_threads or None
    modes = args.modes.split(",")
    best: dict[str, float] = {}  # row -> best seconds over the rounds
    results: dict = {}

    def timed(row: str, fn):
        started = time.perf_counter()
        value = fn()
        seconds = getattr(value, "seconds", None) or time.perf_counter() - started
        best[row] = min(best.get(row, float("inf")), seconds)
        return value

    with lf.init(backend="processes", num_workers=args.workers):
        jobs = {
            mode: prepare_inference(
                source,
                model_prefix,
                mode,
                args.batch,
                "this",
                5,
                args.infer_batch,
                refs_per_task=args.refs_per_task,
                mxnet_threads=threads,
            )
            for mode in modes
        }
        # Warm-up: this process and every worker import MXNet and load the model once.
        inf.predict_frames(model, frames[: args.infer_batch], "this", 5, args.infer_batch)
        _gluon_run(model_prefix, batch[: args.infer_batch], args.infer_batch)
        for job in jobs.values():
            run_inference(job)
        # Rounds interleave every measurement, so load from other processes on the
        # machine hits them alike; the best of the rounds is kept for each.
        for _ in range(args.repeat):
            timed(
                ALONE,
                lambda: inf.predict_frames(model, frames, "this", 5, args.infer_batch),
            )
            timed(PREDICT, lambda: model.predict(batch, batch_size=args.infer_batch))
            timed(GLUON, lambda: _gluon_run(model_prefix, batch, args.infer_batch))
            for mode, job in jobs.items():
                results[mode] = timed(mode, lambda job=job: run_inference(job))
        passing = _object_passing(lf, frames[: args.batch], args.repeat)

    alone = n / best[ALONE]
    print(f"\n{'':58s} {'frames/s':>9s} {'x alone':>8s}")
    for row in (ALONE, PREDICT, GLUON, *modes):
        label = row
        if row in results:
            label = (
                f"{row} on processes ({args.workers} workers x "
                f"{threads or 'default'} threads, {results[row].tasks} tasks)"
            )
        rate = n / best[row]
        print(f"{label:58s} {rate:9.1f} {rate / alone:8.2f}")
    chunk_mb = min(args.batch, n) * frame_mb
    print(
        f"\nobject passing (processes store): put + a task reading {chunk_mb:.0f} MB of "
        f"frames ({min(args.batch, n)}): {passing * 1e3:.1f} ms "
        f"= {passing / min(args.batch, n) * 1e3:.2f} ms/frame, "
        f"{chunk_mb / passing:.0f} MB/s"
    )
    if "fuse" in best and "split" in best:
        extra = best["split"] - best["fuse"]
        print(
            f"split - fuse wall time: {extra:+.2f} s ({extra / n * 1e3:+.2f} ms/frame); "
            f"{n * frame_mb:.0f} MB of frames passed between split's tasks"
        )
    return 0


ALONE = "MXNet alone: predict_frames (preprocess + predict)"
PREDICT = "MXNet alone: Model.predict only (preprocessed)"
GLUON = "MXNet alone: plain hybridized Gluon SymbolBlock"


def _count_frames(frames: list) -> int:
    return len(frames)


def _object_passing(lf, frames: list, repeat: int) -> float:
    """Best seconds for put(frames) + a task that receives them (store write + read)."""
    count = lf.remote(_count_frames)
    best = float("inf")
    for _ in range(repeat + 1):
        started = time.perf_counter()
        assert lf.get(count.remote(lf.put(frames))) == len(frames)
        best = min(best, time.perf_counter() - started)
    return best


def _gluon_run(prefix: str, batch, infer_batch: int) -> None:
    import warnings

    import mxnet as mx

    net = _GLUON.get(prefix)
    if net is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            net = mx.gluon.SymbolBlock.imports(
                f"{prefix}-symbol.json", ["data"], f"{prefix}-0000.params"
            )
        net.hybridize(static_alloc=True, static_shape=True)
        _GLUON[prefix] = net
    for i in range(0, len(batch), infer_batch):
        mx.nd.softmax(net(mx.nd.array(batch[i : i + infer_batch]))).asnumpy()


_GLUON: dict = {}

if __name__ == "__main__":
    sys.exit(main())
