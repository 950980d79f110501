"""The ECR repository and the Lambda functions: create-or-update and delete.

One function per memory tier, ``<name>-<MB>``, all from the same container image, with the
role, timeout, ephemeral storage and ``LAMBDAFLOW_*`` environment of the settings. An
update compares the live configuration field by field and calls
``UpdateFunctionConfiguration`` / ``UpdateFunctionCode`` only for what differs, waiting for
each update to finish before the next (Lambda refuses overlapping updates).

The image: ``--image-uri`` as given, else ``<repository URI>:<lambdaflow version>`` (the tag
``worker_image/build_and_push.sh`` pushes). When that image is in this account's ECR, its
digest is recorded in the function tag ``lambdaflow:image-digest``; a re-push under the
same tag changes the digest, and the next deploy updates the code (Lambda pins the digest
it resolved at deploy time). When the default image has not been pushed yet, the
functions are ``skipped`` with the command that pushes it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from lambdaflow._version import __version__
from lambdaflow.deploy.changes import (
    ABSENT,
    CREATED,
    DELETED,
    KEPT,
    SKIPPED,
    UNCHANGED,
    UPDATED,
    Change,
)
from lambdaflow.deploy.clients import error_code
from lambdaflow.deploy.settings import TAG_KEY, DeploySettings, split_function_name
from lambdaflow.errors import ConfigError

log = logging.getLogger(__name__)

DIGEST_TAG = "lambdaflow:image-digest"
_ECR_URI = re.compile(
    r"(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
    r"/(?P<repo>[^:@]+)(?::(?P<tag>[^@]+))?(?:@(?P<digest>sha256:[0-9a-f]+))?"
)
#: How long to retry CreateFunction while a new role propagates through IAM.
ROLE_PROPAGATION_S = 90.0


# -- ECR -----------------------------------------------------------------------------------


def ensure_repository(ecr: Any, settings: DeploySettings) -> tuple[Change, str]:
    """Create the repository if missing; returns the change and the repository URI."""
    name = settings.repository_name
    try:
        repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except Exception as exc:
        if error_code(exc) != "RepositoryNotFoundException":
            raise
        repo = ecr.create_repository(
            repositoryName=name,
            imageTagMutability="MUTABLE",
            imageScanningConfiguration={"scanOnPush": True},
            tags=[{"Key": k, "Value": v} for k, v in settings.tags.items()],
        )["repository"]
        return Change("repository", name, CREATED), repo["repositoryUri"]
    tags = _ecr_tags(ecr, repo["repositoryArn"])
    details = (
        []
        if tags.get(TAG_KEY) == settings.name
        else ["existing repository not created by lambdaflow: destroy keeps it"]
    )
    return Change("repository", name, UNCHANGED, details), repo["repositoryUri"]


def _ecr_tags(ecr: Any, arn: str) -> dict[str, str]:
    return {
        t["Key"]: t["Value"]
        for t in ecr.list_tags_for_resource(resourceArn=arn).get("tags", [])
    }


def delete_repository(ecr: Any, name: str, deployment: str) -> Change:
    try:
        repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except Exception as exc:
        if error_code(exc) == "RepositoryNotFoundException":
            return Change("repository", name, ABSENT)
        raise
    if _ecr_tags(ecr, repo["repositoryArn"]).get(TAG_KEY) != deployment:
        return Change("repository", name, KEPT, [f"no tag {TAG_KEY}={deployment}"])
    ecr.delete_repository(repositoryName=name, force=True)  # with its images
    return Change("repository", name, DELETED)


def default_image_uri(repository_uri: str) -> str:
    return f"{repository_uri}:{__version__}"


def image_digest(ecr: Any, image_uri: str, account: str) -> str | None:
    """The ECR digest behind ``image_uri`` if it is in this account's ECR, else None.

    Raises LookupError when the URI is in this account's ECR but no such image exists.
    """
    match = _ECR_URI.fullmatch(image_uri)
    if not match or match["account"] != account:
        return None
    if match["digest"]:
        return match["digest"]
    image_id = {"imageTag": match["tag"] or "latest"}
    try:
        details = ecr.describe_images(repositoryName=match["repo"], imageIds=[image_id])
    except Exception as exc:
        if error_code(exc) in ("ImageNotFoundException", "RepositoryNotFoundException"):
            raise LookupError(image_uri) from exc
        raise
    return details["imageDetails"][0]["imageDigest"]


# -- Lambda --------------------------------------------------------------------------------


def _wanted_config(
    settings: DeploySettings, memory_mb: int, role: str
) -> dict[str, Any]:
    return {
        "Role": role,
        "MemorySize": memory_mb,
        "Timeout": settings.timeout_s,
        "Description": f"lambdaflow worker, deployment {settings.name}, {memory_mb} MB",
        "Environment": {"Variables": settings.function_environment(memory_mb)},
        "EphemeralStorage": {"Size": settings.ephemeral_mb},
    }


def _config_diff(live: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    diff = []
    for key, value in wanted.items():
        current = live.get(key)
        if key == "Environment":
            current = {"Variables": (current or {}).get("Variables", {})}
        if current != value:
            shown = {
                "MemorySize": "memory",
                "Timeout": "timeout",
                "Role": "role",
                "Environment": "environment",
                "EphemeralStorage": "ephemeral storage",
                "Description": "description",
            }[key]
            if isinstance(value, int):
                diff.append(f"{shown} {current} -> {value}")
            else:
                diff.append(shown)
    return diff


def ensure_function(
    lam: Any,
    settings: DeploySettings,
    memory_mb: int,
    role: str,
    image_uri: str,
    digest: str | None,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Change:
    name = settings.function_name(memory_mb)
    wanted = _wanted_config(settings, memory_mb, role)
    tags = dict(settings.tags)
    if digest:
        tags[DIGEST_TAG] = digest
    try:
        live = lam.get_function(FunctionName=name)
    except Exception as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        _create_function(lam, name, wanted, image_uri, tags, sleep)
        return Change("function", name, CREATED, [f"{memory_mb} MB"])
    live_tags = live.get("Tags") or {}
    if live_tags.get(TAG_KEY) != settings.name:
        raise ConfigError(
            f"Lambda function {name} exists but was not created by `lambdaflow deploy --name "
            f"{settings.name}` (no tag {TAG_KEY}={settings.name}); choose another --name or "
            "delete that function"
        )
    details = _config_diff(live["Configuration"], wanted)
    code = live.get("Code", {})
    new_code = code.get("ImageUri") != image_uri or (
        digest and live_tags.get(DIGEST_TAG) != digest
    )
    if details or new_code:
        # A function still being created or updated refuses another update.
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    if details:
        lam.update_function_configuration(FunctionName=name, **wanted)
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    if new_code:
        lam.update_function_code(FunctionName=name, ImageUri=image_uri)
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
        details.append(f"image {image_uri}")
        if digest:
            arn = live["Configuration"]["FunctionArn"]
            lam.tag_resource(Resource=arn, Tags={DIGEST_TAG: digest})
    return Change("function", name, UPDATED if details else UNCHANGED, details)


def _create_function(
    lam: Any,
    name: str,
    wanted: dict[str, Any],
    image_uri: str,
    tags: dict[str, str],
    sleep: Callable[[float], None],
) -> None:
    """CreateFunction, retried while IAM has not yet propagated a new role to Lambda."""
    deadline = time.monotonic() + ROLE_PROPAGATION_S
    delay = 2.0
    while True:
        try:
            lam.create_function(
                FunctionName=name,
                PackageType="Image",
                Code={"ImageUri": image_uri},
                Architectures=["x86_64"],
                Tags=tags,
                Publish=False,
                **wanted,
            )
            break
        except Exception as exc:
            role_not_ready = (
                error_code(exc) == "InvalidParameterValueException"
                and "role" in str(exc).lower()
            )
            if not role_not_ready or time.monotonic() > deadline:
                raise
            log.info(
                "role not yet assumable by Lambda; retrying %s in %.0fs", name, delay
            )
            sleep(delay)
            delay = min(delay * 1.5, 10.0)
    lam.get_waiter("function_active_v2").wait(FunctionName=name)


def skipped_functions(settings: DeploySettings) -> list[Change]:
    """Functions that wait for the image; the command prints how to push it."""
    return [
        Change("function", fn, SKIPPED, ["image not pushed yet"])
        for fn in settings.function_names
    ]


def deployment_functions(lam: Any, deployment: str) -> list[dict[str, Any]]:
    """Configurations of every function named ``<deployment>-<MB>`` tagged as its own."""
    found = []
    for page in lam.get_paginator("list_functions").paginate():
        for config in page.get("Functions", []):
            if split_function_name(deployment, config["FunctionName"]) is None:
                continue
            tags = lam.list_tags(Resource=config["FunctionArn"]).get("Tags", {})
            if tags.get(TAG_KEY) == deployment:
                found.append(config)
    return sorted(found, key=lambda c: c["MemorySize"])


def delete_function(lam: Any, name: str) -> Change:
    try:
        lam.delete_function(FunctionName=name)
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return Change("function", name, ABSENT)
        raise
    return Change("function", name, DELETED)
