"""Lambda's account concurrency model, as the emulator applies it (pure bookkeeping).

https://docs.aws.amazon.com/lambda/latest/dg/lambda-concurrency.html: an account has one
concurrency quota (``account_concurrency``, 1000 by default on AWS). A function with
reserved concurrency owns that many environments and no more; every other function
(each memory tier of a deployment is one) draws from what is left, the unreserved pool,
which reservations may not shrink below ``min_unreserved`` (100 on AWS).

    room(fs) -> None                  fs may start one more environment
             -> RESERVED_LIMIT        fs is at its reserved concurrency
             -> ACCOUNT_LIMIT         the unreserved pool is full
    idle_victim(fs)                   an available environment of another unreserved
                                      function, least recently used first: reclaiming
                                      it makes room (Lambda reclaims idle environments)

The 429's ``Reason`` is the value ``room`` returned.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

RESERVED_LIMIT = "ReservedFunctionConcurrentInvocationLimitExceeded"
ACCOUNT_LIMIT = "ConcurrentInvocationLimitExceeded"


class _Function(Protocol):
    config: Any  # FunctionConfig: .concurrency (reserved) or None
    envs: set
    available: list


class AccountPool:
    def __init__(self, account_concurrency: int, min_unreserved: int) -> None:
        if not 0 <= min_unreserved < account_concurrency:
            raise ValueError(
                f"account_concurrency={account_concurrency}, min_unreserved="
                f"{min_unreserved}: need 0 <= min_unreserved < account_concurrency"
            )
        self.account_concurrency = account_concurrency
        self.min_unreserved = min_unreserved

    def unreserved(self, functions: Iterable[_Function]) -> int:
        reserved = sum(f.config.concurrency or 0 for f in functions)
        return self.account_concurrency - reserved

    def limit(self, fs: _Function, functions: Iterable[_Function]) -> int:
        """The most environments ``fs`` may hold now."""
        if fs.config.concurrency is not None:
            return int(fs.config.concurrency)
        return self.unreserved(functions)

    def check_reservation(
        self, fs: _Function, value: int, functions: Iterable[_Function]
    ) -> None:
        """PutFunctionConcurrency's rule (ValueError with Lambda's message)."""
        left = self.unreserved(functions) + (fs.config.concurrency or 0) - value
        if left < self.min_unreserved:
            raise ValueError(
                "Specified ReservedConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of [{self.min_unreserved}]."
            )

    def room(self, fs: _Function, functions: Iterable[_Function]) -> str | None:
        functions = list(functions)
        if fs.config.concurrency is not None:
            return None if len(fs.envs) < fs.config.concurrency else RESERVED_LIMIT
        used = sum(len(f.envs) for f in functions if f.config.concurrency is None)
        return None if used < self.unreserved(functions) else ACCOUNT_LIMIT

    def idle_victim(self, fs: _Function, functions: Iterable[_Function]) -> Any:
        """(function, environment) to reclaim so ``fs`` fits the unreserved pool."""
        for other in functions:
            if other is not fs and other.config.concurrency is None and other.available:
                return other, other.available[0]
        return None
