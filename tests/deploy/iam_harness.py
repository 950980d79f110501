"""Run code with a role's credentials against moto with IAM enforced, and record the
AWS calls it makes, for the least-privilege tests (test_iam_calls.py).

    with EnforcedMoto() as moto:
        moto.role(settings)                 # the role deploy makes, assumed
        moto.enforce()                      # from now on moto checks every request
        with moto.as_role(), recording() as calls: ...   # code under test
        unused_statements(policy, calls)

moto's server enforces IAM once ``/moto-api/reset-auth`` is posted a count of 0
(``INITIAL_NO_AUTH_ACTION_COUNT``): every request is then authenticated and checked
against the caller's policies (its Action and Resource matching; moto does not evaluate
S3's condition keys, and knows resource ARNs only for S3, SQS, IAM and STS: see
``EnforcedMoto.role`` for the moto-only policy that bridges the gaps, and ``not_allowed``
for the check of every call's real ARN). The setup runs as an IAM user allowed everything, created before
enforcement starts; the code under test runs with credentials from AssumeRole.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import boto3
import botocore.client

from lambdaflow.deploy import iam
from lambdaflow.deploy.settings import DeploySettings
from lambdaflow.testing.moto_server import MotoServer

ACCOUNT = "123456789012"
IDS = {"partition": "aws", "account": ACCOUNT, "region": "us-east-1"}

#: Services whose requests moto authorizes against the resource "*".
MOTO_UNSCOPED = frozenset({"dynamodb", "lambda", "logs"})
#: botocore operation -> the IAM action it needs (S3 names its actions after objects).
S3_ACTIONS = {
    "GetObject": "s3:GetObject", "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject", "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject", "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload", "DeleteObject": "s3:DeleteObject",
    "DeleteObjects": "s3:DeleteObject", "ListObjectsV2": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
}  # fmt: skip


def _post(url: str, body: str) -> None:
    # text/plain: moto reads the raw body (a form content type would swallow it)
    request = urllib.request.Request(url, data=body.encode(), method="POST",
                                     headers={"Content-Type": "text/plain"})  # fmt: skip
    urllib.request.urlopen(request, timeout=10).close()


class EnforcedMoto:
    """A dedicated moto server (enforcement is server-wide) with an admin user."""

    def __init__(self) -> None:
        self.server = MotoServer()
        self.admin: dict[str, str] = {}
        self.role_credentials: dict[str, str] = {}

    def __enter__(self) -> EnforcedMoto:
        self.server.start()
        root = boto3.client("iam", **self.server.client_kwargs)
        root.create_user(UserName="admin")
        root.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))  # fmt: skip
        key = root.create_access_key(UserName="admin")["AccessKey"]
        self.admin = {"aws_access_key_id": key["AccessKeyId"],
                      "aws_secret_access_key": key["SecretAccessKey"]}  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def client(self, service: str, **credentials: str) -> Any:
        creds = credentials or self.admin
        return boto3.client(service, endpoint_url=self.server.endpoint_url,
                            region_name=self.server.region, **creds)  # fmt: skip

    def role(self, settings: DeploySettings) -> dict[str, Any]:
        """Create the worker role deploy creates for ``settings``; assume it."""
        _, arn = iam.ensure_role(self.client("iam"), settings, **IDS)
        policy = iam.worker_policy(settings, **IDS)
        # Where moto's enforcement differs from IAM, a moto-only policy fills the gap:
        # * moto checks HeadBucket as an action "s3:HeadBucket", which IAM does not have
        #   (AWS checks s3:ListBucket, which the policy grants);
        # * moto matches DynamoDB / Lambda / Logs requests against the resource "*" (it
        #   knows no ARN for them), so it checks their *actions* only; the resources of
        #   those calls are checked by not_allowed() below, against the real ARNs.
        compat = [{"Effect": "Allow", "Action": "s3:HeadBucket",
                   "Resource": f"arn:aws:s3:::{settings.bucket}"}]  # fmt: skip
        for statement in policy["Statement"]:
            actions = [a for a in _listed(statement["Action"])
                       if a.split(":")[0] in MOTO_UNSCOPED]  # fmt: skip
            if actions:
                compat.append({"Effect": "Allow", "Action": actions, "Resource": "*"})
        self.client("iam").put_role_policy(
            RoleName=settings.role_name, PolicyName="moto-compat",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": compat}))
        creds = self.client("sts").assume_role(RoleArn=arn, RoleSessionName="worker")
        c = creds["Credentials"]
        self.role_credentials = {"aws_access_key_id": c["AccessKeyId"],
                                 "aws_secret_access_key": c["SecretAccessKey"],
                                 "aws_session_token": c["SessionToken"]}  # fmt: skip
        return policy

    def enforce(self, on: bool = True) -> None:
        _post(f"{self.server.endpoint_url}/moto-api/reset-auth", "0" if on else "inf")

    @contextlib.contextmanager
    def as_role(self, monkeypatch: Any) -> Iterator[None]:
        """The process environment a Lambda environment would have: the role's
        credentials and the endpoints."""
        env = {
            "AWS_ACCESS_KEY_ID": self.role_credentials["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": self.role_credentials["aws_secret_access_key"],
            "AWS_SESSION_TOKEN": self.role_credentials["aws_session_token"],
            "AWS_DEFAULT_REGION": self.server.region,
            "AWS_ENDPOINT_URL": self.server.endpoint_url,
            "LAMBDAFLOW_S3_ENDPOINT_URL": self.server.endpoint_url,
        }
        with monkeypatch.context() as m:
            for key in list(os.environ):  # no endpoint or identity left by other tests
                if key.startswith(("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_CONFIG_FILE",
                                   "AWS_SHARED_CREDENTIALS_FILE")) or (
                        key.startswith("LAMBDAFLOW_") and key.endswith("_ENDPOINT_URL")):
                    m.delenv(key)
            for key, value in env.items():
                m.setenv(key, value)
            # boto3's default session caches the credentials it first resolved: a fresh
            # one, as in a new execution environment, reads the role's from the env.
            m.setattr(boto3, "DEFAULT_SESSION", None)
            yield


@contextlib.contextmanager
def recording() -> Iterator[list[tuple[str, str]]]:
    """Every AWS call made in this process meanwhile, as ``(IAM action, resource ARN)``."""
    calls: list[tuple[str, str]] = []
    real = botocore.client.BaseClient._make_api_call

    def record(self: Any, operation: str, params: dict) -> Any:
        calls.append(_as_action(self.meta.service_model.service_name, operation, params))
        return real(self, operation, params)

    botocore.client.BaseClient._make_api_call = record  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        botocore.client.BaseClient._make_api_call = real  # type: ignore[method-assign]


def _as_action(service: str, operation: str, params: dict) -> tuple[str, str]:
    if service == "s3":
        action = S3_ACTIONS.get(operation, f"s3:{operation}")
        if action == "s3:ListBucket":
            return action, f"arn:aws:s3:::{params['Bucket']}"
        return action, f"arn:aws:s3:::{params['Bucket']}/{params.get('Key', '*')}"
    if service == "dynamodb":
        return f"dynamodb:{operation}", (
            f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{params['TableName']}")
    if service == "sqs":
        name = urlparse(params.get("QueueUrl", "")).path.rsplit("/", 1)[-1]
        return f"sqs:{operation}", f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"
    if service == "lambda" and operation == "Invoke":
        return "lambda:InvokeFunction", (
            f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{params['FunctionName']}")
    return f"{service}:{operation}", "*"


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def allows(statement: dict[str, Any], action: str, resource: str) -> bool:
    """Does this Allow statement cover ``action`` on ``resource`` (wildcards as IAM)?"""
    return any(fnmatch.fnmatchcase(action, a) for a in _listed(statement["Action"])) and any(
        fnmatch.fnmatchcase(resource, r) for r in _listed(statement["Resource"]))  # fmt: skip


def not_allowed(policy: dict[str, Any], calls: list[tuple[str, str]]) -> list[tuple]:
    return sorted({c for c in calls if not any(allows(s, *c) for s in policy["Statement"])})


def unused(policy: dict[str, Any], calls: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Per statement, the granted actions that no recorded call needed."""
    out: dict[str, list[str]] = {}
    for statement in policy["Statement"]:
        idle = [a for a in _listed(statement["Action"])
                if not any(allows({**statement, "Action": a}, *c) for c in calls)]  # fmt: skip
        if idle:
            out[statement["Sid"]] = idle
    return out
