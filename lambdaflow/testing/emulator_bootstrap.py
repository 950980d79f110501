"""Entry point of one emulated execution environment: ``python -m
lambdaflow.testing.emulator_bootstrap <handler>``.

It is ``python -m awslambdaric <handler>`` with two process settings applied first, in
the child itself rather than through ``subprocess``'s ``preexec_fn`` (which is unsafe in
the emulator's multi-threaded parent and forces the slow fork path):

- ``PR_SET_PDEATHSIG(SIGKILL)`` (Linux): the environment dies with the emulator's event
  loop thread, even if the emulator is killed with SIGKILL and never runs its cleanup;
- ``RLIMIT_AS`` from ``_LAMBDAFLOW_EMULATOR_RLIMIT_AS`` (bytes) when the emulator's
  ``memory_limit="rlimit"`` mode asks for it.

Then it hands over to awslambdaric's own ``main``: the runtime loop, the Runtime API
client and the error reporting are awslambdaric's, unchanged.
"""

from __future__ import annotations

import os
import sys

PARENT_PID_VAR = "_LAMBDAFLOW_EMULATOR_PARENT_PID"
RLIMIT_AS_VAR = "_LAMBDAFLOW_EMULATOR_RLIMIT_AS"


def _die_with_parent() -> None:
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: rely on the emulator's stop()/atexit
        return
    parent = os.environ.pop(PARENT_PID_VAR, "")
    if parent and os.getppid() != int(parent):  # the parent died before prctl
        os._exit(1)


def _apply_rlimit() -> None:
    limit = os.environ.pop(RLIMIT_AS_VAR, "")
    if limit:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit(
            "usage: python -m lambdaflow.testing.emulator_bootstrap MODULE.FUNCTION"
        )
    _die_with_parent()
    _apply_rlimit()
    from awslambdaric.__main__ import main as awslambdaric_main

    awslambdaric_main(["awslambdaric", argv[1]])


if __name__ == "__main__":
    main(sys.argv)
