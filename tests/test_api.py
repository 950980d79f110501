"""api.py's exit path: a runtime still up at exit is shut down (tests/faults/
test_driver_death.py runs that in real drivers), but only by the process that owns it."""

from __future__ import annotations

import os

import lambdaflow as lf
from lambdaflow import api


@lf.remote
def square(i):
    return i * i


def test_a_forked_childs_exit_leaves_its_parents_runtime_alone(fresh):
    with lf.init(backend="processes", num_workers=1) as rt:
        root = rt.backend.store.root
        assert lf.get(square.remote(2), timeout=60) == 4
        pid = os.fork()
        if pid == 0:  # what the child's exit (atexit) and a SIGTERM to it would run
            try:
                api._shutdown_at_exit()
                rt.backend._abandon()
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert os.path.isdir(root)
        assert lf.get(square.remote(5), timeout=60) == 25  # workers and store intact
