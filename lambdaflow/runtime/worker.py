"""The universal task handler: the same code runs a task on every backend.

    run_task(message, store) -> TaskResult

1. load the function: the per-process cache, else the message, else ``store[fn_key]``;
2. load the arguments: the inline frame or ``store[args_key]``; every ``DepSlot(i)`` at
   the top level becomes the value of dependency ``i`` (inline frame or store key);
3. call it inside a task context (so ``lambdaflow.get`` on nested refs works here);
4. place each return value: inline in the result when small, else in the store under
   its deterministic key (a retry rewrites the same key);
5. never raise: an exception becomes an ERROR result carrying the pickled exception
   (checked to unpickle; else its text) and the formatted remote traceback.

Functions (and anything an op caches at module level, such as a model) stay cached in
the process across tasks: a warm Lambda or a worker process loads them once.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
import traceback
from collections import OrderedDict
from typing import Any, Callable

import cloudpickle

from lambdaflow import serialization
from lambdaflow.errors import GetTimeoutError, ObjectLostError, TaskError
from lambdaflow.runtime import integrity, keys
from lambdaflow.runtime.store import Store
from lambdaflow.runtime.task import ERROR, OK, DepSlot, TaskMessage, TaskResult

_FN_CACHE: OrderedDict[str, Callable] = OrderedDict()
_FN_CACHE_SIZE = 256
_ctx = threading.local()


class StoredError:
    """What the driver writes under an object's key when its task failed, so a worker
    that ``get``s a nested ref raises the same error."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class TaskContext:
    """Where a running task is: lets ``lambdaflow.get`` resolve refs from the store."""

    def __init__(self, message: TaskMessage, store: Store) -> None:
        self.message = message
        self.store = store

    def get_value(self, ref: Any, timeout: float | None = None) -> Any:
        key = keys.object_key(ref.job, ref.id)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while not self.store.exists(key):  # its task may still be running
            if deadline is not None and time.monotonic() >= deadline:
                raise GetTimeoutError(f"{ref!r} not ready after {timeout}s (inside a task)")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        value = serialization.loads(self.store.get(key))
        if isinstance(value, StoredError):
            raise value.error
        return value


def current_context() -> TaskContext | None:
    return getattr(_ctx, "task", None)


def load_function(message: TaskMessage, store: Store) -> Callable:
    fn = _FN_CACHE.get(message.fn_key)
    if fn is None:
        data = message.fn_bytes if message.fn_bytes is not None else store.get(message.fn_key)
        integrity.check_function(message.fn_key, data)
        fn = cloudpickle.loads(data)
        _FN_CACHE[message.fn_key] = fn
        if len(_FN_CACHE) > _FN_CACHE_SIZE:
            _FN_CACHE.popitem(last=False)
    return fn


def load_arguments(message: TaskMessage, store: Store) -> tuple[tuple, dict, int]:
    if message.args is not None:
        frame = message.args
    else:
        frame = store.get(message.args_key)
    nbytes = len(frame)
    args, kwargs = serialization.loads(frame)
    if message.deps:
        values = []
        for dep in message.deps:
            data = dep.get("inline")
            if data is None:
                data = store.get(dep["key"])
            nbytes += len(data)
            values.append(serialization.loads(data))
        args = tuple(values[a.index] if type(a) is DepSlot else a for a in args)
        for k, v in kwargs.items():
            if type(v) is DepSlot:
                kwargs[k] = values[v.index]
    return args, kwargs, nbytes


def place_values(message: TaskMessage, store: Store, value: Any) -> tuple[list[dict], int]:
    n = message.num_returns
    if n == 1:
        outputs = [value]
    else:
        if not isinstance(value, (tuple, list)) or len(value) != n:
            got = f"{len(value)} values" if isinstance(value, (tuple, list)) else type(value).__name__
            raise ValueError(
                f"task {message.name} has num_returns={n} but returned {got}; "
                f"return a tuple of {n} values"
            )
        outputs = list(value)
    placed, total = [], 0
    for i, out in enumerate(outputs):
        chunks = serialization.dumps(out)
        size = serialization.chunks_len(chunks)
        total += size
        if size <= message.inline_limit:
            placed.append({"inline": b"".join(chunks), "size": size})
        else:
            oid = keys.result_object_id(message.task_id, None if n == 1 else i)
            key = keys.object_key(message.job_id, oid)
            store.put(key, chunks)
            placed.append({"key": key, "size": size})
    return placed, total


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

    def __reduce__(self):
        state = {k: v for k, v in vars(self.exc).items() if not k.startswith("__")}
        return (_rebuild_exception, (type(self.exc), self.exc.args, state))


def _rebuild_exception(cls: type, args: tuple, state: dict) -> BaseException:
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


_PEAK = {"pid": None, "fd": None, "at": 0.0, "mb": 0.0}
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
             measure_memory: bool = True) -> TaskResult:
    """Run one task. Never raises (but lets a KeyboardInterrupt of the worker process
    itself through). ``measure_memory=False`` skips the peak-memory reading (the
    threads backend: it would be the driver's)."""
    start = time.time()
    t0 = time.perf_counter()
    bytes_in = bytes_out = 0
    status, values, error = OK, [], None
    prev = getattr(_ctx, "task", None)
    try:
        store = integrity.task_store(message, store)
        fn = load_function(message, store)
        args, kwargs, bytes_in = load_arguments(message, store)
        _ctx.task = TaskContext(message, store)
        try:
            value = fn(*args, **kwargs)
        except BaseException as exc:
            if type(exc) is KeyboardInterrupt:
                raise
            status, error = ERROR, capture_error(exc)
        else:
            values, bytes_out = place_values(message, store, value)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # loading or placing failed: the task's error too
        status, error = ERROR, capture_error(exc, tb_skip=0)
    finally:
        _ctx.task = prev
    end = time.time()
    stats = {
        "start": start,
        "end": end,
        "duration_s": time.perf_counter() - t0,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "peak_memory_mb": round(peak_memory_mb(), 1) if measure_memory else None,
        "env_id": ENV_ID,
    }
    return TaskResult(message.task_id, message.attempt, status, values, error, stats)


ENV_ID = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME") or f"pid-{os.getpid()}"


def stored_error_frame(error: BaseException) -> list:
    """The frame the driver writes for a failed object that escaped to workers."""
    try:
        return serialization.dumps(StoredError(error))
    except Exception:
        return serialization.dumps(StoredError(TaskError(str(error))))


__all__ = ["run_task", "current_context", "TaskContext", "StoredError", "ObjectLostError"]
