"""The in-memory store (runtime/store/memory.py)."""

from __future__ import annotations

import pytest

from lambdaflow import serialization
from lambdaflow.errors import ObjectLostError
from lambdaflow.runtime.store import open_store
from lambdaflow.runtime.store.memory import MemoryStore


def test_put_get_exists_delete_and_prefixes():
    s = MemoryStore()
    assert s.put("j/obj/a", [b"ab", b"cd"]) == 4
    assert bytes(s.get("j/obj/a")) == b"abcd" and bytes(s.get("j/obj/a", 1, 3)) == b"bc"
    s.put("j/obj/b", b"x")
    s.put("k/obj/c", b"y")
    assert s.exists("j/obj/b") and s.delete_prefix("j/") == 2 and len(s) == 1
    s.delete("k/obj/c")
    s.delete("k/obj/c")  # missing: not an error
    with pytest.raises(ObjectLostError) as info:
        s.get("k/obj/c")
    assert info.value.key == "k/obj/c"


def test_get_returns_a_writable_aligned_copy():
    s = MemoryStore()
    s.put("k", serialization.dumps(b"z" * 100))
    out = s.get("k")
    out[0] = 0
    assert bytes(s.get("k"))[0] != 0


def test_reopened_from_its_uri_while_alive():
    s = MemoryStore()
    assert open_store(s.uri) is s
    uri = s.uri
    del s
    with pytest.raises(ObjectLostError, match="gone"):
        MemoryStore.from_uri(uri)
