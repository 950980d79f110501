"""What a thread hand-off costs on this machine: the floor under a chain hop.

    python benchmarks/wakeup_floor.py [--n 2000] [--chain 500] [--rounds 5]

Prints, in microseconds per round trip (two hand-offs: A wakes B, B wakes A), a pure
Python two-thread ping-pong through ``threading.Lock``, ``queue.SimpleQueue`` and
``threading.Condition``; ThreadPoolExecutor's chain hop (``submit(f, v).result()``: the
driver wakes a worker, the worker wakes the driver, also two hand-offs); and lambdaflow's
threads chain hop, twice: as ``task_overhead.py`` measures it (the driver submits the
chain while it runs) and with the whole chain queued behind a gate first, so that only
the hops are timed. One lambdaflow hop is two hand-offs as well: the pool thread that
ran task i posts to the scheduler thread, which starts task i + 1 on a pool thread.
Best (lowest) of ``--rounds`` rounds each, and the median, since the VM's wake-up
latency moves between rounds.
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lambdaflow as lf  # noqa: E402


def noop(x=None):
    return x


_GATE = threading.Event()


def gate() -> int:
    """Wait for this script's ``_GATE`` (looked up at run time: an Event cannot be
    pickled, and the threads backend runs the task in this process)."""
    sys.modules["__main__"]._GATE.wait()
    return 0


r_noop, r_gate = lf.remote(noop), lf.remote(gate)


def ping_lock(n: int) -> float:
    """Two locks as binary semaphores: each thread releases the other's."""
    a, b = threading.Lock(), threading.Lock()
    a.acquire()
    b.acquire()

    def other() -> None:
        for _ in range(n):
            a.acquire()
            b.release()

    th = threading.Thread(target=other)
    th.start()
    t = time.perf_counter()
    for _ in range(n):
        a.release()
        b.acquire()
    dt = time.perf_counter() - t
    th.join()
    return dt / n


def ping_queue(n: int) -> float:
    q1: queue.SimpleQueue = queue.SimpleQueue()
    q2: queue.SimpleQueue = queue.SimpleQueue()

    def other() -> None:
        for _ in range(n):
            q2.put(q1.get())

    th = threading.Thread(target=other)
    th.start()
    t = time.perf_counter()
    for i in range(n):
        q1.put(i)
        q2.get()
    dt = time.perf_counter() - t
    th.join()
    return dt / n


def ping_condition(n: int) -> float:
    cond = threading.Condition()
    turn = [0]

    def other() -> None:
        for _ in range(n):
            with cond:
                while turn[0] != 1:
                    cond.wait()
                turn[0] = 0
                cond.notify()

    th = threading.Thread(target=other)
    th.start()
    t = time.perf_counter()
    for _ in range(n):
        with cond:
            turn[0] = 1
            cond.notify()
            while turn[0] != 0:
                cond.wait()
    dt = time.perf_counter() - t
    th.join()
    return dt / n


def tpe_chain(n: int, pool: ThreadPoolExecutor) -> float:
    value = 0
    t = time.perf_counter()
    for _ in range(n):
        value = pool.submit(noop, value).result()
    return (time.perf_counter() - t) / n


def lf_chain(n: int) -> float:
    """As task_overhead.py: submitting overlaps running."""
    t = time.perf_counter()
    ref = r_noop.remote(0)
    for _ in range(n - 1):
        ref = r_noop.remote(ref)
    lf.get(ref)
    return (time.perf_counter() - t) / n


def lf_chain_gated(n: int) -> float:
    """The whole chain is queued behind a gate task first; only the hops are timed."""
    _GATE.clear()
    ref = r_gate.remote()
    for _ in range(n):
        ref = r_noop.remote(ref)
    lf.wait([ref], timeout=0.2)  # let the scheduler take every submission
    t = time.perf_counter()
    _GATE.set()
    lf.get(ref)
    return (time.perf_counter() - t) / n


def rounds(fn: Callable[[], float], k: int) -> tuple[float, float]:
    xs = [fn() * 1e6 for _ in range(k)]
    return min(xs), statistics.median(xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="round trips per ping-pong round")
    ap.add_argument("--chain", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    k = args.rounds
    print(f"# {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"switch interval {sys.getswitchinterval() * 1e3:.1f} ms, best / median of {k}")
    print(f"{'us per round trip (2 hand-offs)':<44}{'best':>9}{'median':>9}")
    rows = [
        ("ping-pong threading.Lock", lambda: ping_lock(args.n)),
        ("ping-pong queue.SimpleQueue", lambda: ping_queue(args.n)),
        ("ping-pong threading.Condition", lambda: ping_condition(args.n)),
    ]
    for name, fn in rows:
        b, m = rounds(fn, k)
        print(f"{name:<44}{b:>9.1f}{m:>9.1f}")
    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(noop, range(100)))
        b, m = rounds(lambda: tpe_chain(args.chain, pool), k)
    print(f"{'ThreadPoolExecutor chain hop':<44}{b:>9.1f}{m:>9.1f}")
    with lf.init(backend="threads", num_workers=args.workers):
        lf.get([r_noop.remote(i) for i in range(200)])
        b, m = rounds(lambda: lf_chain(args.chain), k)
        print(f"{'lambdaflow threads chain hop (task_overhead)':<44}{b:>9.1f}{m:>9.1f}")
        b, m = rounds(lambda: lf_chain_gated(args.chain), k)
        print(f"{'lambdaflow threads chain hop, pre-queued':<44}{b:>9.1f}{m:>9.1f}")


if __name__ == "__main__":
    main()
