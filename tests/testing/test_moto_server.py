"""MotoServer(iam=True): a gate in front of moto and moto's IAM enforcement armed."""

from __future__ import annotations

import urllib.error
import urllib.request

import boto3
import pytest
from botocore.exceptions import ClientError

from lambdaflow.testing.moto_server import MotoServer


@pytest.fixture(scope="module")
def moto():
    with MotoServer(iam=True) as server:
        yield server


def _status(url: str, method: str = "GET", data: bytes | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, method=method)):
            return 200
    except urllib.error.HTTPError as exc:
        return exc.code


def test_strangers_are_refused(moto):
    moto.client("s3").create_bucket(Bucket="gate-test")
    # anonymous, unknown keys, a known key id with a wrong secret
    assert _status(f"{moto.endpoint_url}/gate-test") == 403
    for key_id, secret in (("testing", "testing"),
                           (moto.credentials["aws_access_key_id"], "x" * 40)):  # fmt: skip
        s3 = boto3.client("s3", endpoint_url=moto.endpoint_url, region_name="us-east-1",
                          aws_access_key_id=key_id, aws_secret_access_key=secret)  # fmt: skip
        with pytest.raises(ClientError) as info:
            s3.list_objects_v2(Bucket="gate-test")
        assert info.value.response["Error"]["Code"] in (
            "InvalidAccessKeyId", "SignatureDoesNotMatch"
        )
    # moto's own control routes: switching IAM off, resetting everything
    assert _status(f"{moto.endpoint_url}/moto-api/reset-auth", "POST", b"inf") == 403
    assert _status(f"{moto.endpoint_url}/moto-api/reset", "POST", b"") == 403
    assert moto.client("s3").head_bucket(Bucket="gate-test")  # still armed, still there


def test_reset_creates_new_admin_keys_and_stays_armed(moto):
    old = dict(moto.credentials)
    moto.reset()
    assert moto.credentials != old
    assert moto.client("s3").list_buckets()["Buckets"] == []
    stale = boto3.client("s3", endpoint_url=moto.endpoint_url, region_name="us-east-1",
                         **old)  # fmt: skip
    with pytest.raises(ClientError, match="InvalidAccessKeyId"):
        stale.list_buckets()
