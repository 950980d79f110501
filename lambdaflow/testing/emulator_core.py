"""Scheduling core of the Lambda emulator: invocations onto execution environments.

Everything here runs on the emulator's single event-loop thread, so the state needs no
locks. State per function (``FunctionState``): its environments, a LIFO stack of the
available ones (the most recently used environment is reused first, so a trickle of
calls stays on one warm environment and the rest can be reclaimed), a FIFO queue of
pending asynchronous (Event) invocations and counters.

Concurrency is Lambda's account model (``emulator_pool.AccountPool``): reserved
functions own their share, the others share the unreserved pool; a 429 carries the
``Reason`` of the limit that was hit, after an idle environment of another function
was reclaimed if that made room.

    Invoke ──> invoke(): acquire(): available env? ──yes──> assign()
                            │ no: room in its pool? spawn() + assign()
                            └ no: sync -> 429 TooManyRequestsException + Reason
                                  async -> stays queued (until MaximumEventAge)
    runtime GET next ────────> deliver() (or park the poll until an invocation comes)
    runtime POST response/error ──> finish() ──> boto3 gets 200 (+ X-Amz-Function-Error)
    timeout timer / process exit ──> finish() with Sandbox.Timedout / Runtime.ExitError /
                                     Runtime.OutOfMemory; the environment is discarded

Asynchronous invocations that fail are retried ``MaximumRetryAttempts`` times (default 2)
after ``async_retry_delays_s`` (Lambda waits 1 minute, then 2: "Lambda retries the
function twice more, with a one-minute wait between the first two attempts, and two
minutes between the second and third", https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html);
an event older than ``MaximumEventAgeInSeconds`` (default 6 h) is dropped instead of run.

Environments left available for ``idle_timeout_s`` are reclaimed (Lambda reclaims idle
environments after an unpublished while; the emulator makes it a setting). Requests
to the Invoke API must be SigV4-signed by a known key (``sigv4``); Runtime API
connections must come from the environment's own processes (``peer``).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import logging
import os
import socket
import time
from functools import partial

from lambdaflow.testing.emulator_env import (
    BUSY,
    DEAD,
    INIT_ALLOWANCE_S,
    STARTING,
    Environment,
    FunctionConfig,
    Invocation,
)
from lambdaflow.testing.emulator_events import EnvironmentEvents
from lambdaflow.testing.emulator_http import HttpConnection
from lambdaflow.testing.emulator_options import EmulatorOptions
from lambdaflow.testing.emulator_pool import ACCOUNT_LIMIT, AccountPool
from lambdaflow.testing.emulator_runtime import RuntimeRoutes
from lambdaflow.testing.roles import RoleSessions
from lambdaflow.testing.sigv4 import Credential, SigV4Verifier

logger = logging.getLogger(__name__)

_COUNTERS = (
    "invocations",
    "cold_starts",
    "throttles",
    "timeouts",
    "crashes",
    "out_of_memory",
    "function_errors",
    "async_invocations",
    "async_retries",
    "async_dropped",
    "async_expired",
    "idle_reclaimed",
    "runtime_refused",
)


class FunctionState:
    def __init__(self, config: FunctionConfig) -> None:
        self.config = config
        self.envs: set[Environment] = set()
        self.available: list[Environment] = []  # LIFO stack
        self.queue: collections.deque[Invocation] = collections.deque()
        self.counters = dict.fromkeys(_COUNTERS, 0)


class EmulatorCore(EnvironmentEvents, RuntimeRoutes):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        options: EmulatorOptions,
        credentials: list[Credential],
        roles: RoleSessions | None,
    ) -> None:
        self.loop = loop
        self.options = options
        self.region = options.region
        self.pool = AccountPool(options.account_concurrency, options.min_unreserved)
        self.idle_timeout_s = options.idle_timeout_s
        self.shared_paths = list(options.shared_paths) if options.isolate else None
        self.verifier = SigV4Verifier(self.region)
        for credential in credentials:
            self.verifier.add(credential)
        self.roles = roles
        self.endpoint_url = ""  # set once the Invoke API listens
        self.python_path = list(options.python_path)
        self.task_root = options.task_root or os.getcwd()
        self.memory_limit = options.memory_limit
        self.rlimit_headroom_mb = options.rlimit_headroom_mb
        self.async_retry_delays_s = options.async_retry_delays_s
        self.echo_logs = options.echo_logs
        self.functions: dict[str, FunctionState] = {}
        self.history: list[Environment] = []  # every environment ever started
        self._seq = 0
        self._closing = False
        self._watchdog: asyncio.TimerHandle | None = None

    # -- registry and concurrency -----------------------------------------------
    def limit(self, fs: FunctionState) -> int:
        return self.pool.limit(fs, self.functions.values())

    def check_reservation(self, fs: FunctionState, value: int) -> None:
        self.pool.check_reservation(fs, value, self.functions.values())

    def _room(self, fs: FunctionState) -> str | None:
        """None if ``fs`` may start an environment now (after reclaiming an idle
        environment of another function if that makes room), else the 429 Reason."""
        reason = self.pool.room(fs, self.functions.values())
        if reason == ACCOUNT_LIMIT:
            victim = self.pool.idle_victim(fs, self.functions.values())
            if victim is not None:
                other, env = victim
                other.available.remove(env)
                other.counters["idle_reclaimed"] += 1
                self._discard(env, "idle")
                return None
        return reason

    def state_of(self, config: FunctionConfig) -> FunctionState | None:
        """The live state of this exact function (None once deleted or replaced)."""
        fs = self.functions.get(config.name)
        return fs if fs is not None and fs.config is config else None

    def add_function(self, config: FunctionConfig) -> None:
        """Register; the execution role is assumed first, as CreateFunction does (it
        fails with "The role defined for the function cannot be assumed by Lambda")."""
        if self.roles is not None and config.role:
            config.credential = self.roles.assume(config.role, config.name)
        elif config.credential is None:  # no STS: a key of the emulator's own
            config.credential = Credential.generate(f"function/{config.name}")
        self.verifier.add(config.credential)
        self.functions[config.name] = FunctionState(config)

    def put_function(self, config: FunctionConfig) -> dict:
        """Create or replace (its environments are killed); the FunctionConfiguration."""
        if config.name in self.functions:
            self.remove_function(config.name)
        self.add_function(config)
        return config.configuration(self.region)

    def remove_function(self, name: str) -> None:
        fs = self.functions.pop(name)
        if fs.config.credential is not None:
            self.verifier.discard(fs.config.credential.access_key_id)
        for env in list(fs.envs):
            self._discard(env, "stop")
        fs.counters["async_dropped"] += len(fs.queue)
        fs.queue.clear()

    # -- invoke -------------------------------------------------------------------
    def invoke(self, fs: FunctionState, inv: Invocation) -> str | None:
        """Start a sync invocation; the throttle Reason if there is no room for it."""
        env = self._acquire(fs)
        if env is None:
            fs.counters["throttles"] += 1
            return self.pool.room(fs, self.functions.values()) or ACCOUNT_LIMIT
        self._assign(env, inv)
        return None

    def invoke_async(self, fs: FunctionState, inv: Invocation) -> None:
        fs.counters["async_invocations"] += 1
        fs.queue.append(inv)
        self._pump(fs)

    def _pump(self, fs: FunctionState) -> None:
        while fs.queue:
            inv = fs.queue[0]
            if time.monotonic() - inv.created > fs.config.max_event_age_s:
                fs.queue.popleft()
                fs.counters["async_expired"] += 1
                logger.warning(
                    "async event %s of %s dropped: older than MaximumEventAgeInSeconds=%s",
                    inv.request_id, fs.config.name, fs.config.max_event_age_s,
                )  # fmt: skip
                continue
            env = self._acquire(fs)
            if env is None:
                return
            self._assign(env, fs.queue.popleft())

    def _acquire(self, fs: FunctionState) -> Environment | None:
        while fs.available:
            env = fs.available.pop()
            if env.state != DEAD:
                return env
        if self._closing or self._room(fs) is not None:
            return None
        return self._spawn(fs)

    def _spawn(self, fs: FunctionState) -> Environment:
        self._seq += 1
        env = Environment(fs.config, self._seq)
        # One Runtime API listener per environment, so a request names its environment
        # by the port it arrives on (awslambdaric's AWS_LAMBDA_RUNTIME_API is host:port).
        # The socket listens at once; asyncio starts accepting on the next loop pass.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        env.sock = sock
        port = sock.getsockname()[1]
        factory = partial(HttpConnection, partial(self.runtime_request, env))
        task = self.loop.create_task(self.loop.create_server(factory, sock=sock))
        task.add_done_callback(partial(self._server_ready, env))
        rlimit = None
        if self.memory_limit == "rlimit":
            rlimit = (fs.config.memory_mb + self.rlimit_headroom_mb) * 2**20
        if self.roles is not None and fs.config.role:
            fs.config.credential = self.roles.fresh(fs.config.credential, self.verifier)
        env.spawn(
            port, self.region, self.python_path, self.task_root, rlimit,
            self.endpoint_url, self.shared_paths,
        )  # fmt: skip
        fs.envs.add(env)
        self.history.append(env)
        fs.counters["cold_starts"] += 1
        self.loop.add_reader(env.out_fd, self._read_output, env)
        if env.pidfd >= 0:
            self.loop.add_reader(env.pidfd, self._on_exit, env)
        else:  # pragma: no cover - kernels without pidfd: poll
            self._poll_exit(env)
        if self.memory_limit == "rss" and self._watchdog is None:
            self._watchdog = self.loop.call_later(0.1, self._check_memory)
        return env

    def _server_ready(self, env: Environment, task: asyncio.Task) -> None:
        if env.state == DEAD:  # discarded before it served: its socket is closed
            if not task.cancelled() and task.exception() is None:
                task.result().close()
            return
        if task.cancelled() or task.exception() is not None:
            logger.error(
                "runtime API listener for %s failed: %r",
                env.env_id,
                None if task.cancelled() else task.exception(),
            )
            self._discard(env, "stop")
            return
        env.server = task.result()

    def _assign(self, env: Environment, inv: Invocation) -> None:
        inv.env = env
        inv.attempt += 1
        inv.cold = env.state == STARTING and env.invocations == 0
        env.invocation = inv
        env.delivered = False
        env.invocations += 1
        fs = self.state_of(env.function)
        if fs is not None:
            fs.counters["invocations"] += 1
        if env.parked is not None:
            self._deliver(env)
        else:
            # Not polling yet: a cold environment gets Lambda's init allowance on top of
            # the timeout; a returning one polls within microseconds.
            allowance = INIT_ALLOWANCE_S if env.cold_start_s is None else 0.0
            inv.timer = self.loop.call_later(
                env.function.timeout_s + allowance, self._on_timeout, env, inv
            )
            if env.state != STARTING:
                env.state = BUSY

    def _make_available(self, env: Environment) -> None:
        fs = self.state_of(env.function)
        if fs is None or env.state == DEAD:
            return
        fs.available.append(env)
        env.available_since = time.monotonic()
        self.loop.call_later(
            self.idle_timeout_s, self._reclaim_idle, env, env.available_since
        )
        if fs.queue:
            self._pump(fs)

    def _reclaim_idle(self, env: Environment, since: float) -> None:
        if env.state == DEAD or env.invocation is not None or env.available_since != since:
            return
        fs = self.state_of(env.function)
        if fs is not None:
            fs.counters["idle_reclaimed"] += 1
            if env in fs.available:
                fs.available.remove(env)
        self._discard(env, "idle")

    # -- completion -----------------------------------------------------------------
    def _finish(
        self,
        inv: Invocation,
        body: bytes,
        function_error: str | None,
        extra_log: str = "",
    ) -> None:
        if inv.timer is not None:
            inv.timer.cancel()
            inv.timer = None
        env = inv.env
        fs = self.state_of(inv.function)
        if function_error and fs is not None:
            fs.counters["function_errors"] += 1
        if inv.conn is None:  # async: retry or drop
            if function_error and fs is not None and not self._closing:
                retries = min(fs.config.max_retry_attempts, len(self.async_retry_delays_s))
                if inv.attempt <= retries:
                    fs.counters["async_retries"] += 1
                    delay = self.async_retry_delays_s[inv.attempt - 1]
                    self.loop.call_later(delay, self._requeue, fs, inv)
                else:
                    fs.counters["async_dropped"] += 1
                    logger.warning(
                        "async invocation %s of %s dropped after %d attempts: %s",
                        inv.request_id,
                        inv.function.name,
                        inv.attempt,
                        body[:500],
                    )
            return
        headers = {
            "X-Amz-Executed-Version": "$LATEST",
            "x-amzn-RequestId": inv.request_id,
        }
        if function_error:
            headers["X-Amz-Function-Error"] = function_error
        if inv.tail and env is not None:
            duration = time.monotonic() - inv.started if inv.started else 0.0
            text = inv.log_tail(
                duration,
                inv.function.memory_mb,
                env.peak_mb(),
                env.cold_start_s if inv.cold else None,
                extra_log,
            )
            headers["X-Amz-Log-Result"] = base64.b64encode(text.encode()).decode()
        inv.conn.respond(200, body, headers)

    def _requeue(self, fs: FunctionState, inv: Invocation) -> None:
        if self.functions.get(fs.config.name) is fs:
            inv.logs = bytearray() if inv.tail else None
            fs.queue.append(inv)
            self._pump(fs)

    def _discard(self, env: Environment, reason: str) -> None:
        """Take an environment out of service now and kill its process."""
        if env.state == DEAD:
            return
        env.state = DEAD
        env.kill(reason)
        fs = self.state_of(env.function)
        if fs is not None:
            fs.envs.discard(env)
        if env.parked is not None:
            env.parked.close()
            env.parked = None
        if env.server is not None:
            env.server.close()
        elif env.sock is not None:
            env.sock.close()
        if fs is not None and fs.queue:
            self._pump(fs)

    # -- stats & shutdown -----------------------------------------------------------
    def stats(self) -> dict:
        functions = {}
        for name, fs in self.functions.items():
            counts = dict(fs.counters)
            counts["environments"] = len(fs.envs)
            counts["busy"] = sum(1 for e in fs.envs if e.invocation is not None)
            counts["queued"] = len(fs.queue)
            counts["concurrency"] = self.limit(fs)
            functions[name] = counts
        return {
            "functions": functions,
            "environments": [e.snapshot() for e in self.history],
        }

    def close(self) -> list:
        """Kill every environment; return their processes for the caller to reap."""
        self._closing = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        procs = []
        for fs in self.functions.values():
            fs.counters["async_dropped"] += len(fs.queue)
            fs.queue.clear()
            for env in list(fs.envs):
                inv = env.invocation
                if inv is not None and inv.timer is not None:
                    inv.timer.cancel()
                if inv is not None and inv.conn is not None:
                    inv.conn.close()
                self._discard(env, "stop")
        for env in self.history:
            if env.proc is not None:
                procs.append(env.proc)
            for fd in (env.pidfd, env.out_fd):
                if fd >= 0:
                    self.loop.remove_reader(fd)
                    os.close(fd)
            env.pidfd = env.out_fd = -1
        return procs
