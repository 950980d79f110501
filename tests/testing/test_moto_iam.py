"""S3 permissions on the local moto follow AWS's documented rules (moto_iam)."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from lambdaflow.testing.moto_iam import evaluate
from lambdaflow.testing.moto_server import MotoServer

BUCKET = "iam-test"
PREFIX_LIST = {
    "Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}",
    "Condition": {"StringLike": {"s3:prefix": ["jobs/*"]}},
}  # fmt: skip
OBJECTS = {
    "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
    "Resource": f"arn:aws:s3:::{BUCKET}/jobs/*",
}  # fmt: skip


def test_evaluate_follows_iam_rules():
    doc = {"Statement": [PREFIX_LIST, OBJECTS]}
    bucket = f"arn:aws:s3:::{BUCKET}"
    assert evaluate([doc], "s3:ListBucket", bucket, {"s3:prefix": "jobs/a"})
    assert not evaluate([doc], "s3:ListBucket", bucket, {"s3:prefix": "other/"})
    assert not evaluate([doc], "s3:ListBucket", bucket, {})  # absent key: no match
    assert evaluate([doc], "s3:GetObject", f"{bucket}/jobs/x", {})
    assert not evaluate([doc], "s3:GetObject", f"{bucket}/jobsx", {})
    deny = {"Statement": [{"Effect": "Deny", "Action": "s3:*", "Resource": "*"}]}
    assert not evaluate([doc, deny], "s3:GetObject", f"{bucket}/jobs/x", {})
    not_action = {"Statement": [{"Effect": "Allow", "NotAction": "s3:Delete*",
                                 "Resource": "*"}]}  # fmt: skip
    assert evaluate([not_action], "s3:GetObject", bucket, {})
    assert not evaluate([not_action], "s3:DeleteObject", bucket, {})
    odd = {"Statement": [{**OBJECTS, "Condition": {"IpAddress": {"aws:SourceIp": "x"}}}]}
    assert not evaluate([odd], "s3:GetObject", f"{bucket}/jobs/x", {})  # fails closed


@pytest.fixture(scope="module")
def clients():
    with MotoServer(iam=True) as moto:
        admin = moto.client("s3")
        admin.create_bucket(Bucket=BUCKET)
        admin.put_object(Bucket=BUCKET, Key="jobs/present", Body=b"x")
        iam = moto.client("iam")
        out = {"admin": admin}
        for user, statements in (("prefix-only", [PREFIX_LIST, OBJECTS]),
                                 ("lister", [{**PREFIX_LIST, "Condition": {}}, OBJECTS])):
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": statements}))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            out[user] = boto3.client(
                "s3", endpoint_url=moto.endpoint_url, region_name="us-east-1",
                aws_access_key_id=key["AccessKeyId"],
                aws_secret_access_key=key["SecretAccessKey"],
            )  # fmt: skip
        yield out


def _code(fn) -> str:
    with pytest.raises(ClientError) as info:
        fn()
    return info.value.response["Error"]["Code"]


def test_missing_keys_are_403_without_listbucket_and_404_with_it(clients):
    limited, lister = clients["prefix-only"], clients["lister"]
    assert limited.head_object(Bucket=BUCKET, Key="jobs/present")
    assert _code(lambda: limited.head_object(Bucket=BUCKET, Key="jobs/absent")) == "403"
    assert _code(lambda: limited.get_object(Bucket=BUCKET, Key="jobs/absent")) == (
        "AccessDenied"
    )
    assert _code(lambda: lister.head_object(Bucket=BUCKET, Key="jobs/absent")) == "404"
    assert _code(lambda: lister.get_object(Bucket=BUCKET, Key="jobs/absent")) == (
        "NoSuchKey"
    )


def test_prefix_condition_and_headbucket(clients):
    limited = clients["prefix-only"]
    page = limited.list_objects_v2(Bucket=BUCKET, Prefix="jobs/pre")
    assert [o["Key"] for o in page["Contents"]] == ["jobs/present"]
    assert _code(lambda: limited.list_objects_v2(Bucket=BUCKET, Prefix="other/")) == (
        "AccessDenied"
    )
    assert _code(lambda: limited.list_objects_v2(Bucket=BUCKET)) == "AccessDenied"
    assert _code(lambda: limited.head_bucket(Bucket=BUCKET)) == "403"  # needs ListBucket
    assert _code(
        lambda: limited.put_object(Bucket=BUCKET, Key="other/x", Body=b"x")
    ) == "AccessDenied"
    assert clients["lister"].head_bucket(Bucket=BUCKET)


def test_dynamodb_table_arns_are_matched():
    with MotoServer(iam=True) as moto:
        ddb = moto.client("dynamodb")
        for name in ("allowed", "other"):
            ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                             KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                             AttributeDefinitions=[{"AttributeName": "k",
                                                    "AttributeType": "S"}])  # fmt: skip
        iam = moto.client("iam")
        iam.create_user(UserName="reader")
        iam.put_user_policy(UserName="reader", PolicyName="p", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "dynamodb:GetItem",
                "Resource": "arn:aws:dynamodb:us-east-1:123456789012:table/allowed"}]}))
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        reader = boto3.client("dynamodb", endpoint_url=moto.endpoint_url,
                              region_name="us-east-1", aws_access_key_id=key["AccessKeyId"],
                              aws_secret_access_key=key["SecretAccessKey"])  # fmt: skip
        assert "Item" not in reader.get_item(TableName="allowed", Key={"k": {"S": "x"}})
        for call in (lambda: reader.get_item(TableName="other", Key={"k": {"S": "x"}}),
                     lambda: reader.put_item(TableName="allowed", Item={"k": {"S": "x"}})):
            with pytest.raises(ClientError) as info:
                call()
            assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
