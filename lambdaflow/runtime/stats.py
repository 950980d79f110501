"""Run statistics: per-task records, their summary, estimated AWS cost, and a JSON file.

Flow::

    backend reply ──> runtime builds a record (one per *attempt*) ──> RunStats.add(record)
                                                                        │
    lambdaflow.stats() ── RunStats.summary() / .format() <──────────────┤
    lambdaflow timeline OUT.png ── load_records(path) <── save_records(records, path)
                                                           (default .lambdaflow/last-run.json)

A record is a plain dict (JSON-ready), one per attempt of a task:

=================  ======================================================================
task_id            the task's id (several records share it when the task was retried)
name               the function's name
attempt            attempt number (counts up from the first attempt)
status             "ok" | "error" | "crash" | "timeout" | "cancelled"
submit_time        epoch seconds when the runtime submitted this attempt
start, end         epoch seconds when it started / ended in the worker (None: never ran)
duration_s         seconds it ran (end - start unless the worker measured it itself)
cold_start         True if the execution environment was started for it
env_id             the execution environment / worker process that ran it
memory_mb          the Lambda function's memory (None on local backends: nothing billed)
bytes_in           bytes of arguments read
bytes_out          bytes of results written
peak_memory_mb     peak resident memory of the worker seen at the end of the attempt
throttles          429 TooManyRequests answers seen before this attempt was accepted
backend            "threads" | "processes" | "lambda"
blocked_s          seconds the task spent waiting in get()/wait() inside it (on Lambda its
                   environment is billed meanwhile: part of duration_s)
billed_duration_s  optional: Lambda's own "Billed Duration" when known
init_s             optional: a cold environment's start-up time before this task began
=================  ======================================================================

Everything here is pure (functions over lists of dicts) except :class:`RunStats`, which
only adds a lock around a list. This module imports nothing from the backends.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lambdaflow.errors import ConfigError

Record = dict[str, Any]

#: Where the runtime writes the last run's records unless told otherwise.
DEFAULT_STATS_PATH = os.path.join(".lambdaflow", "last-run.json")

STATUSES = ("ok", "error", "crash", "timeout", "cancelled")
ARCHITECTURES = ("x86_64", "arm64")
FILE_VERSION = 1

# AWS Lambda on-demand prices, first tier (the first 6 billion x86 / 7.5 billion arm64
# GB-seconds a month per region and account), in USD, without the free tier.
# Source: https://aws.amazon.com/lambda/pricing/ (us-east-1 figures checked 2026-11-23;
# unchanged since the 1 ms billing change of December 2020). The regions below charge the
# us-east-1 rate; opt-in regions (af-south-1, ap-east-1, eu-south-1, me-south-1, ...)
# charge more and are not listed, so an estimate for them uses us-east-1 prices and the
# summary says so in its notes. Re-check the page before quoting a figure.
_STANDARD_PRICE = {
    "x86_64": {"gb_second": 0.0000166667, "per_million_requests": 0.20},
    "arm64": {"gb_second": 0.0000133334, "per_million_requests": 0.20},
}
LAMBDA_PRICES: dict[str, dict[str, dict[str, float]]] = {
    region: _STANDARD_PRICE
    for region in (
        "us-east-1",  # N. Virginia
        "us-east-2",  # Ohio
        "us-west-1",  # N. California
        "us-west-2",  # Oregon
        "ca-central-1",  # Canada (Central)
        "eu-west-1",  # Ireland
        "eu-west-2",  # London
        "eu-west-3",  # Paris
        "eu-central-1",  # Frankfurt
        "eu-north-1",  # Stockholm
        "ap-northeast-1",  # Tokyo
        "ap-northeast-2",  # Seoul
        "ap-southeast-1",  # Singapore
        "ap-southeast-2",  # Sydney
        "ap-south-1",  # Mumbai
        "sa-east-1",  # São Paulo
    )
}
FALLBACK_REGION = "us-east-1"


def lambda_price(
    region: str, architecture: str = "x86_64"
) -> tuple[dict[str, float], str]:
    """``(prices, note)`` for a region and architecture; ``note`` is empty unless the
    region is not in :data:`LAMBDA_PRICES` and us-east-1 prices were used instead."""
    if architecture not in ARCHITECTURES:
        raise ConfigError(
            f"architecture {architecture!r} is not a Lambda architecture; "
            f"use one of {', '.join(ARCHITECTURES)}"
        )
    note = ""
    table = LAMBDA_PRICES.get(region)
    if table is None:
        note = (
            f"no price table for region {region!r}; estimated with {FALLBACK_REGION} "
            "prices (opt-in regions cost more: see https://aws.amazon.com/lambda/pricing/)"
        )
        table = LAMBDA_PRICES[FALLBACK_REGION]
    return table[architecture], note


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks
    (numpy's default method); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def record_duration(record: Mapping[str, Any]) -> float | None:
    """Seconds the attempt ran: ``duration_s``, else ``end - start``, else None."""
    duration = record.get("duration_s")
    if (
        duration is None
        and record.get("start") is not None
        and record.get("end") is not None
    ):
        duration = record["end"] - record["start"]
    return None if duration is None else max(0.0, float(duration))


def billed_seconds(record: Mapping[str, Any]) -> float:
    """Lambda's billed duration: Lambda's own figure when recorded, else the duration
    plus, on a cold start, the measured ``init_s`` (AWS bills the INIT phase of every
    on-demand function since 2025-08-01), rounded up to the next millisecond (0 for an
    attempt that never ran)."""
    if record.get("billed_duration_s") is not None:
        return float(record["billed_duration_s"])
    duration = record_duration(record)
    if duration is None:
        return 0.0
    if record.get("cold_start"):
        duration += float(record.get("init_s") or 0.0)
    # round() first so 1.1 s (1100.0000000000002 ms in binary) bills 1100 ms, not 1101.
    return math.ceil(round(duration * 1000.0, 6)) / 1000.0


def billed_gb_seconds(record: Mapping[str, Any]) -> float:
    """Billed duration × memory in GB (MB / 1024); 0 on local backends."""
    memory = record.get("memory_mb")
    if memory is None:
        return 0.0
    return billed_seconds(record) * (memory / 1024.0)


def summarize(
    records: Iterable[Mapping[str, Any]],
    *,
    region: str = "us-east-1",
    architecture: str = "x86_64",
) -> dict[str, Any]:
    """Totals over per-attempt records (see the module docstring for the fields).

    ``tasks`` counts distinct task ids, ``attempts`` records, ``retries`` attempts beyond
    the first of each task, ``failed`` tasks whose last attempt did not end "ok".
    Durations are over attempts that ran. ``requests`` are Lambda invocations (records
    with a ``memory_mb``); 429 answers are not billed. Cost = billed GB-s × price per GB-s
    + requests × price per request, at first-tier on-demand prices without free tier.
    """
    records = list(records)
    prices, note = lambda_price(region, architecture)
    last_attempt: dict[str, Mapping[str, Any]] = {}
    status_counts = {status: 0 for status in STATUSES}
    durations: list[float] = []
    gb_seconds = blocked_gb_seconds = 0.0
    requests = 0
    envs: set[str] = set()
    for rec in records:
        task = str(rec.get("task_id"))
        previous = last_attempt.get(task)
        if previous is None or (rec.get("attempt") or 0) >= (
            previous.get("attempt") or 0
        ):
            last_attempt[task] = rec
        status = rec.get("status", "ok")
        status_counts[status] = status_counts.get(status, 0) + 1
        duration = record_duration(rec)
        if duration is not None and rec.get("start") is not None:
            durations.append(duration)
        if rec.get("memory_mb") is not None and rec.get("start") is not None:
            requests += 1
            gb_seconds += billed_gb_seconds(rec)
            blocked_gb_seconds += float(rec.get("blocked_s") or 0.0) * rec["memory_mb"] / 1024
        if rec.get("env_id") is not None and rec.get("start") is not None:
            envs.add(str(rec["env_id"]))
    submits = [r["submit_time"] for r in records if r.get("submit_time") is not None]
    starts = [r["start"] for r in records if r.get("start") is not None]
    ends = [r["end"] for r in records if r.get("end") is not None]
    t0 = min(submits or starts) if (submits or starts) else None
    wall = (max(ends) - t0) if (ends and t0 is not None) else 0.0
    backends = sorted({str(r["backend"]) for r in records if r.get("backend")})
    compute_cost = gb_seconds * prices["gb_second"]
    request_cost = requests * prices["per_million_requests"] / 1_000_000
    notes = [note] if note else []
    if records and not requests:
        notes.append("local backend: nothing billed by AWS")
    return {
        "tasks": len(last_attempt),
        "attempts": len(records),
        "retries": len(records) - len(last_attempt),
        "failed": sum(
            1 for r in last_attempt.values() if r.get("status", "ok") != "ok"
        ),
        "status_counts": status_counts,
        "throttles": sum(int(r.get("throttles") or 0) for r in records),
        "cold_starts": sum(1 for r in records if r.get("cold_start")),
        "environments": len(envs),
        "p50_duration_s": percentile(durations, 50),
        "p95_duration_s": percentile(durations, 95),
        "max_duration_s": max(durations) if durations else None,
        "wall_time_s": max(0.0, wall),
        "bytes_in": sum(int(r.get("bytes_in") or 0) for r in records),
        "bytes_out": sum(int(r.get("bytes_out") or 0) for r in records),
        "peak_memory_mb": max(
            (
                r["peak_memory_mb"]
                for r in records
                if r.get("peak_memory_mb") is not None
            ),
            default=None,
        ),
        "requests": requests,
        "blocked_s": sum(float(r.get("blocked_s") or 0.0) for r in records),
        "billed_gb_seconds": gb_seconds,
        "blocked_gb_seconds": blocked_gb_seconds,
        "cost_usd": compute_cost + request_cost,
        "compute_cost_usd": compute_cost,
        "request_cost_usd": request_cost,
        "region": region,
        "architecture": architecture,
        "backends": backends,
        "notes": notes,
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """A small aligned table a person can read at a glance."""

    def secs(value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"

    def size(n: float) -> str:
        for unit in ("B", "KiB", "MiB", "GiB"):
            if n < 1024 or unit == "GiB":
                return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
            n /= 1024
        return str(n)  # pragma: no cover

    where = f"{summary['region']}, {summary['architecture']}"
    statuses = ", ".join(f"{k} {v}" for k, v in summary["status_counts"].items() if v)
    rows = [
        ("tasks", f"{summary['tasks']} ({statuses or 'none'})"),
        ("attempts", f"{summary['attempts']} ({summary['retries']} retries)"),
        ("failed tasks", str(summary["failed"])),
        ("throttles (429)", str(summary["throttles"])),
        (
            "cold starts",
            f"{summary['cold_starts']} in {summary['environments']} environments",
        ),
        (
            "task duration",
            ", ".join(
                f"{q} {secs(summary[f'{q}_duration_s'])}" for q in ("p50", "p95", "max")
            ),
        ),
        ("wall time", secs(summary["wall_time_s"])),
        ("data", f"{size(summary['bytes_in'])} in, {size(summary['bytes_out'])} out"),
        ("requests", str(summary["requests"])),
        ("blocked in get/wait", secs(summary.get("blocked_s", 0.0))),
        ("billed GB-s", f"{summary['billed_gb_seconds']:.4f} "
                        f"({summary.get('blocked_gb_seconds', 0.0):.4f} while blocked)"),
        (
            "estimated cost",
            f"${summary['cost_usd']:.6f} ({where}, on-demand, no free tier)",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
    lines += [f"note: {note}" for note in summary.get("notes", [])]
    return "\n".join(lines)


class RunStats:
    """The records of one run; the runtime appends to it from any thread."""

    def __init__(
        self,
        records: Iterable[Mapping[str, Any]] = (),
        *,
        region: str = "us-east-1",
        architecture: str = "x86_64",
    ) -> None:
        self._lock = threading.Lock()
        self._records: list[Record] = [dict(r) for r in records]
        self.region = region
        self.architecture = architecture

    def add(self, record: Mapping[str, Any]) -> None:
        """Append one attempt's record (copied)."""
        with self._lock:
            self._records.append(dict(record))

    append = add

    def extend(self, records: Iterable[Mapping[str, Any]]) -> None:
        copies = [dict(r) for r in records]
        with self._lock:
            self._records.extend(copies)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    @property
    def records(self) -> list[Record]:
        """A snapshot (a new list of copies) of the records so far."""
        with self._lock:
            return [dict(r) for r in self._records]

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def summary(self) -> dict[str, Any]:
        return summarize(
            self.records, region=self.region, architecture=self.architecture
        )

    def format(self) -> str:
        return format_summary(self.summary())

    __str__ = format

    def __repr__(self) -> str:
        return f"<RunStats {len(self)} records>"

    def save(self, path: str | os.PathLike[str] = DEFAULT_STATS_PATH) -> Path:
        return save_records(
            self.records, path, region=self.region, architecture=self.architecture
        )


def save_records(
    records: Iterable[Mapping[str, Any]],
    path: str | os.PathLike[str] = DEFAULT_STATS_PATH,
    *,
    region: str = "us-east-1",
    architecture: str = "x86_64",
) -> Path:
    """Write records (and their summary, for people reading the file) as JSON; the
    parent directory is created. Written to a temporary name then renamed, so a reader
    never sees half a file."""
    records = [dict(r) for r in records]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "version": FILE_VERSION,
        "region": region,
        "architecture": architecture,
        "summary": summarize(records, region=region, architecture=architecture),
        "records": records,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document, indent=1, default=str))
    os.replace(tmp, path)
    return path


def load_records(path: str | os.PathLike[str] = DEFAULT_STATS_PATH) -> list[Record]:
    """Records from a file written by :func:`save_records` (or a bare JSON list)."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"stats file {str(path)!r} does not exist: run a job first (the runtime "
            f"writes {DEFAULT_STATS_PATH}) or pass the file the job wrote with --stats"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"stats file {str(path)!r} is not readable JSON ({exc}); "
            "point --stats at a file written by lambdaflow"
        ) from exc
    records = document.get("records") if isinstance(document, dict) else document
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ConfigError(
            f"stats file {str(path)!r} holds no list of task records; "
            "point --stats at a file written by lambdaflow"
        )
    return records


__all__ = [
    "DEFAULT_STATS_PATH",
    "LAMBDA_PRICES",
    "RunStats",
    "billed_gb_seconds",
    "billed_seconds",
    "format_summary",
    "lambda_price",
    "load_records",
    "percentile",
    "save_records",
    "summarize",
]
