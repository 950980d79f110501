"""lambdaflow.deploy.errors: AWS errors translated at one boundary (STYLE 14)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, NoCredentialsError

from lambdaflow.deploy.errors import call, lookup
from lambdaflow.deploy.tagged import parse_arn
from lambdaflow.errors import BackendError, ConfigError


def _raise(code, op="GetRole", message="m"):
    def fn():
        raise ClientError({"Error": {"Code": code, "Message": message}}, op)
    return fn


def test_lookup_is_none_only_for_not_found():
    assert lookup(_raise("NoSuchEntity"), "IAM role", "r") is None
    assert lookup(lambda: 42, "IAM role", "r") == 42
    with pytest.raises(ConfigError, match="access denied: DeleteRole on IAM role r"):
        lookup(_raise("AccessDenied", "DeleteRole"), "IAM role", "r")
    with pytest.raises(BackendError, match="CreateRole on IAM role r failed: Throttling"):
        call(_raise("Throttling", "CreateRole"), "IAM role", "r")


def test_credentials_errors_say_what_to_do():
    with pytest.raises(ConfigError, match="rejected the credentials"):
        call(_raise("InvalidClientTokenId"), "IAM role", "r")

    def no_creds():
        raise NoCredentialsError()

    with pytest.raises(ConfigError, match="no AWS credentials found"):
        call(no_creds, "IAM role", "r")


def test_no_except_exception_left_in_deploy():
    from pathlib import Path

    import lambdaflow.deploy as package

    for path in Path(package.__file__).parent.glob("*.py"):
        assert "except Exception" not in path.read_text(), path.name


@pytest.mark.parametrize("arn, kind, name", [
    ("arn:aws:s3:::classroom-input", "bucket", "classroom-input"),
    ("arn:aws:dynamodb:us-east-1:1:table/students", "table", "students"),
    ("arn:aws:sqs:us-east-1:1:uploads-failed", "queue", "uploads-failed"),
    ("arn:aws:logs:us-east-1:1:log-group:/aws/lambda/lf-1769:*", "log group",
     "/aws/lambda/lf-1769"),
    ("arn:aws:lambda:us-east-1:1:function:lf-1769", "function", "lf-1769"),
    ("arn:aws:ecr:us-east-1:1:repository/lf", "repository", "lf"),
    ("arn:aws:sns:us-east-1:1:topic", "other", "topic"),
])  # fmt: skip
def test_tagged_arns(arn, kind, name):
    item = parse_arn(arn)
    assert (item.kind, item.name) == (kind, name)
