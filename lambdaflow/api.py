"""The public API (DESIGN.md §1): ``init``/``shutdown``, ``@remote``, ``get``, ``wait``,
``put``, ``cancel``.

A ``Runtime`` is one job: a backend, its store and the scheduler that owns the DAG. There
is at most one live runtime per process (``_runtime``); the first API call without one
starts the ``threads`` backend. Every call goes to a ``Client`` (runtime/context.py): in
the driver the runtime itself; inside a task the client its backend gave the task
(threads: the driver's runtime, giving the task's slot back while it waits; processes:
requests up the worker's pipe to the driver, which owns every object; lambda: a nested
runtime in the task that owns what the task submits).

A runtime still up when the interpreter exits (the script ends without ``shutdown()``,
an uncaught exception, Ctrl-C outside a ``with``) is shut down by an ``atexit`` handler,
in the process that started it only (a forked child's copy is not its own).
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from lambdaflow import config as config_mod
from lambdaflow.errors import ConfigError, LambdaflowError
from lambdaflow.runtime import integrity, keys, refs
from lambdaflow.runtime.backends import make_backend
from lambdaflow.runtime.backends.base import Draining, Hosting, Killing
from lambdaflow.runtime.calls import FunctionHandle
from lambdaflow.runtime.context import Client, Remote, current_client
from lambdaflow.runtime.options import OPTION_NAMES, TaskOptions, check_options, resolve
from lambdaflow.runtime.owner import OwnerClient
from lambdaflow.runtime.refs import ObjectRef
from lambdaflow.runtime.scheduler import Scheduler

log = logging.getLogger(__name__)

TASK_OPTIONS = OPTION_NAMES
_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


class Runtime:
    """One job on one backend, and the driver's client. Also a context manager that
    shuts it down on exit."""

    def __init__(self, cfg: config_mod.Config) -> None:
        self.config = cfg
        self.job_id = f"job-{uuid.uuid4().hex[:12]}"
        self.pid = os.getpid()  # the process that owns this runtime
        self.backend = make_backend(cfg, self.job_id)
        job_key = integrity.new_job_key()  # in this process and task messages only
        # every concrete backend keeps .store in a plain attribute (Backend: read-only)
        self.backend.store = integrity.SignedStore(self.backend.store, job_key)  # type: ignore[misc]
        self.store = self.backend.store  # the one place the driver obtains its store
        hosting = isinstance(self.backend, Hosting)
        self.scheduler = Scheduler(
            self.backend, self.job_id, store=self.store, inline_limit=cfg.inline_limit,
            progress=cfg.progress, eager_delete=self.backend.eager_delete,
            export=not hosting, kill=self.backend.kill if isinstance(self.backend, Killing)
            else None, nested=nested_settings(cfg), max_lineage_bytes=cfg.max_lineage_bytes,
            job_key=job_key,
        )
        self.client = OwnerClient(self.scheduler, self.store, inline_limit=cfg.inline_limit,
                                  max_retries=cfg.max_retries,
                                  share=self.backend.name == "threads")
        if isinstance(self.backend, Hosting):
            self.backend.attach(self.scheduler)
        refs.LIVE_JOBS[self.job_id] = self.scheduler.counted_ref
        self._last_records: list[dict] | None = None

    def stats_records(self) -> list[dict]:
        if self._last_records is not None:
            return self._last_records
        return self.scheduler.stats_records()

    # ------------------------------------------------------------- the Client
    def submit(self, remote: Remote, args: tuple, kwargs: dict) -> list[ObjectRef]:
        return self.client.submit(remote, args, kwargs)

    def get(self, refs_: Sequence[ObjectRef], timeout: float | None) -> list:
        return self.client.get(refs_, timeout)

    def wait(self, refs_: Sequence[ObjectRef], num_returns: int,
             timeout: float | None) -> list[bool]:
        return self.client.wait(refs_, num_returns, timeout)

    def put(self, value: Any) -> ObjectRef:
        return self.client.put(value)

    def cancel(self, ref: ObjectRef, force: bool) -> bool:
        return self.client.cancel(ref, force)

    # -------------------------------------------------------------- lifecycle
    def shutdown(self) -> None:
        global _runtime
        sched = self.scheduler
        if sched.closed:
            return
        self._last_records = sched.stats_records()
        sched.close()  # from here on, late results are dropped
        refs.LIVE_JOBS.pop(self.job_id, None)
        try:
            if not self.config.keep_objects:
                self._close_store()
            else:
                self.backend.shutdown()
        except Exception as exc:
            log.warning("job=%s could not delete the job's objects: %s", self.job_id, exc)
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

    def _close_store(self) -> None:
        """Stop the backend and delete the job's objects, late results included
        (DESIGN.md §3, "Shutdown"): the closed marker goes first, so a task still
        running checks it after its writes and deletes them itself; then the backend
        stops (processes: workers killed; lambda: waits a bounded time for invocations
        already sent); then the prefix goes, and the marker too unless a task may
        still be running."""
        marker = keys.closed_key(self.job_id)
        try:
            self.store.put(marker, b"")
        finally:
            self.backend.shutdown()
        self.store.delete_prefix(keys.job_prefix(self.job_id))
        running = self.backend.in_flight() if isinstance(self.backend, Draining) else 0
        if running:
            log.info("job=%s %d task(s) still running at shutdown; the closed marker %s "
                     "stays so that they delete what they write", self.job_id, running,
                     marker)
        else:
            self.store.delete(marker)

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def nested_settings(cfg: config_mod.Config) -> dict:
    """What a task needs to submit tasks itself (TaskMessage.nested), depth 0: a driver's
    task. On lambda: the settings of the nested runtime the task runs (never the
    driver's credentials: the worker uses its own role)."""
    out: dict = {"depth": 0, "max_retries": cfg.max_retries}
    if cfg.backend == "lambda":
        out["lambda"] = {
            "function_name": cfg.function_name, "bucket": cfg.bucket, "prefix": cfg.prefix,
            "region": cfg.region, "lambda_endpoint_url": cfg.lambda_endpoint_url,
            "s3_endpoint_url": cfg.s3_endpoint_url, "max_concurrency": cfg.max_concurrency,
            "memory_tiers": cfg.memory_tiers, "invoke_timeout_s": cfg.invoke_timeout_s,
            "inline_limit": cfg.inline_limit, "max_lineage_bytes": cfg.max_lineage_bytes,
            "nested_patience_s": cfg.nested_patience_s,
        }
    return out


# --------------------------------------------------------------------- init & co


def init(backend: str | None = None, **config: Any) -> Runtime:
    """Start a runtime (``"threads"``, ``"processes"`` or ``"lambda"``); see
    ``lambdaflow.config.Config`` for every setting (also ``LAMBDAFLOW_*`` variables).
    Usable as a context manager. Raises LambdaflowError if one is already running."""
    global _runtime
    if current_client() is not None:
        raise LambdaflowError("init() inside a task: the task already has a runtime; "
                              "call the API directly")
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


def _shutdown_at_exit() -> None:
    rt = _runtime
    if rt is None or rt.scheduler.closed or rt.pid != os.getpid():
        return
    try:
        rt.shutdown()
    except Exception as exc:  # noqa: BLE001 - exiting: say what was left, never raise
        log.warning("job=%s could not shut down at exit: %s", rt.job_id, exc)


atexit.register(_shutdown_at_exit)


def _current() -> Runtime:
    global _runtime
    rt = _runtime
    if rt is None or rt.scheduler.closed:
        with _runtime_lock:
            if _runtime is None or _runtime.scheduler.closed:
                _runtime = Runtime(config_mod.resolve(None))
                _last[:] = [_runtime]
            rt = _runtime
    return rt


def _client() -> Client:
    """Inside a task: its backend's client; in the driver: the runtime's (started on
    first use)."""
    client = current_client()
    if client is not None:
        return client
    rt = _runtime
    if rt is None or rt.scheduler.closed:
        rt = _current()
    return rt.client


def _ref_client(items: Sequence[ObjectRef]) -> Client:
    """The client for refs the caller already has: a shut-down runtime's refs go to
    it, so the error says so (instead of starting a new runtime)."""
    client = current_client()
    if client is not None:
        return client
    rt = _runtime
    if rt is not None and not rt.scheduler.closed:
        return rt
    if items[0]._rt is None:
        raise LambdaflowError(
            f"{items[0]!r} has no live runtime: it was made in another process or its "
            "runtime was shut down")
    raise LambdaflowError(
        "this lambdaflow runtime was shut down; call lambdaflow.init() again and "
        "resubmit (ObjectRefs of a shut-down runtime cannot be used)")


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
    task's error; ``GetTimeoutError`` when ``timeout`` seconds pass first. Works inside
    tasks too (the task gives its worker slot back while it waits)."""
    items, single = _as_ref_list(refs_, "get")
    if not items:
        return []
    if timeout is not None and timeout < 0:
        raise ValueError(f"get(timeout={timeout}) must be >= 0 or None")
    out = _ref_client(items).get(items, timeout)
    return out[0] if single else out


def wait(refs_: Sequence[ObjectRef], *, num_returns: int = 1,
         timeout: float | None = None) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """Wait until ``num_returns`` of ``refs`` are finished (done or failed) or the
    timeout passes. Returns ``(ready, not_ready)``, both in input order; ``wait([])`` is
    ``([], [])``."""
    if type(refs_) is ObjectRef or not isinstance(refs_, (list, tuple)):
        raise TypeError("wait() takes a list of ObjectRefs")
    items, _ = _as_ref_list(refs_, "wait")
    if len(set(items)) != len(items):
        raise ValueError("wait() got duplicate ObjectRefs; pass each ref once")
    if type(num_returns) is not int or num_returns < 1 or (items and num_returns > len(items)):
        raise ValueError(
            f"wait(num_returns={num_returns!r}) must be between 1 and len(refs)={len(items)}"
        )
    if timeout is not None and timeout < 0:
        raise ValueError(f"wait(timeout={timeout}) must be >= 0 or None")
    if not items:
        return [], []
    done = _ref_client(items).wait(items, num_returns, timeout)
    ready: list[ObjectRef] = []
    not_ready: list[ObjectRef] = []
    for r, d in zip(items, done):
        (ready if d and len(ready) < num_returns else not_ready).append(r)
    return ready, not_ready


def put(value: Any) -> ObjectRef:
    """Store ``value`` once and get a ref to pass to many tasks."""
    if type(value) is ObjectRef:
        raise TypeError("put() of an ObjectRef: pass the ref itself instead")
    return _client().put(value)


def cancel(ref: ObjectRef, *, force: bool = False) -> bool:
    """Cancel the task behind ``ref`` and the queued tasks that depend on it: a queued
    task never runs; ``get`` raises ``TaskCancelledError``. A running task's result is
    dropped; with ``force=True`` the processes backend also kills the worker running
    it. Threads and lambda cannot recall a started task: it runs to its end, unseen;
    on threads ``force=True`` at least gives its slot back (later tasks run beside it,
    as when a worker is killed). Returns False when the task had already finished."""
    if type(ref) is not ObjectRef:
        raise TypeError(f"cancel() takes an ObjectRef, got {type(ref).__name__}")
    return _ref_client([ref]).cancel(ref, bool(force))


# ------------------------------------------------------------------- @remote


class RemoteFunction:
    """A function made remote with ``@lambdaflow.remote``. Call ``.remote(...)``."""

    def __init__(self, fn: Callable, options: dict,
                 handle: FunctionHandle | None = None) -> None:
        self._fn = fn
        self._options = options
        self.handle = handle if handle is not None else FunctionHandle(fn)
        self._resolved: tuple[int, TaskOptions] | None = None
        functools.update_wrapper(self, fn, updated=())

    def __reduce__(self) -> tuple:
        # A task that calls a remote function (itself, for recursion) carries it by
        # value: its function and options; the worker pickles it again if it submits.
        return (RemoteFunction, (self._fn, self._options))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name = getattr(self._fn, "__name__", "f")
        raise TypeError(
            f"Remote functions cannot be called directly. Instead of running "
            f"'{name}()', try '{name}.remote()'."
        )

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Submit a task; returns an ObjectRef at once (a list of them when
        ``num_returns > 1``). Arguments that do not fit the signature: TypeError."""
        out = _client().submit(self, args, kwargs)
        return out[0] if len(out) == 1 and self._options.get("num_returns", 1) == 1 else out

    def options(self, **options: Any) -> RemoteFunction:
        """A view of this function with some options overridden for its calls."""
        merged = dict(self._options, **check_options(options))
        return RemoteFunction(self._fn, merged, self.handle)

    def map(self, items: Iterable[Any]) -> list[ObjectRef]:
        """One task per item (``f.remote(item)``); returns the refs in order."""
        client = _client()
        return [client.submit(self, (item,), {})[0] for item in items]

    def task_options(self, max_retries: int) -> TaskOptions:
        """This view's options with the runtime's defaults filled in (cached: views are
        immutable)."""
        cached = self._resolved
        if cached is not None and cached[0] == max_retries:
            return cached[1]
        opts = resolve(self._options, self.handle.name, max_retries)
        self._resolved = (max_retries, opts)
        return opts


def remote(*args: Any, **options: Any) -> Any:
    """Decorator: ``@remote`` or ``@remote(max_retries=2, timeout_s=60, memory_mb=2048,
    num_returns=2, retry_exceptions=[IOError], name=...)``."""
    if args and len(args) == 1 and not options and callable(args[0]):
        return RemoteFunction(args[0], {})
    if args:
        raise TypeError(
            f"remote() takes a function, got {type(args[0]).__name__}: {args[0]!r}"
        )
    checked = check_options(options)

    def decorate(fn: Callable) -> RemoteFunction:
        if not callable(fn):
            raise TypeError(f"remote() takes a function, got {type(fn).__name__}")
        return RemoteFunction(fn, checked)

    return decorate


_last: list[Runtime] = []  # the most recent runtime, kept for stats() after shutdown


def stats() -> Any:
    """Run stats of the current runtime, or of the last one after ``shutdown()``: a
    ``RunStats`` with ``.records`` (one per task attempt), ``.summary()`` (tasks,
    retries, 429s, cold starts, p50 / p95 duration, time blocked in get/wait, billed
    GB-seconds, estimated cost) and ``.format()``."""
    from lambdaflow.runtime.stats import RunStats

    rt = _runtime if _runtime is not None else (_last[-1] if _last else None)
    if rt is None:
        raise ConfigError("no lambdaflow runtime has run in this process yet")
    region = (rt.config.region or os.environ.get("AWS_REGION")
              or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
    run = RunStats(region=region)
    run.extend(rt.stats_records())
    return run
