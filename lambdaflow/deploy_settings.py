"""The settings ``lambdaflow deploy`` hands to the lambda backend: one JSON file.

``lambdaflow deploy`` writes it (default ``.lambdaflow/deployment.json`` in the directory
it ran in; ``--settings-file``), and ``lambdaflow.init(backend="lambda")`` reads it
(``deploy_file=`` / ``LAMBDAFLOW_DEPLOY_FILE``), so nothing has to be copied by hand::

    {"format": 1, "deployment": "lambdaflow",
     "function_name": "lambdaflow-1769", "memory_tiers": "1769,3008,10240",
     "bucket": "my-jobs", "prefix": "lambdaflow/", "region": "eu-west-1",
     "image_variant": "py3.12", "image_uri": "...", "functions": ["lambdaflow-1769", ...],
     "role_arn": "...", "deployed_at": "2026-12-01T10:00:00Z"}

Precedence in ``config.resolve``: ``init()`` keywords, then ``LAMBDAFLOW_*`` variables,
then this file, then the defaults. The file fills only the fields in
:data:`BACKEND_FIELDS`, and only when the backend is ``lambda``. When a function name was
given that is not one of the file's functions, the file describes another deployment
and is ignored as a whole (mixing the tiers of one deployment with the functions of
another would route tasks to functions that do not exist).

This module is imported by the runtime, so it must not import ``lambdaflow.deploy``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from lambdaflow.errors import ConfigError

log = logging.getLogger(__name__)

FORMAT = 1
DEFAULT_PATH = ".lambdaflow/deployment.json"
#: Config fields the file provides (each is also a ``LAMBDAFLOW_<FIELD>`` variable).
BACKEND_FIELDS = ("function_name", "memory_tiers", "bucket", "prefix", "region")
#: Everything a record must carry.
REQUIRED = (*BACKEND_FIELDS, "deployment", "image_variant", "functions")


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The record in ``path``; ConfigError naming the file when it is not one."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"deployment settings {path}: cannot read it ({exc}); rerun `lambdaflow "
            "deploy` to rewrite it, or point LAMBDAFLOW_DEPLOY_FILE elsewhere"
        ) from exc
    missing = [k for k in REQUIRED if not isinstance(record, dict) or k not in record]
    if missing or record.get("format") != FORMAT:
        raise ConfigError(
            f"deployment settings {path}: not a format-{FORMAT} file of `lambdaflow "
            f"deploy` (missing {', '.join(missing) or 'nothing'}, format "
            f"{record.get('format') if isinstance(record, dict) else None!r}); rerun "
            "`lambdaflow deploy` to rewrite it"
        )
    return record


def write(path: str | os.PathLike[str], record: dict[str, Any]) -> Path:
    """Write ``record`` (atomically: a reader never sees half a file); returns the path."""
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise ValueError(f"deployment record lacks {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"format": FORMAT, **record}, indent=2, sort_keys=True))
    tmp.replace(path)
    return path.resolve()


def apply(cfg: Any, given: set[str]) -> None:
    """Fill ``cfg``'s backend fields not in ``given`` from its ``deploy_file``.

    ``given`` names the fields set by ``init()`` keywords or ``LAMBDAFLOW_*`` variables.
    A missing file is an error only when ``deploy_file`` was given explicitly.
    """
    if cfg.backend != "lambda" or not cfg.deploy_file:
        return
    try:
        record = read(cfg.deploy_file)
    except FileNotFoundError:
        if "deploy_file" in given:
            raise ConfigError(
                f"deploy_file {cfg.deploy_file}: no such file; run `lambdaflow deploy` "
                "(it writes the file) or give the settings as LAMBDAFLOW_* variables"
            ) from None
        return
    if "function_name" in given and cfg.function_name not in record["functions"]:
        log.debug(
            "%s describes deployment %s, not function %s: not used",
            cfg.deploy_file, record["deployment"], cfg.function_name,
        )  # fmt: skip
        return
    for name in BACKEND_FIELDS:
        if name not in given:
            setattr(cfg, name, record[name])


def backend_settings(record: dict[str, Any]) -> dict[str, str]:
    """The ``LAMBDAFLOW_*`` variables equivalent to ``record`` (what deploy prints)."""
    env = {"LAMBDAFLOW_BACKEND": "lambda"}
    env.update({f"LAMBDAFLOW_{n.upper()}": str(record[n]) for n in BACKEND_FIELDS})
    return env
