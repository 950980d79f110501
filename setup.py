"""Packaging for lambdaflow.

The native histogram kernel (native/histogram.c) is built as the extension module
``lambdaflow._native`` with the plain setuptools C toolchain; it uses only the Python
buffer protocol, so building it needs no numpy headers.
"""

from __future__ import annotations

import re
from pathlib import Path

from setuptools import Extension, find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (HERE / "lambdaflow" / "_version.py").read_text(), re.M
).group(1)

# Lower bounds are the oldest releases that install and pass on the oldest supported
# Python (3.11, binary wheels); `make test-lowest` checks them (uv --resolution
# lowest-direct). Upper bounds only where a release is known to break us, with the reason.
EXTRAS = {
    # Decoding and plotting for the video pipelines. av 14: on 12 and 13 the fused
    # histogram's gbrp reformat differs from the rgb24 decode (tests/ops/test_histogram.py).
    # matplotlib 3.6: the first release with cp311 wheels.
    "video": ["av>=14", "matplotlib>=3.6"],
    # MXNet 1.9.1 is the last release; it needs numpy < 1.24 (np.bool etc.).
    "mxnet": ["mxnet==1.9.1", "numpy<1.24"],
    # The Lambda backend, S3 store, deploy. 1.38.20: the S3 store reads bodies with
    # StreamingBody.readinto (botocore 1.38.20). EXTRAS stays a literal:
    # tests/test_worker_image.py reads it with ast.literal_eval.
    "aws": ["boto3>=1.38.20"],
    # face_recognition's models used through dlib directly (dlib-bin is a prebuilt
    # wheel; the face-recognition package itself would compile dlib from source).
    # face_recognition_models imports pkg_resources, which setuptools 82 removed; 66.1 is
    # the first whose pkg_resources imports on Python 3.12+. Pillow 9.2: first cp311 wheels.
    "faces": [
        "dlib-bin>=19.24.2",
        "face-recognition-models>=0.3",
        "Pillow>=9.2",
        "setuptools>=66.1,<82",
    ],
    # Tests, lint, types and the local AWS stand-ins.
    "dev": [
        "pytest>=7",
        "pytest-timeout>=2",
        "moto[server]>=5.1.9",  # S3 event notifications URL-encode keys, as AWS does
        "awslambdaric>=2.0.4",  # the first release with wheels (older ones build libcurl)
        "boto3>=1.38.20",  # as in "aws"
        "psutil>=5.9.4",  # the first release with cp311 wheels
        "ruff>=0.4",
        "mypy>=1.10",
    ],
}

setup(
    name="lambdaflow",
    version=VERSION,
    description="A Ray-style distributed dataflow runtime for Python on AWS Lambda",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    # typing.Self and the stdlib of 3.11; CI runs 3.11 and 3.13.
    python_requires=">=3.11",
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.13",
        "Operating System :: POSIX :: Linux",
    ],
    packages=find_packages(include=["lambdaflow", "lambdaflow.*"]),
    ext_modules=[
        Extension(
            "lambdaflow._native",
            sources=["native/histogram.c", "native/banded.c", "native/yuv_hist.c"],
            depends=["native/banded.h"],
            extra_compile_args=["-O3"],
        )
    ],
    install_requires=[
        "cloudpickle>=2.2",
        "msgpack>=1.0.5",  # the first release with cp311 wheels
        "numpy>=1.23.2",  # the first release with cp311 wheels
        "tqdm>=4.60",
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["lambdaflow=lambdaflow.cli:main"]},
)
