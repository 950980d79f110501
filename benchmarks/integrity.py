"""The cost of integrity checking (issue 14.1), with and without, in one run.

    python benchmarks/integrity.py [--backends threads,processes,lambda] [--tasks 5000]
        [--sizes 1,100] [--repeat 3] [--workers 2]

1. The MAC alone, one core: HMAC-SHA256 against keyed BLAKE2b (both hashlib): µs per
   small blob (64 B, 1 KiB) and MB/s on 1 MB and 100 MB.
2. Per backend (``lambda``: against moto and the Lambda emulator, ``--workers``
   environments), with integrity (this tree) and without (the same tree with the checks
   replaced by pass-throughs, in driver and workers alike): no-op tasks/s, and the MB/s
   of a round trip of an N MB array (``lf.get(echo.remote(array))``: the driver stores
   the argument, the worker reads it and stores its result, the driver reads that; four
   passes of the MAC with integrity), best of 100 (1 MB) or 3 (100 MB). Each figure is
   the best of ``--repeat`` runs; the two modes alternate (in turn first), each run in a
   fresh interpreter.

"Without" is a benchmark-only switch: the child interpreter of a "without" run gets a
``sitecustomize`` on its PYTHONPATH (which the processes backend hands to its workers)
that swaps ``integrity.SignedStore``, ``task_store`` and ``check_function`` for
pass-throughs. lambdaflow itself has no way to turn the checks off.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITECUSTOMIZE = f"""
import sys
sys.path.insert(0, {ROOT!r})
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
import integrity as bench
bench.disable_integrity()
"""


def disable_integrity() -> None:
    """The baseline data path: blobs stored and read as they are, no checks."""
    from lambdaflow.runtime import integrity
    from lambdaflow.runtime.store import open_store

    class Unsigned:
        def __new__(cls, inner, job_key):
            return inner

    integrity.SignedStore = Unsigned  # type: ignore[misc,assignment]
    integrity.task_store = (  # type: ignore[assignment]
        lambda message, store=None: store if store is not None else open_store(message.store_uri))
    integrity.check_function = lambda fn_key, data: None  # type: ignore[assignment]


# ------------------------------------------------------------------ the MAC alone


def bench_macs() -> list[tuple[str, str, str]]:
    key = os.urandom(32)
    hm = hmac.new(key, b"domain", "sha256")
    b2 = hashlib.blake2b(b"domain", key=key, digest_size=32)
    macs = {"HMAC-SHA256": lambda d: _finish(hm.copy(), d),
            "BLAKE2b-256 keyed": lambda d: _finish(b2.copy(), d)}
    try:  # not a dependency: shown for comparison when installed
        import blake3

        b3 = blake3.blake3(b"domain", key=key)
        macs["BLAKE3 keyed (pip)"] = lambda d: _finish(b3.copy(), d)
    except ImportError:
        pass
    rows = []
    for size in (64, 1024, 1 << 20, 100 << 20):
        data = memoryview(bytes(size))
        loops = max(3, min(20_000, int(3e8 // max(size, 4096))))
        cells = []
        for fn in macs.values():
            best = min(_timed(fn, data, loops) for _ in range(3))
            cells.append(f"{best * 1e6:.2f} µs" if size < 1 << 20 else f"{size / best / 1e6:,.0f} MB/s")
        label = f"{size} B" if size < 1 << 20 else f"{size >> 20} MiB"
        rows.append((label, *cells))
    return [("blob", *macs), *rows]


def _finish(mac, data) -> bytes:
    mac.update(data)
    return mac.digest()


def _timed(fn, data, loops: int) -> float:
    t = time.perf_counter()
    for _ in range(loops):
        fn(data)
    return (time.perf_counter() - t) / loops


# ------------------------------------------- per task, worker side, in this process


def bench_run_task(loops: int = 20_000) -> tuple[float, float]:
    """µs per ``run_task`` of a no-op message with inline arguments: the store handed
    over unchecked (without), or opened from the message's URI and wrapped under its
    job key, the key packed into and out of the message (with). Best of 5, interleaved."""
    from lambdaflow import serialization
    from lambdaflow.runtime import integrity, keys
    from lambdaflow.runtime.store.localdir import LocalDirStore
    from lambdaflow.runtime.store.signed import SignedStore
    from lambdaflow.runtime.task import TaskMessage
    from lambdaflow.runtime.worker import run_task

    job_key = integrity.new_job_key()
    with tempfile.TemporaryDirectory() as d:
        raw = LocalDirStore(d)
        digest, fn = serialization.dumps_function(lambda x=None: x)
        fn_key = keys.function_key("bench", digest)
        SignedStore(raw, job_key).put(fn_key, fn)
        args = serialization.dumps_bytes(((1,), {}))
        plain = TaskMessage("bench", "t", "noop", fn_key, args=args, store_uri=raw.uri).pack()
        keyed = TaskMessage("bench", "t", "noop", fn_key, args=args, store_uri=raw.uri,
                            job_key=job_key).pack()
        run_task(TaskMessage.unpack(keyed), measure_memory=False)  # load the function

        def without() -> None:
            run_task(TaskMessage.unpack(plain), raw, measure_memory=False)

        def with_() -> None:
            run_task(TaskMessage.unpack(keyed), measure_memory=False)

        best = {without: 1.0, with_: 1.0}
        for _ in range(5):
            for fn_ in (without, with_):
                best[fn_] = min(best[fn_], _timed(lambda _, f=fn_: f(), None, loops))
    return best[without] * 1e6, best[with_] * 1e6


# ------------------------------------------------------------------ one child run


def child(backend: str, tasks: int, sizes: list[int], workers: int) -> dict:
    if backend != "lambda":
        import lambdaflow as lf

        with lf.init(backend=backend, num_workers=workers):
            return measure(tasks, sizes)
    from lambdaflow.testing.aws_local import local_aws
    from lambdaflow.testing.moto_server import FAKE_CREDENTIALS

    os.environ.update(FAKE_CREDENTIALS)
    # The environments get this interpreter's PYTHONPATH entries (the "without" switch).
    path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p] + [ROOT]
    with local_aws(concurrency=workers, python_path=path) as aws:
        import lambdaflow as lf

        with lf.init(backend="lambda", **aws.config):
            return measure(tasks, sizes)


def measure(tasks: int, sizes: list[int]) -> dict:
    import numpy as np

    import lambdaflow as lf

    noop = lf.remote(lambda x=None: x)
    echo = lf.remote(lambda a: a)
    out: dict = {}
    lf.get([noop.remote(i) for i in range(200)])  # start and warm the workers
    t = time.perf_counter()
    lf.get([noop.remote(i) for i in range(tasks)])
    out["noop_per_s"] = tasks / (time.perf_counter() - t)
    for mb in sizes:
        arr = np.ones(mb * 1_000_000 // 8)
        best = float("inf")
        for _ in range(max(3, 100 // mb)):  # best of n: 100 for 1 MB, 3 for 100 MB
            t = time.perf_counter()
            back = lf.get(echo.remote(arr))
            best = min(best, time.perf_counter() - t)
            assert back.shape == arr.shape and back[-1] == 1.0
            del back
        out[f"rt_{mb}"] = arr.nbytes / best / 1e6
    return out


def run_child(backend: str, mode: str, args, site_dir: str) -> dict:
    env = dict(os.environ)
    if mode == "without":
        env["PYTHONPATH"] = os.pathsep.join(p for p in (site_dir, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", backend, "--mode", mode,
           "--tasks", str(args.tasks), "--sizes", args.sizes, "--workers", str(args.workers)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default="threads,processes")
    p.add_argument("--tasks", type=int, default=5000)
    p.add_argument("--sizes", default="1,100", help="round-trip sizes in MB")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.child:
        if args.mode == "without":
            from lambdaflow.runtime import integrity

            assert integrity.check_function.__name__ == "<lambda>", "sitecustomize not loaded"
        print(json.dumps(child(args.child, args.tasks, sizes, args.workers)))
        return

    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print("\nThe MAC alone (one core, best of 3):")
    for row in bench_macs():
        print("  " + " | ".join(f"{c:>18}" for c in row))
    a, b = bench_run_task()
    print(f"\nrun_task of a no-op message, in process: {a:.1f} µs without, {b:.1f} µs with "
          f"(+{b - a:.1f} µs per task)")
    with tempfile.TemporaryDirectory() as site_dir:
        with open(os.path.join(site_dir, "sitecustomize.py"), "w") as f:
            f.write(SITECUSTOMIZE)
        for backend in args.backends.split(","):
            best: dict[str, dict] = {"with": {}, "without": {}}
            for i in range(args.repeat):
                for mode in ("without", "with") if i % 2 == 0 else ("with", "without"):
                    for k, v in run_child(backend, mode, args, site_dir).items():
                        best[mode][k] = max(v, best[mode].get(k, 0.0))
            print(f"\n{backend} (best of {args.repeat}, {args.workers} workers):")
            rows = [("no-op tasks/s", "noop_per_s", "{:,.0f}")]
            rows += [(f"{mb} MB round trip MB/s", f"rt_{mb}", "{:,.0f}") for mb in sizes]
            print(f"  {'':26} {'without':>10} {'with':>10} {'ratio':>7} {'µs/task':>8}")
            for label, k, fmt in rows:
                a, b = best["without"][k], best["with"][k]
                extra = f"{(1 / b - 1 / a) * 1e6:8.1f}" if k == "noop_per_s" else ""
                print(f"  {label:26} {fmt.format(a):>10} {fmt.format(b):>10} {b / a:7.2f} {extra}")


if __name__ == "__main__":
    main()
