"""What happens to execution environments outside the request flow: timeouts, process
exits, output and memory (a mixin of ``EmulatorCore``, event-loop thread only).

    timer fires ──────────> _on_timeout: answer Sandbox.Timedout, discard + SIGKILL
    pidfd readable ───────> _exited: answer the invocation in flight with the init
                            error, Runtime.OutOfMemory or Runtime.ExitError
    stdout/stderr pipe ───> _take_output: echo (optional), keep the invocation's log tail
    every 100 ms ("rss") ─> _check_memory: SIGKILL a busy environment whose process
                            tree is over MemorySize (Runtime.OutOfMemory)

An environment killed here leaves service at once (``_discard``), so the concurrency it
held is free for the next invoke before its process is even reaped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Callable

from lambdaflow.testing.emulator_env import Environment, Invocation

logger = logging.getLogger(__name__)


class EnvironmentEvents:
    """Mixin: needs the attributes and methods of ``EmulatorCore`` listed below."""

    loop: asyncio.AbstractEventLoop
    functions: dict
    echo_logs: bool
    memory_limit: str | None
    _closing: bool
    _watchdog: asyncio.TimerHandle | None
    _finish: Callable[..., None]
    _discard: Callable[[Environment, str], None]
    state_of: Callable

    def _on_timeout(self, env: Environment, inv: Invocation) -> None:
        if env.invocation is not inv:
            return
        inv.timer = None
        fs = self.state_of(env.function)
        if fs is not None:
            fs.counters["timeouts"] += 1
        what = f"Task timed out after {env.function.timeout_s:.2f} seconds"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        line = f"{stamp}Z {inv.request_id} {what}\n"
        message = f"RequestId: {inv.request_id} Error: {what}"
        body = json.dumps({"errorMessage": message, "errorType": "Sandbox.Timedout"})
        self._drain_output(env)
        self._finish(inv, body.encode(), "Unhandled", extra_log=line)
        env.invocation = None
        self._discard(env, "timeout")

    def _read_output(self, env: Environment) -> None:
        try:
            data = os.read(env.out_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.loop.remove_reader(env.out_fd)
            os.close(env.out_fd)
            env.out_fd = -1
            return
        self._take_output(env, data)

    def _take_output(self, env: Environment, data: bytes) -> None:
        if self.echo_logs:
            prefix = f"[{env.function.name} {env.env_id[:8]}] ".encode()
            sys.stderr.buffer.write(
                b"".join(prefix + line + b"\n" for line in data.splitlines())
            )
            sys.stderr.flush()
        inv = env.invocation
        if inv is not None and inv.logs is not None:
            inv.logs += data
            if len(inv.logs) > 2 * 4096:
                del inv.logs[:-4096]

    def _drain_output(self, env: Environment) -> None:
        """Read what the runtime printed before it answered (already in the pipe)."""
        while env.out_fd >= 0:
            try:
                data = os.read(env.out_fd, 65536)
            except (BlockingIOError, OSError):
                return
            if not data:
                return
            self._take_output(env, data)

    def _on_exit(self, env: Environment) -> None:
        self.loop.remove_reader(env.pidfd)
        os.close(env.pidfd)
        env.pidfd = -1
        self._exited(env)

    def _poll_exit(self, env: Environment) -> None:  # pragma: no cover - no pidfd
        assert env.proc is not None
        if env.proc.poll() is None:
            self.loop.call_later(0.05, self._poll_exit, env)
        else:
            self._exited(env)

    def _exited(self, env: Environment) -> None:
        assert env.proc is not None
        returncode = env.proc.wait()
        env.exit_status = env.describe_exit(returncode)
        self._drain_output(env)
        inv = env.invocation
        env.invocation = None
        reason = env.kill_reason
        self._discard(env, reason or "exit")
        fs = self.state_of(env.function)
        if inv is None or reason == "timeout":
            return
        if reason == "oom":  # the watchdog's kill; a SIGKILL from outside is a crash
            error_type = "Runtime.OutOfMemory"
            if fs is not None:
                fs.counters["out_of_memory"] += 1
        else:
            error_type = "Runtime.ExitError"
            if fs is not None:
                fs.counters["crashes"] += 1
        message = (
            f"RequestId: {inv.request_id} Error: Runtime exited with error: "
            f"{env.exit_status}"
        )
        if env.init_error is not None:  # the runtime said why before exiting
            body = env.init_error
        else:
            body = json.dumps(
                {"errorMessage": message, "errorType": error_type}
            ).encode()
        self._finish(inv, body, "Unhandled", extra_log=f"{message}\n{error_type}\n")

    def _check_memory(self) -> None:
        self._watchdog = None
        busy = [
            env for fs in self.functions.values() for env in fs.envs if env.invocation
        ]
        for env in busy:
            if env.rss_mb() > env.function.memory_mb:
                logger.info(
                    "environment %s of %s over %d MB: killed",
                    env.env_id,
                    env.function.name,
                    env.function.memory_mb,
                )
                env.kill("oom")
        if not self._closing and any(fs.envs for fs in self.functions.values()):
            self._watchdog = self.loop.call_later(0.1, self._check_memory)
