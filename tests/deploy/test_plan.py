from __future__ import annotations

import platform

from lambdaflow._version import __version__
from lambdaflow.deploy import DeploySettings, deploy, destroy, status
from lambdaflow.deploy.iam import resources_of

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
    push_fake_image(clients, settings.repository_name, __version__)
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
    assert result.image_uri.endswith(f"/lftest:{__version__}")


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
    assert actions[("function", "lftest-3008")] == "unchanged"
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
    assert {c.action for c in changes} == {"deleted"}
    assert len(changes) == 9  # 3 functions, 3 log groups, role, repository, bucket
    assert _everything(clients) == {k: [] for k in _everything(clients)}
    again = destroy(clients, "lftest")
    assert {c.action for c in again} == {"absent"}


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
    assert all(f.image_uri.endswith(f":{__version__}") for f in report.functions)
    assert status(clients, "lftest", ping=False).ok
    assert not status(clients, "nothing-here").ok
