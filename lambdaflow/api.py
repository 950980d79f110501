"""The public API (DESIGN.md §1): ``init``/``shutdown``, ``@remote``, ``get``, ``wait``,
``put``, ``cancel``.

A ``Runtime`` is one job: a backend, its store and the scheduler that owns the DAG. There
is at most one live runtime per process (``_runtime``); the first API call without one
starts the ``threads`` backend. Inside a task running in a worker process or on Lambda
there is no runtime: ``get`` resolves refs through the task's store instead.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Callable

from lambdaflow import config as config_mod
from lambdaflow import serialization
from lambdaflow.errors import BackendError, ConfigError, LambdaflowError
from lambdaflow.runtime import integrity, keys, refs
from lambdaflow.runtime.backends import make_backend
from lambdaflow.runtime.refs import ObjectRef
from lambdaflow.runtime.scheduler import Scheduler
from lambdaflow.runtime.task import DepSlot
from lambdaflow.runtime.worker import current_context

log = logging.getLogger(__name__)

TASK_OPTIONS = ("max_retries", "retry_exceptions", "timeout_s", "memory_mb", "num_returns", "name")
_EMPTY_ARGS = serialization.dumps_bytes(((), {}))
_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


class Runtime:
    """One job on one backend. Also a context manager that shuts it down on exit."""

    def __init__(self, cfg: config_mod.Config) -> None:
        self.config = cfg
        self.job_id = f"job-{uuid.uuid4().hex[:12]}"
        self.backend = make_backend(cfg, self.job_id)
        job_key = integrity.new_job_key()  # in this process and task messages only
        self.backend.store = integrity.SignedStore(self.backend.store, job_key)
        self.scheduler = Scheduler(
            self.backend, self.job_id, inline_limit=cfg.inline_limit,
            progress=cfg.progress, eager_delete=self.backend.eager_delete, job_key=job_key,
        )
        refs.LIVE_JOBS[self.job_id] = self.scheduler.counted_ref
        self._last_records: list[dict] | None = None

    def stats_records(self) -> list[dict]:
        if self._last_records is not None:
            return self._last_records
        return self.scheduler.stats_records()

    # ----------------------------------------------------------------- tasks
    def submit(self, rf: RemoteFunction, args: tuple, kwargs: dict) -> Any:
        opts = rf._resolved(self.config)
        fn_key = self._function_key(rf)
        dep_refs: list[ObjectRef] = []
        if args or kwargs:
            if any(type(a) is ObjectRef for a in args):
                args = tuple(_slot(a, dep_refs) if type(a) is ObjectRef else a for a in args)
            if any(type(v) is ObjectRef for v in kwargs.values()):
                kwargs = {k: _slot(v, dep_refs) if type(v) is ObjectRef else v
                          for k, v in kwargs.items()}
            try:
                with serialization.collect_refs() as nested:
                    chunks = serialization.dumps((args, kwargs))
            except Exception as exc:
                culprit = serialization.describe_unpicklable_args(args, kwargs)
                raise TypeError(
                    f"cannot send the arguments of {opts['name']}.remote(): {exc}"
                    + (f"; {culprit} cannot be pickled" if culprit else "")
                ) from exc
            nested_refs = nested.refs
        else:
            chunks, nested_refs = [_EMPTY_ARGS], []
        task_id = self.scheduler.new_task_id()
        size = serialization.chunks_len(chunks)
        if size <= self.config.inline_limit:
            inline, args_key = (chunks[0] if len(chunks) == 1 else b"".join(chunks)), None
        else:
            inline, args_key = None, keys.args_key(self.job_id, task_id)
            try:
                self.backend.store.put(args_key, chunks)
            except Exception as exc:
                raise BackendError(
                    f"cannot store the {size}-byte arguments of {opts['name']}.remote() "
                    f"(task {task_id}): {exc}"
                ) from exc
        out = self.scheduler.submit(opts["name"], fn_key, task_id, inline, args_key,
                                    dep_refs, nested_refs, opts)
        return out[0] if opts["num_returns"] == 1 else out

    def _function_key(self, rf: RemoteFunction) -> str:
        shared = rf._shared
        if shared.get("job") == self.job_id:
            return shared["fn_key"]
        pickled = shared.get("pickled")
        if pickled is None:
            pickled = shared["pickled"] = serialization.dumps_function(rf._fn)
        key = keys.function_key(self.job_id, pickled[0])
        self.scheduler.ensure_function(key, pickled[1])
        shared["job"], shared["fn_key"] = self.job_id, key
        return key

    # -------------------------------------------------------------- lifecycle
    def shutdown(self) -> None:
        global _runtime
        sched = self.scheduler
        if sched.closed:
            return
        self._last_records = sched.stats_records()
        sched.close()
        refs.LIVE_JOBS.pop(self.job_id, None)
        try:
            if not self.config.keep_objects:
                self.backend.store.delete_prefix(keys.job_prefix(self.job_id))
        except Exception as exc:
            log.warning("job=%s could not delete the job's objects: %s", self.job_id, exc)
        finally:
            self.backend.shutdown()
        if self.config.backend == "lambda" and self.config.stats_path and self._last_records:
            try:
                from lambdaflow.runtime.stats import save_records

                save_records(self._last_records, self.config.stats_path)
            except OSError as exc:
                log.warning("job=%s could not write run stats to %s: %s",
                            self.job_id, self.config.stats_path, exc)
        with _runtime_lock:
            if _runtime is self:
                _runtime = None

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _slot(ref: ObjectRef, dep_refs: list) -> DepSlot:
    dep_refs.append(ref)
    return DepSlot(len(dep_refs) - 1)


# --------------------------------------------------------------------- init & co


def init(backend: str | None = None, **config: Any) -> Runtime:
    """Start a runtime (``"threads"``, ``"processes"`` or ``"lambda"``); see
    ``lambdaflow.config.Config`` for every setting (also ``LAMBDAFLOW_*`` variables).
    Usable as a context manager. Raises LambdaflowError if one is already running."""
    global _runtime
    cfg = config_mod.resolve(backend, **config)
    with _runtime_lock:
        if _runtime is not None and not _runtime.scheduler.closed:
            raise LambdaflowError(
                "lambdaflow is already initialized; call lambdaflow.shutdown() first"
            )
        _runtime = Runtime(cfg)
        _last[:] = [_runtime]
        return _runtime


def shutdown() -> None:
    """Stop the runtime and free its job's objects. Idempotent."""
    rt = _runtime
    if rt is not None:
        rt.shutdown()


def _current(auto_start: bool = True) -> Runtime:
    global _runtime
    rt = _runtime
    if rt is None or rt.scheduler.closed:
        if not auto_start:
            raise LambdaflowError("lambdaflow is not initialized; call lambdaflow.init()")
        if current_context() is not None:
            raise LambdaflowError(
                "tasks cannot submit tasks on this backend: return refs or values instead"
            )
        with _runtime_lock:
            if _runtime is None or _runtime.scheduler.closed:
                _runtime = Runtime(config_mod.resolve(None))
                _last[:] = [_runtime]
            rt = _runtime
    return rt


def _as_ref_list(refs_: Any, what: str) -> tuple[list[ObjectRef], bool]:
    if type(refs_) is ObjectRef:
        return [refs_], True
    if isinstance(refs_, (list, tuple)):
        bad = [r for r in refs_ if type(r) is not ObjectRef]
        if bad:
            raise TypeError(
                f"{what}() takes ObjectRefs (or a list of them), got {type(bad[0]).__name__}: "
                f"{bad[0]!r}"
            )
        return list(refs_), False
    raise TypeError(
        f"{what}() takes an ObjectRef or a list of ObjectRefs, got {type(refs_).__name__}; "
        "did you call the function directly instead of with .remote()?"
    )


def get(refs_: ObjectRef | Sequence[ObjectRef], *, timeout: float | None = None) -> Any:
    """The value of a ref, or the values of a list of refs in order. Re-raises a failed
    task's error; ``GetTimeoutError`` when ``timeout`` seconds pass first."""
    items, single = _as_ref_list(refs_, "get")
    if not items:
        return []
    sched = items[0]._rt
    if sched is None:
        ctx = current_context()
        if ctx is None:
            raise LambdaflowError(
                f"{items[0]!r} has no live runtime: it was made in another process or its "
                "runtime was shut down"
            )
        values = [ctx.get_value(r, timeout) for r in items]
    else:
        values = sched.get(items, timeout)
    return values[0] if single else values


def wait(refs_: Sequence[ObjectRef], *, num_returns: int = 1,
         timeout: float | None = None) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """Wait until ``num_returns`` of ``refs`` are finished (done or failed) or the
    timeout passes. Returns ``(ready, not_ready)``, both in input order."""
    if type(refs_) is ObjectRef or not isinstance(refs_, (list, tuple)):
        raise TypeError("wait() takes a list of ObjectRefs")
    items, _ = _as_ref_list(refs_, "wait")
    if len(set(items)) != len(items):
        raise ValueError("wait() got duplicate ObjectRefs; pass each ref once")
    if not isinstance(num_returns, int) or num_returns < 1 or num_returns > len(items):
        raise ValueError(
            f"wait(num_returns={num_returns!r}) must be between 1 and len(refs)={len(items)}"
        )
    if timeout is not None and timeout < 0:
        raise ValueError(f"wait(timeout={timeout}) must be >= 0 or None")
    sched = items[0]._rt
    if sched is None:
        raise LambdaflowError("wait() inside a worker process is not supported; use get()")
    done = sched.wait_objects(items, num_returns, timeout)
    ready, not_ready = [], []
    for r, d in zip(items, done):
        (ready if d and len(ready) < num_returns else not_ready).append(r)
    return ready, not_ready


def put(value: Any) -> ObjectRef:
    """Store ``value`` once and get a ref to pass to many tasks."""
    if type(value) is ObjectRef:
        raise TypeError("put() of an ObjectRef: pass the ref itself instead")
    return _current().scheduler.put(value)


def cancel(ref: ObjectRef) -> bool:
    """Cancel the task behind ``ref``: a queued task never runs; ``get`` raises
    ``TaskCancelledError``. A running task's result is discarded (the processes and
    lambda backends cannot recall a started task; threads cannot kill a thread).
    Returns False when the task had already finished."""
    if type(ref) is not ObjectRef:
        raise TypeError(f"cancel() takes an ObjectRef, got {type(ref).__name__}")
    if ref._rt is None:
        raise LambdaflowError(f"{ref!r} has no live runtime")
    return ref._rt.cancel(ref)


# ------------------------------------------------------------------- @remote


class RemoteFunction:
    """A function made remote with ``@lambdaflow.remote``. Call ``.remote(...)``."""

    def __init__(self, fn: Callable, options: dict, shared: dict | None = None) -> None:
        self._fn = fn
        self._options = options
        self._shared = shared if shared is not None else {}
        self._cache: tuple | None = None
        functools.update_wrapper(self, fn, updated=())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name = getattr(self._fn, "__name__", "f")
        raise TypeError(
            f"Remote functions cannot be called directly. Instead of running "
            f"'{name}()', try '{name}.remote()'."
        )

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Submit a task; returns an ObjectRef at once (a list of them when
        ``num_returns > 1``)."""
        return _current().submit(self, args, kwargs)

    def options(self, **options: Any) -> RemoteFunction:
        """A view of this function with some options overridden for its calls."""
        merged = dict(self._options, **_check_options(options))
        return RemoteFunction(self._fn, merged, self._shared)

    def map(self, items: Iterable[Any]) -> list[ObjectRef]:
        """One task per item (``f.remote(item)``); returns the refs in order."""
        rt = _current()
        return [rt.submit(self, (item,), {}) for item in items]

    def _resolved(self, cfg: config_mod.Config) -> dict:
        """The options of this view with the runtime's defaults filled in (cached per
        view and runtime config: views are immutable)."""
        cached = self._cache
        if cached is not None and cached[0] is cfg:
            return cached[1]
        o = self._options
        retry_exc = o.get("retry_exceptions", False)
        resolved = {
            "name": o.get("name") or getattr(self._fn, "__qualname__", "task"),
            "max_retries": o.get("max_retries", cfg.max_retries),
            "retry_exceptions": tuple(retry_exc) if isinstance(retry_exc, (list, tuple)) else retry_exc,
            "num_returns": o.get("num_returns", 1),
        }
        resolved["wire"] = {k: o[k] for k in ("timeout_s", "memory_mb") if o.get(k)}
        self._cache = (cfg, resolved)
        return resolved


def _check_options(options: dict) -> dict:
    unknown = sorted(set(options) - set(TASK_OPTIONS))
    if unknown:
        raise TypeError(
            f"unknown remote option(s) {', '.join(unknown)}; valid options: "
            f"{', '.join(TASK_OPTIONS)}"
        )
    if "num_returns" in options and (not isinstance(options["num_returns"], int)
                                     or options["num_returns"] < 1):
        raise ValueError(f"num_returns must be an int >= 1, got {options['num_returns']!r}")
    if "max_retries" in options and (not isinstance(options["max_retries"], int)
                                     or options["max_retries"] < 0):
        raise ValueError(f"max_retries must be an int >= 0, got {options['max_retries']!r}")
    if options.get("timeout_s") is not None and options["timeout_s"] <= 0:
        raise ValueError(f"timeout_s must be > 0, got {options['timeout_s']!r}")
    r = options.get("retry_exceptions")
    if r is not None and not isinstance(r, bool):
        if not isinstance(r, (list, tuple)) or not all(
            isinstance(c, type) and issubclass(c, BaseException) for c in r
        ):
            raise TypeError("retry_exceptions must be True/False or a list of exception classes")
    return options


def remote(*args: Any, **options: Any) -> Any:
    """Decorator: ``@remote`` or ``@remote(max_retries=2, timeout_s=60, memory_mb=2048,
    num_returns=2, retry_exceptions=[IOError], name=...)``."""
    if args and len(args) == 1 and not options and callable(args[0]):
        return RemoteFunction(args[0], {})
    if args:
        raise TypeError(
            f"remote() takes a function, got {type(args[0]).__name__}: {args[0]!r}"
        )
    _check_options(options)

    def decorate(fn: Callable) -> RemoteFunction:
        if not callable(fn):
            raise TypeError(f"remote() takes a function, got {type(fn).__name__}")
        return RemoteFunction(fn, dict(options))

    return decorate


_last: list[Runtime] = []  # the most recent runtime, kept for stats() after shutdown


def stats() -> Any:
    """Run stats of the current runtime, or of the last one after ``shutdown()``: a
    ``RunStats`` with ``.records`` (one per task attempt), ``.summary()`` (tasks,
    retries, 429s, cold starts, p50 / p95 duration, billed GB-seconds, estimated cost)
    and ``.format()``."""
    from lambdaflow.runtime.stats import RunStats

    rt = _runtime if _runtime is not None else (_last[-1] if _last else None)
    if rt is None:
        raise ConfigError("no lambdaflow runtime has run in this process yet")
    run = RunStats(region=getattr(rt.backend, "region", "us-east-1"))
    run.extend(rt.stats_records())
    return run
