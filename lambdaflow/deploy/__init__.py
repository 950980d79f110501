"""Deploy lambdaflow's universal worker to AWS: bucket, role, ECR repository, functions.

``lambdaflow deploy / destroy / status`` (lambdaflow/commands/deploy.py) are thin wrappers
over this package::

    settings.py   DeploySettings: names, tags, grants, image variant, validation (pure)
    clients.py    AwsClients: boto3 clients built by lambdaflow.aws (moto in tests)
    errors.py     every AWS error translated at one boundary: lookup() / call()
    changes.py    Change: created / updated / unchanged / deleted / failed per resource
    storage.py    the S3 bucket (private, lifecycle expiry) and the log groups
    iam.py        the worker role and its least-privilege policy
    functions.py  the ECR repository and one Lambda function per memory tier
    tagged.py     everything else tagged with the deployment (an app's buckets, tables,
                  queues; orphan log groups), found with the tagging API, for destroy
    version.py    check_worker_version: the deployed worker matches this client
    plan.py       deploy(), destroy(), status(): the order of the steps
    doctor.py     run_checks(): `lambdaflow doctor`

``deploy`` writes the backend's settings for ``init()`` (lambdaflow/deploy_settings.py,
outside this package: the runtime never imports it).

Every step reads the live resource, compares it with the settings and writes only what
differs, so a second ``deploy`` with the same settings changes nothing. Everything
deploy creates is tagged ``lambdaflow:deployment=<name>``; destroy deletes only that (and
everything else so tagged), the role last.
"""

from __future__ import annotations

from lambdaflow.deploy.changes import Change, summary
from lambdaflow.deploy.clients import AwsClients
from lambdaflow.deploy.plan import DeployResult, StatusReport, deploy, destroy, status
from lambdaflow.deploy.settings import DeploySettings, tier_function_name
from lambdaflow.deploy.version import WorkerVersion, check_worker_version

__all__ = [
    "AwsClients",
    "Change",
    "DeployResult",
    "DeploySettings",
    "StatusReport",
    "WorkerVersion",
    "check_worker_version",
    "deploy",
    "destroy",
    "status",
    "summary",
    "tier_function_name",
]
