"""boto3 clients for deploy / destroy / status, built by :mod:`lambdaflow.aws`.

Endpoint of service ``svc`` (``s3``, ``iam``, ``ecr``, ``lambda``, ``logs``, ``sts``,
``dynamodb``, ``sqs``, ``resourcegroupstaggingapi``), first found wins (the rule of
:mod:`lambdaflow.aws`)::

    endpoint_url argument (the --endpoint-url flag: every service)
    LAMBDAFLOW_<SVC>_ENDPOINT_URL   e.g. LAMBDAFLOW_LAMBDA_ENDPOINT_URL, LAMBDAFLOW_S3_ENDPOINT_URL
    botocore's own: AWS_ENDPOINT_URL_<SVC>, AWS_ENDPOINT_URL, the profile, FIPS, partitions

so the tests point every client at one moto server. The region is the argument, else
``LAMBDAFLOW_REGION``, else boto3's own resolution (AWS_REGION, profile), else us-east-1.
Control-plane calls use botocore's standard retry mode with 8 attempts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lambdaflow import aws
from lambdaflow.errors import ConfigError

SERVICES = (
    "s3", "iam", "ecr", "lambda", "logs", "sts", "dynamodb", "sqs",
    "resourcegroupstaggingapi",
)  # fmt: skip
#: Total attempts per control-plane call (botocore standard mode).
ATTEMPTS = 8


def endpoint_for(service: str, endpoint_url: str | None = None) -> str | None:
    """The endpoint ``service`` is given explicitly (None: botocore resolves it)."""
    return endpoint_url or aws.AwsSettings().endpoint(service)


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
        *,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
    ) -> AwsClients:
        """Clients for ``region`` (credentials given explicitly in tests, else boto3's)."""
        base = aws.AwsSettings.from_env()
        settings = aws.AwsSettings(
            region=region or base.region,
            endpoints=tuple((svc, endpoint_url) for svc in SERVICES) if endpoint_url else (),
            access_key_id=aws_access_key_id or base.access_key_id,
            secret_access_key=aws_secret_access_key or base.secret_access_key,
            session_token=aws_session_token or base.session_token,
        )
        sess = aws.session(settings)
        resolved = aws.region(settings, sess)
        settings = settings.with_region(resolved)
        clients = {
            service: aws.client(service, settings, sess=sess, attempts=ATTEMPTS)
            for service in SERVICES
        }
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
            region=resolved,
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

