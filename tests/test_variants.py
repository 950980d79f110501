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
