"""deploy / destroy / status: the order in which the resources are visited.

``deploy`` (create-or-update; each step returns a Change)::

    identity (sts) -> bucket -> role (+ inline policy) -> ECR repository
        -> image digest (if the image is in this account's ECR)
        -> per tier: log group -> function          (or 'skipped' without an image)
        -> functions of tiers no longer requested: deleted
        -> the record for the settings file (deploy_settings.py) that init() reads

``destroy`` deletes only resources tagged ``lambdaflow:deployment=<name>``, in an order
where each step leaves what a rerun needs to find the rest::

    find: the functions, the role's bucket tag, everything the tagging API lists
    functions -> their log groups -> other tagged resources (an app's buckets, tables,
    queues; log groups of functions already gone) -> repository -> job bucket -> role

The role goes last because its ``lambdaflow:bucket`` tag names the job bucket: when the
bucket cannot be deleted, the role is kept and the rerun finds the bucket again. A step
that fails is reported (``failed`` with the error) and the independent steps still run;
``destroy`` is idempotent (a rerun reports ``absent`` for what is gone).

``status`` lists the deployment's functions, pings each (see ``version.py``) and compares
what is live with the settings file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from lambdaflow.deploy import functions, iam, storage, tagged
from lambdaflow.deploy.changes import DELETED, FAILED, KEPT, Change
from lambdaflow.deploy.clients import AwsClients
from lambdaflow.deploy.settings import (
    BUCKET_TAG_KEY,
    DeploySettings,
    log_group_name,
    split_function_name,
)
from lambdaflow.deploy.version import WorkerVersion, check_worker_version
from lambdaflow.errors import ConfigError, LambdaflowError

log = logging.getLogger(__name__)


@dataclass
class DeployResult:
    changes: list[Change]
    image_uri: str
    role_arn: str
    function_names: list[str]  # the functions that exist after the run
    record: dict[str, Any] = field(default_factory=dict)  # for deploy_settings.write


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
    image_uri = settings.image_uri or functions.default_image_uri(repo_uri, settings)
    try:
        digest = functions.image_digest(clients.ecr, image_uri, account)
    except LookupError:
        if settings.image_uri:
            raise ConfigError(
                f"--image-uri {image_uri}: no such image in ECR; push it first "
                f"(worker_image/build_and_push.sh {settings.image_variant})"
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
    record = deployment_record(settings, clients.region, image_uri, role_arn)
    return DeployResult(changes, image_uri, role_arn, settings.function_names, record)


def deployment_record(
    settings: DeploySettings, region: str, image_uri: str, role_arn: str
) -> dict[str, Any]:
    """What ``lambdaflow.deploy_settings`` writes and ``init()`` reads."""
    return {
        "deployment": settings.name,
        "function_name": settings.default_function_name,
        "memory_tiers": settings.tiers_text,
        "bucket": settings.bucket,
        "prefix": settings.prefix,
        "region": region,
        "image_variant": settings.image_variant,
        "image_uri": image_uri,
        "functions": settings.function_names,
        "role_arn": role_arn,
        "timeout_s": settings.timeout_s,
        "grants": settings.grants,
        "deployed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# -- destroy -------------------------------------------------------------------------------


def destroy(
    clients: AwsClients,
    name: str,
    *,
    bucket: str | None = None,
    keep_bucket: bool = False,
) -> list[Change]:
    changes: list[Change] = []

    def step(kind: str, what: str, fn: Callable[[], Change]) -> Change:
        try:
            change = fn()
        except LambdaflowError as exc:
            change = Change(kind, what, FAILED, [str(exc).splitlines()[0][:300]])
        changes.append(change)
        return change

    role_name = f"{name}-worker"
    role_tags = iam.role_tags(clients.iam, role_name) or {}
    bucket = bucket or role_tags.get(BUCKET_TAG_KEY)
    try:
        found = tagged.find(clients.tagging, name)
    except LambdaflowError as exc:  # e.g. no tag:GetResources: the core steps still run
        found = []
        changes.append(Change("tagged", f"resources of {name}", FAILED,
                              [str(exc).splitlines()[0][:300]]))  # fmt: skip
    if bucket is None:  # the role is gone: the bucket still carries the tag
        bucket = next((t.name for t in found if t.kind == "bucket"), None)
    function_names = [
        c["FunctionName"] for c in functions.deployment_functions(clients.lambda_, name)
    ]
    for fn in function_names:
        step("function", fn, partial(functions.delete_function, clients.lambda_, fn))
    done_groups = {log_group_name(fn) for fn in function_names}
    for group in sorted(done_groups):
        step("log group", group,
             partial(storage.delete_log_group, clients.logs, group, name))  # fmt: skip
    for item in found:
        if item.name == bucket and item.kind == "bucket":
            continue  # the job bucket goes after the repository, with --keep-bucket
        if item.kind == "log group" and item.name in done_groups:
            continue
        if item.kind == "function" and item.name in function_names:
            continue
        if item.kind == "repository" and item.name == name:
            continue
        step(item.kind, item.name, partial(tagged.delete, clients, item, name))
    step("repository", name,
         lambda: functions.delete_repository(clients.ecr, name, name))  # fmt: skip
    bucket_change = None
    if bucket:
        bucket_change = step("bucket", bucket, lambda: storage.delete_bucket(
            clients.s3, bucket, name, keep=keep_bucket))  # fmt: skip
    if bucket_change is not None and bucket_change.action == FAILED:
        changes.append(Change("role", role_name, KEPT,
                              [f"its tag names bucket {bucket}, which is still there: "
                               "fix the bucket error and rerun destroy"]))  # fmt: skip
    else:
        step("role", role_name, lambda: iam.delete_role(clients.iam, role_name, name))
    if not any(c.action in (DELETED, FAILED) for c in changes):
        log.info("deployment %s: nothing found", name)
    return changes


def left_behind(changes: list[Change]) -> list[Change]:
    """What destroy could not delete (failed, or kept for a reason other than 'absent')."""
    return [c for c in changes if c.action == FAILED or (
        c.action == KEPT and c.details != ["--keep-bucket"])]  # fmt: skip


# -- status --------------------------------------------------------------------------------


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
    #: differences between the settings file and what is live ("" = none / no file)
    drift: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.functions) and all(f.ok for f in self.functions) and not self.drift


def status(
    clients: AwsClients,
    name: str,
    *,
    ping: bool = True,
    record: dict[str, Any] | None = None,
) -> StatusReport:
    report = StatusReport()
    for config in functions.deployment_functions(clients.lambda_, name):
        fn = config["FunctionName"]
        live = functions.get_function(clients.lambda_, fn)
        code = (live or {}).get("Code", {})
        entry = FunctionStatus(config, image_uri=code.get("ImageUri", ""))
        if ping:
            try:
                entry.worker = check_worker_version(clients.lambda_, fn)
            except ConfigError as exc:
                entry.error = str(exc)
        report.functions.append(entry)
    if record is not None:
        report.drift = drift(record, report, clients.region)
    return report


def drift(record: dict[str, Any], report: StatusReport, region: str) -> list[str]:
    """How the live deployment differs from the settings file ``record``."""
    out = []
    live = {f.config["FunctionName"]: f for f in report.functions}
    if record.get("region") != region:
        out.append(f"region: file {record.get('region')}, asked {region}")
    for fn in record["functions"]:
        entry = live.get(fn)
        if entry is None:
            out.append(f"function {fn}: in the file, not deployed")
            continue
        env = (entry.config.get("Environment") or {}).get("Variables", {})
        for key, field_name in (("LAMBDAFLOW_BUCKET", "bucket"),
                                ("LAMBDAFLOW_PREFIX", "prefix")):  # fmt: skip
            if env.get(key) != record[field_name]:
                out.append(f"function {fn}: {field_name} {env.get(key)!r}, "
                           f"file {record[field_name]!r}")  # fmt: skip
        if record.get("image_uri") and entry.image_uri != record["image_uri"]:
            out.append(f"function {fn}: image {entry.image_uri}, file {record['image_uri']}")
        if entry.worker and entry.worker.image_variant not in ("", record["image_variant"]):
            out.append(f"function {fn}: runs image variant {entry.worker.image_variant}, "
                       f"file {record['image_variant']}")  # fmt: skip
    for fn in sorted(set(live) - set(record["functions"])):
        out.append(f"function {fn}: deployed, not in the file")
    return out

