from __future__ import annotations

from lambdaflow.deploy.clients import AwsClients, endpoint_for


def test_endpoint_precedence(monkeypatch):
    for var in ("LAMBDAFLOW_S3_ENDPOINT_URL", "LAMBDAFLOW_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    assert endpoint_for("s3") is None
    monkeypatch.setenv("LAMBDAFLOW_ENDPOINT_URL", "http://all")
    assert endpoint_for("s3") == "http://all"
    monkeypatch.setenv("LAMBDAFLOW_S3_ENDPOINT_URL", "http://s3")
    assert endpoint_for("s3") == "http://s3"
    assert endpoint_for("lambda") == "http://all"
    assert endpoint_for("s3", "http://flag") == "http://flag"


def test_clients_talk_to_the_given_endpoint(clients, moto):
    assert clients.s3.meta.endpoint_url == moto.endpoint_url
    assert clients.lambda_.meta.endpoint_url == moto.endpoint_url
    assert clients.identity() == ("aws", "123456789012")


def test_region_from_environment(monkeypatch):
    monkeypatch.setenv("LAMBDAFLOW_REGION", "eu-west-1")
    clients = AwsClients.create(aws_access_key_id="x", aws_secret_access_key="y")
    assert clients.region == "eu-west-1"
    assert clients.s3.meta.region_name == "eu-west-1"
