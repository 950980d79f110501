"""process_life: each mechanism checked on real processes (a parent killed with
SIGKILL, a real fork, a real exit, a real SIGTERM), not on mocks."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from lambdaflow.runtime.backends import process_life

LIMIT_S = 30


def _python(code: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], **kw)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_child_dies_with_the_thread_that_forked_it():
    """The parent forks the child from a thread, as the IO thread does; SIGKILL of the
    parent (no cleanup runs) takes the child with it."""
    parent = _python("""
        import os, subprocess, sys, threading, time
        code = ("import os, sys, time; from lambdaflow.runtime.backends import process_life;"
                "process_life.die_with_parent(int(sys.argv[1])); print('armed', flush=True);"
                "time.sleep(120)")
        def spawn():
            child = subprocess.Popen([sys.executable, "-c", code, str(os.getpid())],
                                     stdout=subprocess.PIPE, text=True)
            assert child.stdout.readline() == "armed\\n"
            print(child.pid, flush=True)
            time.sleep(120)
        threading.Thread(target=spawn).start()
    """, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert not _gone(child)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + LIMIT_S
    while not _gone(child):
        assert time.monotonic() < deadline, "the child outlived its parent"
        time.sleep(0.02)


def test_a_child_whose_parent_is_already_gone_exits_at_once():
    child = _python("""
        from lambdaflow.runtime.backends import process_life
        process_life.die_with_parent(1)  # not our parent: as if it had died already
        print("still here")
    """, stdout=subprocess.PIPE, text=True)
    out, _ = child.communicate(timeout=LIMIT_S)
    assert child.returncode == 1 and out == ""


def test_the_pipe_is_kept_from_forked_and_execd_children():
    r, w = os.pipe()
    os.set_inheritable(w, True)  # as pass_fds leaves it in the worker
    proc = _python(f"""
        import os, subprocess, sys
        from lambdaflow.runtime.backends import process_life
        process_life.private_pipes({w})
        pid = os.fork()
        if pid == 0:
            os._exit(0 if os.readlink("/proc/self/fd/{w}") == os.devnull else 3)
        _, status = os.waitpid(pid, 0)
        execd = subprocess.run([sys.executable, "-c", "import os; os.fstat({w})"],
                               close_fds=False, capture_output=True)
        print(os.waitstatus_to_exitcode(status), execd.returncode != 0, flush=True)
    """, pass_fds=(w,), stdout=subprocess.PIPE, text=True)
    os.close(w)
    out, _ = proc.communicate(timeout=LIMIT_S)
    os.close(r)
    assert out.split() == ["0", "True"]  # forked: /dev/null in its place; exec'd: absent


def test_exit_fd_polls_readable_when_the_process_exits():
    child = _python("import sys; sys.stdin.read()", stdin=subprocess.PIPE)
    fd = process_life.exit_fd(child.pid)
    if fd is None:
        pytest.skip("no pidfd on this system (the backend waits in a thread)")
    try:
        assert select.select([fd], [], [], 0.2)[0] == []  # alive
        child.stdin.close()
        assert select.select([fd], [], [], LIMIT_S)[0] == [fd]
        assert child.wait(timeout=LIMIT_S) == 0
    finally:
        os.close(fd)


@pytest.mark.parametrize("user_handler", [False, True])
def test_a_fatal_signal_runs_the_cleanup_then_kills_as_before(tmp_path, user_handler):
    mark = tmp_path / "cleaned"
    child = _python(f"""
        import os, signal, sys, time
        from lambdaflow.runtime.backends import process_life
        if {user_handler}:
            signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))
        process_life.on_fatal_signal("k", lambda: open({str(mark)!r}, "w").close())
        print("ready", flush=True)
        time.sleep(60)
    """, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "ready\n"
    child.send_signal(signal.SIGTERM)
    code = child.wait(timeout=LIMIT_S)
    if user_handler:  # theirs is left alone (their exit then runs atexit)
        assert code == 7 and not mark.exists()
    else:
        assert code == -signal.SIGTERM and mark.exists()


def test_dropping_the_last_cleanup_restores_the_default_action():
    child = _python("""
        import signal
        from lambdaflow.runtime.backends import process_life
        process_life.on_fatal_signal("k", lambda: None)
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        process_life.on_fatal_signal("k", None)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
    """)
    assert child.wait(timeout=LIMIT_S) == 0
