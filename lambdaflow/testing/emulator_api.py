"""The Lambda service API of the emulator (what boto3's ``lambda`` client speaks).

Routes (REST-JSON, as in botocore's ``lambda/2015-03-31`` service model):

    POST   /2015-03-31/functions/{name}/invocations   Invoke (RequestResponse | Event | DryRun)
    POST   /2015-03-31/functions                      CreateFunction
    GET    /2015-03-31/functions/                     ListFunctions
    GET    /2015-03-31/functions/{name}               GetFunction
    GET    /2015-03-31/functions/{name}/configuration GetFunctionConfiguration
    DELETE /2015-03-31/functions/{name}               DeleteFunction
    PUT    /2017-10-31/functions/{name}/concurrency   PutFunctionConcurrency
    DELETE /2017-10-31/functions/{name}/concurrency   DeleteFunctionConcurrency
    GET    /2019-09-30/functions/{name}/concurrency   GetFunctionConcurrency
    GET    /2016-08-19/account-settings/              GetAccountSettings (the emulator's account pool)
    PUT    /2015-03-31/functions/{name}/configuration UpdateFunctionConfiguration
    PUT    /2019-09-25/functions/{name}/event-invoke-config  PutFunctionEventInvokeConfig
    GET    /_emulator/stats                           the emulator's counters (not AWS)
    POST   /_emulator/functions                       create_function(**json) (not AWS)

Errors are sent the way Lambda sends them: the status code, an ``x-amzn-ErrorType``
header naming the exception (botocore maps it to ``client.exceptions.<Name>``) and a
JSON body with ``Type`` and ``message``/``Message``. Every request, ``/_emulator/`` ones
included, must be SigV4-signed by a key the emulator knows (``sigv4.SigV4Verifier``),
else 403 as Lambda answers it; nothing is parsed before that check.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from urllib.parse import unquote

from lambdaflow.testing.emulator_core import EmulatorCore
from lambdaflow.testing.emulator_env import (
    ASYNC_PAYLOAD_LIMIT,
    DEFAULT_HANDLER,
    SYNC_PAYLOAD_LIMIT,
    FunctionConfig,
    Invocation,
    check_env,
)
from lambdaflow.testing.emulator_http import HttpConnection, Request
from lambdaflow.testing.sigv4 import AuthError

_FUNCTIONS = "/2015-03-31/functions"
_CONCURRENCY = ("/2017-10-31/functions/", "/2019-09-30/functions/")
_EVENT_CONFIG = "/2019-09-25/functions/"


def send_error(
    conn: HttpConnection,
    status: int,
    code: str,
    message: str,
    extra: dict | None = None,
    headers: dict | None = None,
) -> None:
    key = (
        "Message"
        if code in ("ResourceNotFoundException", "ServiceException")
        else "message"
    )
    body = {"Type": "User" if status < 500 else "Service", key: message}
    if extra:
        body.update(extra)
    conn.respond(
        status, json.dumps(body).encode(), {"x-amzn-ErrorType": code, **(headers or {})}
    )


def function_name(raw: str) -> str:
    """Accept a name, a partial ARN (123456789012:function:name) or a full ARN."""
    name = unquote(raw)
    if ":function:" in name:
        name = name.split(":function:", 1)[1]
    return name.split(":", 1)[0]


class LambdaApi:
    """Routes service requests onto an :class:`EmulatorCore` (event-loop thread only)."""

    def __init__(self, core: EmulatorCore) -> None:
        self.core = core

    def __call__(self, req: Request, conn: HttpConnection) -> None:
        try:
            self.core.verifier.verify(req.method, req.target, req.headers, req.body)
        except AuthError as exc:
            send_error(conn, exc.status, exc.code, exc.message)
            return
        path = req.path
        if path.startswith(_FUNCTIONS + "/") and path.endswith("/invocations"):
            self.invoke(
                function_name(path[len(_FUNCTIONS) + 1 : -len("/invocations")]),
                req,
                conn,
            )
        elif path.rstrip("/") == _FUNCTIONS:
            if req.method == "POST":
                self.create(req, conn)
            else:
                region = self.core.region
                conn.respond(
                    200,
                    json.dumps(
                        {
                            "Functions": [
                                fs.config.configuration(region)
                                for fs in self.core.functions.values()
                            ]
                        }
                    ).encode(),
                )
        elif path.startswith(_FUNCTIONS + "/"):
            rest = path[len(_FUNCTIONS) + 1 :]
            name, _, sub = rest.partition("/")
            self.function(function_name(name), sub, req, conn)
        elif path.startswith(_CONCURRENCY) and path.endswith("/concurrency"):
            self.concurrency(function_name(path.split("/")[3]), req, conn)
        elif path.rstrip("/") == "/2016-08-19/account-settings" and req.method == "GET":
            reserved = sum(fs.config.concurrency or 0 for fs in self.core.functions.values())
            limit = self.core.pool.account_concurrency
            body = {
                "AccountLimit": {
                    "ConcurrentExecutions": limit,
                    "UnreservedConcurrentExecutions": max(0, limit - reserved),
                },
                "AccountUsage": {"FunctionCount": len(self.core.functions)},
            }
            conn.respond(200, json.dumps(body).encode())
        elif path.startswith(_EVENT_CONFIG) and path.endswith("/event-invoke-config"):
            self.event_config(function_name(path.split("/")[3]), req, conn)
        elif path == "/_emulator/stats":
            conn.respond(200, json.dumps(self.core.stats()).encode())
        elif path == "/_emulator/functions" and req.method == "POST":
            self.put_function(req, conn)
        else:
            send_error(
                conn,
                404,
                "UnknownOperationException",
                f"{req.method} {path} is not an operation the lambdaflow emulator supports",
            )

    # -- Invoke -----------------------------------------------------------------------
    def invoke(self, name: str, req: Request, conn: HttpConnection) -> None:
        fs = self.core.functions.get(name)
        if fs is None:
            send_error(conn, 404, "ResourceNotFoundException", self._not_found(name))
            return
        kind = req.headers.get("x-amz-invocation-type", "RequestResponse")
        limit = ASYNC_PAYLOAD_LIMIT if kind == "Event" else SYNC_PAYLOAD_LIMIT
        if len(req.body) > limit:
            send_error(
                conn,
                413,
                "RequestEntityTooLargeException",
                f"Request must be smaller than {limit} bytes for the InvokeFunction operation",
            )
            return
        payload = req.body or b"{}"
        context = ""
        if req.headers.get("x-amz-client-context"):
            try:
                context = base64.b64decode(req.headers["x-amz-client-context"]).decode()
            except (binascii.Error, UnicodeDecodeError):
                send_error(
                    conn,
                    400,
                    "InvalidRequestContentException",
                    "Client context must be a valid Base64-encoded JSON object.",
                )
                return
        if kind == "DryRun":
            conn.respond(204)
        elif kind == "Event":
            self.core.invoke_async(
                fs, Invocation(fs.config, payload, None, False, context)
            )
            conn.respond(202)
        elif kind == "RequestResponse":
            tail = req.headers.get("x-amz-log-type", "None") == "Tail"
            inv = Invocation(fs.config, payload, conn, tail, context)
            reason = self.core.invoke(fs, inv)
            if reason is not None:
                send_error(
                    conn,
                    429,
                    "TooManyRequestsException",
                    "Rate Exceeded.",
                    {"Reason": reason, "retryAfterSeconds": "1"},
                    {"Retry-After": "1"},
                )
        else:
            send_error(
                conn,
                400,
                "InvalidParameterValueException",
                f"Unsupported InvocationType {kind!r}: use RequestResponse, Event or DryRun",
            )

    # -- control plane ----------------------------------------------------------------
    def put_function(self, req: Request, conn: HttpConnection) -> None:
        """The Python API's create_function over HTTP (for ``EmulatorProcess``)."""
        try:
            spec = json.loads(req.body)
            config = FunctionConfig.build(spec.pop("name"), **spec)
            conf = self.core.put_function(config)
        except (ValueError, TypeError, KeyError) as exc:
            send_error(conn, 400, "InvalidParameterValueException", str(exc))
            return
        conn.respond(200, json.dumps(conf).encode())

    def create(self, req: Request, conn: HttpConnection) -> None:
        try:
            spec = json.loads(req.body or b"{}")
            config = config_from_spec(spec)
        except (ValueError, TypeError, KeyError) as exc:
            send_error(
                conn, 400, "InvalidParameterValueException", f"CreateFunction: {exc}"
            )
            return
        if config.name in self.core.functions:
            send_error(
                conn,
                409,
                "ResourceConflictException",
                f"Function already exist: {config.name}",
            )
            return
        try:
            self.core.add_function(config)
        except ValueError as exc:  # the role cannot be assumed
            send_error(conn, 400, "InvalidParameterValueException", str(exc))
            return
        conn.respond(201, json.dumps(config.configuration(self.core.region)).encode())

    def function(self, name: str, sub: str, req: Request, conn: HttpConnection) -> None:
        fs = self.core.functions.get(name)
        if fs is None:
            send_error(conn, 404, "ResourceNotFoundException", self._not_found(name))
            return
        conf = fs.config.configuration(self.core.region)
        if req.method == "DELETE" and not sub:
            self.core.remove_function(name)
            conn.respond(204)
        elif req.method == "GET" and sub == "configuration":
            conn.respond(200, json.dumps(conf).encode())
        elif req.method == "PUT" and sub == "configuration":
            self.update_configuration(fs.config, req, conn)
        elif req.method == "GET" and not sub:
            out = {
                "Configuration": conf,
                "Code": {"RepositoryType": "ECR", "ImageUri": fs.config.image_uri}
                if fs.config.package_type == "Image"
                else {"RepositoryType": "S3", "Location": ""},
            }
            if fs.config.concurrency is not None:
                out["Concurrency"] = {
                    "ReservedConcurrentExecutions": fs.config.concurrency
                }
            conn.respond(200, json.dumps(out).encode())
        else:
            send_error(
                conn,
                404,
                "UnknownOperationException",
                f"{req.method} {req.path} is not supported by the lambdaflow emulator",
            )

    def concurrency(self, name: str, req: Request, conn: HttpConnection) -> None:
        fs = self.core.functions.get(name)
        if fs is None:
            send_error(conn, 404, "ResourceNotFoundException", self._not_found(name))
            return
        if req.method == "PUT":
            try:
                value = int(json.loads(req.body)["ReservedConcurrentExecutions"])
                if value < 0:
                    raise ValueError(value)
            except (ValueError, KeyError, TypeError):
                send_error(
                    conn,
                    400,
                    "InvalidParameterValueException",
                    "ReservedConcurrentExecutions must be an integer >= 0",
                )
                return
            try:
                self.core.check_reservation(fs, value)
            except ValueError as exc:
                send_error(conn, 400, "InvalidParameterValueException", str(exc))
                return
            fs.config.concurrency = value
        elif req.method == "DELETE":
            fs.config.concurrency = None
            conn.respond(204)
            return
        body = (
            {}
            if fs.config.concurrency is None
            else {"ReservedConcurrentExecutions": fs.config.concurrency}
        )
        conn.respond(200, json.dumps(body).encode())

    def update_configuration(
        self, config: FunctionConfig, req: Request, conn: HttpConnection
    ) -> None:
        """UpdateFunctionConfiguration: Environment, Timeout, MemorySize. Running
        environments keep their settings; new ones get the new ones (as on Lambda)."""
        try:
            spec = json.loads(req.body or b"{}")
            env = (spec.get("Environment") or {}).get("Variables")
            checked = check_env(env) if env is not None else None
            timeout = float(spec.get("Timeout", config.timeout_s))
            memory = int(spec.get("MemorySize", config.memory_mb))
            _check_limits(timeout, memory)
            storage = _ephemeral(spec, config.ephemeral_mb)
        except (ValueError, TypeError, AttributeError) as exc:
            send_error(
                conn, 400, "InvalidParameterValueException", f"UpdateFunctionConfiguration: {exc}"
            )
            return
        if checked is not None:
            config.env = checked
        config.timeout_s, config.memory_mb = timeout, memory
        config.ephemeral_mb = storage
        config.last_modified = time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime())
        conn.respond(200, json.dumps(config.configuration(self.core.region)).encode())

    def event_config(self, name: str, req: Request, conn: HttpConnection) -> None:
        """Put/GetFunctionEventInvokeConfig: MaximumRetryAttempts (0..2) and
        MaximumEventAgeInSeconds (60..21600), the ranges of Lambda's API reference."""
        fs = self.core.functions.get(name)
        if fs is None:
            send_error(conn, 404, "ResourceNotFoundException", self._not_found(name))
            return
        config = fs.config
        if req.method in ("PUT", "POST"):
            try:
                spec = json.loads(req.body or b"{}")
                retries = int(spec.get("MaximumRetryAttempts", 2))
                age = int(spec.get("MaximumEventAgeInSeconds", 21600))
                if not 0 <= retries <= 2 or not 60 <= age <= 21600:
                    raise ValueError(
                        "MaximumRetryAttempts must be 0..2 and MaximumEventAgeInSeconds "
                        "60..21600"
                    )
            except (ValueError, TypeError) as exc:
                send_error(conn, 400, "InvalidParameterValueException", str(exc))
                return
            config.max_retry_attempts, config.max_event_age_s = retries, float(age)
        body = {
            "FunctionArn": config.arn(self.core.region),
            "MaximumRetryAttempts": config.max_retry_attempts,
            "MaximumEventAgeInSeconds": int(config.max_event_age_s),
            "LastModified": time.time(),
        }
        conn.respond(200, json.dumps(body).encode())

    def _not_found(self, name: str) -> str:
        arn = FunctionConfig(name).arn(self.core.region)
        return f"Function not found: {arn}"


def config_from_spec(spec: dict) -> FunctionConfig:
    """A FunctionConfig from a CreateFunction request body (raises ValueError)."""
    name = spec.get("FunctionName")
    if not name or not isinstance(name, str):
        raise ValueError("FunctionName is required")
    package_type = spec.get("PackageType", "Zip")
    handler = spec.get("Handler") or DEFAULT_HANDLER
    command = (spec.get("ImageConfig") or {}).get("Command") or []
    if package_type == "Image" and command:
        handler = command[
            0
        ]  # the image's CMD names the handler, as in the Lambda base images
    timeout = spec.get("Timeout", 3)
    memory = int(spec.get("MemorySize", 128))
    _check_limits(float(timeout), memory)
    storage = _ephemeral(spec, 512)
    return FunctionConfig(
        ephemeral_mb=storage,
        name=name,
        handler=handler,
        timeout_s=timeout,
        memory_mb=memory,
        env=check_env(dict((spec.get("Environment") or {}).get("Variables") or {})),
        role=spec.get("Role") or "",
        package_type=package_type,
        image_uri=(spec.get("Code") or {}).get("ImageUri", ""),
        last_modified=time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime()),
    )


def _ephemeral(spec: dict, default: int) -> int:
    size = int((spec.get("EphemeralStorage") or {}).get("Size", default))
    if not 512 <= size <= 10240:
        raise ValueError(f"EphemeralStorage.Size {size} is outside 512..10240 MB")
    return size


def _check_limits(timeout: float, memory: int) -> None:
    if not 1 <= timeout <= 900:
        raise ValueError(f"Timeout {timeout} is outside 1..900 seconds")
    if not 128 <= memory <= 10240:
        raise ValueError(f"MemorySize {memory} is outside 128..10240 MB")
