"""A driver that a fault test kills: ``python -m tests.faults.driver MODE READY [nopdeathsig]``.

It starts the ``processes`` backend with 2 workers, keeps both busy (each task writes
``READY/busy-<pid>-*`` first) and then, by MODE:

    wait   blocks in ``get`` (the test kills it: SIGKILL, SIGTERM, Ctrl-C)
    exit   returns from the script without ``shutdown()`` while the tasks run, once a
           line arrives on stdin (after the test has looked at its processes)

``nopdeathsig``: the busy tasks clear their worker's PDEATHSIG first.
"""

from __future__ import annotations

import glob
import os
import sys
import time

import lambdaflow as lf
from tests.faults.tasks import busy


def main(mode: str, ready: str, pdeathsig: bool) -> None:
    lf.init(backend="processes", num_workers=2)  # no `with`, no shutdown()
    refs = [busy.remote(ready, 300, pdeathsig) for _ in range(2)]
    deadline = time.monotonic() + 60
    while len(glob.glob(os.path.join(ready, "busy-*"))) < 2:
        if time.monotonic() > deadline:
            sys.exit("the busy tasks never started")
        time.sleep(0.02)
    print("ready", flush=True)
    if mode == "wait":
        lf.get(refs)
    else:
        sys.stdin.readline()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:] != ["nopdeathsig"])
