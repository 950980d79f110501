"""Check the worker image without a Docker engine.

The Dockerfile cannot be built here, so this script checks what it would do, step by step,
from the same files:

1. **lint** the Dockerfile: the Lambda Python base image, the handler in ``CMD``, the
   requirements installed from ``worker_image/requirements.txt`` (the file this check
   installs too, so the two cannot drift) and lambdaflow installed with ``--no-deps``;
2. **platform**: every pin in requirements.txt has a wheel for the image (CPython of the
   base image's version, manylinux with the base image's glibc), asked of pip with
   ``--dry-run --platform``; pure-Python sdists (``SDIST_ONLY``) are allowed;
3. **install** into a clean virtual environment in a temp dir: the requirements, then a
   staged copy of lambdaflow (setup.py, README.md, native/, lambdaflow/) with the
   Dockerfile's flags, which builds the native kernel; then ``pip check``;
4. **handler**: in that environment, import the extras' modules and
   ``lambdaflow._native``, import the handler named in ``CMD`` and call it with the version
   ping ``{"lambdaflow": "ping"}``; the reply must carry ``lambdaflow_version`` (this
   repository's) and ``python_version`` (the base image's major.minor).

Usage: ``python worker_image/check_image.py [--python PY] [--keep] [--skip-platform]``;
exit code 0 when every step passes. Needs network access to the package index (or a warm
pip cache) and a C compiler.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOCKERFILE = HERE / "Dockerfile"
REQUIREMENTS = HERE / "requirements.txt"

BASE_IMAGE = "public.ecr.aws/lambda/python"
HANDLER = "lambdaflow.runtime.lambda_entry.lambda_handler"
#: glibc of each Lambda Python base image (python:3.11 is Amazon Linux 2, later AL2023).
BASE_GLIBC = {
    "3.9": (2, 26),
    "3.10": (2, 26),
    "3.11": (2, 26),
    "3.12": (2, 34),
    "3.13": (2, 34),
}
#: Requirements published as pure-Python sdists only (no wheel to check for a platform).
SDIST_ONLY = {"face-recognition-models"}
#: Modules the extras video, mxnet, faces and aws provide; the worker must import them all.
EXTRA_MODULES = (
    "av",
    "matplotlib",
    "mxnet",
    "numpy",
    "dlib",
    "face_recognition_models",
    "PIL",
    "boto3",
    "cloudpickle",
    "msgpack",
)


@dataclass(frozen=True)
class DockerfileFacts:
    base_image: str
    python_version: str  # "3.11"
    handler: str


def parse_dockerfile(text: str) -> tuple[DockerfileFacts | None, list[str]]:
    """The base image, Python version and handler of a Dockerfile, and what is wrong."""
    problems: list[str] = []
    lines = _logical_lines(text)
    froms = [line.split()[1] for line in lines if line.upper().startswith("FROM ")]
    cmds = [line[4:].strip() for line in lines if line.upper().startswith("CMD ")]
    runs = [line[4:].strip() for line in lines if line.upper().startswith("RUN ")]
    if len(froms) != 1:
        problems.append(f"expected exactly one FROM line, found {len(froms)}")
        return None, problems
    image, _, tag = froms[0].partition(":")
    if image != BASE_IMAGE or not re.fullmatch(r"3\.\d+", tag):
        problems.append(
            f"FROM {froms[0]}: expected {BASE_IMAGE}:3.X (the Lambda Python base)"
        )
    handler = ""
    if len(cmds) != 1:
        problems.append(f"expected exactly one CMD line, found {len(cmds)}")
    else:
        try:
            cmd = json.loads(cmds[0])
        except json.JSONDecodeError:
            cmd = None
        if not (isinstance(cmd, list) and len(cmd) == 1):
            problems.append(f'CMD {cmds[0]}: expected the exec form ["{HANDLER}"]')
        else:
            handler = cmd[0]
            if handler != HANDLER:
                problems.append(
                    f"CMD names {handler!r}; the worker handler is {HANDLER!r}"
                )
    if not any(
        "pip install" in r and "-r" in r and "worker_image/requirements.txt" in r
        for r in runs
    ):
        problems.append("no RUN pip install -r .../worker_image/requirements.txt")
    if not any(
        "pip install" in r and "--no-deps" in r and "requirements.txt" not in r
        for r in runs
    ):
        problems.append("no RUN pip install --no-deps of lambdaflow itself")
    if not any(re.search(r"\b(yum|dnf) install\b.*\bgcc\b", r) for r in runs):
        problems.append(
            "no RUN yum/dnf install gcc (the native kernel needs a C compiler)"
        )
    facts = DockerfileFacts(froms[0], tag, handler) if not problems else None
    return facts, problems


def _logical_lines(text: str) -> list[str]:
    """Dockerfile instructions with continuations joined and comments dropped."""
    out: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        out.append(current + line)
        current = ""
    if current:
        out.append(current)
    return out


def requirement_pins(text: str) -> dict[str, str]:
    """``{normalized name: version}`` of a requirements file with ``name==version`` lines."""
    pins: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if not match:
            raise ValueError(f"{REQUIREMENTS}: {line!r} is not pinned as name==version")
        pins[normalize(match.group(1))] = match.group(2)
    return pins


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def platform_args(python_version: str) -> list[str]:
    """pip ``--platform`` flags for every manylinux tag the base image's glibc accepts."""
    major, minor = BASE_GLIBC.get(python_version, (2, 26))
    tags = [f"manylinux_{major}_{m}_x86_64" for m in range(minor, 4, -1)]
    tags += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    args: list[str] = []
    for tag in tags:
        args += ["--platform", tag]
    return args + ["--python-version", python_version, "--implementation", "cp"]


def check_platform(python: str, python_version: str, workdir: Path) -> list[str]:
    """The pins that have no wheel for the image's platform (empty when all do)."""
    pins = requirement_pins(REQUIREMENTS.read_text())
    wheels = [
        f"{name}=={version}" for name, version in pins.items() if name not in SDIST_ONLY
    ]
    cmd = [
        python,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--target",
        str(workdir / "platform-target"),
        *platform_args(python_version),
    ]
    bad: list[str] = []
    for req in wheels:  # one at a time, so the message names each failing pin
        proc = subprocess.run([*cmd, req], check=False, capture_output=True, text=True)
        if proc.returncode != 0:
            bad.append(req)
    return bad


def find_python(version: str, explicit: str | None) -> str:
    if explicit:
        return explicit
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    found = shutil.which(f"python{version}")
    if not found:
        raise SystemExit(
            f"check_image: the image runs Python {version} but neither this interpreter "
            f"({sys.version.split()[0]}) nor python{version} is available; pass --python PATH"
        )
    return found


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

# A real task through the handler: a histogram of a generated video's first chunk, with
# the image's own PyAV (it differs from CI's: see requirements.txt).
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
print(json.dumps({"reply": reply, "module": lambdaflow.__file__, "task": task}))
"""


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    shown = ["<smoke script>" if a == SMOKE else a for a in cmd]
    print("  $", " ".join(shown)[:300], flush=True)
    return subprocess.run(cmd, check=True, **kwargs)


def check(
    python: str | None = None, keep: bool = False, skip_platform: bool = False
) -> int:
    facts, problems = parse_dockerfile(DOCKERFILE.read_text())
    for problem in problems:
        print(f"FAIL lint: {DOCKERFILE}: {problem}")
    if facts is None:
        return 1
    print(f"ok   lint: FROM {facts.base_image}, CMD {facts.handler}")
    interpreter = find_python(facts.python_version, python)
    workdir = Path(tempfile.mkdtemp(prefix="lambdaflow-image-check-"))
    try:
        if not skip_platform:
            bad = check_platform(interpreter, facts.python_version, workdir)
            if bad:
                print(
                    f"FAIL platform: no cp{facts.python_version.replace('.', '')} wheel for "
                    f"the base image's glibc: {', '.join(bad)}; pin a release with a "
                    f"manylinux2014 wheel in {REQUIREMENTS}"
                )
                return 1
            print(f"ok   platform: every pin has a wheel for {facts.base_image}")
        venv = workdir / "venv"
        run([interpreter, "-m", "venv", str(venv)])
        py = str(venv / "bin" / "python")
        env = {
            k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")
        }
        pip = [py, "-m", "pip", "--disable-pip-version-check", "install", "--quiet"]
        run([*pip, "-r", str(REQUIREMENTS)], env=env)
        src = stage_source(workdir / "src")
        run([*pip, "--no-deps", "--no-build-isolation", str(src)], env=env)
        run([py, "-m", "pip", "check"], env=env)
        print(
            "ok   install: requirements + lambdaflow (native kernel built), pip check"
        )
        proc = run(
            [py, "-c", SMOKE, facts.handler, ",".join(EXTRA_MODULES)],
            env=env,
            cwd=workdir,
            capture_output=True,
            text=True,
        )
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        return _check_reply(result, facts.python_version, venv)
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


def _check_reply(result: dict, python_version: str, venv: Path) -> int:
    reply, module = result["reply"], result["module"]
    expected = re.search(
        r'__version__ = "([^"]+)"', (ROOT / "lambdaflow" / "_version.py").read_text()
    ).group(1)
    failures = []
    if not str(module).startswith(str(venv)):
        failures.append(
            f"lambdaflow was imported from {module}, not from the clean venv"
        )
    if not isinstance(reply, dict):
        failures.append(f"the ping reply is {reply!r}, not a dict")
    else:
        if reply.get("lambdaflow_version") != expected:
            failures.append(
                f"lambdaflow_version {reply.get('lambdaflow_version')!r} != "
                f"{expected!r}"
            )
        got = ".".join(str(reply.get("python_version", "")).split(".")[:2])
        if got != python_version:
            failures.append(
                f"python_version {reply.get('python_version')!r} is not "
                f"{python_version}.x"
            )
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
    parser.add_argument("--python", help="interpreter of the image's Python version")
    parser.add_argument("--keep", action="store_true", help="keep the temp venv")
    parser.add_argument(
        "--skip-platform",
        action="store_true",
        help="skip the image-platform wheel check (no index access)",
    )
    args = parser.parse_args(argv)
    return check(args.python, args.keep, args.skip_platform)


if __name__ == "__main__":
    sys.exit(main())
