"""``lambdaflow timeline OUT.png [--stats FILE.json]``: draw the last run's tasks over time.

The runtime writes each run's per-task records to a JSON file (``.lambdaflow/last-run.json``
unless told otherwise); this command reads that file, prints the run's summary and writes
the picture (see :func:`lambdaflow.timeline.plot_timeline`).
"""

from __future__ import annotations

import argparse

from lambdaflow.runtime.stats import (
    DEFAULT_STATS_PATH,
    format_summary,
    load_records,
    summarize,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "timeline",
        help="draw a run's tasks over time per execution environment (PNG)",
        description=(
            "Draw the tasks of a finished run over time, one row per execution "
            "environment, coloured by status, cold starts and retries marked."
        ),
    )
    parser.add_argument("out", metavar="OUT.png", help="the PNG file to write")
    parser.add_argument(
        "--stats",
        metavar="FILE.json",
        default=DEFAULT_STATS_PATH,
        help=f"records written by the runtime (default: {DEFAULT_STATS_PATH})",
    )
    parser.add_argument("--title", default=None, help="title of the picture")
    parser.add_argument(
        "--region", default="us-east-1", help="price region for the summary"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="do not print the run summary"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lambdaflow.timeline import plot_timeline

    records = load_records(args.stats)
    out = plot_timeline(records, args.out, title=args.title)
    summary = summarize(records, region=args.region)
    if not args.quiet:
        print(format_summary(summary))
    print(
        f"wrote {out}: {summary['tasks']} tasks on {summary['environments']} environments"
    )
    return 0
