"""Lambda's account concurrency bookkeeping, on plain records."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lambdaflow.testing.emulator_pool import ACCOUNT_LIMIT, RESERVED_LIMIT, AccountPool


def fn(reserved=None, envs=0, available=0):
    envs_set = {object() for _ in range(envs)}
    return SimpleNamespace(config=SimpleNamespace(concurrency=reserved), envs=envs_set,
                           available=list(envs_set)[:available])  # fmt: skip


def test_reserved_functions_own_their_share_and_the_rest_is_shared():
    pool = AccountPool(10, 2)
    reserved, tier_a, tier_b = fn(3, envs=3), fn(None, envs=4), fn(None, envs=2)
    functions = [reserved, tier_a, tier_b]
    assert pool.unreserved(functions) == 7
    assert pool.limit(reserved, functions) == 3 and pool.limit(tier_a, functions) == 7
    assert pool.room(reserved, functions) == RESERVED_LIMIT
    assert pool.room(tier_a, functions) is None  # 6 of 7 used
    tier_b.envs.add(object())
    assert pool.room(tier_a, functions) == pool.room(tier_b, functions) == ACCOUNT_LIMIT


def test_reservations_keep_the_unreserved_minimum():
    pool = AccountPool(10, 2)
    a, b = fn(5), fn(None)
    pool.check_reservation(a, 8, [a, b])  # 10 - 8 = 2 left
    with pytest.raises(ValueError, match=r"minimum value of \[2\]"):
        pool.check_reservation(b, 4, [a, b])  # 10 - 5 - 4 = 1
    with pytest.raises(ValueError):
        AccountPool(5, 5)


def test_an_idle_environment_of_another_unreserved_function_is_the_victim():
    pool = AccountPool(4, 0)
    busy, idle, reserved = fn(None, envs=2), fn(None, envs=2, available=1), fn(0)
    victim = pool.idle_victim(busy, [busy, idle, reserved])
    assert victim is not None and victim[0] is idle and victim[1] in idle.available
    assert pool.idle_victim(idle, [busy, idle]) is None  # never its own
