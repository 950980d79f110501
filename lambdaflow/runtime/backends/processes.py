"""The ``processes`` backend: a pool of worker processes running ``worker.run_task``.

    submit(msg) ─> queue ─> IO thread ─> pipe ─> worker process ─> pipe ─> IO thread
                                │                                        └> future done
                                └─ tasks' requests (process_wire.py) ─> TaskHost (the
                                   scheduler's thread) ─> answers back through ``_call``

One IO thread owns every pipe and every ``_Proc``: it assigns queued tasks to workers
with room, writes batches (non-blocking, buffered), reads results and requests. Other
threads reach it only through ``submit`` (the queue) and ``_call`` (a callable run on
the IO thread), with one exception, the hand-off: the IO thread holds ``_io_lock``
except while it sleeps in select, and a ``submit`` that finds it sleeping, its task
alone in the queue and a worker with nothing to do, takes the lock and writes the task
to that worker itself (``_hand_off``), instead of waking the IO thread to do it: one
wake-up less per hop of a chain. Anything else (a burst, a busy or blocked worker, a
subtask, a failed write, a deadline to set) wakes the IO thread as before.

A worker gets tasks ahead up to QUEUED_WORK_S of expected work, by each function's
measured duration (deep for tiny tasks; nothing queued behind a long or not yet
measured one). Values above the inline limit go through a
``LocalDirStore`` (on /dev/shm when possible), never through pipes.

Tasks inside a worker call the API through its pipe (``process_client``): the driver
owns every object; a worker process borrows the ones it holds refs to. A task that
waits in ``get``/``wait`` gives its slot back: the worker hands back its queued tasks
(YIELD), is not given new ones, and a temporary worker starts if the queue would
otherwise wait; the tasks it waits for are sent to it to run inline (INLINE) when they
are queued here. Temporary workers beyond ``num_workers`` exit after idling IDLE_S.

Crashes: each worker keeps its running stack and a result log in shared memory. A
death (os._exit, a signal, the OOM killer, ``exit()``) is seen from the process itself:
its pidfd polls readable in the IO thread's select (without pidfd, a thread waits for
it with ``waitid(WNOWAIT)``), so a helper that a task forked and that still holds the
pipe open cannot hide it; EOF on the pipe counts too. Then what it sent before dying is
read, the results in its log complete their tasks, the tasks on its stack fail with
CRASH (retried per ``max_retries``), its other queued tasks are requeued without using
an attempt, its borrowed refs are released, and a replacement starts. A task past its
``timeout_s`` gets its worker killed and a TIMEOUT result; ``kill(task)``
(``cancel(force=True)``) kills the worker running it. All process handling is in
``_Proc`` and ``_replace``.

No orphans (``process_life``): the IO thread forks every worker, and each worker dies
with it (PDEATHSIG), exits when its pipe reaches EOF while a task runs, and ignores
Ctrl-C. SIGTERM / SIGHUP of the driver kill the workers and remove the run directory
(``_abandon``) before the process dies of the signal; a normal exit shuts down through
api.py's atexit. A run directory that outlives its driver anyway (SIGKILL) is removed
by the next runtime's sweep (``store/rundirs.py``).
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import cloudpickle

from lambdaflow.errors import BackendError, LambdaflowError
from lambdaflow.runtime import keys
from lambdaflow.runtime.backends import process_life
from lambdaflow.runtime.backends import process_wire as wire
from lambdaflow.runtime.backends.base import TaskHost
from lambdaflow.runtime.futures import TaskFuture
from lambdaflow.runtime.store import rundirs
from lambdaflow.runtime.store.localdir import LocalDirStore, default_root
from lambdaflow.runtime.task import (
    CANCELLED,
    CRASH,
    TIMEOUT,
    TaskMessage,
    TaskResult,
    TaskSpec,
    failure,
)

log = logging.getLogger(__name__)
MAX_DEPTH = 64
QUEUED_WORK_S = 0.01  # how much work (by recent task durations) to keep queued per worker
YIELD_WAIT_S = 0.05  # longest wait for a blocked worker's YIELD before dealing others out
UNMEASURED_S = 1.0  # a function not timed yet: never queued behind, nothing behind it
MAX_FUNCTIONS_TIMED = 4096
MAX_ORIGINS = 4096  # subtasks' submitters remembered until the subtask is queued
IDLE_S = 1.0  # a temporary worker idle this long exits
EXIT_GRACE_S = 1.0  # a worker whose pipe closed gets this long to finish exiting


class _Entry:
    """A task in the queue or in a worker: its message and future."""

    __slots__ = ("msg", "fut", "started", "taken", "origin")

    def __init__(self, msg: TaskMessage, fut: Future, origin: _Proc | None) -> None:
        self.msg, self.fut = msg, fut
        self.started = False  # set_running_or_notify_cancel() done
        self.taken = False  # left the queue (its deque slot is skipped)
        #: the worker that submitted this subtask, until ``_assign`` has looked at it
        self.origin = origin


class _Proc:
    """One worker process and the driver's view of it."""

    def __init__(self, index: int, shm_dir: str, temporary: bool) -> None:
        self.index = index
        self.temporary = temporary
        base = os.path.join(shm_dir, f"worker-{index}-{uuid.uuid4().hex[:6]}")
        self.stack = wire.RunningStack(base + ".run", create=True)
        self.log = wire.ResultLog(base + ".log", create=True)
        #: two pipes to the worker: ``wfd`` carries only TASKS (its main thread reads
        #: them when idle), ``cfd`` the rest (its reader thread's); one from it
        to_worker_r, self.wfd = os.pipe()
        control_r, self.cfd = os.pipe()
        self.rfd, from_worker_w = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        try:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "lambdaflow.runtime.backends.process_worker",
                 str(to_worker_r), str(from_worker_w), self.stack.path, self.log.path,
                 str(os.getpid()), str(control_r)],
                pass_fds=(to_worker_r, from_worker_w, control_r), env=env, close_fds=True,
            )
        except BaseException:
            for fd in (self.wfd, self.cfd, self.rfd):
                os.close(fd)
            self._remove_files()
            raise
        finally:
            os.close(to_worker_r)
            os.close(control_r)
            os.close(from_worker_w)
        for fd in (self.wfd, self.cfd, self.rfd):
            os.set_blocking(fd, False)
        #: readable once the process has exited (None: a thread waits for it instead)
        self.exit_fd = process_life.exit_fd(self.popen.pid)
        self.inflight: collections.OrderedDict[int, _Entry] = collections.OrderedDict()
        self.outbuf = bytearray()  # for wfd
        self.ctlbuf = bytearray()  # for cfd
        self.inbuf = bytearray()
        self.seq = 0
        self.dead = False
        self.blocked: set[int] = set()  # requests of its main thread that wait for real
        self.watches: dict[int, Any] = {}  # request -> the scheduler's watch token
        self.routes: dict[int, set[str]] = {}  # request -> task ids it waits for
        self.idle_since = time.monotonic()
        self.revoking = False  # a REVOKE is unanswered
        #: monotonic time until which this worker's YIELD is awaited: it was told it is
        #: blocked while it held queued tasks, which it hands back at once
        self.yield_due = 0.0
        self.revoked_at = 0.0

    # A _Proc is the borrower token of its process: hashed by identity (object's own
    # __hash__, in C: it is looked up per task)

    def close(self, kill: bool = False) -> None:
        if kill and self.popen.poll() is None:
            self.popen.kill()  # before the pipe closes: EOF would make it exit by itself
        for fd in (self.wfd, self.cfd, self.rfd):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        if self.exit_fd is not None:
            os.close(self.exit_fd)
            self.exit_fd = None
        self._remove_files()

    def _remove_files(self) -> None:
        for f in (self.stack, self.log):
            f.close()
            try:
                os.unlink(f.path)
            except OSError:
                pass


class ProcessesBackend:
    name = "processes"
    eager_delete = True

    def __init__(self, num_workers: int | None = None, store_dir: str | None = None) -> None:
        self.num_workers = num_workers or os.cpu_count() or 1
        self.max_workers = max(32, 8 * self.num_workers)
        self._pid = os.getpid()
        if store_dir is None:
            base = default_root()
            self._root = rundirs.claim(base)  # with its owner, for later sweeps
            rundirs.sweep(base)  # run directories of drivers that died
        else:
            self._root = store_dir
        self._own_root = store_dir is None
        self.store = LocalDirStore(self._root)
        self._shm_dir = os.path.join(self._root, ".workers")
        os.makedirs(self._shm_dir, exist_ok=True)
        self._host: TaskHost | None = None
        self._lock = threading.Lock()  # guards _queue, _queued, _calls, _woken
        #: held by the IO thread except while it sleeps in select; whoever holds it may
        #: touch the ``_Proc``s (``_hand_off``). Taken before ``_lock``, never after.
        self._io_lock = threading.Lock()
        self._io_lock.acquire()  # for the IO thread, which starts now
        self._queue: collections.deque[_Entry] = collections.deque()
        self._queued: dict[str, _Entry] = {}
        self._calls: collections.deque[Callable[[], None]] = collections.deque()
        self._routes: dict[str, tuple[_Proc, int]] = {}  # task id -> a request waiting
        #: (under _lock) task id -> the worker that submitted it, until it is queued (a
        #: subtask that never is, e.g. its argument failed, is forgotten MAX_ORIGINS later)
        self._origin: dict[str, _Proc] = {}
        self._origins_queued = 0  # (under _lock) queued entries with an ``origin`` set
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._woken = False
        self._closing = False
        self._avg_s = 0.05
        self._fn_avg: dict[str, float] = {}  # function key -> recent duration (s)
        self._framer = wire.Framer()  # used only under _io_lock (not thread-safe)
        self._rbuf = bytearray(wire.READ_SIZE)  # the IO thread's read buffer (``_read``)
        self._rview = memoryview(self._rbuf)
        self._started = 0
        #: how many times the IO thread's select has returned (tests, process_wakeups.py)
        self.io_wakeups = 0
        #: a task with ``timeout_s`` was sent (until then no loop looks for timeouts)
        self._timed = False
        self._warned_cap = False
        # Workers are forked by the IO thread, which lives as long as this backend:
        # their PDEATHSIG fires when the thread that forked them ends.
        self._procs: list[_Proc] = []
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="lambdaflow-io", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            self._thread.join()
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
            if self._own_root:
                rundirs.remove(self._root)
            raise BackendError(f"the processes backend could not start its worker "
                               f"processes: {self._start_error}") from self._start_error
        process_life.on_fatal_signal(self, self._abandon)

    def _spawn(self, temporary: bool) -> _Proc:
        self._started += 1
        p = _Proc(self._started, self._shm_dir, temporary)
        if p.exit_fd is None:  # no pidfd: a thread waits for the exit
            threading.Thread(target=self._await_exit, args=(p,), daemon=True,
                             name=f"lambdaflow-wait-{p.popen.pid}").start()
        return p

    def _await_exit(self, p: _Proc) -> None:
        try:  # WNOWAIT: see the exit without reaping it (Popen does that)
            os.waitid(os.P_PID, p.popen.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass  # reaped already
        self._call(lambda: self._exited(p))

    # ------------------------------------------------------------------ public
    def attach(self, host: TaskHost) -> None:
        self._host = host

    def submit(self, msg: TaskMessage) -> Future:
        fut: Future = TaskFuture()
        if self._closing:
            raise BackendError("the processes backend is shut down")
        with self._lock:
            entry = _Entry(msg, fut, self._origin.pop(msg.task_id, None))
            if entry.origin is not None:
                self._origins_queued += 1
            self._queue.append(entry)
            self._queued[msg.task_id] = entry
            if len(self._queue) > 1:  # a burst: no hand-off; wake the IO thread once
                if self._woken or threading.current_thread() is self._thread:
                    return fut
                self._woken = True
                alone = False
            else:
                alone = True
        if alone:
            if self._io_lock.acquire(blocking=False):  # the IO thread sleeps in select
                try:
                    handed = self._hand_off()
                finally:
                    self._io_lock.release()
                if handed:
                    return fut
            self._wake()
        else:
            self._write_wake()
        return fut

    def kill(self, task_id: str) -> None:
        """Kill the worker running ``task_id`` (``cancel(force=True)``)."""
        self._call(lambda: self._kill(task_id))

    def shutdown(self) -> None:
        if self._closing:
            return
        self._closing = True
        process_life.on_fatal_signal(self, None)
        self._wake()
        self._thread.join(timeout=10)
        for p in self._procs:
            p.close(kill=True)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        with self._lock:
            leftover = list(self._queue)
            self._queue.clear()
            self._queued.clear()
        for e in leftover:
            if not e.taken and (e.started or e.fut.set_running_or_notify_cancel()):
                e.fut.set_exception(BackendError("the runtime was shut down"))
        if self._own_root:
            rundirs.remove(self._root)

    def _abandon(self) -> None:
        """This driver dies of a signal: kill every worker and remove the run directory
        now. Takes no lock and waits for nothing (a signal handler runs it)."""
        if os.getpid() != self._pid:
            return  # a copy of this backend in a forked child: not its workers
        self._closing = True  # the IO thread starts no replacement for those killed
        for p in list(self._procs):
            try:
                p.popen.kill()
            except OSError:
                pass
        if self._own_root:  # renamed first: a worker starting meanwhile adds nothing
            rundirs.remove(self._root)

    # ------------------------------------------------------- other threads -> IO
    def _call(self, fn: Callable[[], None]) -> None:
        with self._lock:
            self._calls.append(fn)
        self._wake()

    def _hand_off(self) -> bool:
        """(Another thread, holding ``_io_lock``) send the only queued task to a worker
        that has nothing in flight. True if nothing is left for the IO thread to do;
        False (it must be woken) for anything but that plain case."""
        with self._lock:
            if len(self._queue) != 1 or self._routes or self._queue[0].origin is not None:
                return False
            now = time.monotonic()
            idle = None
            for p in self._procs:
                if p.dead:
                    continue
                if p.yield_due > now:
                    return False  # nothing is dealt out until its YIELD comes
                if idle is None and not p.inflight and not p.blocked:
                    idle = p
            if idle is None:
                return False
            entry = self._queue.popleft()
            if not self._take(entry):
                return True  # cancelled while queued: nothing to send
        self._send_tasks(idle, [entry])
        # A partial or failed write, or a deadline select does not know (a timeout_s):
        # the IO thread has to look.
        return not idle.outbuf and self._next_deadline() is None

    def _wake(self) -> None:
        with self._lock:
            if self._woken or threading.current_thread() is self._thread:
                return
            self._woken = True
        self._write_wake()

    def _write_wake(self) -> None:
        """(Having set ``_woken``) the wake-up byte."""
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    # --------------------------------------------------------------- IO thread
    def _loop(self) -> None:
        try:
            for _ in range(self.num_workers):
                self._procs.append(self._spawn(temporary=False))
        except Exception as exc:  # e.g. out of file descriptors or processes
            self._start_error = exc
            for p in self._procs:
                p.close(kill=True)
            return
        finally:
            self._ready.set()
        try:
            while not self._closing:
                self._run_calls()
                self._assign()
                exits = {p.exit_fd: p for p in self._procs if p.exit_fd is not None}
                rlist = [self._wake_r] + [p.rfd for p in self._procs] + list(exits)
                wlist = [p.wfd for p in self._procs if p.outbuf]
                wlist += [p.cfd for p in self._procs if p.ctlbuf]
                deadline = self._next_deadline()
                self._io_lock.release()  # a submit may hand its task off meanwhile
                try:
                    r, w, _ = select.select(rlist, wlist, [], deadline)
                finally:
                    self._io_lock.acquire()
                self.io_wakeups += 1
                if self._wake_r in r:
                    # Drain first, then clear the flag: a submit in between sees the flag
                    # still set and skips its write, but the top of the loop picks its
                    # task up; clearing first could swallow its wake-up byte.
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
                    with self._lock:
                        self._woken = False
                for p in list(self._procs):
                    if (p.wfd in w or p.cfd in w) and not p.dead:
                        self._flush(p)
                    if p.rfd in r and not p.dead:
                        self._read(p)
                for fd in r:
                    if fd in exits:
                        self._exited(exits[fd])
                self._check_timeouts()
                self._retire_idle()
        except Exception:  # pragma: no cover - a bug here must not hang get() forever
            log.exception("processes backend IO thread failed")
            self._fail_all(BackendError("the processes backend's IO thread failed; see log"))

    def _run_calls(self) -> None:
        while True:
            with self._lock:
                if not self._calls:
                    return
                fn = self._calls.popleft()
            fn()

    def _fits(self, p: _Proc, entry: _Entry, sends: dict[_Proc, list]) -> bool:
        """Whether a subtask may go back to its submitter ``p``: nothing is queued there
        beyond the tasks it is running (the submitter, likely to wait for it), or what
        is queued plus ``entry`` is at most QUEUED_WORK_S of expected work."""
        running = {seq for seq, _ in p.stack.entries()}
        ahead = [e for seq, e in p.inflight.items() if seq not in running]
        ahead += sends.get(p, [])
        return not ahead or sum(map(self._cost, ahead)) + self._cost(entry) <= QUEUED_WORK_S

    def _cost(self, entry: _Entry) -> float:
        """Seconds ``entry`` is expected to run: its function's recent average, or
        UNMEASURED_S for a function not seen finishing yet."""
        return self._fn_avg.get(entry.msg.fn_key, UNMEASURED_S)

    def _take(self, entry: _Entry) -> bool:
        """(Under the lock) claim a queued entry; False if it was cancelled meanwhile."""
        entry.taken = True
        if self._queued.get(entry.msg.task_id) is entry:
            del self._queued[entry.msg.task_id]
        if not entry.started:
            entry.started = True
            return entry.fut.set_running_or_notify_cancel()
        return True

    def _assign(self) -> None:
        if not self._queue:  # nothing queued (a submit after this check wakes the loop)
            self._steal()
            return
        sends: dict[_Proc, list] = {}
        inline: list[tuple[_Proc, int, _Entry]] = []
        with self._lock:
            for tid in [t for t in self._routes if t in self._queued]:
                p, req = self._routes[tid]
                entry = self._queued[tid]
                if self._take(entry):
                    inline.append((p, req, entry))
            if self._origins_queued:  # a task's subtasks go back to its worker, which
                for entry in list(self._queue):  # will likely wait for them (work-
                    origin = entry.origin  # stealing spreads them when others have room)
                    if entry.taken or origin is None:
                        continue
                    entry.origin = None
                    if (not origin.dead and not origin.blocked
                            and self._fits(origin, entry, sends) and self._take(entry)):
                        sends.setdefault(origin, []).append(entry)
                self._origins_queued = 0
            # A worker that just blocked hands its queued tasks back within a moment;
            # until then nothing else is dealt out, so they keep their place in line.
            now = time.monotonic()
            yielding = any(p.yield_due > now and not p.dead for p in self._procs)
            ready = [] if yielding else sorted(
                (p for p in self._procs if not p.dead and not p.blocked),
                key=lambda p: len(p.inflight))
            queue, queued, fn_avg = self._queue, self._queued, self._fn_avg
            for p in ready:
                # Queue ahead only as much work as QUEUED_WORK_S, by each function's own
                # measured duration: a quick task never waits behind a long (or not yet
                # measured) one in a worker's queue while another worker could run it.
                # (``_cost`` and ``_take`` written out: this loop runs once per task.)
                n = len(p.inflight)
                work = sum(fn_avg.get(e.msg.fn_key, UNMEASURED_S) for e in p.inflight.values())
                batch = sends.get(p)
                while queue and n < MAX_DEPTH:
                    entry = queue[0]
                    if entry.taken:  # routed inline already
                        queue.popleft()
                        continue
                    cost = fn_avg.get(entry.msg.fn_key, UNMEASURED_S)
                    if n and work + cost > QUEUED_WORK_S:
                        break
                    queue.popleft()
                    entry.taken = True
                    tid = entry.msg.task_id
                    if queued.get(tid) is entry:
                        del queued[tid]
                    if not entry.started:
                        entry.started = True
                        if not entry.fut.set_running_or_notify_cancel():
                            continue  # cancelled while queued
                    if batch is None:
                        batch = sends[p] = []
                    batch.append(entry)
                    n, work = n + 1, work + cost
                if not queue:
                    break
            while self._queue and self._queue[0].taken:
                self._queue.popleft()
            backlog = bool(self._queued) and not yielding
        for p, req, entry in inline:
            self._send_tasks(p, [entry], req)
        for p, entries in sends.items():
            self._send_tasks(p, entries)
        if backlog:
            if self._grow():
                self._assign()  # give the new worker its tasks now, not at the next wake-up
        else:
            self._steal()

    def _send_tasks(self, p: _Proc, entries: list[_Entry], req: int | None = None) -> None:
        items = []
        seq, inflight = p.seq, p.inflight
        for e in entries:
            if not self._timed and e.msg.options.get("timeout_s"):
                self._timed = True
            seq += 1
            inflight[seq] = e
            items.append([seq, e.msg.to_list()])
        p.seq = seq
        if req is None:
            if not p.dead:
                p.outbuf += self._framer.frame(wire.TASKS, items)
                self._flush(p)
        else:
            self._send(p, self._framer.frame(wire.INLINE, req, items))

    def _send(self, p: _Proc, data: bytes) -> None:
        """Send ``p`` a frame other than TASKS (on its control pipe)."""
        if not p.dead:
            p.ctlbuf += data
            self._flush(p)

    def _grow(self) -> bool:
        """Tasks wait and workers are blocked: start a temporary worker (True if so)."""
        working = sum(1 for p in self._procs if not p.dead and not p.blocked)
        if working >= self.num_workers or self._closing:
            return False
        if len(self._procs) >= self.max_workers:
            if not self._warned_cap:
                self._warned_cap = True
                log.warning("processes backend: %d workers are running, most blocked in "
                            "get()/wait(); not starting more (max_workers)", len(self._procs))
            return False
        self._procs.append(self._spawn(temporary=True))
        return True

    def _steal(self) -> None:
        """A worker has room while another holds queued tasks behind one that has run
        far longer than tasks do on average: ask for them back (REVOKE)."""
        if not any(len(p.inflight) > 1 for p in self._procs):
            return  # nothing queued behind a running task anywhere
        working = [p for p in self._procs if not p.dead and not p.blocked]
        if len(working) >= self.num_workers and all(p.inflight for p in working):
            return  # no room anywhere
        now = time.time()
        patience = max(0.05, 8 * self._avg_s)
        for p in self._procs:
            if p.dead or p.revoking or len(p.inflight) < 2 or now - p.revoked_at < patience:
                continue
            running = p.stack.entries()
            if running and len(p.inflight) > len(running) and now - running[0][1] > patience:
                p.revoking, p.revoked_at = True, now
                self._send(p, wire.frame(wire.REVOKE))

    def _retire_idle(self) -> None:
        if len(self._procs) <= self.num_workers:
            return  # no temporary worker
        now = time.monotonic()
        working = sum(1 for p in self._procs if not p.dead and not p.blocked)
        for p in list(self._procs):
            if working <= self.num_workers:
                return
            if p.temporary and not p.inflight and not p.blocked and now - p.idle_since > IDLE_S:
                self._procs.remove(p)
                p.dead = True
                p.close()
                if self._host is not None:
                    self._host.drop_owner(p)
                working -= 1

    def _flush(self, p: _Proc) -> None:
        try:
            for fd, buf in ((p.wfd, p.outbuf), (p.cfd, p.ctlbuf)):
                if buf:
                    try:
                        del buf[:os.write(fd, buf)]
                    except BlockingIOError:
                        pass
        except OSError:
            if threading.current_thread() is self._thread:
                self._crashed(p)
            # else (a hand-off): the data stays in outbuf; the IO thread, woken, finds
            # the pipe writable, fails the same write and replaces the worker itself

    def _read(self, p: _Proc) -> bool:
        """Take in what ``p`` sent; False when nothing was there (or at EOF: the process
        closed its end, so it is dying)."""
        try:
            n = os.readv(p.rfd, (self._rbuf,))
        except BlockingIOError:
            return False
        except OSError:
            n = 0
        if not n:
            self._crashed(p)
            return False
        p.inbuf += self._rview[:n]
        for fields in wire.split_frames(p.inbuf):
            if fields[0] == wire.RESULTS:
                self._results(p, fields[1])
            else:
                self._request(p, fields)
        return True

    def _exited(self, p: _Proc) -> None:
        """``p``'s process has exited (its pidfd polled readable, or the waiter thread
        saw it). A helper it forked may still hold the pipe open, so EOF may never
        come: take in what it sent before it died, then fail over."""
        while not p.dead and self._read(p):
            pass
        self._crashed(p)

    def _results(self, p: _Proc, items: list) -> None:
        pop, avg, avg_s = p.inflight.pop, self._fn_avg, self._avg_s
        for seq, result_fields in items:
            entry = pop(seq, None)
            if entry is None:
                continue
            result = TaskResult.from_list(result_fields)
            took = result.stats.get("duration_s") or 0.0
            avg_s = 0.8 * avg_s + 0.2 * took
            fn = entry.msg.fn_key
            last = avg.get(fn)
            avg[fn] = took if last is None else 0.7 * last + 0.3 * took
            entry.fut.set_result(result)
        self._avg_s = avg_s
        if len(avg) > MAX_FUNCTIONS_TIMED:
            avg.clear()
        if not p.inflight:
            p.idle_since = time.monotonic()

    # ------------------------------------------------------- tasks' requests
    def _request(self, p: _Proc, fields: list) -> None:
        host = self._host
        if host is None:
            raise BackendError("the processes backend got a task request before attach()")
        kind = fields[0]
        if kind == wire.SUBMIT:
            spec = TaskSpec.from_list(fields[1])
            with self._lock:
                self._origin[spec.task_id] = p
                if len(self._origin) > MAX_ORIGINS:  # the oldest never got queued
                    del self._origin[next(iter(self._origin))]
            host.submit_spec(spec, p)
        elif kind == wire.PUT:
            host.put_located(fields[1], fields[2], fields[3], p)
        elif kind == wire.BORROW:
            host.borrow(p, fields[1])
        elif kind == wire.RELEASE:
            host.release(p, fields[1])
        elif kind == wire.GET:
            self._watch(p, fields[1], fields[2], fields[3], fields[4], fields[5])
        elif kind == wire.UNWATCH:
            token = p.watches.get(fields[1])
            if token is not None:
                host.unwatch(token)
            self._close_request(p, fields[1])
        elif kind == wire.YIELD:
            p.revoking = False
            p.yield_due = 0.0
            with self._lock:
                for seq in reversed(fields[1]):
                    entry = p.inflight.pop(seq, None)
                    if entry is not None:
                        entry.taken = False
                        self._queue.appendleft(entry)
                        self._queued[entry.msg.task_id] = entry
        elif kind == wire.LOST:
            host.report_lost(fields[1], fields[2])
        elif kind == wire.CANCEL:
            req = fields[1]
            host.cancel_id(fields[2], fields[3],
                           lambda ok: self._call(lambda: self._send(p, wire.frame(
                               wire.REPLY, req, bool(ok)))))

    def _watch(self, p: _Proc, req: int, oids: list[str], need: int, main: bool,
               inline: bool) -> None:
        host = self._host
        assert host is not None
        if inline:
            tids = {keys.task_of(oid) for oid in oids}
            p.routes[req] = tids
            for tid in tids:
                self._routes[tid] = (p, req)

        def done(settled: list) -> None:
            self._call(lambda: self._reply(p, req, settled))

        def pending() -> None:
            self._call(lambda: self._blocked(p, req, main))

        p.watches[req] = host.watch(oids, need, done, pending)

    def _blocked(self, p: _Proc, req: int, main: bool) -> None:
        if req in p.watches and not p.dead:
            if main:
                p.blocked.add(req)
                if len(p.inflight) > len(p.stack.entries()):
                    p.yield_due = time.monotonic() + YIELD_WAIT_S
            self._send(p, wire.frame(wire.BLOCKED, req))

    def _reply(self, p: _Proc, req: int, settled: list) -> None:
        if req not in p.watches or p.dead:
            return
        payload = [None if s is None else _wire_settled(s) for s in settled]
        self._close_request(p, req)
        self._send(p, wire.frame(wire.REPLY, req, payload))

    def _close_request(self, p: _Proc, req: int) -> None:
        p.watches.pop(req, None)
        p.blocked.discard(req)
        for tid in p.routes.pop(req, ()):
            if self._routes.get(tid) == (p, req):
                del self._routes[tid]

    # ---------------------------------------------------------- process faults
    def _replace(self, p: _Proc, why: str, special: dict[int, tuple[str, str]] | None = None
                 ) -> None:  # noqa: C901
        """``p`` is dead or being killed. Results in its log complete their tasks; the
        tasks on its running stack fail (``special`` seq -> (status, message), else
        CRASH); the others are requeued; its borrows end; a replacement starts."""
        if p.dead:
            return
        p.dead = True
        running = [seq for seq, _ in p.stack.entries()]
        logged = p.log.read()
        p.close(kill=True)
        code = p.popen.returncode
        self._results(p, logged)
        requeue = []
        for seq, entry in list(p.inflight.items()):
            if seq in running:
                status, text = (special or {}).get(seq, (CRASH, f"{why} ({_describe_exit(code)})"))
                entry.fut.set_result(failure(entry.msg.task_id, entry.msg.attempt, status, text))
            else:
                requeue.append(entry)
        p.inflight.clear()
        for req in list(p.watches):
            if self._host is not None:
                self._host.unwatch(p.watches[req])
            self._close_request(p, req)
        if self._host is not None:
            self._host.drop_owner(p)
        i = self._procs.index(p)
        if self._closing or p.temporary:
            del self._procs[i]
        else:
            self._procs[i] = self._spawn(temporary=False)
        with self._lock:
            for entry in reversed(requeue):  # they never ran (or will run again)
                entry.taken = False
                self._queue.appendleft(entry)
                self._queued[entry.msg.task_id] = entry

    def _crashed(self, p: _Proc) -> None:
        """``p``'s process exited, or closed its pipe (it is exiting: a pipe closes
        before the exit status exists, so wait a moment for the status, which names
        the signal, rather than kill it and report our SIGKILL)."""
        if p.dead:
            return
        try:
            p.popen.wait(timeout=EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
        self._replace(p, f"worker process {p.popen.pid} died")

    def _kill(self, task_id: str) -> None:
        for p in list(self._procs):
            for seq, _ in p.stack.entries():
                entry = p.inflight.get(seq)
                if entry is not None and entry.msg.task_id == task_id:
                    log.info("job=%s task=%s cancelled with force=True; killing worker %d",
                             entry.msg.job_id, task_id, p.popen.pid)
                    self._replace(p, f"worker process {p.popen.pid} was killed to cancel "
                                     f"task {task_id}",
                                  {seq: (CANCELLED, "cancelled with force=True")})
                    return

    def _next_deadline(self) -> float | None:
        """How long select may sleep: wake to check timeouts, and to steal queued tasks
        from behind a long one while some worker has room."""
        now = time.monotonic()
        due: float | None = None
        idle = behind = timed = False  # (one pass: this runs once per select)
        for p in self._procs:
            if p.dead:
                continue
            if p.yield_due > now:
                due = p.yield_due if due is None else min(due, p.yield_due)
            n = len(p.inflight)
            if not n:
                idle = idle or not p.blocked
                continue
            if n > 1 and not p.revoking:
                behind = True
            if self._timed and not timed:
                timed = any(e.msg.options.get("timeout_s") for e in p.inflight.values())
        if due is not None:
            return due - now
        return 0.05 if timed or (idle and behind) else None

    def _check_timeouts(self) -> None:
        if not self._timed:
            return
        now = time.time()
        for p in list(self._procs):
            if not p.inflight or p.dead:
                continue
            for seq, started in p.stack.entries():
                entry = p.inflight.get(seq)
                if entry is None:
                    continue
                limit = entry.msg.options.get("timeout_s")
                if limit and now - started > limit:
                    log.warning("job=%s task=%s exceeded timeout_s=%s; killing worker %d",
                                entry.msg.job_id, entry.msg.task_id, limit, p.popen.pid)
                    self._replace(p, f"worker process {p.popen.pid} was killed", {seq: (
                        TIMEOUT, f"timed out after {limit} s (timeout_s={limit}); worker "
                                 f"process {p.popen.pid} was killed")})
                    break

    def _fail_all(self, exc: BaseException) -> None:
        for p in self._procs:
            for entry in p.inflight.values():
                if not entry.fut.done():
                    entry.fut.set_exception(exc)
            p.inflight.clear()
        with self._lock:
            queued, self._queue = list(self._queue), collections.deque()
            self._queued.clear()
        for e in queued:
            if not e.taken and (e.started or e.fut.set_running_or_notify_cancel()):
                e.fut.set_exception(exc)


def _wire_settled(s: tuple) -> list:
    kind, payload = s
    if kind == "error":
        try:
            return ["error", cloudpickle.dumps(payload)]
        except Exception:
            return ["error", pickle.dumps(LambdaflowError(str(payload)))]
    return [kind, payload]


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = "; the OOM killer sends SIGKILL" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit code {code}"
