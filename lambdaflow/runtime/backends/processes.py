"""The ``processes`` backend: a pool of worker processes running ``worker.run_task``.

    submit(msg) ─> queue ─> IO thread ─> pipe ─> worker process ─> pipe ─> IO thread
                                │                                        └> future done
                                └─ tasks' requests (process_wire.py) ─> TaskHost (the
                                   scheduler, under its lock, on this same IO thread)
                                   ─> answers back through ``_call``

One IO thread owns every pipe and every ``Proc``: it assigns queued tasks to workers
with room, writes batches (non-blocking, buffered), reads results and requests. Other
threads reach it only through ``submit`` (the queue) and ``_call`` (a callable run on
the IO thread), with one exception, the hand-off: the IO thread holds ``_io_lock``
except while it sleeps in select, and a ``submit`` that finds it sleeping, its task
alone in the queue and a worker with nothing to do, takes the lock and writes the task
to that worker itself (``_hand_off``), instead of waking the IO thread to do it: one
wake-up less per hop of a chain. Anything else (a burst, a busy or blocked worker, a
subtask, a failed write, a deadline to set) wakes the IO thread as before. A ``submit``
made on the IO thread itself (a done callback that ``set_result`` runs there: the
scheduler completes a task on the thread that reports it) only queues: the IO thread is
awake and holds ``_io_lock``, and the top of its loop sends the task. So nothing the IO
thread holds while it completes a future may be ``_lock``, which ``submit`` takes.

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

Worker processes and their faults are ``process_proc``'s (``Workers``: spawn, crash,
replace, timeouts, kill): the IO thread calls it, and it calls back through the
callables it is given (take in what a dying worker sent, complete results, requeue
tasks, end a worker's requests and borrows). See its docstring for what a crash does.

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
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from threading import get_ident

import cloudpickle

from lambdaflow.errors import BackendError, LambdaflowError
from lambdaflow.runtime import keys
from lambdaflow.runtime.backends import process_life
from lambdaflow.runtime.backends import process_wire as wire
from lambdaflow.runtime.backends.base import TaskHost
from lambdaflow.runtime.backends.process_proc import Callbacks, Entry, Proc, Workers
from lambdaflow.runtime.store import rundirs
from lambdaflow.runtime.store.localdir import LocalDirStore, default_root
from lambdaflow.runtime.task import TaskMessage, TaskResult, TaskSpec

log = logging.getLogger(__name__)
MAX_DEPTH = 64
QUEUED_WORK_S = 0.01  # how much work (by recent task durations) to keep queued per worker
YIELD_WAIT_S = 0.05  # longest wait for a blocked worker's YIELD before dealing others out
UNMEASURED_S = 1.0  # a function not timed yet: never queued behind, nothing behind it
MAX_FUNCTIONS_TIMED = 4096
MAX_ORIGINS = 4096  # subtasks' submitters remembered until the subtask is queued
IDLE_S = 1.0  # a temporary worker idle this long exits


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
        #: touch the ``Proc``s (``_hand_off``). Taken before ``_lock``, never after.
        self._io_lock = threading.Lock()
        self._io_lock.acquire()  # for the IO thread, which starts now
        self._queue: collections.deque[Entry] = collections.deque()
        self._queued: dict[str, Entry] = {}
        self._calls: collections.deque[Callable[[], None]] = collections.deque()
        self._routes: dict[str, tuple[Proc, int]] = {}  # task id -> a request waiting
        #: (under _lock) task id -> the worker that submitted it, until it is queued (a
        #: subtask that never is, e.g. its argument failed, is forgotten MAX_ORIGINS later)
        self._origin: dict[str, Proc] = {}
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
        #: how many times the IO thread's select has returned (tests, process_wakeups.py)
        self.io_wakeups = 0
        #: a task with ``timeout_s`` was sent (until then no loop looks for timeouts)
        self._timed = False
        self._warned_cap = False
        # Workers are forked by the IO thread, which lives as long as this backend:
        # their PDEATHSIG fires when the thread that forked them ends.
        self._workers = Workers(self._shm_dir, Callbacks(
            take_in=self._read, complete=self._results, requeue=self._requeue,
            forget=self._forget, call=self._call))
        self._procs = self._workers.procs  # the same list, for the IO thread's loops
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="lambdaflow-io", daemon=True)
        self._thread.start()
        self._io_ident = self._thread.ident  # ``submit`` tells the IO thread by this
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

    @property
    def _started(self) -> int:
        """Workers started so far (tests, benchmarks/nested_tasks.py)."""
        return self._workers.started

    # ------------------------------------------------------------------ public
    def attach(self, host: TaskHost) -> None:
        self._host = host

    def submit(self, msg: TaskMessage) -> Future:
        if self._closing:
            raise BackendError("the processes backend is shut down")
        on_io = get_ident() == self._io_ident
        entry = Entry(msg, None)
        with self._lock:
            entry.origin = self._origin.pop(msg.task_id, None)
            if entry.origin is not None:
                self._origins_queued += 1
            self._queue.append(entry)
            self._queued[msg.task_id] = entry
            if on_io:
                # A done callback run by ``set_result`` on the IO thread (a chain's next
                # hop): only queue. The IO thread holds ``_io_lock`` (no hand-off to try)
                # and is awake (no wake byte): the top of its loop, ``_assign``, sends it.
                return entry
            if len(self._queue) > 1:  # a burst: no hand-off; wake the IO thread once
                if self._woken:
                    return entry
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
                    return entry
            self._wake()
        else:
            self._write_wake()
        return entry

    def kill(self, task_id: str) -> None:
        """Kill the worker running ``task_id`` (``cancel(force=True)``)."""
        self._call(lambda: self._workers.kill(task_id))

    def shutdown(self) -> None:
        if self._closing:
            return
        self._closing = self._workers.closing = True
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
            if not e.taken and (e.started or e.set_running_or_notify_cancel()):
                e.set_exception(BackendError("the runtime was shut down"))
        if self._own_root:
            rundirs.remove(self._root)

    def _abandon(self) -> None:
        """This driver dies of a signal: kill every worker and remove the run directory
        now. Takes no lock and waits for nothing (a signal handler runs it)."""
        if os.getpid() != self._pid:
            return  # a copy of this backend in a forked child: not its workers
        # the IO thread starts no replacement for those killed
        self._closing = self._workers.closing = True
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
                self._procs.append(self._workers.spawn(temporary=False))
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
                        self._workers.exited(exits[fd])
                if self._timed:
                    self._workers.check_timeouts()
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

    def _fits(self, p: Proc, entry: Entry, sends: dict[Proc, list]) -> bool:
        """Whether a subtask may go back to its submitter ``p``: nothing is queued there
        beyond the tasks it is running (the submitter, likely to wait for it), or what
        is queued plus ``entry`` is at most QUEUED_WORK_S of expected work."""
        running = {seq for seq, _ in p.stack.entries()}
        ahead = [e for seq, e in p.inflight.items() if seq not in running]
        ahead += sends.get(p, [])
        return not ahead or sum(map(self._cost, ahead)) + self._cost(entry) <= QUEUED_WORK_S

    def _cost(self, entry: Entry) -> float:
        """Seconds ``entry`` is expected to run: its function's recent average, or
        UNMEASURED_S for a function not seen finishing yet."""
        return self._fn_avg.get(entry.msg.fn_key, UNMEASURED_S)

    def _take(self, entry: Entry) -> bool:
        """(Under the lock) claim a queued entry; False if it was cancelled meanwhile."""
        entry.taken = True
        if self._queued.get(entry.msg.task_id) is entry:
            del self._queued[entry.msg.task_id]
        if not entry.started:
            entry.started = True
            return entry.set_running_or_notify_cancel()
        return True

    def _assign(self) -> None:
        if not self._queue:  # nothing queued (a submit after this check wakes the loop)
            self._steal()
            return
        sends: dict[Proc, list] = {}
        inline: list[tuple[Proc, int, Entry]] = []
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
                        if not entry.set_running_or_notify_cancel():
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

    def _send_tasks(self, p: Proc, entries: list[Entry], req: int | None = None) -> None:
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

    def _send(self, p: Proc, data: bytes) -> None:
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
        self._procs.append(self._workers.spawn(temporary=True))
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

    def _flush(self, p: Proc) -> None:
        try:
            for fd, buf in ((p.wfd, p.outbuf), (p.cfd, p.ctlbuf)):
                if buf:
                    try:
                        del buf[:os.write(fd, buf)]
                    except BlockingIOError:
                        pass
        except OSError:
            if threading.current_thread() is self._thread:
                self._workers.crashed(p)
            # else (a hand-off): the data stays in outbuf; the IO thread, woken, finds
            # the pipe writable, fails the same write and replaces the worker itself

    def _read(self, p: Proc) -> bool:
        """Take in what ``p`` sent; False when nothing was there (or at EOF: the process
        closed its end, so it is dying)."""
        try:
            n = os.readv(p.rfd, (self._rbuf,))
        except BlockingIOError:
            return False
        except OSError:
            n = 0
        if not n:
            self._workers.crashed(p)
            return False
        p.inbuf += self._rview[:n]
        for fields in wire.split_frames(p.inbuf):
            if fields[0] == wire.RESULTS:
                self._results(p, fields[1])
            else:
                self._request(p, fields)
        return True

    def _results(self, p: Proc, items: list) -> None:
        """Complete ``p``'s results [[seq, fields], ...]. Runs on the IO thread with
        ``_io_lock`` held and ``_lock`` NOT held, and must stay so: ``set_result`` runs
        the future's done callbacks here, which may call ``submit`` (the scheduler
        completes a task on the thread that reports it: a chain's next hop), and
        ``submit`` takes ``_lock``."""
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
            entry.set_result(result)
        self._avg_s = avg_s
        if len(avg) > MAX_FUNCTIONS_TIMED:
            avg.clear()
        if not p.inflight:
            p.idle_since = time.monotonic()

    # ------------------------------------------------------- tasks' requests
    def _request(self, p: Proc, fields: list) -> None:
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
            given = (p.inflight.pop(seq, None) for seq in fields[1])
            self._requeue([entry for entry in given if entry is not None])
        elif kind == wire.LOST:
            host.report_lost(fields[1], fields[2])
        elif kind == wire.CANCEL:
            req = fields[1]
            host.cancel_id(fields[2], fields[3],
                           lambda ok: self._call(lambda: self._send(p, wire.frame(
                               wire.REPLY, req, bool(ok)))))

    def _watch(self, p: Proc, req: int, oids: list[str], need: int, main: bool,
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

    def _blocked(self, p: Proc, req: int, main: bool) -> None:
        if req in p.watches and not p.dead:
            if main:
                p.blocked.add(req)
                if len(p.inflight) > len(p.stack.entries()):
                    p.yield_due = time.monotonic() + YIELD_WAIT_S
            self._send(p, wire.frame(wire.BLOCKED, req))

    def _reply(self, p: Proc, req: int, settled: list) -> None:
        if req not in p.watches or p.dead:
            return
        payload = [None if s is None else _wire_settled(s) for s in settled]
        self._close_request(p, req)
        self._send(p, wire.frame(wire.REPLY, req, payload))

    def _close_request(self, p: Proc, req: int) -> None:
        p.watches.pop(req, None)
        p.blocked.discard(req)
        for tid in p.routes.pop(req, ()):
            if self._routes.get(tid) == (p, req):
                del self._routes[tid]

    # ------------------------------------------- for Workers (process_proc.py)
    def _requeue(self, entries: list[Entry]) -> None:
        """Put ``entries`` (given back, or left by a dead worker) back at the front of
        the queue, in their order."""
        with self._lock:
            for entry in reversed(entries):
                entry.taken = False
                self._queue.appendleft(entry)
                self._queued[entry.msg.task_id] = entry

    def _forget(self, p: Proc) -> None:
        """``p`` is gone: stop watching for its requests, end its borrowed refs."""
        for req in list(p.watches):
            if self._host is not None:
                self._host.unwatch(p.watches[req])
            self._close_request(p, req)
        if self._host is not None:
            self._host.drop_owner(p)

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

    def _fail_all(self, exc: BaseException) -> None:
        for p in self._procs:
            for entry in p.inflight.values():
                if not entry.done():
                    entry.set_exception(exc)
            p.inflight.clear()
        with self._lock:
            queued, self._queue = list(self._queue), collections.deque()
            self._queued.clear()
        for e in queued:
            if not e.taken and (e.started or e.set_running_or_notify_cancel()):
                e.set_exception(exc)


def _wire_settled(s: tuple) -> list:
    kind, payload = s
    if kind == "error":
        try:
            return ["error", cloudpickle.dumps(payload)]
        except Exception:
            return ["error", pickle.dumps(LambdaflowError(str(payload)))]
    return [kind, payload]

