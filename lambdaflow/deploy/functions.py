"""The ECR repository and the Lambda functions: create-or-update and delete.

One function per memory tier, ``<name>-<MB>``, all from the same container image, with the
role, timeout, ephemeral storage and ``LAMBDAFLOW_*`` environment of the settings. An
update compares the live configuration field by field and calls
``UpdateFunctionConfiguration`` / ``UpdateFunctionCode`` only for what differs, waiting for
each update to finish before the next (Lambda refuses overlapping updates).

Environment: deploy owns the ``LAMBDAFLOW_*`` variables it sets and the ``--env`` keys
(recorded in the function tag ``lambdaflow:env``, so a key dropped from ``--env`` is
removed next time). Every other variable on the live function, such as the ``CLASSROOM_*``
and ``LAMBDAFLOW_EVENT_MODULES`` that an app's setup adds, is kept as it is.

The image: ``--image-uri`` as given, else ``<repository URI>:<version>-<variant>`` (the
tag ``worker_image/build_and_push.sh VARIANT`` pushes; variants in lambdaflow/variants.py). When that image is in this account's ECR, its
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
from functools import partial
from typing import Any

from botocore.exceptions import ClientError

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
from lambdaflow.deploy.errors import call, code, lookup, translate
from lambdaflow.deploy.settings import (
    ENV_TAG_KEY,
    TAG_KEY,
    DeploySettings,
    split_function_name,
)
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
    repo = _repository(ecr, name)
    if repo is None:
        repo = call(
            lambda: ecr.create_repository(
                repositoryName=name,
                imageTagMutability="MUTABLE",
                imageScanningConfiguration={"scanOnPush": True},
                tags=[{"Key": k, "Value": v} for k, v in settings.tags.items()],
            ),
            "ECR repository",
            name,
        )["repository"]
        return Change("repository", name, CREATED), repo["repositoryUri"]
    tags = _ecr_tags(ecr, repo["repositoryArn"])
    details = (
        []
        if tags.get(TAG_KEY) == settings.name
        else ["existing repository not created by lambdaflow: destroy keeps it"]
    )
    return Change("repository", name, UNCHANGED, details), repo["repositoryUri"]


def _repository(ecr: Any, name: str) -> dict[str, Any] | None:
    found = lookup(
        lambda: ecr.describe_repositories(repositoryNames=[name]), "ECR repository", name
    )
    return None if found is None else found["repositories"][0]


def _ecr_tags(ecr: Any, arn: str) -> dict[str, str]:
    tags = call(lambda: ecr.list_tags_for_resource(resourceArn=arn), "ECR repository", arn)
    return {t["Key"]: t["Value"] for t in tags.get("tags", [])}


def delete_repository(ecr: Any, name: str, deployment: str) -> Change:
    repo = _repository(ecr, name)
    if repo is None:
        return Change("repository", name, ABSENT)
    if _ecr_tags(ecr, repo["repositoryArn"]).get(TAG_KEY) != deployment:
        return Change("repository", name, KEPT, [f"no tag {TAG_KEY}={deployment}"])
    deleted = lookup(  # with its images
        lambda: ecr.delete_repository(repositoryName=name, force=True),
        "ECR repository",
        name,
    )
    return Change("repository", name, DELETED if deleted is not None else ABSENT)


def default_image_uri(repository_uri: str, settings: DeploySettings) -> str:
    return f"{repository_uri}:{settings.variant.image_tag(__version__)}"


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
    details = lookup(
        lambda: ecr.describe_images(repositoryName=match["repo"], imageIds=[image_id]),
        "ECR image",
        image_uri,
    )
    if details is None:
        raise LookupError(image_uri)
    return details["imageDetails"][0]["imageDigest"]


# -- Lambda --------------------------------------------------------------------------------


def _wanted_config(
    settings: DeploySettings,
    memory_mb: int,
    role: str,
    live_env: dict[str, str] | None = None,
    live_tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "Role": role,
        "MemorySize": memory_mb,
        "Timeout": settings.timeout_s,
        "Description": f"lambdaflow worker, deployment {settings.name}, {memory_mb} MB",
        "Environment": {
            "Variables": wanted_environment(settings, memory_mb, live_env, live_tags)
        },
        "EphemeralStorage": {"Size": settings.ephemeral_mb},
    }


def wanted_environment(
    settings: DeploySettings,
    memory_mb: int,
    live_env: dict[str, str] | None = None,
    live_tags: dict[str, str] | None = None,
) -> dict[str, str]:
    """Deploy's variables over the live ones it does not own (see the module doc)."""
    own = settings.function_environment(memory_mb)
    owned_before = set((live_tags or {}).get(ENV_TAG_KEY, "").split())
    owned_before |= set(settings.function_environment(memory_mb)) - set(
        settings.environment
    )
    kept = {
        k: v for k, v in (live_env or {}).items() if k not in owned_before | set(own)
    }
    return {**kept, **own}


def env_tag(settings: DeploySettings) -> str:
    value = " ".join(sorted(settings.environment))
    if len(value) > 256:
        raise ConfigError(
            f"--env: {len(settings.environment)} keys do not fit in a Lambda tag (256 "
            "characters of names); pass fewer --env variables"
        )
    return value


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
    tags = {**settings.tags, ENV_TAG_KEY: env_tag(settings)}
    if digest:
        tags[DIGEST_TAG] = digest
    live = lookup(lambda: lam.get_function(FunctionName=name), "Lambda function", name)
    if live is None:
        wanted = _wanted_config(settings, memory_mb, role)
        _create_function(lam, name, wanted, image_uri, tags, sleep)
        return Change("function", name, CREATED, [f"{memory_mb} MB"])
    live_tags = live.get("Tags") or {}
    if live_tags.get(TAG_KEY) != settings.name:
        raise ConfigError(
            f"Lambda function {name} exists but was not created by `lambdaflow deploy --name "
            f"{settings.name}` (no tag {TAG_KEY}={settings.name}); choose another --name or "
            "delete that function"
        )
    config = live["Configuration"]
    live_env = (config.get("Environment") or {}).get("Variables", {})
    wanted = _wanted_config(settings, memory_mb, role, live_env, live_tags)
    details = _config_diff(config, wanted)
    code_info = live.get("Code", {})
    new_code = code_info.get("ImageUri") != image_uri or bool(
        digest and live_tags.get(DIGEST_TAG) != digest
    )
    what = "Lambda function"
    if details or new_code:
        # A function still being created or updated refuses another update.
        _wait(lam, "function_updated_v2", name)
    if details:
        call(lambda: lam.update_function_configuration(FunctionName=name, **wanted),
             what, name)  # fmt: skip
        _wait(lam, "function_updated_v2", name)
    if new_code:
        call(lambda: lam.update_function_code(FunctionName=name, ImageUri=image_uri),
             what, name)  # fmt: skip
        _wait(lam, "function_updated_v2", name)
        details.append(f"image {image_uri}")
    if any(live_tags.get(k) != v for k, v in tags.items()):
        arn = config["FunctionArn"]
        call(lambda: lam.tag_resource(Resource=arn, Tags=tags), what, name)
    return Change("function", name, UPDATED if details else UNCHANGED, details)


def _wait(lam: Any, waiter: str, name: str) -> None:
    from botocore.exceptions import WaiterError

    try:
        lam.get_waiter(waiter).wait(FunctionName=name)
    except WaiterError as exc:
        raise ConfigError(
            f"Lambda function {name} did not become ready ({exc}); see its state with "
            f"`aws lambda get-function --function-name {name}` and rerun deploy"
        ) from exc


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
        except ClientError as exc:
            # A new role takes seconds to reach Lambda: "The role defined for the
            # function cannot be assumed by Lambda."
            role_not_ready = (
                code(exc) == "InvalidParameterValueException"
                and "role" in str(exc).lower()
            )
            if not role_not_ready or time.monotonic() > deadline:
                raise translate(exc, "Lambda function", name) from exc
            log.info(
                "role not yet assumable by Lambda; retrying %s in %.0fs", name, delay
            )
            sleep(delay)
            delay = min(delay * 1.5, 10.0)
    _wait(lam, "function_active_v2", name)


def skipped_functions(settings: DeploySettings) -> list[Change]:
    """Functions that wait for the image; the command prints how to push it."""
    return [
        Change("function", fn, SKIPPED, ["image not pushed yet"])
        for fn in settings.function_names
    ]


def deployment_functions(lam: Any, deployment: str) -> list[dict[str, Any]]:
    """Configurations of every function named ``<deployment>-<MB>`` tagged as its own."""
    found = []
    pages = call(lambda: list(lam.get_paginator("list_functions").paginate()),
                 "Lambda functions", "(list)")  # fmt: skip
    for page in pages:
        for config in page.get("Functions", []):
            name = config["FunctionName"]
            if split_function_name(deployment, name) is None:
                continue
            tags = lookup(partial(lam.list_tags, Resource=config["FunctionArn"]),
                          "Lambda function", name)  # fmt: skip
            if tags is not None and tags.get("Tags", {}).get(TAG_KEY) == deployment:
                found.append(config)
    return sorted(found, key=lambda c: c["MemorySize"])


def get_function(lam: Any, name: str) -> dict[str, Any] | None:
    return lookup(partial(lam.get_function, FunctionName=name), "Lambda function", name)


def delete_function(lam: Any, name: str) -> Change:
    gone = lookup(lambda: lam.delete_function(FunctionName=name), "Lambda function", name)
    return Change("function", name, ABSENT if gone is None else DELETED)
