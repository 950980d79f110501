"""Write the hashed lock file of every worker image variant, with uv.

    python worker_image/make_locks.py [VARIANT ...]

For each variant of ``lambdaflow.variants.VARIANTS``: the requirements of setup.py's
extras the variant installs (plus ``al2023-runtime.in`` on the provided.al2023 bases),
resolved for the image's platform (CPython of the variant's minor, manylinux of the base's
glibc, x86_64) with every artifact's sha256, into ``worker_image/locks/<variant>.txt``.
The Dockerfiles and ``check_image.py`` install those files with ``pip install
--require-hashes``. Needs uv (``pip install uv``) and the package index.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from lambdaflow.variants import VARIANTS, Variant  # noqa: E402

RUNTIME_IN = "worker_image/al2023-runtime.in"


def uv_command(variant: Variant, uv: str) -> list[str]:
    glibc = "_".join(map(str, variant.glibc))
    cmd = [uv, "pip", "compile", "--no-python-downloads", "setup.py"]
    if variant.dockerfile == "Dockerfile.al2023":
        cmd.append(RUNTIME_IN)
    for extra in variant.extras:
        cmd += ["--extra", extra]
    return cmd + [
        "--python-version", variant.python,
        "--python-platform", f"x86_64-manylinux_{glibc}",
        "--generate-hashes",
        "--custom-compile-command", f"python worker_image/make_locks.py {variant.name}",
        "-o", f"worker_image/{variant.lock_file}",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--uv", default=shutil.which("uv") or "uv")
    args = parser.parse_args(argv)
    (HERE / "locks").mkdir(exist_ok=True)
    for name in args.variants:
        cmd = uv_command(VARIANTS[name], args.uv)
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
