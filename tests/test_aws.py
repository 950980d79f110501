"""lambdaflow.aws: the one client factory. Endpoints are checked against the hosts AWS
documents for Lambda and S3 (standard, FIPS, China, GovCloud); S3 traffic goes to a
moto server on 127.0.0.1; proxies and CA bundles against botocore's own rules."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("boto3")

from lambdaflow import aws, config
from lambdaflow.errors import ConfigError
from lambdaflow.testing.moto_server import FAKE_CREDENTIALS, MotoServer

CREDS = {
    "access_key_id": FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
    "secret_access_key": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    "session_token": FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
}


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No AWS settings or credentials from the machine: only what a test sets."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "LAMBDAFLOW_", "REQUESTS_CA")) or name.lower().endswith(
            "_proxy"
        ):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    aws.clear_shared_clients()
    yield monkeypatch
    aws.clear_shared_clients()


@pytest.fixture(scope="module")
def moto():
    with MotoServer() as server:
        yield server


# -------------------------------------------------------------------- endpoints


@pytest.mark.parametrize(
    ("region", "env", "expected"),
    [
        ("us-east-1", {}, "https://lambda.us-east-1.amazonaws.com"),
        ("us-east-1", {"AWS_USE_FIPS_ENDPOINT": "true"}, "https://lambda-fips.us-east-1.amazonaws.com"),
        ("cn-north-1", {}, "https://lambda.cn-north-1.amazonaws.com.cn"),
        ("us-gov-west-1", {}, "https://lambda.us-gov-west-1.amazonaws.com"),
    ],
)
def test_lambda_endpoint_follows_botocore(clean_env, region, env, expected):
    for k, v in env.items():
        clean_env.setenv(k, v)
    made = aws.client("lambda", aws.AwsSettings(region=region, **CREDS))
    assert made.meta.endpoint_url == expected


def test_endpoint_precedence(clean_env):
    settings = aws.AwsSettings(region="us-east-1", **CREDS)
    assert aws.client("s3", settings).meta.endpoint_url == "https://s3.amazonaws.com"
    clean_env.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:3")  # botocore's own
    assert aws.client("s3", settings).meta.endpoint_url == "http://127.0.0.1:3"
    clean_env.setenv("LAMBDAFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:2")
    assert aws.client("s3", settings).meta.endpoint_url == "http://127.0.0.1:2"
    explicit = settings.with_endpoint("s3", "http://127.0.0.1:1")
    assert aws.client("s3", explicit).meta.endpoint_url == "http://127.0.0.1:1"
    assert aws.endpoint_env_var("lambda") == "LAMBDAFLOW_LAMBDA_ENDPOINT_URL"


def test_settings_from_config_and_environment(clean_env):
    clean_env.setenv("LAMBDAFLOW_REGION", "eu-west-1")
    clean_env.setenv("LAMBDAFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    clean_env.setenv("LAMBDAFLOW_AWS_ACCESS_KEY_ID", "AKIDENV")
    clean_env.setenv("LAMBDAFLOW_AWS_SECRET_ACCESS_KEY", "secret-from-env")
    settings = aws.AwsSettings.from_env()
    assert settings.region == "eu-west-1" and settings.endpoint("s3") == "http://127.0.0.1:9"
    assert aws.session(settings).get_credentials().access_key == "AKIDENV"
    cfg = config.resolve(aws_access_key_id="AKIDARG", aws_secret_access_key="s3cr3t-arg")
    assert aws.AwsSettings.from_config(cfg).access_key_id == "AKIDARG"
    with pytest.raises(ConfigError, match="incomplete"):
        aws.AwsSettings(access_key_id="only-half")


def test_region_rule(clean_env):
    assert aws.region(aws.AwsSettings()) == "us-east-1"
    clean_env.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    assert aws.region(aws.AwsSettings()) == "eu-north-1"
    clean_env.setenv("AWS_REGION", "ap-south-1")  # Lambda's variable; other SDKs' first
    assert aws.region(aws.AwsSettings()) == "ap-south-1"
    assert aws.region(aws.AwsSettings(region="sa-east-1")) == "sa-east-1"


def test_credentials_stay_out_of_reprs(clean_env):
    secret = "wJalrXUtnFEMI-do-not-print"
    cfg = config.resolve(aws_access_key_id="AKIDX", aws_secret_access_key=secret,
                         aws_session_token="token-do-not-print")
    settings = aws.AwsSettings.from_config(cfg)
    for text in (repr(cfg), repr(settings), str(settings)):
        assert secret not in text and "token-do-not-print" not in text


def test_without_credentials_boto3_finds_none(clean_env):
    assert aws.session(aws.AwsSettings()).get_credentials() is None
    clean_env.setenv("AWS_ACCESS_KEY_ID", "AKIDCHAIN")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "x")
    assert aws.session(aws.AwsSettings()).get_credentials().access_key == "AKIDCHAIN"


# -------------------------------------------------------------- S3 through moto


def test_s3_on_a_custom_endpoint_uses_path_style(clean_env, moto):
    """A bucket cannot be a subdomain of 'localhost': only path-style requests work."""
    endpoint = moto.endpoint_url.replace("127.0.0.1", "localhost")
    clean_env.setenv("AWS_ENDPOINT_URL_S3", endpoint)  # resolved by botocore
    made = aws.client("s3", aws.AwsSettings(region="us-east-1", **CREDS))
    made.create_bucket(Bucket="lf-aws-path-style")
    made.put_object(Bucket="lf-aws-path-style", Key="k", Body=b"v")
    assert made.get_object(Bucket="lf-aws-path-style", Key="k")["Body"].read() == b"v"


def test_every_s3_factory_honours_lambdaflow_s3_endpoint_url(clean_env, moto):
    """The user-facing bug of issue 13: the video source ignored LAMBDAFLOW_S3_ENDPOINT_URL
    and went to s3.amazonaws.com. With only that variable (and credentials) set, the
    video source, the store and deploy all reach moto."""
    from lambdaflow.deploy.clients import AwsClients
    from lambdaflow.ops import videosource
    from lambdaflow.runtime.store.s3 import S3Store

    clean_env.setenv("LAMBDAFLOW_S3_ENDPOINT_URL", moto.endpoint_url)
    for k, v in FAKE_CREDENTIALS.items():
        clean_env.setenv(k, v)
    s3 = videosource.s3_client()
    assert s3.meta.endpoint_url == moto.endpoint_url
    s3.create_bucket(Bucket="lf-aws-factories")
    s3.put_object(Bucket="lf-aws-factories", Key="in/v.bin", Body=b"0123456789")
    assert videosource.S3File("s3://lf-aws-factories/in/v.bin").size == 10
    store = S3Store.from_uri("s3://lf-aws-factories/lambdaflow/")
    store.put("x", b"abc")
    assert bytes(store.get("x")) == b"abc"
    assert AwsClients.create().s3.meta.endpoint_url == moto.endpoint_url


def test_shared_client_is_cached_per_environment(clean_env):
    clean_env.setenv("AWS_ACCESS_KEY_ID", "a")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "b")
    first = aws.shared_client("s3")
    assert aws.shared_client("s3") is first
    clean_env.setenv("LAMBDAFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:7")
    second = aws.shared_client("s3")
    assert second is not first and second.meta.endpoint_url == "http://127.0.0.1:7"


# -------------------------------------------------------- transport (http_route)


def _route(service: str = "lambda", region: str = "us-east-1"):
    settings = aws.AwsSettings(region=region, **CREDS)
    sess = aws.session(settings)
    return aws.http_route(aws.client(service, settings, sess=sess), sess)


def test_route_proxy_and_no_proxy(clean_env):
    assert _route().proxy_url is None
    clean_env.setenv("HTTPS_PROXY", "http://user:pw@127.0.0.1:3128")
    route = _route()
    assert route.url == "https://lambda.us-east-1.amazonaws.com"
    assert route.proxy_url == "http://user:pw@127.0.0.1:3128"
    assert route.proxy_headers["Proxy-Authorization"].startswith("Basic ")
    clean_env.setenv("NO_PROXY", ".amazonaws.com")
    assert _route().proxy_url is None


def test_route_ca_bundle(clean_env, tmp_path):
    assert _route().verify is True
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    clean_env.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "requests.pem"))
    assert _route().verify == str(tmp_path / "requests.pem")
    clean_env.setenv("AWS_CA_BUNDLE", str(bundle))
    assert _route().verify == str(bundle)
