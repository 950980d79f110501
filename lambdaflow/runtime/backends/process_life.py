"""How the processes backend's workers live and die with their driver.

Worker side (``process_worker`` calls these first):

    die_with_parent(pid)   PR_SET_PDEATHSIG(SIGKILL) (Linux, prctl through ctypes): the
                           kernel kills the worker when the thread that forked it dies.
                           The driver forks every worker from its IO thread, which lives
                           as long as the runtime. If the driver died before prctl ran,
                           ``getppid()`` is no longer ``pid``: exit at once. Without
                           prctl (macOS), a thread polls ``getppid()``. (A third net: the
                           worker's reader exits the process on EOF of the driver's pipe.)
    private_pipes(fds)     the pipe to the driver is close-on-exec (no exec'd grandchild
                           inherits it) and, in a child forked by a task, is replaced by
                           /dev/null (``os.register_at_fork``): a helper a task leaves
                           behind holds no end of it.
    quiet_interrupts()     Ctrl-C in a terminal reaches the whole process group; the
                           worker ignores SIGINT (the driver decides, and kills it when
                           it exits). A no-op handler, not SIG_IGN: exec'd children of a
                           task get the default action back.

Driver side:

    exit_fd(pid)           a pidfd (``os.pidfd_open``, Linux 5.3) that polls readable when
                           the process exits: death is seen from the process itself, not
                           from the pipe closing (a grandchild may hold the pipe open).
                           None where there is none: the backend waits in a thread.
    on_fatal_signal(k, fn) run ``fn`` (lock-free, quick: kill workers, remove the run
                           directory) when SIGTERM or SIGHUP would kill this process,
                           then die of the signal as before. Installed only where the
                           action is the default and only from the main thread; the
                           user's own handlers are left alone. ``atexit`` (api.py) covers
                           a normal exit, Ctrl-C included.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1
PARENT_POLL_S = 0.5
FATAL_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


# ------------------------------------------------------------------- worker side
def die_with_parent(parent_pid: int, signum: int = signal.SIGKILL) -> bool:
    """Make this process die with its parent ``parent_pid`` (of ``signum``: a server
    that should clean up asks for SIGTERM); True if the kernel does it (PDEATHSIG),
    False if a polling thread does (it exits the process)."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:  # it died before prctl: nobody would kill us later
        os._exit(1)
    if not armed:
        threading.Thread(target=_poll_parent, args=(parent_pid,), daemon=True,
                         name="lambdaflow-parent-watch").start()
    return armed


def _poll_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def private_pipes(*fds: int) -> None:
    """Keep ``fds`` (the pipe to the driver) out of every child of this process."""
    for fd in fds:
        os.set_inheritable(fd, False)

    def in_child() -> None:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in fds:  # the numbers stay taken, so nothing else reuses them
            os.dup2(null, fd, inheritable=False)
        os.close(null)

    os.register_at_fork(after_in_child=in_child)


def quiet_interrupts() -> None:
    signal.signal(signal.SIGINT, _ignore)


def _ignore(signum: int, frame: Any) -> None:
    pass


# ------------------------------------------------------------------- driver side
def exit_fd(pid: int) -> int | None:
    """A file descriptor that becomes readable when process ``pid`` exits, or None."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:  # an old kernel (ENOSYS) or a sandbox that forbids it
        return None


_fatal: dict[object, Callable[[], None]] = {}
_fatal_lock = threading.Lock()
_installed: set[int] = set()


def on_fatal_signal(key: object, fn: Callable[[], None] | None) -> None:
    """Register (``fn``) or drop (None) the emergency cleanup ``key``."""
    with _fatal_lock:
        if fn is not None:
            _fatal[key] = fn
        else:
            _fatal.pop(key, None)
        if threading.current_thread() is not threading.main_thread():
            return  # signal.signal works only there; PDEATHSIG and the sweep remain
        for sig in FATAL_SIGNALS:
            current = signal.getsignal(sig)
            if _fatal and current == signal.SIG_DFL:
                signal.signal(sig, _on_fatal)
                _installed.add(sig)
            elif not _fatal and sig in _installed and current == _on_fatal:
                signal.signal(sig, signal.SIG_DFL)
                _installed.discard(sig)


def _on_fatal(signum: int, frame: Any) -> None:
    for fn in list(_fatal.values()):  # no lock: the interrupted code may hold it
        try:
            fn()
        except Exception:  # noqa: BLE001 - dying anyway; clean up what can be
            pass
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
