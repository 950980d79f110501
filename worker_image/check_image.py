"""Check a worker image variant without a Docker engine.

The Dockerfiles cannot be built here, so this script checks what they would do, step by
step, from the same files (variants in ``lambdaflow/variants.py``):

1. **lint** the variant's Dockerfile (``dockerfile_lint.py``): the base as an ``ARG`` the
   build script pins by digest, ``LAMBDAFLOW_IMAGE_VARIANT``, the lock installed with
   ``--require-hashes``, lambdaflow with ``--no-deps``, gcc, the handler in ``CMD`` (and
   ``awslambdaric`` as the entry point on provided.al2023);
2. **platform**: every pin of ``locks/<variant>.txt`` has a wheel for the image (CPython of
   the variant's minor, manylinux of Amazon Linux 2023's glibc 2.34), asked of pip with
   ``--dry-run --platform``; pure-Python sdists (``SDIST_ONLY``) are allowed;
3. **install** into a clean virtual environment of the variant's Python (from pyenv, or
   ``--python``): ``pip install --require-hashes -r locks/<variant>.txt``, then a staged
   copy of lambdaflow with the Dockerfile's flags, which builds the native kernel; then
   ``pip check``;
4. **handler**: in that environment, with ``LAMBDAFLOW_IMAGE_VARIANT`` set as the image
   sets it, import the extras' modules and ``lambdaflow._native``, call the handler with
   the version ping (lambdaflow version, the variant's Python, and the image variant when
   the ping reports one) and with a real histogram task.

Usage: ``python worker_image/check_image.py [--variant NAME | --all] [--python PY]
[--keep] [--skip-platform]``; exit code 0 when every step passes for every variant asked.
Needs the package index (or a warm pip cache) and a C compiler.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from dockerfile_lint import lint  # noqa: E402

from lambdaflow.variants import VARIANTS, Variant, driver_variant  # noqa: E402

#: Requirements published as pure-Python sdists only (no wheel to check for a platform).
SDIST_ONLY = {"face-recognition-models"}
#: Modules of the extras every variant installs; the worker must import them all.
EXTRA_MODULES = (
    "av", "matplotlib", "numpy", "dlib", "face_recognition_models", "PIL", "boto3",
    "cloudpickle", "msgpack",
)  # fmt: skip


def modules_of(variant: Variant) -> list[str]:
    extra = ["mxnet"] if "mxnet" in variant.extras else []
    if variant.dockerfile == "Dockerfile.al2023":
        extra.append("awslambdaric")
    return [*EXTRA_MODULES, *extra]


def lock_pins(text: str) -> dict[str, str]:
    """``{normalized name: version}`` of a uv lock file; every pin must carry a hash."""
    pins: dict[str, str] = {}
    current = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip() if not raw.strip().startswith("--hash") else raw
        if not line.strip():
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;\\]+)\s*\\?", line.strip())
        if match:
            current = normalize(match.group(1))
            pins[current] = match.group(2)
            continue
        if line.strip().startswith("--hash=sha256:") and current:
            pins.setdefault(f"{current}#hashed", "1")
            continue
        raise ValueError(f"{line.strip()!r} is not a name==version pin of a hashed lock")
    unhashed = [n for n in pins if "#" not in n and f"{n}#hashed" not in pins]
    if unhashed:
        raise ValueError(f"pins without --hash: {', '.join(unhashed)}")
    return {n: v for n, v in pins.items() if "#" not in n}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def platform_args(variant: Variant) -> list[str]:
    """pip ``--platform`` flags for every manylinux tag the base image's glibc accepts."""
    major, minor = variant.glibc
    tags = [f"manylinux_{major}_{m}_x86_64" for m in range(minor, 4, -1)]
    tags += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    args: list[str] = []
    for tag in tags:
        args += ["--platform", tag]
    return args + ["--python-version", variant.python, "--implementation", "cp"]


def check_platform(python: str, variant: Variant, workdir: Path) -> list[str]:
    """The pins that have no wheel for the image's platform (empty when all do)."""
    pins = lock_pins((HERE / variant.lock_file).read_text())
    wheels = [f"{n}=={v}" for n, v in pins.items() if n not in SDIST_ONLY]
    cmd = [
        python, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps",
        "--only-binary=:all:", "--target", str(workdir / "platform-target"),
        *platform_args(variant),
    ]  # fmt: skip
    # All pins in one resolver run (pip starts once: ~4 s, not ~4 s a pin); only when
    # that fails, one at a time, so the message names each failing pin.
    if subprocess.run([*cmd, *wheels], check=False, capture_output=True).returncode == 0:
        return []
    bad: list[str] = []
    for req in wheels:
        proc = subprocess.run([*cmd, req], check=False, capture_output=True, text=True)
        if proc.returncode != 0:
            bad.append(req)
    return bad


def find_python(version: str, explicit: str | None) -> str:
    """An interpreter of ``version``: given, this one, pyenv's, or pythonX.Y on PATH."""
    if explicit:
        return explicit
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    found = sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}"))
    found = found or ([shutil.which(f"python{version}")] if shutil.which(f"python{version}") else [])
    if not found:
        raise SystemExit(
            f"check_image: the image runs Python {version} but neither this interpreter "
            f"({sys.version.split()[0]}), pyenv nor python{version} has it; pass --python PATH"
        )
    return str(found[-1])


def stage_source(dest: Path) -> Path:
    """Copy what the Dockerfile copies (no bytecode, no built extension modules)."""
    dest.mkdir(parents=True)
    for name in ("setup.py", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so")
    shutil.copytree(ROOT / "native", dest / "native", ignore=ignore)
    shutil.copytree(ROOT / "lambdaflow", dest / "lambdaflow", ignore=ignore)
    return dest


SMOKE = r"""
import importlib, json, sys
for name in sys.argv[2].split(","):
    importlib.import_module(name)
import lambdaflow._native
module_name, _, attr = sys.argv[1].rpartition(".")
handler = getattr(importlib.import_module(module_name), attr)

class Context:
    function_name = "lambdaflow-check"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:lambdaflow-check"
    memory_limit_in_mb = "1769"
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/lambdaflow-check"
    log_stream_name = "check"
    def get_remaining_time_in_millis(self):
        return 900000

reply = handler({"lambdaflow": "ping"}, Context())
import os
variant_env = os.environ.get("LAMBDAFLOW_IMAGE_VARIANT")

# A real task through the handler: a histogram of a generated video's first chunk, with
# the image's own PyAV (its variant's lock, worker_image/locks/<variant>.txt, which may
# pin another release than the CI environment's).
import base64, tempfile
from lambdaflow import serialization
from lambdaflow.ops import video
from lambdaflow.ops.histogram import histogram_chunk
from lambdaflow.ops.samplevideo import write_sample_video
from lambdaflow.runtime import integrity, keys
from lambdaflow.runtime.store.localdir import LocalDirStore
from lambdaflow.runtime.task import TaskMessage, TaskResult

work = tempfile.mkdtemp(prefix="lambdaflow-check-")
path = work + "/sample.mp4"
write_sample_video(path, seconds=2, width=160, height=120, fps=30, gop=30)
chunk = video.plan_chunks(video.probe(path), 50).chunks[0]

def pixels_counted(p, start, stop):
    return int(histogram_chunk(p, start, stop, 16).hist.sum())

job_key = integrity.new_job_key()  # the worker checks stored blobs under it
store = integrity.SignedStore(LocalDirStore(work + "/store"), job_key)
digest, fn = serialization.dumps_function(pixels_counted)
fn_key = keys.function_key("check", digest)
store.put(fn_key, fn)
msg = TaskMessage(job_id="check", task_id="t0", name="pixels_counted", fn_key=fn_key,
                  args=serialization.dumps_bytes(((path, chunk.start, chunk.stop), {})),
                  store_uri=store.uri, job_key=job_key)
out = handler({"lf": 1, "task": base64.b64encode(msg.pack()).decode()}, Context())
res = TaskResult.unpack(base64.b64decode(out["result"]))
counted = serialization.loads(res.values[0]["inline"]) if res.status == "ok" else None
expected = (chunk.stop - chunk.start) * 160 * 120 * 3
task = {"status": res.status, "counted": counted, "expected": expected,
        "error": (res.error or {}).get("message"), "av": __import__("av").__version__}
print(json.dumps({"reply": reply, "module": lambdaflow.__file__, "task": task,
                  "variant_env": variant_env}))
"""


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    shown = ["<smoke script>" if a == SMOKE else a for a in cmd]
    print("  $", " ".join(shown)[:300], flush=True)
    return subprocess.run(cmd, check=True, **kwargs)


def check(
    variant: Variant, python: str | None = None, keep: bool = False,
    skip_platform: bool = False,
) -> int:  # fmt: skip
    print(f"== variant {variant.name} (Python {variant.python}, {variant.base})")
    dockerfile = HERE / variant.dockerfile
    facts, problems = lint(dockerfile.read_text(), base=variant.base, python=variant.python)
    for problem in problems:
        print(f"FAIL lint: {dockerfile}: {problem}")
    if facts is None:
        return 1
    print(f"ok   lint: {variant.dockerfile}: FROM {facts.base_default}, CMD {facts.handler}")
    lock = HERE / variant.lock_file
    try:
        pins = lock_pins(lock.read_text())
    except (OSError, ValueError) as exc:
        print(f"FAIL lock: {lock}: {exc}; regenerate with worker_image/make_locks.py")
        return 1
    print(f"ok   lock: {len(pins)} hashed pins in {variant.lock_file}")
    interpreter = find_python(variant.python, python)
    workdir = Path(tempfile.mkdtemp(prefix="lambdaflow-image-check-"))
    try:
        if not skip_platform:
            bad = check_platform(interpreter, variant, workdir)
            if bad:
                print(
                    f"FAIL platform: no cp{variant.python.replace('.', '')} wheel for "
                    f"glibc {'.'.join(map(str, variant.glibc))}: {', '.join(bad)}"
                )
                return 1
            print(f"ok   platform: every pin has a wheel for {variant.base}")
        venv = workdir / "venv"
        run([interpreter, "-m", "venv", str(venv)])
        py = str(venv / "bin" / "python")
        env = {
            k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")
        }
        env["LAMBDAFLOW_IMAGE_VARIANT"] = variant.name  # as the Dockerfile's ENV
        pip = [py, "-m", "pip", "--disable-pip-version-check", "install", "--quiet"]
        run([*pip, "--require-hashes", "-r", str(lock)], env=env)
        src = stage_source(workdir / "src")
        run([*pip, "--no-deps", "--no-build-isolation", str(src)], env=env)
        run([py, "-m", "pip", "check"], env=env)
        print("ok   install: lock (--require-hashes) + lambdaflow (native kernel), pip check")
        proc = run(
            [py, "-c", SMOKE, facts.handler, ",".join(modules_of(variant))],
            env=env, cwd=workdir, capture_output=True, text=True,
        )  # fmt: skip
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        return _check_reply(result, variant, venv)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or "").strip().splitlines()[-5:] if exc.stderr else []
        shown = " ".join("<smoke script>" if a == SMOKE else str(a) for a in exc.cmd)
        print(f"FAIL: {shown[:300]} exited {exc.returncode}")
        for line in detail:
            print(f"     {line}")
        return 1
    finally:
        if keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _check_reply(result: dict, variant: Variant, venv: Path) -> int:
    reply, module = result["reply"], result["module"]
    expected = re.search(
        r'__version__ = "([^"]+)"', (ROOT / "lambdaflow" / "_version.py").read_text()
    ).group(1)
    failures = []
    if not str(module).startswith(str(venv)):
        failures.append(f"lambdaflow was imported from {module}, not from the clean venv")
    if result.get("variant_env") != variant.name:
        failures.append(f"LAMBDAFLOW_IMAGE_VARIANT is {result.get('variant_env')!r}")
    if not isinstance(reply, dict):
        failures.append(f"the ping reply is {reply!r}, not a dict")
    else:
        if reply.get("lambdaflow_version") != expected:
            failures.append(
                f"lambdaflow_version {reply.get('lambdaflow_version')!r} != {expected!r}"
            )
        got = ".".join(str(reply.get("python_version", "")).split(".")[:2])
        if got != variant.python:
            failures.append(
                f"python_version {reply.get('python_version')!r} is not {variant.python}.x"
            )
        if reply.get("image_variant", variant.name) != variant.name:
            failures.append(f"the ping reports image variant {reply['image_variant']!r}")
    task = result.get("task") or {}
    if task.get("status") != "ok" or task.get("counted") != task.get("expected"):
        failures.append(f"a histogram task through the handler gave {task!r}")
    for failure in failures:
        print(f"FAIL handler: {failure}")
    if not failures:
        print(f"ok   handler: ping -> {json.dumps(reply)}")
        print(f"ok   handler: histogram task on PyAV {task.get('av')} -> "
              f"{task.get('counted')} pixels counted")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--variant", choices=list(VARIANTS),
                       help="the variant to check (default: the one of this Python)")
    which.add_argument("--all", action="store_true", help="check every variant")
    parser.add_argument("--python", help="interpreter of the variant's Python version")
    parser.add_argument("--keep", action="store_true", help="keep the temp venv")
    parser.add_argument(
        "--skip-platform", action="store_true",
        help="skip the image-platform wheel check (no index access)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.all:
        chosen = list(VARIANTS.values())
    else:
        chosen = [VARIANTS[args.variant] if args.variant else driver_variant(mxnet=False)]
    failed = [v.name for v in chosen if check(v, args.python, args.keep, args.skip_platform)]
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
