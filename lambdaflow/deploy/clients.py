"""boto3 clients for deploy / destroy / status, with per-service endpoint overrides.

Endpoint of service ``svc`` (``s3``, ``iam``, ``ecr``, ``lambda``, ``logs``, ``sts``,
``dynamodb``, ``sqs``, ``resourcegroupstaggingapi``), first found wins::

    endpoint_url argument (the --endpoint-url flag: every service)
    LAMBDAFLOW_<SVC>_ENDPOINT_URL   e.g. LAMBDAFLOW_LAMBDA_ENDPOINT_URL, LAMBDAFLOW_S3_ENDPOINT_URL
    LAMBDAFLOW_ENDPOINT_URL         every service
    AWS_ENDPOINT_URL_<SVC> / AWS_ENDPOINT_URL   (read by boto3 itself)

so the tests point every client at one moto server. The region is the argument, else
``LAMBDAFLOW_REGION``, else boto3's own resolution (AWS_REGION, profile), else us-east-1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from lambdaflow.errors import ConfigError

SERVICES = (
    "s3", "iam", "ecr", "lambda", "logs", "sts", "dynamodb", "sqs",
    "resourcegroupstaggingapi",
)  # fmt: skip


def endpoint_for(service: str, endpoint_url: str | None = None) -> str | None:
    if endpoint_url:
        return endpoint_url
    return (
        os.environ.get(f"LAMBDAFLOW_{service.upper()}_ENDPOINT_URL")
        or os.environ.get("LAMBDAFLOW_ENDPOINT_URL")
        or None  # boto3 reads AWS_ENDPOINT_URL(_<SVC>) when we pass none
    )


@dataclass
class AwsClients:
    """One client per service; build with :meth:`create`."""

    s3: Any
    iam: Any
    ecr: Any
    lambda_: Any
    logs: Any
    sts: Any
    dynamodb: Any
    sqs: Any
    tagging: Any
    region: str

    @classmethod
    def create(
        cls,
        region: str | None = None,
        endpoint_url: str | None = None,
        **client_kwargs: Any,
    ) -> AwsClients:
        """Clients for ``region``; ``client_kwargs`` go to every ``boto3.client`` call
        (credentials in tests)."""
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:  # pragma: no cover - the aws extra is missing
            raise ConfigError(
                "deploy needs boto3: pip install 'lambdaflow[aws]'"
            ) from exc
        session = boto3.session.Session()
        region = region or os.environ.get("LAMBDAFLOW_REGION") or session.region_name
        region = region or "us-east-1"
        config = Config(retries={"max_attempts": 8, "mode": "standard"})
        clients = {}
        for service in SERVICES:
            kwargs = dict(client_kwargs)
            endpoint = endpoint_for(
                service, kwargs.pop("endpoint_url", None) or endpoint_url
            )
            if endpoint:
                kwargs["endpoint_url"] = endpoint
            kwargs.setdefault("region_name", region)
            clients[service] = session.client(service, config=config, **kwargs)
        return cls(
            s3=clients["s3"],
            iam=clients["iam"],
            ecr=clients["ecr"],
            lambda_=clients["lambda"],
            logs=clients["logs"],
            sts=clients["sts"],
            dynamodb=clients["dynamodb"],
            sqs=clients["sqs"],
            tagging=clients["resourcegroupstaggingapi"],
            region=region,
        )

    def identity(self) -> tuple[str, str]:
        """``(partition, account id)`` of the caller; ConfigError without credentials."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            arn = self.sts.get_caller_identity()["Arn"]
        except (BotoCoreError, ClientError) as exc:
            raise ConfigError(
                f"cannot identify the AWS account ({exc}); configure credentials "
                "(aws configure, AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
            ) from exc
        parts = arn.split(":")
        return parts[1], parts[4]

