from __future__ import annotations

import threading

import numpy as np
import pytest

from lambdaflow import serialization as s


def test_roundtrip_simple_and_complex():
    for value in [1, "x", None, (1, [2, {"a": 3.0}]), {1, 2}, lambda: 3]:
        out = s.loads(s.dumps_bytes(value))
        if callable(value):
            assert out() == 3
        else:
            assert out == value


def test_numpy_out_of_band_and_writable():
    arr = np.arange(1000, dtype=np.float32).reshape(10, 100)
    chunks = s.dumps({"a": arr})
    # the array's memory is its own chunk, not copied into the pickle stream
    assert any(memoryview(c).nbytes == arr.nbytes for c in chunks)
    out = s.loads(bytearray(b"".join(chunks)))["a"]
    assert np.array_equal(out, arr) and out.flags.writeable
    out2 = s.loads(b"".join(chunks))["a"]  # immutable input still gives a writable array
    assert out2.flags.writeable


def test_bad_frame():
    with pytest.raises(ValueError, match="corrupt"):
        s.loads(b"XXXX" + bytes(20))


def test_unpicklable_closure_named():
    lock = threading.Lock()

    def uses_lock():
        return lock

    with pytest.raises(TypeError) as info:
        s.dumps_function(uses_lock)
    text = str(info.value)
    assert "uses_lock" in text and "'lock'" in text and "_thread.lock" in text


def test_function_digest_is_content_addressed():
    def f(x):
        return x + 1

    d1, b1 = s.dumps_function(f)
    d2, _ = s.dumps_function(f)
    assert d1 == d2 and len(d1) == 64


def test_user_module_functions_pickled_by_value():
    from tests.conformance import helpers

    _, data = s.dumps_function(helpers.add._fn)
    # by value: the code travels, not just a module reference
    assert b"co_" in data or len(data) > 200


def test_collect_refs():
    from lambdaflow.runtime.refs import ObjectRef

    r = ObjectRef("t1", "job-x")
    with s.collect_refs() as c:
        s.dumps([r, {"k": r}])
    assert c.refs == [r]  # pickle memoizes the second occurrence


USER_MODULE = '''\
def helper(x):
    return 1 / x


def fail(x):
    y = x + 1
    return helper(y - y)
'''

LOAD_AND_CALL = '''\
import sys, traceback, cloudpickle
fn = cloudpickle.loads(open(sys.argv[1], "rb").read())
try:
    fn(1)
except ZeroDivisionError:
    traceback.print_exc()
'''


def test_remote_traceback_keeps_file_line_and_source_where_the_file_is_gone(tmp_path):
    """A by-value function loaded where its file does not exist (as on Lambda) still
    shows the user's file name, line numbers and source lines, whatever cloudpickle
    release writes into co_filename."""
    import subprocess
    import sys

    mod_dir = tmp_path / "src"
    mod_dir.mkdir()
    (mod_dir / "lf_user_tb_mod.py").write_text(USER_MODULE)
    sys.path.insert(0, str(mod_dir))
    try:
        import lf_user_tb_mod
    finally:
        sys.path.remove(str(mod_dir))
    _, blob = s.dumps_function(lf_user_tb_mod.fail)
    sys.modules.pop("lf_user_tb_mod", None)
    (tmp_path / "fn.pkl").write_bytes(blob)
    source = mod_dir / "lf_user_tb_mod.py"
    source.unlink()  # the worker has no such file
    import os

    import lambdaflow

    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(lambdaflow.__file__)))
    out = subprocess.run([sys.executable, "-c", LOAD_AND_CALL, str(tmp_path / "fn.pkl")],
                         capture_output=True, text=True, check=True, cwd=tmp_path,
                         env=env).stderr
    assert f'File "{source}", line 7, in fail' in out
    assert "    return helper(y - y)" in out
    assert f'File "{source}", line 2, in helper' in out
    assert "    return 1 / x" in out
    assert "dynamic-code" not in out


def test_a_frame_collected_in_a_cycle_raises_nothing_unraisable(monkeypatch):
    """A frame that ends up in a garbage cycle (a traceback's frame holding it, as after
    a failed upload) is finalized by the cycle collector; nothing may complain then.
    (A view exported from the pickler's BytesIO made its close() raise BufferError:
    "Exception ignored in: <_io.BytesIO ...>", seen in CI on 3.13.)"""
    import gc
    import sys

    from lambdaflow.serialization import dumps

    seen: list = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    for value in ({"a": [1, 2.5, "x" * 1000]}, [np.arange(10_000)], {"k": object.__name__}):
        chunks = dumps(value)
        cycle: list = [chunks]
        cycle.append(cycle)
        del chunks, cycle
        gc.collect()
    assert [f"{u.exc_type.__name__}: {u.exc_value}" for u in seen] == []
