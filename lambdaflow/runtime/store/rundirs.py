"""Run directories of the processes backend, and the sweep of those whose driver is gone.

    <root>/                      the per-user 0700 root (``localdir.default_root``)
        run-<pid>-<hex>/         one runtime's store and worker files, 0700 (``claim``)
            .owner               who made it: {"pid", "start", "boot", "pidns"}
            .workers/ <job>/ ...

A driver that is SIGKILLed (or loses power, or is killed by the OOM killer) never
removes its run directory; on /dev/shm that is memory, tens of MB a run. So each new
runtime ``sweep``s the root: a ``run-*`` directory is removed when its owner process is
certainly gone. A pid alone is not an identity (pids are reused), so the owner record
holds the process's start time (``/proc/<pid>/stat`` field 22, clock ticks after boot),
the boot id and the pid namespace. An owner is gone when the boot differs (a /tmp root
survived a reboot), when no process has its pid (or only a zombie), or when the process
with its pid started at another time. A record from another pid namespace (a container
sharing the root) is never judged: that run is kept. A directory without a record
(being made at this moment, or made by an older lambdaflow) is judged by the pid in its
name alone, and kept while that pid lives.

The sweep looks only at direct entries of the checked root, never follows a symlink (an
entry must be a real directory of this user, ``lstat``; the record is opened with
O_NOFOLLOW under the directory's own descriptor; ``shutil.rmtree`` removes a tree
without following the links inside it) and never raises: a run it cannot judge is kept.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import uuid
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "run-"
OWNER_FILE = ".owner"
PRIVATE = 0o700


def identity(pid: int) -> dict[str, Any] | None:
    """What names process ``pid`` for good: its pid, start time, boot id and pid
    namespace (None where unknown: not Linux). None if no live process has ``pid``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
    except FileNotFoundError:
        return None
    except OSError:  # no /proc (not Linux): the pid is all there is
        return {"pid": pid, "start": None, "boot": None, "pidns": None} if _exists(pid) else None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": field 3 onwards
    if fields[0] in ("Z", "X"):  # a zombie has exited; only its exit status is left
        return None
    return {"pid": pid, "start": int(fields[19]), "boot": _boot_id(), "pidns": _pidns(pid)}


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return None


def _pidns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def claim(root: str) -> str:
    """Make this process's run directory under ``root`` (0700) with its owner record."""
    path = os.path.join(root, f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.mkdir(path, PRIVATE)
    me = identity(os.getpid()) or {"pid": os.getpid()}
    tmp = os.path.join(path, f"{OWNER_FILE}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(me, fh)
    os.replace(tmp, os.path.join(path, OWNER_FILE))
    return path


def remove(path: str) -> None:
    """Remove this process's run directory ``path`` for good, even while another thread
    of it still creates files there (a signal handler runs this while the IO thread may
    be starting a replacement worker): the directory is first renamed, atomically, so
    nothing new appears in the tree being removed. The new name keeps the ``run-<pid>-``
    prefix and the owner record: if this process dies before the end, a sweep finishes."""
    gone = f"{path}-gone-{uuid.uuid4().hex[:6]}"
    try:
        os.rename(path, gone)
    except FileNotFoundError:
        return
    except OSError:
        gone = path  # (a rename refused by the file system) remove it in place
    shutil.rmtree(gone, ignore_errors=True)


def sweep(root: str) -> list[str]:
    """Remove the run directories under ``root`` whose owner is gone; returns them."""
    removed: list[str] = []
    try:
        names = os.listdir(root)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(PREFIX):
            continue
        path = os.path.join(root, name)
        try:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                continue  # a symlink, a file, or not ours: never touched
            if not _owner_gone(path, name):
                continue
            shutil.rmtree(path)
        except FileNotFoundError:
            continue  # another sweeper was first
        except OSError as exc:
            log.warning("could not remove the stale run directory %s: %s", path, exc)
            continue
        removed.append(path)
    if removed:
        log.info("removed %d run directories left by drivers that are gone: %s",
                 len(removed), ", ".join(removed))
    return removed


def _owner_gone(path: str, name: str) -> bool:
    record = _read_owner(path)
    if record is None:  # being made right now, or by an older lambdaflow: the name's pid
        try:
            pid = int(name[len(PREFIX):].split("-", 1)[0])
        except ValueError:
            return False
        return identity(pid) is None
    try:
        pid = int(record["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    boot = _boot_id()
    if record.get("boot") and boot and record["boot"] != boot:
        return True  # made before this machine last booted
    if record.get("pidns") and _pidns(os.getpid()) not in (None, record["pidns"]):
        return False  # another pid namespace: its pids mean nothing here
    now = identity(pid)
    if now is None:
        return True
    return record.get("start") is not None and now["start"] != record["start"]


def _read_owner(path: str) -> dict | None:
    try:
        dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fd = os.open(OWNER_FILE, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
    except OSError:
        return None
    finally:
        os.close(dfd)
    try:
        with os.fdopen(fd, "rb") as fh:
            record = json.loads(fh.read(4096))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
