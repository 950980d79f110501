"""The cost of fenced result commits (issue 14.11), against the overwriting write, in
one run.

    python benchmarks/fencing.py [--sizes 1,64,1024] [--repeat 2000] [--s3-repeat 200]

For each store, the time of one result commit as the worker makes it now (``create``:
written only if absent, then the job's closed-marker check ``exists``) against the
write it replaces (``put``, which overwrites), per value size in KiB. Each write goes to
a fresh key (the common case: nothing committed yet); ``create`` losing to an existing
key is timed too (a duplicate attempt: it writes its temporary copy, then drops it).

* memory: ``MemoryStore`` (threads backend's large arguments; tests);
* localdir: ``LocalDirStore`` on /dev/shm (processes backend): write a temporary file,
  then ``rename`` (put) vs ``link`` + ``unlink`` (create) + a ``stat`` of the marker;
* s3: ``S3Store`` against moto's server on 127.0.0.1: PutObject vs PutObject with
  ``If-None-Match: *`` + a HeadObject of the marker. moto is not S3: the ratio shows
  what the header and the extra request cost on the client and in a local server, not
  on AWS (where a PUT costs tens of ms and a HEAD a few).

Figures are medians in µs per operation (the best of 3 alternating rounds); the ratio
is create+check / put of the same run. Values under the inline limit (64 KiB) travel in
the reply and are never stored: the 1 KiB row shows the fixed cost only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lambdaflow.runtime import keys  # noqa: E402
from lambdaflow.runtime.store.localdir import LocalDirStore  # noqa: E402
from lambdaflow.runtime.store.memory import MemoryStore  # noqa: E402


def _time(fn, n: int, after=None) -> float:
    """Median µs of ``fn(i)`` over ``n`` calls; ``after(i)`` (untimed) cleans up."""
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - t0)
        if after is not None:
            after(i)
    return statistics.median(samples) * 1e6


def bench_store(name: str, store, sizes: list[int], n: int) -> list[tuple]:
    job = f"job-bench-{uuid.uuid4().hex[:6]}"
    rows = [bench_size(name, store, job, kib, n) for kib in sizes]
    store.delete_prefix(keys.job_prefix(job))
    return rows


def bench_size(name: str, store, job: str, kib: int, n: int) -> tuple:
    data = os.urandom(kib * 1024)
    run = f"{kib}k"
    marker = keys.closed_key(job)

    def key(i: int) -> str:
        return keys.object_key(job, f"{run}-{i}")

    def put(i: int) -> None:
        store.put(key(i), data)

    def create(i: int) -> None:
        store.create(key(i), data)

    def commit(i: int) -> None:  # what the worker does: create, then the marker check
        store.create(key(i), data)
        store.exists(marker)

    def drop(i: int) -> None:  # a fresh key every time, and memory stays flat
        store.delete(key(i))

    taken = keys.object_key(job, f"taken{run}")
    store.put(taken, data)

    def lose(i: int) -> None:
        assert store.create(taken, data) is None

    # alternate so that drift (page cache, load) hits every variant alike
    times: dict[str, list[float]] = {"put": [], "create": [], "commit": [], "lose": []}
    for _ in range(3):
        for label, fn in (("put", put), ("create", create), ("commit", commit)):
            times[label].append(_time(fn, max(1, n // 3), drop))
        times["lose"].append(_time(lose, max(1, n // 3)))
    p, c, m, lo = (min(times[k]) for k in ("put", "create", "commit", "lose"))
    return (name, kib, p, c, m, m / p, lo)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1,64,1024", help="value sizes in KiB")
    ap.add_argument("--repeat", type=int, default=2000)
    ap.add_argument("--s3-repeat", type=int, default=150)
    ap.add_argument("--no-s3", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = bench_store("memory", MemoryStore(), sizes, args.repeat)
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=shm) as root:
        rows += bench_store("localdir", LocalDirStore(os.path.join(root, "s")), sizes,
                            args.repeat)
    if not args.no_s3:
        import boto3

        from lambdaflow.runtime.store.s3 import S3Store
        from lambdaflow.testing.moto_server import MotoServer

        server = MotoServer().start()
        try:
            boto3.client("s3", **server.client_kwargs).create_bucket(Bucket="bench")
            store = S3Store("bench", "lf/", client=boto3.client("s3", **server.client_kwargs))
            rows += bench_store("s3 (moto)", store, sizes, args.s3_repeat)
        finally:
            server.stop()
    print(f"{'store':<10} {'KiB':>6} {'put µs':>10} {'create µs':>10} "
          f"{'create+check µs':>16} {'ratio':>6} {'losing create µs':>17}")
    for name, kib, p, c, m, ratio, lose in rows:
        print(f"{name:<10} {kib:>6} {p:>10.1f} {c:>10.1f} {m:>16.1f} {ratio:>6.2f} "
              f"{lose:>17.1f}")


if __name__ == "__main__":
    main()
