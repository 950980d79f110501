"""Image variants and the driver/worker agreement (issue 13.6)."""

from __future__ import annotations

import platform

import cloudpickle
import pytest

from lambdaflow import variants
from lambdaflow._version import __version__
from lambdaflow.errors import ConfigError

MINE = {"lambdaflow_version": __version__, "python_version": platform.python_version(),
        "cloudpickle_version": cloudpickle.__version__}
MINOR = ".".join(platform.python_version_tuple()[:2])


def test_names():
    assert variants.variant_name("3.12.4") == "py3.12"
    assert variants.variant_name("3.11.9", "mxnet") == "py3.11-mxnet"
    assert variants.parse_variant("py3.11-mxnet") == ("3.11", "mxnet")
    assert variants.parse_variant("py3.13") == ("3.13", None)
    with pytest.raises(ValueError, match="not a worker image variant"):
        variants.parse_variant("python3")
    with pytest.raises(ConfigError, match="Python 3.11 at most"):
        variants.variant_name("3.12.0", "mxnet")  # MXNet 1.9.1 needs Python <= 3.11
    with pytest.raises(ConfigError, match="unknown worker image flavour"):
        variants.variant_name("3.12.0", "torch")


def test_worker_variant_comes_from_the_image(monkeypatch):
    monkeypatch.setenv(variants.VARIANT_ENV, "py3.11-mxnet")
    assert variants.runtime_versions()["variant"] == "py3.11-mxnet"
    monkeypatch.delenv(variants.VARIANT_ENV)
    assert variants.worker_variant() == f"py{MINOR}"


def test_agreement():
    assert variants.disagreements(MINE, dict(MINE)) == []
    patch = dict(MINE, python_version=MINOR + ".999")
    assert variants.disagreements(MINE, patch) == []  # only the minor matters
    variants.check_agreement("fn", dict(MINE, variant=f"py{MINOR}"))
    other = dict(MINE, cloudpickle_version="2.2.1", variant=f"py{MINOR}")
    with pytest.raises(ConfigError) as info:
        variants.check_agreement("fn", other)
    text = str(info.value)
    assert "'fn'" in text and "cloudpickle 2.2.1" in text and cloudpickle.__version__ in text
    assert f"'py{MINOR}'" in text


def test_an_mxnet_worker_keeps_its_flavour_in_the_advice():
    worker = dict(MINE, python_version="3.9.1", variant="py3.9-mxnet")
    with pytest.raises(ConfigError) as info:
        variants.check_agreement("fn", worker)
    text = str(info.value)
    if MINOR in ("3.10", "3.11"):
        assert f"'py{MINOR}-mxnet'" in text
    else:
        assert "run the driver on Python 3.11" in text
