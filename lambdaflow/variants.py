"""Worker image variants: one per supported Python minor, plus the MXNet one.

Functions pickled by value carry bytecode, which does not survive a change of Python
minor version, so the driver and the worker must run the same ``major.minor``. Each
variant is one image built from ``worker_image/`` (pure data here; the Dockerfiles, lock
files and ``build_and_push.sh`` read this table)::

    name           Python  base (Amazon Linux 2023)           extras installed
    py3.11         3.11    provided.al2023 + dnf python3.11    video, aws, faces
    py3.12         3.12    lambda/python:3.12                  video, aws, faces
    py3.13         3.13    lambda/python:3.13                  video, aws, faces
    mxnet-py3.11   3.11    provided.al2023 + dnf python3.11    video, aws, faces, mxnet

The image sets ``LAMBDAFLOW_IMAGE_VARIANT`` to its name, and the version ping reports it.
``lambdaflow deploy`` picks :func:`driver_variant` unless told otherwise, and tags the
image ``<lambdaflow version>-<variant>``.

Bases are pinned by digest in :data:`BASE_DIGESTS`. A digest that could not be verified
where lambdaflow is developed is ``None``; ``build_and_push.sh`` then refuses to build
until it is given (``--base-digest``) or explicitly waived (``--allow-unpinned-base``).
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass

from lambdaflow.errors import ConfigError

#: The environment variable the worker image sets to its variant name.
IMAGE_VARIANT_ENV = "LAMBDAFLOW_IMAGE_VARIANT"


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
