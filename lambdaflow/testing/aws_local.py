"""A local stand-in for the AWS side of the ``lambda`` backend: moto (S3, DynamoDB, SQS)
plus the Lambda emulator, wired together.

    with local_aws(concurrency=4) as aws:
        lambdaflow.init(backend="lambda", **aws.config)
        ...
        aws.client("s3").list_objects_v2(Bucket=aws.config["bucket"])

Flow of ``local_aws``: start ``MotoServer`` -> create the bucket with boto3 -> start
the Lambda emulator (``EmulatorProcess``: its own process, so it does not share the
driver's GIL; or ``LambdaEmulator`` in a thread) -> create the function with a real
boto3 ``CreateFunction`` (package type Image, the handler as the image command, as the
production worker image) and
``PutFunctionConcurrency(concurrency)`` -> yield -> stop the emulator (killing every
environment) and moto, also when the body raises.

The execution environments reach moto through the endpoint variables boto3 honours
(``AWS_ENDPOINT_URL_S3``, ``..._DYNAMODB``, ``..._SQS``) plus
``LAMBDAFLOW_S3_ENDPOINT_URL``, with fake credentials and the region, all set in the
function's environment. ``.env`` holds the ``LAMBDAFLOW_*`` and ``AWS_*`` variables a
driver in another shell needs (``lambdaflow local-aws`` prints them).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from lambdaflow.testing.emulator_process import EmulatorProcess
from lambdaflow.testing.lambda_emulator import DEFAULT_HANDLER, LambdaEmulator
from lambdaflow.testing.moto_server import FAKE_CREDENTIALS, MotoServer

logger = logging.getLogger(__name__)

__all__ = ["LocalAws", "local_aws"]

#: The image the function claims to run (only recorded; the emulator runs the handler).
LOCAL_IMAGE_URI = "lambdaflow-worker:local"
LOCAL_ROLE = "arn:aws:iam::123456789012:role/lambdaflow-local"


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
    ) -> None:
        self.moto = moto
        self.emulator = emulator
        self.region = region
        #: Keyword arguments for ``lambdaflow.init(backend="lambda", **config)``.
        self.config: dict[str, Any] = {
            "function_name": function_name,
            "bucket": bucket,
            "prefix": prefix,
            "region": region,
            "lambda_endpoint_url": emulator.endpoint_url,
            "s3_endpoint_url": moto.endpoint_url,
            "max_concurrency": concurrency,
        }
        #: The same settings as environment variables, plus fake AWS credentials.
        self.env: dict[str, str] = {
            "LAMBDAFLOW_BACKEND": "lambda",
            "LAMBDAFLOW_FUNCTION_NAME": function_name,
            "LAMBDAFLOW_BUCKET": bucket,
            "LAMBDAFLOW_PREFIX": prefix,
            "LAMBDAFLOW_REGION": region,
            "LAMBDAFLOW_LAMBDA_ENDPOINT_URL": emulator.endpoint_url,
            "LAMBDAFLOW_S3_ENDPOINT_URL": moto.endpoint_url,
            "LAMBDAFLOW_MAX_CONCURRENCY": str(concurrency),
            **FAKE_CREDENTIALS,
            "AWS_DEFAULT_REGION": region,
        }

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for ``s3``/``dynamodb``/``sqs`` (moto) or ``lambda`` (the
        emulator), with the fake credentials and the region."""
        import boto3

        options = dict(self.moto.client_kwargs, region_name=self.region)
        if service == "lambda":
            options["endpoint_url"] = self.emulator.endpoint_url
        options.update(kwargs)
        return boto3.client(service, **options)

    def function_env(self) -> dict[str, str]:
        """The variables every execution environment gets so its boto3 reaches moto."""
        url = self.moto.endpoint_url
        return {
            "AWS_ENDPOINT_URL_S3": url,
            "AWS_ENDPOINT_URL_DYNAMODB": url,
            "AWS_ENDPOINT_URL_SQS": url,
            "LAMBDAFLOW_S3_ENDPOINT_URL": url,
            **FAKE_CREDENTIALS,
            "AWS_DEFAULT_REGION": self.region,
        }


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
    memory_limit: str | None = None,
    echo_logs: bool = False,
    lambda_port: int = 0,
    moto_port: int | None = None,
    emulator_process: bool = True,
) -> Iterator[LocalAws]:
    """Start moto and the Lambda emulator, create ``bucket`` and ``function_name``.

    ``concurrency`` is the function's reserved concurrency (429 beyond it) and the
    ``max_concurrency`` in ``.config``. ``env`` adds variables to the function's
    environment; ``python_path`` entries are prepended to its PYTHONPATH.
    ``emulator_process=True`` runs the emulator in a child process (``EmulatorProcess``)
    so it does not share the driver's GIL; False runs it in a thread of this process."""
    if concurrency < 1:
        raise ValueError(f"local_aws(concurrency={concurrency}): must be >= 1")
    if not 1 <= timeout_s <= 900:
        raise ValueError(
            f"local_aws(timeout_s={timeout_s}): Lambda allows 1..900 seconds"
        )
    with contextlib.ExitStack() as stack:
        moto = stack.enter_context(MotoServer(port=moto_port, region=region))
        runner = EmulatorProcess if emulator_process else LambdaEmulator
        emulator = stack.enter_context(
            runner(
                port=lambda_port,
                region=region,
                default_concurrency=concurrency,
                python_path=python_path,
                memory_limit=memory_limit,
                echo_logs=echo_logs,
            )
        )
        aws = LocalAws(
            moto,
            emulator,
            function_name=function_name,
            bucket=bucket,
            prefix=prefix,
            region=region,
            concurrency=concurrency,
        )
        s3 = aws.client("s3")
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
            )
        lam = aws.client("lambda")
        lam.create_function(
            FunctionName=function_name,
            Role=LOCAL_ROLE,
            PackageType="Image",
            Code={"ImageUri": LOCAL_IMAGE_URI},
            ImageConfig={"Command": [handler]},
            Timeout=int(timeout_s),
            MemorySize=int(memory_mb),
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
