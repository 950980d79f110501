"""The processes backend's worker processes, and what happens when one dies.

    Workers (the IO thread's, like every ``Proc``)
      spawn(temporary) ─> Proc: a ``process_worker`` child, its three pipes, its pidfd
      exited(p) / crashed(p) / kill(task_id) / check_timeouts()
            └─> replace(p, why): complete ─> fail ─> requeue ─> forget ─> respawn

``processes.py`` (the queue, the IO loop, the hand-off) calls those methods; a
``Workers`` calls back into it only through the callables it is given (``Callbacks``):
take in what a dying worker sent (``take_in``), complete results (``complete``), put
tasks back at the front of the queue (``requeue``), end a worker's requests and borrows
(``forget``) and run something on the IO thread (``call``, for the exit waiter thread).

Crashes: each worker keeps its running stack and a result log in shared memory
(``process_wire``). A death (os._exit, a signal, the OOM killer, ``exit()``) is seen
from the process itself: its pidfd polls readable in the IO thread's select (without
pidfd, a thread waits for it with ``waitid(WNOWAIT)``), so a helper that a task forked
and that still holds the pipe open cannot hide it; EOF on the pipe counts too. Then what
it sent before dying is read, the results in its log complete their tasks, the tasks on
its stack fail with CRASH (retried per ``max_retries``), its other queued tasks are
requeued without using an attempt, its borrowed refs are released, and a replacement
starts (unless the backend is closing or the worker was a temporary one). A task past
its ``timeout_s`` gets its worker killed and a TIMEOUT result; ``kill(task_id)``
(``cancel(force=True)``) kills the worker running it with a CANCELLED result.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lambdaflow.runtime.backends import process_life
from lambdaflow.runtime.backends import process_wire as wire
from lambdaflow.runtime.futures import TaskFuture
from lambdaflow.runtime.task import CANCELLED, CRASH, TIMEOUT, TaskMessage, failure

log = logging.getLogger(__name__)
EXIT_GRACE_S = 1.0  # a worker whose pipe closed gets this long to finish exiting


class Entry(TaskFuture):
    """A task attempt in the queue or in a worker: the future ``submit`` returns, with
    its message and its place. One object per attempt, not a future and a record: in a
    burst every attempt in flight is an object the cyclic GC scans again and again."""

    def __init__(self, msg: TaskMessage, origin: Proc | None) -> None:
        super().__init__()
        self.msg = msg
        self.started = False  # set_running_or_notify_cancel() done
        self.taken = False  # left the queue (its deque slot is skipped)
        #: the worker that submitted this subtask, until ``_assign`` has looked at it
        self.origin = origin


class Proc:
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
        self.inflight: collections.OrderedDict[int, Entry] = collections.OrderedDict()
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

    # A Proc is the borrower token of its process: hashed by identity (object's own
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


@dataclass(frozen=True)
class Callbacks:
    """What a ``Workers`` asks of the backend (all but ``call`` on the IO thread)."""

    take_in: Callable[[Proc], bool]  # read what ``p`` sent; False when nothing was there
    complete: Callable[[Proc, list], None]  # results [[seq, fields], ...] of ``p``
    requeue: Callable[[list[Entry]], None]  # back to the front of the queue, in order
    forget: Callable[[Proc], None]  # end ``p``'s requests and borrowed refs
    call: Callable[[Callable[[], None]], None]  # run on the IO thread (any thread)


class Workers:
    """The worker processes (``procs``, which only the IO thread touches) and their
    faults. ``procs`` is one list for the backend's lifetime: a replacement takes its
    predecessor's place in it."""

    def __init__(self, shm_dir: str, callbacks: Callbacks) -> None:
        self._shm_dir = shm_dir
        self._cb = callbacks
        self.procs: list[Proc] = []
        self.started = 0  # workers started so far (replacements and temporaries too)
        self.closing = False  # set when the backend shuts down: nothing is replaced

    def spawn(self, temporary: bool) -> Proc:
        self.started += 1
        p = Proc(self.started, self._shm_dir, temporary)
        if p.exit_fd is None:  # no pidfd: a thread waits for the exit
            threading.Thread(target=self._await_exit, args=(p,), daemon=True,
                             name=f"lambdaflow-wait-{p.popen.pid}").start()
        return p

    def _await_exit(self, p: Proc) -> None:
        try:  # WNOWAIT: see the exit without reaping it (Popen does that)
            os.waitid(os.P_PID, p.popen.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass  # reaped already
        self._cb.call(lambda: self.exited(p))

    def exited(self, p: Proc) -> None:
        """``p``'s process has exited (its pidfd polled readable, or the waiter thread
        saw it). A helper it forked may still hold the pipe open, so EOF may never
        come: take in what it sent before it died, then fail over."""
        while not p.dead and self._cb.take_in(p):
            pass
        self.crashed(p)

    def crashed(self, p: Proc) -> None:
        """``p``'s process exited, or closed its pipe (it is exiting: a pipe closes
        before the exit status exists, so wait a moment for the status, which names
        the signal, rather than kill it and report our SIGKILL)."""
        if p.dead:
            return
        try:
            p.popen.wait(timeout=EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
        self.replace(p, f"worker process {p.popen.pid} died")

    def replace(self, p: Proc, why: str, special: dict[int, tuple[str, str]] | None = None
                ) -> None:
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
        self._cb.complete(p, logged)
        requeue = []  # (no lock held: set_result runs callbacks, which may submit)
        for seq, entry in list(p.inflight.items()):
            if seq in running:
                status, text = (special or {}).get(seq, (CRASH, f"{why} ({describe_exit(code)})"))
                entry.set_result(failure(entry.msg.task_id, entry.msg.attempt, status, text))
            else:
                requeue.append(entry)
        p.inflight.clear()
        self._cb.forget(p)
        i = self.procs.index(p)
        if self.closing or p.temporary:
            del self.procs[i]
        else:
            self.procs[i] = self.spawn(temporary=False)
        self._cb.requeue(requeue)  # they never ran (or will run again)

    def kill(self, task_id: str) -> None:
        """Kill the worker running ``task_id``; the task ends CANCELLED."""
        for p in list(self.procs):
            for seq, _ in p.stack.entries():
                entry = p.inflight.get(seq)
                if entry is not None and entry.msg.task_id == task_id:
                    log.info("job=%s task=%s cancelled with force=True; killing worker %d",
                             entry.msg.job_id, task_id, p.popen.pid)
                    self.replace(p, f"worker process {p.popen.pid} was killed to cancel "
                                    f"task {task_id}",
                                 {seq: (CANCELLED, "cancelled with force=True")})
                    return

    def check_timeouts(self) -> None:
        """Kill each worker running a task past its ``timeout_s`` (the task: TIMEOUT)."""
        now = time.time()
        for p in list(self.procs):
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
                    self.replace(p, f"worker process {p.popen.pid} was killed", {seq: (
                        TIMEOUT, f"timed out after {limit} s (timeout_s={limit}); worker "
                                 f"process {p.popen.pid} was killed")})
                    break


def describe_exit(code: int | None) -> str:
    """A worker's exit status in words (``Popen.returncode``: negative is a signal)."""
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
