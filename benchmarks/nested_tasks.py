"""Tasks that submit tasks: recursive Fibonacci, one task per call, each waiting for its
two subtasks (issue 12).

    python benchmarks/nested_tasks.py [--n 20] [--backends threads,processes] [--workers 2]

fib(20) is 21,891 tasks, 10,945 of which block in ``get`` on two children: the worst case
for a runtime whose blocked tasks hold a worker. Prints, per backend: wall time, tasks/s,
how many worker threads / processes were started in all, the total time tasks spent
blocked, and plain fib(n) in this process for scale. Ray's published behaviour for the
same shape: a task blocked in ``ray.get`` releases its CPU and Ray starts another worker
process for the queued ones ("Ray starts too many workers (and may crash) when using
nested remote functions", ray-project/ray#3644: 500 blocked tasks needed about 500
workers; Ray warns "N PYTHON worker processes have been started ... due to tasks blocked
in ray.get() calls"), and Ray's docs advise against fine-grained nested tasks
(docs.ray.io, "Pattern: Using nested tasks to achieve nested parallelism").
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lambdaflow as lf  # noqa: E402


@lf.remote
def fib(n):
    if n < 2:
        return n
    return sum(lf.get([fib.remote(n - 1), fib.remote(n - 2)]))


def plain_fib(n: int) -> int:
    return n if n < 2 else plain_fib(n - 1) + plain_fib(n - 2)


def tasks_of(n: int) -> int:
    return 1 if n < 2 else 1 + tasks_of(n - 1) + tasks_of(n - 2)


def run(backend: str, n: int, workers: int) -> dict:
    with lf.init(backend=backend, num_workers=workers) as rt:
        lf.get(fib.remote(5))  # warm the workers up
        t = time.perf_counter()
        value = lf.get(fib.remote(n), timeout=3600)
        wall = time.perf_counter() - t
        assert value == plain_fib(n)
        if backend == "threads":
            started = rt.backend.pool._started
        else:
            started = rt.backend._started
        records = rt.scheduler.stats_records()
    blocked = sum(r["blocked_s"] or 0.0 for r in records)
    return {"wall_s": wall, "started": started, "blocked_s": blocked}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--backends", default="threads,processes")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    total = tasks_of(args.n)
    t = time.perf_counter()
    plain_fib(args.n)
    plain = time.perf_counter() - t
    print(f"# fib({args.n}) as tasks: {total:,} tasks, {args.workers} workers, "
          f"{os.cpu_count()} CPUs; plain fib({args.n}) here: {plain * 1000:.1f} ms")
    print(f"{'backend':<12}{'wall s':>9}{'tasks/s':>10}{'workers started':>17}"
          f"{'blocked s (sum)':>17}")
    for backend in args.backends.split(","):
        r = run(backend, args.n, args.workers)
        print(f"{backend:<12}{r['wall_s']:>9.2f}{total / r['wall_s']:>10,.0f}"
              f"{r['started']:>17}{r['blocked_s']:>17.1f}")


if __name__ == "__main__":
    main()
