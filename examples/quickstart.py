"""Quickstart: a map over 64 numpy arrays, then a tree reduction, on local processes.

    python examples/quickstart.py [--backend processes|threads|lambda] [--workers N]

Each map task makes a 1000x1000 float64 array from a seed and returns its column sums;
pairs of results are added by reduce tasks that take the previous tasks' refs, so the
arrays pass between workers through the object store, never through this script.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import lambdaflow as lf


@lf.remote
def column_sums(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((1000, 1000)).sum(axis=0)


@lf.remote
def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a + b


def tree_reduce(refs: list) -> lf.ObjectRef:
    while len(refs) > 1:
        pairs = [add.remote(refs[i], refs[i + 1]) for i in range(0, len(refs) - 1, 2)]
        refs = pairs + ([refs[-1]] if len(refs) % 2 else [])
    return refs[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="processes", choices=["processes", "threads", "lambda"])
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--arrays", type=int, default=64)
    args = ap.parse_args()

    t0 = time.perf_counter()
    with lf.init(backend=args.backend, num_workers=args.workers):
        t1 = time.perf_counter()
        total = lf.get(tree_reduce(column_sums.map(range(args.arrays))))
        t2 = time.perf_counter()
    t3 = time.perf_counter()

    # Check against the same computation done here, in this process.
    expected = sum(np.random.default_rng(s).standard_normal((1000, 1000)).sum(axis=0)
                   for s in range(args.arrays))
    assert np.allclose(total, expected), "distributed result differs from the local one"
    print(f"result: sum of {args.arrays} arrays' column sums, shape {total.shape}, "
          f"total {total.sum():.4f} (matches a local run)")
    print(f"timings: start {t1 - t0:.2f} s, map + reduce {t2 - t1:.2f} s "
          f"({2 * args.arrays - 1} tasks), shutdown {t3 - t2:.2f} s, backend {args.backend}")


if __name__ == "__main__":
    main()
