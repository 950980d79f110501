"""emulator_bootstrap: what stays visible through an environment's fresh /tmp.

Found by CI on a clean clone under /tmp: the private tmpfs hid the virtualenv and the
checkout, so every environment exited at start ("Runtime exited with error: exit status
1"). The end-to-end check is the emulator suite run from such a checkout; these pin the
path logic."""

from __future__ import annotations

import sys

from lambdaflow.testing import emulator_bootstrap as boot


def test_outermost_drops_duplicates_and_nested_paths():
    assert boot._outermost(["/tmp/a/b", "/tmp/a", "/tmp/a", "/tmp/ab", "/tmp/c/d"]) == [
        "/tmp/a", "/tmp/ab", "/tmp/c/d"]


def test_an_interpreter_under_tmp_keeps_its_prefix_and_path_visible(tmp_path, monkeypatch):
    assert str(tmp_path).startswith("/tmp/")
    prefix, code = tmp_path / "venv", tmp_path / "checkout" / "src"
    prefix.mkdir()
    code.mkdir(parents=True)
    monkeypatch.setattr(sys, "prefix", str(prefix))
    monkeypatch.setattr(sys, "path", [*sys.path, str(code), "/usr/lib"])
    paths = boot._own_paths()
    assert str(prefix) in paths and str(code) in paths
    assert all(p.startswith("/tmp/") for p in paths)  # nothing outside /tmp is re-bound
