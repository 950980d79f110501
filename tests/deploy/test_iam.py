from __future__ import annotations

import json

import pytest

from lambdaflow.deploy import iam
from lambdaflow.deploy.settings import DeploySettings
from lambdaflow.errors import ConfigError

IDS = {"partition": "aws", "account": "123456789012", "region": "us-east-1"}


def test_worker_policy_names_every_resource():
    s = DeploySettings(bucket="jobs-bucket", name="lf", prefix="jobs/")
    policy = iam.worker_policy(s, **IDS)
    resources = iam.resources_of(policy)
    assert "*" not in resources
    assert all(not r.endswith(":*:*") and r != "arn:aws:s3:::*" for r in resources)
    by_sid = {st["Sid"]: st for st in policy["Statement"]}
    assert set(by_sid) == {"ListJobBucket", "JobObjects", "OwnLogs", "InvokeDeployment"}
    # Listing is limited to the job prefix (the store tells a lost key from a forbidden
    # one by a one-key listing there, since S3 answers 403 for both).
    assert by_sid["ListJobBucket"] == {
        "Sid": "ListJobBucket", "Effect": "Allow", "Action": "s3:ListBucket",
        "Resource": "arn:aws:s3:::jobs-bucket",
        "Condition": {"StringLike": {"s3:prefix": ["jobs/*"]}}}  # fmt: skip
    assert by_sid["JobObjects"]["Resource"] == "arn:aws:s3:::jobs-bucket/jobs/*"
    # The worker deletes job objects only when its job closed while it ran (14.10).
    assert sorted(by_sid["JobObjects"]["Action"]) == [
        "s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject",
        "s3:PutObject"]  # fmt: skip
    # Deploy makes the log groups: no logs:CreateLogGroup (it would recreate them).
    assert by_sid["OwnLogs"]["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert by_sid["OwnLogs"]["Resource"] == [
        f"arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/lf-{m}:*"
        for m in (1769, 3008, 10240)
    ]
    # Nested tasks: the deployment's own functions, and nothing else.
    assert by_sid["InvokeDeployment"]["Resource"] == [
        f"arn:aws:lambda:us-east-1:123456789012:function:lf-{m}"
        for m in (1769, 3008, 10240)
    ]
    actions = {a for st in policy["Statement"] for a in _list(st["Action"])}
    assert not any(a.endswith("*") for a in actions)


def test_access_beyond_the_prefix_only_when_asked_and_only_what_was_asked():
    s = DeploySettings(
        bucket="jobs-bucket",
        read_locations=("s3://videos/in/", "raw-bucket"),
        write_locations=("s3://results/out/",),
        dynamodb_read=("students",),
        dynamodb_write=("arn:aws:dynamodb:us-east-1:123456789012:table/attendance",),
        sqs_send=("failed-events",),
        sqs_consume=("arn:aws:sqs:us-east-1:123456789012:frames",),
    )
    policy = iam.worker_policy(s, **IDS)
    by_sid = {st["Sid"]: st for st in policy["Statement"]}
    assert by_sid["ReadInputs"] == {
        "Sid": "ReadInputs", "Effect": "Allow", "Action": "s3:GetObject",
        "Resource": ["arn:aws:s3:::videos/in/*", "arn:aws:s3:::raw-bucket/*"]}  # fmt: skip
    assert by_sid["WriteOutputs"]["Action"] == "s3:PutObject"
    assert by_sid["WriteOutputs"]["Resource"] == ["arn:aws:s3:::results/out/*"]
    table = "arn:aws:dynamodb:us-east-1:123456789012:table/"
    assert by_sid["DynamoDBRead"]["Action"] == [
        "dynamodb:BatchGetItem", "dynamodb:GetItem"]  # fmt: skip
    assert by_sid["DynamoDBRead"]["Resource"] == [f"{table}students"]
    assert by_sid["DynamoDBWrite"]["Resource"] == [f"{table}attendance"]
    assert by_sid["SQSSend"] == {
        "Sid": "SQSSend", "Effect": "Allow", "Action": ["sqs:SendMessage"],
        "Resource": ["arn:aws:sqs:us-east-1:123456789012:failed-events"]}  # fmt: skip
    assert "sqs:SendMessage" not in by_sid["SQSConsume"]["Action"]
    assert "*" not in iam.resources_of(policy)


@pytest.mark.parametrize("location", ["s3://", "s3://bucket/*"])
@pytest.mark.parametrize("field, flag", [("read_locations", "--read"),
                                         ("write_locations", "--write")])
def test_bad_s3_location(location, field, flag):
    s = DeploySettings(bucket="jobs-bucket", **{field: (location,)})
    with pytest.raises(ConfigError, match=flag):
        iam.worker_policy(s, **IDS)


def test_wildcard_table_or_queue_is_refused():
    s = DeploySettings(bucket="jobs-bucket", dynamodb_read=("arn:aws:dynamodb:*:*:table/*",))
    with pytest.raises(ConfigError, match="no wildcards"):
        iam.worker_policy(s, **IDS)


def _list(value):
    return [value] if isinstance(value, str) else value


def test_role_created_then_unchanged_then_repaired(clients, settings):
    change, arn = iam.ensure_role(clients.iam, settings, **IDS)
    assert (change.action, change.name) == ("created", "lftest-worker")
    assert arn.endswith(":role/lftest-worker")
    change, _ = iam.ensure_role(clients.iam, settings, **IDS)
    assert change.action == "unchanged"

    role = clients.iam.get_role(RoleName="lftest-worker")["Role"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "lambda.amazonaws.com"
    }
    live = clients.iam.get_role_policy(
        RoleName="lftest-worker", PolicyName="lambdaflow-worker"
    )["PolicyDocument"]
    assert "*" not in iam.resources_of(live)
    assert (
        clients.iam.list_attached_role_policies(RoleName="lftest-worker")[
            "AttachedPolicies"
        ]
        == []
    )

    # Someone widens the policy by hand: deploy puts it back.
    clients.iam.put_role_policy(
        RoleName="lftest-worker",
        PolicyName="lambdaflow-worker",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
            }
        ),
    )
    change, _ = iam.ensure_role(clients.iam, settings, **IDS)
    assert change.action == "updated" and change.details == ["inline policy"]
    live = clients.iam.get_role_policy(
        RoleName="lftest-worker", PolicyName="lambdaflow-worker"
    )["PolicyDocument"]
    assert "*" not in iam.resources_of(live)


def test_a_role_not_made_by_deploy_is_refused_and_kept(clients, settings):
    clients.iam.create_role(
        RoleName="lftest-worker",
        AssumeRolePolicyDocument=json.dumps(iam.trust_policy()),
    )
    with pytest.raises(ConfigError, match="not created by `lambdaflow deploy"):
        iam.ensure_role(clients.iam, settings, **IDS)
    assert iam.delete_role(clients.iam, "lftest-worker", "lftest").action == "kept"
    assert clients.iam.get_role(RoleName="lftest-worker")


def test_delete_role(clients, settings):
    iam.ensure_role(clients.iam, settings, **IDS)
    assert iam.delete_role(clients.iam, "lftest-worker", "lftest").action == "deleted"
    assert iam.delete_role(clients.iam, "lftest-worker", "lftest").action == "absent"
    assert clients.iam.list_roles()["Roles"] == []
