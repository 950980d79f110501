"""The worker's IAM role: least-privilege policy documents and create-or-update.

The role ``<name>-worker`` is assumable by ``lambda.amazonaws.com`` only and has one inline
policy, ``lambdaflow-worker``. Every statement names its resources (never ``"*"``) and
grants only what code on the worker calls (held by tests/deploy/test_iam_calls.py, which
records the calls a job and the classroom app make against moto with IAM enforced):

====================  =======================================  ===========================
statement             actions                                  who calls them
====================  =======================================  ===========================
ListJobBucket         s3:ListBucket on the job bucket, only    the store: a HEAD/GET of a
                      for s3:prefix = the job prefix*          missing key answers 403
                                                               here (a GET carries no
                                                               s3:prefix), so the store
                                                               asks a one-key listing of
                                                               the job prefix: lost or
                                                               forbidden
JobObjects            s3:GetObject, PutObject, DeleteObject,   the store (get, exists,
                      AbortMultipartUpload on bucket/prefix*   put, multipart put; a task
                                                               ending after its job closed
                                                               deletes its writes)
ReadInputs            s3:GetObject on each --read              ops reading inputs
WriteOutputs          s3:PutObject on each --write             event handlers' outputs
OwnLogs               logs:CreateLogStream, PutLogEvents on    the Lambda service; the
                      the functions' own groups                groups are made by deploy
InvokeDeployment      lambda:InvokeFunction on the             a worker invoking its own
                      deployment's functions                   deployment (nested tasks)
DynamoDBRead          GetItem, BatchGetItem (by key)           --dynamodb-read
DynamoDBWrite         PutItem, UpdateItem, DeleteItem,         --dynamodb-write
                      BatchWriteItem
SQSSend               sqs:SendMessage                          --sqs-send: Lambda sends
                                                               failed events to an
                                                               on-failure destination
                                                               with the function's role
SQSConsume            ReceiveMessage, DeleteMessage,           --sqs-consume: an SQS event
                      GetQueueAttributes, ChangeMessage-       source mapping polls with
                      Visibility                               the function's role
====================  =======================================  ===========================

No ``logs:CreateLogGroup``: with it, a function invoked after ``destroy`` would recreate
its log group, which nothing would then delete.

:func:`worker_policy` is pure (tested without AWS); :func:`ensure_role` compares the live
documents with the wanted ones and rewrites only what differs.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from functools import partial
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
from lambdaflow.deploy.errors import call, lookup
from lambdaflow.deploy.settings import (
    BUCKET_TAG_KEY,
    POLICY_NAME,
    TAG_KEY,
    DeploySettings,
    log_group_name,
)
from lambdaflow.errors import ConfigError

log = logging.getLogger(__name__)

#: DeleteObject: a task that finishes after its job's driver shut down deletes what it
#: wrote (runtime/worker.drop_if_closed); a bucket writer can already overwrite objects,
#: so deleting them grants no new power (docs/SECURITY.md)
S3_OBJECT_ACTIONS = ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject",
                     "s3:PutObject"]
DYNAMODB_READ_ACTIONS = ["dynamodb:BatchGetItem", "dynamodb:GetItem"]  # by key
DYNAMODB_WRITE_ACTIONS = [
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
]
SQS_SEND_ACTIONS = ["sqs:SendMessage"]
SQS_CONSUME_ACTIONS = [
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ReceiveMessage",
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
        {**_allow("ListJobBucket", "s3:ListBucket", f"{s3}{settings.bucket}"),
         "Condition": {"StringLike": {"s3:prefix": [f"{settings.prefix}*"]}}},
        _allow(
            "JobObjects", S3_OBJECT_ACTIONS, f"{s3}{settings.bucket}/{settings.prefix}*"
        ),
    ]
    if settings.read_locations:
        resources = [f"{s3}{_location(loc, '--read')}*" for loc in settings.read_locations]
        statements.append(_allow("ReadInputs", "s3:GetObject", resources))
    if settings.write_locations:
        resources = [
            f"{s3}{_location(loc, '--write')}*" for loc in settings.write_locations
        ]
        statements.append(_allow("WriteOutputs", "s3:PutObject", resources))
    logs = f"arn:{partition}:logs:{region}:{account}:log-group:"
    statements.append(
        _allow(
            "OwnLogs",
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [f"{logs}{log_group_name(fn)}:*" for fn in settings.function_names],
        )
    )
    functions = f"arn:{partition}:lambda:{region}:{account}:function:"
    statements.append(
        _allow(
            "InvokeDeployment",
            "lambda:InvokeFunction",
            [f"{functions}{fn}" for fn in settings.function_names],
        )
    )
    table = f"arn:{partition}:dynamodb:{region}:{account}:table/"
    queue = f"arn:{partition}:sqs:{region}:{account}:"
    for sid, names, actions, base in (
        ("DynamoDBRead", settings.dynamodb_read, DYNAMODB_READ_ACTIONS, table),
        ("DynamoDBWrite", settings.dynamodb_write, DYNAMODB_WRITE_ACTIONS, table),
        ("SQSSend", settings.sqs_send, SQS_SEND_ACTIONS, queue),
        ("SQSConsume", settings.sqs_consume, SQS_CONSUME_ACTIONS, queue),
    ):
        if names:
            statements.append(_allow(sid, actions, [_arn(n, base) for n in names]))
    return {"Version": "2012-10-17", "Statement": statements}


def _allow(sid: str, actions: str | list[str], resources: str | list[str]) -> dict:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}


def _location(location: str, flag: str) -> str:
    """``s3://b/p``, ``b/p`` or ``b`` -> ``b/p`` or ``b/`` (the ARN resource after ':::')."""
    loc = location.removeprefix("s3://").lstrip("/")
    if not loc.strip("/") or "*" in loc:
        raise ConfigError(
            f"{flag} {location!r}: give a bucket or bucket/prefix without wildcards, "
            f"e.g. {flag} s3://my-videos/inputs/"
        )
    return loc + "/" if "/" not in loc else loc


def _arn(name_or_arn: str, base: str) -> str:
    if name_or_arn.startswith("arn:"):
        if "*" in name_or_arn:
            raise ConfigError(f"{name_or_arn!r}: give one table / queue, no wildcards")
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


def role_tags(iam: Any, role_name: str) -> dict[str, str] | None:
    """The role's tags, or None when there is no such role."""
    tags = lookup(lambda: iam.list_role_tags(RoleName=role_name), "IAM role", role_name)
    return None if tags is None else {t["Key"]: t["Value"] for t in tags.get("Tags", [])}


def ensure_role(
    iam: Any, settings: DeploySettings, *, partition: str, account: str, region: str
) -> tuple[Change, str]:
    """Create or update the worker role; returns the change and the role ARN."""
    name = settings.role_name
    policy = worker_policy(
        settings, partition=partition, account=account, region=region
    )
    tags = {**settings.tags, BUCKET_TAG_KEY: settings.bucket}
    found = lookup(lambda: iam.get_role(RoleName=name), "IAM role", name)
    if found is None:
        role = call(
            lambda: iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(trust_policy()),
                Description=f"lambdaflow worker of deployment {settings.name}",
                Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            ),
            "IAM role",
            name,
        )["Role"]
        _put_policy(iam, name, policy)
        log.info("created role %s", name)
        return Change("role", name, CREATED), role["Arn"]

    role = found["Role"]
    current_tags = role_tags(iam, name) or {}
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
        call(
            lambda: iam.update_assume_role_policy(
                RoleName=name, PolicyDocument=json.dumps(trust_policy())
            ),
            "IAM role",
            name,
        )
        details.append("trust policy")
    live = lookup(
        lambda: iam.get_role_policy(RoleName=name, PolicyName=POLICY_NAME),
        "IAM role policy",
        f"{name}/{POLICY_NAME}",
    )
    if live is None or _canonical(_document(live["PolicyDocument"])) != _canonical(
        policy
    ):
        _put_policy(iam, name, policy)
        details.append("inline policy")
    if current_tags.get(BUCKET_TAG_KEY) != settings.bucket:
        call(
            lambda: iam.tag_role(
                RoleName=name, Tags=[{"Key": BUCKET_TAG_KEY, "Value": settings.bucket}]
            ),
            "IAM role",
            name,
        )
        details.append(f"bucket tag -> {settings.bucket}")
    return Change("role", name, UPDATED if details else UNCHANGED, details), role["Arn"]


def _put_policy(iam: Any, name: str, policy: dict[str, Any]) -> None:
    call(
        lambda: iam.put_role_policy(
            RoleName=name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(policy)
        ),
        "IAM role",
        name,
    )


def live_policy(iam: Any, role_name: str) -> dict[str, Any] | None:
    """The role's inline worker policy as IAM has it, or None."""
    live = lookup(
        lambda: iam.get_role_policy(RoleName=role_name, PolicyName=POLICY_NAME),
        "IAM role policy",
        f"{role_name}/{POLICY_NAME}",
    )
    return None if live is None else _document(live["PolicyDocument"])


def delete_role(iam: Any, name: str, deployment: str) -> Change:
    """Delete the role and its inline policies, if it is the deployment's."""
    tags = role_tags(iam, name)
    if tags is None:
        return Change("role", name, ABSENT)
    if tags.get(TAG_KEY) != deployment:
        return Change("role", name, KEPT, [f"no tag {TAG_KEY}={deployment}"])
    what = "IAM role"
    policies = call(lambda: iam.list_role_policies(RoleName=name), what, name)
    for policy_name in policies.get("PolicyNames", []):
        lookup(
            partial(iam.delete_role_policy, RoleName=name, PolicyName=policy_name),
            what,
            name,
        )
    attached = call(lambda: iam.list_attached_role_policies(RoleName=name), what, name)
    for policy in attached.get("AttachedPolicies", []):
        lookup(
            partial(iam.detach_role_policy, RoleName=name, PolicyArn=policy["PolicyArn"]),
            what,
            name,
        )
    if lookup(lambda: iam.delete_role(RoleName=name), what, name) is None:
        return Change("role", name, ABSENT)
    return Change("role", name, DELETED)
