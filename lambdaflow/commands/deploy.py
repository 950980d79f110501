"""``lambdaflow deploy``, ``lambdaflow destroy`` and ``lambdaflow status``.

    lambdaflow deploy  --bucket B [--name N] [--variant py3.12] [--image-uri URI]
                       [--memory 1769,3008,10240] [--timeout 900] [--expire-days 7]
                       [--read s3://inputs/ ...] [--write s3://outputs/ ...]
                       [--dynamodb-read T ...] [--dynamodb-write T ...]
                       [--sqs-send Q ...] [--sqs-consume Q ...] [--settings-file F]
    lambdaflow destroy [--name N] [--bucket B] [--keep-bucket] --yes
    lambdaflow status  [--name N] [--no-ping] [--settings-file F]

All three accept ``--region`` and ``--endpoint-url`` (or ``LAMBDAFLOW_REGION`` and
``LAMBDAFLOW_<SVC>_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL``). Each prints one line per
resource with what it did; the work is done by :mod:`lambdaflow.deploy`. ``deploy``
also writes every setting the lambda backend needs to ``--settings-file`` (default
``.lambdaflow/deployment.json``, which ``lambdaflow.init(backend="lambda")`` reads) and
prints them as ``export`` lines.
"""

from __future__ import annotations

import argparse
import os
import sys

from lambdaflow import deploy_settings, variants
from lambdaflow.deploy import (
    AwsClients,
    DeploySettings,
    deploy,
    destroy,
    status,
    summary,
)
from lambdaflow.deploy import settings as defaults
from lambdaflow.deploy.plan import left_behind
from lambdaflow.errors import ConfigError

#: The access flags: (flag, DeploySettings field, help).
GRANTS = (
    ("--read", "read_locations", "S3_LOCATION",
     "let workers read here (s3:GetObject), e.g. s3://videos/in/"),
    ("--write", "write_locations", "S3_LOCATION",
     "let workers write here (s3:PutObject), e.g. s3://results/"),
    ("--dynamodb-read", "dynamodb_read", "TABLE",
     "let workers GetItem / BatchGetItem this table (name or ARN)"),
    ("--dynamodb-write", "dynamodb_write", "TABLE",
     "let workers Put / Update / Delete / BatchWrite items of this table"),
    ("--sqs-send", "sqs_send", "QUEUE",
     "let the functions send to this queue (an on-failure destination)"),
    ("--sqs-consume", "sqs_consume", "QUEUE",
     "let the functions consume this queue (an SQS event source mapping)"),
)  # fmt: skip


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
        "--variant",
        choices=list(variants.VARIANTS),
        help="worker image variant (default: the one matching this Python, "
        f"{_driver_variant()})",
    )
    p.add_argument(
        "--image-uri",
        help="worker image (default: <ECR repository>:<version>-<variant>)",
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
    for flag, _, metavar, text in GRANTS:
        p.add_argument(flag, action="append", default=[], metavar=metavar,
                       help=f"{text} (repeatable)")  # fmt: skip
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment variable of the functions (repeatable)",
    )
    _settings_file(p)
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
    _settings_file(p)
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


def _driver_variant() -> str:
    try:
        return variants.driver_variant().name
    except ConfigError:
        return "none for this Python"


def _settings_file(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--settings-file",
        default=os.environ.get("LAMBDAFLOW_DEPLOY_FILE") or deploy_settings.DEFAULT_PATH,
        help="the settings init() reads (default: %(default)s)",
    )


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
    if args.variant:
        variants.check_variant_matches(variants.get_variant(args.variant))
    return DeploySettings(
        bucket=args.bucket,
        name=args.name,
        prefix=args.prefix,
        image_uri=args.image_uri,
        image_variant=args.variant or "",
        memory_tiers=tiers,
        timeout_s=args.timeout,
        expire_days=args.expire_days,
        log_retention_days=args.log_retention_days,
        ephemeral_mb=args.ephemeral_mb,
        environment=env,
        **{field: tuple(getattr(args, flag[2:].replace("-", "_")))
           for flag, field, _, _ in GRANTS},
    )  # fmt: skip


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
            f"worker_image/build_and_push.sh {settings.image_variant} "
            f"{settings.repository_name}, then run `lambdaflow deploy` again"
        )
        return 0
    path = deploy_settings.write(args.settings_file, result.record)
    variant = settings.variant
    print(f"\nimage variant {variant.name} (Python {variant.python}): {result.image_uri}")
    print(f"settings written to {path}; lambdaflow.init(backend=\"lambda\") reads it "
          "there (or from $LAMBDAFLOW_DEPLOY_FILE). Elsewhere, export:")  # fmt: skip
    for key, value in deploy_settings.backend_settings(result.record).items():
        print(f"  export {key}={value}")
    return 0


def run_destroy(args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError(
                f"destroy {args.name}: no terminal to ask for confirmation; pass --yes "
                "to delete without asking"
            )
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
    left = left_behind(changes)
    if left:
        print(f"left behind ({len(left)}), rerun destroy once fixed:")
        for change in left:
            print(f"  {change.line()}")
        return 1
    return 0


def run_status(args: argparse.Namespace) -> int:
    record = None
    if os.path.exists(args.settings_file):
        record = deploy_settings.read(args.settings_file)
        if record["deployment"] != args.name:
            record = None
    report = status(_clients(args), args.name, ping=not args.no_ping, record=record)
    if not report.functions:
        print(
            f"status {args.name}: no functions deployed; run `lambdaflow deploy --bucket B"
            f"{'' if args.name == defaults.DEFAULT_NAME else ' --name ' + args.name}`"
        )
        return 1
    print(
        f"{'function':<32} {'memory':>7} {'timeout':>7}  {'state':<8} {'worker':<38} image"
    )
    for entry in report.functions:
        config = entry.config
        if entry.worker:
            worker = (
                f"lambdaflow {entry.worker.lambdaflow_version} / py "
                f"{entry.worker.python_version} / {entry.worker.image_variant or '?'}"
            )
        else:
            worker = "not pinged" if entry.ok else "ERROR"
        image = entry.image_uri or config.get("PackageType", "")
        print(
            f"{config['FunctionName']:<32} {config['MemorySize']:>5}MB "
            f"{config['Timeout']:>6}s  {config.get('State', '?'):<8} {worker:<38} {image}"
        )
    for entry in report.functions:
        if entry.error:
            print(f"error: {entry.error}")
    if record is None:
        print(f"settings file {args.settings_file}: none for deployment {args.name}")
    elif report.drift:
        print(f"differs from {args.settings_file}:")
        for line in report.drift:
            print(f"  {line}")
    else:
        print(f"matches {args.settings_file}")
    return 0 if report.ok else 1
