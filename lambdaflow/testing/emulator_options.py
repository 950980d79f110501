"""How a Lambda emulator behaves: the one list of its options.

``LambdaEmulator`` and ``EmulatorProcess`` take these as keyword arguments (or an
``EmulatorOptions``), ``EmulatorProcess`` hands them to its child as JSON, the child's
command line (``python -m lambdaflow.testing.lambda_emulator --help``) is generated from
the fields, and ``EmulatorCore`` reads them. An option is added here, once.

Not here: the address (``host``, ``port``) and the secrets (the accepted keys, the STS
service key), which never travel on a command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lambdaflow.testing.emulator_pool import AccountPool
from lambdaflow.testing.sigv4 import Credential

MEMORY_LIMITS = (None, "rss", "rlimit")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class EmulatorOptions:
    region: str = field(default="us-east-1", metadata=_help("the region it answers for"))
    account_concurrency: int = field(
        default=1000, metadata=_help("the account's concurrent executions")
    )
    min_unreserved: int = field(
        default=100, metadata=_help("what reserved concurrency must leave unreserved")
    )
    python_path: tuple[str, ...] = field(
        default=(), metadata=_help("a PYTHONPATH entry of every environment (repeatable)")
    )
    task_root: str | None = field(
        default=None, metadata=_help("LAMBDA_TASK_ROOT (default: the current directory)")
    )
    memory_limit: str | None = field(
        default="rss",
        metadata=_help("rss: kill an environment over its MemorySize (polled); rlimit: "
                       "RLIMIT_AS; none: no limit"),
    )
    rlimit_headroom_mb: int = field(
        default=1024, metadata=_help("with rlimit: RLIMIT_AS is MemorySize + this")
    )
    async_retry_delays_s: tuple[float, ...] = field(
        default=(60.0, 120.0),
        metadata=_help("the delay before each retry of a failed Event invoke (repeatable)"),
    )
    idle_timeout_s: float = field(
        default=600.0, metadata=_help("an idle environment is reclaimed after this")
    )
    isolate: bool = field(
        default=True,
        metadata=_help("a private /tmp and a read-only task root for each environment"),
    )
    shared_paths: tuple[str, ...] = field(
        default=(), metadata=_help("a path under /tmp that stays visible (repeatable)")
    )
    echo_logs: bool = field(
        default=False, metadata=_help("copy the environments' output to this stderr")
    )

    def __post_init__(self) -> None:
        if self.memory_limit not in MEMORY_LIMITS:
            raise ValueError(
                f"memory_limit={self.memory_limit!r}: use None, 'rss' or 'rlimit'")
        AccountPool(self.account_concurrency, self.min_unreserved)  # checks the two
        for name in ("python_path", "async_retry_delays_s"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(
            self, "shared_paths", tuple(os.path.abspath(p) for p in self.shared_paths))

    @classmethod
    def build(cls, options: EmulatorOptions | None = None, **overrides: Any
              ) -> EmulatorOptions:
        """``options`` (default: the defaults) with ``overrides``; an unknown name is a
        TypeError that names it."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(
                f"unknown emulator option(s) {', '.join(unknown)}; the options are "
                f"{', '.join(sorted(names))}")
        return dataclasses.replace(options or cls(), **overrides)

    # ------------------------------------------------------------ to the child process
    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> EmulatorOptions:
        return cls.build(**json.loads(text))

    # ------------------------------------------------------------------ command line
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One flag a field: ``--account-concurrency N``; a tuple is repeatable; a
        boolean that defaults to True is turned off with ``--no-<name>``."""
        for f in dataclasses.fields(cls):
            flag = "--" + f.name.replace("_", "-")
            text = f.metadata.get("help", "")
            if f.type == "bool":
                if f.default:
                    parser.add_argument(f"--no-{flag[2:]}", dest=f.name,
                                        action="store_false", help=f"do not: {text}")
                else:
                    parser.add_argument(flag, dest=f.name, action="store_true", help=text)
            elif f.type.startswith("tuple"):
                item = float if "float" in f.type else str
                parser.add_argument(flag, dest=f.name, type=item, action="append",
                                    default=None, help=text)
            elif f.type == "int":
                parser.add_argument(flag, dest=f.name, type=int, default=f.default,
                                    help=text)
            elif f.type == "float":
                parser.add_argument(flag, dest=f.name, type=float, default=f.default,
                                    help=text)
            elif f.name == "memory_limit":
                parser.add_argument(flag, dest=f.name, default=f.default, help=text,
                                    choices=[m or "none" for m in MEMORY_LIMITS])
            else:
                parser.add_argument(flag, dest=f.name, default=f.default, help=text)

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> EmulatorOptions:
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            value = getattr(args, f.name)
            if value is None and f.type.startswith("tuple"):
                continue  # not given: the default
            if f.name == "memory_limit" and value == "none":
                value = None
            values[f.name] = value
        return cls.build(**values)



def accepted(
    options: EmulatorOptions | None,
    overrides: dict[str, Any],
    credentials: Sequence[Credential] | None,
    sts_endpoint_url: str | None,
    service_credential: Credential | None,
) -> tuple[EmulatorOptions, list[Credential]]:
    """What ``LambdaEmulator`` / ``EmulatorProcess`` are given, checked: the options and
    the keys it accepts (default: one generated for this run, the first signs its own
    calls)."""
    if bool(sts_endpoint_url) != (service_credential is not None):
        raise ValueError("sts_endpoint_url and service_credential go together")
    keys = list(credentials or [Credential.generate("emulator-admin")])
    return EmulatorOptions.build(options, **overrides), keys
