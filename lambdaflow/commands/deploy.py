"""``lambdaflow deploy``, ``lambdaflow destroy`` and ``lambdaflow status``.

    lambdaflow deploy  --bucket B [--name N] [--image-uri URI] [--memory 1769,3008,10240]
                       [--timeout 900] [--expire-days 7] [--read s3://inputs/ ...]
                       [--dynamodb-table T ...] [--sqs-queue Q ...]
    lambdaflow destroy [--name N] [--bucket B] [--keep-bucket] --yes
    lambdaflow status  [--name N] [--no-ping]

All three accept ``--region`` and ``--endpoint-url`` (or ``LAMBDAFLOW_REGION`` and
``LAMBDAFLOW_<SVC>_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL``). Each prints one line per
resource with what it did; the work is done by :mod:`lambdaflow.deploy`.
"""

from __future__ import annotations

import argparse
import os

from lambdaflow.deploy import (
    AwsClients,
    DeploySettings,
    deploy,
    destroy,
    status,
    summary,
)
from lambdaflow.deploy import settings as defaults
from lambdaflow.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "deploy",
        help="create or update the AWS resources of the lambda backend",
        description="Create or update, idempotently, the S3 bucket, worker IAM role, ECR "
        "repository and Lambda functions (one per memory tier). See docs/AWS.md.",
    )
    _common(p)
    p.add_argument(
        "--bucket",
        default=os.environ.get("LAMBDAFLOW_BUCKET"),
        help="S3 bucket for job objects (default: $LAMBDAFLOW_BUCKET)",
    )
    p.add_argument(
        "--prefix",
        default=os.environ.get("LAMBDAFLOW_PREFIX", defaults.DEFAULT_PREFIX),
        help="key prefix of job objects (default: %(default)s)",
    )
    p.add_argument(
        "--image-uri", help="worker image (default: <ECR repository>:<version>)"
    )
    p.add_argument(
        "--memory",
        default=",".join(map(str, defaults.DEFAULT_TIERS)),
        help="memory tiers in MB, one function each (default: %(default)s)",
    )
    p.add_argument(
        "--timeout",
        type=int,
        default=defaults.DEFAULT_TIMEOUT_S,
        help="function timeout in seconds (default: %(default)s)",
    )
    p.add_argument(
        "--expire-days",
        type=int,
        default=defaults.DEFAULT_EXPIRE_DAYS,
        help="expire job objects after N days (default: %(default)s)",
    )
    p.add_argument(
        "--log-retention-days",
        type=int,
        default=defaults.DEFAULT_LOG_RETENTION_DAYS,
        help="CloudWatch log retention (default: %(default)s)",
    )
    p.add_argument(
        "--ephemeral-mb",
        type=int,
        default=defaults.DEFAULT_EPHEMERAL_MB,
        help="/tmp size of each function (default: %(default)s)",
    )
    p.add_argument(
        "--read",
        action="append",
        default=[],
        metavar="S3_LOCATION",
        help="let workers read inputs here, e.g. s3://videos/in/ (repeatable)",
    )
    p.add_argument(
        "--dynamodb-table",
        action="append",
        default=[],
        metavar="TABLE",
        help="grant item access to this table (name or ARN; repeatable)",
    )
    p.add_argument(
        "--sqs-queue",
        action="append",
        default=[],
        metavar="QUEUE",
        help="grant message access to this queue (name or ARN; repeatable)",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment variable of the functions (repeatable)",
    )
    p.set_defaults(func=run_deploy)

    p = subparsers.add_parser(
        "destroy",
        help="delete the AWS resources deploy made",
        description="Delete the functions, log groups, role, ECR repository (with its "
        "images) and bucket (with every object in it) that `lambdaflow deploy` made; "
        "only resources tagged with the deployment's name are touched.",
    )
    _common(p)
    p.add_argument(
        "--bucket", help="the deployment's bucket (default: recorded on the role)"
    )
    p.add_argument(
        "--keep-bucket", action="store_true", help="keep the bucket and objects"
    )
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=run_destroy)

    p = subparsers.add_parser(
        "status",
        help="show the deployed functions and check their versions",
        description="List the deployment's functions and ping each: the worker's "
        "lambdaflow and Python versions must match this client's.",
    )
    _common(p)
    p.add_argument("--no-ping", action="store_true", help="do not invoke the functions")
    p.set_defaults(func=run_status)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--name",
        default=os.environ.get("LAMBDAFLOW_DEPLOYMENT", defaults.DEFAULT_NAME),
        help="deployment name, prefix of every resource (default: %(default)s)",
    )
    p.add_argument(
        "--region", help="AWS region (default: $LAMBDAFLOW_REGION, the profile's)"
    )
    p.add_argument("--endpoint-url", help="endpoint of every AWS service (tests: moto)")


def _clients(args: argparse.Namespace) -> AwsClients:
    return AwsClients.create(region=args.region, endpoint_url=args.endpoint_url)


def settings_from_args(args: argparse.Namespace) -> DeploySettings:
    if not args.bucket:
        raise ConfigError(
            "no bucket given: pass --bucket NAME (a new, globally unique S3 bucket name) "
            "or set LAMBDAFLOW_BUCKET"
        )
    try:
        tiers = tuple(int(m) for m in str(args.memory).split(",") if m.strip())
    except ValueError:
        raise ConfigError(
            f"--memory {args.memory!r}: give MB values separated by commas, e.g. 1769,3008"
        ) from None
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--env {item!r}: expected KEY=VALUE")
        env[key] = value
    return DeploySettings(
        bucket=args.bucket,
        name=args.name,
        prefix=args.prefix,
        image_uri=args.image_uri,
        memory_tiers=tiers,
        timeout_s=args.timeout,
        expire_days=args.expire_days,
        log_retention_days=args.log_retention_days,
        ephemeral_mb=args.ephemeral_mb,
        read_locations=tuple(args.read),
        dynamodb_tables=tuple(args.dynamodb_table),
        sqs_queues=tuple(args.sqs_queue),
        environment=env,
    )


def run_deploy(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    clients = _clients(args)
    result = deploy(clients, settings)
    for change in result.changes:
        print(change.line())
    print(f"deploy {settings.name}: {summary(result.changes)}")
    if not result.function_names:
        print(
            f"next: push the worker image ({result.image_uri}) with "
            f"worker_image/build_and_push.sh {settings.repository_name}, then run "
            "`lambdaflow deploy` again"
        )
        return 0
    print("\nto use it, export:")
    for key, value in (
        ("LAMBDAFLOW_BACKEND", "lambda"),
        ("LAMBDAFLOW_FUNCTION_NAME", settings.default_function_name),
        ("LAMBDAFLOW_BUCKET", settings.bucket),
        ("LAMBDAFLOW_PREFIX", settings.prefix),
        ("LAMBDAFLOW_REGION", clients.region),
    ):
        print(f"  export {key}={value}")
    return 0


def run_destroy(args: argparse.Namespace) -> int:
    if not args.yes:
        answer = input(
            f"delete every AWS resource of deployment {args.name!r}"
            f"{'' if args.keep_bucket else ', including its bucket and all objects in it'}"
            "? [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            print("destroy: nothing deleted")
            return 1
    changes = destroy(
        _clients(args), args.name, bucket=args.bucket, keep_bucket=args.keep_bucket
    )
    for change in changes:
        print(change.line())
    print(f"destroy {args.name}: {summary(changes)}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    report = status(_clients(args), args.name, ping=not args.no_ping)
    if not report.functions:
        print(
            f"status {args.name}: no functions deployed; run `lambdaflow deploy --bucket B"
            f"{'' if args.name == defaults.DEFAULT_NAME else ' --name ' + args.name}`"
        )
        return 1
    print(
        f"{'function':<32} {'memory':>7} {'timeout':>7}  {'state':<8} {'worker':<26} image"
    )
    for entry in report.functions:
        config = entry.config
        if entry.worker:
            worker = (
                f"lambdaflow {entry.worker.lambdaflow_version} / py "
                f"{entry.worker.python_version}"
            )
        else:
            worker = "not pinged" if entry.ok else "ERROR"
        image = entry.image_uri or config.get("PackageType", "")
        print(
            f"{config['FunctionName']:<32} {config['MemorySize']:>5}MB "
            f"{config['Timeout']:>6}s  {config.get('State', '?'):<8} {worker:<26} {image}"
        )
    for entry in report.functions:
        if entry.error:
            print(f"error: {entry.error}")
    return 0 if report.ok else 1
