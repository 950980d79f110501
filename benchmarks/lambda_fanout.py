"""Fan-out of the lambda backend against the local Lambda emulator.

    python benchmarks/lambda_fanout.py [--envs 50] [--tasks 3000] [--seconds S]

Starts local_aws (moto server + the emulator in its own process, ``--envs`` execution
environments), warms every environment, then submits ``--tasks`` no-op tasks and prints
invocations/s sustained and the driver's CPU time per task (this process only: the
emulator and the environments are other processes). For a baseline in the same run it
also times raw boto3 ``invoke`` calls of the same function from the same number of
threads (no lambdaflow), so the ratio shows what lambdaflow adds per invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lambdaflow as lf  # noqa: E402
from lambdaflow.testing.aws_local import local_aws  # noqa: E402
from lambdaflow.testing.moto_server import FAKE_CREDENTIALS  # noqa: E402


@lf.remote
def noop(i):
    return i


def raw_invokes(aws, n: int, threads: int) -> tuple[float, float]:
    client = aws.client("lambda")
    payload = json.dumps({"lambdaflow": "ping"}).encode()

    def one(_):
        client.invoke(FunctionName=aws.config["function_name"], Payload=payload)["Payload"].read()

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(threads * 2)))
        c0, t0 = time.process_time(), time.perf_counter()
        list(pool.map(one, range(n)))
        return n / (time.perf_counter() - t0), (time.process_time() - c0) / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", type=int, default=50)
    ap.add_argument("--tasks", type=int, default=3000)
    args = ap.parse_args()
    os.environ.update(FAKE_CREDENTIALS)
    t_start = time.perf_counter()
    with local_aws(concurrency=args.envs, timeout_s=900) as aws:
        print(f"# local_aws up in {time.perf_counter() - t_start:.1f} s; {args.envs} environments, "
              f"{args.tasks} no-op tasks, {os.cpu_count()} CPUs")
        with lf.init(backend="lambda", **aws.config):
            t0 = time.perf_counter()
            lf.get([noop.remote(i) for i in range(args.envs * 2)])  # cold starts
            print(f"warm-up (cold starts of {args.envs} environments): "
                  f"{time.perf_counter() - t0:.1f} s")
            c0, t0 = time.process_time(), time.perf_counter()
            refs = [noop.remote(i) for i in range(args.tasks)]
            lf.get(refs)
            wall = time.perf_counter() - t0
            cpu_ms = (time.process_time() - c0) / args.tasks * 1000
            summary = lf.stats().summary()
        rate = args.tasks / wall
        print(f"lambdaflow: {rate:,.0f} invocations/s, driver CPU {cpu_ms:.2f} ms/task, "
              f"429s {summary['throttles']}")
        base_rate, base_cpu = raw_invokes(aws, args.tasks, args.envs)
        print(f"raw boto3 invoke ({args.envs} threads): {base_rate:,.0f} invocations/s, "
              f"CPU {base_cpu:.2f} ms/call")
        print(f"ratio lambdaflow/raw: throughput {rate / base_rate:.2f}, "
              f"CPU per task {cpu_ms / base_cpu:.2f}")


if __name__ == "__main__":
    main()
