"""lambda_retry's decision table, with a fake clock and a fixed random source: which
outcomes are sent again, after how long, and when the budget ends it."""

from __future__ import annotations

import pytest

from lambdaflow.runtime.backends import lambda_retry as retry
from lambdaflow.runtime.backends.lambda_invoke import (
    ConnectionLostError,
    InvokeReply,
    NotSentError,
    ReadTimeoutError,
)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _policy(budget: float = 300.0, r: float = 0.0):
    clock = Clock()
    return retry.InvokeRetries(budget, clock=clock, rng=lambda: r), clock


def _reply(status: int, etype: str = "", retry_after: float | None = None) -> InvokeReply:
    return InvokeReply(status, b'{"message": "m"}', error_type=etype, retry_after=retry_after)


def test_success_is_done():
    policy, _ = _policy()
    assert policy.after_reply(_reply(200)).kind == retry.DONE


def test_a_sent_request_is_never_sent_again():
    """Issue 13.1: a read timeout was re-invoked 5 times per attempt."""
    policy, _ = _policy()
    assert policy.after_error(ReadTimeoutError("t")).kind == retry.TIMED_OUT
    assert policy.after_error(ConnectionLostError("l")).kind == retry.LOST


def test_not_sent_is_retried_a_few_times():
    policy, _ = _policy()
    kinds = [policy.after_error(NotSentError("refused")).kind for _ in range(retry.NOT_SENT_TRIES)]
    assert kinds == [retry.AGAIN] * (retry.NOT_SENT_TRIES - 1) + [retry.GIVE_UP]


def test_5xx_backoff_is_seconds_capped_and_jittered():
    """Issue 13.3: 5xx backoff was 0.8 s in total. Equal jitter keeps half of each step:
    with the lowest random draw the waits are 0.5, 1, 2, 4, 8 s."""
    low, _ = _policy(r=0.0)
    waits = [low.after_reply(_reply(500, "ServiceException")).delay
             for _ in range(retry.SERVICE_TRIES - 1)]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert low.after_reply(_reply(500, "ServiceException")).kind == retry.GIVE_UP
    high, _ = _policy(r=1.0)
    waits = [high.after_reply(_reply(503)).delay for _ in range(retry.SERVICE_TRIES - 1)]
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0] and max(waits) <= retry.SERVICE_CAP_S


def test_resource_not_ready_waits_within_the_budget():
    policy, clock = _policy(budget=60.0, r=1.0)
    waits = []
    while (d := policy.after_reply(_reply(502, "ResourceNotReadyException"))).kind == retry.AGAIN:
        waits.append(d.delay)
        clock.t += d.delay
    assert d.kind == retry.GIVE_UP and "ResourceNotReadyException" in d.reason
    assert len(waits) > retry.SERVICE_TRIES - 1  # not cut by the try count: it is waking up
    assert max(waits) == retry.SERVICE_CAP_S and sum(waits) <= 60.0


def test_configuration_5xx_errors_are_not_retried():
    policy, _ = _policy()
    assert policy.after_reply(_reply(502, "KMSAccessDeniedException")).kind == retry.GIVE_UP
    assert policy.after_reply(_reply(400, "InvalidRequestContentException")).kind == retry.GIVE_UP


def test_throttling_is_absorbed_until_the_budget():
    policy, clock = _policy(budget=10.0, r=0.5)
    n = 0
    while (d := policy.after_reply(_reply(429, "TooManyRequestsException"))).kind == retry.AGAIN:
        n += 1
        clock.t += d.delay
        assert d.delay <= retry.THROTTLE_CAP_S
    assert d.kind == retry.THROTTLE_EXHAUSTED and n > 3 and clock.t <= 10.0
    assert policy.throttles == n + 1


def test_throttle_hint_is_a_floor():
    policy, _ = _policy(r=0.0)
    assert policy.after_reply(_reply(429, retry_after=2.0)).delay == 2.0


@pytest.mark.parametrize("n", [0, 3, 10])
def test_jitter_bounds(n):
    assert retry.full_jitter(n, 1.0, 20.0, lambda: 1.0) == min(20.0, 2.0**n)
    assert retry.equal_jitter(n, 1.0, 20.0, lambda: 0.0) == min(20.0, 2.0**n) / 2
