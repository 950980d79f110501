"""Benchmark the Lambda emulator: cold start, warm latency, sustained invocations/s.

    python benchmarks/lambda_emulator.py [--envs 50] [--threads 50] [--seconds 5]
                                         [--in-process]

Setup: one function with a no-op handler and ``--envs`` reserved concurrency. Phases:
1. cold start: the first invoke's wall time and the emulator's measured spawn -> first
   poll time;
2. warm latency: 200 sequential invokes, p50 / p95;
3. warm-up: ``--envs`` concurrent invokes that each hold an environment for 1 s, so
   every environment exists before the measurement;
4. throughput: ``--threads`` threads share one boto3 client (max_pool_connections =
   threads) and invoke in a loop for ``--seconds``; invocations/s = completed / elapsed.

By default the emulator runs in its own process (``EmulatorProcess``), as a driver would
see a real service; ``--in-process`` runs it in this process (``LambdaEmulator``),
sharing the GIL with the boto3 threads. ``--client raw`` replaces boto3 by plain
keep-alive ``http.client`` requests (each SigV4-signed once up front: the emulator
verifies every request), to measure the emulator without boto3's CPU cost. The last
line is the emulator's SigV4 verification cost per request, measured alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from lambdaflow.testing.emulator_process import EmulatorProcess
from lambdaflow.testing.lambda_emulator import LambdaEmulator

HERE = Path(__file__).resolve().parent
HANDLERS = HERE.parent / "tests" / "testing"


def client(emu, pool: int):
    return boto3.client(
        "lambda",
        endpoint_url=emu.endpoint_url,
        region_name="us-east-1",
        **emu.credentials.as_kwargs(),
        config=Config(
            max_pool_connections=pool,
            retries={"total_max_attempts": 1},
            tcp_keepalive=True,
        ),
    )


def start_emulator(args):
    """The emulator (in this process or a child) with the no-op function created."""
    if args.in_process:
        emu = LambdaEmulator(python_path=[str(HANDLERS)], account_concurrency=args.envs + 100)
    else:
        emu = EmulatorProcess(
            python_path=[str(HANDLERS)], account_concurrency=args.envs + 100
        )
    emu.start()
    emu.create_function(
        "bench", handler="handlers.noop", timeout_s=30, concurrency=args.envs
    )
    return emu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--in-process", action="store_true")
    parser.add_argument(
        "--client",
        choices=("boto3", "raw"),
        default="boto3",
        help="raw: unsigned keep-alive http.client requests, one connection "
        "per thread (measures the emulator without boto3's cost)",
    )
    args = parser.parse_args()
    emu = start_emulator(args)
    emulator_pid = getattr(emu, "pid", None)
    try:
        lam = client(emu, args.threads)
        t0 = time.perf_counter()
        lam.invoke(FunctionName="bench", Payload=b"{}")["Payload"].read()
        cold = time.perf_counter() - t0
        lats = []
        for _ in range(200):
            t0 = time.perf_counter()
            lam.invoke(FunctionName="bench", Payload=b"{}")["Payload"].read()
            lats.append(time.perf_counter() - t0)
        lats.sort()
        barrier = threading.Barrier(args.envs)

        def warm() -> None:  # all at once, each holding its environment for 1 s
            barrier.wait()
            lam.invoke(FunctionName="bench", Payload=b'{"sleep": 1}')["Payload"].read()

        threads = [threading.Thread(target=warm) for _ in range(args.envs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop_at = time.perf_counter() + args.seconds
        counts = [0] * args.threads
        errors = [0] * args.threads

        def run(i: int) -> None:
            invoke = (
                _raw_invoker(emu)
                if args.client == "raw"
                else (
                    lambda: lam.invoke(FunctionName="bench", Payload=b"{}")[
                        "Payload"
                    ].read()
                )
            )
            while time.perf_counter() < stop_at:
                try:
                    invoke()
                    counts[i] += 1
                except (BotoCoreError, ClientError, OSError, RuntimeError):
                    errors[i] += 1

        cpu0 = os.times()
        emu_cpu0 = _cpu(emulator_pid)
        t0 = time.perf_counter()
        threads = [threading.Thread(target=run, args=(i,)) for i in range(args.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        cpu1 = os.times()
        emu_cpu1 = _cpu(emulator_pid)
        stats = emu.stats()
        colds = [e["cold_start_s"] for e in stats["environments"] if e["cold_start_s"]]
        done = sum(counts)
        driver_cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        print(
            f"emulator: {'in-process' if args.in_process else 'separate process'}, "
            f"client {args.client}, "
            f"{args.envs} environments, {args.threads} invoker threads, {os.cpu_count()} CPUs"
        )
        print(
            f"cold start (first invoke, wall): {cold * 1000:.0f} ms; environment start "
            f"(spawn -> first poll) median {statistics.median(colds) * 1000:.0f} ms "
            f"over {len(colds)} environments"
        )
        print(
            f"warm invoke latency (sequential): p50 {lats[len(lats) // 2] * 1000:.2f} ms, "
            f"p95 {lats[int(len(lats) * 0.95)] * 1000:.2f} ms"
        )
        print(
            f"throughput: {done / elapsed:.0f} invocations/s ({done} in {elapsed:.2f} s, "
            f"{sum(errors)} errors, throttles {stats['functions']['bench']['throttles']}); "
            f"invoker CPU {driver_cpu / max(done, 1) * 1000:.2f} ms/invoke"
        )
        if emulator_pid is not None:
            per = [(b - a) / max(done, 1) * 1000 for a, b in zip(emu_cpu0, emu_cpu1)]
            print(
                f"CPU per invoke: emulator {per[0]:.2f} ms, environments {per[1]:.2f} ms"
            )
        verify_us = _verify_cost_us(emu)
        share = (
            f" ({verify_us / 10 / per[0]:.0f}% of the emulator's CPU per invoke)"
            if emulator_pid is not None and per[0] > 0
            else ""
        )
        print(f"SigV4 verification: {verify_us:.0f} us per request{share}")
    finally:
        emu.stop()
    return 0


def _signed_headers(emu, path: str, body: bytes) -> dict:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    cred = emu.credentials
    request = AWSRequest(method="POST", url=emu.endpoint_url + path, data=body,
                         headers={"Content-Type": "application/json"})  # fmt: skip
    SigV4Auth(Credentials(cred.access_key_id, cred.secret_access_key), "lambda",
              "us-east-1").add_auth(request)  # fmt: skip
    return dict(request.headers.items())


def _verify_cost_us(emu, n: int = 2000) -> float:
    """Mean CPU time of the emulator's SigV4 check on a signed Invoke request."""
    from lambdaflow.testing.sigv4 import SigV4Verifier

    path = "/2015-03-31/functions/bench/invocations"
    headers = {k.lower(): v for k, v in _signed_headers(emu, path, b"{}").items()}
    headers["host"] = emu.endpoint_url.split("//", 1)[1]
    verifier = SigV4Verifier("us-east-1")
    verifier.add(emu.credentials)
    t0 = time.process_time()  # CPU time, as the emulator's per-invoke figure
    for _ in range(n):
        verifier.verify("POST", path, headers, b"{}")
    return (time.process_time() - t0) / n * 1e6


def _raw_invoker(emu):
    import http.client

    host, port = emu.endpoint_url.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port))
    path = "/2015-03-31/functions/bench/invocations"
    headers = _signed_headers(emu, path, b"{}")  # valid for 15 minutes

    def invoke() -> bytes:
        conn.request("POST", path, b"{}", headers)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{resp.status}: {body[:200]!r}")
        return body

    return invoke


def _cpu(pid: int | None) -> tuple[float, float]:
    """(emulator process CPU s, all its environments' CPU s); psutil if installed."""
    if pid is None:
        return (0.0, 0.0)
    try:
        import psutil
    except ImportError:  # pragma: no cover
        return (0.0, 0.0)
    proc = psutil.Process(pid)
    t = proc.cpu_times()
    kids = 0.0
    for child in proc.children(recursive=True):
        try:
            c = child.cpu_times()
            kids += c.user + c.system
        except psutil.NoSuchProcess:
            pass
    return (t.user + t.system, kids)


if __name__ == "__main__":
    sys.exit(main())
