"""Memory tiers: how a deployment names its functions, one per memory size.

A deployment named ``N`` with memory tiers ``M1 < M2 < ...`` has one function per tier,
``N-M1``, ``N-M2``, ... (all from the same image). The lambda backend routes a task
asking ``memory_mb`` to the smallest tier that fits; ``lambdaflow deploy`` creates the
functions under these names. The runtime owns the naming so that it never imports the
deploy package.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from lambdaflow.errors import ConfigError


def tier_name(name: str, memory_mb: int) -> str:
    """The function of deployment ``name`` for the tier of ``memory_mb`` MB."""
    return f"{name}-{int(memory_mb)}"


def parse_tiers(text: str | Iterable[int]) -> tuple[int, ...]:
    """``"1769,3008"`` (or integers) -> ``(1769, 3008)``, sorted and unique; ConfigError
    on anything that is not a list of positive integers."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        tiers = {int(str(t).strip()) for t in items if str(t).strip()}
    except ValueError:
        raise ConfigError(
            f"memory_tiers={text!r}: give memory sizes in MB separated by commas, "
            "e.g. memory_tiers='1769,3008,10240'"
        ) from None
    if any(t <= 0 for t in tiers):
        raise ConfigError(f"memory_tiers={text!r}: every tier must be a positive number of MB")
    return tuple(sorted(tiers))


def tier_function_name(name: str, memory_mb: int, tiers: tuple[int, ...]) -> str:
    """The deployed function for a task asking ``memory_mb``: the smallest tier that fits.

    ``@remote(memory_mb=4000)`` runs on ``<name>-10240`` when the tiers are (1769, 3008,
    10240). Raises ConfigError when no tier is large enough.
    """
    for tier in sorted(tiers):
        if tier >= memory_mb:
            return tier_name(name, tier)
    raise ConfigError(
        f"memory_mb={memory_mb}: the largest deployed tier is {max(tiers)} MB; deploy a "
        f"larger one with `lambdaflow deploy --memory {','.join(map(str, tiers))},{memory_mb}`"
    )


def split_function_name(name: str, function_name: str) -> int | None:
    """The memory tier of ``function_name`` if it is one of deployment ``name``'s."""
    match = re.fullmatch(re.escape(name) + r"-(\d+)", function_name)
    return int(match.group(1)) if match else None


def deployment_of(function_name: str) -> str | None:
    """The deployment name of a tier function ``<name>-<MB>``, else None."""
    base, _, tier = function_name.rpartition("-")
    return base if base and tier.isdigit() else None


__all__ = [
    "deployment_of",
    "parse_tiers",
    "split_function_name",
    "tier_function_name",
    "tier_name",
]
