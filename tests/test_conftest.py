"""The suite's own gates (tests/conftest.py), run in child processes with faults injected:
a lambda backend that does not import is an error unless LAMBDAFLOW_TEST_LAMBDA=0,
``--require-mxnet`` fails where MXNet does not import or an ``mxnet`` test skips, and
``--skip-once-per-ci`` skips only the ``once_per_ci`` tests, saying where they ran;
``--cpu-top`` prints the CPU table (tests/cputime.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Makes `import lambdaflow.testing.aws_local` fail the way a missing moto/boto3 would.
BLOCK_AWS_LOCAL = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "lambdaflow.testing.aws_local":
            raise ImportError("No module named 'moto' (injected)")
sys.meta_path.insert(0, Block())
"""


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_lambda_backend_that_does_not_import_is_an_error():
    out = _python(BLOCK_AWS_LOCAL + "import tests.conftest")
    assert out.returncode != 0
    assert "the conformance suite's lambda backend does not import" in out.stderr
    assert "No module named 'moto' (injected)" in out.stderr
    assert "LAMBDAFLOW_TEST_LAMBDA=0" in out.stderr


def test_lambdaflow_test_lambda_0_leaves_it_out():
    code = BLOCK_AWS_LOCAL + "import tests.conftest as c; print(c.BACKENDS)"
    out = _python(code, LAMBDAFLOW_TEST_LAMBDA="0")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['threads', 'processes']"


def test_the_lambda_backend_is_in_the_suite():
    out = _python("import tests.conftest as c; print(c.BACKENDS)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['threads', 'processes', 'lambda']"


def _run_pytest(
    tmp_path: Path, tests: str, *args: str, mxnet: str | None
) -> subprocess.CompletedProcess[str]:
    """pytest in tmp_path with our conftest's hooks; ``mxnet`` is the source of a stand-in
    mxnet package put first on the path (None: the environment's own, if any)."""
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import (NEEDS_MXNET, pytest_addoption,  # noqa\n"
        "    pytest_collection_modifyitems, pytest_configure)\n"
    )
    (tmp_path / "test_it.py").write_text(textwrap.dedent(tests))
    path = [str(ROOT)]
    if mxnet is not None:
        (tmp_path / "fake" / "mxnet").mkdir(parents=True)
        (tmp_path / "fake" / "mxnet" / "__init__.py").write_text(mxnet)
        path.insert(0, str(tmp_path / "fake"))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(path), "LAMBDAFLOW_TEST_LAMBDA": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )


MXNET_TESTS = """
    import pytest

    @pytest.mark.mxnet
    def test_runs():
        pass

    @pytest.mark.mxnet
    def test_skips():
        pytest.skip("no GPU")

    def test_other_skips():
        pytest.skip("not an mxnet test")
"""


def test_require_mxnet_fails_when_an_mxnet_test_skips(tmp_path):
    out = _run_pytest(tmp_path, MXNET_TESTS, "--require-mxnet", mxnet="")
    assert out.returncode == 1, out.stdout + out.stderr
    listed = [ln for ln in out.stdout.splitlines() if ln.startswith("skipped, but MXNet")]
    assert listed == ["skipped, but MXNet is required: test_it.py::test_skips"]


def test_without_require_mxnet_skips_are_skips(tmp_path):
    out = _run_pytest(tmp_path, MXNET_TESTS, mxnet="")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed, 2 skipped" in out.stdout


def test_require_mxnet_where_mxnet_does_not_import(tmp_path):
    broken = "raise AttributeError(\"module 'numpy' has no attribute 'bool'\")\n"
    out = _run_pytest(tmp_path, MXNET_TESTS, "--require-mxnet", mxnet=broken)
    assert out.returncode == pytest.ExitCode.USAGE_ERROR, out.stdout + out.stderr
    assert "--require-mxnet: MXNet does not import (AttributeError" in out.stderr


def test_an_mxnet_module_skips_with_the_reason_where_mxnet_is_missing(tmp_path):
    module = """
        import pytest

        from tests.conftest import NEEDS_MXNET

        pytestmark = pytest.mark.mxnet
        mx = pytest.importorskip("mxnet", reason=NEEDS_MXNET)

        def test_uses_mxnet():
            pass
    """
    missing = "raise ModuleNotFoundError(\"No module named 'mxnet'\", name='mxnet')\n"
    out = _run_pytest(tmp_path, module, "-rs", mxnet=missing)
    assert "needs MXNet: pip install 'lambdaflow[mxnet]'" in out.stdout
    assert "1 skipped" in out.stdout and "passed" not in out.stdout


ONCE_PER_CI_TESTS = """
    import pytest

    @pytest.mark.once_per_ci
    def test_once(tmp_path):
        pass

    def test_every_suite():
        pass
"""


def test_a_suite_alone_runs_the_once_per_ci_tests(tmp_path):
    out = _run_pytest(tmp_path, ONCE_PER_CI_TESTS, "-rs", mxnet=None)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout and "skipped" not in out.stdout


def test_skip_once_per_ci_skips_them_saying_where_they_ran(tmp_path):
    out = _run_pytest(tmp_path, ONCE_PER_CI_TESTS, "-rs", "--skip-once-per-ci=suite one",
                      mxnet=None)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed, 1 skipped" in out.stdout
    assert "test_it.py:4: once_per_ci: run by suite one" in out.stdout


def test_cpu_top_charges_a_child_process_to_its_test(tmp_path):
    tests = """
        import subprocess, sys

        def test_burns_a_child():
            subprocess.run([sys.executable, "-c", "sum(range(50_000_000))"], check=True)

        def test_idle():
            pass
    """
    out = _run_pytest(tmp_path, tests, "--cpu-top=5", mxnet=None)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [ln.split() for ln in out.stdout.splitlines() if ln.endswith(("_child", "_idle"))]
    assert [r[-1] for r in rows] == ["test_it.py::test_burns_a_child", "test_it.py::test_idle"]
    cpu, own, child = map(float, rows[0][:3])
    assert child >= 0.2 and cpu == pytest.approx(own + child, abs=0.15)
    assert float(rows[1][0]) < child
