"""The worker's IAM role: least-privilege policy documents and create-or-update.

The role ``<name>-worker`` is assumable by ``lambda.amazonaws.com`` only and has one inline
policy, ``lambdaflow-worker``, whose every statement names its resources (never ``"*"``):

* ``s3:ListBucket`` on the bucket, limited by condition to keys under the job prefix;
* ``s3:GetObject / PutObject / DeleteObject / AbortMultipartUpload`` on ``bucket/prefix*``;
* ``s3:GetObject`` on each ``--read`` location (inputs such as ``s3://videos/in/``);
* ``logs:CreateLogGroup / CreateLogStream / PutLogEvents`` on the functions' own groups;
* DynamoDB item access on ``--dynamodb-table`` tables (and their indexes), SQS message
  access on ``--sqs-queue`` queues, only when those flags are given.

:func:`worker_policy` is pure (tested without AWS); :func:`ensure_role` compares the live
documents with the wanted ones and rewrites only what differs.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from typing import Any

from lambdaflow.deploy.changes import (
    ABSENT,
    CREATED,
    DELETED,
    KEPT,
    UNCHANGED,
    UPDATED,
    Change,
)
from lambdaflow.deploy.clients import error_code
from lambdaflow.deploy.settings import (
    BUCKET_TAG_KEY,
    POLICY_NAME,
    TAG_KEY,
    DeploySettings,
    log_group_name,
)
from lambdaflow.errors import ConfigError

log = logging.getLogger(__name__)

S3_OBJECT_ACTIONS = [
    "s3:AbortMultipartUpload",
    "s3:DeleteObject",
    "s3:GetObject",
    "s3:PutObject",
]
DYNAMODB_ACTIONS = [
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:UpdateItem",
]
SQS_ACTIONS = [
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
    "sqs:SendMessage",
]


def trust_policy() -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def worker_policy(
    settings: DeploySettings, *, partition: str, account: str, region: str
) -> dict[str, Any]:
    """The inline policy of the worker role (pure; every resource is an explicit ARN)."""
    s3 = f"arn:{partition}:s3:::"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ListJobPrefix",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": f"{s3}{settings.bucket}",
            "Condition": {"StringLike": {"s3:prefix": [f"{settings.prefix}*"]}},
        },
        {
            "Sid": "JobObjects",
            "Effect": "Allow",
            "Action": S3_OBJECT_ACTIONS,
            "Resource": f"{s3}{settings.bucket}/{settings.prefix}*",
        },
    ]
    if settings.read_locations:
        statements.append(
            {
                "Sid": "ReadInputs",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": [
                    f"{s3}{_read_location(loc)}*" for loc in settings.read_locations
                ],
            }
        )
    logs = f"arn:{partition}:logs:{region}:{account}:log-group:"
    statements.append(
        {
            "Sid": "OwnLogs",
            "Effect": "Allow",
            "Action": [
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
            ],
            "Resource": [
                f"{logs}{log_group_name(fn)}:*" for fn in settings.function_names
            ],
        }
    )
    if settings.dynamodb_tables:
        tables = [
            _arn(t, f"arn:{partition}:dynamodb:{region}:{account}:table/")
            for t in settings.dynamodb_tables
        ]
        statements.append(
            {
                "Sid": "DynamoDBTables",
                "Effect": "Allow",
                "Action": DYNAMODB_ACTIONS,
                "Resource": tables + [f"{t}/index/*" for t in tables],
            }
        )
    if settings.sqs_queues:
        statements.append(
            {
                "Sid": "SQSQueues",
                "Effect": "Allow",
                "Action": SQS_ACTIONS,
                "Resource": [
                    _arn(q, f"arn:{partition}:sqs:{region}:{account}:")
                    for q in settings.sqs_queues
                ],
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def _read_location(location: str) -> str:
    """``s3://b/p``, ``b/p`` or ``b`` -> ``b/p`` or ``b/`` (the ARN resource after ':::')."""
    loc = location.removeprefix("s3://").lstrip("/")
    if not loc.strip("/") or "*" in loc:
        raise ConfigError(
            f"--read {location!r}: give a bucket or bucket/prefix without wildcards, "
            "e.g. --read s3://my-videos/inputs/"
        )
    return loc + "/" if "/" not in loc else loc


def _arn(name_or_arn: str, base: str) -> str:
    if name_or_arn.startswith("arn:"):
        return name_or_arn
    if not name_or_arn or "*" in name_or_arn or "/" in name_or_arn:
        raise ConfigError(f"{name_or_arn!r}: give a table / queue name or its full ARN")
    return base + name_or_arn


def resources_of(policy: dict[str, Any]) -> list[str]:
    """Every Resource of a policy document, flattened."""
    out: list[str] = []
    for statement in policy["Statement"]:
        resource = statement.get("Resource", [])
        out.extend([resource] if isinstance(resource, str) else resource)
    return out


def _document(value: Any) -> dict[str, Any]:
    """IAM returns policy documents URL-encoded (boto3 usually decodes them)."""
    if isinstance(value, str):
        return json.loads(urllib.parse.unquote(value))
    return value


def _canonical(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=True)


def role_arn(iam: Any, settings: DeploySettings) -> str | None:
    try:
        return iam.get_role(RoleName=settings.role_name)["Role"]["Arn"]
    except Exception as exc:
        if error_code(exc) == "NoSuchEntity":
            return None
        raise


def role_tags(iam: Any, role_name: str) -> dict[str, str]:
    tags = iam.list_role_tags(RoleName=role_name).get("Tags", [])
    return {t["Key"]: t["Value"] for t in tags}


def ensure_role(
    iam: Any, settings: DeploySettings, *, partition: str, account: str, region: str
) -> tuple[Change, str]:
    """Create or update the worker role; returns the change and the role ARN."""
    name = settings.role_name
    policy = worker_policy(
        settings, partition=partition, account=account, region=region
    )
    tags = {**settings.tags, BUCKET_TAG_KEY: settings.bucket}
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        role = iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(trust_policy()),
            Description=f"lambdaflow worker of deployment {settings.name}",
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        )["Role"]
        iam.put_role_policy(
            RoleName=name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(policy)
        )
        log.info("created role %s", name)
        return Change("role", name, CREATED), role["Arn"]

    current_tags = role_tags(iam, name)
    if current_tags.get(TAG_KEY) != settings.name:
        raise ConfigError(
            f"IAM role {name} exists but was not created by `lambdaflow deploy --name "
            f"{settings.name}` (no tag {TAG_KEY}={settings.name}); choose another --name "
            "or delete that role"
        )
    details = []
    if _canonical(_document(role["AssumeRolePolicyDocument"])) != _canonical(
        trust_policy()
    ):
        iam.update_assume_role_policy(
            RoleName=name, PolicyDocument=json.dumps(trust_policy())
        )
        details.append("trust policy")
    try:
        live = _document(
            iam.get_role_policy(RoleName=name, PolicyName=POLICY_NAME)["PolicyDocument"]
        )
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        live = None
    if live is None or _canonical(live) != _canonical(policy):
        iam.put_role_policy(
            RoleName=name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(policy)
        )
        details.append("inline policy")
    if current_tags.get(BUCKET_TAG_KEY) != settings.bucket:
        iam.tag_role(
            RoleName=name, Tags=[{"Key": BUCKET_TAG_KEY, "Value": settings.bucket}]
        )
        details.append(f"bucket tag -> {settings.bucket}")
    return Change("role", name, UPDATED if details else UNCHANGED, details), role["Arn"]


def delete_role(iam: Any, name: str, deployment: str) -> Change:
    """Delete the role and its inline policies, if it is the deployment's."""
    try:
        tags = role_tags(iam, name)
    except Exception as exc:
        if error_code(exc) == "NoSuchEntity":
            return Change("role", name, ABSENT)
        raise
    if tags.get(TAG_KEY) != deployment:
        return Change("role", name, KEPT, [f"no tag {TAG_KEY}={deployment}"])
    for policy_name in iam.list_role_policies(RoleName=name).get("PolicyNames", []):
        iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
    for attached in iam.list_attached_role_policies(RoleName=name).get(
        "AttachedPolicies", []
    ):
        iam.detach_role_policy(RoleName=name, PolicyArn=attached["PolicyArn"])
    iam.delete_role(RoleName=name)
    return Change("role", name, DELETED)
