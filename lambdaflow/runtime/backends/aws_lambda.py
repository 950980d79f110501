"""The ``lambda`` backend: every task is one synchronous invocation of the universal
worker function; objects pass through S3.

    submit(msg) ─> queue ─> invoker threads (at most max_concurrency) ─> Invoke API
                                 │  (lambda_invoke: signed POSTs on kept-alive connections)
                                 │  429 TooManyRequests: sleep (retryAfterSeconds or
                                 │  exponential backoff, full jitter), count, try again
                                 │  FunctionError Unhandled: CRASH or TIMEOUT result
                                 │  with the log tail (LogType=Tail)
                                 └> future done with the worker's TaskResult

Payloads stay under Lambda's 6 MB synchronous limit: the message is base64 msgpack in
JSON, and when it would be too big its largest inline dependencies move to S3 under keys
derived from (job, task), so a retried invocation rewrites the same keys. The worker
spills large results the same way (``lambda_entry``). Credentials, signing and the
configuration checks come from boto3 / botocore; the hot path skips boto3's per-call
machinery (see ``lambda_invoke``).
"""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import time
from concurrent.futures import Future
from typing import Any

from lambdaflow import aws, limits
from lambdaflow.config import Config
from lambdaflow.errors import BackendError, ConfigError
from lambdaflow.runtime import keys
from lambdaflow.runtime.backends import tiers
from lambdaflow.runtime.backends.lambda_invoke import InvokeConnectionError, Invoker, InvokeReply
from lambdaflow.runtime.backends.pool import TaskThreads
from lambdaflow.runtime.task import CRASH, TIMEOUT, TaskMessage, TaskResult, failure

log = logging.getLogger(__name__)

#: The packed task message may be this big before base64 + JSON fill the request limit.
PAYLOAD_BUDGET = limits.base64_budget(limits.SYNC_REQUEST_BYTES)
CONNECTION_RETRIES = 4
THROTTLE_BASE_S = 0.05
THROTTLE_CAP_S = 5.0


def _require(value: Any, name: str, hint: str) -> Any:
    if not value:
        raise ConfigError(
            f"the lambda backend needs {name}: pass lambdaflow.init(backend='lambda', "
            f"{name}=...) or set LAMBDAFLOW_{name.upper()}; {hint}"
        )
    return value


class LambdaBackend:
    name = "lambda"
    eager_delete = False  # freed objects go with the job prefix at shutdown

    def __init__(self, config: Config, job_id: str) -> None:
        try:
            import botocore.exceptions
        except ImportError as exc:
            raise ConfigError("the lambda backend needs boto3: pip install 'lambdaflow[aws]'") from exc
        from lambdaflow.runtime.store.s3 import S3Store

        self._exc = botocore.exceptions
        self.function_name = _require(
            config.function_name, "function_name",
            "create the function with `lambdaflow deploy` (or `lambdaflow local-aws` to try it locally)")
        bucket = _require(config.bucket, "bucket",
                          "create it with `lambdaflow deploy` or `aws s3 mb s3://NAME`")
        self.max_concurrency = max(1, int(config.max_concurrency))
        settings = aws.AwsSettings.from_config(config)
        session = aws.session(settings)
        self.region = aws.region(settings, session)
        settings = settings.with_region(self.region)
        self.client = aws.client("lambda", settings, sess=session, attempts=1,
                                 read_timeout=config.invoke_timeout_s)
        self.store = S3Store(bucket, config.prefix, settings=settings,
                             max_pool_connections=self.max_concurrency + 4)
        self.invoker = Invoker(session, self.region, self.client.meta.endpoint_url,
                               self.function_name, config.invoke_timeout_s)
        self._session, self._config = session, config
        self._tiers = tiers.parse_tiers(config.memory_tiers or "")
        self._invokers = {self.function_name: self.invoker}
        self._invokers_lock = threading.Lock()
        self.job_id = job_id
        self.throttles = 0
        self._pool = TaskThreads(self.max_concurrency, self._run, "lambdaflow-invoke")
        self._check()

    # ----------------------------------------------------------------- checks
    def _check(self) -> None:
        """Fail before the job starts: no credentials, no function, no bucket, or a
        worker whose lambdaflow / Python version differs from this client's."""
        from lambdaflow.runtime.lambda_entry import version_info

        try:
            reply = self._invoke_json({"lambdaflow": "ping"})
        except self._exc.NoCredentialsError:
            raise ConfigError(
                "no AWS credentials found: configure them (aws configure, AWS_PROFILE or "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) before using the lambda backend"
            ) from None
        except self._exc.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                raise ConfigError(
                    f"Lambda function {self.function_name!r} does not exist in {self.region}; "
                    "create it with `lambdaflow deploy` (or run `lambdaflow local-aws`)"
                ) from None
            raise BackendError(f"cannot invoke {self.function_name!r}: {exc}") from exc
        mine = version_info()
        if reply.get("lambdaflow_version") != mine["lambdaflow_version"] or (
            str(reply.get("python_version", "")).rsplit(".", 1)[0]
            != mine["python_version"].rsplit(".", 1)[0]
        ):
            raise ConfigError(
                f"the worker function {self.function_name!r} runs lambdaflow "
                f"{reply.get('lambdaflow_version')} on Python {reply.get('python_version')}, "
                f"but this client is lambdaflow {mine['lambdaflow_version']} on Python "
                f"{mine['python_version']}; rebuild and redeploy the worker image "
                "(worker_image/build_and_push.sh, then `lambdaflow deploy`)"
            )
        try:
            self.store.client.head_bucket(Bucket=self.store.bucket)
        except self._exc.ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (404, 403):
                raise ConfigError(
                    f"S3 bucket {self.store.bucket!r} does not exist or is not accessible "
                    f"({status}); create it with `lambdaflow deploy` or `aws s3 mb "
                    f"s3://{self.store.bucket}`"
                ) from None
            raise BackendError(f"cannot reach S3 bucket {self.store.bucket!r}: {exc}") from exc

    def _invoke_json(self, payload: dict) -> dict:
        resp = self.client.invoke(FunctionName=self.function_name,
                                  Payload=json.dumps(payload).encode())
        body = resp["Payload"].read()
        if resp.get("FunctionError"):
            raise BackendError(f"{self.function_name!r} failed a version ping: {body[:500]!r}")
        return json.loads(body)

    # ----------------------------------------------------------------- submit
    def submit(self, msg: TaskMessage) -> Future:
        if self._pool.closed:
            raise BackendError("the lambda backend is shut down")
        return self._pool.submit(msg)

    def shutdown(self) -> None:
        self._pool.shutdown()

    def _payload(self, msg: TaskMessage) -> bytes:
        packed = msg.pack()
        if len(packed) > PAYLOAD_BUDGET:
            order = sorted(range(len(msg.deps)),
                           key=lambda i: -len(msg.deps[i].get("inline") or b""))
            for i in order:
                dep = msg.deps[i]
                if "inline" not in dep:
                    continue
                key = keys.object_key(msg.job_id, f"{msg.task_id}-dep{i}")
                self.store.put(key, dep["inline"])
                msg.deps[i] = {"key": key, "size": dep.get("size")}
                packed = msg.pack()
                if len(packed) <= PAYLOAD_BUDGET:
                    break
            if len(packed) > PAYLOAD_BUDGET and msg.args is not None:
                key = keys.args_key(msg.job_id, msg.task_id)
                self.store.put(key, msg.args)
                msg.args, msg.args_key = None, key
                packed = msg.pack()
        data = json.dumps({"lf": 1, "task": base64.b64encode(packed).decode("ascii")}).encode()
        if len(data) > limits.SYNC_REQUEST_BYTES:
            raise BackendError(
                f"task {msg.name}[{msg.task_id}]: its invoke payload is {len(data)} bytes even "
                f"after moving its values to S3 (Lambda's limit: {limits.SYNC_REQUEST_BYTES} "
                "bytes); pass fewer dependencies per task"
            )
        return data

    def _invoker_for(self, msg: TaskMessage) -> Invoker:
        """The deployed memory tier for a task's ``memory_mb`` (``lambdaflow deploy``
        makes one function per tier, ``<name>-<MB>``); else the configured function."""
        memory = msg.options.get("memory_mb")
        if not memory or not self._tiers:
            return self.invoker
        base = tiers.deployment_of(self.function_name)
        if base is None:
            return self.invoker
        name = tiers.tier_function_name(base, int(memory), self._tiers)
        with self._invokers_lock:
            inv = self._invokers.get(name)
            if inv is None:
                inv = self._invokers[name] = Invoker(
                    self._session, self.region, self.client.meta.endpoint_url, name,
                    self._config.invoke_timeout_s)
        return inv

    def _run(self, msg: TaskMessage) -> TaskResult:
        payload = self._payload(msg)
        invoker = self._invoker_for(msg)
        throttles = retries = 0
        while True:
            try:
                reply = invoker.invoke(payload)
            except InvokeConnectionError as exc:
                retries += 1
                if retries > CONNECTION_RETRIES:
                    return failure(msg.task_id, msg.attempt, CRASH,
                                   f"could not reach Lambda after {retries} tries: {exc}")
                time.sleep(random.uniform(0, THROTTLE_BASE_S * 2 ** retries))
                continue
            if reply.status == 429 or reply.error_type == "TooManyRequestsException":
                throttles += 1
                self.throttles += 1
                time.sleep(self._throttle_delay(reply.retry_after, throttles))
                continue
            if reply.status >= 500 and retries < CONNECTION_RETRIES:
                retries += 1
                time.sleep(random.uniform(0, THROTTLE_BASE_S * 2 ** retries))
                continue
            break
        if reply.status >= 400:
            err = reply.error_json()
            raise BackendError(
                f"task {msg.name}[{msg.task_id}]: invoking {self.function_name!r} failed: "
                f"HTTP {reply.status} {reply.error_type}: "
                f"{err.get('message') or err.get('Message') or reply.body[:300]!r}"
            )
        if reply.function_error:
            result = self._function_error(msg, reply)
        else:
            try:
                result = TaskResult.unpack(base64.b64decode(json.loads(reply.body)["result"]))
            except (ValueError, KeyError, TypeError) as exc:
                result = failure(msg.task_id, msg.attempt, CRASH,
                                 f"the worker replied with something that is not a lambdaflow "
                                 f"result ({exc}): {reply.body[:200]!r}")
        result.stats["throttles"] = throttles
        result.stats.setdefault("backend", self.name)
        return result

    def _function_error(self, msg: TaskMessage, reply: InvokeReply) -> TaskResult:
        err = reply.error_json()
        etype = str(err.get("errorType", ""))
        text = str(err.get("errorMessage", err.get("message", "")))
        tail = ""
        if reply.log_result:
            tail = base64.b64decode(reply.log_result).decode("utf-8", "replace")
        status = TIMEOUT if ("timed out" in text.lower() or "Timedout" in etype) else CRASH
        what = f"{etype}: {text}" if etype else text
        return failure(msg.task_id, msg.attempt, status,
                       f"the Lambda invocation failed ({reply.function_error}): {what}",
                       log=tail[-4096:])

    @staticmethod
    def _throttle_delay(hinted: float | None, n: int) -> float:
        """Full jitter under an exponential cap; never sooner than Lambda's hint."""
        cap = min(THROTTLE_CAP_S, THROTTLE_BASE_S * 2 ** min(n, 8))
        delay = random.uniform(0, cap)  # full jitter
        return max(delay, hinted) if hinted else delay
