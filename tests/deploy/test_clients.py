from __future__ import annotations

from lambdaflow.deploy.clients import AwsClients, endpoint_for


def test_endpoint_precedence(monkeypatch):
    """The rule of lambdaflow.aws: the flag, then LAMBDAFLOW_<SVC>_ENDPOINT_URL, then
    botocore's own (AWS_ENDPOINT_URL_<SVC>), which the clients show in their meta."""
    for var in ("LAMBDAFLOW_S3_ENDPOINT_URL", "LAMBDAFLOW_LAMBDA_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    assert endpoint_for("s3") is None
    monkeypatch.setenv("LAMBDAFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:1")
    assert endpoint_for("s3") == "http://127.0.0.1:1"
    assert endpoint_for("s3", "http://127.0.0.1:2") == "http://127.0.0.1:2"
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", "http://127.0.0.1:3")
    clients = AwsClients.create(region="us-east-1", aws_access_key_id="x",
                                aws_secret_access_key="y")
    assert clients.s3.meta.endpoint_url == "http://127.0.0.1:1"
    assert clients.lambda_.meta.endpoint_url == "http://127.0.0.1:3"
    assert clients.iam.meta.endpoint_url == "https://iam.amazonaws.com"


def test_clients_talk_to_the_given_endpoint(clients, moto):
    assert clients.s3.meta.endpoint_url == moto.endpoint_url
    assert clients.lambda_.meta.endpoint_url == moto.endpoint_url
    assert clients.identity() == ("aws", "123456789012")


def test_region_from_environment(monkeypatch):
    monkeypatch.setenv("LAMBDAFLOW_REGION", "eu-west-1")
    clients = AwsClients.create(aws_access_key_id="x", aws_secret_access_key="y")
    assert clients.region == "eu-west-1"
    assert clients.s3.meta.region_name == "eu-west-1"
