"""Task functions of the fault suite: each execution leaves one side-effect file, so a
test counts executions per input (a lost or duplicated run shows)."""

from __future__ import annotations

import os
import time
import uuid

import numpy as np

import lambdaflow as lf


def _mark(marks: str, key: object) -> None:
    with open(os.path.join(marks, f"{key}-{uuid.uuid4().hex}"), "w") as fh:
        fh.write(str(os.getpid()))


@lf.remote
def big_square(marks: str, i: int) -> np.ndarray:
    """A result over the inline limit: the worker writes it to S3."""
    _mark(marks, i)
    return np.full(20_000, i * i, dtype=np.int64)


@lf.remote
def slow_square(marks: str, i: int, ready: str, hold_s: float) -> int:
    """Signals ``ready`` (a file) and holds the environment for ``hold_s`` seconds."""
    _mark(marks, i)
    with open(f"{ready}-{i}-{uuid.uuid4().hex}", "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(hold_s)
    return i * i


def executions(marks: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    for name in os.listdir(marks):
        key = int(name.split("-", 1)[0])
        counts[key] = counts.get(key, 0) + 1
    return counts
