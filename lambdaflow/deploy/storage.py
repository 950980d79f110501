"""The job bucket and the functions' log groups: create-or-update and delete.

Bucket (created by deploy, tagged ``lambdaflow:deployment=<name>``):

* all public access blocked, default encryption SSE-S3, bucket owner enforced;
* one lifecycle rule, ``lambdaflow-expire-job-objects``: objects under the job prefix
  expire after ``expire_days``, incomplete multipart uploads are aborted after one day.
  Rules of other IDs are kept as they are.

A bucket that exists without the tag (the user's own) is used as is except for that
lifecycle rule, and ``destroy`` keeps it. Destroying an owned bucket deletes every object
and version in it first (``--keep-bucket`` keeps bucket and objects).

Log groups ``/aws/lambda/<function>`` are created ahead of the functions with a retention
(``--log-retention-days``) and the deployment tag, so ``destroy`` can remove them.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from botocore.exceptions import ClientError

from lambdaflow.deploy.changes import (
    ABSENT,
    CREATED,
    DELETED,
    KEPT,
    UNCHANGED,
    UPDATED,
    Change,
)
from lambdaflow.deploy.errors import DENIED, NOT_FOUND, call, code, lookup, translate
from lambdaflow.deploy.settings import LIFECYCLE_RULE_ID, TAG_KEY, DeploySettings
from lambdaflow.errors import ConfigError

log = logging.getLogger(__name__)

PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
ENCRYPTION = {
    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
}


def lifecycle_rule(settings: DeploySettings) -> dict[str, Any]:
    return {
        "ID": LIFECYCLE_RULE_ID,
        "Filter": {"Prefix": settings.prefix},
        "Status": "Enabled",
        "Expiration": {"Days": settings.expire_days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
    }


WHAT = "S3 bucket"


def bucket_tags(s3: Any, bucket: str) -> dict[str, str]:
    found = lookup(partial(s3.get_bucket_tagging, Bucket=bucket), WHAT, bucket)
    return {t["Key"]: t["Value"] for t in (found or {}).get("TagSet", [])}


def _bucket_exists(s3: Any, bucket: str) -> bool:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if code(exc) in NOT_FOUND:
            return False
        if code(exc) in DENIED:
            raise ConfigError(
                f"bucket {bucket} exists but belongs to another account (or you may not "
                "read it); bucket names are global: choose another --bucket"
            ) from exc
        raise translate(exc, WHAT, bucket) from exc
    return True


def ensure_bucket(s3: Any, settings: DeploySettings, region: str) -> Change:
    """Create the bucket, or bring an existing one to the settings."""
    return call(partial(_ensure_bucket, s3, settings, region), WHAT, settings.bucket)


def _ensure_bucket(s3: Any, settings: DeploySettings, region: str) -> Change:
    bucket = settings.bucket
    if not _bucket_exists(s3, bucket):
        kwargs: dict[str, Any] = {
            "Bucket": bucket,
            "ObjectOwnership": "BucketOwnerEnforced",
        }
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**kwargs)
        s3.put_public_access_block(
            Bucket=bucket, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK
        )
        s3.put_bucket_encryption(
            Bucket=bucket, ServerSideEncryptionConfiguration=ENCRYPTION
        )
        s3.put_bucket_tagging(
            Bucket=bucket, Tagging={"TagSet": _tag_set(settings.tags)}
        )
        _put_rule(s3, bucket, lifecycle_rule(settings), [])
        log.info("created bucket %s", bucket)
        return Change("bucket", bucket, CREATED)

    owned = bucket_tags(s3, bucket).get(TAG_KEY) == settings.name
    details: list[str] = []
    if owned:
        if _public_access_block(s3, bucket) != PUBLIC_ACCESS_BLOCK:
            s3.put_public_access_block(
                Bucket=bucket, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK
            )
            details.append("public access block")
        if not _encrypted(s3, bucket):
            s3.put_bucket_encryption(
                Bucket=bucket, ServerSideEncryptionConfiguration=ENCRYPTION
            )
            details.append("default encryption")
    rules = _lifecycle_rules(s3, bucket)
    wanted = lifecycle_rule(settings)
    ours = [r for r in rules if r.get("ID") == LIFECYCLE_RULE_ID]
    if len(ours) != 1 or _normal_rule(ours[0]) != _normal_rule(wanted):
        others = [r for r in rules if r.get("ID") != LIFECYCLE_RULE_ID]
        _put_rule(s3, bucket, wanted, others)
        details.append(
            f"lifecycle: expire {settings.prefix}* after {settings.expire_days} d"
        )
    action = UPDATED if details else UNCHANGED
    if not owned:
        details.append("existing bucket not created by lambdaflow: destroy keeps it")
    return Change("bucket", bucket, action, details)


def _tag_set(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _public_access_block(s3: Any, bucket: str) -> dict[str, bool]:
    config = lookup(partial(s3.get_public_access_block, Bucket=bucket), WHAT, bucket)
    return dict((config or {}).get("PublicAccessBlockConfiguration", {}))


def _encrypted(s3: Any, bucket: str) -> bool:
    found = lookup(partial(s3.get_bucket_encryption, Bucket=bucket), WHAT, bucket)
    rules = (found or {}).get("ServerSideEncryptionConfiguration", {})
    return bool(rules.get("Rules"))


def _lifecycle_rules(s3: Any, bucket: str) -> list[dict[str, Any]]:
    found = lookup(
        partial(s3.get_bucket_lifecycle_configuration, Bucket=bucket), WHAT, bucket
    )
    return list((found or {}).get("Rules", []))


def _normal_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """The fields deploy sets, as S3 returns them (it may add defaults or reorder)."""
    prefix = rule.get("Filter", {}).get("Prefix", rule.get("Prefix"))
    return {
        "prefix": prefix,
        "status": rule.get("Status"),
        "days": rule.get("Expiration", {}).get("Days"),
        "abort": rule.get("AbortIncompleteMultipartUpload", {}).get(
            "DaysAfterInitiation"
        ),
    }


def _put_rule(s3: Any, bucket: str, rule: dict[str, Any], others: list[dict]) -> None:
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [*others, rule]}
    )


def delete_bucket(
    s3: Any, bucket: str, deployment: str, *, keep: bool = False
) -> Change:
    """Empty and delete the bucket if it is the deployment's (and not ``keep``)."""
    try:
        if not _bucket_exists(s3, bucket):
            return Change("bucket", bucket, ABSENT)
    except ConfigError:
        return Change("bucket", bucket, KEPT, ["not readable with these credentials"])
    if bucket_tags(s3, bucket).get(TAG_KEY) != deployment:
        return Change("bucket", bucket, KEPT, [f"no tag {TAG_KEY}={deployment}"])
    if keep:
        return Change("bucket", bucket, KEPT, ["--keep-bucket"])
    deleted = empty_bucket(s3, bucket)
    if lookup(partial(s3.delete_bucket, Bucket=bucket), WHAT, bucket) is None:
        return Change("bucket", bucket, ABSENT)
    return Change("bucket", bucket, DELETED, [f"{deleted} objects"] if deleted else [])


def empty_bucket(s3: Any, bucket: str) -> int:
    """Delete every object version and delete marker; returns how many."""
    deleted = 0

    def pages() -> list[dict[str, Any]]:
        return list(s3.get_paginator("list_object_versions").paginate(Bucket=bucket))

    for page in call(pages, WHAT, bucket):
        keys = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            reply = call(
                partial(
                    s3.delete_objects,
                    Bucket=bucket,
                    Delete={"Objects": batch, "Quiet": True},
                ),
                WHAT,
                bucket,
            )
            if reply.get("Errors"):
                first = reply["Errors"][0]
                raise ConfigError(
                    f"S3 bucket {bucket}: {len(reply['Errors'])} objects could not be "
                    f"deleted (first: {first.get('Key')}: {first.get('Code')} "
                    f"{first.get('Message')}); fix that and rerun destroy"
                )
            deleted += len(batch)
    return deleted


# -- log groups ----------------------------------------------------------------------------


def _log_group(logs: Any, name: str) -> dict[str, Any] | None:
    found = call(
        partial(logs.describe_log_groups, logGroupNamePrefix=name), "log group", name
    )
    return next((g for g in found.get("logGroups", []) if g["logGroupName"] == name), None)


def ensure_log_group(logs: Any, name: str, settings: DeploySettings) -> Change:
    group = _log_group(logs, name)
    retention = partial(
        logs.put_retention_policy,
        logGroupName=name,
        retentionInDays=settings.log_retention_days,
    )
    if group is None:
        call(partial(logs.create_log_group, logGroupName=name, tags=settings.tags),
             "log group", name)  # fmt: skip
        call(retention, "log group", name)
        return Change("log group", name, CREATED)
    details = []
    if group.get("retentionInDays") != settings.log_retention_days:
        call(retention, "log group", name)
        details.append(f"retention {settings.log_retention_days} d")
    return Change("log group", name, UPDATED if details else UNCHANGED, details)


def delete_log_group(logs: Any, name: str, deployment: str) -> Change:
    if _log_group(logs, name) is None:
        return Change("log group", name, ABSENT)
    tags = lookup(partial(logs.list_tags_log_group, logGroupName=name), "log group", name)
    if (tags or {}).get("tags", {}).get(TAG_KEY) != deployment:
        return Change("log group", name, KEPT, [f"no tag {TAG_KEY}={deployment}"])
    gone = lookup(partial(logs.delete_log_group, logGroupName=name), "log group", name)
    return Change("log group", name, ABSENT if gone is None else DELETED)
