"""Lint a worker Dockerfile against its variant (pure; no Docker engine needed).

What each variant's Dockerfile must do (``lambdaflow/variants.py`` names the file):

* ``ARG BASE_IMAGE=<the variant's base, tag only>`` then ``FROM ${BASE_IMAGE}``: the build
  script passes the base pinned by digest and refuses an unpinned one;
* ``ARG VARIANT`` and ``ENV LAMBDAFLOW_IMAGE_VARIANT=${VARIANT}`` (the version ping reports
  it, ``lambdaflow status`` compares it);
* install ``worker_image/locks/${VARIANT}.txt`` with ``pip install --require-hashes``;
* install lambdaflow itself with ``--no-deps`` and build the native kernel (gcc);
* ``CMD ["lambdaflow.runtime.lambda_entry.lambda_handler"]``; on ``provided.al2023``
  (no runtime of its own) also ``ENTRYPOINT [<python3.X>, "-m", "awslambdaric"]`` with the
  variant's Python.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

HANDLER = "lambdaflow.runtime.lambda_entry.lambda_handler"


@dataclass(frozen=True)
class DockerfileFacts:
    base_default: str  # the ARG BASE_IMAGE default: image:tag
    handler: str
    entrypoint: list[str] | None


def logical_lines(text: str) -> list[str]:
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


def _exec_form(value: str) -> list[str] | None:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return None
    if isinstance(parsed, list) and all(isinstance(p, str) for p in parsed):
        return parsed
    return None


def lint(text: str, *, base: str, python: str) -> tuple[DockerfileFacts | None, list[str]]:
    """Facts of the Dockerfile and what is wrong with it, for a variant whose base is
    ``base`` (``image:tag``) and whose Python is ``python`` (``"3.11"``)."""
    problems: list[str] = []
    lines = logical_lines(text)

    def args_of(instruction: str) -> list[str]:
        n = len(instruction) + 1
        return [ln[n:].strip() for ln in lines if ln.upper().startswith(instruction + " ")]

    froms, cmds, runs = args_of("FROM"), args_of("CMD"), args_of("RUN")
    arg_defaults = dict(a.partition("=")[::2] for a in args_of("ARG"))
    envs, entrypoints = args_of("ENV"), args_of("ENTRYPOINT")
    if froms != ["${BASE_IMAGE}"]:
        problems.append(f"expected exactly one FROM ${{BASE_IMAGE}}, found {froms}")
    base_default = arg_defaults.get("BASE_IMAGE", "")
    # One Dockerfile may serve several variants (python:3.12 and :3.13): the build
    # script passes each one's base; the default must be the same image, unpinned.
    if base_default.partition(":")[0] != base.partition(":")[0] or "@" in base_default:
        problems.append(
            f"ARG BASE_IMAGE={base_default or '(none)'}: expected {base.partition(':')[0]}"
            ":TAG without a digest (build_and_push.sh passes the pinned base)"
        )
    if "VARIANT" not in arg_defaults:
        problems.append("no ARG VARIANT")
    if "LAMBDAFLOW_IMAGE_VARIANT=${VARIANT}" not in envs:
        problems.append("no ENV LAMBDAFLOW_IMAGE_VARIANT=${VARIANT}")
    handler = ""
    cmd = _exec_form(cmds[0]) if len(cmds) == 1 else None
    if cmd is None or len(cmd) != 1:
        problems.append(f'expected one CMD ["{HANDLER}"], found {cmds}')
    else:
        handler = cmd[0]
        if handler != HANDLER:
            problems.append(f"CMD names {handler!r}; the worker handler is {HANDLER!r}")
    if not any(
        "pip install" in r and "--require-hashes" in r and "-r" in r for r in runs
    ) or not any("worker_image/locks/${VARIANT}.txt" in c for c in args_of("COPY")):
        problems.append(
            "no COPY worker_image/locks/${VARIANT}.txt + RUN pip install --require-hashes -r"
        )
    if not any("pip install" in r and "--no-deps" in r and "-r " not in r for r in runs):
        problems.append("no RUN pip install --no-deps of lambdaflow itself")
    if not any(re.search(r"\b(yum|dnf|microdnf) install\b.*\bgcc\b", r) for r in runs):
        problems.append("no RUN dnf install gcc (the native kernel needs a C compiler)")
    entrypoint = _exec_form(entrypoints[0]) if len(entrypoints) == 1 else None
    if base.endswith(":al2023"):  # provided.al2023 has no runtime of its own
        if not entrypoint or entrypoint[1:] != ["-m", "awslambdaric"] or not re.search(
            rf"python{re.escape(python)}$", entrypoint[0]
        ):
            problems.append(
                f'expected ENTRYPOINT ["/usr/bin/python{python}", "-m", "awslambdaric"], '
                f"found {entrypoints}"
            )
    elif entrypoints:
        problems.append("the Lambda Python base has its own ENTRYPOINT: do not set one")
    facts = DockerfileFacts(base_default, handler, entrypoint) if not problems else None
    return facts, problems
