"""Value locations (runtime/values.py): placing and reading values, on every kind."""

from __future__ import annotations

import enum

import numpy as np
import pytest

from lambdaflow import serialization
from lambdaflow.errors import ObjectLostError
from lambdaflow.runtime import values
from lambdaflow.runtime.context import StoredError
from lambdaflow.runtime.refs import ObjectRef
from lambdaflow.runtime.store.memory import MemoryStore


def test_inline_store_and_frame_locations():
    store = MemoryStore()
    loc, nested = values.place(store, "j", "o1", [1, 2], 1024)
    assert "inline" in loc and values.load(store, loc) == [1, 2] and nested == []
    loc, _ = values.place(store, "j", "o2", b"x" * 5000, 1024)
    assert loc["key"] == "j/obj/o2" and values.load(store, loc) == b"x" * 5000
    arr = np.arange(10_000.0)
    loc, _ = values.place(store, "j", "o3", arr, 1024, share="move")
    out = values.load(store, loc)
    assert "frame" in loc and not out.flags.writeable and out.ctypes.data == arr.ctypes.data
    assert len(store) == 1  # frames never touch the store


def test_copy_share_snapshots_the_callers_array():
    arr = np.zeros(5000)
    loc, _ = values.place(MemoryStore(), "j", "p", arr, 1024, share="copy")
    arr[0] = 1.0
    assert values.load(MemoryStore(), loc)[0] == 0.0 and arr.flags.writeable


def test_nested_refs_of_this_job_are_reported():
    _, nested = values.place(MemoryStore(), "j", "o", {"r": ObjectRef("a", "j"),
                                                       "s": ObjectRef("b", "k")}, 1024)
    assert nested == ["a"]


def test_stored_errors_raise_and_missing_keys_are_lost():
    store = MemoryStore()
    store.put("j/obj/e", serialization.dumps(StoredError(KeyError("gone"))))
    with pytest.raises(KeyError):
        values.load(store, {"key": "j/obj/e"})
    with pytest.raises(ObjectLostError):
        values.load(store, {"key": "j/obj/missing"})


def test_immutable_atomic_values_are_shared_not_serialized():
    store = MemoryStore()
    text = "x" * 1000
    for share in ("move", "copy"):
        loc, refs = values.place(store, "job", "o1", text, 64, share=share)
        assert set(loc) == {"value", "size"} and refs == [] and loc["value"] is text
        assert values.load(store, loc) is text  # the same object: nothing was pickled
    loc, _ = values.place(store, "job", "o2", (1, "a", None), 64, share="move")
    assert loc["value"] == (1, "a", None)
    assert len(store) == 0


def test_mutable_or_unusual_values_are_not_shared():
    class Flag(enum.IntEnum):
        ON = 1

    for value in ([1], {"a": 1}, (1, [2]), tuple(range(17)), Flag.ON, bytearray(b"ab")):
        loc, _ = values.place(MemoryStore(), "job", "o", value, 64, share="move")
        assert "value" not in loc, value
        assert values.load(MemoryStore(), loc) == value
    loc, _ = values.place(MemoryStore(), "job", "o", 5, 64)  # not on threads: a frame
    assert "inline" in loc
