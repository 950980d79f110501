"""A cold histogram job: what the in-register path's calibration costs a short job.

    .venv/bin/python benchmarks/video_cold_job.py [--rounds 4] [--seconds 30] [--workers 2]

``video_histogram.py --end-to-end`` warms its workers before it times them, so the
in-register path's calibration (once per worker process and frame width, about 0.12 s
of CPU for 4:2:0; ops/yuvrgb.py) is outside its rounds. Here every job is cold: a fresh
``lambdaflow.init`` on ``processes`` (worker start included), prepare, run and shutdown,
with the in-register path on and off (``LAMBDAFLOW_FUSED_RGB``) alternated, and the
single-core decode-only baseline measured in each round. Prints each job's wall time and
its frames/s over the round's decode-only, then the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import video_histogram as vh

import lambdaflow
from lambdaflow.ops.histogram import FUSED_ENV
from lambdaflow.pipelines.histogram import prepare_histogram, run_histogram


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", default="720p", choices=sorted(vh.SIZES))
    args = ap.parse_args()
    path = vh.sample(Path(tempfile.gettempdir()) / "lambdaflow-bench", args.size, args.seconds)
    frames = round(args.seconds * 30)
    ratios: dict[str, list[float]] = {"1": [], "0": []}
    for round_ in range(args.rounds):
        base = vh._decode_only_wall(path)
        for mode in ("1", "0") if round_ % 2 == 0 else ("0", "1"):
            os.environ[FUSED_ENV] = mode
            t = time.perf_counter()
            with lambdaflow.init(backend="processes", num_workers=args.workers):
                run_histogram(prepare_histogram(path, batch=50))
            wall = time.perf_counter() - t
            ratios[mode].append(frames / wall / base)
            print(f"round {round_} in-register={mode}: {wall:.3f} s (worker start included), "
                  f"{frames / wall:.0f} frames/s, decode-only {base:.0f} -> "
                  f"{ratios[mode][-1]:.2f}x", flush=True)
    for mode, label in (("1", "on"), ("0", "off")):
        print(f"median, in-register path {label}: {statistics.median(ratios[mode]):.2f}x "
              "single-core decode-only (wall)")


if __name__ == "__main__":
    main()
