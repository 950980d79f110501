"""worker_image/: the Dockerfile's basics (fast) and, marked slow, the image check that runs
without Docker: the Dockerfile's requirements in a clean venv, then the handler's ping."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
IMAGE_DIR = ROOT / "worker_image"
WORKER_EXTRAS = ("video", "mxnet", "faces", "aws")


def _load_check_image():
    spec = importlib.util.spec_from_file_location(
        "check_image", IMAGE_DIR / "check_image.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up
    spec.loader.exec_module(module)
    return module


check_image = _load_check_image()


def _setup_requirements() -> list[str]:
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
    return install + [req for extra in WORKER_EXTRAS for req in extras[extra]]


def test_dockerfile_basics():
    facts, problems = check_image.parse_dockerfile(
        (IMAGE_DIR / "Dockerfile").read_text()
    )
    assert problems == []
    assert facts.base_image == "public.ecr.aws/lambda/python:3.11"
    assert facts.python_version == "3.11"
    assert facts.handler == "lambdaflow.runtime.lambda_entry.lambda_handler"


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (
            lambda t: t.replace(
                "public.ecr.aws/lambda/python:3.11", "python:3.11-slim"
            ),
            "Lambda Python base",
        ),
        (
            lambda t: t.replace("lambda_entry.lambda_handler", "app.handler"),
            "CMD names",
        ),
        (lambda t: t.replace("CMD [", "# CMD ["), "exactly one CMD"),
        (
            lambda t: t.replace(
                "-r /tmp/lambdaflow/worker_image/requirements.txt", "numpy"
            ),
            "requirements.txt",
        ),
        (lambda t: t.replace("yum install -y gcc", "true"), "gcc"),
    ],
)
def test_dockerfile_lint_catches(edit, fragment):
    text = edit((IMAGE_DIR / "Dockerfile").read_text())
    _, problems = check_image.parse_dockerfile(text)
    assert any(fragment in p for p in problems), problems


def test_requirements_are_pinned_and_satisfy_setup_py():
    pins = check_image.requirement_pins((IMAGE_DIR / "requirements.txt").read_text())
    for line in _setup_requirements():
        req = Requirement(line)
        name = check_image.normalize(req.name)
        assert name in pins, f"worker_image/requirements.txt has no pin for {line}"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"worker_image/requirements.txt pins {name}=={pins[name]}, setup.py wants {line}"
        )


def test_unpinned_requirement_is_refused():
    with pytest.raises(ValueError, match="not pinned"):
        check_image.requirement_pins("numpy>=1.21\n")


def test_platform_flags_cover_older_manylinux():
    args = check_image.platform_args("3.11")
    assert "manylinux_2_26_x86_64" in args and "manylinux2014_x86_64" in args
    assert "manylinux_2_28_x86_64" not in args  # python:3.11 is Amazon Linux 2


def test_build_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(IMAGE_DIR / "build_and_push.sh")], check=True)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_image_check_installs_and_pings_the_handler():
    if not (ROOT / "lambdaflow" / "runtime" / "lambda_entry.py").exists():
        pytest.skip("lambdaflow/runtime/lambda_entry.py is not written yet")
    proc = subprocess.run(
        [sys.executable, str(IMAGE_DIR / "check_image.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    report = [line for line in proc.stdout.splitlines() if line[:4] in ("ok  ", "FAIL")]
    assert proc.returncode == 0, "\n".join(report) + "\n" + proc.stdout[-3000:]
    assert any(line.startswith("ok   handler: ping") for line in report)
