"""A moto server for the deploy tests: started once per session, reset before each test.

moto runs IAM, S3, ECR, CloudWatch Logs, STS and the Lambda control plane without Docker.
Its Lambda is switched to the Docker-free backend (``use_docker: false``), where Invoke
returns queued payloads (:func:`queue_invoke_results`): the version ping cannot run a real
worker there, so its replies are given by the test.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from lambdaflow.deploy import AwsClients, DeploySettings
from lambdaflow.testing.moto_server import MotoServer


def _post(url: str, body: dict) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).close()


def set_lambda_docker(server: MotoServer, use_docker: bool) -> None:
    _post(
        f"{server.endpoint_url}/moto-api/config", {"lambda": {"use_docker": use_docker}}
    )


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer().start()
    set_lambda_docker(server, False)
    yield server
    server.stop()


@pytest.fixture
def moto(moto_server):
    moto_server.reset()
    return moto_server


@pytest.fixture
def clients(moto) -> AwsClients:
    kwargs = dict(moto.client_kwargs)
    endpoint = kwargs.pop("endpoint_url")
    region = kwargs.pop("region_name")
    return AwsClients.create(region=region, endpoint_url=endpoint, **kwargs)


@pytest.fixture
def settings() -> DeploySettings:
    return DeploySettings(bucket="lambdaflow-test-jobs", name="lftest")


def queue_invoke_results(server: MotoServer, *payloads: dict) -> None:
    """The next Invoke calls on the server return these payloads, in order."""
    _post(
        f"{server.endpoint_url}/moto-api/static/lambda-simple/response",
        {"results": [json.dumps(p) for p in payloads], "region": server.region},
    )


def push_fake_image(
    clients: AwsClients, repository: str, tag: str, seed: str = "1"
) -> str:
    """Put an image manifest into moto's ECR (no layers); returns its digest."""
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(seed),
                "digest": "sha256:" + seed.rjust(64, "0"),
            },
            "layers": [],
        }
    )
    image = clients.ecr.put_image(
        repositoryName=repository, imageManifest=manifest, imageTag=tag
    )["image"]
    return image["imageId"]["imageDigest"]
