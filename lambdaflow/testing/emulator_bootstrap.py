"""Entry point of one emulated execution environment: ``python -m
lambdaflow.testing.emulator_bootstrap <handler>``.

It is ``python -m awslambdaric <handler>`` with two process settings applied first, in
the child itself rather than through ``subprocess``'s ``preexec_fn`` (which is unsafe in
the emulator's multi-threaded parent and forces the slow fork path):

- ``PR_SET_PDEATHSIG(SIGKILL)`` (Linux): the environment dies with the emulator's event
  loop thread, even if the emulator is killed with SIGKILL and never runs its cleanup;
- ``RLIMIT_AS`` from ``_LAMBDAFLOW_EMULATOR_RLIMIT_AS`` (bytes) when the emulator's
  ``memory_limit="rlimit"`` mode asks for it.

- from ``_LAMBDAFLOW_EMULATOR_ISOLATE`` (JSON), a private mount namespace as Lambda's
  execution environment has one: ``/tmp`` is a fresh tmpfs of the function's ephemeral
  storage size (writes past it fail with ENOSPC, as on Lambda: "512 MB to 10,240 MB of
  /tmp", https://docs.aws.amazon.com/lambda/latest/dg/configuration-ephemeral-storage.html),
  and the code directory (LAMBDA_TASK_ROOT) is bind-mounted read-only (EROFS on
  write; on Lambda "/var/task" is read-only). ``shared`` paths under /tmp stay visible
  (tests coordinate through files there), and so does whatever this interpreter runs
  from under /tmp (a virtualenv or a checkout there, as on a CI machine). Root uses ``unshare(CLONE_NEWNS)``; another
  user adds ``CLONE_NEWUSER`` mapping itself to itself. If the kernel refuses, the
  environment runs without isolation and says so on stderr.

Then it hands over to awslambdaric's own ``main``: the runtime loop, the Runtime API
client and the error reporting are awslambdaric's, unchanged.
"""

from __future__ import annotations

import json
import os
import sys

PARENT_PID_VAR = "_LAMBDAFLOW_EMULATOR_PARENT_PID"
RLIMIT_AS_VAR = "_LAMBDAFLOW_EMULATOR_RLIMIT_AS"
ISOLATE_VAR = "_LAMBDAFLOW_EMULATOR_ISOLATE"

_CLONE_NEWNS, _CLONE_NEWUSER = 0x00020000, 0x10000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_REMOUNT = 1, 2, 4, 32
_MS_BIND, _MS_REC, _MS_PRIVATE = 4096, 16384, 1 << 18


def die_with_parent(signum: int | None = None) -> None:
    """``process_life.die_with_parent`` for a process whose parent is named in
    ``PARENT_PID_VAR`` (an environment; the moto and emulator server processes): it gets
    ``signum`` (SIGKILL) when the thread that started it dies, and exits at once if the
    parent is already gone."""
    import signal

    from lambdaflow.runtime.backends import process_life

    parent = os.environ.pop(PARENT_PID_VAR, "")
    process_life.die_with_parent(int(parent) if parent else os.getppid(),
                                 int(signum or signal.SIGKILL))


def _apply_rlimit() -> None:
    limit = os.environ.pop(RLIMIT_AS_VAR, "")
    if limit:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))


def _own_paths() -> list[str]:
    """What this interpreter runs from that lies under /tmp (a virtualenv, the source of
    an editable install, PYTHONPATH entries): it stays visible through the fresh /tmp,
    as a function's own code and packages are on Lambda."""
    import lambdaflow

    candidates = [sys.prefix, sys.exec_prefix, *sys.path, os.getcwd(),
                  os.path.dirname(os.path.dirname(os.path.abspath(lambdaflow.__file__)))]
    out = []
    for path in candidates:
        real = os.path.realpath(path) if path else ""
        if real.startswith("/tmp/") and os.path.isdir(real):
            out.append(real)
    return out


def _outermost(paths: list[str]) -> list[str]:
    """``paths`` without duplicates and without those inside another one."""
    keep: list[str] = []
    for path in sorted(set(paths), key=len):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in keep):
            keep.append(path)
    return keep


def _isolate() -> None:
    spec = os.environ.pop(ISOLATE_VAR, "")
    if not spec:
        return
    cfg = json.loads(spec)
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str = "") -> None:
        rc = libc.mount(
            src.encode() if src else None, dst.encode(),
            fstype.encode() if fstype else None, flags, data.encode() if data else None,
        )  # fmt: skip
        if rc != 0:
            raise OSError(ctypes.get_errno(), f"mount {src} -> {dst}: {os.strerror(ctypes.get_errno())}")

    uid, gid = os.getuid(), os.getgid()
    try:
        if libc.unshare(_CLONE_NEWNS if uid == 0 else _CLONE_NEWNS | _CLONE_NEWUSER) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        if uid != 0:
            for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                               ("gid_map", f"{gid} {gid} 1")):  # fmt: skip
                with open(f"/proc/self/{name}", "w") as fh:
                    fh.write(text)
        mount(None, "/", None, _MS_REC | _MS_PRIVATE)
        shared = _outermost([p for p in [*cfg.get("shared", []), *_own_paths()]
                             if os.path.isdir(p)])
        fds = [os.open(p, os.O_PATH | os.O_DIRECTORY) for p in shared]
        mount("tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV,
              f"size={int(cfg['tmp_mb'])}m,mode=1777")  # fmt: skip
        for path, fd in zip(shared, fds):
            os.makedirs(path, exist_ok=True)
            mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
            os.close(fd)
        for path in cfg.get("readonly", []):
            mount(path, path, None, _MS_BIND | _MS_REC)
            mount(None, path, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY)
        os.chdir(os.getcwd())  # see the read-only view of the task root
    except OSError as exc:
        print(
            f"lambdaflow emulator: no private /tmp or read-only code directory for this "
            f"environment ({exc}); it runs without them",
            file=sys.stderr,
            flush=True,
        )


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit(
            "usage: python -m lambdaflow.testing.emulator_bootstrap MODULE.FUNCTION"
        )
    die_with_parent()
    _apply_rlimit()
    _isolate()
    from awslambdaric.__main__ import main as awslambdaric_main

    awslambdaric_main(["awslambdaric", argv[1]])


if __name__ == "__main__":
    main(sys.argv)
