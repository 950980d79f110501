"""Run directories and the sweep: a run is removed only when its owner is certainly
gone, judged against the kernel's own view of processes (/proc, real child processes
that are alive or have exited), never by following a symlink."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lambdaflow.runtime.store import rundirs


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "root"
    path.mkdir(mode=0o700)
    return str(path)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # exited and reaped: no process has this pid now
    return child.pid


def _run(root: str, name: str, owner: dict | None) -> str:
    path = os.path.join(root, name)
    os.mkdir(path, 0o700)
    with open(os.path.join(path, "payload"), "wb") as fh:
        fh.write(b"x" * 1000)
    if owner is not None:
        with open(os.path.join(path, rundirs.OWNER_FILE), "w") as fh:
            json.dump(owner, fh)
    return path


def _stat_start(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[19])


def test_identity_is_the_kernels_start_time():
    me = rundirs.identity(os.getpid())
    assert me is not None and me["pid"] == os.getpid()
    assert me["start"] == _stat_start(os.getpid())
    assert rundirs.identity(_dead_pid()) is None


def test_a_zombie_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    while True:  # exited but not reaped yet
        with open(f"/proc/{child.pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
    assert rundirs.identity(child.pid) is None
    child.wait()


def test_claim_records_this_process(root):
    path = rundirs.claim(root)
    assert os.path.basename(path).startswith(f"run-{os.getpid()}-")
    assert os.stat(path).st_mode & 0o777 == 0o700
    with open(os.path.join(path, rundirs.OWNER_FILE)) as fh:
        assert json.load(fh) == rundirs.identity(os.getpid())
    assert rundirs.sweep(root) == [] and os.path.isdir(path)


def test_sweep_removes_only_runs_whose_owner_is_gone(root):
    me = rundirs.identity(os.getpid())
    assert me is not None
    dead = _dead_pid()
    live = _run(root, f"run-{os.getpid()}-live", me)
    gone = _run(root, f"run-{dead}-gone", dict(me, pid=dead))
    reused = _run(root, f"run-{os.getpid()}-reused", dict(me, start=me["start"] - 1))
    rebooted = _run(root, f"run-{os.getpid()}-boot", dict(me, boot="another-boot"))
    other_ns = _run(root, f"run-{dead}-ns", dict(me, pid=dead, pidns="pid:[1]"))
    being_made = _run(root, f"run-{os.getpid()}-new", None)  # no record yet: name's pid
    old_dead = _run(root, f"run-{dead}-old", None)
    not_a_run = _run(root, "keep-me", dict(me, pid=dead))
    removed = rundirs.sweep(root)
    assert sorted(removed) == sorted([gone, reused, rebooted, old_dead])
    for path in (live, other_ns, being_made, not_a_run):
        assert os.path.isdir(path)
    for path in removed:
        assert not os.path.exists(path)


def test_sweep_never_follows_symlinks(root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    (outside / rundirs.OWNER_FILE).write_text(json.dumps({"pid": _dead_pid()}))
    link = os.path.join(root, f"run-{_dead_pid()}-link")
    os.symlink(outside, link)  # an entry that is a symlink: never touched
    stale = _run(root, f"run-{_dead_pid()}-stale", {"pid": _dead_pid()})
    os.symlink(outside, os.path.join(stale, "inner"))  # a link inside a stale run
    assert rundirs.sweep(root) == [stale]
    assert os.path.islink(link)
    assert (outside / "precious").read_text() == "keep"


def test_an_owner_record_that_is_a_symlink_is_not_read(root, tmp_path):
    target = tmp_path / "record"
    target.write_text(json.dumps({"pid": _dead_pid()}))
    run = os.path.join(root, f"run-{os.getpid()}-odd")
    os.mkdir(run, 0o700)
    os.symlink(target, os.path.join(run, rundirs.OWNER_FILE))
    assert rundirs.sweep(root) == []  # judged by the (live) pid in its name
    assert os.path.isdir(run)


def test_sweep_of_a_missing_root_is_nothing(tmp_path):
    assert rundirs.sweep(str(tmp_path / "none")) == []


def test_remove_leaves_nothing_while_another_thread_keeps_writing(root):
    """The SIGTERM handler removes the run directory while the driver's other threads
    may still write to its store (a crashed task's record, a replacement worker's files):
    the directory must not come back, nor keep what was written meanwhile."""
    import threading

    from lambdaflow.runtime.store.localdir import LocalDirStore

    for attempt in range(20):
        path = rundirs.claim(root)
        store = LocalDirStore(path)
        stop = threading.Event()
        refused: list[BaseException] = []

        def write(store: LocalDirStore, stop: threading.Event, refused: list) -> None:
            i = 0
            while not stop.is_set():
                try:
                    store.put(f"job/obj/{i % 50}/{i}", b"x" * 100)
                except FileNotFoundError as exc:  # the store is gone: refused, not remade
                    refused.append(exc)
                i += 1

        writer = threading.Thread(target=write, args=(store, stop, refused), daemon=True)
        writer.start()
        try:
            for i in range(200):
                store.put(f"job/seed/{i}", b"y")
            rundirs.remove(path)
        finally:
            stop.set()
            writer.join()
        assert os.listdir(root) == [], f"attempt {attempt}: {os.listdir(root)}"
        assert refused or attempt, "the writer was never refused"


def test_remove_of_a_missing_directory_is_nothing(root):
    rundirs.remove(os.path.join(root, "run-1-gone"))
    assert os.listdir(root) == []
