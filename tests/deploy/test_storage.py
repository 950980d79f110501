from __future__ import annotations

from lambdaflow.deploy import storage
from lambdaflow.deploy.settings import LIFECYCLE_RULE_ID, DeploySettings


def test_bucket_created_private_with_expiry_then_unchanged(clients, settings):
    change = storage.ensure_bucket(clients.s3, settings, clients.region)
    assert (change.kind, change.name, change.action) == (
        "bucket",
        "lambdaflow-test-jobs",
        "created",
    )
    s3 = clients.s3
    block = s3.get_public_access_block(Bucket=settings.bucket)
    assert block["PublicAccessBlockConfiguration"] == storage.PUBLIC_ACCESS_BLOCK
    rules = s3.get_bucket_lifecycle_configuration(Bucket=settings.bucket)["Rules"]
    assert len(rules) == 1
    assert rules[0]["ID"] == LIFECYCLE_RULE_ID
    assert rules[0]["Filter"]["Prefix"] == "lambdaflow/"
    assert rules[0]["Expiration"]["Days"] == 7
    assert storage.bucket_tags(s3, settings.bucket) == {
        "lambdaflow:deployment": "lftest"
    }
    assert s3.get_bucket_encryption(Bucket=settings.bucket)
    assert storage.ensure_bucket(s3, settings, clients.region).action == "unchanged"


def test_changed_expiry_and_lost_public_access_block_are_updated(clients, settings):
    storage.ensure_bucket(clients.s3, settings, clients.region)
    clients.s3.delete_public_access_block(Bucket=settings.bucket)
    longer = DeploySettings(bucket=settings.bucket, name=settings.name, expire_days=30)
    change = storage.ensure_bucket(clients.s3, longer, clients.region)
    assert change.action == "updated"
    assert change.details == [
        "public access block",
        "lifecycle: expire lambdaflow/* after 30 d",
    ]
    rules = clients.s3.get_bucket_lifecycle_configuration(Bucket=settings.bucket)[
        "Rules"
    ]
    assert [r["Expiration"]["Days"] for r in rules] == [30]


def test_existing_user_bucket_gets_only_the_rule_and_is_kept(clients, settings):
    s3 = clients.s3
    s3.create_bucket(Bucket=settings.bucket)
    own_rule = {
        "ID": "users-rule",
        "Filter": {"Prefix": "logs/"},
        "Status": "Enabled",
        "Expiration": {"Days": 90},
    }
    s3.put_bucket_lifecycle_configuration(
        Bucket=settings.bucket, LifecycleConfiguration={"Rules": [own_rule]}
    )
    change = storage.ensure_bucket(s3, settings, clients.region)
    assert change.action == "updated"
    assert "destroy keeps it" in change.details[-1]
    ids = [
        r["ID"]
        for r in s3.get_bucket_lifecycle_configuration(Bucket=settings.bucket)["Rules"]
    ]
    assert ids == ["users-rule", LIFECYCLE_RULE_ID]
    assert storage.ensure_bucket(s3, settings, clients.region).action == "unchanged"
    assert storage.delete_bucket(s3, settings.bucket, "lftest").action == "kept"
    s3.head_bucket(Bucket=settings.bucket)


def test_delete_bucket_empties_it(clients, settings):
    storage.ensure_bucket(clients.s3, settings, clients.region)
    for i in range(3):
        clients.s3.put_object(
            Bucket=settings.bucket, Key=f"lambdaflow/job/{i}", Body=b"x"
        )
    kept = storage.delete_bucket(clients.s3, settings.bucket, "lftest", keep=True)
    assert (kept.action, kept.details) == ("kept", ["--keep-bucket"])
    change = storage.delete_bucket(clients.s3, settings.bucket, "lftest")
    assert (change.action, change.details) == ("deleted", ["3 objects"])
    assert clients.s3.list_buckets()["Buckets"] == []
    assert (
        storage.delete_bucket(clients.s3, settings.bucket, "lftest").action == "absent"
    )


def test_log_group_with_retention(clients, settings):
    name = "/aws/lambda/lftest-1769"
    assert storage.ensure_log_group(clients.logs, name, settings).action == "created"
    assert storage.ensure_log_group(clients.logs, name, settings).action == "unchanged"
    group = clients.logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"][0]
    assert group["retentionInDays"] == 14
    assert storage.delete_log_group(clients.logs, name, "other").action == "kept"
    assert storage.delete_log_group(clients.logs, name, "lftest").action == "deleted"
    assert storage.delete_log_group(clients.logs, name, "lftest").action == "absent"
