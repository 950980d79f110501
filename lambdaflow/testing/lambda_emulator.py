"""A local AWS Lambda: the Invoke API for boto3, the Runtime API for awslambdaric, and
awslambdaric processes as execution environments (``python -m
lambdaflow.testing.emulator_bootstrap <handler>``: ``python -m awslambdaric <handler>``
plus die-with-parent and an optional RLIMIT_AS). Each environment gets its own Runtime
API port (AWS_LAMBDA_RUNTIME_API), AWS_LAMBDA_FUNCTION_NAME / _MEMORY_SIZE / _TIMEOUT,
AWS_LAMBDA_LOG_STREAM_NAME (unique per environment), AWS_REGION, LAMBDA_TASK_ROOT, the
function's Environment.Variables and a PYTHONPATH of ``python_path`` + the task root.

    with LambdaEmulator() as emu:
        emu.create_function("f", handler="mymodule.handler", timeout_s=3, concurrency=4)
        client = emu.client()  # boto3, signed with the emulator's per-run key
        client.invoke(FunctionName="f", Payload=b'{"x": 1}')
        emu.stats()  # cold starts, invocations, throttles, ... per function and environment

Threads and state: ``start()`` runs one asyncio event loop in a daemon thread. That loop
owns all state (``emulator_core.EmulatorCore``): the function registry, the environments
and the invocations in flight. Public methods called from other threads hand work to the
loop (``call_soon_threadsafe``) and wait for the answer. The modules:

    emulator_http       HTTP/1.1 protocol (keep-alive, TCP_NODELAY), no thread per request
    emulator_api        Lambda service routes: Invoke, Create/Get/Delete/ListFunctions, ...
    emulator_core       scheduling: warm reuse (LIFO), cold starts up to the concurrency
                        limit, 429 beyond it, async queue + 2 retries, timeouts, crashes
    emulator_runtime    the Runtime API of each environment (next, response, error)
    emulator_events     timeouts, process exits, output capture, the memory watchdog
    emulator_env        function / invocation / environment records, process spawning
    emulator_options    the emulator's options, one list (keywords, JSON, command line)
    emulator_bootstrap  the environment's entry point: die-with-parent, RLIMIT_AS, then
                        awslambdaric's own main

Behaviour as Lambda, where Lambda defines it: sync invokes beyond the concurrency limit
get 429 ``TooManyRequestsException`` (no queueing); payloads over 6 MB (sync) / 1 MB
(Event) get 413 ``RequestEntityTooLargeException``; an invocation past its timeout kills
its environment and answers ``Unhandled`` / ``Sandbox.Timedout`` "Task timed out after
N.NN seconds"; a runtime that exits mid-invocation answers ``Unhandled`` /
``Runtime.ExitError`` "Runtime exited with error: exit status N" (or "signal: killed").

Who may call: every Invoke API request must carry a SigV4 signature by one of
``credentials`` (default: one key generated per run, ``.credentials``) or by the
session of a function's execution role; the Runtime API answers only connections
from its environment's own processes. With ``sts_endpoint_url`` (moto), CreateFunction
assumes the function's role there (signed with ``service_credential``) and the
environments get that session, so moto enforces the role's policy on them.

Isolation (``isolate=True``, default): each environment has a private /tmp of the
function's EphemeralStorage size and a read-only task root (``emulator_bootstrap``);
``shared_paths`` under /tmp stay visible to it (tests pass their tmp directories).

Memory limits (``memory_limit``): ``"rss"`` (default) polls the resident size of busy
environments' whole process trees every 100 ms and SIGKILLs one over its MemorySize,
reported as ``Runtime.OutOfMemory`` (closest to Lambda's cgroup); ``None`` enforces
nothing; ``"rlimit"`` sets
RLIMIT_AS to MemorySize + ``rlimit_headroom_mb`` — RLIMIT_AS counts *virtual* memory
(thread stacks, numpy/BLAS arenas reserve far more than they use), so it needs headroom,
and exceeding it raises ``MemoryError`` inside the handler instead of killing the process.

``stop()`` (also at interpreter exit) kills every environment and reaps it; environments
also die with the emulator's loop thread (PR_SET_PDEATHSIG), even if the emulator is
SIGKILLed. ``python -m lambdaflow.testing.lambda_emulator`` serves in the foreground;
``emulator_process.EmulatorProcess`` runs that as a child with this same Python API.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Self

from lambdaflow.testing.emulator_api import LambdaApi
from lambdaflow.testing.emulator_core import EmulatorCore
from lambdaflow.testing.emulator_env import DEFAULT_HANDLER, FunctionConfig
from lambdaflow.testing.emulator_http import HttpConnection
from lambdaflow.testing.emulator_options import EmulatorOptions, accepted
from lambdaflow.testing.roles import RoleSessions
from lambdaflow.testing.sigv4 import Credential

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_HANDLER", "LambdaEmulator"]


class LambdaEmulator:
    """A local Lambda service on ``host:port`` (port 0: a free one)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        options: EmulatorOptions | None = None,
        credentials: Sequence[Credential] | None = None,
        sts_endpoint_url: str | None = None,
        service_credential: Credential | None = None,
        **overrides: Any,
    ) -> None:
        """``options`` and ``overrides``: ``emulator_options.EmulatorOptions``'s fields
        (``region=``, ``python_path=``, ``memory_limit=``, ...)."""
        self.options, creds = accepted(
            options, overrides, credentials, sts_endpoint_url, service_credential)
        self.host = host
        self.port = port
        self.region = self.options.region
        #: the key that signs this process's own calls (``client()``)
        self.credentials = creds[0]
        self._credentials = creds
        self._roles = (
            RoleSessions(sts_endpoint_url, self.region, service_credential)
            if sts_endpoint_url and service_credential is not None
            else None
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._core: EmulatorCore | None = None
        self._server: asyncio.AbstractServer | None = None
        self._procs: list[subprocess.Popen] = []
        self._connections: set[HttpConnection] = set()  # open client connections

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError(
                "LambdaEmulator is not started: call .start() or use `with`"
            )
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        if self._thread is not None:
            return self
        ready: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="lambda-emulator", daemon=True
        )
        self._thread.start()
        try:
            ready.result(timeout=30)
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        logger.info("Lambda emulator on %s", self.endpoint_url)
        return self

    def _run(self, ready: concurrent.futures.Future) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._core = EmulatorCore(loop, self.options, self._credentials, self._roles)
            api = LambdaApi(self._core)
            self._server = loop.run_until_complete(
                loop.create_server(
                    partial(HttpConnection, api, self._connections),
                    self.host,
                    self.port,
                    backlog=1024,
                )
            )
            self.port = self._server.sockets[0].getsockname()[1]
            self._core.endpoint_url = f"http://{self.host}:{self.port}"
        except BaseException as exc:  # noqa: BLE001 - handed to start() and re-raised there
            ready.set_exception(exc)
            loop.close()
            return
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        """Kill every environment, reap it and stop serving. Idempotent."""
        loop, thread = self._loop, self._thread
        if thread is None:
            return
        if loop is not None and thread.is_alive() and not loop.is_closed():
            try:
                self._procs = self._call(self._shutdown_in_loop, timeout=30)
            except (
                RuntimeError,
                concurrent.futures.TimeoutError,
            ):  # loop already stopping
                pass
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        for proc in self._procs + [
            e.proc
            for e in (self._core.history if self._core else [])
            if e.proc is not None
        ]:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
                logger.error(
                    "environment process %d did not exit after SIGKILL", proc.pid
                )
        self._procs = []
        self._thread = None
        self._server = None
        atexit.unregister(self.stop)

    def _shutdown_in_loop(self) -> list:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.close()
        assert self._core is not None
        return self._core.close()

    def __enter__(self) -> Self:
        return self.start()

    def client(self, service: str = "lambda", **kwargs: Any) -> Any:
        """A boto3 client for this emulator, signed with ``.credentials``."""
        return signed_client(self.endpoint_url, self.region, self.credentials, **kwargs)

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def core(self) -> EmulatorCore:
        """The running scheduling core (its event-loop thread only)."""
        if self._core is None:
            raise RuntimeError("LambdaEmulator is not started: call .start() or use `with`")
        return self._core

    # -- API ------------------------------------------------------------------------------
    def create_function(self, name: str, **settings: Any) -> dict:
        """Register (or replace) a function; returns its FunctionConfiguration.
        ``settings``: ``FunctionConfig.build``'s (``handler``, ``timeout_s``,
        ``memory_mb``, ``env``, ``concurrency``, ``role``).

        ``timeout_s`` may be fractional (Lambda's minimum of 1 s is not enforced here, so
        tests stay fast); ``concurrency`` is the reserved concurrency (None: the
        emulator's ``default_concurrency``)."""
        config = FunctionConfig.build(name, **settings)
        return self._call(lambda: self.core.put_function(config))

    def delete_function(self, name: str) -> None:
        def delete() -> None:
            if name not in self.core.functions:
                raise KeyError(f"function {name!r} is not registered in the emulator")
            self.core.remove_function(name)

        self._call(delete)

    def stats(self) -> dict:
        """Counters: ``{"functions": {name: {invocations, cold_starts, throttles,
        timeouts, crashes, out_of_memory, function_errors, async_*, environments, busy,
        queued, concurrency}}, "environments": [{env_id, function, pid, state,
        cold_start_s, invocations, exit}, ...]}`` (every environment ever started)."""
        return self._call(lambda: self.core.stats())

    def _call(self, fn: Callable[[], Any], timeout: float = 60) -> Any:
        if self._loop is None or self._core is None or self._server is None:
            raise RuntimeError(
                "LambdaEmulator is not started: call .start() or use `with`"
            )
        if threading.current_thread() is self._thread:
            return fn()
        future: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout=timeout)


def signed_client(
    endpoint_url: str, region: str, credential: Credential, **kwargs: Any
) -> Any:
    """boto3's ``lambda`` client for an emulator, with one attempt per call."""
    import boto3
    from botocore.config import Config

    options: dict[str, Any] = {
        "endpoint_url": endpoint_url,
        "region_name": region,
        "config": Config(retries={"total_max_attempts": 1}, read_timeout=120),
        **credential.as_kwargs(),
    }
    options.update(kwargs)
    return boto3.client("lambda", **options)


if __name__ == "__main__":  # pragma: no cover
    from lambdaflow.testing.emulator_process import main

    sys.exit(main())
