"""The ``lambdaflow`` command line (also ``python -m lambdaflow``).

Each subcommand lives in a module of ``lambdaflow.commands`` that defines
``register(subparsers)``; it adds its parser(s) with ``set_defaults(func=run)`` where
``run(args) -> int`` returns the exit code. This module only parses arguments and turns
errors into one clear line (a traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from lambdaflow._version import __version__

#: Subcommand modules, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "lambdaflow.commands.video",
    "lambdaflow.commands.infer",
    "lambdaflow.commands.local_aws",
    "lambdaflow.commands.timeline",
    "lambdaflow.commands.deploy",
    "lambdaflow.commands.events",
    "lambdaflow.commands.doctor",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lambdaflow",
        description="Ray-style dataflow on AWS Lambda, local threads or local processes.",
    )
    parser.add_argument("--version", action="version", version=f"lambdaflow {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks and debug logging"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # not written yet / not shipped
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("lambdaflow: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line; the traceback only with --debug
        if args.debug:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"lambdaflow {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
