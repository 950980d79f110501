from __future__ import annotations

import os
import stat
import tempfile

import numpy as np
import pytest

import lambdaflow as lf
from lambdaflow.errors import ConfigError, ObjectLostError
from lambdaflow.runtime.store import open_store
from lambdaflow.runtime.store.localdir import LocalDirStore, default_root
from lambdaflow.runtime.store.memory import MemoryStore


@pytest.fixture(params=["localdir", "memory"])
def store(request, tmp_path):
    if request.param == "localdir":
        return LocalDirStore(str(tmp_path / "store"))
    return MemoryStore()


def test_put_get_exists_delete(store):
    assert store.put("job/obj/a", b"hello") == 5
    assert store.exists("job/obj/a")
    assert store.get("job/obj/a") == bytearray(b"hello")
    assert store.get("job/obj/a", 1, 3) == bytearray(b"el")
    store.delete("job/obj/a")
    store.delete("job/obj/a")  # missing is fine
    assert not store.exists("job/obj/a")


def test_missing_key_names_it(store):
    with pytest.raises(ObjectLostError) as info:
        store.get("job/obj/nope")
    assert info.value.key == "job/obj/nope" and "job/obj/nope" in str(info.value)


def test_list_of_buffers_and_delete_prefix(store):
    arr = np.arange(100_000, dtype=np.int64)
    n = store.put("j1/obj/x", [b"head", memoryview(arr)])
    assert n == 4 + arr.nbytes
    data = store.get("j1/obj/x")
    assert data[:4] == b"head" and np.frombuffer(bytes(data[4:]), dtype=np.int64)[-1] == 99_999
    store.put("j1/fn/y", b"1")
    store.put("j2/obj/z", b"2")
    assert store.delete_prefix("j1/") == 2
    assert not store.exists("j1/fn/y") and store.exists("j2/obj/z")


def test_open_store_from_uri(store):
    again = open_store(store.uri)
    store.put("k/obj/1", b"v")
    assert again.get("k/obj/1") == bytearray(b"v")


def test_localdir_rejects_escaping_keys(tmp_path):
    s = LocalDirStore(str(tmp_path))
    with pytest.raises(ValueError):
        s.put("../evil", b"x")


# -- private directories (issue 14.3) ---------------------------------------------------

OTHER_UID = 54321  # a user that is not us: as root, os.chown simulates them


@pytest.fixture
def shm(tmp_path, monkeypatch):
    """A stand-in for /dev/shm (sticky and world-writable, as the real one)."""
    from lambdaflow.runtime.store import localdir

    path = tmp_path / "shm"
    path.mkdir()
    os.chmod(path, 0o1777)
    monkeypatch.setattr(localdir, "SHM_DIR", str(path), raising=False)
    return path


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_default_root_is_per_user_and_private(shm):
    root = default_root()
    assert root == str(shm / f"lambdaflow-{os.geteuid()}")
    assert mode(root) == 0o700 and os.lstat(root).st_uid == os.geteuid()
    store = LocalDirStore(os.path.join(root, "run-x"))
    store.put("job/obj/a", b"v")
    for d in (store.root, os.path.join(store.root, "job"), os.path.join(store.root, "job/obj")):
        assert mode(d) == 0o700, d
    assert mode(os.path.join(store.root, "job/obj/a")) == 0o600


def test_temp_dir_fallback_is_private_too(tmp_path, monkeypatch):
    from lambdaflow.runtime.store import localdir

    monkeypatch.setattr(localdir, "SHM_DIR", str(tmp_path / "no-shm-here"), raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    root = default_root()
    assert root == str(tmp_path / f"lambdaflow-{os.geteuid()}") and mode(root) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown to another uid")
def test_a_root_another_user_created_first_is_refused(shm):
    squatted = shm / f"lambdaflow-{os.geteuid()}"
    squatted.mkdir(mode=0o700)
    os.chown(squatted, OTHER_UID, OTHER_UID)
    with pytest.raises(ConfigError, match=f"belongs to uid {OTHER_UID}") as info:
        default_root()
    assert str(squatted) in str(info.value) and "LAMBDAFLOW_STORE_DIR" in str(info.value)
    with pytest.raises(ConfigError, match="belongs to uid"):  # and through the backend
        lf.init(backend="processes", num_workers=1)
    assert os.listdir(squatted) == []  # nothing was written into it


@pytest.mark.parametrize("bad_mode", [0o777, 0o770, 0o702])
def test_a_root_others_can_write_is_refused(shm, bad_mode):
    root = shm / f"lambdaflow-{os.geteuid()}"
    root.mkdir()
    os.chmod(root, bad_mode)
    with pytest.raises(ConfigError, match="writable by its group or by everyone"):
        default_root()
    with pytest.raises(ConfigError, match="chmod 700"):
        LocalDirStore(str(root))


def test_a_symlinked_root_is_refused(shm, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    os.symlink(elsewhere, shm / f"lambdaflow-{os.geteuid()}")
    with pytest.raises(ConfigError, match="not a plain directory"):
        default_root()


def test_processes_run_directory_is_private(shm, fresh):
    with lf.init(backend="processes", num_workers=1) as rt:
        root = rt.backend.store.root
        assert os.path.dirname(root) == str(shm / f"lambdaflow-{os.geteuid()}")
        assert mode(root) == 0o700
        assert lf.get(lf.put(np.zeros(100_000))).sum() == 0  # the workers accept it too


# ------------------------------------------------ fenced writes: the first writer wins


def test_create_writes_only_a_missing_key(store):
    """``create`` (a task's result commit, 14.11): a second writer leaves the first
    writer's object as it was and is told so (None); a deleted key can be written again
    (lineage reconstruction rebuilds a lost object under the same key)."""
    assert store.create("job/obj/t1", [b"first", b"-try"]) == 9
    assert store.create("job/obj/t1", b"second attempt") is None
    assert store.get("job/obj/t1") == bytearray(b"first-try")
    store.delete("job/obj/t1")
    assert store.create("job/obj/t1", b"rebuilt") == 7
    assert store.get("job/obj/t1") == bytearray(b"rebuilt")


def test_concurrent_creates_have_exactly_one_winner(store):
    """Attempts racing for one key from many threads: exactly one wins, the stored
    value is the winner's, whole, and no temporary file is left behind."""
    import threading

    barrier = threading.Barrier(8)
    won: list[int] = []

    def attempt(i: int) -> None:
        value = bytes([i]) * (300_000 + i)  # large enough to be memory-mapped back
        barrier.wait()
        if store.create("job/obj/race", value) is not None:
            won.append(i)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert bytes(store.get("job/obj/race")) == bytes([won[0]]) * (300_000 + won[0])
    if isinstance(store, LocalDirStore):
        assert os.listdir(os.path.join(store.root, "job", "obj")) == ["race"]


def test_a_put_after_the_root_was_removed_does_not_bring_it_back(tmp_path):
    import shutil

    store = LocalDirStore(str(tmp_path / "store"))
    store.put("job/obj/a", b"1")
    shutil.rmtree(store.root)
    for key in ("job/obj/b", "job/other/c"):  # a known parent and a new one
        with pytest.raises(FileNotFoundError):
            store.put(key, b"2")
    assert not os.path.exists(store.root)
