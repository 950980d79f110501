"""Task overhead of the local backends, optionally against concurrent.futures.

    python benchmarks/task_overhead.py [--backends threads,processes] [--compare]
        [--tasks 10000] [--chain 500] [--arrays 200] [--workers 2] [--gops 10]
        [--rounds 1]

Prints, per backend: no-op tasks/s (all submitted, then all collected), ms per hop of a
chain of dependent tasks (each takes the previous ref), and the wall time of N tasks
returning 1 MB float64 arrays reduced pairwise by passing refs. ``--compare`` runs the
same three on ThreadPoolExecutor and ProcessPoolExecutor in the same run (values pass
back through the driver there, as concurrent.futures has no refs) and prints ratios.
``--rounds N`` runs lambdaflow and the stdlib pool alternately N times and keeps the
best figure of each (the first 200 MB reduce of a process pays for first touching its
memory, about 25,000 page faults, which a later run reuses from the heap: with one
round, whichever runs first pays it; lambdaflow always ran first).
With ``--gops N`` (and PyAV installed) it also times a workload where the task does all
the work: N whole-GOP tasks (decode one 720p GOP with PyAV, numpy histograms of every
frame) on ``processes`` against ProcessPoolExecutor with the same workers, in
frames/s (best of 3 rounds, run alternately).
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lambdaflow as lf  # noqa: E402

MB_FLOATS = 1_000_000 // 8


def noop(x=None):
    return x


def make(i):
    return np.full(MB_FLOATS, float(i))


def add(a, b):
    return a + b


r_noop, r_make, r_add = lf.remote(noop), lf.remote(make), lf.remote(add)


def gop_histograms(path, start, stop):
    """One whole GOP: decode it and histogram every frame with numpy (no native op)."""
    from lambdaflow.ops.histogram import histogram_chunk

    return histogram_chunk(path, start, stop, 16, native=False).hist.shape[0]


r_gop = lf.remote(gop_histograms)


def bench_gops(args) -> tuple[float, float]:
    """(lambdaflow processes frames/s, ProcessPoolExecutor frames/s), best of 3."""
    import tempfile

    from lambdaflow.ops.samplevideo import write_sample_video
    from lambdaflow.ops.video import plan_chunks, probe

    path = os.path.join(tempfile.gettempdir(), f"lf-bench-720p-{args.gops}gop.mp4")
    if not os.path.exists(path):
        write_sample_video(path, seconds=args.gops, width=1280, height=720, fps=30, gop=30)
    plan = list(plan_chunks(probe(path), 30))[: args.gops]
    frames = sum(c.stop - c.start for c in plan)
    best = [0.0, 0.0]
    with lf.init(backend="processes", num_workers=args.workers), \
            ProcessPoolExecutor(args.workers) as pool:
        lf.get([r_gop.remote(path, c.start, c.stop) for c in plan[: args.workers]])
        list(pool.map(gop_histograms, *zip(*[(path, c.start, c.stop)
                                             for c in plan[: args.workers]])))
        for _ in range(3):
            t = time.perf_counter()
            lf.get([r_gop.remote(path, c.start, c.stop) for c in plan])
            best[0] = max(best[0], frames / (time.perf_counter() - t))
            t = time.perf_counter()
            list(pool.map(gop_histograms, *zip(*[(path, c.start, c.stop) for c in plan])))
            best[1] = max(best[1], frames / (time.perf_counter() - t))
    return best[0], best[1]


def bench_lambdaflow(backend: str, args) -> dict:
    with lf.init(backend=backend, num_workers=args.workers):
        lf.get([r_noop.remote(i) for i in range(200)])  # warm up workers
        gc_s = [0.0, 0.0]  # seconds in the cyclic GC (it holds the GIL: CPU), its start
        on_gc = functools.partial(_gc_time, gc_s)
        gc.callbacks.append(on_gc)
        t, cpu = time.perf_counter(), time.process_time()
        refs = [r_noop.remote(i) for i in range(args.tasks)]
        lf.get(refs)
        noop_rate = args.tasks / (time.perf_counter() - t)
        noop_cpu_us = (time.process_time() - cpu) / args.tasks * 1e6
        gc.callbacks.remove(on_gc)
        del refs
        t = time.perf_counter()
        ref = r_noop.remote(0)
        for _ in range(args.chain - 1):
            ref = r_noop.remote(ref)
        lf.get(ref)
        hop_ms = (time.perf_counter() - t) / args.chain * 1000
        t = time.perf_counter()
        parts = [r_make.remote(i) for i in range(args.arrays)]
        while len(parts) > 1:
            nxt = [r_add.remote(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
            parts = nxt + ([parts[-1]] if len(parts) % 2 else [])
        total = lf.get(parts[0])
        reduce_s = time.perf_counter() - t
        assert total[0] == sum(range(args.arrays))
    return {"noop_per_s": noop_rate, "hop_ms": hop_ms, "reduce_s": reduce_s,
            "noop_cpu_us": noop_cpu_us, "noop_gc_us": gc_s[0] / args.tasks * 1e6}


def _gc_time(acc: list, phase: str, info: dict) -> None:
    if phase == "start":
        acc[1] = time.perf_counter()
    else:
        acc[0] += time.perf_counter() - acc[1]


def bench_futures(kind: str, args) -> dict:
    pool_cls = ThreadPoolExecutor if kind == "threads" else ProcessPoolExecutor
    with pool_cls(args.workers) as pool:
        list(pool.map(noop, range(200)))
        t, cpu = time.perf_counter(), time.process_time()
        futs = [pool.submit(noop, i) for i in range(args.tasks)]
        for f in futs:
            f.result()
        noop_rate = args.tasks / (time.perf_counter() - t)
        noop_cpu_us = (time.process_time() - cpu) / args.tasks * 1e6  # this process only
        t = time.perf_counter()
        value = 0
        for _ in range(args.chain):
            value = pool.submit(noop, value).result()
        hop_ms = (time.perf_counter() - t) / args.chain * 1000
        t = time.perf_counter()
        parts = [pool.submit(make, i) for i in range(args.arrays)]
        while len(parts) > 1:
            nxt = [pool.submit(add, parts[i].result(), parts[i + 1].result())
                   for i in range(0, len(parts) - 1, 2)]
            parts = nxt + ([parts[-1]] if len(parts) % 2 else [])
        total = parts[0].result()
        reduce_s = time.perf_counter() - t
        assert total[0] == sum(range(args.arrays))
    return {"noop_per_s": noop_rate, "hop_ms": hop_ms, "reduce_s": reduce_s,
            "noop_cpu_us": noop_cpu_us}


def best(a: dict, b: dict) -> dict:
    """The better of two rounds' figures, each on its own (no-op rate: higher)."""
    if not a:
        return b
    return {"noop_per_s": max(a["noop_per_s"], b["noop_per_s"]),
            "hop_ms": min(a["hop_ms"], b["hop_ms"]), "reduce_s": min(a["reduce_s"], b["reduce_s"]),
            "noop_cpu_us": min(a["noop_cpu_us"], b["noop_cpu_us"]),
            **({"noop_gc_us": min(a["noop_gc_us"], b["noop_gc_us"])} if "noop_gc_us" in a else {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="threads,processes")
    ap.add_argument("--compare", action="store_true")
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--chain", type=int, default=500)
    ap.add_argument("--arrays", type=int, default=200)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--gops", type=int, default=10, help="whole-GOP tasks (0: skip)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternate lambdaflow and the stdlib pool N times; best of each")
    args = ap.parse_args()
    print(f"# {args.tasks} no-op tasks, chain of {args.chain}, {args.arrays} x 1 MB reduce, "
          f"{args.workers} workers, {os.cpu_count()} CPUs")
    print(f"{'backend':<26}{'no-op tasks/s':>15}{'ms/hop':>10}{'reduce s':>10}")
    rows = {}
    for backend in args.backends.split(","):
        r = base = {}
        for _ in range(max(1, args.rounds)):
            r = best(r, bench_lambdaflow(backend, args))
            if args.compare:
                base = best(base, bench_futures(backend, args))
        rows[backend] = r
        print(f"{'lambdaflow ' + backend:<26}{r['noop_per_s']:>15,.0f}{r['hop_ms']:>10.3f}"
              f"{r['reduce_s']:>10.3f}")
        if args.compare:
            name = "ThreadPoolExecutor" if backend == "threads" else "ProcessPoolExecutor"
            print(f"{name:<26}{base['noop_per_s']:>15,.0f}{base['hop_ms']:>10.3f}"
                  f"{base['reduce_s']:>10.3f}")
            print(f"{'  ratio lambdaflow/stdlib':<26}{r['noop_per_s'] / base['noop_per_s']:>15.2f}"
                  f"{r['hop_ms'] / base['hop_ms']:>10.2f}{r['reduce_s'] / base['reduce_s']:>10.2f}")
        note = f", {name}: {base['noop_cpu_us']:.1f} us" if args.compare and backend == "threads" else ""
        print(f"#   CPU per no-op task (this process, all threads): lambdaflow "
              f"{r['noop_cpu_us']:.1f} us{note}")
        if backend == "processes":  # the driver's cyclic GC: every task in flight is scanned
            print(f"#   of which the driver's cyclic GC: {r['noop_gc_us']:.1f} us")
    if args.compare and args.gops and "processes" in args.backends.split(","):
        try:
            import av  # noqa: F401
        except ImportError:
            print("# whole-GOP workload skipped: PyAV is not installed")
            return
        ours, theirs = bench_gops(args)
        print(f"# {args.gops} whole-GOP tasks (720p, decode + numpy histograms), "
              f"{args.workers} workers: frames/s")
        print(f"{'lambdaflow processes':<26}{ours:>15,.0f}")
        print(f"{'ProcessPoolExecutor':<26}{theirs:>15,.0f}")
        print(f"{'  ratio lambdaflow/stdlib':<26}{ours / theirs:>15.2f}")


if __name__ == "__main__":
    main()
