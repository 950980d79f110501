"""AWS Lambda's limits, in one table. Everything that sizes a payload, a timeout or a
function reads them from here (the backend, the worker entry, deploy, the emulator).

Sources: the Lambda developer guide's "Lambda quotas" page, the Invoke API reference and
"Understanding the Lambda execution environment lifecycle". Lambda's documentation, log
messages and console write "MB" for 1024 KB (the quotas page says so), so the 6 MB
synchronous payload is 6 MiB = 6,291,456 bytes; Lambda's own error says "Response
payload size exceeded maximum allowed payload size (6291556 bytes)", 100 bytes of
framing above that.

=================================  ==============  ===========================================
limit                              value           note
=================================  ==============  ===========================================
synchronous request payload        6 MiB           Invoke, InvocationType RequestResponse
synchronous response payload       6 MiB           what the handler returns (JSON)
asynchronous request payload       1 MiB           Invoke, InvocationType Event (256 KiB until
                                                   2025, and still for the deprecated
                                                   InvokeAsync API)
function timeout                   1 .. 900 s
init phase allowance               10 s            on-demand init runs up to 10 s outside the
                                                   timeout (a slower init is retried inside
                                                   the first invocation's timeout)
function memory                    128 .. 10,240   MB, 1 MB steps; 1,769 MB is one full vCPU
ephemeral storage (/tmp)           512 .. 10,240   MB
environment variables              4 KiB           all of a function's variables together
log tail (X-Amz-Log-Result)        4 KiB           the last 4 KB of the invocation's log
async retries                      0 .. 2          default 2 (after 1 min, then 2 min)
async maximum event age            60 s .. 6 h     default 6 h
=================================  ==============  ===========================================

Payloads travel as JSON. lambdaflow's messages are base64 msgpack inside a small JSON
object, so :func:`base64_budget` gives the raw bytes that fit one limit.
"""

from __future__ import annotations

KiB = 1024
MiB = 1024 * KiB

#: Invoke with InvocationType RequestResponse: request and response, each.
SYNC_REQUEST_BYTES = 6 * MiB
SYNC_RESPONSE_BYTES = 6 * MiB
#: What Lambda actually enforces on a response, as its error message states it.
SYNC_RESPONSE_ENFORCED_BYTES = SYNC_RESPONSE_BYTES + 100
#: Invoke with InvocationType Event.
ASYNC_REQUEST_BYTES = 1 * MiB
#: The deprecated InvokeAsync API (and Event invokes before 2025).
INVOKE_ASYNC_API_BYTES = 256 * KiB

MIN_TIMEOUT_S = 1
MAX_TIMEOUT_S = 900
#: The init phase of an on-demand environment may take this long on top of the timeout.
INIT_ALLOWANCE_S = 10

MIN_MEMORY_MB = 128
MAX_MEMORY_MB = 10_240
#: The memory size at which a function gets one full vCPU.
FULL_VCPU_MEMORY_MB = 1_769

MIN_EPHEMERAL_MB = 512
MAX_EPHEMERAL_MB = 10_240

ENVIRONMENT_BYTES = 4 * KiB
LOG_TAIL_BYTES = 4 * KiB

ASYNC_MAX_RETRIES = 2
ASYNC_RETRY_DELAYS_S = (60, 120)
ASYNC_MIN_EVENT_AGE_S = 60
ASYNC_MAX_EVENT_AGE_S = 6 * 3600

#: Bytes reserved for the JSON around a base64 field (keys, quotes, other small fields).
JSON_OVERHEAD_BYTES = 4 * KiB


def base64_budget(limit: int, overhead: int = JSON_OVERHEAD_BYTES) -> int:
    """The most raw bytes whose base64 text, plus ``overhead`` bytes of JSON, fits in
    ``limit`` bytes (base64 writes 4 characters per 3 bytes)."""
    return max(0, (limit - overhead) // 4 * 3)


def check_timeout(seconds: float, what: str = "timeout") -> float:
    """``seconds`` if Lambda accepts it as a function timeout; else ValueError."""
    if not MIN_TIMEOUT_S <= seconds <= MAX_TIMEOUT_S:
        raise ValueError(
            f"{what} {seconds}: Lambda allows {MIN_TIMEOUT_S}..{MAX_TIMEOUT_S} seconds"
        )
    return seconds


def check_memory(mb: int, what: str = "memory") -> int:
    """``mb`` if Lambda accepts it as a function memory size; else ValueError."""
    if not MIN_MEMORY_MB <= mb <= MAX_MEMORY_MB:
        raise ValueError(
            f"{what} {mb} MB: Lambda allows {MIN_MEMORY_MB}..{MAX_MEMORY_MB} MB"
        )
    return mb


__all__ = [
    "KiB",
    "MiB",
    "SYNC_REQUEST_BYTES",
    "SYNC_RESPONSE_BYTES",
    "SYNC_RESPONSE_ENFORCED_BYTES",
    "ASYNC_REQUEST_BYTES",
    "INVOKE_ASYNC_API_BYTES",
    "MIN_TIMEOUT_S",
    "MAX_TIMEOUT_S",
    "INIT_ALLOWANCE_S",
    "MIN_MEMORY_MB",
    "MAX_MEMORY_MB",
    "FULL_VCPU_MEMORY_MB",
    "MIN_EPHEMERAL_MB",
    "MAX_EPHEMERAL_MB",
    "ENVIRONMENT_BYTES",
    "LOG_TAIL_BYTES",
    "ASYNC_MAX_RETRIES",
    "ASYNC_RETRY_DELAYS_S",
    "ASYNC_MIN_EVENT_AGE_S",
    "ASYNC_MAX_EVENT_AGE_S",
    "JSON_OVERHEAD_BYTES",
    "base64_budget",
    "check_timeout",
    "check_memory",
]
