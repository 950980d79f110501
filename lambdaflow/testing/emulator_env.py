"""Functions, invocations and execution environments of the Lambda emulator.

Plain records plus the process side of an environment; the scheduling lives in
``emulator_core`` and only ever touches these objects from the event-loop thread.

An environment's life::

    spawn() ─> STARTING ──first `next` poll──> IDLE (poll parked) <──────────┐
                  │                              │ assign(invocation)        │ response /
                  │ assign() before the poll     v                           │ error posted
                  └────────────────────────> BUSY ──(runtime answers)── RETURNING ─┘
    any state ── process exit / timeout kill / stop ──> DEAD

RETURNING (the runtime answered and has not polled again yet) counts as available: a
new invocation is assigned at once and delivered on the next poll, so a sequential
caller keeps hitting the same warm environment instead of starting a new one.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lambdaflow import limits
from lambdaflow.testing.emulator_bootstrap import ISOLATE_VAR, PARENT_PID_VAR, RLIMIT_AS_VAR
from lambdaflow.testing.sigv4 import Credential

if TYPE_CHECKING:
    import asyncio

    from lambdaflow.testing.emulator_http import HttpConnection

ACCOUNT_ID = "123456789012"
DEFAULT_HANDLER = "lambdaflow.runtime.lambda_entry.lambda_handler"
#: Lambda's limits (bytes): synchronous request and response, asynchronous request.
SYNC_PAYLOAD_LIMIT = limits.SYNC_REQUEST_BYTES
ASYNC_PAYLOAD_LIMIT = limits.ASYNC_REQUEST_BYTES
#: X-Amz-Log-Result carries the last 4 KB of the invocation's log.
LOG_TAIL_BYTES = limits.LOG_TAIL_BYTES
#: Lambda gives a cold environment's init phase up to 10 s on top of the timeout.
INIT_ALLOWANCE_S = float(limits.INIT_ALLOWANCE_S)

#: Keys Lambda sets itself and refuses in a function's Environment.Variables
#: (https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html,
#: "Defined runtime environment variables": reserved, cannot be set).
RESERVED_ENV_KEYS = frozenset(
    {
        "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION",
        "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "TZ",
    }
)  # fmt: skip


def check_env(env: dict) -> dict[str, str]:
    """The variables as strings; ValueError (Lambda's message) for reserved keys."""
    reserved = sorted(k for k in env if k in RESERVED_ENV_KEYS)
    if reserved:
        raise ValueError(
            "Lambda was unable to configure your environment variables because the "
            "environment variables you have provided contains reserved keys that are "
            f"currently not supported for modification. Reserved keys used in this "
            f"request: {','.join(reserved)}"
        )
    return {str(k): str(v) for k, v in env.items()}


STARTING, IDLE, BUSY, RETURNING, DEAD = "starting", "idle", "busy", "returning", "dead"

#: Go-style signal names, as Lambda prints them ("Runtime exited with error: signal: killed").
_SIGNAL_WORDS = {
    signal.SIGKILL: "killed",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGTERM: "terminated",
    signal.SIGABRT: "aborted",
    signal.SIGBUS: "bus error",
    signal.SIGINT: "interrupt",
}


@dataclass
class FunctionConfig:
    """One function in the emulator's registry (what CreateFunction stores)."""

    name: str
    handler: str = DEFAULT_HANDLER
    timeout_s: float = 3.0
    memory_mb: int = 128
    env: dict = field(default_factory=dict)
    concurrency: int | None = None  # reserved concurrency; None: the emulator default
    role: str = ""  # the execution role ARN ("" for the Python API: no role assumed)
    package_type: str = "Zip"
    image_uri: str = ""
    last_modified: str = ""
    #: the execution role's session (STS AssumeRole), or a key of the emulator's own
    credential: Credential | None = None
    #: PutFunctionEventInvokeConfig: async retries (0..2) and maximum event age (s)
    max_retry_attempts: int = 2
    max_event_age_s: float = 21600.0
    #: EphemeralStorage.Size: the environment's /tmp in MB (Lambda: 512..10240)
    ephemeral_mb: int = 512

    @classmethod
    def build(
        cls,
        name: str,
        *,
        handler: str = DEFAULT_HANDLER,
        timeout_s: float = 3.0,
        memory_mb: int = 128,
        env: dict | None = None,
        concurrency: int | None = None,
        role: str = "",
    ) -> FunctionConfig:
        """A checked config for the emulator's Python API (fractional timeouts allowed)."""
        if not name or not isinstance(name, str):
            raise ValueError(f"function name {name!r}: must be a non-empty string")
        if not timeout_s > 0:
            raise ValueError(f"{name}: timeout_s={timeout_s} must be > 0")
        if memory_mb < 1:
            raise ValueError(f"{name}: memory_mb={memory_mb} must be >= 1")
        if concurrency is not None and concurrency < 0:
            raise ValueError(f"{name}: concurrency={concurrency} must be >= 0 or None")
        return cls(
            name=name,
            handler=handler,
            timeout_s=timeout_s,
            memory_mb=int(memory_mb),
            env=check_env(env or {}),
            concurrency=concurrency,
            role=role,
            last_modified=time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime()),
        )

    def arn(self, region: str) -> str:
        return f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{self.name}"

    def configuration(self, region: str) -> dict:
        """The FunctionConfiguration shape of the Lambda API."""
        conf = {
            "FunctionName": self.name,
            "FunctionArn": self.arn(region),
            "Role": self.role or f"arn:aws:iam::{ACCOUNT_ID}:role/lambdaflow-emulator",
            "Handler": self.handler,
            "CodeSize": 0,
            "Description": "lambdaflow emulator function",
            "Timeout": self.timeout_s,
            "MemorySize": self.memory_mb,
            "LastModified": self.last_modified,
            "CodeSha256": "",
            "Version": "$LATEST",
            "Environment": {"Variables": dict(self.env)},
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": self.package_type,
            "EphemeralStorage": {"Size": self.ephemeral_mb},
            "Architectures": ["x86_64"],
        }
        if self.package_type == "Zip":
            conf["Runtime"] = f"python{sys.version_info.major}.{sys.version_info.minor}"
        else:
            conf["ImageConfigResponse"] = {"ImageConfig": {"Command": [self.handler]}}
        return conf


class Invocation:
    """One invoke request, sync (``conn`` is the waiting boto3 connection) or async."""

    __slots__ = (
        "attempt",
        "client_context",
        "cold",
        "conn",
        "env",
        "function",
        "logs",
        "created",
        "payload",
        "request_id",
        "started",
        "tail",
        "timer",
    )

    def __init__(
        self,
        function: FunctionConfig,
        payload: bytes,
        conn: HttpConnection | None,
        tail: bool = False,
        client_context: str = "",
    ) -> None:
        self.request_id = str(uuid.uuid4())
        self.created = time.monotonic()
        self.function = function
        self.payload = payload
        self.conn = conn
        self.tail = tail
        self.client_context = client_context
        self.attempt = 0
        self.env: Environment | None = None
        self.started = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.logs: bytearray | None = bytearray() if tail else None
        self.cold = False

    def log_tail(
        self,
        duration_s: float,
        memory_mb: int,
        max_memory_mb: int,
        init_s: float | None,
        extra: str = "",
    ) -> str:
        """START/END/REPORT lines around the captured output, last 4 KB (as Lambda)."""
        rid = self.request_id
        report = (
            f"REPORT RequestId: {rid}\tDuration: {duration_s * 1000:.2f} ms\t"
            f"Billed Duration: {max(1, math.ceil(duration_s * 1000))} ms\t"
            f"Memory Size: {memory_mb} MB\tMax Memory Used: {max_memory_mb} MB\t"
        )
        if init_s is not None:
            report += f"Init Duration: {init_s * 1000:.2f} ms\t"
        text = (
            f"START RequestId: {rid} Version: $LATEST\n"
            + bytes(self.logs or b"").decode("utf-8", "replace")
            + extra
            + f"END RequestId: {rid}\n{report}\n"
        )
        data = text.encode("utf-8")[-LOG_TAIL_BYTES:]
        return data.decode("utf-8", "ignore")


class Environment:
    """One execution environment: an awslambdaric process and its Runtime API address."""

    def __init__(self, function: FunctionConfig, seq: int) -> None:
        self.function = function
        self.env_id = uuid.uuid4().hex
        self.seq = seq
        self.log_stream = time.strftime("%Y/%m/%d/[$LATEST]") + self.env_id
        self.state = STARTING
        self.proc: subprocess.Popen | None = None
        self.pidfd = -1
        self.out_fd = -1
        self.server: asyncio.AbstractServer | None = None
        self.sock: socket.socket | None = None  # the Runtime API listening socket
        self.runtime_api = ""
        self.parked: HttpConnection | None = None  # the runtime's pending `next` poll
        self.invocation: Invocation | None = None
        self.delivered = False  # the current invocation was handed to the runtime
        self.spawned_at = time.monotonic()
        self.cold_start_s: float | None = None  # spawn -> first `next` poll
        self.invocations = 0
        self.init_error: bytes | None = None
        self.kill_reason = ""  # "timeout" | "oom" | "stop" | "idle" | "too-large"
        self.available_since = 0.0  # when it last became available (idle reclaim)
        self.exit_status = ""

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else -1

    def spawn(
        self,
        port: int,
        region: str,
        python_path: list[str],
        task_root: str,
        rlimit_as: int | None,
        lambda_endpoint: str = "",
        shared_paths: list[str] | None = None,
    ) -> None:
        """``shared_paths`` not None: a private /tmp (ephemeral storage size, keeping
        those paths visible) and a read-only task root (emulator_bootstrap)."""
        """Start the runtime process; its stdout+stderr go to a non-blocking pipe."""
        fn = self.function
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "LAMBDAFLOW_", "_LAMBDA", "_X_AMZN"))
        }
        env.update(
            AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port}",
            AWS_LAMBDA_FUNCTION_NAME=fn.name,
            AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(fn.memory_mb),
            AWS_LAMBDA_FUNCTION_TIMEOUT=str(math.ceil(fn.timeout_s)),
            AWS_LAMBDA_LOG_GROUP_NAME=f"/aws/lambda/{fn.name}",
            AWS_LAMBDA_LOG_STREAM_NAME=self.log_stream,
            AWS_REGION=region,
            AWS_DEFAULT_REGION=region,
            AWS_EXECUTION_ENV="AWS_Lambda_python_emulator",
            LAMBDA_TASK_ROOT=task_root,
            LAMBDA_RUNTIME_DIR=os.path.dirname(sys.executable),
            PYTHONUNBUFFERED="1",
            PYTHONPATH=os.pathsep.join(
                p
                for p in [*python_path, task_root, os.environ.get("PYTHONPATH", "")]
                if p
            ),
        )
        if lambda_endpoint:  # nested tasks: the worker invokes the function itself
            env["AWS_ENDPOINT_URL_LAMBDA"] = lambda_endpoint
        env.update({str(k): str(v) for k, v in fn.env.items()})
        cred = fn.credential
        if cred is not None:  # the execution role's credentials, as Lambda sets them
            env["AWS_ACCESS_KEY_ID"] = cred.access_key_id
            env["AWS_SECRET_ACCESS_KEY"] = cred.secret_access_key
            if cred.session_token:
                env["AWS_SESSION_TOKEN"] = cred.session_token
        env[PARENT_PID_VAR] = str(os.getpid())
        if rlimit_as:
            env[RLIMIT_AS_VAR] = str(rlimit_as)
        if shared_paths is not None:
            under_tmp = [
                p for p in [task_root, *python_path]
                if os.path.abspath(p) == "/tmp" or os.path.abspath(p).startswith("/tmp/")
            ]  # fmt: skip
            env[ISOLATE_VAR] = json.dumps({
                "tmp_mb": fn.ephemeral_mb,
                "readonly": [task_root],
                "shared": [os.path.abspath(p) for p in [*shared_paths, *under_tmp]],
            })  # fmt: skip
        read_fd, write_fd = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "lambdaflow.testing.emulator_bootstrap",
                    fn.handler,
                ],
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                env=env,
                cwd=task_root,
                close_fds=True,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        os.set_blocking(read_fd, False)
        self.out_fd = read_fd
        self.pidfd = os.pidfd_open(self.proc.pid) if hasattr(os, "pidfd_open") else -1
        self.runtime_api = f"127.0.0.1:{port}"

    def kill(self, reason: str) -> None:
        if not self.kill_reason:
            self.kill_reason = reason
        if self.proc is not None and self.proc.returncode is None:
            try:
                self.proc.kill()
            except ProcessLookupError:  # pragma: no cover - already gone
                pass

    def rss_mb(self) -> int:
        """Resident memory of the whole process tree in MB (Lambda's limit covers every
        process of the environment, as one cgroup would)."""
        from lambdaflow.testing.peer import process_tree

        pages = 0
        for pid in process_tree(self.pid) if self.pid > 0 else ():
            try:
                with open(f"/proc/{pid}/statm", "rb") as fh:
                    pages += int(fh.read().split()[1])
            except (OSError, ValueError, IndexError):
                continue
        return pages * os.sysconf("SC_PAGE_SIZE") // 2**20

    def peak_mb(self) -> int:
        """Peak resident memory (VmHWM) in MB, for the REPORT line."""
        try:
            with open(f"/proc/{self.pid}/status", "rb") as fh:
                for line in fh:
                    if line.startswith(b"VmHWM:"):
                        return int(line.split()[1]) // 1024
        except (OSError, ValueError):
            pass
        return 0

    def describe_exit(self, returncode: int) -> str:
        """Lambda's wording: "exit status 3" or "signal: killed"."""
        if returncode >= 0:
            return f"exit status {returncode}"
        sig = -returncode
        try:
            word = _SIGNAL_WORDS.get(
                signal.Signals(sig), signal.Signals(sig).name.lower()
            )
        except ValueError:
            word = str(sig)
        return f"signal: {word}"

    def snapshot(self) -> dict:
        return {
            "env_id": self.env_id,
            "function": self.function.name,
            "pid": self.pid,
            "state": self.state,
            "runtime_api": self.runtime_api,
            "cold_start_s": self.cold_start_s,
            "invocations": self.invocations,
            "exit": self.exit_status or None,
        }
