"""The worker process of the ``processes`` backend.

    python -m lambdaflow.runtime.backends.process_worker RFD WFD RUN_PATH LOG_PATH PARENT_PID CFD

First it ties its life to the driver's (``process_life``): it dies with the driver
(PDEATHSIG, else a thread watching ``getppid()``), keeps its pipes out of the processes
its tasks start, and ignores Ctrl-C (the driver decides).

Two pipes come from the driver (process_wire.py): RFD carries only TASKS, CFD everything
else (the answers to this process's requests, REVOKE). Threads::

    main     runs ``pending`` in order with ``worker.run_task``. Out of tasks, it reads
             RFD itself (``_read_tasks``): a task sent to an idle worker wakes one
             thread, the one that runs it. Each result is packed into the result log,
             then sent in batches (at most FLUSH_AFTER_S late, at once when nothing is
             left to run, and before any request this process sends, so the driver
             always knows what finished first). EOF on RFD: shut down
    reader   reads CFD: REPLY / BLOCKED / INLINE go to the inbox of the request they
             answer (``PipeClient``); INLINE tasks nobody waits for any more, and on
             REVOKE the queued tasks (``pending`` and what waits unread in RFD), go back
             to the driver (YIELD); EOF (the driver closed the pipes, or died): shut
             down, at once if a task is running (no one would read its result)
    flusher  sends a batch that has waited FLUSH_AFTER_S (a long or blocked next task
             never holds back a finished one). It is armed only when a task starts
             while results wait in the log (``_arm``): a worker that sends each result
             at once (a chain of dependent tasks) never wakes it
    refs     the pipe client's borrow / release messages

RFD is read by one thread at a time (``_rlock``): the idle main thread, blocking; or,
while a task runs, whoever gives the queue back or looks for a task's producers in it,
without blocking (``_drain``).

Before running task ``seq`` the main thread pushes (seq, start) on the running stack, and
pops it once the result is logged; a task waiting in ``get`` may run the tasks it waits
for inline, on top of it. ``exit()`` in a task ends this process as is (its stack entry
stays): the driver reports the task as crashed, and finds every result finished before
in the log (process_wire.py).
"""

from __future__ import annotations

import collections
import os
import select
import sys
import threading
import time

import msgpack

from lambdaflow.runtime.backends import process_life
from lambdaflow.runtime.backends import process_wire as wire
from lambdaflow.runtime.backends.process_client import PipeClient
from lambdaflow.runtime.context import set_process_client
from lambdaflow.runtime.store import Store
from lambdaflow.runtime.task import TaskMessage
from lambdaflow.runtime.worker import run_task, task_store

FLUSH_AFTER_S = 0.002


class Worker:
    def __init__(self, rfd: int, wfd: int, run_path: str, log_path: str, cfd: int) -> None:
        self.rfd, self.wfd, self.cfd = rfd, wfd, cfd
        self.stack = wire.RunningStack(run_path)
        self.log = wire.ResultLog(log_path)
        self._write_lock = threading.Lock()
        self._flush_cond = threading.Condition(self._write_lock)
        self._first_logged = 0.0
        self._armed = False  # the flusher is to send the logged results in time
        self._packer = msgpack.Packer(use_bin_type=True)  # the main thread's
        self._store: tuple[str, bytes | None, Store] | None = None  # ``_store_for``
        self._cond = threading.Lock()  # guards pending, closed
        #: held by the one thread reading RFD (the tasks pipe) and its buffer
        self._rlock = threading.Lock()
        self._rbuf = bytearray()
        self._rchunk = bytearray(wire.READ_SIZE)
        self._rview = memoryview(self._rchunk)
        self._rpoll = select.poll()  # (under _rlock) is RFD readable; no FD_SETSIZE limit
        self._rpoll.register(rfd, select.POLLIN)
        #: how often the main thread read RFD itself, and found it empty (it slept):
        #: per task of a chain one wake-up, its own (tests, process_wakeups.py)
        self.reads = 0
        self.pending: collections.deque[list] = collections.deque()
        self.closed = False
        self.running = 0  # tasks on this process's stack (inline ones included)
        self._main = threading.current_thread()
        self.client = PipeClient(self)
        set_process_client(self.client)
        threading.Thread(target=self._read_loop, name="lambdaflow-reader", daemon=True).start()
        threading.Thread(target=self._flush_loop, name="lambdaflow-flusher", daemon=True).start()

    def is_main_thread(self) -> bool:
        return threading.current_thread() is self._main

    # ------------------------------------------------------------------ running
    def main(self) -> None:
        while True:
            with self._cond:
                if self.closed:
                    return  # the driver closed the pipes: shut down
                item = self.pending.popleft() if self.pending else None
            if item is None:
                self.flush()
                self.client.task_end()
                if not self._read_tasks():
                    return
                continue
            if self.log.count:  # results wait while this task runs: send them in time
                self._arm()
            self.run(item[0], item[1])

    def _read_tasks(self) -> bool:
        """(Main thread, out of tasks) wait for the next TASKS frame on RFD and queue
        what came; False at EOF (the driver closed the pipe, or died)."""
        with self._rlock:
            while True:
                n = os.readv(self.rfd, (self._rchunk,))  # as much as is there
                if not n:
                    with self._cond:
                        self.closed = True
                    return False
                self.reads += 1
                if self._queue_read(n):
                    return True

    def _queue_read(self, n: int) -> bool:
        """(Holding ``_rlock``) ``n`` bytes were read into the chunk: queue the TASKS of
        the complete frames; False if no frame is complete yet."""
        self._rbuf += self._rview[:n]
        items = [item for fields in wire.split_frames(self._rbuf) for item in fields[1]]
        if not items:
            return False
        with self._cond:
            self.pending.extend(items)
        return True

    def _drain(self, wait: bool) -> None:
        """Queue the TASKS waiting unread in RFD, without blocking on the pipe. ``wait``:
        for ``_rlock`` (the main thread, in a task: whoever holds it does not block);
        else skip the pipe if another thread reads it (the main thread, idle: what
        comes is for it to run)."""
        if not self._rlock.acquire(blocking=wait):
            return
        try:
            while self._rpoll.poll(0):
                n = os.readv(self.rfd, (self._rchunk,))
                if not n:
                    return  # EOF: the reader thread sees it on CFD too
                self._queue_read(n)
        finally:
            self._rlock.release()

    def run(self, seq: int, fields: list) -> None:
        msg = TaskMessage.from_list(fields)
        self.stack.push(seq, time.time())
        self.running += 1
        store = self._store_for(msg)
        self.client.start_task(msg, store)
        result = run_task(msg, store, client=self.client)  # SystemExit: this process ends
        result.stats["backend"] = "processes"
        self.client.sync()
        self._log(self._packer.pack([seq, result.to_list()]))
        self.stack.pop()
        self.running -= 1
        self.client.ran(result)
        self.client.task_end()
        if self.running:  # run inline: the task below goes on, this result must not wait
            self._arm()

    def _store_for(self, msg: TaskMessage) -> Store:
        """The task's store (``task_store``: checked under its job key), the previous
        task's when it names the same store and key (its keyed MAC state is made once)."""
        last = self._store
        if last is not None and last[0] == msg.store_uri and last[1] == msg.job_key:
            return last[2]
        store = task_store(msg)
        self._store = (msg.store_uri, msg.job_key, store)
        return store

    def run_inline(self, items: list) -> None:
        """Run tasks a blocked request waits for, on this (main) thread."""
        for seq, fields in items:
            self.run(seq, fields)

    def run_own_producers(self, task_ids: set[str]) -> None:
        """Before waiting: run the queued tasks of this process that make what we
        are about to wait for (a getter never waits for a task queued behind it)."""
        self._drain(wait=True)
        with self._cond:
            mine = [item for item in self.pending if item[1][2] in task_ids]
            for item in mine:
                self.pending.remove(item)
        for seq, fields in mine:
            self.run(seq, fields)

    def give_back_queue(self, answer: bool = False) -> None:
        """Hand the tasks queued here back to the driver, for other workers: the main
        thread's wait is real, or the driver asked (REVOKE: ours is a long task; an
        empty YIELD still ``answer``s it)."""
        self._drain(wait=self.is_main_thread())
        with self._cond:
            items, self.pending = list(self.pending), collections.deque()
        if items or answer:
            self.send(wire.frame(wire.YIELD, [seq for seq, _ in items]))

    # ------------------------------------------------------------------ sending
    def _log(self, entry: bytes) -> None:
        with self._write_lock:
            if not self.log.fits(len(entry)):
                self._flush_locked()
            if not self.log.fits(len(entry)):  # too big for the log: send it alone
                body = wire.results_head(1) + entry
                wire.write_all(self.wfd, wire.LEN.pack(len(body)) + body)
                return
            if not self.log.count:
                self._first_logged = time.monotonic()
            self.log.append(entry)

    def _arm(self) -> None:
        """The main thread goes on (another task) while results wait in the log: the
        flusher sends them at most FLUSH_AFTER_S after the first was logged."""
        with self._write_lock:
            if self.log.count and not self._armed:
                self._armed = True
                self._flush_cond.notify()

    def flush(self) -> None:
        with self._write_lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self.log.count:
            wire.write_all(self.wfd, self.log.results_frame())
            self.log.clear()
        self._armed = False

    def send(self, data: bytes) -> None:
        """Send one frame, after the results logged so far."""
        with self._write_lock:
            self._flush_locked()
            wire.write_all(self.wfd, data)

    def _flush_loop(self) -> None:
        with self._write_lock:
            while True:
                while not self._armed:
                    self._flush_cond.wait()
                left = self._first_logged + FLUSH_AFTER_S - time.monotonic()
                if left > 0:
                    self._flush_cond.wait(left)
                    continue
                try:
                    self._flush_locked()
                except OSError:
                    return

    # ------------------------------------------------------------------ reading
    def _take(self, fields: list) -> None:
        kind = fields[0]
        if kind == wire.REVOKE:
            self.give_back_queue(answer=True)
        elif kind == wire.INLINE:
            if not self.client.deliver(fields[1], kind, fields[2]):
                # Nobody waits for them any more: the driver deals them out again (the
                # main thread may be asleep on RFD, where nothing would wake it).
                self.send(wire.frame(wire.YIELD, [seq for seq, _ in fields[2]]))
        else:  # REPLY, BLOCKED
            self.client.deliver(fields[1], kind, fields[2] if len(fields) > 2 else None)

    def _read_loop(self) -> None:
        buf, chunk = bytearray(), bytearray(wire.READ_SIZE)
        view = memoryview(chunk)
        try:
            while True:
                n = os.readv(self.cfd, (chunk,))  # as much as is there: one call a frame
                if not n:  # or fewer
                    return
                buf += view[:n]
                for fields in wire.split_frames(buf):
                    self._take(fields)
        except OSError:
            pass
        finally:
            with self._cond:
                self.closed = True
                self.pending.clear()
                if self.running:  # the driver is gone or killing us: stop the task too
                    os._exit(0)
                # else the main thread, idle, reads EOF on RFD (the driver closes both)


def main(rfd: int, wfd: int, run_path: str, log_path: str, parent_pid: int,
         cfd: int) -> None:
    process_life.die_with_parent(parent_pid)
    process_life.private_pipes(rfd, wfd, cfd)
    process_life.quiet_interrupts()
    Worker(rfd, wfd, run_path, log_path, cfd).main()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]),
         int(sys.argv[6]))
