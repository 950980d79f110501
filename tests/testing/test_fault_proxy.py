"""The fault proxy: each fault once, everything else forwarded byte for byte."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from lambdaflow.testing.fault_proxy import FaultProxy
from lambdaflow.testing.moto_server import MotoServer


@pytest.fixture(scope="module")
def setup():
    with MotoServer(iam=True) as moto, FaultProxy(moto.endpoint_url) as proxy:
        s3 = boto3.client("s3", **dict(moto.client_kwargs, endpoint_url=proxy.endpoint_url),
                          config=Config(retries={"total_max_attempts": 1}))  # fmt: skip
        s3.create_bucket(Bucket="proxied")
        yield moto, proxy, s3


def test_faults_are_injected_once_each(setup):
    moto, proxy, s3 = setup
    s3.put_object(Bucket="proxied", Key="k", Body=b"v" * 100_000)  # signed via the proxy
    for fault, code in (("503", "SlowDown"), ("500", "InternalError")):
        proxy.inject(fault, lambda m, p: m == "GET")
        with pytest.raises(ClientError) as info:
            s3.get_object(Bucket="proxied", Key="k")
        assert info.value.response["Error"]["Code"] == code
    proxy.inject("reset", lambda m, p: m == "GET")
    with pytest.raises((ConnectionClosedError, EndpointConnectionError, ConnectionError)):
        s3.get_object(Bucket="proxied", Key="k")
    proxy.inject("reset-after", lambda m, p: m == "PUT")
    with pytest.raises((ConnectionClosedError, EndpointConnectionError, ConnectionError)):
        s3.put_object(Bucket="proxied", Key="k2", Body=b"done anyway")
    direct = moto.client("s3")
    assert direct.get_object(Bucket="proxied", Key="k2")["Body"].read() == b"done anyway"
    assert s3.get_object(Bucket="proxied", Key="k")["Body"].read() == b"v" * 100_000
    assert s3.head_object(Bucket="proxied", Key="k")["ContentLength"] == 100_000
    assert proxy.pending() == 0
    assert [f for f, _, _ in proxy.stats()["injected"]] == [
        "503", "500", "reset", "reset-after"
    ]
    with pytest.raises(ValueError, match="fault"):
        proxy.inject("timeout")
