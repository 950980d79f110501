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

EXTRAS = {
    # Decoding and plotting for the video pipelines.
    "video": ["av>=12", "matplotlib>=3.5"],
    # MXNet 1.9.1 is the last release; it needs numpy < 1.24 (np.bool etc.).
    "mxnet": ["mxnet==1.9.1", "numpy<1.24"],
    # The Lambda backend, S3 store, deploy.
    "aws": ["boto3>=1.26"],
    # face_recognition's models used through dlib directly (dlib-bin is a prebuilt
    # wheel; the face-recognition package itself would compile dlib from source).
    "faces": ["dlib-bin>=19.24", "face-recognition-models>=0.3", "Pillow>=9", "setuptools<82"],
    # Tests and local AWS stand-ins.
    "dev": [
        "pytest>=7",
        "pytest-timeout>=2",
        "moto[server]>=5",
        "awslambdaric>=2",
        "boto3>=1.26",
        "psutil>=5",
        "ruff>=0.4",
    ],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})

setup(
    name="lambdaflow",
    version=VERSION,
    description="A Ray-style distributed dataflow runtime for Python on AWS Lambda",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["lambdaflow", "lambdaflow.*"]),
    ext_modules=[
        Extension(
            "lambdaflow._native",
            sources=["native/histogram.c"],
            extra_compile_args=["-O3"],
        )
    ],
    install_requires=["cloudpickle>=2.2", "msgpack>=1.0", "numpy>=1.21", "tqdm>=4.60"],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["lambdaflow=lambdaflow.cli:main"]},
)
