from __future__ import annotations

import numpy as np
import pytest

from lambdaflow.errors import ObjectLostError
from lambdaflow.runtime.store import open_store
from lambdaflow.runtime.store.localdir import LocalDirStore
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
