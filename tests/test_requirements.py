"""requirements/: each lock pins, with hashes, everything setup.py asks for in its
environment, so a setup.py change without `make lock` fails here, not on a user's machine.

The environments (lock, Python version, extras) are read from the Makefile's `make lock`
recipe; the requirements from lambdaflow's installed metadata, which pip built from
setup.py (the Makefile reinstalls when setup.py changes).
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements"


def _makefile_locks() -> dict[str, tuple[str, list[str]]]:
    """{lock file name: (python version, extras)} from `$(call compile,...)` lines."""
    text = (ROOT / "Makefile").read_text()
    extras = dict(re.findall(r"^(\w+_EXTRAS) := (\S+)$", text, re.M))
    locks = {}
    for version, var, out in re.findall(
        r"\$\(call compile,([\d.]+),\$\((\w+_EXTRAS)\),requirements/([\w.-]+)\)", text
    ):
        locks[out] = (version, extras[var].split(","))
    return locks


LOCKS = _makefile_locks()


def _pins(path: Path) -> dict[str, tuple[Version, list[str]]]:
    """{canonical name: (version, sha256 hashes)} of a uv/pip-compile hashed lock."""
    pins = {}
    entries = re.split(r"\n(?=[A-Za-z0-9])", path.read_text())
    for entry in entries:
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", entry)
        if m:
            hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", entry)
            pins[canonicalize_name(m.group(1))] = (Version(m.group(2)), hashes)
    return pins


def _marker_env(python: str, extra: str) -> dict[str, str]:
    return {"python_version": python, "python_full_version": f"{python}.0", "extra": extra}


def _wanted(dist: str, extras: list[str], python: str) -> list[Requirement]:
    """The requirements of ``dist`` with ``extras`` on ``python`` (markers evaluated)."""
    out = []
    for line in importlib.metadata.requires(dist) or []:
        req = Requirement(line)
        if req.marker is None or any(
            req.marker.evaluate(_marker_env(python, e)) for e in ["", *extras]
        ):
            out.append(req)
    return out


def test_the_makefile_names_every_lock():
    assert set(LOCKS) == {p.name for p in REQUIREMENTS.glob("*.txt")} - {"bootstrap.txt"}
    assert {"default-py311.txt", "default-py313.txt", "mxnet-py311.txt"} <= set(LOCKS)


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_lock_satisfies_setup_py(lock):
    python, extras = LOCKS[lock]
    pins = _pins(REQUIREMENTS / lock)
    problems = []
    for req in _wanted("lambdaflow", extras, python):
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req} is not pinned")
            continue
        if not req.specifier.contains(pins[name][0], prereleases=True):
            problems.append(f"{req}: pinned {pins[name][0]}")
        for extra in req.extras:  # e.g. moto[server]: its extra's own requirements
            for sub in _wanted(req.name, [extra], python):
                if sub.marker is not None and canonicalize_name(sub.name) not in pins:
                    problems.append(f"{req} needs {sub}, which is not pinned")
    assert not problems, f"{lock} is out of date with setup.py (run make lock): {problems}"


@pytest.mark.parametrize("lock", sorted(LOCKS) + ["bootstrap.txt"])
def test_every_pin_has_hashes(lock):
    pins = _pins(REQUIREMENTS / lock)
    assert pins
    assert not [name for name, (_, hashes) in pins.items() if not hashes]


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_the_bootstrap_tools_are_pinned_alike(lock):
    """The bootstrap lock is installed first; a lock pinning another version of the same
    tool would replace it mid-install."""
    bootstrap, pins = _pins(REQUIREMENTS / "bootstrap.txt"), _pins(REQUIREMENTS / lock)
    assert {n: pins[n] for n in bootstrap if n in pins} == {
        n: bootstrap[n] for n in bootstrap if n in pins
    }


def test_mxnet_lock_has_numpy_1_and_default_locks_numpy_2():
    """The point of two environments: the default install is tested on numpy 2."""
    for lock in LOCKS:
        numpy = _pins(REQUIREMENTS / lock)["numpy"][0]
        assert numpy.major == (1 if lock.startswith("mxnet") else 2), (lock, numpy)


def _install_hints() -> list[tuple[str, str]]:
    """(file, extras) of every ``lambdaflow[...]`` / ``.[...]`` install hint in the docs,
    the examples and lambdaflow's own messages."""
    files = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("examples/**/*.md"),
             *ROOT.glob("lambdaflow/**/*.py"), *ROOT.glob("worker_image/*")]
    hints = []
    for path in files:
        if path.is_file():
            for extras in re.findall(r"(?:lambdaflow|['\"]\.)\[([\w,-]+)\]", path.read_text()):
                hints.append((str(path.relative_to(ROOT)), extras))
    return hints


def test_install_hints_name_extras_setup_py_defines():
    """A hint naming a removed extra (``.[all]``, which mixed MXNet's numpy<1.24 into the
    default install) fails here rather than on a reader's machine."""
    defined = set(importlib.metadata.metadata("lambdaflow").get_all("Provides-Extra") or [])
    hints = _install_hints()
    assert len(hints) >= 5, hints  # the pattern still finds the hints there are
    assert not [(f, e) for f, e in hints if not set(e.split(",")) <= defined]
