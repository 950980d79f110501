"""The universal task handler: the same code runs a task on every backend.

    run_task(message, store, client=...) -> TaskResult

1. open the message's store (``task_store``: the one place a worker does);
2. load the function: the per-process cache, else the message, else ``store[fn_key]``;
3. load the arguments: the inline frame or ``store[args_key]``; every ``DepSlot(i)`` at
   the top level becomes the value of dependency ``i``. An input missing from the store
   gives a LOST result naming its key (the owner rebuilds it and runs the task again);
4. call the function as the thread's current task (``context.enter``), with the
   backend's client, so that ``lambdaflow.remote/get/wait/put`` work inside it;
5. place each return value: inline when small, else in the store under its
   deterministic key, *fenced*: the write happens only if no attempt of the task
   committed that key first (``store.create``); a duplicate or late attempt that loses
   reports the committed object and the refs nested in it, never its own value. Then
   the job's closed marker is checked (``drop_if_closed``): a task that finished after
   its driver shut down deletes what it wrote. An owning client (Lambda) first finishes
   and exports what it owns;
6. never raise: an exception becomes an ERROR result carrying the pickled exception
   (checked to unpickle; else its text) and the formatted remote traceback. Only
   ``SystemExit`` and ``KeyboardInterrupt`` pass: they end the worker, which its
   backend reports as a crash.

Functions (and anything an op caches at module level, such as a model) stay cached in
the process across tasks: a warm Lambda or a worker process loads them once.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import cloudpickle

from lambdaflow import serialization
from lambdaflow.errors import ObjectLostError
from lambdaflow.runtime import integrity, keys, values
from lambdaflow.runtime.context import (
    Client,
    OwningClient,
    TaskContext,
    current_context,
    enter,
    leave,
)
from lambdaflow.runtime.store import Store
from lambdaflow.runtime.task import (
    CANCELLED,
    ERROR,
    LOST,
    OK,
    DepSlot,
    TaskMessage,
    TaskResult,
)

log = logging.getLogger(__name__)
_FN_CACHE: OrderedDict[str, Callable] = OrderedDict()
_FN_CACHE_SIZE = 256


class _InputLost(Exception):
    """An input of the task is missing from the store (before the function ran)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def task_store(message: TaskMessage) -> Store:
    """The store a task message names, checked under its job key: the one place a worker
    opens one (runtime/integrity.py)."""
    return integrity.task_store(message)


def load_function(message: TaskMessage, store: Store) -> Callable:
    fn = _FN_CACHE.get(message.fn_key)
    if fn is None:
        data = message.fn_bytes if message.fn_bytes is not None else _read(store, message.fn_key)
        integrity.check_function(message.fn_key, data)
        fn = cloudpickle.loads(data)
        _FN_CACHE[message.fn_key] = fn
        if len(_FN_CACHE) > _FN_CACHE_SIZE:
            _FN_CACHE.popitem(last=False)
    return fn


def _read(store: Store, key: str) -> Any:
    try:
        return store.get(key)
    except ObjectLostError as exc:
        raise _InputLost(key, str(exc)) from None


def load_arguments(message: TaskMessage, store: Store) -> tuple[tuple, dict, int]:
    frame = message.args if message.args is not None else _read(store, message.args_key or "")
    nbytes = len(frame)
    args, kwargs = serialization.loads(frame)
    if message.deps:
        loaded = []
        for dep in message.deps:
            try:
                loaded.append(values.load(store, dep))
            except ObjectLostError as exc:
                raise _InputLost(dep.get("key", ""), str(exc)) from None
            nbytes += values.load_size(dep)
        args = tuple([loaded[a.index] if type(a) is DepSlot else a for a in args])
        for k, v in kwargs.items():
            if type(v) is DepSlot:
                kwargs[k] = loaded[v.index]
    return args, kwargs, nbytes


def place_values(message: TaskMessage, store: Store, value: Any,
                 share: str | None = None) -> tuple[list[dict], list[list[str]], int]:
    """(locations, ids of the refs nested in each value, total bytes)."""
    n = message.num_returns
    if n == 1:
        loc, refs = values.place(store, message.job_id, message.task_id, value,
                                 message.inline_limit, share=share, commit=True)
        return [loc], [refs], loc["size"]
    else:
        if not isinstance(value, (tuple, list)) or len(value) != n:
            got = f"{len(value)} values" if isinstance(value, (tuple, list)) else type(value).__name__
            raise ValueError(
                f"task {message.name} has num_returns={n} but returned {got}; "
                f"return a tuple of {n} values"
            )
        outputs = list(value)
    placed, nested, total = [], [], 0
    for i, out in enumerate(outputs):
        oid = keys.result_object_id(message.task_id, None if n == 1 else i)
        loc, refs = values.place(store, message.job_id, oid, out, message.inline_limit,
                                 share=share, commit=True)
        total += loc["size"]
        placed.append(loc)
        nested.append(refs)
    return placed, nested, total


def capture_error(exc: BaseException, tb_skip: int = 1) -> dict:
    tb = exc.__traceback__
    for _ in range(tb_skip):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    blob = None
    for candidate in (exc, _ExcState(exc)):
        try:
            blob = cloudpickle.dumps(candidate, protocol=5)
            cloudpickle.loads(blob)  # one that pickles but won't unpickle is useless
            break
        except Exception:
            blob = None
    return {
        "exc": blob,
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "traceback": text,
    }


class _ExcState:
    """Pickles an exception by class, args and __dict__, bypassing an ``__init__``
    whose signature does not match its ``args`` (a common cause of unpickling errors)."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __reduce__(self) -> tuple:
        state = {k: v for k, v in vars(self.exc).items() if not k.startswith("__")}
        return (_rebuild_exception, (type(self.exc), self.exc.args, state))


def _rebuild_exception(cls: type[BaseException], args: tuple, state: dict) -> BaseException:
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


_PEAK: dict[str, Any] = {"pid": None, "fd": None, "at": 0.0, "mb": 0.0}
PEAK_REFRESH_S = 0.02  # read /proc at most this often; the peak only grows


def peak_memory_mb() -> float:
    """This process's peak RSS in MB: VmHWM on Linux (``ru_maxrss`` would include the
    parent's memory at fork time), else ``ru_maxrss``. Read from a kept-open
    /proc/self/status at most every PEAK_REFRESH_S (a read costs ~13 us; no-op tasks
    run faster than that)."""
    now = time.monotonic()
    cache = _PEAK
    if cache["pid"] == os.getpid() and now - cache["at"] < PEAK_REFRESH_S:
        return cache["mb"]
    mb = None
    try:
        if cache["pid"] != os.getpid():
            cache["fd"] = os.open("/proc/self/status", os.O_RDONLY)
            cache["pid"] = os.getpid()
        data = os.pread(cache["fd"], 8192, 0)
        i = data.find(b"VmHWM:")
        if i >= 0:
            mb = int(data[i + 6 : data.index(b"kB", i)]) / 1024
    except (OSError, ValueError):
        pass
    if mb is None:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        mb = rss / 1024 if sys.platform != "darwin" else rss / (1024 * 1024)
    cache["at"], cache["mb"] = now, mb
    return mb


def run_task(message: TaskMessage, store: Store | None = None, *,
             client: Client | None = None, share: str | None = None,
             measure_memory: bool = True, env_id: str | None = None,
             backend: str | None = None) -> TaskResult:
    """Run one task. Never raises, except SystemExit / KeyboardInterrupt (the worker
    ends: a crash). ``client`` serves the task's own API calls (default: a nested
    runtime on Lambda, else none); ``share`` is the threads backend's value mode;
    ``measure_memory=False`` skips the peak-memory reading (threads: it would be the
    driver's); ``env_id`` names where it ran (default: this process); ``backend``,
    when given, goes into the stats as "backend"."""
    start = time.time()
    t0 = time.perf_counter()
    bytes_in = bytes_out = 0
    status, error = OK, None
    placed: list[dict] = []
    nested: list[list[str]] = []
    ctx = None
    keep = None
    owning = False
    try:
        if store is None:
            store = task_store(message)
        if client is None and "lambda" in message.nested:
            from lambdaflow.runtime.backends.lambda_nested import NestedClient

            client = NestedClient(message, store)
        owning = isinstance(client, OwningClient)
        ctx = TaskContext(message, store, client)
        prev = enter(ctx)
        try:
            fn = load_function(message, store)
            args, kwargs, bytes_in = load_arguments(message, store)
            try:
                value = fn(*args, **kwargs)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                status, error = ERROR, capture_error(exc)
            else:
                placed, nested, bytes_out = place_values(message, store, value, share)
                if any(nested):
                    keep = value
                if owning:
                    client.export([oid for ids in nested for oid in ids])  # type: ignore[union-attr]
        finally:
            leave(prev)
    except (SystemExit, KeyboardInterrupt):
        raise
    except _InputLost as exc:
        status, error = LOST, {"key": exc.key, "message": str(exc)}
    except BaseException as exc:  # loading or placing failed: the task's error too
        status, error = ERROR, capture_error(exc, tb_skip=0)
    finally:
        if owning:
            client.close(abandon=status != OK)  # type: ignore[union-attr]
    duration = time.perf_counter() - t0
    stats = {
        "start": start,
        "end": start + duration,
        "duration_s": duration,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "peak_memory_mb": round(peak_memory_mb(), 1) if measure_memory else None,
        "env_id": env_id or ENV_ID,
        "blocked_s": round(ctx.blocked_s, 6) if ctx is not None else 0.0,
    }
    if backend is not None:
        stats["backend"] = backend
    result = TaskResult(message.task_id, message.attempt, status, placed, error, stats, nested,
                        keep)
    if store is not None:
        for loc in placed:  # (a loop, not any(genexpr): this runs for every task)
            if "key" in loc:
                drop_if_closed(message, store, result)
                break
    return result


def drop_if_closed(message: TaskMessage, store: Store, result: TaskResult) -> bool:
    """After writing results: if the job's driver has shut down (its closed marker
    exists), delete the objects this result names and mark it CANCELLED (nobody will
    read it). Returns whether it did.

    The driver writes the marker *before* it deletes the job's prefix, and a worker
    checks it *after* its writes. So either the check sees the marker (the worker
    deletes), or the worker's writes came before the marker and the driver's listing,
    which then deletes them (S3 and local files are read-after-write consistent).
    One DeleteObject per key: IAM authorizes each key of a batch delete alike, but
    moto checks a batch against the bucket (docs/DESIGN.md §3, "Shutdown")."""
    written = [loc["key"] for loc in result.values if "key" in loc]
    try:
        closed = store.exists(keys.closed_key(message.job_id))
        if closed:
            for key in written:
                store.delete(key)
    except Exception as exc:  # noqa: BLE001 - e.g. the store went with its job (processes)
        log.warning("job=%s task=%s could not check or clear the closed job's objects: %s",
                    message.job_id, message.task_id, exc)
        return False
    if closed:
        result.status, result.values, result.nested = CANCELLED, [], []
        result.error = {"message": f"job {message.job_id} was shut down while task "
                                   f"{message.name}[{message.task_id}] ran: its results "
                                   f"were deleted ({', '.join(written)})"}
    return closed


ENV_ID = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME") or f"pid-{os.getpid()}"

__all__ = ["run_task", "current_context", "task_store", "TaskContext", "drop_if_closed"]
