"""``lambdaflow local-aws``: run moto and the Lambda emulator in the foreground.

It creates the bucket and the function (as ``lambdaflow.testing.local_aws`` does),
prints ``export LAMBDAFLOW_...=...`` lines to paste into another shell, where
``lambdaflow.init(backend="lambda")`` then picks the settings up, and serves until
Ctrl-C or SIGTERM, when it kills every execution environment and stops moto.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from typing import Any

from lambdaflow.testing.lambda_emulator import DEFAULT_HANDLER


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "local-aws",
        help="run a local S3 (moto) and Lambda emulator for the lambda backend",
        description=__doc__.splitlines()[0].split(": ", 1)[1],
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="the function's concurrency limit; 429 beyond it (default 4)",
    )
    parser.add_argument("--bucket", default="lambdaflow-local")
    parser.add_argument("--function-name", default="lambdaflow-worker")
    parser.add_argument("--prefix", default="lambdaflow/")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument(
        "--timeout", type=int, default=60, help="function timeout, seconds"
    )
    parser.add_argument("--memory", type=int, default=1769, help="function memory, MB")
    parser.add_argument("--handler", default=DEFAULT_HANDLER)
    parser.add_argument(
        "--read",
        action="append",
        default=[],
        metavar="S3_LOCATION",
        help="let workers read inputs here, e.g. s3://lambdaflow-local/in/ (repeatable; "
        "as `lambdaflow deploy --read`: the worker role is enforced)",
    )
    parser.add_argument(
        "--lambda-port", type=int, default=0, help="default: a free port"
    )
    parser.add_argument(
        "--moto-port", type=int, default=None, help="default: a free port"
    )
    parser.add_argument(
        "--memory-limit",
        choices=("rss", "rlimit", "none"),
        default="rss",
        help="how the function's memory size is enforced (default rss: the "
        "environment's process tree is killed over it, Runtime.OutOfMemory)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="do not echo the execution environments' output",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lambdaflow.testing.aws_local import local_aws

    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with local_aws(
            args.concurrency,
            bucket=args.bucket,
            function_name=args.function_name,
            prefix=args.prefix,
            region=args.region,
            timeout_s=args.timeout,
            memory_mb=args.memory,
            handler=args.handler,
            read_locations=args.read,
            lambda_port=args.lambda_port,
            moto_port=args.moto_port,
            memory_limit=None if args.memory_limit == "none" else args.memory_limit,
            echo_logs=not args.quiet,
        ) as aws:
            print(
                "# lambdaflow local AWS is running; in another shell (these are the "
                "stand-ins' own per-run keys; your AWS_* settings are not touched):"
            )
            for name, value in aws.env.items():
                print(f"export {name}={shlex.quote(value)}")
            print(
                f"# S3/DynamoDB/SQS (moto): {aws.moto.endpoint_url}   "
                f"Lambda: {aws.emulator.endpoint_url}   Ctrl-C to stop",
                flush=True,
            )
            while not stop.wait(0.5):
                pass
            print(
                "# stopping: killing execution environments and moto", file=sys.stderr
            )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
