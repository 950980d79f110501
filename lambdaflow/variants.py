"""Worker image variants, and the versions a driver and a worker must agree on.

A function pickled by value carries bytecode, which loads only on the Python minor
version that made it; cloudpickle's format and lambdaflow's messages change between
releases. So a driver and its worker must run the same Python minor, the same
cloudpickle and the same lambdaflow. Worker images come in variants, one per Python
minor, plus flavours with extra frameworks::

    variant         Python   what is in it
    py3.12          3.12     lambdaflow[video,faces,aws]      (one per supported minor)
    py3.11-mxnet    3.11     ... + MXNet 1.9.1 (needs Python <= 3.11 and numpy < 1.24)

A variant's name is ``py<major>.<minor>`` plus ``-<flavour>``. The image sets
``LAMBDAFLOW_IMAGE_VARIANT``; the worker reports it in the version ping
(:func:`runtime_versions`), and the driver refuses to start on a mismatch
(:func:`check_agreement`) with a ConfigError naming both sides and the variant to deploy.
``lambdaflow deploy`` builds or selects the variant that matches the driver.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Mapping

from lambdaflow.errors import ConfigError

#: The environment variable the worker image sets to its variant's name.
VARIANT_ENV = "LAMBDAFLOW_IMAGE_VARIANT"
#: Flavours and the newest Python minor each supports (None: any).
FLAVOURS: dict[str, tuple[int, int] | None] = {"mxnet": (3, 11)}
_NAME = re.compile(r"py(\d+)\.(\d+)(?:-([a-z0-9]+))?")


def python_minor(version: str | None = None) -> str:
    """``"3.12.4"`` (default: this interpreter's) -> ``"3.12"``."""
    parts = (version or platform.python_version()).split(".")
    return ".".join(parts[:2])


def variant_name(python: str | None = None, flavour: str | None = None) -> str:
    """The variant for Python ``python`` (default: this one) and ``flavour``.

    ConfigError when the flavour is unknown or does not run on that Python."""
    minor = python_minor(python)
    if not flavour:
        return f"py{minor}"
    if flavour not in FLAVOURS:
        raise ConfigError(
            f"unknown worker image flavour {flavour!r}; known: {', '.join(sorted(FLAVOURS))}"
        )
    newest = FLAVOURS[flavour]
    major, sub = (int(x) for x in minor.split("."))
    if newest is not None and (major, sub) > newest:
        raise ConfigError(
            f"the {flavour} worker image runs Python {newest[0]}.{newest[1]} at most, but "
            f"the driver runs Python {minor}: run the driver on Python "
            f"{newest[0]}.{newest[1]} to use it"
        )
    return f"py{minor}-{flavour}"


def parse_variant(name: str) -> tuple[str, str | None]:
    """``"py3.11-mxnet"`` -> ``("3.11", "mxnet")``; ValueError if it is not a name."""
    match = _NAME.fullmatch(name or "")
    if not match:
        raise ValueError(f"{name!r} is not a worker image variant name (e.g. py3.12)")
    return f"{match.group(1)}.{match.group(2)}", match.group(3)


def worker_variant() -> str:
    """The variant this process runs as a worker: ``LAMBDAFLOW_IMAGE_VARIANT``, else the
    plain variant of its Python (an image built before variants, or a local run)."""
    return os.environ.get(VARIANT_ENV) or variant_name()


def runtime_versions() -> dict[str, str]:
    """What this process runs: lambdaflow, Python, cloudpickle, and its variant."""
    import cloudpickle

    from lambdaflow._version import __version__

    return {
        "lambdaflow_version": __version__,
        "python_version": platform.python_version(),
        "cloudpickle_version": cloudpickle.__version__,
        "variant": worker_variant(),
    }


def disagreements(driver: Mapping[str, str], worker: Mapping[str, object]) -> list[str]:
    """What differs between a driver's and a worker's :func:`runtime_versions` (a field
    an older worker does not report counts as different)."""
    out = []
    theirs = str(worker.get("python_version") or "unknown")
    if python_minor(theirs) != python_minor(driver["python_version"]):
        out.append(f"Python {theirs} (the driver runs {driver['python_version']})")
    for key, label in (("cloudpickle_version", "cloudpickle"), ("lambdaflow_version", "lambdaflow")):
        value = str(worker.get(key) or "unknown")
        if value != driver[key]:
            out.append(f"{label} {value} (the driver runs {driver[key]})")
    return out


def check_agreement(function_name: str, worker: Mapping[str, object]) -> None:
    """Raise ConfigError unless the worker behind ``function_name`` runs what this
    driver runs; the error names both sides and the image variant to deploy."""
    mine = runtime_versions()
    differences = disagreements(mine, worker)
    if not differences:
        return
    reported = str(worker.get("variant") or "unknown")
    try:
        flavour = parse_variant(reported)[1]
    except ValueError:
        flavour = None
    try:
        wanted = variant_name(mine["python_version"], flavour)
        what = (
            f"deploy the worker image variant {wanted!r}, built with lambdaflow "
            f"{mine['lambdaflow_version']} and cloudpickle {mine['cloudpickle_version']} "
            "(`lambdaflow deploy` builds the variant that matches the driver)"
        )
    except ConfigError as exc:
        what = str(exc)
    raise ConfigError(
        f"the worker function {function_name!r} (image variant {reported}) runs "
        f"{'; '.join(differences)}. Functions pickled on this driver would not load "
        f"there: {what}"
    )


__all__ = [
    "FLAVOURS",
    "VARIANT_ENV",
    "check_agreement",
    "disagreements",
    "parse_variant",
    "python_minor",
    "runtime_versions",
    "variant_name",
    "worker_variant",
]
