"""Least privilege, checked: the worker role's policy against the AWS calls a job's
worker side makes, recorded while it runs against moto with IAM enforced (14.4, 13.8).

The worker side runs in this process through the real handler
(``lambda_entry.lambda_handler``) with the assumed role's credentials, as a Lambda
environment would: a function loaded from the store, arguments and a dependency from
the store, a 9 MB result (multipart upload), and ``exists`` on a key not yet written
(HEAD: 404 needs s3:ListBucket). Two directions are held: every call is allowed by the
policy (and moto, enforcing it, let it through), and every granted action is needed by
some call, except the ones listed in EXPECTED_UNUSED with the reason.
"""

from __future__ import annotations

import base64

import boto3
import pytest
from botocore.exceptions import ClientError

from lambdaflow import serialization
from lambdaflow.deploy.settings import DeploySettings
from lambdaflow.runtime import integrity, keys
from lambdaflow.runtime.store.s3 import S3Store

from .iam_harness import EnforcedMoto, not_allowed, recording, unused

#: Granted but not called by code on the worker, and why.
EXPECTED_UNUSED = {
    # only when a multipart upload fails; when a task outlives its job's driver
    "JobObjects": ["s3:AbortMultipartUpload", "s3:DeleteObject"],
    "OwnLogs": ["logs:CreateLogStream", "logs:PutLogEvents"],  # the Lambda service's
    "InvokeDeployment": ["lambda:InvokeFunction"],  # a worker invoking its deployment
}


def _task_fn(n_bytes, missing_key, store_uri, dep=None):
    from lambdaflow.runtime.store import open_store

    exists = open_store(store_uri).exists(missing_key)
    return {"exists": exists, "dep": dep, "payload": b"x" * n_bytes}


@pytest.fixture(scope="module")
def enforced():
    with EnforcedMoto() as moto:
        yield moto


def test_a_jobs_worker_calls_are_exactly_what_the_role_grants(enforced, monkeypatch):
    from lambdaflow.runtime import lambda_entry
    from lambdaflow.runtime import store as store_module
    from lambdaflow.runtime.task import TaskMessage, TaskResult

    settings = DeploySettings(bucket="jobs-enforced", name="lfiam")
    admin_s3 = enforced.client("s3")
    admin_s3.create_bucket(Bucket=settings.bucket)
    job_key = integrity.new_job_key()  # the worker checks the stored blobs under it
    driver = integrity.SignedStore(
        S3Store(settings.bucket, settings.prefix, client=admin_s3), job_key)
    digest, fn = serialization.dumps_function(_task_fn)
    fn_key = keys.function_key("job1", digest)
    driver.put(fn_key, fn)
    dep_key = keys.object_key("job1", "dep0")
    driver.put(dep_key, serialization.dumps_bytes("the dependency"))
    missing = keys.object_key("job1", "not-yet-written")
    args_key = keys.args_key("job1", "t1")
    driver.put(args_key, serialization.dumps_bytes(
        ((9 * 1024 * 1024, missing, driver.uri), {})))  # fmt: skip
    policy = enforced.role(settings)
    enforced.enforce()
    try:
        monkeypatch.setattr(store_module, "_OPEN", {})  # a fresh "execution environment"
        with enforced.as_role(monkeypatch), recording() as calls:
            from lambdaflow.runtime.task import DepSlot

            small = TaskMessage(job_id="job1", task_id="t0", name="f", fn_key=fn_key,
                                args=serialization.dumps_bytes(
                                    ((10, missing, driver.uri, DepSlot(0)), {})),
                                deps=[{"key": dep_key}], store_uri=driver.uri,
                                job_key=job_key)  # fmt: skip
            big = TaskMessage(job_id="job1", task_id="t1", name="f", fn_key=fn_key,
                              args_key=args_key, store_uri=driver.uri,
                              job_key=job_key)  # fmt: skip
            results = []
            for msg in (small, big):
                out = lambda_entry.lambda_handler(
                    {"lf": 1, "task": base64.b64encode(msg.pack()).decode()}, None)
                results.append(TaskResult.unpack(base64.b64decode(out["result"])))
        assert [r.status for r in results] == ["ok", "ok"], [
            (r.error or {}).get("message") for r in results]
        value = serialization.loads(results[0].values[0]["inline"])
        assert value["exists"] is False and value["dep"] == "the dependency"
        assert "key" in results[1].values[0]  # 9 MB went to the store (multipart)
        assert ("s3:PutObject", f"arn:aws:s3:::{settings.bucket}/lambdaflow/"
                "job1/obj/t1") in calls  # fmt: skip
        assert not_allowed(policy, calls) == []
        assert unused(policy, calls) == EXPECTED_UNUSED

        # A lost input under the role is a lost input (the driver rebuilds it), not a
        # config error. (This harness is moto's own enforcement, which says 404; AWS says
        # 403 here since the role may list only the job prefix: the lambda conformance
        # suite's lost-object tests run under local_aws's AWS semantics for that case.)
        lost = TaskMessage(job_id="job1", task_id="t2", name="f", fn_key=fn_key,
                           args=serialization.dumps_bytes(
                               ((10, missing, driver.uri, DepSlot(0)), {})),
                           deps=[{"key": missing}], store_uri=driver.uri,
                           job_key=job_key)  # fmt: skip
        with enforced.as_role(monkeypatch):
            out = lambda_entry.lambda_handler(
                {"lf": 1, "task": base64.b64encode(lost.pack()).decode()}, None)
        result = TaskResult.unpack(base64.b64decode(out["result"]))
        assert result.status == "lost", (result.status, result.error)

        # The enforcement is real: outside the grant, the same credentials are refused.
        s3 = boto3.client("s3", endpoint_url=enforced.server.endpoint_url,
                          region_name="us-east-1", **enforced.role_credentials)  # fmt: skip
        for call in (lambda: s3.get_object(Bucket=settings.bucket, Key="other/x"),
                     lambda: s3.delete_object(Bucket=settings.bucket, Key=dep_key)):
            with pytest.raises(ClientError) as info:
                call()
            assert info.value.response["Error"]["Code"] == "AccessDenied"
    finally:
        enforced.enforce(False)
