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


# ------------------------------------------------------- processes backend faults
def count(marks: str, prefix: str) -> dict[int, int]:
    """Files ``<prefix>-<i>-<uuid>`` in ``marks``, counted per ``i``."""
    counts: dict[int, int] = {}
    for name in os.listdir(marks):
        kind, key, _ = name.split("-", 2)
        if kind == prefix:
            counts[int(key)] = counts.get(int(key), 0) + 1
    return counts


def _note(marks: str, kind: str, key: object) -> None:
    with open(os.path.join(marks, f"{kind}-{key}-{uuid.uuid4().hex}"), "w") as fh:
        fh.write(str(os.getpid()))


def crash(how: str) -> None:
    """End this worker process: a SIGKILL, or a real segmentation fault."""
    import ctypes
    import signal

    if how == "segfault":
        ctypes.string_at(0)  # reads address 0: the kernel sends SIGSEGV
    os.kill(os.getpid(), signal.SIGSEGV if how == "sigsegv" else signal.SIGKILL)


@lf.remote(max_retries=2)
def always_crash(marks: str, how: str) -> None:
    """Every attempt leaves a ``start`` file, then crashes its worker."""
    _note(marks, "start", 0)
    crash(how)


@lf.remote(max_retries=4)
def square_or_crash(marks: str, i: int, seed: int, rate: float) -> int:
    """``i * i``, but an attempt crashes its worker with probability ``rate`` (decided
    by (seed, i, attempt), the attempt counted from this input's ``start`` files)."""
    import random

    attempt = count(marks, "start").get(i, 0)
    _note(marks, "start", i)
    roll = random.Random(f"{seed}-{i}-{attempt}").random()
    if roll < rate:
        crash(["sigkill", "sigsegv", "segfault"][attempt % 3])
    _note(marks, "done", i)
    return i * i


@lf.remote
def square(i: int) -> int:
    return i * i


@lf.remote
def busy(ready: str, seconds: float, pdeathsig: bool = True) -> int:
    """Announce this worker's pid (a file under ``ready``), then stay busy.
    ``pdeathsig=False`` first clears the worker's PR_SET_PDEATHSIG, as on a system
    without it: then only the worker's own watch on its pipe ends it with the driver."""
    if not pdeathsig:
        import ctypes

        assert ctypes.CDLL(None).prctl(1, 0, 0, 0, 0) == 0  # PR_SET_PDEATHSIG, none
    _note(ready, "busy", os.getpid())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return os.getpid()


@lf.remote(max_retries=0)
def leave_helper_then_crash(ready: str, hold_pipe: bool) -> None:
    """Start a long-lived helper, then lose this worker. ``hold_pipe=False``: the helper
    is forked (it inherits the worker's pipe to the driver, as any fork does);
    ``True``: the helper is exec'd with the pipe explicitly passed to it, so nothing in
    the worker can keep the pipe from it. Either way the pipe stays open after the
    worker dies: only watching the process itself can tell the driver."""
    import subprocess
    import sys

    if hold_pipe:
        to_driver = int(sys.argv[2])  # process_worker RFD WFD ...
        helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                                  pass_fds=(to_driver,))
        pid = helper.pid
    else:
        pid = os.fork()
        if pid == 0:
            time.sleep(120)
            os._exit(0)
    _note(ready, "helper", pid)
    crash("sigkill")
