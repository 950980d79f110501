"""What to do after one Invoke attempt: send it again (after how long), or stop.

A pure decision table, tested without I/O; the backend (``aws_lambda``) carries it out.
One :class:`InvokeRetries` lives for one invocation of one task::

    outcome                          again?  delay before the next attempt        bounded by
    ───────────────────────────────  ──────  ───────────────────────────────────  ─────────────
    NotSentError (DNS, refused,      yes     equal jitter, 0.2 s x 2^n, cap 5 s   NOT_SENT_TRIES
      connect timeout, TLS, proxy)
    429 TooManyRequestsException     yes     full jitter, 0.05 s x 2^n, cap 5 s;  the budget
                                             never sooner than Lambda's hint
    ResourceNotReadyException        yes     equal jitter, 1 s x 2^n, cap 20 s    the budget
      (an Inactive function waking)
    other 5xx that can pass          yes     equal jitter, 1 s x 2^n, cap 20 s    SERVICE_TRIES
      (ServiceException, 503, ...)                                                and the budget
    ReadTimeoutError                 never   the task fails with TaskTimeoutError
    ConnectionLostError              never   the task fails with BackendError (it may have run)
    any other 4xx / 5xx              never   the task fails with BackendError

The 5xx schedule follows AWS's guidance for its SDKs (standard retry mode: exponential
backoff with jitter, capped at 20 s); "equal jitter" keeps at least half of each step so
the waits are seconds, not the 0.8 s in total they once were. The budget
(``Config.retry_budget_s``, default 300 s) is wall time since the first attempt.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from lambdaflow.runtime.backends.lambda_invoke import (
    ConnectionLostError,
    InvokeReply,
    InvokeTransportError,
    NotSentError,
    ReadTimeoutError,
)

NOT_SENT_TRIES = 5
SERVICE_TRIES = 6
THROTTLE_BASE_S, THROTTLE_CAP_S = 0.05, 5.0
SERVICE_BASE_S, SERVICE_CAP_S = 1.0, 20.0
NOT_SENT_BASE_S, NOT_SENT_CAP_S = 0.2, 5.0
#: 5xx error types that a later attempt can get past.
TRANSIENT_5XX = frozenset({
    "", "ServiceException", "ResourceNotReadyException", "EC2ThrottledException",
    "EC2UnexpectedException", "ENILimitReachedException",
    "SubnetIPAddressLimitReachedException", "EFSIOException",
})  # fmt: skip
THROTTLED = "TooManyRequestsException"
NOT_READY = "ResourceNotReadyException"

#: Decision kinds.
DONE, AGAIN, THROTTLE_EXHAUSTED, GIVE_UP, TIMED_OUT, LOST = (
    "done", "again", "throttle-exhausted", "give-up", "timed-out", "lost",
)  # fmt: skip


@dataclass(frozen=True)
class Decision:
    kind: str
    delay: float = 0.0
    reason: str = ""


def is_throttle(reply: InvokeReply) -> bool:
    """Lambda refused the invocation for concurrency (429 TooManyRequestsException)."""
    return reply.status == 429 or reply.error_type == THROTTLED


def full_jitter(n: int, base: float, cap: float, rng: Callable[[], float]) -> float:
    return rng() * min(cap, base * 2**n)


def equal_jitter(n: int, base: float, cap: float, rng: Callable[[], float]) -> float:
    step = min(cap, base * 2**n)
    return step / 2 + rng() * step / 2


class InvokeRetries:
    """The retry state of one invocation: counts per kind and the time budget."""

    def __init__(
        self,
        budget_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.budget_s = budget_s
        self._clock, self._rng = clock, rng
        self._start = clock()
        self.throttles = self.not_sent = self.service = 0

    def elapsed(self) -> float:
        return self._clock() - self._start

    def _within_budget(self, delay: float) -> bool:
        return self.elapsed() + delay <= self.budget_s

    def after_error(self, exc: InvokeTransportError) -> Decision:
        """The call raised: only a request that never left is sent again."""
        if isinstance(exc, ReadTimeoutError):
            return Decision(TIMED_OUT, reason=str(exc))
        if isinstance(exc, ConnectionLostError):
            return Decision(LOST, reason=str(exc))
        if isinstance(exc, NotSentError) and self.not_sent + 1 < NOT_SENT_TRIES:
            delay = equal_jitter(self.not_sent, NOT_SENT_BASE_S, NOT_SENT_CAP_S, self._rng)
            self.not_sent += 1
            return Decision(AGAIN, delay, str(exc))
        return Decision(GIVE_UP, reason=f"{exc} (after {self.not_sent + 1} tries)")

    def after_reply(self, reply: InvokeReply) -> Decision:
        """Lambda answered with HTTP ``reply.status``."""
        if reply.status < 400:
            return Decision(DONE)
        etype = reply.error_type
        if is_throttle(reply):
            delay = full_jitter(min(self.throttles, 8), THROTTLE_BASE_S, THROTTLE_CAP_S, self._rng)
            delay = max(delay, reply.retry_after or 0.0)
            self.throttles += 1
            if not self._within_budget(delay):
                return Decision(THROTTLE_EXHAUSTED, reason=reply.error_message())
            return Decision(AGAIN, delay, "throttled")
        if reply.status >= 500 and etype in TRANSIENT_5XX:
            delay = equal_jitter(self.service, SERVICE_BASE_S, SERVICE_CAP_S, self._rng)
            self.service += 1
            tries_left = etype == NOT_READY or self.service < SERVICE_TRIES
            if tries_left and self._within_budget(delay):
                return Decision(AGAIN, delay, f"HTTP {reply.status} {etype}")
            return Decision(GIVE_UP, reason=(
                f"HTTP {reply.status} {etype or 'error'} {self.service} times in "
                f"{self.elapsed():.0f} s: {reply.error_message()}"))
        return Decision(GIVE_UP, reason=f"HTTP {reply.status} {etype}: {reply.error_message()}")


__all__ = [
    "AGAIN",
    "DONE",
    "Decision",
    "GIVE_UP",
    "InvokeRetries",
    "LOST",
    "THROTTLE_EXHAUSTED",
    "TIMED_OUT",
    "equal_jitter",
    "full_jitter",
    "is_throttle",
]
