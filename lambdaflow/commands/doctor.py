"""``lambdaflow doctor``: check credentials, region, quotas, the deployment, the image
variant, the role, a test invoke and keep-alive (see :mod:`lambdaflow.deploy.doctor`).

    lambdaflow doctor [--settings-file F] [--no-invoke] [--region R] [--endpoint-url URL]

Exit code 0 when nothing failed (warnings allowed), else 1.
"""

from __future__ import annotations

import argparse
import os

from lambdaflow import deploy_settings
from lambdaflow.deploy.clients import AwsClients
from lambdaflow.deploy.doctor import FAIL, run_checks


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "doctor", help="check that this machine can run jobs on the deployment",
        description="Check credentials, region, Lambda quotas, the deployed functions "
        "and their image variant, the worker role, a test invoke and keep-alive.")  # fmt: skip
    p.add_argument("--settings-file",
                   default=os.environ.get("LAMBDAFLOW_DEPLOY_FILE") or deploy_settings.DEFAULT_PATH,
                   help="the settings `lambdaflow deploy` wrote (default: %(default)s)")
    p.add_argument("--no-invoke", action="store_true", help="skip the test invoke")
    p.add_argument("--region", help="AWS region (default: $LAMBDAFLOW_REGION, the profile's)")
    p.add_argument("--endpoint-url", help="endpoint of every AWS service (stand-ins)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    clients = AwsClients.create(region=args.region, endpoint_url=args.endpoint_url)
    checks = run_checks(clients, args.settings_file, invoke=not args.no_invoke)
    for check in checks:
        print(check.line())
    failed = [c for c in checks if c.status == FAIL]
    print(f"doctor: {len(checks) - len(failed)} of {len(checks)} checks passed"
          + (f"; failed: {', '.join(c.name for c in failed)}" if failed else ""))
    return 1 if failed else 0
