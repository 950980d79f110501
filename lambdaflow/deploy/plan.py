"""deploy / destroy / status: the order in which the resources are visited.

``deploy`` (create-or-update; each step returns a Change)::

    identity (sts) -> bucket -> role (+ inline policy) -> ECR repository
        -> image digest (if the image is in this account's ECR)
        -> per tier: log group -> function          (or 'skipped' without an image)
        -> functions of tiers no longer requested: deleted

``destroy`` walks the other way and deletes only resources tagged
``lambdaflow:deployment=<name>``: functions (every ``<name>-<MB>``), their log groups,
the role, the repository (with its images), then the bucket with its objects, unless
``keep_bucket``. The bucket is the one given, else the one recorded on the role's
``lambdaflow:bucket`` tag.

``status`` lists the deployment's functions and pings each (see ``version.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from lambdaflow.deploy import functions, iam, storage
from lambdaflow.deploy.changes import DELETED, Change
from lambdaflow.deploy.clients import AwsClients, error_code
from lambdaflow.deploy.settings import (
    BUCKET_TAG_KEY,
    DeploySettings,
    log_group_name,
    split_function_name,
)
from lambdaflow.deploy.version import WorkerVersion, check_worker_version
from lambdaflow.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class DeployResult:
    changes: list[Change]
    image_uri: str
    role_arn: str
    function_names: list[str]  # the functions that exist after the run


def deploy(clients: AwsClients, settings: DeploySettings) -> DeployResult:
    partition, account = clients.identity()
    changes = [storage.ensure_bucket(clients.s3, settings, clients.region)]
    role_change, role_arn = iam.ensure_role(
        clients.iam,
        settings,
        partition=partition,
        account=account,
        region=clients.region,
    )
    changes.append(role_change)
    repo_change, repo_uri = functions.ensure_repository(clients.ecr, settings)
    changes.append(repo_change)
    image_uri = settings.image_uri or functions.default_image_uri(repo_uri)
    try:
        digest = functions.image_digest(clients.ecr, image_uri, account)
    except LookupError:
        if settings.image_uri:
            raise ConfigError(
                f"--image-uri {image_uri}: no such image in ECR; push it first "
                f"(worker_image/build_and_push.sh {settings.repository_name})"
            ) from None
        changes.extend(functions.skipped_functions(settings))
        return DeployResult(changes, image_uri, role_arn, [])
    for memory_mb in settings.memory_tiers:
        name = settings.function_name(memory_mb)
        changes.append(
            storage.ensure_log_group(clients.logs, log_group_name(name), settings)
        )
        changes.append(
            functions.ensure_function(
                clients.lambda_, settings, memory_mb, role_arn, image_uri, digest
            )
        )
    for config in functions.deployment_functions(clients.lambda_, settings.name):
        tier = split_function_name(settings.name, config["FunctionName"])
        if tier not in settings.memory_tiers:
            change = functions.delete_function(clients.lambda_, config["FunctionName"])
            change.details.append("tier no longer requested")
            changes.append(change)
            changes.append(
                storage.delete_log_group(
                    clients.logs, log_group_name(config["FunctionName"]), settings.name
                )
            )
    return DeployResult(changes, image_uri, role_arn, settings.function_names)


def destroy(
    clients: AwsClients,
    name: str,
    *,
    bucket: str | None = None,
    keep_bucket: bool = False,
) -> list[Change]:
    changes: list[Change] = []
    names = [
        c["FunctionName"] for c in functions.deployment_functions(clients.lambda_, name)
    ]
    for function_name in names:
        changes.append(functions.delete_function(clients.lambda_, function_name))
        changes.append(
            storage.delete_log_group(clients.logs, log_group_name(function_name), name)
        )
    role_name = f"{name}-worker"
    if bucket is None:
        bucket = _bucket_of_role(clients, role_name)
    changes.append(iam.delete_role(clients.iam, role_name, name))
    changes.append(functions.delete_repository(clients.ecr, name, name))
    if bucket:
        changes.append(
            storage.delete_bucket(clients.s3, bucket, name, keep=keep_bucket)
        )
    elif not any(c.action == DELETED for c in changes):
        log.info("deployment %s: nothing found", name)
    return changes


def _bucket_of_role(clients: AwsClients, role_name: str) -> str | None:
    try:
        return iam.role_tags(clients.iam, role_name).get(BUCKET_TAG_KEY)
    except Exception as exc:
        if error_code(exc) == "NoSuchEntity":
            return None
        raise


@dataclass
class FunctionStatus:
    config: dict[str, Any]
    image_uri: str = ""
    worker: WorkerVersion | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class StatusReport:
    functions: list[FunctionStatus] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.functions) and all(f.ok for f in self.functions)


def status(clients: AwsClients, name: str, *, ping: bool = True) -> StatusReport:
    report = StatusReport()
    for config in functions.deployment_functions(clients.lambda_, name):
        code = clients.lambda_.get_function(FunctionName=config["FunctionName"])["Code"]
        entry = FunctionStatus(config, image_uri=code.get("ImageUri", ""))
        if ping:
            try:
                entry.worker = check_worker_version(
                    clients.lambda_, config["FunctionName"]
                )
            except ConfigError as exc:
                entry.error = str(exc)
        report.functions.append(entry)
    return report
