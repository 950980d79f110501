"""worker_image/: every variant's Dockerfile, lock and build script (fast) and, marked
slow, the image check that runs without Docker: a variant's hashed lock in a clean venv
of its Python, then the handler's ping and a real task."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
IMAGE_DIR = ROOT / "worker_image"


def _load_check_image():
    spec = importlib.util.spec_from_file_location(
        "check_image", IMAGE_DIR / "check_image.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up
    spec.loader.exec_module(module)
    return module


check_image = _load_check_image()


def _setup_requirements(worker_extras: tuple[str, ...]) -> list[str]:
    """install_requires + the worker extras, read from setup.py's source."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    extras: dict[str, list[str]] = {}
    install: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "EXTRAS" for t in node.targets
        ):
            extras = ast.literal_eval(node.value)
        if isinstance(node, ast.keyword) and node.arg == "install_requires":
            install = ast.literal_eval(node.value)
    assert extras and install, "setup.py: EXTRAS or install_requires not found"
    return install + [req for extra in worker_extras for req in extras[extra]]


VARIANTS = list(check_image.VARIANTS.values())


def _lint(variant, text=None):
    text = text if text is not None else (IMAGE_DIR / variant.dockerfile).read_text()
    return check_image.lint(text, base=variant.base, python=variant.python)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_every_variant_dockerfile_lints(variant):
    facts, problems = _lint(variant)
    assert problems == []
    assert facts.handler == "lambdaflow.runtime.lambda_entry.lambda_handler"
    # Amazon Linux 2023 bases only (python:3.11 was Amazon Linux 2, end of life).
    assert variant.base in ("public.ecr.aws/lambda/python:3.12",
                            "public.ecr.aws/lambda/python:3.13",
                            "public.ecr.aws/lambda/provided:al2023")  # fmt: skip
    assert variant.glibc == (2, 34)


def test_one_variant_per_python_minor_plus_mxnet():
    plain = [v.python for v in VARIANTS if "mxnet" not in v.extras]
    assert sorted(plain) == sorted(set(plain)) == ["3.11", "3.12", "3.13"]
    mx = [v for v in VARIANTS if "mxnet" in v.extras]
    assert [v.python for v in mx] == ["3.11"]  # MXNet 1.9.1: Python <= 3.11


AL2023 = check_image.VARIANTS["mxnet-py3.11"]


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda t: t.replace("FROM ${BASE_IMAGE}", "FROM python:3.11-slim"), "FROM"),
        (lambda t: t.replace("provided:al2023", "provided:al2023@sha256:" + "0" * 64),
         "without a digest"),
        (lambda t: t.replace("lambda_entry.lambda_handler", "app.handler"), "CMD names"),
        (lambda t: t.replace("CMD [", "# CMD ["), "expected one CMD"),
        (lambda t: t.replace("--require-hashes ", ""), "--require-hashes"),
        (lambda t: t.replace("ENV LAMBDAFLOW_IMAGE_VARIANT", "ENV X"),
         "LAMBDAFLOW_IMAGE_VARIANT"),
        (lambda t: t.replace(" gcc", ""), "gcc"),
        (lambda t: t.replace('"/usr/bin/python3.11"', '"/usr/bin/python3.12"'),
         "ENTRYPOINT"),
    ],
)  # fmt: skip
def test_dockerfile_lint_catches(edit, fragment):
    text = edit((IMAGE_DIR / AL2023.dockerfile).read_text())
    _, problems = _lint(AL2023, text)
    assert any(fragment in p for p in problems), problems


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_locks_are_hashed_and_satisfy_setup_py(variant):
    """Each lock pins every requirement of the variant's extras, with hashes, and the
    driver's av / dlib-bin / Pillow releases are no longer held back (AL2023)."""
    pins = check_image.lock_pins((IMAGE_DIR / variant.lock_file).read_text())
    for line in _setup_requirements(variant.extras):
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"python_version": variant.python}):
            continue
        name = check_image.normalize(req.name)
        assert name in pins, f"{variant.lock_file} has no pin for {line}"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{variant.lock_file} pins {name}=={pins[name]}, setup.py wants {line}")
    assert Version(pins["av"]) >= Version("18") and Version(pins["pillow"]) >= Version("13")
    assert Version(pins["dlib-bin"]) >= Version("20")
    assert ("mxnet" in pins) == ("mxnet" in variant.extras)
    assert ("awslambdaric" in pins) == (variant.dockerfile == "Dockerfile.al2023")


def test_unhashed_pin_is_refused():
    with pytest.raises(ValueError, match="without --hash"):
        check_image.lock_pins("numpy==2.0.0\n")
    with pytest.raises(ValueError, match="not a name==version"):
        check_image.lock_pins("numpy>=1.21 \\\n    --hash=sha256:00\n")


def test_platform_flags_are_al2023s_glibc():
    args = check_image.platform_args(check_image.VARIANTS["py3.12"])
    assert "manylinux_2_34_x86_64" in args and "manylinux_2_28_x86_64" in args
    assert "manylinux_2_35_x86_64" not in args


def test_build_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(IMAGE_DIR / "build_and_push.sh")], check=True)


def test_build_script_refuses_an_unpinned_base(tmp_path):
    """No digest verified here (variants.BASE_DIGESTS): the build must refuse to run
    from a moving tag unless told to, before it needs docker or AWS."""
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(tmp_path)}
    proc = subprocess.run(["bash", str(IMAGE_DIR / "build_and_push.sh"), "py3.12"],
                          capture_output=True, text=True, env=env, check=False)  # fmt: skip
    assert proc.returncode == 1
    assert "not pinned by digest" in proc.stderr and "--base-digest" in proc.stderr
    proc = subprocess.run(["bash", str(IMAGE_DIR / "build_and_push.sh"), "py3.12",
                           "--base-digest", "latest"],
                          capture_output=True, text=True, env=env, check=False)  # fmt: skip
    assert proc.returncode == 2 and "not sha256" in proc.stderr


def test_build_script_takes_the_region_from_deploys_settings(tmp_path):
    """It hard-coded us-east-1; now no region is an error, LAMBDAFLOW_REGION is used."""
    text = (IMAGE_DIR / "build_and_push.sh").read_text()
    assert "us-east-1" not in text.split("set -euo pipefail", 1)[1]
    assert 'REGION="${LAMBDAFLOW_REGION:-${AWS_REGION:-${AWS_DEFAULT_REGION:-}}}"' in text


@pytest.mark.slow
@pytest.mark.once_per_ci
@pytest.mark.timeout(2400)
@pytest.mark.parametrize("variant", ["py3.12", "py3.13"])
def test_image_check_installs_the_lock_and_runs_a_task(variant):
    """The check runs in a clean venv of the variant's own Python (pyenv's), whichever
    Python runs the suite, so make test runs it once, in its first suite (once_per_ci).
    py3.12: another Python than any driver's; py3.13: the newest variant."""
    proc = subprocess.run(
        [sys.executable, str(IMAGE_DIR / "check_image.py"), "--variant", variant],
        capture_output=True,
        text=True,
        check=False,
    )
    report = [line for line in proc.stdout.splitlines() if line[:4] in ("ok  ", "FAIL")]
    assert proc.returncode == 0, "\n".join(report) + "\n" + proc.stdout[-3000:]
    assert any(line.startswith("ok   handler: histogram task") for line in report)
