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


# ------------------------------------------------------------- tasks that submit tasks


@lf.remote
def fib(n):
    """Recursive Fibonacci, one task per call (each waits for its two subtasks)."""
    if n < 2:
        return n
    return sum(lf.get([fib.remote(n - 1), fib.remote(n - 2)]))


@lf.remote
def depth_chain(n):
    """A chain of n tasks, each waiting for the next."""
    return 0 if n == 0 else lf.get(depth_chain.remote(n - 1)) + 1


@lf.remote
def fan_out(n):
    """Dynamic fan-out: as many subtasks as the argument says, summed."""
    return sum(lf.get([add.remote(i, 1) for i in range(n)]))


@lf.remote
def first_of(delays):
    """Wait for the first of several subtasks; return its value and how many were done."""
    refs = [sleep_then.remote(i, d) for i, d in enumerate(delays)]
    ready, not_ready = lf.wait(refs, num_returns=1)
    return lf.get(ready[0]), len(ready), len(not_ready)


@lf.remote
def put_inside(value):
    """put() in a task; the ref goes back to the caller inside a list."""
    return [lf.put(value)]


@lf.remote
def submit_inside(x):
    """A task that returns refs to tasks it submitted (and does not wait for them)."""
    return [add.remote(x, 1), add.remote(x, 2)]


@lf.remote
def leaf():
    return 0


@lf.remote
def middle():
    return lf.get(leaf.remote())


@lf.remote
def top():
    return lf.get(middle.remote())


@lf.remote
def get_behind(box):
    """Wait for a ref that was submitted just before this task (same worker)."""
    return lf.get(box[0])


@lf.remote
def get_with_timeout(box, seconds):
    """get() of a nested ref, reporting the error type (not raising)."""
    try:
        return lf.get(box[0], timeout=seconds)
    except lf.ObjectLostError as exc:
        return f"ObjectLostError: {exc}"
    except lf.GetTimeoutError:
        return "GetTimeoutError"


@lf.remote
def exit_once(path, code=3):
    """Calls exit() on its first run (a file remembers), returns on the next."""
    if not os.path.exists(path):
        open(path, "w").close()
        raise SystemExit(code)
    return "after exit"


@lf.remote
def blocked_parent(seconds):
    """Waits for a slow subtask: the time counts as blocked in its stats."""
    return lf.get(sleep_then.remote("slept", seconds))


@lf.remote
def address_mod_64(a):
    return int(a.ctypes.data % 64)


@lf.remote
def wait_on(box):
    """Block in get() on a ref submitted by the driver (running elsewhere)."""
    return lf.get(box[0])


@lf.remote
def mark_then_sleep(path, seconds):
    """Writes ``path`` once it runs, then sleeps (a task known to be running). The pid
    is written to a temporary name and renamed, so a reader that sees ``path`` sees it
    whole (an empty file read too early once failed a test with ``int('')``)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.replace(tmp, path)
    time.sleep(seconds)
    return seconds


def wait_for_file(path, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.02)


@lf.remote
def value_when(path, value):
    """Returns ``value`` once ``path`` exists (a task that cannot finish before another
    has started)."""
    wait_for_file(path)
    return value


@lf.remote
def started_then_value_when(started, path, value):
    """Writes ``started``, then returns ``value`` once ``path`` exists."""
    open(started, "w").close()
    wait_for_file(path)
    return value


@lf.remote
def mark_then_get(path, box):
    """Writes ``path``, then waits for the ref in ``box``."""
    open(path, "w").close()
    return lf.get(box[0])


@lf.remote
def mutate(xs):
    """Changes its (list) argument in place and returns it."""
    xs.append("changed")
    xs[0] = "changed"
    return xs


@lf.remote
def make_nested():
    return {"list": [1, 2], "tuple": (1, [2])}


@lf.remote
def with_type(x):
    """(x, the name of its type) as the task saw it."""
    return x, type(x).__name__
