"""lambdaflow.variants: the worker image that can run this driver's tasks (13.5, 13.6)."""

from __future__ import annotations

import pytest

from lambdaflow import variants
from lambdaflow.errors import ConfigError


@pytest.mark.parametrize("python, mxnet, name", [
    ("3.11.7", False, "py3.11"), ("3.11.7", True, "mxnet-py3.11"),
    ("3.12.1", False, "py3.12"), ("3.12.1", True, "py3.12"),  # no MXNet on 3.12
    ("3.13.0", False, "py3.13"),
])  # fmt: skip
def test_driver_variant_matches_the_python_minor(python, mxnet, name):
    assert variants.driver_variant(python, mxnet=mxnet).name == name


def test_an_unsupported_python_is_a_clear_error():
    with pytest.raises(ConfigError, match="no worker image variant runs Python 3.10"):
        variants.driver_variant("3.10.13", mxnet=False)


def test_a_variant_of_another_python_is_refused():
    with pytest.raises(ConfigError, match="runs Python 3.13, this driver runs Python 3.11"):
        variants.check_variant_matches(variants.get_variant("py3.13"), "3.11.7")
    variants.check_variant_matches(variants.get_variant("mxnet-py3.11"), "3.11.7")
    with pytest.raises(ConfigError, match="unknown image variant"):
        variants.get_variant("py2.7")


def test_image_tags_and_files():
    v = variants.get_variant("py3.12")
    assert v.image_tag("0.1.0") == "0.1.0-py3.12" and v.lock_file == "locks/py3.12.txt"
    assert set(variants.BASE_DIGESTS) == {x.base for x in variants.VARIANTS.values()}


# ------------------------------------------------------------- driver/worker agreement

import platform  # noqa: E402

import cloudpickle  # noqa: E402

from lambdaflow._version import __version__  # noqa: E402

MINE = {"lambdaflow_version": __version__, "python_version": platform.python_version(),
        "cloudpickle_version": cloudpickle.__version__}
MINOR = ".".join(platform.python_version_tuple()[:2])


def test_worker_variant_comes_from_the_image(monkeypatch):
    monkeypatch.setenv(variants.VARIANT_ENV, "mxnet-py3.11")
    assert variants.runtime_versions()["variant"] == "mxnet-py3.11"
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
    worker = dict(MINE, python_version="3.9.1", variant="mxnet-py3.11")
    with pytest.raises(ConfigError) as info:
        variants.check_agreement("fn", worker)
    text = str(info.value)
    if MINOR == "3.11":
        assert "'mxnet-py3.11'" in text
    else:
        assert "run the driver on Python 3.11" in text
