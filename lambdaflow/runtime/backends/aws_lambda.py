"""The ``lambda`` backend: every task is one synchronous invocation of the universal
worker function; objects pass through S3.

    LambdaBackend(config, job_id)
      │ check: credentials ─ GetFunctionConfiguration (timeout) ─ version ping through
      │        the task transport (variants.check_agreement) ─ HeadBucket
      │
    submit(msg) ─> queue ─> invoker threads (at most max_concurrency)
                              │ payload: base64 msgpack in JSON, spilled to S3 to fit
                              │ invoke (lambda_invoke: signed POST, kept-alive, SDK route)
                              │ after each attempt lambda_retry decides:
                              │   again after a delay (429 / 5xx / not sent), within
                              │   retry_budget_s; shutdown() interrupts the wait
                              │   or stop: TIMEOUT (no reply in time), BackendError
                              │   (lost connection, other errors), LambdaThrottledError
                              └> future done with the worker's TaskResult

**Time.** The read timeout of an invoke is the function's configured timeout (from
GetFunctionConfiguration, once per function) + Lambda's init allowance + a margin, or
``invoke_timeout_s`` when set; a task with ``timeout_s`` waits at most ``timeout_s`` +
the worker's hard-stop grace + the same allowances. A read timeout is a TaskTimeoutError
and is never re-sent: only a request that provably never left is sent again.

**Payloads** stay under Lambda's synchronous request limit (``lambda_payload``): the
largest inline dependencies, then the arguments, move to S3 under keys derived from (job,
task). The worker fits results and error texts the same way (``lambda_entry``).

Credentials come from the config (``aws_access_key_id`` & co.) or boto3's chain and are
used only here and in the S3 store; they never enter a task message.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from lambdaflow import aws, limits, variants
from lambdaflow.config import Config
from lambdaflow.errors import BackendError, ConfigError, LambdaThrottledError
from lambdaflow.runtime.backends import lambda_payload, tiers
from lambdaflow.runtime.backends import lambda_retry as retry
from lambdaflow.runtime.backends.lambda_invoke import (
    KEEPALIVE_IDLE_S,
    Invoker,
    InvokeReply,
    InvokeTransportError,
)
from lambdaflow.runtime.backends.pool import TaskThreads
from lambdaflow.runtime.lambda_deadline import HARD_STOP_GRACE_S
from lambdaflow.runtime.task import CRASH, ERROR, TIMEOUT, TaskMessage, TaskResult, failure

log = logging.getLogger(__name__)

#: Added to the function's timeout + init allowance: network, queueing, the reply itself.
READ_MARGIN_S = 20.0
#: How long shutdown waits for the replies of invocations already sent.
SHUTDOWN_WAIT_S = 5.0
#: Threads that move one task's values to S3 (at most the store's connection pool).
SPILL_THREADS = 16


def _require(value: Any, name: str, hint: str) -> Any:
    if not value:
        raise ConfigError(
            f"the lambda backend needs {name}: pass lambdaflow.init(backend='lambda', "
            f"{name}=...) or set LAMBDAFLOW_{name.upper()}; {hint}"
        )
    return value


@dataclass
class _Function:
    """One deployed function: its invoker and what GetFunctionConfiguration said."""

    name: str
    invoker: Invoker
    timeout_s: float
    reserved: int | None = None  # reserved concurrency, looked up on the first 429
    reserved_known: bool = False


class LambdaBackend:
    name = "lambda"
    eager_delete = False  # freed objects go with the job prefix at shutdown
    #: how long shutdown() waits for invocations already sent (see there)
    shutdown_wait_s = SHUTDOWN_WAIT_S

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
        self.retry_budget_s = float(config.retry_budget_s)
        settings = aws.AwsSettings.from_config(config)
        self._session = aws.session(settings)
        self.region = aws.region(settings, self._session)
        settings = settings.with_region(self.region)
        #: control-plane calls only (configuration, concurrency); tasks use the invokers
        self.client = aws.client("lambda", settings, sess=self._session, attempts=3)
        self.route = aws.http_route(self.client, self._session)
        self.store = S3Store(bucket, config.prefix, settings=settings,
                             max_pool_connections=self.max_concurrency + 4)
        self._config = config
        self._tiers = tiers.parse_tiers(config.memory_tiers or "")
        self._functions: dict[str, _Function] = {}
        self._functions_lock = threading.Lock()
        self._closed = threading.Event()
        self._flight = threading.Condition()
        self._running = 0  # invocations (and their spills) under way: see shutdown()
        self.job_id = job_id
        self.throttles = 0
        self._pool = TaskThreads(self.max_concurrency, self._run, "lambdaflow-invoke")
        self._check()

    # ----------------------------------------------------------------- checks
    def _check(self) -> None:
        """Fail before the job starts: no credentials, no function, no bucket, or a
        worker whose Python / cloudpickle / lambdaflow differs from this driver's."""
        fn = self._function(self.function_name)
        reply = self._invoke_json(fn, {"lambdaflow": "ping"})
        variants.check_agreement(self.function_name, reply)
        try:
            self.store.client.head_bucket(Bucket=self.store.bucket)
        except self._exc.NoCredentialsError:
            raise ConfigError("no AWS credentials found for S3") from None
        except self._exc.ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (404, 403):
                raise ConfigError(
                    f"S3 bucket {self.store.bucket!r} does not exist or is not accessible "
                    f"({status}); create it with `lambdaflow deploy` or `aws s3 mb "
                    f"s3://{self.store.bucket}`"
                ) from None
            raise BackendError(f"cannot reach S3 bucket {self.store.bucket!r}: {exc}") from exc

    def _function(self, name: str) -> _Function:
        """The function ``name``, its invoker and timeout (GetFunctionConfiguration once)."""
        with self._functions_lock:
            fn = self._functions.get(name)
            if fn is not None:
                return fn
        invoker = Invoker(self._session, self.region, self.route, name)
        timeout = float(limits.MAX_TIMEOUT_S)
        try:
            timeout = float(self.client.get_function_configuration(FunctionName=name)["Timeout"])
        except self._exc.NoCredentialsError:
            raise ConfigError("no AWS credentials found") from None
        except self._exc.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                raise ConfigError(
                    f"Lambda function {name!r} does not exist in {self.region}; create it "
                    "with `lambdaflow deploy` (or run `lambdaflow local-aws`)"
                ) from None
            log.warning("job=%s cannot read the configuration of %s (%s); assuming the "
                        "%d s maximum timeout (grant lambda:GetFunctionConfiguration)",
                        self.job_id, name, code, limits.MAX_TIMEOUT_S)
        except self._exc.BotoCoreError as exc:
            raise ConfigError(f"cannot reach the Lambda API at {self.route.url}: {exc}") from exc
        with self._functions_lock:
            return self._functions.setdefault(name, _Function(name, invoker, timeout))

    def invoke_socket_options(self) -> list[tuple[int, int | None]]:
        """(SO_KEEPALIVE, TCP_KEEPIDLE) of the open invoke connections of every function."""
        with self._functions_lock:
            fns = list(self._functions.values())
        return [opt for fn in fns for opt in fn.invoker.socket_options()]

    def _invoke_json(self, fn: _Function, payload: dict) -> dict:
        """One small JSON call (the version ping) through the task transport."""
        reply = self._send(fn, json.dumps(payload).encode(), read_timeout=60.0 + limits.INIT_ALLOWANCE_S,
                           what="the version ping")
        if reply.function_error:
            raise BackendError(f"{fn.name!r} failed a version ping: {reply.body[:500]!r}")
        return json.loads(reply.body)

    def describe(self) -> dict[str, Any]:
        """What this backend talks to and how, for ``lambdaflow doctor`` and bug reports
        (no credentials; a proxy's user and password are left out)."""
        from urllib.parse import urlsplit

        fn = self._function(self.function_name)
        account, unreserved, _ = self._account()
        proxy = urlsplit(self.route.proxy_url) if self.route.proxy_url else None
        return {
            "function": fn.name,
            "region": self.region,
            "lambda_endpoint": self.route.url,
            "s3_endpoint": self.store.endpoint_url,
            "proxy": f"{proxy.scheme}://{proxy.hostname}:{proxy.port}" if proxy else None,
            "ca_bundle": self.route.verify,
            "keepalive_idle_s": KEEPALIVE_IDLE_S,
            "function_timeout_s": fn.timeout_s,
            "read_timeout_s": self.read_timeout(fn),
            "reserved_concurrency": self._reserved(fn),
            "account_concurrency": account,
            "unreserved_concurrency": unreserved,
            "max_concurrency": self.max_concurrency,
            "retry_budget_s": self.retry_budget_s,
        }

    # ----------------------------------------------------------------- submit
    def submit(self, msg: TaskMessage) -> Future:
        if self._pool.closed:
            raise BackendError("the lambda backend is shut down")
        return self._pool.submit(msg)

    def shutdown(self) -> None:
        """Stop: nothing is invoked after this returns (waits for retries are cut short).
        Invocations already sent run on; this waits up to ``shutdown_wait_s`` for their
        replies (the driver then deletes what they wrote with the job's prefix). Those
        still running after that see the job's closed marker and delete their own
        writes (``worker.drop_if_closed``); ``in_flight()`` says how many there are."""
        self._closed.set()
        self._pool.shutdown()
        with self._flight:
            self._flight.wait_for(lambda: self._running == 0, timeout=self.shutdown_wait_s)

    def in_flight(self) -> int:
        """Invocations sent and not answered yet."""
        with self._flight:
            return self._running

    # ----------------------------------------------------------------- one task
    def _run(self, msg: TaskMessage) -> TaskResult:
        with self._flight:
            self._running += 1
        try:
            return self._run_counted(msg)
        finally:
            with self._flight:
                self._running -= 1
                self._flight.notify_all()

    def _run_counted(self, msg: TaskMessage) -> TaskResult:
        if self._closed.is_set():  # taken from the queue as shutdown began: write nothing
            raise BackendError(f"task {msg.name}[{msg.task_id}]: not invoked, the lambda "
                               "backend is shut down")
        payload = self.payload(msg)
        fn = self._function(self._function_name_for(msg))
        read_timeout = self.read_timeout(fn, msg.options.get("timeout_s"))
        stats: dict[str, int] = {}
        try:
            reply = self._send(fn, payload, read_timeout=read_timeout,
                               what=f"task {msg.name}[{msg.task_id}]", stats=stats)
        except _TimedOut as exc:
            return failure(msg.task_id, msg.attempt, TIMEOUT, str(exc))
        if reply.function_error:
            result = self._function_error(msg, reply)
        else:
            try:
                result = TaskResult.unpack(base64.b64decode(json.loads(reply.body)["result"]))
            except (ValueError, KeyError, TypeError) as exc:
                result = failure(msg.task_id, msg.attempt, CRASH,
                                 f"the worker replied with something that is not a lambdaflow "
                                 f"result ({exc}): {reply.body[:200]!r}")
        result.stats["throttles"] = stats.get("throttles", 0)
        result.stats.setdefault("backend", self.name)
        return result

    def read_timeout(self, fn: _Function, timeout_s: float | None = None) -> float:
        """How long to wait for one invoke's reply (see the module docstring)."""
        if self._config.invoke_timeout_s:
            base = float(self._config.invoke_timeout_s)
        else:
            base = fn.timeout_s + limits.INIT_ALLOWANCE_S + READ_MARGIN_S
        if timeout_s:
            base = min(base, float(timeout_s) + HARD_STOP_GRACE_S + limits.INIT_ALLOWANCE_S
                       + READ_MARGIN_S)
        return base

    def _send(self, fn: _Function, payload: bytes, *, read_timeout: float, what: str,
              stats: dict | None = None) -> InvokeReply:
        """Invoke until lambda_retry says stop; the reply, or a typed error."""
        attempts = retry.InvokeRetries(self.retry_budget_s)
        while True:
            if self._closed.is_set():
                raise BackendError(f"{what}: not invoked, the lambda backend is shut down")
            reply = None
            try:
                reply = fn.invoker.invoke(payload, read_timeout=read_timeout)
                decision = attempts.after_reply(reply)
            except InvokeTransportError as exc:
                decision = attempts.after_error(exc)
            if stats is not None:
                stats["throttles"] = attempts.throttles
            if reply is not None and retry.is_throttle(reply):
                self.throttles += 1  # GIL-atomic enough for a counter
                if self._reserved(fn) == 0:
                    raise self._throttled(fn, what, reply, attempts)
            if decision.kind == retry.DONE and reply is not None:
                return reply
            if decision.kind == retry.AGAIN:
                log.debug("job=%s %s: %s; again in %.2f s", self.job_id, what, decision.reason,
                          decision.delay)
                if self._closed.wait(decision.delay):
                    raise BackendError(f"{what}: not invoked again, the lambda backend is shut down")
                continue
            if decision.kind == retry.TIMED_OUT:
                raise _TimedOut(
                    f"{what}: no reply from Lambda function {fn.name!r} within {read_timeout:g} s "
                    f"(its timeout {fn.timeout_s:g} s + {limits.INIT_ALLOWANCE_S} s init "
                    f"allowance + margin, or invoke_timeout_s / timeout_s); it is not re-sent "
                    "(it may still be running on AWS)")
            if decision.kind == retry.THROTTLE_EXHAUSTED and reply is not None:
                raise self._throttled(fn, what, reply, attempts)
            if decision.kind == retry.LOST:
                raise BackendError(
                    f"{what}: {decision.reason}; it is not re-sent because Lambda may have run "
                    "it; check the network path (proxy, NAT) and resubmit")
            if reply is not None and reply.status in (403, 401):
                raise ConfigError(
                    f"AWS rejected the credentials for invoking {fn.name!r} "
                    f"({reply.error_type}: {reply.error_message()}): check AWS_PROFILE / "
                    "AWS_ACCESS_KEY_ID, and that the caller may lambda:InvokeFunction")
            if reply is not None and reply.error_type == "ResourceNotFoundException":
                raise ConfigError(
                    f"Lambda function {fn.name!r} does not exist in {self.region}; create it "
                    "with `lambdaflow deploy` (or run `lambdaflow local-aws`)")
            raise BackendError(f"{what}: invoking {fn.name!r} failed: {decision.reason}")

    # ----------------------------------------------------------------- throttling
    def _reserved(self, fn: _Function) -> int | None:
        """The function's reserved concurrency (GetFunctionConcurrency, once)."""
        if not fn.reserved_known:
            try:
                got = self.client.get_function_concurrency(FunctionName=fn.name)
                fn.reserved = got.get("ReservedConcurrentExecutions")
            except (self._exc.ClientError, self._exc.BotoCoreError) as exc:
                log.info("job=%s cannot read the reserved concurrency of %s: %s",
                         self.job_id, fn.name, exc)
            fn.reserved_known = True
        return fn.reserved

    def _account(self) -> tuple[int | None, int | None, str]:
        """The account's (concurrency limit, unreserved concurrency, note)."""
        try:
            limit = self.client.get_account_settings().get("AccountLimit", {})
        except (self._exc.ClientError, self._exc.BotoCoreError) as exc:
            return None, None, f"unknown (GetAccountSettings: {exc})"
        total, free = limit.get("ConcurrentExecutions"), limit.get("UnreservedConcurrentExecutions")
        return total, free, f"{total} (unreserved {free})"

    def _throttled(self, fn: _Function, what: str, reply: InvokeReply,
                   attempts: retry.InvokeRetries) -> LambdaThrottledError:
        reserved = self._reserved(fn)
        account, _, account_text = self._account()
        reason = reply.error_json().get("Reason") or reply.error_type or "TooManyRequestsException"
        if reserved == 0:
            head = (f"{what}: Lambda function {fn.name!r} has reserved concurrency 0, so Lambda "
                    "throttles every invocation of it (a function throttled on purpose)")
            todo = (f"remove the limit (aws lambda delete-function-concurrency --function-name "
                    f"{fn.name}) or set one above 0")
        else:
            head = (f"{what}: Lambda throttled function {fn.name!r} {attempts.throttles} times in "
                    f"{attempts.elapsed():.0f} s, past retry_budget_s={self.retry_budget_s:g} "
                    f"({reason}: {reply.error_message()})")
            todo = (f"raise the function's reserved concurrency (aws lambda put-function-concurrency "
                    f"--function-name {fn.name} --reserved-concurrent-executions N) or remove it, "
                    f"lower max_concurrency (now {self.max_concurrency}) to what the function may "
                    "run, request a higher 'Concurrent executions' quota (Service Quotas), or "
                    "raise retry_budget_s")
        reserved_text = "none (it shares the account's pool)" if reserved is None else str(reserved)
        return LambdaThrottledError(
            f"{head}. Reserved concurrency: {reserved_text}; account concurrency: "
            f"{account_text}. To fix: {todo}.",
            function_name=fn.name, reserved=reserved, account=account)

    def payload(self, msg: TaskMessage) -> bytes:
        """The invoke body of ``msg``, under Lambda's request limit (``lambda_payload``)."""
        threads = min(SPILL_THREADS, self.max_concurrency + 4)  # the store's pool size
        return lambda_payload.payload(msg, self.store, threads)

    def _function_name_for(self, msg: TaskMessage) -> str:
        """The deployed memory tier for a task's ``memory_mb`` (``lambdaflow deploy``
        makes one function per tier, ``<name>-<MB>``); else the configured function."""
        memory = msg.options.get("memory_mb")
        base = tiers.deployment_of(self.function_name)
        if not memory or not self._tiers or base is None:
            return self.function_name
        return tiers.tier_function_name(base, int(memory), self._tiers)

    def _function_error(self, msg: TaskMessage, reply: InvokeReply) -> TaskResult:
        err = reply.error_json()
        etype = str(err.get("errorType", ""))
        text = str(err.get("errorMessage", err.get("message", "")))
        tail = ""
        if reply.log_result:
            tail = base64.b64decode(reply.log_result).decode("utf-8", "replace")
        what = f"the Lambda invocation failed ({reply.function_error}): " + (
            f"{etype}: {text}" if etype else text)
        if "timed out" in text.lower() or "Timedout" in etype:
            return failure(msg.task_id, msg.attempt, TIMEOUT, what, log=tail[-limits.LOG_TAIL_BYTES:])
        if etype == "Function.ResponseSizeTooLarge":  # deterministic: running it again won't help
            return failure(msg.task_id, msg.attempt, ERROR, what, type=etype, exc=None,
                           traceback=tail[-limits.LOG_TAIL_BYTES:])
        return failure(msg.task_id, msg.attempt, CRASH, what, log=tail[-limits.LOG_TAIL_BYTES:])


class _TimedOut(Exception):
    """No reply within the read timeout (becomes a TIMEOUT result)."""


__all__ = ["LambdaBackend", "READ_MARGIN_S", "HARD_STOP_GRACE_S"]
