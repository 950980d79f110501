"""From ``f.remote(...)`` to a submission (runtime/calls.py): the signature check at the
call site (issue 12 item 7), DepSlots for top-level refs, arguments inline or stored."""

from __future__ import annotations

import functools

import pytest

from lambdaflow import serialization
from lambdaflow.runtime.calls import FunctionHandle, encode_call, place_args
from lambdaflow.runtime.refs import ObjectRef
from lambdaflow.runtime.store.memory import MemoryStore
from lambdaflow.runtime.task import DepSlot


def f(a, b=1, *, c=2):
    return a + b + c


def g(a, *rest, key):
    return a


class Method:
    def m(self, x):
        return x


@pytest.mark.parametrize("fn,args,kwargs,ok", [
    (f, (1,), {}, True),
    (f, (1, 2), {"c": 3}, True),
    (f, (), {}, False),
    (f, (1, 2, 3), {}, False),
    (f, (1,), {"d": 0}, False),
    (g, (1, 2, 3), {"key": 0}, True),
    (g, (1, 2, 3), {}, False),  # a required keyword-only argument is missing
    (Method().m, (1,), {}, True),
    (Method().m, (1, 2), {}, False),
    (functools.partial(f, 1), (), {"c": 0}, True),
    (len, ([],), {}, True),
])
def test_arguments_are_checked_like_a_direct_call(fn, args, kwargs, ok):
    handle = FunctionHandle(fn)
    if ok:
        handle.check_call(args, kwargs)
    else:
        with pytest.raises(TypeError, match=r"\.remote\(\)"):
            handle.check_call(args, kwargs)
        with pytest.raises(TypeError):
            fn(*args, **kwargs)  # the same call made directly fails too


def test_pickled_once():
    handle = FunctionHandle(f)
    assert handle.pickled() is handle.pickled()


def test_top_level_refs_become_slots_and_nested_ones_are_collected():
    a, b, c = ObjectRef("a", "j"), ObjectRef("b", "j"), ObjectRef("c", "j")
    chunks, deps, nested = encode_call("f", (a, [c]), {"k": b})
    args, kwargs = serialization.loads(b"".join(chunks))
    assert args[0] == DepSlot(0) and kwargs["k"] == DepSlot(1) and deps == [a, b]
    assert [r.id for r in nested] == ["c"]


def test_refs_and_atoms_only_make_a_plain_frame_that_loads_anywhere():
    a, b = ObjectRef("a", "j"), ObjectRef("b", "j")
    chunks, deps, nested = encode_call("f", (a, 3, "x", b), {})
    assert chunks[0][:4] == serialization.SIMPLE_MAGIC and deps == [a, b] and nested == []
    assert serialization.loads(b"".join(chunks)) == ((DepSlot(0), 3, "x", DepSlot(1)), {})
    # anything else (a ref nested in a list, keywords) takes the full path
    chunks, deps, nested = encode_call("f", (a, [b]), {})
    assert chunks[0][:4] != serialization.SIMPLE_MAGIC and deps == [a] and nested == [b]
    chunks, deps, _ = encode_call("f", (a,), {"k": 1})
    assert serialization.loads(b"".join(chunks)) == ((DepSlot(0),), {"k": 1})


def test_unpicklable_arguments_are_named():
    import threading

    with pytest.raises(TypeError, match="argument #1"):
        encode_call("f", (1, threading.Lock()), {})


def test_small_arguments_inline_large_ones_stored():
    store = MemoryStore()
    small, _, _ = encode_call("f", (1,), {})
    assert place_args(small, store, "j", "t1", 1024, "f")[1] is None
    big, _, _ = encode_call("f", (b"x" * 5000,), {})
    inline, key = place_args(big, store, "j", "t2", 1024, "f")
    assert inline is None and key == "j/args/t2" and store.exists(key)
