"""What a value is after it crosses a task boundary, on every backend (issue 12: the
threads backend shares immutable values instead of serializing them; mutable ones must
stay isolated exactly as when they are pickled to another process).

The reference is the behaviour of a copy: whatever a task or the driver does to a
mutable value it got, no other reader of the same object sees it."""

from __future__ import annotations

import enum

import lambdaflow as lf
from tests.conformance import helpers as h


class Colour(enum.IntEnum):
    RED = 1


def test_a_task_mutating_its_argument_changes_nothing_outside(rt):
    mine = ["a", "b"]
    ref = lf.put(mine)
    out = lf.get(h.mutate.remote(ref))
    assert out == ["changed", "b", "changed"]
    assert lf.get(ref) == ["a", "b"]  # the stored object: unchanged
    assert mine == ["a", "b"]  # the driver's own list: unchanged
    assert lf.get(h.identity.remote(ref)) == ["a", "b"]  # another reader: unchanged
    direct = ["x"]
    assert lf.get(h.mutate.remote(direct)) == ["changed", "changed"]
    assert direct == ["x"]  # an argument passed by value, too


def test_mutating_a_result_changes_nothing_for_other_readers(rt):
    ref = h.make_nested.remote()
    first = lf.get(ref)
    first["list"].append(3)
    first["tuple"][1].append(3)  # a list inside a tuple: still mutable
    first["new"] = True
    assert lf.get(ref) == {"list": [1, 2], "tuple": (1, [2])}
    assert lf.get(h.identity.remote(ref)) == {"list": [1, 2], "tuple": (1, [2])}
    mutated = h.mutate.remote(h.identity.remote(["p", "q"]))
    assert lf.get(mutated) == ["changed", "q", "changed"]


def test_immutable_values_keep_their_value_and_type(rt):
    cases = [None, True, False, 0, -7, 2**100, 1.5, float("inf"), 1 + 2j, "", "text",
             "ünï", b"", b"\x00bytes", (), (1, "a", None, 2.5, b"b"), (True,) * 16,
             tuple(range(17)), Colour.RED]
    for value in cases:
        got, type_name = lf.get(h.with_type.remote(lf.put(value)))
        assert got == value and type(got) is type(value), value
        assert type_name == type(value).__name__
        back = lf.get(h.identity.remote(h.identity.remote(value)))  # result -> dependency
        assert back == value and type(back) is type(value), value
    nan = lf.get(h.identity.remote(float("nan")))
    assert nan != nan
