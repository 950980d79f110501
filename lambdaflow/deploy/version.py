"""Does the deployed worker run the same lambdaflow and Python as this client?

Functions and closures travel cloudpickled (by value for the user's own modules), so the
worker must run the client's lambdaflow version exactly and the same Python major.minor;
anything else fails late and obscurely inside a task. :func:`check_worker_version` asks the
worker with the version ping, one synchronous invoke::

    request  {"lambdaflow": "ping"}
    reply    {"lambdaflow_version": "0.1.0", "python_version": "3.11.7",
              "cloudpickle_version": "3.1.2", "image_variant": "py3.11", ...}

(the ping is answered by ``lambdaflow.runtime.lambda_entry.lambda_handler`` without running
a task) and raises ConfigError with the fix on any mismatch or failure. ``lambdaflow
status`` calls it on each deployed function; the Lambda backend can call it once before a
job starts.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdaflow import variants
from lambdaflow._version import __version__
from lambdaflow.deploy.errors import NOT_FOUND, code
from lambdaflow.errors import ConfigError

PING_EVENT = {"lambdaflow": "ping"}


@dataclass(frozen=True)
class WorkerVersion:
    function_name: str
    lambdaflow_version: str
    python_version: str
    image_variant: str = ""  # "" from workers that predate variants
    cloudpickle_version: str = ""


def _major_minor(version: str) -> str:
    return ".".join(str(version).split(".")[:2])


def check_worker_version(
    lambda_client: Any,
    function_name: str,
    *,
    client_version: str = __version__,
    client_python: str | None = None,
) -> WorkerVersion:
    """Ping ``function_name``; ConfigError unless its versions match this client's.

    lambdaflow must match exactly, Python in major.minor. ``client_version`` and
    ``client_python`` default to this process's.
    """
    client_python = client_python or platform.python_version()
    try:
        wanted = variants.driver_variant(client_python).name
    except ConfigError:
        wanted = "a variant of this Python"
    redeploy = (
        f"build and push image variant {wanted} from this lambdaflow "
        f"(worker_image/build_and_push.sh {wanted}) and run `lambdaflow deploy "
        f"--variant {wanted}`"
    )
    try:
        response = lambda_client.invoke(
            FunctionName=function_name,
            InvocationType="RequestResponse",
            Payload=json.dumps(PING_EVENT).encode(),
        )
    except (ClientError, BotoCoreError) as exc:
        if code(exc) in NOT_FOUND:
            raise ConfigError(
                f"Lambda function {function_name} not found; create it with "
                "`lambdaflow deploy --bucket BUCKET` (see docs/AWS.md)"
            ) from exc
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"version ping of Lambda function {function_name} failed: {first_line[:300]}"
        ) from exc
    body = response["Payload"].read()
    if response.get("FunctionError"):
        raise ConfigError(
            f"worker {function_name} failed the version ping "
            f"({response['FunctionError']}: {body[:300].decode(errors='replace')}); "
            f"its image may be broken or predate the ping: {redeploy}"
        )
    try:
        reply = json.loads(body)
        worker = WorkerVersion(
            function_name,
            str(reply["lambdaflow_version"]),
            str(reply["python_version"]),
            str(reply.get("image_variant") or ""),
            str(reply.get("cloudpickle_version") or ""),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"worker {function_name} answered the version ping with "
            f"{body[:200].decode(errors='replace')!r}, not lambdaflow's reply; is it a "
            f"lambdaflow worker? {redeploy}"
        ) from exc
    if worker.lambdaflow_version != client_version or _major_minor(
        worker.python_version
    ) != _major_minor(client_python):
        shown = f" (image variant {worker.image_variant})" if worker.image_variant else ""
        raise ConfigError(
            f"worker {function_name}{shown} runs lambdaflow {worker.lambdaflow_version} "
            f"on Python {worker.python_version}, this client runs lambdaflow "
            f"{client_version} on "
            f"Python {client_python}; tasks are pickled, so lambdaflow must match exactly "
            f"and Python in major.minor: {redeploy}, or install lambdaflow=="
            f"{worker.lambdaflow_version} on Python {_major_minor(worker.python_version)} "
            "here"
        )
    import cloudpickle

    if worker.cloudpickle_version and worker.cloudpickle_version != cloudpickle.__version__:
        raise ConfigError(
            f"worker {function_name} runs cloudpickle {worker.cloudpickle_version}, this "
            f"client cloudpickle {cloudpickle.__version__}: functions pickled by one may "
            f"not load in the other; {redeploy}, or install cloudpickle=="
            f"{worker.cloudpickle_version} here"
        )
    return worker
