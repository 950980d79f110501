"""What one task costs the processes backend, in figures that a busy machine disturbs
less than wall time: CPU time and voluntary context switches (wake-ups) per task.

    python benchmarks/process_wakeups.py [--tasks 20000] [--chain 2000] [--workers 2]

For no-op tasks (all submitted, then collected) and a chain of dependent no-op tasks,
prints per task: the driver's CPU by thread (main, scheduler, IO), the workers' CPU, the
voluntary context switches of the driver and of the workers (Linux /proc only), those
of the workers split into their main threads' ("w main", which run the tasks) and the
rest ("w other": reader, flusher, refs), and how often the IO thread's select returned
("io wk"; a chain hop: 1 with the hand-off). A chain hop whose task wakes only the
worker thread that runs it shows w main ~1, w other ~0.
Each wake-up of a thread or process is a switch; on 2 shared cores a chain's latency is
mostly wake-ups, so fewer of them is what shortens a hop.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lambdaflow as lf  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


@lf.remote
def noop(x=None):
    return x


def _threads(pid: int) -> dict[int, tuple[float, int]]:
    """tid -> (CPU seconds, voluntary context switches)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = open(f"/proc/{pid}/task/{tid}/stat").read().rsplit(")", 1)[1].split()
            status = open(f"/proc/{pid}/task/{tid}/status").read()
        except OSError:
            continue  # the thread ended
        switches = int(status.split("voluntary_ctxt_switches:")[1].split()[0])
        out[int(tid)] = ((int(stat[11]) + int(stat[12])) / TICK, switches)
    return out


def _workers() -> list[int]:
    kids: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        kids |= {int(p) for p in open(f"/proc/self/task/{tid}/children").read().split()}
    return sorted(kids)


def measure(shape: str, n: int, backend) -> dict:
    names = {t.native_id: t.name for t in threading.enumerate()}
    kids = _workers()
    d0, w0 = _threads(os.getpid()), {k: _threads(k) for k in kids}
    io0 = backend.io_wakeups
    t = time.perf_counter()
    if shape == "no-op":
        lf.get([noop.remote(i) for i in range(n)])
    else:
        ref = noop.remote(0)
        for _ in range(n - 1):
            ref = noop.remote(ref)
        lf.get(ref)
    wall = time.perf_counter() - t
    d1, w1 = _threads(os.getpid()), {k: _threads(k) for k in kids}
    per = {"wall_us": wall / n * 1e6, "io_wakeups": (backend.io_wakeups - io0) / n}
    for tid, (cpu, _) in d1.items():
        name = names.get(tid, "other")
        key = {"MainThread": "main", "lambdaflow-scheduler": "scheduler",
               "lambdaflow-io": "io"}.get(name, "other")
        per[key] = per.get(key, 0.0) + (cpu - d0.get(tid, (0.0, 0))[0]) / n * 1e6
    per["driver_switches"] = sum(s - d0.get(t, (0.0, 0))[1] for t, (_, s) in d1.items()) / n
    per["workers_cpu"] = sum(c - w0[k].get(t, (0.0, 0))[0]
                             for k in kids for t, (c, _) in w1[k].items()) / n * 1e6
    per["workers_switches"] = sum(s - w0[k].get(t, (0.0, 0))[1]
                                  for k in kids for t, (_, s) in w1[k].items()) / n
    per["workers_main_switches"] = sum(w1[k][k][1] - w0[k].get(k, (0.0, 0))[1]
                                       for k in kids if k in w1[k]) / n
    return per


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--chain", type=int, default=2_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if not os.path.exists("/proc/self/task"):
        sys.exit("this benchmark reads /proc (Linux only)")
    print(f"# processes backend, {args.workers} workers, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}; per task: CPU in us, wake-ups")
    print(f"{'shape':<8}{'wall':>8}{'main':>7}{'sched':>7}{'io':>7}{'workers':>9}"
          f"{'driver sw':>11}{'workers sw':>12}{'w main':>8}{'w other':>9}{'io wk':>7}")
    with lf.init(backend="processes", num_workers=args.workers) as rt:
        lf.get([noop.remote(i) for i in range(200)])  # warm up: workers started, timed
        for shape, n in (("no-op", args.tasks), ("chain", args.chain)):
            r = measure(shape, n, rt.backend)
            print(f"{shape:<8}{r['wall_us']:>8.0f}{r.get('main', 0):>7.1f}"
                  f"{r.get('scheduler', 0):>7.1f}{r.get('io', 0):>7.1f}{r['workers_cpu']:>9.1f}"
                  f"{r['driver_switches']:>11.2f}{r['workers_switches']:>12.2f}"
                  f"{r['workers_main_switches']:>8.2f}"
                  f"{r['workers_switches'] - r['workers_main_switches']:>9.2f}"
                  f"{r['io_wakeups']:>7.2f}")


if __name__ == "__main__":
    main()
