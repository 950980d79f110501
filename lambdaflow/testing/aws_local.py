"""A local stand-in for the AWS side of the ``lambda`` backend: moto (S3, DynamoDB, SQS,
IAM, STS) plus the Lambda emulator, wired together, with IAM enforced.

    with local_aws(concurrency=4) as aws:
        lambdaflow.init(backend="lambda", **aws.config)   # carries the credentials
        ...
        aws.client("s3").list_objects_v2(Bucket=aws.config["bucket"])

Flow of ``local_aws``:

    MotoServer(iam=True): admin user + key (per run), IAM enforcement armed
      -> IAM user "lambdaflow-lambda-service" (stands in for lambda.amazonaws.com;
         may only sts:AssumeRole the worker role)
      -> role "lambdaflow-local-worker" (``LOCAL_ROLE``): trust = lambda.amazonaws.com + that user, inline
         policy = the worker policy ``lambdaflow deploy`` writes (deploy/iam.py),
         scoped to bucket/prefix (or ``role_policy``)
      -> bucket
    Lambda emulator (``EmulatorProcess``, or ``LambdaEmulator`` in a thread): accepts
      SigV4 from the admin key and the role sessions it hands out; CreateFunction
      (a real boto3 call, package type Image) assumes the role in moto's STS
    yield -> stop the emulator (killing every environment) and moto, also on error.

The driver's credentials travel in ``.config`` (``aws_access_key_id`` /
``aws_secret_access_key``) and ``.env`` (``LAMBDAFLOW_AWS_ACCESS_KEY_ID`` / ...): the
user's own AWS credentials and ``AWS_*`` variables are neither read nor needed. The
execution environments get the role's session (as Lambda sets it) plus the endpoint
variables boto3 honours (``AWS_ENDPOINT_URL_S3``, ``..._DYNAMODB``, ``..._SQS``,
``..._STS``, and ``..._LAMBDA`` from the emulator), so every S3 call a worker makes is
checked by moto against the worker policy.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from lambdaflow.testing.emulator_process import EmulatorProcess
from lambdaflow.testing.lambda_emulator import DEFAULT_HANDLER, LambdaEmulator
from lambdaflow.testing.moto_server import ACCOUNT_ID, MotoServer
from lambdaflow.testing.sigv4 import Credential

logger = logging.getLogger(__name__)

__all__ = ["LocalAws", "local_aws"]

#: The image the function claims to run (only recorded; the emulator runs the handler).
LOCAL_IMAGE_URI = "lambdaflow-worker:local"
SERVICE_USER = "lambdaflow-lambda-service"
#: The execution role every local function is created with (its policy: the worker's).
LOCAL_ROLE_NAME = "lambdaflow-local-worker"
LOCAL_ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/{LOCAL_ROLE_NAME}"


class LocalAws:
    """What ``local_aws`` yields: the running servers and the settings to reach them."""

    def __init__(
        self,
        moto: MotoServer,
        emulator: LambdaEmulator | EmulatorProcess,
        *,
        function_name: str,
        bucket: str,
        prefix: str,
        region: str,
        concurrency: int,
        role_arn: str,
    ) -> None:
        self.moto = moto
        self.emulator = emulator
        self.region = region
        self.role_arn = role_arn
        creds = moto.credentials
        #: Keyword arguments for ``lambdaflow.init(backend="lambda", **config)``.
        self.config: dict[str, Any] = {
            "function_name": function_name,
            "bucket": bucket,
            "prefix": prefix,
            "region": region,
            "lambda_endpoint_url": emulator.endpoint_url,
            "s3_endpoint_url": moto.endpoint_url,
            "max_concurrency": concurrency,
            "aws_access_key_id": creds["aws_access_key_id"],
            "aws_secret_access_key": creds["aws_secret_access_key"],
        }
        #: The same settings as ``LAMBDAFLOW_*`` variables (``lambdaflow local-aws``
        #: prints them); no ``AWS_*`` variable, so a shell's real credentials stay as
        #: they are for everything else.
        self.env: dict[str, str] = {
            "LAMBDAFLOW_BACKEND": "lambda",
            **{f"LAMBDAFLOW_{k.upper()}": str(v) for k, v in self.config.items()},
        }

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client (admin key) for ``s3``/``dynamodb``/``sqs``/``iam``/``sts``
        (moto) or ``lambda`` (the emulator)."""
        import boto3

        options = dict(self.moto.client_kwargs, region_name=self.region)
        if service == "lambda":
            options["endpoint_url"] = self.emulator.endpoint_url
        options.update(kwargs)
        return boto3.client(service, **options)

    def function_env(self) -> dict[str, str]:
        """The variables every execution environment gets so its boto3 reaches moto
        (the role's credentials and ``AWS_ENDPOINT_URL_LAMBDA`` come from the emulator)."""
        url = self.moto.endpoint_url
        return {
            "AWS_ENDPOINT_URL_S3": url,
            "AWS_ENDPOINT_URL_DYNAMODB": url,
            "AWS_ENDPOINT_URL_SQS": url,
            "AWS_ENDPOINT_URL_STS": url,
            "LAMBDAFLOW_S3_ENDPOINT_URL": url,
        }


def worker_role_policy(
    bucket: str, prefix: str, function_name: str, region: str,
    read_locations: Sequence[str] = (),
) -> dict:  # fmt: skip
    """The policy ``lambdaflow deploy`` gives the worker role, for this bucket/prefix
    (``read_locations``: its ``--read`` inputs, e.g. ``s3://videos/in/``)."""
    from lambdaflow.deploy.iam import worker_policy
    from lambdaflow.deploy.settings import DeploySettings

    settings = DeploySettings(
        bucket=bucket, prefix=prefix or "lambdaflow/", read_locations=tuple(read_locations)
    )
    policy = worker_policy(settings, partition="aws", account=ACCOUNT_ID, region=region)
    logs = f"arn:aws:logs:{region}:{ACCOUNT_ID}:log-group:/aws/lambda/{function_name}:*"
    for statement in policy["Statement"]:  # the local function's own log group
        if statement.get("Sid") == "OwnLogs":
            statement["Resource"] = [logs]
    return policy


def _create_role(
    moto: MotoServer, role_name: str, policy: dict
) -> tuple[str, Credential]:
    """The execution role and the service user allowed to assume it."""
    iam = moto.client("iam")
    service_arn = iam.create_user(UserName=SERVICE_USER)["User"]["Arn"]
    role_arn = f"arn:aws:iam::{ACCOUNT_ID}:role/{role_name}"
    iam.put_user_policy(
        UserName=SERVICE_USER,
        PolicyName="assume-execution-roles",
        PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                           "Resource": role_arn}],
        }),
    )  # fmt: skip
    key = iam.create_access_key(UserName=SERVICE_USER)["AccessKey"]
    trust = {  # deploy's trust policy, plus the user that signs for the service
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com", "AWS": service_arn},
            "Action": "sts:AssumeRole",
        }],
    }  # fmt: skip
    iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(
        RoleName=role_name, PolicyName="lambdaflow-worker", PolicyDocument=json.dumps(policy)
    )
    return role_arn, Credential(
        key["AccessKeyId"], key["SecretAccessKey"], None, service_arn
    )


@contextlib.contextmanager
def local_aws(
    concurrency: int = 4,
    *,
    bucket: str = "lambdaflow-local",
    function_name: str = "lambdaflow-worker",
    prefix: str = "lambdaflow/",
    region: str = "us-east-1",
    timeout_s: int = 60,
    memory_mb: int = 1769,
    handler: str = DEFAULT_HANDLER,
    env: dict | None = None,
    python_path: Sequence[str] = (),
    memory_limit: str | None = "rss",
    echo_logs: bool = False,
    lambda_port: int = 0,
    moto_port: int | None = None,
    emulator_process: bool = True,
    role_policy: dict | None = None,
    async_retry_delays_s: Sequence[float] = (60.0, 120.0),
    shared_paths: Sequence[str] = (),
    ephemeral_mb: int = 512,
    read_locations: Sequence[str] = (),
) -> Iterator[LocalAws]:
    """Start moto and the Lambda emulator, create ``bucket`` and ``function_name``.

    ``concurrency`` is the function's reserved concurrency (429 beyond it) and the
    ``max_concurrency`` in ``.config``. ``env`` adds variables to the function's
    environment; ``python_path`` entries are prepended to its PYTHONPATH.
    ``emulator_process=True`` runs the emulator in a child process (``EmulatorProcess``)
    so it does not share the driver's GIL; False runs it in a thread of this process.
    ``role_policy`` replaces the worker policy of ``lambdaflow deploy`` as the execution
    role's inline policy; ``read_locations`` adds its ``--read`` inputs (as ``lambdaflow
    deploy --read``, e.g. ``s3://lambdaflow-local/inputs/``). Each environment has a private /tmp of ``ephemeral_mb`` and a
    read-only code directory; ``shared_paths`` under /tmp stay visible to it."""
    if concurrency < 1:
        raise ValueError(f"local_aws(concurrency={concurrency}): must be >= 1")
    if not 1 <= timeout_s <= 900:
        raise ValueError(
            f"local_aws(timeout_s={timeout_s}): Lambda allows 1..900 seconds"
        )
    with contextlib.ExitStack() as stack:
        moto = stack.enter_context(MotoServer(port=moto_port, region=region, iam=True))
        policy = role_policy or worker_role_policy(
            bucket, prefix, function_name, region, read_locations
        )
        role_arn, service = _create_role(moto, LOCAL_ROLE_NAME, policy)
        s3 = moto.client("s3")
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
            )
        admin = Credential(
            moto.credentials["aws_access_key_id"],
            moto.credentials["aws_secret_access_key"],
            None,
            "lambdaflow-local-admin",
        )
        options: dict[str, Any] = dict(
            port=lambda_port,
            region=region,
            python_path=python_path,
            memory_limit=memory_limit,
            echo_logs=echo_logs,
            async_retry_delays_s=async_retry_delays_s,
            shared_paths=shared_paths,
            credentials=[admin],
            sts_endpoint_url=moto.endpoint_url,
            service_credential=service,
        )
        emulator: EmulatorProcess | LambdaEmulator
        if emulator_process:
            emulator = stack.enter_context(EmulatorProcess(**options))
        else:
            emulator = stack.enter_context(LambdaEmulator(**options))
        aws = LocalAws(
            moto,
            emulator,
            function_name=function_name,
            bucket=bucket,
            prefix=prefix,
            region=region,
            concurrency=concurrency,
            role_arn=role_arn,
        )
        lam = aws.client("lambda")
        lam.create_function(
            FunctionName=function_name,
            Role=role_arn,
            PackageType="Image",
            Code={"ImageUri": LOCAL_IMAGE_URI},
            ImageConfig={"Command": [handler]},
            Timeout=int(timeout_s),
            MemorySize=int(memory_mb),
            EphemeralStorage={"Size": int(ephemeral_mb)},
            Environment={"Variables": {**aws.function_env(), **(env or {})}},
        )
        lam.put_function_concurrency(
            FunctionName=function_name, ReservedConcurrentExecutions=concurrency
        )
        logger.info(
            "local AWS: s3/dynamodb/sqs on %s, lambda on %s, function %s, bucket %s",
            moto.endpoint_url,
            emulator.endpoint_url,
            function_name,
            bucket,
        )
        yield aws
