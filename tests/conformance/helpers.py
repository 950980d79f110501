"""Task functions used by the conformance suite (a module of the user's own, so they
ship to workers by value)."""

from __future__ import annotations

import os
import time

import numpy as np

import lambdaflow as lf


class CustomError(Exception):
    pass


class WeirdArgsError(Exception):
    def __init__(self, code, detail):
        super().__init__(f"code={code} detail={detail}")
        self.code = code
        self.detail = detail


@lf.remote
def add(a, b=0):
    return a + b


@lf.remote
def identity(x):
    return x


@lf.remote
def fail(message="boom"):
    raise CustomError(message)


@lf.remote
def fail_weird():
    raise WeirdArgsError(7, "x")


@lf.remote
def raise_value_error():
    raise ValueError("bad value")


@lf.remote
def sleep_then(x, seconds):
    time.sleep(seconds)
    return x


@lf.remote
def nested_get(box):
    """box is a list holding refs: they pass through as refs; get them inside."""
    return sum(lf.get(box))


@lf.remote
def is_ref(x):
    """For a list, whether its first item arrived as an ObjectRef; else whether x did."""
    if isinstance(x, list):
        return isinstance(x[0], lf.ObjectRef)
    return isinstance(x, lf.ObjectRef)


@lf.remote(num_returns=2)
def split(x):
    return x, x * 2


@lf.remote
def array_sum(a):
    return float(np.asarray(a).sum())


@lf.remote
def make_array(n, fill):
    return np.full(n, fill, dtype=np.float64)


@lf.remote
def add_arrays(a, b):
    return a + b


@lf.remote
def writable(a):
    a += 1  # arrays arriving as arguments must be writable
    return a


def counter_path(tmp: str) -> str:
    return os.path.join(tmp, "attempts")


@lf.remote
def flaky(path, fail_times):
    """Fails with CustomError on its first ``fail_times`` runs (counted in a file)."""
    with open(path, "a+") as f:
        f.seek(0)
        n = len(f.read())
        f.write("x")
    if n < fail_times:
        raise CustomError(f"attempt {n}")
    return n


@lf.remote
def record_run(path, value):
    with open(path, "a") as f:
        f.write(f"{value}\n")
    return value
