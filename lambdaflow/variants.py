"""Worker image variants (one per supported Python minor, plus the MXNet one), and the
versions a driver and a worker must agree on.

Functions pickled by value carry bytecode, which does not survive a change of Python
minor version, so the driver and the worker must run the same ``major.minor``. Each
variant is one image built from ``worker_image/`` (pure data here; the Dockerfiles, lock
files and ``build_and_push.sh`` read this table)::

    name           Python  base (Amazon Linux 2023)           extras installed
    py3.11         3.11    provided.al2023 + dnf python3.11    video, aws, faces
    py3.12         3.12    lambda/python:3.12                  video, aws, faces
    py3.13         3.13    lambda/python:3.13                  video, aws, faces
    mxnet-py3.11   3.11    provided.al2023 + dnf python3.11    video, aws, faces, mxnet

The image sets ``LAMBDAFLOW_IMAGE_VARIANT`` to its name, and the version ping reports it
with the worker's Python, cloudpickle and lambdaflow versions (:func:`runtime_versions`);
the driver refuses to start on a mismatch (:func:`check_agreement`) with a ConfigError
naming both sides and the variant to deploy (cloudpickle's format and lambdaflow's
messages change between releases, bytecode between Python minors). ``lambdaflow deploy``
picks :func:`driver_variant` unless told otherwise, and tags the image
``<lambdaflow version>-<variant>``.

Bases are pinned by digest in :data:`BASE_DIGESTS`. A digest that could not be verified
where lambdaflow is developed is ``None``; ``build_and_push.sh`` then refuses to build
until it is given (``--base-digest``) or explicitly waived (``--allow-unpinned-base``).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from lambdaflow.errors import ConfigError

#: The environment variable the worker image sets to its variant name.
VARIANT_ENV = "LAMBDAFLOW_IMAGE_VARIANT"


@dataclass(frozen=True)
class Variant:
    name: str
    python: str  # "3.12"
    base_image: str  # without tag digest
    base_tag: str
    dockerfile: str  # relative to worker_image/
    extras: tuple[str, ...]
    #: manylinux glibc of the base (AL2023: 2.34), for the lock file's platform
    glibc: tuple[int, int] = (2, 34)

    @property
    def lock_file(self) -> str:
        """The hashed lock file, relative to worker_image/."""
        return f"locks/{self.name}.txt"

    @property
    def base(self) -> str:
        return f"{self.base_image}:{self.base_tag}"

    def image_tag(self, version: str) -> str:
        return f"{version}-{self.name}"


_WORKER_EXTRAS = ("video", "aws", "faces")
_AL2023 = "public.ecr.aws/lambda/provided"
_LAMBDA_PY = "public.ecr.aws/lambda/python"

VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("py3.11", "3.11", _AL2023, "al2023", "Dockerfile.al2023", _WORKER_EXTRAS),
        Variant("py3.12", "3.12", _LAMBDA_PY, "3.12", "Dockerfile", _WORKER_EXTRAS),
        Variant("py3.13", "3.13", _LAMBDA_PY, "3.13", "Dockerfile", _WORKER_EXTRAS),
        Variant(
            "mxnet-py3.11",
            "3.11",
            _AL2023,
            "al2023",
            "Dockerfile.al2023",
            (*_WORKER_EXTRAS, "mxnet"),
        ),
    )
}

#: ``sha256:...`` of each base (image index digest), or None where it is not verified.
BASE_DIGESTS: dict[str, str | None] = {
    f"{_AL2023}:al2023": None,
    f"{_LAMBDA_PY}:3.12": None,
    f"{_LAMBDA_PY}:3.13": None,
}


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ConfigError(
            f"unknown image variant {name!r}; choose one of {', '.join(VARIANTS)}"
        ) from None


def python_minor(version: str | None = None) -> str:
    """``"3.12"`` for this interpreter (or for a version string such as ``3.12.7``)."""
    if version is None:
        return f"{sys.version_info.major}.{sys.version_info.minor}"
    return ".".join(version.split(".")[:2])


def driver_variant(
    python: str | None = None, *, mxnet: bool | None = None
) -> Variant:
    """The variant whose worker can run this driver's tasks: same Python minor; the
    MXNet variant when MXNet is installed here (``mxnet`` overrides the detection)."""
    minor = python_minor(python)
    if mxnet is None:
        mxnet = importlib.util.find_spec("mxnet") is not None
    candidates = [v for v in VARIANTS.values() if v.python == minor]
    if not candidates:
        raise ConfigError(
            f"no worker image variant runs Python {minor} (variants: "
            f"{', '.join(f'{v.name} (Python {v.python})' for v in VARIANTS.values())}); "
            "tasks carry bytecode, so drive jobs from one of those Python versions"
        )
    return next(
        (v for v in candidates if ("mxnet" in v.extras) == mxnet), candidates[0]
    )


def check_variant_matches(variant: Variant, python: str | None = None) -> None:
    """ConfigError unless ``variant`` runs this driver's Python minor."""
    minor = python_minor(python)
    if variant.python != minor:
        raise ConfigError(
            f"image variant {variant.name} runs Python {variant.python}, this driver "
            f"runs Python {minor}: tasks carry bytecode, so deploy "
            f"{driver_variant(minor, mxnet=False).name} (or drive from Python "
            f"{variant.python})"
        )


# ------------------------------------------------------------- driver/worker agreement


def worker_variant() -> str:
    """The variant this process runs as a worker: ``LAMBDAFLOW_IMAGE_VARIANT``, else the
    plain variant of its Python (an image built before variants, or a local run)."""
    return os.environ.get(VARIANT_ENV) or f"py{python_minor()}"


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
    driver runs; the error names both sides and the image variant to deploy (the MXNet
    flavour is kept when the worker had it)."""
    mine = runtime_versions()
    differences = disagreements(mine, worker)
    if not differences:
        return
    reported = str(worker.get("variant") or "unknown")
    known = VARIANTS.get(reported)
    mxnet = known is not None and "mxnet" in known.extras
    try:
        wanted = driver_variant(mine["python_version"], mxnet=mxnet).name
        if mxnet and "mxnet" not in VARIANTS[wanted].extras:
            raise ConfigError(
                f"the MXNet worker image runs Python 3.11 only, but the driver runs Python "
                f"{python_minor(mine['python_version'])}: run the driver on Python 3.11 "
                "to use it"
            )
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
