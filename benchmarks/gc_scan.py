"""What the cyclic GC costs per no-op task on the threads backend, in figures that do
not depend on the machine's load.

    python benchmarks/gc_scan.py [--rounds 10] [--tasks 10000]

Runs ``--rounds`` batches of ``--tasks`` no-op tasks (all submitted, then all collected;
2 workers) and prints: how many full (generation 2) collections ran, how many objects
they scanned per task (the count of tracked objects at the start of each), the GC's
own CPU per task by generation (``time.thread_time`` in ``gc.callbacks``: the
collecting thread's CPU), and how many objects the GC tracks at the end. Objects that
stay tracked for the whole job (records kept until shutdown) make every full
collection longer as the job goes on; this is where that shows.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lambdaflow as lf  # noqa: E402


def noop(x=None):
    return x


r_noop = lf.remote(noop)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--tasks", type=int, default=10_000)
    args = ap.parse_args()
    scanned, full = [0], [0]
    cpu = {0: 0.0, 1: 0.0, 2: 0.0}
    started = [0.0]

    def watch(phase: str, info: dict) -> None:
        gen = info["generation"]
        if phase == "start":
            if gen == 2:
                scanned[0] += len(gc.get_objects())
                full[0] += 1
            started[0] = time.thread_time()
        else:
            cpu[gen] += time.thread_time() - started[0]

    n = args.tasks * args.rounds
    with lf.init(backend="threads", num_workers=2):
        lf.get([r_noop.remote(i) for i in range(200)])
        gc.callbacks.append(watch)
        try:
            for _ in range(args.rounds):
                lf.get([r_noop.remote(i) for i in range(args.tasks)])
        finally:
            gc.callbacks.remove(watch)
        tracked = len(gc.get_objects())
    print(f"# {args.rounds} x {args.tasks} no-op tasks, threads, 2 workers")
    print(f"full collections                         {full[0]:>8}")
    print(f"objects scanned by them per task         {scanned[0] / n:>8.2f}")
    print("GC CPU per task, us (gen 0 / 1 / 2)      "
          f"{cpu[0] / n * 1e6:.2f} / {cpu[1] / n * 1e6:.2f} / {cpu[2] / n * 1e6:.2f}")
    print(f"objects tracked at the end               {tracked:>8}")


if __name__ == "__main__":
    main()
