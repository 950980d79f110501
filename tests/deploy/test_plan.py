from __future__ import annotations

import platform

from lambdaflow._version import __version__
from lambdaflow.deploy import DeploySettings, deploy, destroy, status
from lambdaflow.deploy.iam import resources_of
from lambdaflow.deploy.plan import left_behind

from .conftest import push_fake_image, queue_invoke_results


def _actions(changes) -> dict[tuple[str, str], str]:
    return {(c.kind, c.name): c.action for c in changes}


def _everything(clients) -> dict[str, list]:
    return {
        "buckets": clients.s3.list_buckets()["Buckets"],
        "roles": clients.iam.list_roles()["Roles"],
        "repositories": clients.ecr.describe_repositories()["repositories"],
        "functions": clients.lambda_.list_functions()["Functions"],
        "log groups": clients.logs.describe_log_groups()["logGroups"],
    }


def _deploy_with_image(clients, settings):
    first = deploy(clients, settings)  # creates the repository; no image yet
    push_fake_image(clients, settings.repository_name,
                    settings.variant.image_tag(__version__))  # fmt: skip
    return first, deploy(clients, settings)


def test_first_deploy_without_image_skips_functions(clients, settings):
    result = deploy(clients, settings)
    assert _actions(result.changes) == {
        ("bucket", "lambdaflow-test-jobs"): "created",
        ("role", "lftest-worker"): "created",
        ("repository", "lftest"): "created",
        ("function", "lftest-1769"): "skipped",
        ("function", "lftest-3008"): "skipped",
        ("function", "lftest-10240"): "skipped",
    }
    assert result.function_names == []
    assert result.image_uri.endswith(f"/lftest:{__version__}-{settings.image_variant}")


def test_deploy_twice_changes_nothing_the_second_time(clients, settings):
    _, second = _deploy_with_image(clients, settings)
    assert set(_actions(second.changes).values()) == {"created", "unchanged"}
    assert [c.name for c in second.changes if c.action == "created"] == [
        "/aws/lambda/lftest-1769",
        "lftest-1769",
        "/aws/lambda/lftest-3008",
        "lftest-3008",
        "/aws/lambda/lftest-10240",
        "lftest-10240",
    ]
    third = deploy(clients, settings)
    assert {c.action for c in third.changes} == {"unchanged"}, [
        c.line() for c in third.changes
    ]
    assert len(third.changes) == 9

    memories = sorted(
        f["MemorySize"] for f in clients.lambda_.list_functions()["Functions"]
    )
    assert memories == [1769, 3008, 10240]
    policy = clients.iam.get_role_policy(
        RoleName="lftest-worker", PolicyName="lambdaflow-worker"
    )["PolicyDocument"]
    assert "*" not in resources_of(policy)


def test_fewer_tiers_delete_the_others(clients, settings):
    _deploy_with_image(clients, settings)
    one = DeploySettings(
        bucket=settings.bucket, name=settings.name, memory_tiers=(3008,)
    )
    actions = _actions(deploy(clients, one).changes)
    assert actions[("function", "lftest-1769")] == "deleted"
    assert actions[("function", "lftest-10240")] == "deleted"
    assert actions[("log group", "/aws/lambda/lftest-1769")] == "deleted"
    # its environment names the tiers (LAMBDAFLOW_MEMORY_TIERS, for nested tasks)
    assert actions[("function", "lftest-3008")] == "updated"
    assert (
        actions[("role", "lftest-worker")] == "updated"
    )  # fewer log groups in its policy
    names = [f["FunctionName"] for f in clients.lambda_.list_functions()["Functions"]]
    assert names == ["lftest-3008"]


def test_destroy_leaves_nothing(clients, settings):
    _deploy_with_image(clients, settings)
    clients.s3.put_object(
        Bucket=settings.bucket, Key="lambdaflow/job1/obj/a", Body=b"x"
    )
    changes = destroy(clients, "lftest")
    assert {c.action for c in changes} == {"deleted"}, [c.line() for c in changes]
    assert len(changes) == 9  # 3 functions, 3 log groups, role, repository, bucket
    # The role, whose tag names the bucket, goes last (14.5).
    assert [c.kind for c in changes][-2:] == ["bucket", "role"]
    assert _everything(clients) == {k: [] for k in _everything(clients)}
    again = destroy(clients, "lftest")
    assert {c.action for c in again} <= {"absent"} and not left_behind(again)


def test_destroy_removes_an_apps_tagged_resources_and_orphan_log_groups(
    clients, settings
):
    """The classroom table, queues and buckets (tagged by its setup), and the log group
    of a function deleted by hand, used to survive destroy (14.5)."""
    _deploy_with_image(clients, settings)
    tag = {"lambdaflow:deployment": "lftest"}
    clients.s3.create_bucket(Bucket="app-input")
    clients.s3.put_bucket_tagging(Bucket="app-input", Tagging={"TagSet": [
        {"Key": k, "Value": v} for k, v in tag.items()]})  # fmt: skip
    clients.s3.put_object(Bucket="app-input", Key="v.mp4", Body=b"x")
    clients.dynamodb.create_table(
        TableName="app-table", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "n", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "n", "KeyType": "HASH"}],
        Tags=[{"Key": k, "Value": v} for k, v in tag.items()])  # fmt: skip
    clients.sqs.create_queue(QueueName="app-failed", tags=tag)
    clients.sqs.create_queue(QueueName="not-ours")
    clients.lambda_.delete_function(FunctionName="lftest-3008")  # its log group stays
    changes = destroy(clients, "lftest")
    actions = _actions(changes)
    assert actions[("bucket", "app-input")] == "deleted"
    assert actions[("table", "app-table")] == "deleted"
    assert actions[("queue", "app-failed")] == "deleted"
    assert actions[("log group", "/aws/lambda/lftest-3008")] == "deleted"
    assert not left_behind(changes)
    assert clients.dynamodb.list_tables()["TableNames"] == []
    assert [u.rsplit("/", 1)[-1] for u in clients.sqs.list_queues()["QueueUrls"]] == [
        "not-ours"]  # fmt: skip
    assert _everything(clients) == {k: [] for k in _everything(clients)}


def test_a_bucket_that_cannot_be_deleted_keeps_the_role_for_the_rerun(
    clients, settings, monkeypatch
):
    """destroy deleted the role (whose tag names the bucket) before the bucket: when the
    bucket failed, a rerun could not find it (14.5)."""
    from lambdaflow.deploy import storage
    from lambdaflow.errors import BackendError

    _deploy_with_image(clients, settings)
    real = storage.delete_bucket

    def failing(*args, **kwargs):
        raise BackendError("DeleteBucket on S3 bucket failed: InternalError: injected")

    monkeypatch.setattr(storage, "delete_bucket", failing)
    changes = destroy(clients, "lftest")
    actions = _actions(changes)
    assert actions[("bucket", settings.bucket)] == "failed"
    assert actions[("role", "lftest-worker")] == "kept"
    assert [c.name for c in left_behind(changes)] == [settings.bucket, "lftest-worker"]
    monkeypatch.setattr(storage, "delete_bucket", real)
    rerun = _actions(destroy(clients, "lftest"))  # no --bucket: found from the role
    assert rerun[("bucket", settings.bucket)] == "deleted"
    assert rerun[("role", "lftest-worker")] == "deleted"
    assert _everything(clients) == {k: [] for k in _everything(clients)}


def test_the_bucket_is_found_by_its_tag_when_the_role_is_gone(clients, settings):
    _deploy_with_image(clients, settings)
    from lambdaflow.deploy import iam

    iam.delete_role(clients.iam, "lftest-worker", "lftest")
    actions = _actions(destroy(clients, "lftest"))
    assert actions[("bucket", settings.bucket)] == "deleted"


def test_destroy_keeps_the_bucket_and_foreign_resources(clients, settings):
    _deploy_with_image(clients, settings)
    clients.s3.create_bucket(Bucket="someone-elses-bucket")
    changes = destroy(clients, "lftest", keep_bucket=True)
    assert _actions(changes)[("bucket", settings.bucket)] == "kept"
    left = _everything(clients)
    assert sorted(b["Name"] for b in left["buckets"]) == [
        settings.bucket,
        "someone-elses-bucket",
    ]
    assert left["roles"] == left["functions"] == left["repositories"] == []


def test_status_pings_every_function(clients, moto, settings):
    _deploy_with_image(clients, settings)
    good = {
        "lambdaflow_version": __version__,
        "python_version": platform.python_version(),
        "image_variant": settings.image_variant,
    }
    bad = {"lambdaflow_version": "0.0.1", "python_version": platform.python_version()}
    queue_invoke_results(moto, good, good, bad)
    report = status(clients, "lftest")
    assert [f.config["FunctionName"] for f in report.functions] == [
        "lftest-1769",
        "lftest-3008",
        "lftest-10240",
    ]
    assert [f.ok for f in report.functions] == [True, True, False]
    assert "runs lambdaflow 0.0.1" in report.functions[2].error
    assert not report.ok
    assert all(f.image_uri.endswith(f":{__version__}-{settings.image_variant}")
               for f in report.functions)  # fmt: skip
    assert status(clients, "lftest", ping=False).ok
    assert not status(clients, "nothing-here").ok


def test_without_the_tagging_api_the_core_steps_still_run(clients, settings, monkeypatch):
    from lambdaflow.deploy import tagged
    from lambdaflow.errors import ConfigError

    _deploy_with_image(clients, settings)

    def denied(*args):
        raise ConfigError("access denied: GetResources on tagged resources (AccessDenied)")

    monkeypatch.setattr(tagged, "find", denied)
    changes = destroy(clients, "lftest")
    assert [c.action for c in left_behind(changes)] == ["failed"]
    assert _everything(clients) == {k: [] for k in _everything(clients)}
