"""The ``processes`` backend: a pool of worker processes running ``worker.run_task``.

    submit(msg) ─> queue ─> IO thread ─> pipe ─> worker process ─> pipe ─> IO thread
                                                                          └> future done

One IO thread owns every pipe: it assigns queued tasks to workers with room, writes
batches (non-blocking, buffered), reads result batches and completes the futures. A
worker gets up to ``depth`` tasks ahead, adapted to how long tasks take (deep for tiny
tasks, 1 for long ones, so long tasks balance across workers). Values above the inline
limit go through a ``LocalDirStore`` (on /dev/shm when possible), never through pipes.

Each worker writes the sequence number and start time of the task it is running into a
small shared-memory file. If the process dies (os._exit, a signal, the OOM killer) that
task fails with a CRASH result (the scheduler retries it per ``max_retries``), the
worker's other queued tasks are requeued without using an attempt, and a replacement
process starts. A task past its ``timeout_s`` gets its worker killed and a TIMEOUT
result.
"""

from __future__ import annotations

import collections
import logging
import mmap
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import Future

import msgpack

from lambdaflow.errors import BackendError
from lambdaflow.runtime.backends.process_worker import LEN, SHM
from lambdaflow.runtime.store.localdir import LocalDirStore, default_root
from lambdaflow.runtime.task import CRASH, TIMEOUT, TaskMessage, TaskResult, failure

log = logging.getLogger(__name__)
MAX_DEPTH = 64
QUEUED_WORK_S = 0.01  # how much work (by recent task durations) to keep queued per worker


class _Proc:
    """One worker process and the driver's view of it."""

    def __init__(self, index: int, shm_dir: str) -> None:
        self.index = index
        self.shm_path = os.path.join(shm_dir, f"worker-{index}-{uuid.uuid4().hex[:6]}.shm")
        with open(self.shm_path, "wb") as f:
            f.write(SHM.pack(-1, 0.0))
        to_worker_r, self.wfd = os.pipe()
        self.rfd, from_worker_w = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "lambdaflow.runtime.backends.process_worker",
             str(to_worker_r), str(from_worker_w), self.shm_path],
            pass_fds=(to_worker_r, from_worker_w), env=env, close_fds=True,
        )
        os.close(to_worker_r)
        os.close(from_worker_w)
        os.set_blocking(self.wfd, False)
        with open(self.shm_path, "r+b") as f:
            self.shm = mmap.mmap(f.fileno(), SHM.size)
        self.inflight: collections.OrderedDict[int, tuple] = collections.OrderedDict()
        self.outbuf = bytearray()
        self.inbuf = bytearray()
        self.seq = 0
        self.dead = False

    def running(self) -> tuple[int, float]:
        return SHM.unpack_from(self.shm, 0)

    def close(self, kill: bool = False) -> None:
        for fd in (self.wfd, self.rfd):
            try:
                os.close(fd)
            except OSError:
                pass
        if kill and self.popen.poll() is None:
            self.popen.kill()
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        try:
            self.shm.close()
            os.unlink(self.shm_path)
        except (OSError, ValueError):
            pass


class ProcessesBackend:
    name = "processes"
    eager_delete = True

    def __init__(self, num_workers: int | None = None, store_dir: str | None = None) -> None:
        self.num_workers = num_workers or os.cpu_count() or 1
        self._root = store_dir or os.path.join(
            default_root(), f"run-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        self._own_root = store_dir is None
        self.store = LocalDirStore(self._root)
        self._shm_dir = os.path.join(self._root, ".workers")
        os.makedirs(self._shm_dir, exist_ok=True)
        # (message, future, already marked running): requeued tasks are already running
        self._queue: collections.deque[tuple[TaskMessage, Future, bool]] = collections.deque()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._woken = False
        self._closing = False
        self._avg_s = 0.05
        self._started = 0
        self._procs = [self._spawn() for _ in range(self.num_workers)]
        self._thread = threading.Thread(target=self._loop, name="lambdaflow-io", daemon=True)
        self._thread.start()

    def _spawn(self) -> _Proc:
        self._started += 1
        return _Proc(self._started, self._shm_dir)

    # ------------------------------------------------------------------ public
    def submit(self, msg: TaskMessage) -> Future:
        fut: Future = Future()
        if self._closing:
            raise BackendError("the processes backend is shut down")
        with self._lock:
            self._queue.append((msg, fut, False))
            wake = not self._woken and threading.current_thread() is not self._thread
            if wake:
                self._woken = True
        if wake:
            try:
                os.write(self._wake_w, b"x")
            except BlockingIOError:
                pass
        return fut

    def shutdown(self) -> None:
        if self._closing:
            return
        self._closing = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        self._thread.join(timeout=10)
        for p in self._procs:
            p.close(kill=True)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        with self._lock:
            leftover = list(self._queue)
            self._queue.clear()
        for _, fut, running in leftover:
            if running or fut.set_running_or_notify_cancel():
                fut.set_exception(BackendError("the runtime was shut down"))
        if self._own_root:
            shutil.rmtree(self._root, ignore_errors=True)

    # --------------------------------------------------------------- IO thread
    def _loop(self) -> None:
        try:
            while not self._closing:
                self._assign()
                rlist = [self._wake_r] + [p.rfd for p in self._procs]
                wlist = [p.wfd for p in self._procs if p.outbuf]
                timeout = self._next_deadline()
                r, w, _ = select.select(rlist, wlist, [], timeout)
                if self._wake_r in r:
                    # Drain first, then clear the flag: a submit in between sees the flag
                    # still set and skips its write, but _assign at the top of the loop
                    # picks its task up; clearing first could swallow its wake-up byte.
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
                    with self._lock:
                        self._woken = False
                for p in list(self._procs):
                    if p.wfd in w and not p.dead:
                        self._flush(p)
                    if p.rfd in r and not p.dead:
                        self._read(p)
                self._check_timeouts()
        except Exception:  # pragma: no cover - a bug here must not hang get() forever
            log.exception("processes backend IO thread failed")
            self._fail_all(BackendError("the processes backend's IO thread failed; see log"))

    def _depth(self) -> int:
        return max(1, min(MAX_DEPTH, int(QUEUED_WORK_S / max(self._avg_s, 1e-6)) + 1))

    def _assign(self) -> None:
        depth = self._depth()
        with self._lock:
            if not self._queue:
                return
            for p in sorted(self._procs, key=lambda p: len(p.inflight)):
                room = depth - len(p.inflight)
                batch = []
                while room > 0 and self._queue:
                    msg, fut, running = self._queue.popleft()
                    if not running and not fut.set_running_or_notify_cancel():
                        continue  # cancelled while queued: never runs
                    p.seq += 1
                    p.inflight[p.seq] = (msg, fut)
                    batch.append([p.seq, msg.to_list()])
                    room -= 1
                if batch:
                    body = msgpack.packb(batch, use_bin_type=True)
                    p.outbuf += LEN.pack(len(body)) + body
                if not self._queue:
                    break
        for p in list(self._procs):
            if p.outbuf and not p.dead:
                self._flush(p)

    def _flush(self, p: _Proc) -> None:
        try:
            n = os.write(p.wfd, p.outbuf)
            del p.outbuf[:n]
        except BlockingIOError:
            pass
        except OSError:
            self._crashed(p)

    def _read(self, p: _Proc) -> None:
        try:
            data = os.read(p.rfd, 1 << 20)
        except OSError:
            data = b""
        if not data:
            self._crashed(p)
            return
        p.inbuf += data
        while len(p.inbuf) >= LEN.size:
            n = LEN.unpack_from(p.inbuf, 0)[0]
            if len(p.inbuf) < LEN.size + n:
                break
            items = msgpack.unpackb(bytes(p.inbuf[LEN.size:LEN.size + n]), raw=False)
            del p.inbuf[:LEN.size + n]
            for seq, fields in items:
                entry = p.inflight.pop(seq, None)
                if entry is None:
                    continue
                result = TaskResult.from_list(fields)
                dur = result.stats.get("duration_s") or 0.0
                self._avg_s = 0.8 * self._avg_s + 0.2 * dur
                entry[1].set_result(result)

    def _replace(self, p: _Proc, running_status: str, message: str) -> None:
        """``p`` is dead or being killed: fail its running task, requeue the others."""
        if p.dead:
            return
        p.dead = True
        seq, _ = p.running()
        i = self._procs.index(p)
        p.close(kill=True)
        code = p.popen.returncode
        requeue = []
        for s, (msg, fut) in p.inflight.items():
            if s == seq:
                text = message if running_status == TIMEOUT else f"{message} ({_describe_exit(code)})"
                fut.set_result(failure(msg.task_id, msg.attempt, running_status, text))
            else:
                requeue.append((msg, fut))
        p.inflight.clear()
        if not self._closing:
            self._procs[i] = self._spawn()
        with self._lock:
            for msg, fut in reversed(requeue):  # they never ran (or will run again)
                self._queue.appendleft((msg, fut, True))

    def _crashed(self, p: _Proc) -> None:
        p.popen.poll()
        self._replace(p, CRASH, f"worker process {p.popen.pid} died")

    def _next_deadline(self) -> float | None:
        soonest = None
        for p in self._procs:
            if any(m.options.get("timeout_s") for m, _ in p.inflight.values()):
                soonest = 0.05
        return soonest

    def _check_timeouts(self) -> None:
        now = time.time()
        for p in list(self._procs):
            if not p.inflight:
                continue
            seq, started = p.running()
            entry = p.inflight.get(seq)
            if entry is None:
                continue
            limit = entry[0].options.get("timeout_s")
            if limit and now - started > limit:
                log.warning("job=%s task=%s exceeded timeout_s=%s; killing worker %d",
                            entry[0].job_id, entry[0].task_id, limit, p.popen.pid)
                self._replace(p, TIMEOUT, f"timed out after {limit} s (timeout_s={limit}); "
                                          f"worker process {p.popen.pid} was killed")

    def _fail_all(self, exc: BaseException) -> None:
        for p in self._procs:
            for _, fut in p.inflight.values():
                if not fut.done():
                    fut.set_exception(exc)
            p.inflight.clear()
        with self._lock:
            queued, self._queue = list(self._queue), collections.deque()
        for _, fut, running in queued:
            if running or fut.set_running_or_notify_cancel():
                fut.set_exception(exc)


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
